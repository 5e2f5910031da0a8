// gRPC traffic through two real sidecars:
//   test client --h2c--> sidecar a (outbound) ==mTLS==> sidecar b (inbound)
//   --h2c--> echo_server
// Every call shape, metadata and trailers, deadlines and cancels seen by the
// app, large messages, many concurrent streams, a slow consumer, and the
// proxy's own UNAVAILABLE replies.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/sidecar_fixture.h"
#include "tests/integration/testing/process.h"
#include "tests/testing/echo.grpc.pb.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::CancelStateRequest;
using ::meshguard::testing::CancelStateResponse;
using ::meshguard::testing::EchoRequest;
using ::meshguard::testing::EchoResponse;
using ::meshguard::testing::SleepRequest;
using ::meshguard::testing::SleepResponse;
using ::meshguard::testing::StatusRequest;

constexpr char kEchoAuthority[] = "echo.svc";
constexpr char kDownAuthority[] = "down.svc";

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

// The value of `key` in the metadata the app saw; nullopt if absent.
std::optional<std::string> SeenMetadata(const EchoResponse& response,
                                        const std::string& key) {
  for (const auto& m : response.request_metadata()) {
    if (m.key() == key) return m.value();
  }
  return std::nullopt;
}

std::optional<std::string> Find(
    const std::multimap<grpc::string_ref, grpc::string_ref>& metadata,
    const std::string& key) {
  auto it = metadata.find(key);
  if (it == metadata.end()) return std::nullopt;
  return std::string(it->second.data(), it->second.size());
}

class SidecarTrafficTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    absl::Status s = StartMesh();
    if (!s.ok()) {
      setup_error_ = new std::string(s.ToString());
      if (mesh_ != nullptr) {
        absl::StrAppend(setup_error_, "\n", mesh_->DescribeAll());
      }
    }
  }
  static absl::Status StartMesh() {
    absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("traffic");
    if (!mesh.ok()) return mesh.status();
    mesh_ = mesh->release();
    absl::StatusOr<EchoApp*> app = mesh_->StartEchoServer();
    if (!app.ok()) return app.status();
    SidecarSpec b_spec;
    b_spec.name = "server";
    b_spec.app = (*app)->address();
    absl::StatusOr<Sidecar*> b = mesh_->StartSidecar(b_spec);
    if (!b.ok()) return b.status();
    absl::StatusOr<int> closed = meshguard::testing::PickFreePort();
    if (!closed.ok()) return closed.status();
    SidecarSpec a_spec;
    a_spec.name = "client";
    a_spec.routes = {RouteTo(kEchoAuthority, **b),
                     absl::StrCat(kDownAuthority, "=127.0.0.1:", *closed)};
    absl::StatusOr<Sidecar*> a = mesh_->StartSidecar(a_spec);
    if (!a.ok()) return a.status();
    client_sidecar_ = *a;
    server_sidecar_ = *b;
    return absl::OkStatus();
  }
  static void TearDownTestSuite() {
    delete mesh_;
    mesh_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }

  void SetUp() override {
    ASSERT_EQ(setup_error_, nullptr) << *setup_error_;
    stub_ = client_sidecar_->Stub(kEchoAuthority);
  }
  void TearDown() override {
    if (HasFailure()) {
      fprintf(stderr, "%s\n", mesh_->DescribeAll(2000).c_str());
    }
  }

  // Polls GetCancelState(token) until the Sleep call has finished.
  CancelStateResponse WaitForSleepEnd(const std::string& token) {
    CancelStateResponse state;
    meshguard::testing::WaitFor(
        [&] {
          grpc::ClientContext context;
          context.set_deadline(DeadlineIn(absl::Seconds(2)));
          CancelStateRequest request;
          request.set_token(token);
          state.Clear();
          return stub_->GetCancelState(&context, request, &state).ok() &&
                 state.finished();
        },
        absl::Seconds(5), absl::Milliseconds(50));
    return state;
  }

  static Mesh* mesh_;
  static Sidecar* client_sidecar_;
  static Sidecar* server_sidecar_;
  static std::string* setup_error_;
  std::unique_ptr<meshguard::testing::Echo::Stub> stub_;
};

Mesh* SidecarTrafficTest::mesh_ = nullptr;
Sidecar* SidecarTrafficTest::client_sidecar_ = nullptr;
Sidecar* SidecarTrafficTest::server_sidecar_ = nullptr;
std::string* SidecarTrafficTest::setup_error_ = nullptr;

TEST_F(SidecarTrafficTest, UnaryCallGetsThroughWithInitialMetadata) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  EchoRequest request;
  request.set_payload("hello");
  EchoResponse response;
  grpc::Status status = stub_->Echo(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_EQ(response.payload(), "hello");
  EXPECT_EQ(Find(context.GetServerInitialMetadata(), "echo-initial"),
            "present");
  // grpc-timeout crossed both sidecars: the app saw a deadline.
  EXPECT_GT(response.deadline_remaining_ms(), 5000);
  EXPECT_LE(response.deadline_remaining_ms(), 10000);
}

TEST_F(SidecarTrafficTest, ServerStreamingDeliversEveryMessageAndTrailers) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  context.AddMetadata("x-stream", "server");
  EchoRequest request;
  request.set_response_count(100);
  request.set_response_size(1000);
  auto reader = stub_->ServerStream(&context, request);
  EchoResponse response;
  int count = 0;
  while (reader->Read(&response)) {
    EXPECT_EQ(response.message_count(), count);
    EXPECT_EQ(response.payload().size(), 1000u);
    ++count;
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(count, 100);
  EXPECT_EQ(Find(context.GetServerTrailingMetadata(), "echoed-x-stream"),
            "server");
}

TEST_F(SidecarTrafficTest, ClientStreamingDeliversEveryMessage) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  EchoResponse response;
  auto writer = stub_->ClientStream(&context, &response);
  for (int i = 0; i < 100; ++i) {
    EchoRequest request;
    request.set_payload(absl::StrCat("message ", i));
    ASSERT_TRUE(writer->Write(request)) << "write " << i;
  }
  ASSERT_TRUE(writer->WritesDone());
  grpc::Status status = writer->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.message_count(), 100);
  EXPECT_EQ(response.payload(), "message 99");
}

TEST_F(SidecarTrafficTest, BidiStreamingPingPong) {
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  context.AddMetadata("x-stream", "bidi");
  auto stream = stub_->BidiStream(&context);
  for (int i = 0; i < 50; ++i) {
    EchoRequest request;
    request.set_payload(absl::StrCat("ping ", i));
    ASSERT_TRUE(stream->Write(request)) << "write " << i;
    EchoResponse response;
    ASSERT_TRUE(stream->Read(&response)) << "read " << i;
    EXPECT_EQ(response.payload(), absl::StrCat("ping ", i));
    EXPECT_EQ(response.message_count(), i);
  }
  ASSERT_TRUE(stream->WritesDone());
  EchoResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Find(context.GetServerTrailingMetadata(), "echoed-x-stream"),
            "bidi");
}

TEST_F(SidecarTrafficTest, TextAndBinaryMetadataArriveBothWays) {
  const std::string binary("\x00\x01\x7f\x80\xfe\xff", 6);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  context.AddMetadata("x-text", "hello, world; a=b");
  context.AddMetadata("x-data-bin", binary);
  EchoRequest request;
  request.set_payload("metadata");
  EchoResponse response;
  grpc::Status status = stub_->Echo(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(SeenMetadata(response, "x-text"), "hello, world; a=b");
  EXPECT_EQ(SeenMetadata(response, "x-data-bin"), binary);
  // Echoed back as trailers: the trailer path carries both kinds too.
  const auto& trailers = context.GetServerTrailingMetadata();
  EXPECT_EQ(Find(trailers, "echoed-x-text"), "hello, world; a=b");
  EXPECT_EQ(Find(trailers, "echoed-x-data-bin"), binary);
}

TEST_F(SidecarTrafficTest, StatusMessageAndTrailersOfAFailedCallArrive) {
  const std::string binary("\xde\xad\x00\xbe\xef", 5);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  StatusRequest request;
  request.set_code(grpc::StatusCode::FAILED_PRECONDITION);
  request.set_message("order 42 is closed: 100% sure");
  auto* t = request.add_trailers();
  t->set_key("x-reason");
  t->set_value("closed");
  t = request.add_trailers();
  t->set_key("x-detail-bin");
  t->set_value(binary);
  EchoResponse response;
  grpc::Status status = stub_->ReturnStatus(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(status.error_message(), "order 42 is closed: 100% sure");
  EXPECT_EQ(Find(context.GetServerTrailingMetadata(), "x-reason"), "closed");
  EXPECT_EQ(Find(context.GetServerTrailingMetadata(), "x-detail-bin"), binary);
}

TEST_F(SidecarTrafficTest, DeadlineExceededArrivesOnTimeAndAppSeesCancel) {
  const std::string token = "deadline-1";
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Milliseconds(500)));
  SleepRequest request;
  request.set_token(token);
  request.set_sleep_ms(5000);
  SleepResponse response;
  const absl::Time start = absl::Now();
  grpc::Status status = stub_->Sleep(&context, request, &response);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << status.error_message();
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Milliseconds(1500));
  CancelStateResponse state = WaitForSleepEnd(token);
  EXPECT_TRUE(state.started());
  EXPECT_TRUE(state.finished()) << "the app's Sleep never ended early";
  EXPECT_TRUE(state.cancelled()) << "the app did not see the deadline/cancel";
}

TEST_F(SidecarTrafficTest, ClientCancelReachesTheApp) {
  const std::string token = "cancel-1";
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(20)));
  grpc::Status status;
  std::thread caller([&] {
    SleepRequest request;
    request.set_token(token);
    request.set_sleep_ms(10000);
    SleepResponse response;
    status = stub_->Sleep(&context, request, &response);
  });
  // Cancel once the app is inside the call.
  const bool started = meshguard::testing::WaitFor(
      [&] {
        grpc::ClientContext c;
        c.set_deadline(DeadlineIn(absl::Seconds(2)));
        CancelStateRequest r;
        r.set_token(token);
        CancelStateResponse s;
        return stub_->GetCancelState(&c, r, &s).ok() && s.started();
      },
      absl::Seconds(5), absl::Milliseconds(20));
  const absl::Time cancel_at = absl::Now();
  context.TryCancel();
  caller.join();
  EXPECT_TRUE(started);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  CancelStateResponse state = WaitForSleepEnd(token);
  EXPECT_TRUE(state.finished());
  EXPECT_TRUE(state.cancelled()) << "the app did not see the cancel";
  // The app stopped well before its 10 s sleep would have ended.
  EXPECT_LT(absl::Now() - cancel_at, absl::Seconds(6));
}

TEST_F(SidecarTrafficTest, EightMebibyteMessagesBothWays) {
  std::string payload(8 << 20, '\0');
  for (size_t i = 0; i < payload.size(); ++i) {
    payload[i] = static_cast<char>((i * 131) % 251);
  }
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(30)));
  EchoRequest request;
  request.set_payload(payload);
  EchoResponse response;
  grpc::Status status = stub_->Echo(&context, request, &response);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_EQ(response.payload().size(), payload.size());
  EXPECT_TRUE(response.payload() == payload) << "payload corrupted";

  // And 8 MiB coming back for a small request, on a server stream.
  grpc::ClientContext stream_context;
  stream_context.set_deadline(DeadlineIn(absl::Seconds(30)));
  EchoRequest stream_request;
  stream_request.set_response_count(2);
  stream_request.set_response_size(8 << 20);
  auto reader = stub_->ServerStream(&stream_context, stream_request);
  int count = 0;
  EchoResponse part;
  while (reader->Read(&part)) {
    EXPECT_EQ(part.payload().size(), static_cast<size_t>(8 << 20));
    ++count;
  }
  grpc::Status stream_status = reader->Finish();
  EXPECT_TRUE(stream_status.ok()) << stream_status.error_message();
  EXPECT_EQ(count, 2);
}

TEST_F(SidecarTrafficTest, ThousandConcurrentStreamsOnOneConnectionSucceed) {
  constexpr int kCalls = 1000;
  // One channel, one subchannel (TestChannelArguments' local pool): every
  // call is a stream on the same HTTP/2 connection to sidecar a.
  std::shared_ptr<grpc::Channel> channel =
      client_sidecar_->Channel(kEchoAuthority);
  auto stub = meshguard::testing::Echo::NewStub(channel);
  ASSERT_TRUE(channel->WaitForConnected(DeadlineIn(absl::Seconds(5))));
  struct Call {
    grpc::ClientContext context;
    EchoResponse response;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<EchoResponse>> rpc;
  };
  grpc::CompletionQueue cq;
  std::vector<std::unique_ptr<Call>> calls;
  for (int i = 0; i < kCalls; ++i) {
    auto call = std::make_unique<Call>();
    call->context.set_deadline(DeadlineIn(absl::Seconds(40)));
    EchoRequest request;
    request.set_payload(absl::StrCat("call ", i));
    call->rpc = stub->AsyncEcho(&call->context, request, &cq);
    call->rpc->Finish(&call->response, &call->status,
                      reinterpret_cast<void*>(static_cast<intptr_t>(i)));
    calls.push_back(std::move(call));
  }
  int done = 0;
  int failed = 0;
  std::string first_error;
  void* tag = nullptr;
  bool ok = false;
  while (done < kCalls && cq.Next(&tag, &ok)) {
    const int i = static_cast<int>(reinterpret_cast<intptr_t>(tag));
    ++done;
    const Call& call = *calls[i];
    if (!call.status.ok() ||
        call.response.payload() != absl::StrCat("call ", i)) {
      if (++failed == 1) {
        first_error = absl::StrCat("call ", i, ": ", call.status.error_code(),
                                   " ", call.status.error_message());
      }
    }
  }
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  EXPECT_EQ(done, kCalls);
  EXPECT_EQ(failed, 0) << first_error;
}

TEST_F(SidecarTrafficTest, SlowConsumerDoesNotGrowSidecarMemory) {
  const int64_t a_before = client_sidecar_->RssBytes();
  const int64_t b_before = server_sidecar_->RssBytes();
  ASSERT_GT(a_before, 0);
  ASSERT_GT(b_before, 0);
  // 4,000 x 64 KiB = 250 MiB offered by the app, read at a trickle: only
  // flow control stands between that and the sidecars' heaps.
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(40)));
  EchoRequest request;
  request.set_response_count(4000);
  request.set_response_size(64 << 10);
  auto reader = stub_->ServerStream(&context, request);
  EchoResponse response;
  int read = 0;
  int64_t a_peak = a_before;
  int64_t b_peak = b_before;
  const absl::Time end = absl::Now() + absl::Seconds(4);
  while (absl::Now() < end) {
    if (!reader->Read(&response)) break;
    ++read;
    a_peak = std::max(a_peak, client_sidecar_->RssBytes());
    b_peak = std::max(b_peak, server_sidecar_->RssBytes());
    absl::SleepFor(absl::Milliseconds(100));
  }
  context.TryCancel();
  while (reader->Read(&response)) {
  }
  reader->Finish().error_code();
  EXPECT_GE(read, 10) << "the stream did not flow at all";
  EXPECT_LT(read, 4000);
  constexpr int64_t kBound = 64 << 20;
  EXPECT_LT(a_peak - a_before, kBound)
      << "client-side sidecar RSS " << a_before << " -> " << a_peak;
  EXPECT_LT(b_peak - b_before, kBound)
      << "server-side sidecar RSS " << b_before << " -> " << b_peak;
  // And the path still works afterwards.
  grpc::ClientContext after;
  after.set_deadline(DeadlineIn(absl::Seconds(10)));
  EchoRequest small;
  small.set_payload("after");
  EchoResponse echoed;
  grpc::Status status = stub_->Echo(&after, small, &echoed);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(SidecarTrafficTest, UnknownAuthorityGetsUnavailableNoRoute) {
  auto stub = client_sidecar_->Stub("nobody.svc");
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  EchoRequest request;
  EchoResponse response;
  grpc::Status status = stub->Echo(&context, request, &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "no route"))
      << status.error_message();
}

TEST_F(SidecarTrafficTest, UpstreamDownGetsUnavailableConnectFailureQuickly) {
  auto stub = client_sidecar_->Stub(kDownAuthority);
  grpc::ClientContext context;
  context.set_deadline(DeadlineIn(absl::Seconds(10)));
  EchoRequest request;
  EchoResponse response;
  const absl::Time start = absl::Now();
  grpc::Status status = stub->Echo(&context, request, &response);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "connect failure"))
      << status.error_message();
  EXPECT_LT(took, absl::Seconds(2));
}

}  // namespace
}  // namespace meshguard::integration
