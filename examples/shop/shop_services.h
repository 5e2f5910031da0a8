// The three services of the example shop (shop.proto) and what they share:
// reading the caller's identity from x-forwarded-client-cert, and a channel
// to the app's own sidecar.
//
// Each service is an ordinary gRPC server with no TLS and no identity of its
// own: its sidecar terminates mTLS, authorizes the call and tells the app who
// called in x-forwarded-client-cert. Calls to other services go, plaintext,
// to the app's own sidecar's outbound listener, with the target service's
// name as :authority. Handlers are called on gRPC's threads; state is guarded
// by a mutex.
#ifndef MESHGUARD_EXAMPLES_SHOP_SHOP_SERVICES_H_
#define MESHGUARD_EXAMPLES_SHOP_SHOP_SERVICES_H_

#include <grpcpp/grpcpp.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "examples/shop/shop.grpc.pb.h"

namespace meshguard::examples {

// The identities in one x-forwarded-client-cert element.
struct ForwardedClientCert {
  std::string by;   // the accepting sidecar's own SPIFFE ID
  std::string uri;  // the verified caller's SPIFFE ID
};

// Parses Envoy's format, "By=<id>;Hash=<hex>;URI=<id>" (values may be
// quoted). With several comma-separated elements the last one is the
// nearest hop's; meshguard's sidecar always sets exactly one.
ForwardedClientCert ParseForwardedClientCert(absl::string_view value);

// What `service` saw of the call in `context`.
shop::v1::Hop HopOf(absl::string_view service,
                    const grpc::ServerContext& context);

// A channel to the app's sidecar's outbound listener (h2c) whose calls carry
// `authority`, the name the sidecar routes by.
std::shared_ptr<grpc::Channel> SidecarChannel(const std::string& sidecar,
                                              const std::string& authority);

// How long a call waits at most, also for calls made while serving one.
inline constexpr absl::Duration kCallTimeout = absl::Seconds(2);

class InventoryService final : public shop::v1::Inventory::Service {
 public:
  grpc::Status Reserve(grpc::ServerContext* context,
                       const shop::v1::ReserveRequest* request,
                       shop::v1::ReserveResponse* response) override;
  grpc::Status Get(grpc::ServerContext* context,
                   const shop::v1::GetStockRequest* request,
                   shop::v1::StockResponse* response) override;

 private:
  // A demo store: every SKU starts with this many units.
  static constexpr int64_t kInitialStock = 1000000;

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int64_t> reserved_ ABSL_GUARDED_BY(mu_);
  int64_t next_reservation_ ABSL_GUARDED_BY(mu_) = 1;
};

class OrdersService final : public shop::v1::Orders::Service {
 public:
  // `inventory`: a SidecarChannel with authority "inventory".
  explicit OrdersService(std::shared_ptr<grpc::Channel> inventory)
      : inventory_(shop::v1::Inventory::NewStub(inventory)) {}

  grpc::Status Get(grpc::ServerContext* context,
                   const shop::v1::GetOrderRequest* request,
                   shop::v1::OrderResponse* response) override;
  grpc::Status Create(grpc::ServerContext* context,
                      const shop::v1::CreateOrderRequest* request,
                      shop::v1::OrderResponse* response) override;

 private:
  std::unique_ptr<shop::v1::Inventory::Stub> inventory_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, shop::v1::Order> orders_
      ABSL_GUARDED_BY(mu_);
  int64_t next_order_ ABSL_GUARDED_BY(mu_) = 1;
};

class FrontendService final : public shop::v1::Frontend::Service {
 public:
  // `orders`: a SidecarChannel with authority "orders".
  explicit FrontendService(std::shared_ptr<grpc::Channel> orders)
      : orders_(shop::v1::Orders::NewStub(orders)) {}

  grpc::Status Buy(grpc::ServerContext* context,
                   const shop::v1::BuyRequest* request,
                   shop::v1::BuyResponse* response) override;

 private:
  std::unique_ptr<shop::v1::Orders::Stub> orders_;
};

}  // namespace meshguard::examples

#endif  // MESHGUARD_EXAMPLES_SHOP_SHOP_SERVICES_H_
