#include "tests/testing/echo_service.h"

#include <string>
#include <utility>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshguard::testing {
namespace {

void CopyMetadata(const grpc::ServerContext& context, EchoResponse* response) {
  for (const auto& [key, value] : context.client_metadata()) {
    Metadata* m = response->add_request_metadata();
    m->set_key(std::string(key.data(), key.size()));
    m->set_value(std::string(value.data(), value.size()));
    if (key == "x-forwarded-client-cert") {
      response->set_forwarded_client_cert(
          std::string(value.data(), value.size()));
    }
  }
}

// Returns the request metadata as trailers too, so that tests can check the
// trailer path of the proxy with the same values.
void EchoMetadataAsTrailers(grpc::ServerContext* context) {
  for (const auto& [key, value] : context->client_metadata()) {
    std::string k(key.data(), key.size());
    if (absl::StartsWith(k, "x-") || absl::StartsWith(k, "echo-")) {
      context->AddTrailingMetadata("echoed-" + k,
                                   std::string(value.data(), value.size()));
    }
  }
}

std::string ResponsePayload(const EchoRequest& request) {
  if (request.response_size() > 0) {
    return std::string(request.response_size(), 'r');
  }
  return request.payload();
}

}  // namespace

grpc::Status EchoServiceImpl::Echo(grpc::ServerContext* context,
                                   const EchoRequest* request,
                                   EchoResponse* response) {
  response->set_payload(ResponsePayload(*request));
  CopyMetadata(*context, response);
  const auto deadline = context->deadline();
  response->set_deadline_remaining_ms(
      deadline == std::chrono::system_clock::time_point::max()
          ? -1
          : std::chrono::duration_cast<std::chrono::milliseconds>(
                deadline - std::chrono::system_clock::now())
                .count());
  EchoMetadataAsTrailers(context);
  context->AddInitialMetadata("echo-initial", "present");
  return grpc::Status::OK;
}

grpc::Status EchoServiceImpl::ServerStream(
    grpc::ServerContext* context, const EchoRequest* request,
    grpc::ServerWriter<EchoResponse>* writer) {
  for (int i = 0; i < request->response_count(); ++i) {
    EchoResponse response;
    response.set_payload(ResponsePayload(*request));
    response.set_message_count(i);
    if (!writer->Write(response)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "write failed");
    }
  }
  EchoMetadataAsTrailers(context);
  return grpc::Status::OK;
}

grpc::Status EchoServiceImpl::ClientStream(
    grpc::ServerContext* context, grpc::ServerReader<EchoRequest>* reader,
    EchoResponse* response) {
  EchoRequest request;
  int count = 0;
  std::string last;
  while (reader->Read(&request)) {
    ++count;
    last = request.payload();
  }
  response->set_message_count(count);
  response->set_payload(last);
  CopyMetadata(*context, response);
  return grpc::Status::OK;
}

grpc::Status EchoServiceImpl::BidiStream(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<EchoResponse, EchoRequest>* stream) {
  EchoRequest request;
  int count = 0;
  while (stream->Read(&request)) {
    EchoResponse response;
    response.set_payload(ResponsePayload(request));
    response.set_message_count(count++);
    if (!stream->Write(response)) break;
  }
  EchoMetadataAsTrailers(context);
  return grpc::Status::OK;
}

grpc::Status EchoServiceImpl::Sleep(grpc::ServerContext* context,
                                    const SleepRequest* request,
                                    SleepResponse* response) {
  {
    absl::MutexLock lock(&mu_);
    sleep_states_[request->token()].set_started(true);
  }
  const absl::Time end = absl::Now() + absl::Milliseconds(request->sleep_ms());
  bool cancelled = false;
  while (absl::Now() < end) {
    if (context->IsCancelled()) {
      cancelled = true;
      break;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  absl::MutexLock lock(&mu_);
  CancelStateResponse& state = sleep_states_[request->token()];
  state.set_cancelled(cancelled);
  state.set_finished(true);
  return cancelled ? grpc::Status(grpc::StatusCode::CANCELLED, "cancelled")
                   : grpc::Status::OK;
}

grpc::Status EchoServiceImpl::GetCancelState(grpc::ServerContext* context,
                                             const CancelStateRequest* request,
                                             CancelStateResponse* response) {
  absl::MutexLock lock(&mu_);
  auto it = sleep_states_.find(request->token());
  if (it != sleep_states_.end()) *response = it->second;
  return grpc::Status::OK;
}

grpc::Status EchoServiceImpl::ReturnStatus(grpc::ServerContext* context,
                                           const StatusRequest* request,
                                           EchoResponse* response) {
  for (const Metadata& m : request->trailers()) {
    context->AddTrailingMetadata(m.key(), m.value());
  }
  return grpc::Status(static_cast<grpc::StatusCode>(request->code()),
                      request->message());
}

absl::StatusOr<std::unique_ptr<EchoServer>> EchoServer::Start(
    const std::string& listen) {
  std::unique_ptr<EchoServer> server(new EchoServer());
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(),
                           &server->port_);
  builder.RegisterService(&server->service_);
  builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
  builder.SetMaxSendMessageSize(kMaxMessageBytes);
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    return absl::UnavailableError("cannot listen on " + listen);
  }
  return server;
}

EchoServer::~EchoServer() {
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
}

grpc::ChannelArguments TestChannelArguments() {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  // Each test channel gets its own connection, so tests that count
  // connections are not fooled by gRPC's subchannel sharing.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return args;
}

}  // namespace meshguard::testing
