// The forwarding state machine against fake transports (no sockets):
// test client session <-> proxy downstream session | StreamPair | proxy
// upstream session <-> test server session, with bytes moved by Pump().
#include "sidecar/proxy/stream_pair.h"

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/proxy/headers.h"
#include "sidecar/proxy/http2_session.h"
#include "tests/sidecar/proxy/testing/fake_h2.h"

namespace meshguard::sidecar::proxy {
namespace {

using ::meshguard::sidecar::proxy::testing::FakeDispatcher;
using ::meshguard::sidecar::proxy::testing::FakeTransport;
using ::meshguard::sidecar::proxy::testing::Get;
using ::meshguard::sidecar::proxy::testing::RecordingStream;

class StaticRouter final : public Router {
 public:
  absl::StatusOr<UpstreamTarget> Route(const RequestInfo& r) override {
    if (r.authority == "nowhere") return absl::NotFoundError("unknown host");
    return UpstreamTarget{"10.0.0.1:80", "", false};
  }
};

class DenyingFilter final : public RequestFilter {
 public:
  absl::Status OnRequest(const RequestInfo& r, HeaderList& h) override {
    if (r.path == "/deny/Me") {
      return absl::PermissionDeniedError("rule no-way: caller not allowed");
    }
    h.push_back({"x-added", "yes"});
    return absl::OkStatus();
  }
};

class ForwarderTest : public ::testing::Test,
                      public UpstreamConnector,
                      public SessionCallbacks {
 protected:
  // Server-role callbacks for the test server and the proxy downstream
  // are told apart by these small adapters.
  struct Callbacks final : SessionCallbacks {
    std::function<StreamHandler*(int32_t)> new_stream;
    StreamHandler* OnNewStream(int32_t id) override {
      return new_stream ? new_stream(id) : nullptr;
    }
    void OnSessionDone(absl::Status) override { done = true; }
    bool done = false;
  };

  void SetUp() override {
    client_ = Http2Session::Create(Http2Session::Role::kClient, &client_out_,
                                   &client_cbs_)
                  .value();
    proxy_down_ = Http2Session::Create(Http2Session::Role::kServer,
                                       &proxy_down_out_, &proxy_down_cbs_)
                      .value();
    proxy_up_ = Http2Session::Create(Http2Session::Role::kClient,
                                     &proxy_up_out_, &proxy_up_cbs_)
                    .value();
    server_ = Http2Session::Create(Http2Session::Role::kServer, &server_out_,
                                   &server_cbs_)
                  .value();
    context_.dispatcher = &dispatcher_;
    context_.router = &router_;
    context_.filter = &filter_;
    context_.connector = this;
    context_.counters = &counters_;
    context_.peer_identity = "spiffe://td/ns/a/sa/b";
    proxy_down_cbs_.new_stream = [this](int32_t id) {
      last_pair_ = new StreamPair(context_, proxy_down_.get(), id);
      return last_pair_->downstream_handler();
    };
    server_cbs_.new_stream = [this](int32_t id) {
      auto s = std::make_unique<RecordingStream>();
      s->BindTo(server_.get(), id);
      server_streams_[id] = std::move(s);
      return server_streams_[id].get();
    };
    Pump();
  }

  void TearDown() override {
    // Pairs still open learn that their sessions are gone, then are freed
    // while the counters they touch still exist.
    client_.reset();
    proxy_down_.reset();
    proxy_up_.reset();
    server_.reset();
    while (dispatcher_.RunOnce()) {
    }
  }

  // UpstreamConnector.
  void Acquire(const UpstreamTarget&, UpstreamWaiter* waiter) override {
    ++acquires_;
    if (!upstream_failure_.ok()) {
      waiter->OnUpstreamFailure(upstream_failure_);
    } else {
      waiter->OnUpstreamReady(proxy_up_.get());
    }
  }
  void CancelAcquire(UpstreamWaiter*) override {}
  // Unused SessionCallbacks base (keeps the fixture simple).
  StreamHandler* OnNewStream(int32_t) override { return nullptr; }
  void OnSessionDone(absl::Status) override {}

  // Moves bytes between the four sessions until nothing changes.
  void Pump() {
    for (int round = 0; round < 10000; ++round) {
      bool moved = false;
      moved |= Move(client_out_, proxy_down_.get(), client_.get(), true);
      moved |= Move(proxy_down_out_, client_.get(), proxy_down_.get(),
                    client_reads_);
      moved |= Move(proxy_up_out_, server_.get(), proxy_up_.get(), true);
      moved |= Move(server_out_, proxy_up_.get(), server_.get(), true);
      moved |= dispatcher_.RunOnce();
      if (!moved) return;
    }
    FAIL() << "Pump did not settle";
  }
  static bool Move(FakeTransport& from, Http2Session* to, Http2Session* writer,
                   bool reading) {
    if (from.out.empty() || !reading) return false;
    std::string bytes;
    bytes.swap(from.out);
    to->Receive(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size())
        .IgnoreError();
    writer->OnWriteDrained();
    return true;
  }

  // Client-side streams live as long as the client session.
  RecordingStream& NewCall() {
    client_streams_.push_back(std::make_unique<RecordingStream>());
    return *client_streams_.back();
  }

  int32_t StartCall(RecordingStream& s, HeaderList headers, bool has_body) {
    int32_t id = client_->SubmitRequest(headers, &s, has_body).value();
    s.BindTo(client_.get(), id);
    client_->Flush();
    return id;
  }

  static HeaderList GrpcRequest(const std::string& path,
                                const std::string& authority = "svc") {
    return {{":method", "POST"},
            {":scheme", "http"},
            {":path", path},
            {":authority", authority},
            {"content-type", "application/grpc"},
            {"te", "trailers"}};
  }

  RecordingStream* OnlyServerStream() {
    EXPECT_EQ(server_streams_.size(), 1u);
    return server_streams_.empty() ? nullptr
                                   : server_streams_.begin()->second.get();
  }

  FakeDispatcher dispatcher_;
  StaticRouter router_;
  DenyingFilter filter_;
  Counters counters_;
  DownstreamContext context_;
  FakeTransport client_out_, proxy_down_out_, proxy_up_out_, server_out_;
  Callbacks client_cbs_, proxy_down_cbs_, proxy_up_cbs_, server_cbs_;
  std::unique_ptr<Http2Session> client_, proxy_down_, proxy_up_, server_;
  std::map<int32_t, std::unique_ptr<RecordingStream>> server_streams_;
  std::vector<std::unique_ptr<RecordingStream>> client_streams_;
  StreamPair* last_pair_ = nullptr;
  absl::Status upstream_failure_;
  int acquires_ = 0;
  bool client_reads_ = true;
};

TEST_F(ForwarderTest, HeadersDataAndTrailersPassBothWays) {
  RecordingStream& call = NewCall();
  HeaderList req = GrpcRequest("/pkg.Svc/Method");
  const std::string bin = "AAEC/w";  // base64 as gRPC puts -bin on the wire
  req.push_back({"x-meta-bin", bin});
  req.push_back({"grpc-timeout", "5S"});
  req.push_back({"x-plain", "v"});
  call.to_send = "request-bytes";
  call.end_body = true;
  StartCall(call, req, /*has_body=*/true);
  Pump();

  RecordingStream* server = OnlyServerStream();
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(Get(server->headers, ":path"), "/pkg.Svc/Method");
  EXPECT_EQ(Get(server->headers, "x-meta-bin"), bin);
  EXPECT_EQ(Get(server->headers, "grpc-timeout"), "5S");
  EXPECT_EQ(Get(server->headers, "te"), "trailers");
  EXPECT_EQ(Get(server->headers, "x-added"), "yes");  // the filter's
  EXPECT_EQ(server->data, "request-bytes");
  EXPECT_TRUE(server->ended);

  const int32_t sid = server_streams_.begin()->first;
  server->to_send = "response-bytes";
  server->end_body = true;
  server->send_trailers = {{"grpc-status", "0"}, {"x-trailer-bin", "3q2+7w"}};
  ASSERT_TRUE(server_
                  ->SubmitResponse(sid,
                                   {{":status", "200"},
                                    {"content-type", "application/grpc"},
                                    {"x-resp", "r"}},
                                   true)
                  .ok());
  Pump();
  EXPECT_EQ(Get(call.headers, ":status"), "200");
  EXPECT_EQ(Get(call.headers, "x-resp"), "r");
  EXPECT_EQ(call.data, "response-bytes");
  EXPECT_EQ(Get(call.trailers, "grpc-status"), "0");
  EXPECT_EQ(Get(call.trailers, "x-trailer-bin"), "3q2+7w");
  EXPECT_TRUE(call.closed);
  EXPECT_EQ(call.close_code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(counters_.requests_completed.Get(), 1u);
  EXPECT_EQ(counters_.streams_active.Get(), 0u);  // the pair is gone
}

TEST_F(ForwarderTest, TrailersOnlyResponsePasses) {
  RecordingStream& call = NewCall();
  call.end_body = true;
  StartCall(call, GrpcRequest("/pkg.Svc/Fail"), true);
  Pump();
  const int32_t sid = server_streams_.begin()->first;
  ASSERT_TRUE(server_
                  ->SubmitResponse(sid,
                                   {{":status", "200"},
                                    {"content-type", "application/grpc"},
                                    {"grpc-status", "5"},
                                    {"grpc-message", "not found"}},
                                   false)
                  .ok());
  Pump();
  EXPECT_EQ(Get(call.headers, "grpc-status"), "5");
  EXPECT_EQ(Get(call.headers, "grpc-message"), "not found");
  EXPECT_TRUE(call.ended);
  EXPECT_TRUE(call.closed);
}

TEST(HeadersTest, HopByHopFieldsAreDropped) {
  HeaderList h = {{":path", "/x"},
                  {"connection", "close"},
                  {"keep-alive", "5"},
                  {"proxy-connection", "x"},
                  {"transfer-encoding", "chunked"},
                  {"upgrade", "h2c"},
                  {"te", "gzip"},
                  {"x-keep", "1"}};
  RemoveHopByHop(h);
  ASSERT_EQ(h.size(), 2u);
  EXPECT_EQ(h[0].name, ":path");
  EXPECT_EQ(h[1].name, "x-keep");
  HeaderList te = {{"te", "trailers"}};
  RemoveHopByHop(te);
  EXPECT_EQ(te.size(), 1u);
}

TEST(HeadersTest, GrpcMessageIsPercentEncoded) {
  EXPECT_EQ(PercentEncodeGrpcMessage("ok text"), "ok text");
  EXPECT_EQ(PercentEncodeGrpcMessage("100%\n\xe2\x9c\x93"),
            "100%25%0A%E2%9C%93");
  HeaderList h = GrpcTrailersOnly(absl::StatusCode::kUnavailable, "a%b");
  EXPECT_EQ(Get(h, ":status"), "200");
  EXPECT_EQ(Get(h, "content-type"), "application/grpc");
  EXPECT_EQ(Get(h, "grpc-status"), "14");
  EXPECT_EQ(Get(h, "grpc-message"), "a%25b");
}

TEST_F(ForwarderTest, SlowReaderStopsWindowUpdatesAndBoundsMemory) {
  RecordingStream& call = NewCall();
  call.end_body = true;
  StartCall(call, GrpcRequest("/pkg.Svc/Download"), true);
  Pump();
  RecordingStream* server = OnlyServerStream();
  ASSERT_NE(server, nullptr);
  const int32_t sid = server_streams_.begin()->first;
  constexpr size_t kBody = 8 << 20;  // far more than all windows together
  server->to_send = std::string(kBody, 'd');
  server->end_body = true;
  server->send_trailers = {{"grpc-status", "0"}};
  ASSERT_TRUE(server_->SubmitResponse(sid, {{":status", "200"}}, true).ok());

  client_reads_ = false;  // the client stops reading its socket
  Pump();
  // The server is stuck: the proxy stopped crediting its window.
  EXPECT_EQ(server_->StreamSendWindow(sid), 0);
  const size_t sent_by_server = kBody - server->to_send.size();
  // Held by the proxy: at most one stream window in the pair plus what the
  // downstream transport holds (bounded by the watermark and a frame).
  ASSERT_NE(last_pair_, nullptr);
  EXPECT_LE(last_pair_->buffered_response_bytes(),
            static_cast<size_t>(kStreamWindow));
  EXPECT_LE(proxy_down_out_.out.size(), kWriteHighWatermark + 16 * 1024 + 64);
  EXPECT_LT(sent_by_server, 2u * kStreamWindow + kWriteHighWatermark * 2);
  EXPECT_LT(call.data.size(), 1u);

  client_reads_ = true;  // it reads again: everything flows
  Pump();
  EXPECT_EQ(call.data.size(), kBody);
  EXPECT_EQ(Get(call.trailers, "grpc-status"), "0");
  EXPECT_TRUE(call.closed);
}

TEST_F(ForwarderTest, ClientResetCancelsUpstream) {
  RecordingStream& call = NewCall();
  const int32_t id = StartCall(call, GrpcRequest("/pkg.Svc/Long"), true);
  Pump();
  RecordingStream* server = OnlyServerStream();
  ASSERT_NE(server, nullptr);
  client_->SubmitRst(id, NGHTTP2_CANCEL);
  Pump();
  EXPECT_TRUE(server->closed);
  EXPECT_EQ(server->close_code, NGHTTP2_CANCEL);
  EXPECT_EQ(counters_.requests_downstream_reset.Get(), 1u);
  EXPECT_EQ(counters_.streams_active.Get(), 0u);
}

TEST_F(ForwarderTest, UpstreamResetReachesClient) {
  RecordingStream& call = NewCall();
  StartCall(call, GrpcRequest("/pkg.Svc/Long"), true);
  Pump();
  const int32_t sid = server_streams_.begin()->first;
  server_->SubmitRst(sid, NGHTTP2_REFUSED_STREAM);
  Pump();
  EXPECT_TRUE(call.closed);
  EXPECT_EQ(call.close_code, NGHTTP2_REFUSED_STREAM);
  EXPECT_EQ(counters_.requests_upstream_reset.Get(), 1u);
}

TEST_F(ForwarderTest, UpstreamGoawayLetsInFlightFinishAndStopsNewStreams) {
  RecordingStream& call = NewCall();
  call.end_body = true;
  StartCall(call, GrpcRequest("/pkg.Svc/M"), true);
  Pump();
  const int32_t sid = server_streams_.begin()->first;
  server_->SubmitGoaway();
  Pump();
  EXPECT_TRUE(proxy_up_->goaway_received());
  EXPECT_FALSE(proxy_up_->CanOpenStream());
  RecordingStream* server = server_streams_.begin()->second.get();
  server->end_body = true;
  server->to_send = "late";
  server->send_trailers = {{"grpc-status", "0"}};
  ASSERT_TRUE(server_->SubmitResponse(sid, {{":status", "200"}}, true).ok());
  Pump();
  EXPECT_EQ(call.data, "late");
  EXPECT_EQ(Get(call.trailers, "grpc-status"), "0");
  EXPECT_TRUE(proxy_up_->done());  // nothing left: the connection ends
}

TEST_F(ForwarderTest, FilterDenialIsTrailersOnlyAndUpstreamUntouched) {
  RecordingStream& call = NewCall();
  call.to_send = "payload";
  call.end_body = true;
  StartCall(call, GrpcRequest("/deny/Me"), true);
  Pump();
  EXPECT_EQ(Get(call.headers, ":status"), "200");
  EXPECT_EQ(Get(call.headers, "content-type"), "application/grpc");
  EXPECT_EQ(Get(call.headers, "grpc-status"), "7");
  EXPECT_EQ(Get(call.headers, "grpc-message"),
            "rule no-way: caller not allowed");
  EXPECT_TRUE(call.ended);
  EXPECT_TRUE(call.data.empty());
  EXPECT_EQ(acquires_, 0);
  EXPECT_TRUE(server_streams_.empty());
  EXPECT_EQ(counters_.requests_denied.Get(), 1u);
}

TEST_F(ForwarderTest, RouterErrorIsUnavailable) {
  RecordingStream& call = NewCall();
  call.end_body = true;
  StartCall(call, GrpcRequest("/pkg.Svc/M", "nowhere"), true);
  Pump();
  EXPECT_EQ(Get(call.headers, "grpc-status"), "14");
  EXPECT_EQ(Get(call.headers, "grpc-message"), "no route: unknown host");
  EXPECT_EQ(acquires_, 0);
  EXPECT_TRUE(server_streams_.empty());
}

TEST_F(ForwarderTest, ConnectFailureIsUnavailable) {
  upstream_failure_ =
      absl::UnavailableError("connect failure: 10.0.0.1:80: refused");
  RecordingStream& call = NewCall();
  call.end_body = true;
  StartCall(call, GrpcRequest("/pkg.Svc/M"), true);
  Pump();
  EXPECT_EQ(Get(call.headers, "grpc-status"), "14");
  EXPECT_EQ(Get(call.headers, "grpc-message"),
            "connect failure: 10.0.0.1:80: refused");
  EXPECT_EQ(counters_.requests_connect_failure.Get(), 1u);
}

TEST_F(ForwarderTest, UpstreamConnectionLossBeforeResponseIsUnavailable) {
  RecordingStream& call = NewCall();
  StartCall(call, GrpcRequest("/pkg.Svc/M"), true);
  Pump();
  proxy_up_->Terminate(absl::UnavailableError("socket closed"));
  Pump();
  EXPECT_EQ(Get(call.headers, "grpc-status"), "14");
  EXPECT_EQ(Get(call.headers, "grpc-message"), "upstream connection closed");
}

}  // namespace
}  // namespace meshguard::sidecar::proxy
