// The test gRPC service (tests/testing/echo.proto) and helpers to run it.
//
// Thread-safe: gRPC calls the handlers on its own threads; the cancellation
// records are guarded by a mutex.
#ifndef MESHGUARD_TESTS_TESTING_ECHO_SERVICE_H_
#define MESHGUARD_TESTS_TESTING_ECHO_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "tests/testing/echo.grpc.pb.h"

namespace meshguard::testing {

// Both ends of the tests use this limit so that 8 MiB+ messages pass.
inline constexpr int kMaxMessageBytes = 64 << 20;

class EchoServiceImpl final : public Echo::Service {
 public:
  grpc::Status Echo(grpc::ServerContext* context, const EchoRequest* request,
                    EchoResponse* response) override;
  grpc::Status ServerStream(grpc::ServerContext* context,
                            const EchoRequest* request,
                            grpc::ServerWriter<EchoResponse>* writer) override;
  grpc::Status ClientStream(grpc::ServerContext* context,
                            grpc::ServerReader<EchoRequest>* reader,
                            EchoResponse* response) override;
  grpc::Status BidiStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<EchoResponse, EchoRequest>* stream) override;
  grpc::Status Sleep(grpc::ServerContext* context, const SleepRequest* request,
                     SleepResponse* response) override;
  grpc::Status GetCancelState(grpc::ServerContext* context,
                              const CancelStateRequest* request,
                              CancelStateResponse* response) override;
  grpc::Status ReturnStatus(grpc::ServerContext* context,
                            const StatusRequest* request,
                            EchoResponse* response) override;

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, CancelStateResponse> sleep_states_
      ABSL_GUARDED_BY(mu_);
};

// An EchoServiceImpl served on `listen` ("127.0.0.1:0" picks a port).
class EchoServer {
 public:
  static absl::StatusOr<std::unique_ptr<EchoServer>> Start(
      const std::string& listen);
  ~EchoServer();

  int port() const { return port_; }
  grpc::Server* server() { return server_.get(); }
  void Wait() { server_->Wait(); }

 private:
  EchoServer() = default;
  EchoServiceImpl service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

// Channel arguments for test clients: 64 MiB messages, no proxy from the
// environment.
grpc::ChannelArguments TestChannelArguments();

}  // namespace meshguard::testing

#endif  // MESHGUARD_TESTS_TESTING_ECHO_SERVICE_H_
