// gRPC C++ server of the interop test service (grpc.testing.TestService,
// tests/interop/proto/test.proto), h2c:
//   interop_server --listen 127.0.0.1:0
// prints "listening on PORT" once it accepts calls. What each method does
// and the two metadata extensions (echo, call-state query): docs/interop.md.
#include <grpcpp/grpcpp.h>

#include <iostream>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/interop/cpp/interop_common.h"
#include "tests/interop/proto/test.grpc.pb.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "address to listen on (h2c); port 0 picks a free port");

namespace meshguard::interop {
namespace {

using grpc::ServerContext;
using grpc::Status;
using grpc::StatusCode;
using grpc::testing::EchoStatus;
using grpc::testing::Empty;
using grpc::testing::ResponseParameters;
using grpc::testing::SimpleRequest;
using grpc::testing::SimpleResponse;
using grpc::testing::StreamingInputCallRequest;
using grpc::testing::StreamingInputCallResponse;
using grpc::testing::StreamingOutputCallRequest;
using grpc::testing::StreamingOutputCallResponse;

std::string Metadata(const ServerContext& context, const char* key) {
  auto it = context.client_metadata().find(key);
  if (it == context.client_metadata().end()) return "";
  return std::string(it->second.data(), it->second.size());
}

// The interop suite's metadata echo: x-grpc-test-echo-initial back in the
// initial metadata, x-grpc-test-echo-trailing-bin in the trailers.
void EchoMetadata(ServerContext* context) {
  const auto& md = context->client_metadata();
  if (auto it = md.find(kEchoInitial); it != md.end()) {
    context->AddInitialMetadata(
        kEchoInitial, std::string(it->second.data(), it->second.size()));
  }
  if (auto it = md.find(kEchoTrailing); it != md.end()) {
    context->AddTrailingMetadata(
        kEchoTrailing, std::string(it->second.data(), it->second.size()));
  }
}

Status EchoedStatus(const EchoStatus& status) {
  return Status(static_cast<StatusCode>(status.code()), status.message());
}

// Only zeros are sent (PayloadType COMPRESSABLE): anything else arrived
// corrupted.
bool AllZeros(const std::string& body) {
  return body.find_first_not_of('\0') == std::string::npos;
}

// Checks a request's expect_compressed against what arrived.
Status CheckCompression(ServerContext* context,
                        const grpc::testing::BoolValue& expect) {
  const bool gzipped = LastMessageGzipped(context->c_call());
  if (expect.value() != gzipped) {
    return Status(StatusCode::INVALID_ARGUMENT,
                  absl::StrCat("expect_compressed is ", expect.value(),
                               " but the request arrived ",
                               gzipped ? "gzip-compressed" : "uncompressed"));
  }
  return Status::OK;
}

// Sleeps `micros`, waking early when the call is cancelled; false then.
bool SleepUnlessCancelled(ServerContext* context, int micros) {
  const absl::Time end = absl::Now() + absl::Microseconds(micros);
  while (absl::Now() < end) {
    if (context->IsCancelled()) return false;
    absl::SleepFor(std::min(absl::Milliseconds(5), end - absl::Now()));
  }
  return !context->IsCancelled();
}

class TestServiceImpl final : public grpc::testing::TestService::Service {
 public:
  Status EmptyCall(ServerContext* context, const Empty* request,
                   Empty* response) override {
    EchoMetadata(context);
    if (std::string token = Metadata(*context, kQueryToken); !token.empty()) {
      context->AddTrailingMetadata(kCallState, StateOf(token));
    }
    return Status::OK;
  }

  Status UnaryCall(ServerContext* context, const SimpleRequest* request,
                   SimpleResponse* response) override {
    EchoMetadata(context);
    if (request->response_compressed().value()) {
      context->set_compression_algorithm(GRPC_COMPRESS_GZIP);
    }
    if (request->has_expect_compressed()) {
      if (Status s = CheckCompression(context, request->expect_compressed());
          !s.ok()) {
        return s;
      }
    }
    if (!AllZeros(request->payload().body())) {
      return Status(StatusCode::INVALID_ARGUMENT,
                    "the request payload is not all zeros");
    }
    if (request->response_status().code() != 0) {
      return EchoedStatus(request->response_status());
    }
    response->mutable_payload()->set_body(
        std::string(request->response_size(), '\0'));
    return Status::OK;
  }

  Status StreamingOutputCall(
      ServerContext* context, const StreamingOutputCallRequest* request,
      grpc::ServerWriter<StreamingOutputCallResponse>* writer) override {
    EchoMetadata(context);
    bool gzip = false;
    if (Status s = WriteResponses(context, *request, writer, &gzip); !s.ok()) {
      return s;
    }
    return EchoedStatus(request->response_status());
  }

  Status StreamingInputCall(
      ServerContext* context,
      grpc::ServerReader<StreamingInputCallRequest>* reader,
      StreamingInputCallResponse* response) override {
    EchoMetadata(context);
    const std::string token = Begin(*context);
    StreamingInputCallRequest request;
    int total = 0;
    Status status = Status::OK;
    while (reader->Read(&request)) {
      if (status.ok() && request.has_expect_compressed()) {
        status = CheckCompression(context, request.expect_compressed());
      }
      if (status.ok() && !AllZeros(request.payload().body())) {
        status = Status(StatusCode::INVALID_ARGUMENT,
                        "a request payload is not all zeros");
      }
      total += static_cast<int>(request.payload().body().size());
    }
    End(*context, token);
    response->set_aggregated_payload_size(total);
    return status;
  }

  Status FullDuplexCall(
      ServerContext* context,
      grpc::ServerReaderWriter<StreamingOutputCallResponse,
                               StreamingOutputCallRequest>* stream) override {
    EchoMetadata(context);
    const std::string token = Begin(*context);
    StreamingOutputCallRequest request;
    Status status = Status::OK;
    bool gzip = false;
    while (status.ok() && stream->Read(&request)) {
      status = WriteResponses(context, request, stream, &gzip);
      if (status.ok() && request.response_status().code() != 0) {
        status = EchoedStatus(request.response_status());
      }
    }
    End(*context, token);
    return status;
  }

  Status HalfDuplexCall(
      ServerContext* context,
      grpc::ServerReaderWriter<StreamingOutputCallResponse,
                               StreamingOutputCallRequest>* stream) override {
    EchoMetadata(context);
    const std::string token = Begin(*context);
    std::vector<StreamingOutputCallRequest> requests;
    StreamingOutputCallRequest request;
    while (stream->Read(&request)) requests.push_back(request);
    Status status = Status::OK;
    bool gzip = false;
    for (const StreamingOutputCallRequest& r : requests) {
      if (status.ok()) status = WriteResponses(context, r, stream, &gzip);
    }
    End(*context, token);
    return status;
  }

 private:
  // Writes one response per response_parameters entry. `gzip`: whether
  // this call has asked for gzip-compressed responses yet.
  Status WriteResponses(
      ServerContext* context, const StreamingOutputCallRequest& request,
      grpc::internal::WriterInterface<StreamingOutputCallResponse>* writer,
      bool* gzip) {
    for (const ResponseParameters& p : request.response_parameters()) {
      if (p.compressed().value() && !*gzip) {
        // Takes effect only before the first response; later ones keep the
        // call's first choice. (Tracked here, not read back from the
        // context: the sync server reuses contexts, and their
        // compression_algorithm() can still hold an earlier call's.)
        context->set_compression_algorithm(GRPC_COMPRESS_GZIP);
        *gzip = true;
      }
      if (p.interval_us() > 0 &&
          !SleepUnlessCancelled(context, p.interval_us())) {
        return Status(StatusCode::CANCELLED, "cancelled while sleeping");
      }
      StreamingOutputCallResponse response;
      response.mutable_payload()->set_body(std::string(p.size(), '\0'));
      grpc::WriteOptions options;
      if (!p.compressed().value()) options.set_no_compression();
      if (!writer->Write(response, options)) {
        return Status(StatusCode::CANCELLED, "write failed");
      }
    }
    return Status::OK;
  }

  // The call-state records behind x-interop-token / x-interop-query-token:
  // "running" from the handler's start, then "cancelled" or "finished".
  std::string Begin(const ServerContext& context) {
    std::string token = Metadata(context, kToken);
    if (!token.empty()) {
      absl::MutexLock lock(&mu_);
      states_[token] = "running";
    }
    return token;
  }
  void End(const ServerContext& context, const std::string& token) {
    if (token.empty()) return;
    // A client's cancel (RST_STREAM) also ends the reads, and gRPC may
    // report that end before it marks the call cancelled: give the cancel a
    // moment to show. (Only calls with a token wait; no case lets one
    // finish normally.)
    const absl::Time end = absl::Now() + absl::Milliseconds(500);
    while (!context.IsCancelled() && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    absl::MutexLock lock(&mu_);
    states_[token] = context.IsCancelled() ? "cancelled" : "finished";
  }
  std::string StateOf(const std::string& token) {
    absl::MutexLock lock(&mu_);
    auto it = states_.find(token);
    return it == states_.end() ? "unknown" : it->second;
  }

  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::string> states_ ABSL_GUARDED_BY(mu_);
};

}  // namespace
}  // namespace meshguard::interop

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  meshguard::interop::TestServiceImpl service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(absl::GetFlag(FLAGS_listen),
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  builder.SetMaxReceiveMessageSize(meshguard::interop::kMaxMessageBytes);
  builder.SetMaxSendMessageSize(meshguard::interop::kMaxMessageBytes);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::cerr << "cannot listen on " << absl::GetFlag(FLAGS_listen) << "\n";
    return 1;
  }
  std::cout << "listening on " << port << std::endl;
  server->Wait();
  return 0;
}
