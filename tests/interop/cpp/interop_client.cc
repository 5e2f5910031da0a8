// gRPC C++ client of the interop test service: runs the cases of
// docs/interop.md against one server (directly, or through a sidecar's
// outbound listener with --authority naming the route) and prints one line
// per case, "PASS <case> (<ms> ms)" or "FAIL <case>: <what went wrong>".
// Exits 0 when every case passed.
//   interop_client --target 127.0.0.1:PORT [--authority NAME] [--cases a,b]
#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <functional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "tests/interop/cpp/interop_common.h"
#include "tests/interop/proto/test.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:8080", "where to connect (h2c)");
ABSL_FLAG(std::string, authority, "",
          ":authority to send (default: the target); a sidecar routes on it");
ABSL_FLAG(std::string, cases, "all", "comma-separated cases, or all");
ABSL_FLAG(int, deadline_ms, 30000, "deadline of each call");

namespace meshguard::interop {
namespace {

using grpc::ClientContext;
using grpc::StatusCode;
using grpc::testing::Empty;
using grpc::testing::SimpleRequest;
using grpc::testing::SimpleResponse;
using grpc::testing::StreamingInputCallRequest;
using grpc::testing::StreamingInputCallResponse;
using grpc::testing::StreamingOutputCallRequest;
using grpc::testing::StreamingOutputCallResponse;

// Sizes of docs/interop.md (gRPC's interop sizes, the large ones over 1 MiB).
constexpr int kMiB = 1 << 20;
constexpr int kLargeRequest = kMiB + 271828;
constexpr int kLargeResponse = kMiB + 314159;
constexpr int kCompressed = kMiB;
const std::vector<int> kRequestSizes = {27182, 8, 1828, 45904};
const std::vector<int> kResponseSizes = {31415, 9, 2653, 58979};

constexpr char kEchoInitialValue[] = "test_initial_metadata_value";
constexpr char kEchoTrailingValue[] = "\xab\xab\xab";
constexpr char kSpecialMessage[] =
    "\t\ntest with whitespace\r\nand Unicode BMP \u263a and non-BMP "
    "\U0001f608\t\n";

struct Env {
  grpc::testing::TestService::Stub* stub;
  grpc::testing::UnimplementedService::Stub* unimplemented;
  absl::Duration deadline;
};

absl::Status Fail(absl::string_view what) { return absl::InternalError(what); }

absl::Status CallFailed(absl::string_view what, const grpc::Status& s) {
  return Fail(absl::StrCat(what, " failed: ", s.error_code(), " ",
                           absl::CHexEscape(s.error_message())));
}

void SetDeadline(ClientContext* ctx, absl::Duration d) {
  ctx->set_deadline(absl::ToChronoTime(absl::Now() + d));
}

std::string Zeros(int n) { return std::string(n, '\0'); }

absl::Status CheckPayload(absl::string_view what,
                          const grpc::testing::Payload& p, int size) {
  if (static_cast<int>(p.body().size()) != size) {
    return Fail(absl::StrCat(what, ": payload of ", p.body().size(),
                             " bytes, want ", size));
  }
  if (p.body().find_first_not_of('\0') != std::string::npos) {
    return Fail(absl::StrCat(what, ": payload is not all zeros"));
  }
  return absl::OkStatus();
}

std::string NewToken() {
  static std::mt19937_64 rng(std::random_device{}());
  return absl::StrCat("cpp-", rng());
}

std::string Find(const std::multimap<grpc::string_ref, grpc::string_ref>& md,
                 const char* key) {
  auto it = md.find(key);
  if (it == md.end()) return "<absent>";
  return std::string(it->second.data(), it->second.size());
}

// Polls the server's record of the call tagged `token` (an EmptyCall with
// x-interop-query-token) until it is `want`, for up to 5 seconds.
absl::Status WaitForServerState(Env& env, const std::string& token,
                                absl::string_view want) {
  std::string state;
  const absl::Time end = absl::Now() + absl::Seconds(5);
  do {
    ClientContext ctx;
    SetDeadline(&ctx, env.deadline);
    ctx.AddMetadata(kQueryToken, token);
    Empty e;
    grpc::Status s = env.stub->EmptyCall(&ctx, e, &e);
    if (!s.ok()) return CallFailed("the call-state query", s);
    state = Find(ctx.GetServerTrailingMetadata(), kCallState);
    if (state == want) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(50));
  } while (absl::Now() < end);
  return Fail(absl::StrCat("the server's call is \"", state,
                           "\" 5 s later, want \"", want, "\""));
}

absl::Status EmptyUnary(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  Empty response;
  grpc::Status s = env.stub->EmptyCall(&ctx, Empty(), &response);
  if (!s.ok()) return CallFailed("EmptyCall", s);
  if (response.ByteSizeLong() != 0) return Fail("response is not empty");
  return absl::OkStatus();
}

absl::Status LargeUnary(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  SimpleRequest request;
  request.set_response_size(kLargeResponse);
  request.mutable_payload()->set_body(Zeros(kLargeRequest));
  SimpleResponse response;
  grpc::Status s = env.stub->UnaryCall(&ctx, request, &response);
  if (!s.ok()) return CallFailed("UnaryCall", s);
  return CheckPayload("response", response.payload(), kLargeResponse);
}

absl::Status ClientCompressedUnary(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  SimpleRequest request;
  request.mutable_expect_compressed()->set_value(true);
  request.set_response_size(16);
  request.mutable_payload()->set_body(Zeros(kCompressed));
  SimpleResponse response;
  grpc::Status s = env.stub->UnaryCall(&ctx, request, &response);
  if (!s.ok()) return CallFailed("UnaryCall", s);
  return CheckPayload("response", response.payload(), 16);
}

absl::Status ServerCompressedUnary(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  SimpleRequest request;
  request.mutable_response_compressed()->set_value(true);
  request.set_response_size(kCompressed);
  request.mutable_payload()->set_body(Zeros(16));
  SimpleResponse response;
  grpc::Status s = env.stub->UnaryCall(&ctx, request, &response);
  if (!s.ok()) return CallFailed("UnaryCall", s);
  if (!LastMessageGzipped(ctx.c_call())) {
    return Fail("the response did not arrive gzip-compressed");
  }
  return CheckPayload("response", response.payload(), kCompressed);
}

absl::Status ClientStreaming(Env& env, const std::vector<int>& sizes,
                             bool compressed) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  if (compressed) ctx.set_compression_algorithm(GRPC_COMPRESS_GZIP);
  StreamingInputCallResponse response;
  auto writer = env.stub->StreamingInputCall(&ctx, &response);
  int total = 0;
  for (int size : sizes) {
    StreamingInputCallRequest request;
    request.mutable_payload()->set_body(Zeros(size));
    if (compressed) request.mutable_expect_compressed()->set_value(true);
    if (!writer->Write(request)) break;
    total += size;
  }
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  if (!s.ok()) return CallFailed("StreamingInputCall", s);
  if (response.aggregated_payload_size() != total) {
    return Fail(absl::StrCat("aggregated_payload_size ",
                             response.aggregated_payload_size(), ", want ",
                             total));
  }
  return absl::OkStatus();
}

// Reads every response on `stream` (until the server's end) and checks
// them against `sizes`; with `gzipped`, also that each arrived gzipped.
template <typename Stream>
absl::Status ReadResponses(ClientContext& ctx, Stream& stream,
                           const std::vector<int>& sizes, bool gzipped) {
  StreamingOutputCallResponse response;
  size_t i = 0;
  absl::Status problem;
  while (stream.Read(&response)) {
    if (i >= sizes.size()) {
      problem.Update(
          Fail(absl::StrCat("more than ", sizes.size(), " responses")));
    } else {
      problem.Update(CheckPayload(absl::StrCat("response ", i),
                                  response.payload(), sizes[i]));
      if (gzipped && !LastMessageGzipped(ctx.c_call())) {
        problem.Update(Fail(
            absl::StrCat("response ", i, " did not arrive gzip-compressed")));
      }
    }
    ++i;
  }
  if (!problem.ok()) return problem;
  if (i != sizes.size()) {
    return Fail(absl::StrCat(i, " responses, want ", sizes.size()));
  }
  return absl::OkStatus();
}

absl::Status ServerStreaming(Env& env, const std::vector<int>& sizes,
                             bool compressed) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  StreamingOutputCallRequest request;
  for (int size : sizes) {
    auto* p = request.add_response_parameters();
    p->set_size(size);
    if (compressed) p->mutable_compressed()->set_value(true);
  }
  auto reader = env.stub->StreamingOutputCall(&ctx, request);
  absl::Status read = ReadResponses(ctx, *reader, sizes, compressed);
  grpc::Status s = reader->Finish();
  if (!s.ok()) return CallFailed("StreamingOutputCall", s);
  return read;
}

absl::Status PingPong(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  auto stream = env.stub->FullDuplexCall(&ctx);
  for (size_t i = 0; i < kRequestSizes.size(); ++i) {
    StreamingOutputCallRequest request;
    request.add_response_parameters()->set_size(kResponseSizes[i]);
    request.mutable_payload()->set_body(Zeros(kRequestSizes[i]));
    if (!stream->Write(request)) {
      return CallFailed(absl::StrCat("write ", i), stream->Finish());
    }
    StreamingOutputCallResponse response;
    if (!stream->Read(&response)) {
      return CallFailed(absl::StrCat("read ", i), stream->Finish());
    }
    if (absl::Status s = CheckPayload(absl::StrCat("response ", i),
                                      response.payload(), kResponseSizes[i]);
        !s.ok()) {
      ctx.TryCancel();
      return s;
    }
  }
  stream->WritesDone();
  StreamingOutputCallResponse extra;
  if (stream->Read(&extra)) {
    ctx.TryCancel();
    return Fail("a response after the last request");
  }
  grpc::Status s = stream->Finish();
  if (!s.ok()) return CallFailed("FullDuplexCall", s);
  return absl::OkStatus();
}

absl::Status HalfDuplex(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  auto stream = env.stub->HalfDuplexCall(&ctx);
  for (size_t i = 0; i < kRequestSizes.size(); ++i) {
    StreamingOutputCallRequest request;
    request.add_response_parameters()->set_size(kResponseSizes[i]);
    request.mutable_payload()->set_body(Zeros(kRequestSizes[i]));
    if (!stream->Write(request)) break;
  }
  stream->WritesDone();
  absl::Status read = ReadResponses(ctx, *stream, kResponseSizes, false);
  grpc::Status s = stream->Finish();
  if (!s.ok()) return CallFailed("HalfDuplexCall", s);
  return read;
}

absl::Status EmptyStream(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  auto stream = env.stub->FullDuplexCall(&ctx);
  stream->WritesDone();
  StreamingOutputCallResponse response;
  if (stream->Read(&response)) {
    ctx.TryCancel();
    return Fail("a response to no request");
  }
  grpc::Status s = stream->Finish();
  if (!s.ok()) return CallFailed("FullDuplexCall", s);
  return absl::OkStatus();
}

absl::Status CheckEchoedMetadata(absl::string_view what, ClientContext& ctx) {
  std::string initial = Find(ctx.GetServerInitialMetadata(), kEchoInitial);
  std::string trailing = Find(ctx.GetServerTrailingMetadata(), kEchoTrailing);
  if (initial != kEchoInitialValue) {
    return Fail(absl::StrCat(what, ": initial metadata ", kEchoInitial,
                             " is \"", absl::CHexEscape(initial), "\""));
  }
  if (trailing != kEchoTrailingValue) {
    return Fail(absl::StrCat(what, ": trailing metadata ", kEchoTrailing,
                             " is \"", absl::CHexEscape(trailing), "\""));
  }
  return absl::OkStatus();
}

absl::Status CustomMetadata(Env& env) {
  {
    ClientContext ctx;
    SetDeadline(&ctx, env.deadline);
    ctx.AddMetadata(kEchoInitial, kEchoInitialValue);
    ctx.AddMetadata(kEchoTrailing, kEchoTrailingValue);
    SimpleRequest request;
    request.set_response_size(314159);
    request.mutable_payload()->set_body(Zeros(271828));
    SimpleResponse response;
    grpc::Status s = env.stub->UnaryCall(&ctx, request, &response);
    if (!s.ok()) return CallFailed("UnaryCall", s);
    if (absl::Status c = CheckEchoedMetadata("UnaryCall", ctx); !c.ok()) {
      return c;
    }
  }
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  ctx.AddMetadata(kEchoInitial, kEchoInitialValue);
  ctx.AddMetadata(kEchoTrailing, kEchoTrailingValue);
  auto stream = env.stub->FullDuplexCall(&ctx);
  StreamingOutputCallRequest request;
  request.add_response_parameters()->set_size(314159);
  request.mutable_payload()->set_body(Zeros(271828));
  stream->Write(request);
  stream->WritesDone();
  StreamingOutputCallResponse response;
  while (stream->Read(&response)) {
  }
  grpc::Status s = stream->Finish();
  if (!s.ok()) return CallFailed("FullDuplexCall", s);
  return CheckEchoedMetadata("FullDuplexCall", ctx);
}

absl::Status CheckStatus(absl::string_view what, const grpc::Status& s,
                         int code, absl::string_view message) {
  if (s.error_code() != code || s.error_message() != message) {
    return Fail(absl::StrCat(what, ": got ", s.error_code(), " \"",
                             absl::CHexEscape(s.error_message()), "\", want ",
                             code, " \"", absl::CHexEscape(message), "\""));
  }
  return absl::OkStatus();
}

absl::Status UnaryStatus(Env& env, int code, const std::string& message) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  SimpleRequest request;
  request.mutable_response_status()->set_code(code);
  request.mutable_response_status()->set_message(message);
  SimpleResponse response;
  return CheckStatus(absl::StrCat("UnaryCall with status ", code),
                     env.stub->UnaryCall(&ctx, request, &response), code,
                     message);
}

absl::Status DuplexStatus(Env& env, int code, const std::string& message) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  auto stream = env.stub->FullDuplexCall(&ctx);
  StreamingOutputCallRequest request;
  request.mutable_response_status()->set_code(code);
  request.mutable_response_status()->set_message(message);
  stream->Write(request);
  stream->WritesDone();
  StreamingOutputCallResponse response;
  while (stream->Read(&response)) {
  }
  return CheckStatus(absl::StrCat("FullDuplexCall with status ", code),
                     stream->Finish(), code, message);
}

absl::Status StatusCodeAndMessage(Env& env) {
  std::vector<std::string> problems;
  for (int code = 1; code <= 16; ++code) {
    const std::string message = absl::StrCat("test status message ", code);
    if (absl::Status s = UnaryStatus(env, code, message); !s.ok()) {
      problems.push_back(std::string(s.message()));
    }
    if (absl::Status s = DuplexStatus(env, code, message); !s.ok()) {
      problems.push_back(std::string(s.message()));
    }
  }
  if (!problems.empty()) return Fail(absl::StrJoin(problems, "; "));
  return absl::OkStatus();
}

absl::Status SpecialStatusMessage(Env& env) {
  return UnaryStatus(env, 2, kSpecialMessage);
}

absl::Status UnimplementedMethod(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  Empty response;
  grpc::Status s = env.stub->UnimplementedCall(&ctx, Empty(), &response);
  if (s.error_code() != StatusCode::UNIMPLEMENTED) {
    return CallFailed("UnimplementedCall (want UNIMPLEMENTED)", s);
  }
  return absl::OkStatus();
}

absl::Status UnimplementedService(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  Empty response;
  grpc::Status s =
      env.unimplemented->UnimplementedCall(&ctx, Empty(), &response);
  if (s.error_code() != StatusCode::UNIMPLEMENTED) {
    return CallFailed("UnimplementedService (want UNIMPLEMENTED)", s);
  }
  return absl::OkStatus();
}

absl::Status CancelAfterBegin(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  const std::string token = NewToken();
  ctx.AddMetadata(kToken, token);
  StreamingInputCallResponse response;
  auto writer = env.stub->StreamingInputCall(&ctx, &response);
  // The call has begun at the server: it holds the stream, waiting for a
  // message.
  if (absl::Status s = WaitForServerState(env, token, "running"); !s.ok()) {
    ctx.TryCancel();
    return s;
  }
  ctx.TryCancel();
  grpc::Status s = writer->Finish();
  if (s.error_code() != StatusCode::CANCELLED) {
    return CallFailed("StreamingInputCall (want CANCELLED)", s);
  }
  return WaitForServerState(env, token, "cancelled");
}

absl::Status CancelAfterFirstResponse(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, env.deadline);
  const std::string token = NewToken();
  ctx.AddMetadata(kToken, token);
  auto stream = env.stub->FullDuplexCall(&ctx);
  StreamingOutputCallRequest request;
  request.add_response_parameters()->set_size(31415);
  request.mutable_payload()->set_body(Zeros(27182));
  stream->Write(request);
  StreamingOutputCallResponse response;
  if (!stream->Read(&response)) {
    return CallFailed("FullDuplexCall's first response", stream->Finish());
  }
  ctx.TryCancel();
  grpc::Status s = stream->Finish();
  if (s.error_code() != StatusCode::CANCELLED) {
    return CallFailed("FullDuplexCall (want CANCELLED)", s);
  }
  return WaitForServerState(env, token, "cancelled");
}

absl::Status TimeoutOnSleepingServer(Env& env) {
  ClientContext ctx;
  SetDeadline(&ctx, absl::Seconds(1));
  const std::string token = NewToken();
  ctx.AddMetadata(kToken, token);
  auto stream = env.stub->FullDuplexCall(&ctx);
  StreamingOutputCallRequest request;
  request.mutable_payload()->set_body(Zeros(27182));
  stream->Write(request);
  StreamingOutputCallResponse response;
  while (stream->Read(&response)) {
  }
  grpc::Status s = stream->Finish();
  if (s.error_code() != StatusCode::DEADLINE_EXCEEDED) {
    return CallFailed("FullDuplexCall (want DEADLINE_EXCEEDED)", s);
  }
  return WaitForServerState(env, token, "cancelled");
}

const std::vector<std::pair<std::string, std::function<absl::Status(Env&)>>>&
Cases() {
  static const auto* cases = new std::vector<
      std::pair<std::string, std::function<absl::Status(Env&)>>>{
      {"empty_unary", EmptyUnary},
      {"large_unary", LargeUnary},
      {"client_streaming",
       [](Env& e) { return ClientStreaming(e, kRequestSizes, false); }},
      {"server_streaming",
       [](Env& e) { return ServerStreaming(e, kResponseSizes, false); }},
      {"ping_pong", PingPong},
      {"half_duplex", HalfDuplex},
      {"empty_stream", EmptyStream},
      {"custom_metadata", CustomMetadata},
      {"status_code_and_message", StatusCodeAndMessage},
      {"special_status_message", SpecialStatusMessage},
      {"unimplemented_method", UnimplementedMethod},
      {"unimplemented_service", UnimplementedService},
      {"cancel_after_begin", CancelAfterBegin},
      {"cancel_after_first_response", CancelAfterFirstResponse},
      {"timeout_on_sleeping_server", TimeoutOnSleepingServer},
      {"client_compressed_unary", ClientCompressedUnary},
      {"server_compressed_unary", ServerCompressedUnary},
      {"client_compressed_streaming",
       [](Env& e) {
         return ClientStreaming(e, {kCompressed / 2, kCompressed / 2}, true);
       }},
      {"server_compressed_streaming",
       [](Env& e) {
         return ServerStreaming(e, {kCompressed / 2, kCompressed / 2}, true);
       }},
  };
  return *cases;
}

int Run() {
  grpc::ChannelArguments args;
  if (!absl::GetFlag(FLAGS_authority).empty()) {
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, absl::GetFlag(FLAGS_authority));
  }
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  auto channel = grpc::CreateCustomChannel(
      absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials(), args);
  auto stub = grpc::testing::TestService::NewStub(channel);
  auto unimplemented = grpc::testing::UnimplementedService::NewStub(channel);
  Env env{stub.get(), unimplemented.get(),
          absl::Milliseconds(absl::GetFlag(FLAGS_deadline_ms))};

  std::vector<std::string> wanted;
  if (absl::GetFlag(FLAGS_cases) == "all") {
    for (const auto& [name, fn] : Cases()) wanted.push_back(name);
  } else {
    wanted = absl::StrSplit(absl::GetFlag(FLAGS_cases), ',', absl::SkipEmpty());
  }
  int failed = 0;
  for (const std::string& name : wanted) {
    const std::function<absl::Status(Env&)>* fn = nullptr;
    for (const auto& c : Cases()) {
      if (c.first == name) fn = &c.second;
    }
    absl::Status result = fn == nullptr ? Fail("no such case in the C++ client")
                                        : absl::OkStatus();
    const absl::Time start = absl::Now();
    if (fn != nullptr) result = (*fn)(env);
    if (result.ok()) {
      printf("PASS %s (%lld ms)\n", name.c_str(),
             static_cast<long long>(
                 absl::ToInt64Milliseconds(absl::Now() - start)));
    } else {
      ++failed;
      printf("FAIL %s: %s\n", name.c_str(),
             std::string(result.message()).c_str());
    }
    fflush(stdout);
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace
}  // namespace meshguard::interop

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return meshguard::interop::Run();
}
