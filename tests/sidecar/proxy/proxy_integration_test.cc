// grpc client -> proxy A (outbound h2c listener) -> mTLS -> proxy B (inbound
// TLS listener) -> echo_server, all on 127.0.0.1 with ephemeral ports.
#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sidecar/proxy/proxy.h"
#include "tests/sidecar/proxy/testing/test_security.h"
#include "tests/testing/echo_service.h"
#include "tests/testing/held_handshake.h"

namespace meshguard::sidecar::proxy {
namespace {

using ::meshguard::testing::EchoRequest;
using ::meshguard::testing::EchoResponse;
using ::meshguard::testing::EchoServer;
using ::meshguard::testing::TestChannelArguments;
using ::testing::HasSubstr;

constexpr char kClientId[] = "spiffe://cluster.local/ns/a/sa/client";
constexpr char kServerId[] = "spiffe://cluster.local/ns/b/sa/server";

// Routes by :authority.
class MapRouter final : public Router {
 public:
  void Set(const std::string& authority, UpstreamTarget target) {
    absl::MutexLock lock(&mu_);
    routes_[authority] = std::move(target);
  }
  absl::StatusOr<UpstreamTarget> Route(const RequestInfo& request) override {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(std::string(request.authority));
    if (it == routes_.end()) {
      return absl::NotFoundError(
          absl::StrCat("no route for ", std::string(request.authority)));
    }
    return it->second;
  }

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, UpstreamTarget> routes_ ABSL_GUARDED_BY(mu_);
};

// Denies one method; records the peer identities it saw.
class DenyFilter final : public RequestFilter {
 public:
  absl::Status OnRequest(const RequestInfo& request,
                         HeaderList& headers) override {
    {
      absl::MutexLock lock(&mu_);
      last_peer_ = std::string(request.peer_identity);
    }
    if (request.path == "/meshguard.testing.Echo/ReturnStatus" &&
        absl::StrContains(FindValue(headers, "x-deny"), "yes")) {
      return absl::PermissionDeniedError("denied by rule test-deny");
    }
    headers.push_back({"x-filter-added", "1"});
    return absl::OkStatus();
  }
  std::string last_peer() {
    absl::MutexLock lock(&mu_);
    return last_peer_;
  }

 private:
  static std::string FindValue(const HeaderList& h, const std::string& name) {
    for (const Header& x : h) {
      if (x.name == name) return x.value;
    }
    return "";
  }
  absl::Mutex mu_;
  std::string last_peer_ ABSL_GUARDED_BY(mu_);
};

class ProxyIntegrationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto echo = EchoServer::Start("127.0.0.1:0");
    ASSERT_TRUE(echo.ok()) << echo.status();
    echo_ = echo->release();

    auto ca = testing::TestCa::Create();
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = ca->release();
    auto client_sec = testing::TestSecurity::Create(*ca_, kClientId);
    ASSERT_TRUE(client_sec.ok()) << client_sec.status();
    client_security_ = client_sec->release();
    auto server_sec = testing::TestSecurity::Create(*ca_, kServerId);
    ASSERT_TRUE(server_sec.ok()) << server_sec.status();
    server_security_ = server_sec->release();

    // Proxy B: inbound TLS -> echo (h2c).
    inbound_router_ = new MapRouter();
    inbound_filter_ = new DenyFilter();
    ProxyOptions options;
    options.num_workers = 2;
    options.connect_timeout = absl::Seconds(2);
    auto b = Proxy::Create(options, server_security_);
    ASSERT_TRUE(b.ok()) << b.status();
    inbound_ = b->release();
    ListenerConfig in;
    in.address = "127.0.0.1:0";
    in.role = ListenerRole::kInboundTls;
    in.router = inbound_router_;
    in.filter = inbound_filter_;
    in.local_identity = kServerId;
    auto in_port = inbound_->AddListener(in);
    ASSERT_TRUE(in_port.ok()) << in_port.status();
    inbound_port_ = *in_port;

    // Proxy A: outbound h2c -> B over mTLS.
    outbound_router_ = new MapRouter();
    auto a = Proxy::Create(options, client_security_);
    ASSERT_TRUE(a.ok()) << a.status();
    outbound_ = a->release();
    ListenerConfig out;
    out.address = "127.0.0.1:0";
    out.role = ListenerRole::kOutboundH2c;
    out.router = outbound_router_;
    auto out_port = outbound_->AddListener(out);
    ASSERT_TRUE(out_port.ok()) << out_port.status();
    outbound_port_ = *out_port;

    const std::string b_addr = absl::StrCat("127.0.0.1:", inbound_port_);
    const std::string echo_addr = absl::StrCat("127.0.0.1:", echo_->port());
    // Whatever authority reaches B goes to the app.
    for (const char* auth : {"echo.test", "wrong-id.test"}) {
      inbound_router_->Set(auth, {echo_addr, "", false});
    }
    outbound_router_->Set("echo.test", {b_addr, kServerId, true});
    outbound_router_->Set(
        "wrong-id.test",
        {b_addr, "spiffe://cluster.local/ns/x/sa/other", true});
    // A port nobody listens on: bind, read the port, close.
    outbound_router_->Set("down.test", {"127.0.0.1:1", "", false});
    outbound_router_->Set("plain.test", {echo_addr, "", false});

    ASSERT_TRUE(inbound_->Start().ok());
    ASSERT_TRUE(outbound_->Start().ok());
  }

  static void TearDownTestSuite() {
    outbound_->Drain(absl::Now() + absl::Seconds(2));
    inbound_->Drain(absl::Now() + absl::Seconds(2));
    delete outbound_;
    delete inbound_;
    delete echo_;
    delete outbound_router_;
    delete inbound_router_;
    delete inbound_filter_;
    delete client_security_;
    delete server_security_;
    delete ca_;
  }

  static std::unique_ptr<meshguard::testing::Echo::Stub> Stub(
      const std::string& authority) {
    grpc::ChannelArguments args = TestChannelArguments();
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
    auto channel =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", outbound_port_),
                                  grpc::InsecureChannelCredentials(), args);
    return meshguard::testing::Echo::NewStub(channel);
  }

  // A credentials version newer than any the tests used so far, as a new
  // trust bundle gets.
  static uint64_t NewBundleVersion() {
    static uint64_t version = 1;  // the test identities' own
    return ++version;
  }

  // One small Echo call with a 10 s deadline.
  static grpc::Status EchoOnce(meshguard::testing::Echo::Stub& stub) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(10));
    EchoRequest req;
    req.set_payload("x");
    EchoResponse resp;
    return stub.Echo(&ctx, req, &resp);
  }

  static void SetDeadline(grpc::ClientContext& ctx, absl::Duration d) {
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + d));
  }

  static inline EchoServer* echo_ = nullptr;
  static inline testing::TestCa* ca_ = nullptr;
  static inline testing::TestSecurity* client_security_ = nullptr;
  static inline testing::TestSecurity* server_security_ = nullptr;
  static inline MapRouter* inbound_router_ = nullptr;
  static inline MapRouter* outbound_router_ = nullptr;
  static inline DenyFilter* inbound_filter_ = nullptr;
  static inline Proxy* inbound_ = nullptr;
  static inline Proxy* outbound_ = nullptr;
  static inline int inbound_port_ = 0;
  static inline int outbound_port_ = 0;
};

std::string Metadata(const EchoResponse& r, const std::string& key) {
  for (const auto& m : r.request_metadata()) {
    if (m.key() == key) return m.value();
  }
  return "<absent>";
}

TEST_F(ProxyIntegrationTest, UnaryWithMetadataAndTrailers) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  const std::string binary("\x00\x01\xfe\xff binary", 11);
  ctx.AddMetadata("x-custom", "hello");
  ctx.AddMetadata("x-blob-bin", binary);
  ctx.AddMetadata("x-forwarded-client-cert", "By=forged;URI=spiffe://evil");
  EchoRequest req;
  req.set_payload("ping");
  EchoResponse resp;
  grpc::Status status = stub->Echo(&ctx, req, &resp);
  ASSERT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  EXPECT_EQ(resp.payload(), "ping");
  EXPECT_EQ(Metadata(resp, "x-custom"), "hello");
  EXPECT_EQ(Metadata(resp, "x-blob-bin"), binary);
  EXPECT_EQ(Metadata(resp, "x-filter-added"), "1");
  // The inbound proxy replaced the forged header with the verified peer.
  EXPECT_THAT(resp.forwarded_client_cert(),
              HasSubstr(absl::StrCat("By=", kServerId, ";Hash=")));
  EXPECT_THAT(resp.forwarded_client_cert(),
              HasSubstr(absl::StrCat(";URI=", kClientId)));
  EXPECT_THAT(resp.forwarded_client_cert(), ::testing::Not(HasSubstr("evil")));
  EXPECT_EQ(inbound_filter_->last_peer(), kClientId);
  // grpc-timeout crossed both proxies.
  EXPECT_GT(resp.deadline_remaining_ms(), 5000);
  EXPECT_LE(resp.deadline_remaining_ms(), 10000);
  // Initial metadata and trailers came back.
  auto initial = ctx.GetServerInitialMetadata();
  auto it = initial.find("echo-initial");
  ASSERT_NE(it, initial.end());
  EXPECT_EQ(std::string(it->second.data(), it->second.size()), "present");
  auto trailers = ctx.GetServerTrailingMetadata();
  auto t = trailers.find("echoed-x-blob-bin");
  ASSERT_NE(t, trailers.end());
  EXPECT_EQ(std::string(t->second.data(), t->second.size()), binary);
}

TEST_F(ProxyIntegrationTest, StatusAndTrailersPassThrough) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  meshguard::testing::StatusRequest req;
  req.set_code(grpc::StatusCode::RESOURCE_EXHAUSTED);
  req.set_message("too much: 100% \xe2\x9c\x93");
  auto* t1 = req.add_trailers();
  t1->set_key("x-text");
  t1->set_value("text value");
  auto* t2 = req.add_trailers();
  t2->set_key("x-raw-bin");
  t2->set_value(std::string("\x00\xff\x10", 3));
  EchoResponse resp;
  grpc::Status status = stub->ReturnStatus(&ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "too much: 100% \xe2\x9c\x93");
  auto trailers = ctx.GetServerTrailingMetadata();
  auto a = trailers.find("x-text");
  ASSERT_NE(a, trailers.end());
  EXPECT_EQ(std::string(a->second.data(), a->second.size()), "text value");
  auto b = trailers.find("x-raw-bin");
  ASSERT_NE(b, trailers.end());
  EXPECT_EQ(std::string(b->second.data(), b->second.size()),
            std::string("\x00\xff\x10", 3));
}

TEST_F(ProxyIntegrationTest, FilterDenialIsPermissionDenied) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  ctx.AddMetadata("x-deny", "yes");
  meshguard::testing::StatusRequest req;
  EchoResponse resp;
  grpc::Status status = stub->ReturnStatus(&ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(status.error_message(), "denied by rule test-deny");
}

TEST_F(ProxyIntegrationTest, ServerStreaming) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(20));
  EchoRequest req;
  req.set_response_count(200);
  req.set_response_size(1000);
  auto reader = stub->ServerStream(&ctx, req);
  EchoResponse resp;
  int n = 0;
  while (reader->Read(&resp)) {
    EXPECT_EQ(resp.message_count(), n);
    EXPECT_EQ(resp.payload().size(), 1000u);
    ++n;
  }
  grpc::Status status = reader->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(n, 200);
}

TEST_F(ProxyIntegrationTest, ClientStreaming) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(20));
  EchoResponse resp;
  auto writer = stub->ClientStream(&ctx, &resp);
  EchoRequest req;
  for (int i = 0; i < 200; ++i) {
    req.set_payload(absl::StrCat("m", i));
    ASSERT_TRUE(writer->Write(req));
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.message_count(), 200);
  EXPECT_EQ(resp.payload(), "m199");
}

TEST_F(ProxyIntegrationTest, BidiStreaming) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(20));
  auto stream = stub->BidiStream(&ctx);
  for (int i = 0; i < 100; ++i) {
    EchoRequest req;
    req.set_payload(absl::StrCat("p", i));
    ASSERT_TRUE(stream->Write(req));
    EchoResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.payload(), absl::StrCat("p", i));
  }
  stream->WritesDone();
  EchoResponse extra;
  EXPECT_FALSE(stream->Read(&extra));
  grpc::Status status = stream->Finish();
  EXPECT_TRUE(status.ok()) << status.error_message();
}

TEST_F(ProxyIntegrationTest, LargeMessages) {
  auto stub = Stub("echo.test");
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(30));
    EchoRequest req;
    req.set_payload(std::string(8 << 20, 'x'));
    req.mutable_payload()->back() = 'z';
    EchoResponse resp;
    grpc::Status status = stub->Echo(&ctx, req, &resp);
    ASSERT_TRUE(status.ok()) << status.error_message();
    EXPECT_EQ(resp.payload().size(), 8u << 20);
    EXPECT_EQ(resp.payload().back(), 'z');
  }
}

bool WaitForCancel(meshguard::testing::Echo::Stub& stub,
                   const std::string& token) {
  for (int i = 0; i < 200; ++i) {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
    meshguard::testing::CancelStateRequest req;
    req.set_token(token);
    meshguard::testing::CancelStateResponse resp;
    if (stub.GetCancelState(&ctx, req, &resp).ok() && resp.finished()) {
      return resp.cancelled();
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return false;
}

TEST_F(ProxyIntegrationTest, DeadlineExceededOnTimeAndServerSeesCancel) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Milliseconds(300));
  meshguard::testing::SleepRequest req;
  req.set_token("deadline");
  req.set_sleep_ms(10000);
  meshguard::testing::SleepResponse resp;
  const absl::Time start = absl::Now();
  grpc::Status status = stub->Sleep(&ctx, req, &resp);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_LT(took, absl::Milliseconds(1000));
  EXPECT_TRUE(WaitForCancel(*stub, "deadline"));
}

TEST_F(ProxyIntegrationTest, ClientCancelReachesServer) {
  auto stub = Stub("echo.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(20));
  meshguard::testing::SleepRequest req;
  req.set_token("cancel");
  req.set_sleep_ms(10000);
  std::thread canceller([&] {
    absl::SleepFor(absl::Milliseconds(300));
    ctx.TryCancel();
  });
  meshguard::testing::SleepResponse resp;
  grpc::Status status = stub->Sleep(&ctx, req, &resp);
  canceller.join();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitForCancel(*stub, "cancel"));
}

TEST_F(ProxyIntegrationTest, ThousandConcurrentStreamsOnOneConnection) {
  auto stub = Stub("echo.test");
  grpc::CompletionQueue cq;
  constexpr int kCalls = 1000;
  struct Call {
    std::string expected;
    grpc::ClientContext ctx;
    EchoResponse resp;
    grpc::Status status;
    std::unique_ptr<grpc::ClientAsyncResponseReader<EchoResponse>> rpc;
  };
  std::vector<std::unique_ptr<Call>> calls;
  const auto before = outbound_->TotalCounters();
  for (int i = 0; i < kCalls; ++i) {
    auto call = std::make_unique<Call>();
    SetDeadline(call->ctx, absl::Seconds(30));
    EchoRequest req;
    req.set_payload(absl::StrCat(i));
    call->expected = req.payload();
    call->rpc = stub->AsyncEcho(&call->ctx, req, &cq);
    call->rpc->Finish(&call->resp, &call->status, call.get());
    calls.push_back(std::move(call));
  }
  int ok = 0;
  for (int i = 0; i < kCalls; ++i) {
    void* tag;
    bool got;
    ASSERT_TRUE(cq.Next(&tag, &got));
    auto* call = static_cast<Call*>(tag);
    if (call->status.ok() && call->resp.payload() == call->expected) {
      ++ok;
    } else {
      ADD_FAILURE() << call->status.error_code() << " "
                    << call->status.error_message();
    }
  }
  EXPECT_EQ(ok, kCalls);
  const auto after = outbound_->TotalCounters();
  // One client connection carried them all.
  EXPECT_EQ(
      after.downstream_connections_total - before.downstream_connections_total,
      1u);
  cq.Shutdown();
}

// Each worker owns its own loop, listener socket (SO_REUSEPORT) and
// upstream pool; the kernel spreads client connections over them, and
// every one is served.
TEST_F(ProxyIntegrationTest, ConnectionsSpreadOverWorkersAndAllAreServed) {
  const std::vector<CounterValues> before = outbound_->WorkerCounters();
  ASSERT_EQ(before.size(), 2u);
  constexpr int kClients = 16;
  for (int i = 0; i < kClients; ++i) {
    auto stub = Stub("echo.test");  // its own channel, so its own connection
    grpc::ClientContext ctx;
    SetDeadline(ctx, absl::Seconds(10));
    EchoRequest req;
    req.set_payload(absl::StrCat("client ", i));
    EchoResponse resp;
    grpc::Status status = stub->Echo(&ctx, req, &resp);
    ASSERT_TRUE(status.ok()) << i << ": " << status.error_message();
    EXPECT_EQ(resp.payload(), req.payload());
  }
  const std::vector<CounterValues> after = outbound_->WorkerCounters();
  uint64_t total = 0;
  int workers_used = 0;
  for (size_t w = 0; w < after.size(); ++w) {
    const uint64_t accepted = after[w].downstream_connections_total -
                              before[w].downstream_connections_total;
    total += accepted;
    if (accepted > 0) ++workers_used;
  }
  EXPECT_EQ(total, static_cast<uint64_t>(kClients));
  // All 16 on one worker would happen with probability 2^-15.
  EXPECT_EQ(workers_used, 2);
}

// Calls in flight to one target do not all queue on one upstream
// connection: the pool adds a few sibling connections (a gRPC server works
// through one connection's frames serially), and no more than a few.
TEST_F(ProxyIntegrationTest,
       ConcurrentCallsToOneTargetSpreadOverAFewConnections) {
  // A target of its own (any identity of the trust domain), so that pool
  // entries from other tests do not count.
  outbound_router_->Set("spread.test",
                        {absl::StrCat("127.0.0.1:", inbound_port_), "", true});
  inbound_router_->Set("spread.test",
                       {absl::StrCat("127.0.0.1:", echo_->port()), "", false});
  auto stub = Stub("spread.test");  // one client connection
  const auto before = outbound_->TotalCounters();
  constexpr int kCalls = 12;
  std::vector<std::thread> callers;
  std::atomic<int> ok{0};
  for (int i = 0; i < kCalls; ++i) {
    callers.emplace_back([&, i] {
      grpc::ClientContext ctx;
      SetDeadline(ctx, absl::Seconds(10));
      meshguard::testing::SleepRequest req;
      req.set_token(absl::StrCat("spread-", i));
      req.set_sleep_ms(400);
      meshguard::testing::SleepResponse resp;
      if (stub->Sleep(&ctx, req, &resp).ok()) ++ok;
    });
  }
  for (std::thread& t : callers) t.join();
  EXPECT_EQ(ok.load(), kCalls);
  const auto after = outbound_->TotalCounters();
  const uint64_t opened =
      after.upstream_connections_total - before.upstream_connections_total;
  EXPECT_GE(opened, 2u) << "every call queued on one upstream connection";
  EXPECT_LE(opened, 4u) << "one upstream connection per call is not pooling";
}

TEST_F(ProxyIntegrationTest, UpstreamDownIsUnavailableConnectFailure) {
  auto stub = Stub("down.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  EchoRequest req;
  EchoResponse resp;
  const absl::Time start = absl::Now();
  grpc::Status status = stub->Echo(&ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("connect failure"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(ProxyIntegrationTest, WrongUpstreamIdentityIsHandshakeFailure) {
  auto stub = Stub("wrong-id.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  EchoRequest req;
  EchoResponse resp;
  grpc::Status status = stub->Echo(&ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("handshake failure"));
  EXPECT_THAT(status.error_message(), HasSubstr(kServerId));
}

TEST_F(ProxyIntegrationTest, NoRouteIsUnavailable) {
  auto stub = Stub("nowhere.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  EchoRequest req;
  EchoResponse resp;
  grpc::Status status = stub->Echo(&ctx, req, &resp);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("no route"));
}

TEST_F(ProxyIntegrationTest, PlaintextUpstream) {
  auto stub = Stub("plain.test");
  grpc::ClientContext ctx;
  SetDeadline(ctx, absl::Seconds(10));
  EchoRequest req;
  req.set_payload("h2c all the way");
  EchoResponse resp;
  grpc::Status status = stub->Echo(&ctx, req, &resp);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.payload(), "h2c all the way");
}

// A new trust bundle that refuses the peers (their root gone, or revoked):
// their connections are drained and new calls go to fresh connections.
TEST_F(ProxyIntegrationTest, ABundleThatRefusesThePeerDrainsItsConnections) {
  auto stub = Stub("echo.test");
  auto call = [&] { return EchoOnce(*stub); };
  ASSERT_TRUE(call().ok());
  const CounterValues before = outbound_->TotalCounters();
  client_security_->set_refuse_recheck(true);
  server_security_->set_refuse_recheck(true);
  const uint64_t version = NewBundleVersion();
  RecheckCounts out = outbound_->RecheckPeersOlderThan(version);
  RecheckCounts in = inbound_->RecheckPeersOlderThan(version);
  client_security_->set_refuse_recheck(false);
  server_security_->set_refuse_recheck(false);
  // Whichever side drains first, its GOAWAY may close the connection
  // before the other side looks at it.
  EXPECT_GE(out.drained + in.drained, 1);
  EXPECT_EQ(out.kept + in.kept, 0);
  EXPECT_EQ(outbound_->TotalCounters().connections_drained_for_credentials,
            before.connections_drained_for_credentials + out.drained);
  ASSERT_TRUE(call().ok());
  EXPECT_GT(outbound_->TotalCounters().upstream_connections_total,
            before.upstream_connections_total);
}

// A new trust bundle that still accepts the peers (a CRL naming someone
// else, a root added): their connections carry on, checked once.
TEST_F(ProxyIntegrationTest,
       ABundleThatStillAcceptsThePeerKeepsItsConnections) {
  auto stub = Stub("echo.test");
  auto call = [&] { return EchoOnce(*stub); };
  ASSERT_TRUE(call().ok());
  const CounterValues before = outbound_->TotalCounters();
  const int rechecks = client_security_->rechecks();
  const uint64_t version = NewBundleVersion();
  RecheckCounts out = outbound_->RecheckPeersOlderThan(version);
  EXPECT_GE(out.kept, 1);
  EXPECT_EQ(out.drained, 0);
  EXPECT_EQ(client_security_->rechecks(), rechecks + out.kept);
  ASSERT_TRUE(call().ok());
  const CounterValues after = outbound_->TotalCounters();
  EXPECT_EQ(after.upstream_connections_total,
            before.upstream_connections_total);
  EXPECT_EQ(after.connections_drained_for_credentials,
            before.connections_drained_for_credentials);
  EXPECT_EQ(after.goaways_sent, before.goaways_sent);
  // Checked as of `version` now: the same bundle again checks nothing.
  EXPECT_EQ(outbound_->RecheckPeersOlderThan(version).kept, 0);
}

// A TLS client of proxy B's inbound listener that stops half-way through
// its handshake: it has sent its ClientHello and B has answered, so B's
// side of the handshake waits for the client's certificate and Finished.
class PausedTlsClient {
 public:
  ~PausedTlsClient() {
    ssl_.reset();
    if (fd_ >= 0) close(fd_);
  }

  // Connects and stops once B's first flight has arrived.
  void Start(int port, SSL* ssl) {
    ssl_.reset(ssl);
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
              0);
    const unsigned char alpn[] = {2, 'h', '2'};
    SSL_set_alpn_protos(ssl_.get(), alpn, sizeof(alpn));
    ASSERT_TRUE(held_.Start(ssl_.get(), fd_, absl::Seconds(5)))
        << "no ServerHello within 5 s";
  }

  // Finishes the handshake, sends the HTTP/2 preface and SETTINGS, and
  // returns the frame types B sends until it closes or is quiet for 1 s.
  std::vector<int> FinishAndReadFrames() {
    std::vector<int> types;
    timeval tv{1, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    held_.Resume();
    if (SSL_connect(ssl_.get()) != 1) return types;
    static const char kPreface[] =
        "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
    if (SSL_write(ssl_.get(), kPreface, sizeof(kPreface) - 1) <= 0) {
      return types;
    }
    std::string in;
    char buf[4096];
    for (;;) {
      int n = SSL_read(ssl_.get(), buf, sizeof(buf));
      if (n <= 0) break;
      in.append(buf, static_cast<size_t>(n));
      while (in.size() >= 9) {
        const size_t length = (static_cast<uint8_t>(in[0]) << 16) |
                              (static_cast<uint8_t>(in[1]) << 8) |
                              static_cast<uint8_t>(in[2]);
        if (in.size() < 9 + length) break;
        types.push_back(static_cast<uint8_t>(in[3]));
        in.erase(0, 9 + length);
      }
    }
    return types;
  }

 private:
  crypto::SslPtr ssl_;
  meshguard::testing::HeldClientHello held_;
  int fd_ = -1;
};

constexpr int kFrameSettings = 4;
constexpr int kFrameGoaway = 7;

// A new trust bundle arrives while a handshake is under way: the handshake
// is not cut off (its client would see the connection reset, with no
// alert). It completes, and the peer is checked again under the new bundle,
// since the handshake used the old one; a peer that passes gets its
// connection.
TEST_F(ProxyIntegrationTest, ABundleChangeDuringAHandshakeChecksThePeerAgain) {
  const int rechecks = server_security_->rechecks();
  const CounterValues before = inbound_->TotalCounters();
  PausedTlsClient client;
  ASSERT_NO_FATAL_FAILURE(client.Start(
      inbound_port_, client_security_->NewClientSsl(UpstreamTarget{})));
  RecheckCounts counts = inbound_->RecheckPeersOlderThan(NewBundleVersion());
  EXPECT_EQ(counts.in_handshake, 1);
  std::vector<int> frames = client.FinishAndReadFrames();
  EXPECT_THAT(frames, ::testing::Contains(kFrameSettings));
  EXPECT_THAT(frames, ::testing::Not(::testing::Contains(kFrameGoaway)));
  EXPECT_EQ(server_security_->rechecks(), rechecks + counts.kept + 1);
  EXPECT_EQ(inbound_->TotalCounters().downstream_handshake_tls_error,
            before.downstream_handshake_tls_error);
}

// ... and one whose peer the new bundle refuses (revoked by the very CRL
// that arrived) is closed before any HTTP/2 frame, as a refused handshake.
TEST_F(ProxyIntegrationTest, ABundleChangeDuringAHandshakeRefusesARevokedPeer) {
  const CounterValues before = inbound_->TotalCounters();
  PausedTlsClient client;
  ASSERT_NO_FATAL_FAILURE(client.Start(
      inbound_port_, client_security_->NewClientSsl(UpstreamTarget{})));
  // Established connections (from other tests) are kept: refusal from here.
  inbound_->RecheckPeersOlderThan(NewBundleVersion());
  server_security_->set_refuse_recheck(true);
  std::vector<int> frames = client.FinishAndReadFrames();
  server_security_->set_refuse_recheck(false);
  EXPECT_THAT(frames, ::testing::IsEmpty());
  EXPECT_EQ(inbound_->TotalCounters().downstream_handshake_tls_error,
            before.downstream_handshake_tls_error + 1);
}

// On the client side: proxy A is connecting to an upstream when the new
// bundle arrives, with a call waiting for that connection. The upstream's
// handshake is held until then; once it completes, A checks the upstream
// again, and the new bundle refuses it: the waiting call fails with the
// verifier's reason instead of going to a revoked peer.
TEST_F(ProxyIntegrationTest, AnUpstreamRefusedByTheNewBundleGetsNoCall) {
  // A TLS server with proxy B's identity that answers the ClientHello only
  // when told to.
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)),
            0);
  ASSERT_EQ(listen(listener, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  outbound_router_->Set(
      "held.test",
      {absl::StrCat("127.0.0.1:", ntohs(addr.sin_port)), kServerId, true});
  absl::Notification hello, go;
  std::thread server([&] {
    const int fd = accept(listener, nullptr, nullptr);
    if (fd < 0) {
      hello.Notify();
      return;
    }
    // The ClientHello has arrived: A's connection is in its handshake.
    pollfd readable{fd, POLLIN, 0};
    poll(&readable, 1, 5000);
    hello.Notify();
    go.WaitForNotificationWithTimeout(absl::Seconds(10));
    timeval tv{3, 0};  // a proxy that keeps the connection: give up
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    crypto::SslPtr ssl(server_security_->NewServerSsl());
    SSL_set_fd(ssl.get(), fd);
    if (SSL_accept(ssl.get()) == 1) {
      char buf[1024];
      while (SSL_read(ssl.get(), buf, sizeof(buf)) > 0) {
      }
    }
    close(fd);
  });

  grpc::Status status;
  std::thread caller([&] {
    auto stub = Stub("held.test");
    status = EchoOnce(*stub);
  });
  ASSERT_TRUE(hello.WaitForNotificationWithTimeout(absl::Seconds(10)));
  const CounterValues before = outbound_->TotalCounters();
  RecheckCounts counts = outbound_->RecheckPeersOlderThan(NewBundleVersion());
  EXPECT_GE(counts.in_handshake, 1);
  client_security_->set_refuse_recheck(true);
  go.Notify();
  caller.join();
  client_security_->set_refuse_recheck(false);
  server.join();
  close(listener);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("handshake failure"));
  EXPECT_THAT(status.error_message(),
              HasSubstr("crl: certificate is revoked (test)"));
  EXPECT_EQ(outbound_->TotalCounters().upstream_handshake_tls_error,
            before.upstream_handshake_tls_error + 1);
}

// Not a benchmark (fastbuild, shared CPU): prints rough numbers so that a
// regression by orders of magnitude shows.
TEST_F(ProxyIntegrationTest, RoughTimings) {
  auto time_calls = [](meshguard::testing::Echo::Stub& stub, int n,
                       size_t size) {
    EchoRequest req;
    req.set_payload(std::string(size, 'p'));
    const absl::Time start = absl::Now();
    for (int i = 0; i < n; ++i) {
      grpc::ClientContext ctx;
      ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(30)));
      EchoResponse resp;
      EXPECT_TRUE(stub.Echo(&ctx, req, &resp).ok());
    }
    return (absl::Now() - start) / n;
  };
  grpc::ChannelArguments args = TestChannelArguments();
  auto direct = meshguard::testing::Echo::NewStub(
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", echo_->port()),
                                grpc::InsecureChannelCredentials(), args));
  auto h2c = Stub("plain.test");
  auto mtls = Stub("echo.test");
  for (auto* stub : {direct.get(), h2c.get(), mtls.get()}) {
    time_calls(*stub, 20, 64);  // warm up connections
  }
  std::cout << "64 B unary, mean of 500 sequential: direct "
            << time_calls(*direct, 500, 64) << ", via 1 proxy (h2c) "
            << time_calls(*h2c, 500, 64) << ", via 2 proxies (mTLS) "
            << time_calls(*mtls, 500, 64) << "\n";
  std::cout << "8 MiB unary echo, mean of 3: direct "
            << time_calls(*direct, 3, 8 << 20) << ", via 1 proxy (h2c) "
            << time_calls(*h2c, 3, 8 << 20) << ", via 2 proxies (mTLS) "
            << time_calls(*mtls, 3, 8 << 20) << "\n";
}

}  // namespace
}  // namespace meshguard::sidecar::proxy
