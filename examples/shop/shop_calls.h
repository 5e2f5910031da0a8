// The calling side of the example shop: frontend's periodic traffic to
// orders (the driver that shows calls going on through certificate
// rotations) and one-shot calls for the demo and for poking at the mesh.
#ifndef MESHGUARD_EXAMPLES_SHOP_SHOP_CALLS_H_
#define MESHGUARD_EXAMPLES_SHOP_SHOP_CALLS_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "examples/shop/shop.grpc.pb.h"

namespace meshguard::examples {

// "PERMISSION_DENIED" for grpc::StatusCode::PERMISSION_DENIED.
std::string StatusCodeName(grpc::StatusCode code);

// Calls orders.Create and orders.Get in turn every `interval` on its own
// thread, printing one line per call ("frontend -> orders.Create: OK ..."
// or "... FAILED CODE: message"), until Stop(). Start() and Stop() are for
// one thread; the counts may be read from any.
class OrdersDriver {
 public:
  OrdersDriver(std::shared_ptr<grpc::Channel> orders, absl::Duration interval);
  ~OrdersDriver();

  void Start();
  // Joins the thread and prints "frontend driver: N calls, M failed".
  void Stop();

 private:
  void Run();
  // One call; returns whether it succeeded.
  bool CallOnce(int64_t n);

  std::unique_ptr<shop::v1::Orders::Stub> orders_;
  const absl::Duration interval_;
  absl::Notification stop_;
  std::thread thread_;
  // Only the driver thread touches this.
  std::string last_order_id_;
  absl::Mutex mu_;
  int64_t calls_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t failed_ ABSL_GUARDED_BY(mu_) = 0;
};

struct CallOptions {
  std::string caller;     // who is calling, for the printed line: "frontend"
  std::string method;     // "inventory.Get", "orders.Create", "frontend.Buy"...
  std::string target;     // host:port to dial (a sidecar's outbound listener)
  std::string authority;  // :authority; empty means the method's service
  std::string sku;
  int32_t quantity = 1;
  std::string order_id;  // orders.Get
};

// Makes one call and prints what happened, with every hop's identities.
// Returns OK when the call succeeded, the call's status otherwise (already
// printed), or INVALID_ARGUMENT for an unknown method.
absl::Status RunCall(const CallOptions& options);

}  // namespace meshguard::examples

#endif  // MESHGUARD_EXAMPLES_SHOP_SHOP_CALLS_H_
