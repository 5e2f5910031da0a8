#include "tests/fuzz/h2_harness.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "tests/fuzz/fuzz_check.h"

namespace meshguard::fuzz {
namespace {

using sidecar::proxy::Header;
using sidecar::proxy::HeaderList;
using sidecar::proxy::Http2Session;
using sidecar::proxy::StreamHandler;
using sidecar::proxy::testing::FakeTransport;
using sidecar::proxy::testing::RecordingStream;

constexpr char kXfcc[] =
    "By=spiffe://fuzz.example/ns/b/sa/server;Hash=00;"
    "URI=spiffe://fuzz.example/ns/a/sa/client";
// Flag bit 2: the hostile side stops reading.
constexpr uint8_t kChunkHostileSlow = 4;

std::string GrpcFrame(const std::string& message) {
  std::string frame(5, '\0');
  frame[4] = static_cast<char>(message.size());
  return frame + message;
}

HeaderList GrpcRequest(const std::string& path, const std::string& authority) {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":path", path},
          {":authority", authority},
          {"content-type", "application/grpc"},
          {"te", "trailers"}};
}

}  // namespace

class H2Harness::Router final : public sidecar::proxy::Router {
 public:
  absl::StatusOr<sidecar::proxy::UpstreamTarget> Route(
      const sidecar::proxy::RequestInfo& r) override {
    if (r.authority == "nowhere") return absl::NotFoundError("unknown host");
    return sidecar::proxy::UpstreamTarget{"10.0.0.1:80", "", false};
  }
};

class H2Harness::Filter final : public sidecar::proxy::RequestFilter {
 public:
  absl::Status OnRequest(const sidecar::proxy::RequestInfo& r,
                         HeaderList&) override {
    if (r.path == "/deny/Me") return absl::PermissionDeniedError("denied");
    return absl::OkStatus();
  }
};

struct H2Harness::Callbacks final : sidecar::proxy::SessionCallbacks {
  std::function<StreamHandler*(int32_t)> new_stream;
  StreamHandler* OnNewStream(int32_t id) override {
    return new_stream ? new_stream(id) : nullptr;
  }
  void OnSessionDone(absl::Status) override {}
};

H2Harness::H2Harness(Hostile hostile, bool record)
    : hostile_(hostile),
      record_(record),
      router_(std::make_unique<Router>()),
      filter_(std::make_unique<Filter>()),
      client_cbs_(std::make_unique<Callbacks>()),
      proxy_down_cbs_(std::make_unique<Callbacks>()),
      proxy_up_cbs_(std::make_unique<Callbacks>()),
      server_cbs_(std::make_unique<Callbacks>()) {
  recording_.push_back(hostile_ == Hostile::kClient ? '\0' : '\1');
  context_.dispatcher = &dispatcher_;
  context_.router = router_.get();
  context_.filter = filter_.get();
  context_.connector = this;
  context_.counters = &counters_;
  context_.peer_identity = "spiffe://fuzz.example/ns/a/sa/client";
  context_.strip_xfcc = true;
  context_.xfcc = kXfcc;

  proxy_down_ = Http2Session::Create(Http2Session::Role::kServer,
                                     &proxy_down_out_, proxy_down_cbs_.get())
                    .value();
  proxy_up_ = Http2Session::Create(Http2Session::Role::kClient, &proxy_up_out_,
                                   proxy_up_cbs_.get())
                  .value();
  proxy_down_cbs_->new_stream = [this](int32_t id) {
    auto* pair =
        new sidecar::proxy::StreamPair(context_, proxy_down_.get(), id);
    return pair->downstream_handler();
  };
  if (hostile_ == Hostile::kUpstream || record_) {
    client_ = Http2Session::Create(Http2Session::Role::kClient, &client_out_,
                                   client_cbs_.get())
                  .value();
  }
  if (hostile_ == Hostile::kClient || record_) {
    server_ = Http2Session::Create(Http2Session::Role::kServer, &server_out_,
                                   server_cbs_.get())
                  .value();
    server_cbs_->new_stream = [this](int32_t id) {
      auto s = std::make_unique<RecordingStream>();
      s->consume = [this, id](size_t n) { server_->Consume(id, n); };
      s->trailer_sink = [this, id](const HeaderList& t) {
        server_->SubmitTrailers(id, t).IgnoreError();
      };
      server_streams_[id] = std::move(s);
      return server_streams_[id].get();
    };
  }
  Pump();
  if (client_ != nullptr) {
    StartClientCalls();
    Pump();
  }
}

H2Harness::~H2Harness() { Finish(); }

void H2Harness::StartClientCalls() {
  struct Call {
    std::string path, authority;
    bool end_body;
  };
  const Call calls[] = {{"/pkg.Svc/Unary", "svc", true},
                        {"/pkg.Svc/Stream", "svc", false},
                        {"/pkg.Svc/Lost", "nowhere", true},
                        {"/deny/Me", "svc", true}};
  for (const Call& call : calls) {
    client_streams_.push_back(std::make_unique<RecordingStream>());
    RecordingStream& s = *client_streams_.back();
    s.to_send = GrpcFrame("ping");
    s.end_body = call.end_body;
    absl::StatusOr<int32_t> id = client_->SubmitRequest(
        GrpcRequest(call.path, call.authority), &s, /*has_body=*/true);
    FUZZ_CHECK(id.ok());
    s.consume = [this, id = *id](size_t n) { client_->Consume(id, n); };
    s.trailer_sink = [this, id = *id](const HeaderList& t) {
      client_->SubmitTrailers(id, t).IgnoreError();
    };
    if (!call.end_body) streaming_call_ = *id;
  }
  client_->Flush();
}

void H2Harness::CheckUpstreamRequest(const HeaderList& headers) {
  int xfcc = 0;
  bool regular_seen = false;
  for (const Header& h : headers) {
    if (h.name == "x-forwarded-client-cert") {
      ++xfcc;
      FUZZ_CHECK(h.value == kXfcc);
    }
    FUZZ_CHECK(h.name != "connection" && h.name != "keep-alive" &&
               h.name != "proxy-connection" && h.name != "transfer-encoding" &&
               h.name != "upgrade");
    if (!h.name.empty() && h.name[0] == ':') {
      FUZZ_CHECK(!regular_seen);
      FUZZ_CHECK(h.name == ":method" || h.name == ":scheme" ||
                 h.name == ":path" || h.name == ":authority");
    } else {
      regular_seen = true;
    }
  }
  FUZZ_CHECK(xfcc == 1);
}

void H2Harness::AnswerServerStreams() {
  for (auto& [id, stream] : server_streams_) {
    if (answered_[id] || stream->headers.empty()) continue;
    CheckUpstreamRequest(stream->headers);
    if (!stream->ended) continue;
    answered_[id] = true;
    FUZZ_REACHED("upstream_answered");
    stream->to_send = GrpcFrame("pong");
    stream->end_body = true;
    stream->send_trailers = {{"grpc-status", "0"}};
    server_
        ->SubmitResponse(
            id, {{":status", "200"}, {"content-type", "application/grpc"}},
            /*has_body=*/true)
        .IgnoreError();
  }
  server_->Flush();
}

void H2Harness::Record(const FakeTransport& out) {
  for (size_t pos = 0; pos < out.out.size(); pos += 0xffff) {
    const size_t n = std::min<size_t>(0xffff, out.out.size() - pos);
    recording_.push_back(static_cast<char>(kChunkPump));
    recording_.push_back(static_cast<char>(n >> 8));
    recording_.push_back(static_cast<char>(n & 0xff));
    recording_.append(out.out, pos, n);
  }
}

bool H2Harness::Move(FakeTransport& from, Http2Session* to,
                     Http2Session* writer, bool honest_receiver) {
  if (from.out.empty()) return false;
  std::string bytes;
  bytes.swap(from.out);
  if (to != nullptr) {
    absl::Status s = to->Receive(reinterpret_cast<const uint8_t*>(bytes.data()),
                                 bytes.size());
    // Whatever the hostile side sends, the proxy never makes an honest peer
    // fail its connection.
    if (honest_receiver) FUZZ_CHECK(s.ok());
  }
  writer->OnWriteDrained();
  return true;
}

void H2Harness::Feed(uint8_t flags, const uint8_t* data, size_t size) {
  slow_reader_ = (flags & kChunkSlowReader) != 0;
  hostile_slow_ = (flags & kChunkHostileSlow) != 0;
  Http2Session* target =
      hostile_ == Hostile::kClient ? proxy_down_.get() : proxy_up_.get();
  target->Receive(data, size).IgnoreError();
  if ((flags & kChunkPump) != 0 && !record_) Pump();
}

void H2Harness::Pump() {
  const bool client_hostile = hostile_ == Hostile::kClient;
  for (int round = 0; round < 64; ++round) {
    bool moved = false;
    // Client -> proxy.
    if (client_ != nullptr && !client_out_.out.empty()) {
      if (client_hostile) {  // recording the client's part
        Record(client_out_);
        std::string bytes;
        bytes.swap(client_out_.out);
        Feed(kChunkPump, reinterpret_cast<const uint8_t*>(bytes.data()),
             bytes.size());
        client_->OnWriteDrained();
        moved = true;
      } else {
        moved |= Move(client_out_, proxy_down_.get(), client_.get(), false);
      }
    }
    // Proxy -> client.
    const bool client_reads = client_hostile ? !hostile_slow_ : !slow_reader_;
    if (client_reads) {
      moved |= Move(proxy_down_out_, client_.get(), proxy_down_.get(), true);
    }
    // Proxy -> upstream.
    const bool server_reads = client_hostile ? !slow_reader_ : !hostile_slow_;
    if (server_reads) {
      moved |= Move(proxy_up_out_, server_.get(), proxy_up_.get(), true);
    }
    // Upstream -> proxy.
    if (server_ != nullptr && !server_out_.out.empty()) {
      if (!client_hostile) {  // recording the upstream's part
        Record(server_out_);
        std::string bytes;
        bytes.swap(server_out_.out);
        Feed(kChunkPump, reinterpret_cast<const uint8_t*>(bytes.data()),
             bytes.size());
        server_->OnWriteDrained();
        moved = true;
      } else {
        moved |= Move(server_out_, proxy_up_.get(), server_.get(), false);
      }
    }
    moved |= dispatcher_.RunOnce();
    if (server_ != nullptr) {
      AnswerServerStreams();
      moved |= !server_out_.out.empty();
    }
    if (!moved) return;
  }
}

void H2Harness::Acquire(const sidecar::proxy::UpstreamTarget&,
                        sidecar::proxy::UpstreamWaiter* waiter) {
  if (proxy_up_ != nullptr && !proxy_up_->done() &&
      proxy_up_->CanOpenStream()) {
    waiter->OnUpstreamReady(proxy_up_.get());
  } else {
    waiter->OnUpstreamFailure(
        absl::UnavailableError("connect failure: the fuzz upstream is gone"));
  }
}

void H2Harness::Finish() {
  if (finished_) return;
  finished_ = true;
  // Pairs still open learn that their sessions are gone, then are freed
  // while the counters they touch still exist.
  client_.reset();
  proxy_down_.reset();
  proxy_up_.reset();
  server_.reset();
  while (dispatcher_.RunOnce()) {
  }
  FUZZ_CHECK(counters_.streams_active.Get() == 0);
  if (counters_.requests_completed.Get() > 0) {
    FUZZ_REACHED(hostile_ == Hostile::kClient
                     ? "call_completed_hostile_client"
                     : "call_completed_hostile_upstream");
  }
}

void H2Harness::Run(const uint8_t* data, size_t size) {
  if (size == 0) return;
  H2Harness harness((data[0] & 1) ? Hostile::kUpstream : Hostile::kClient,
                    /*record=*/false);
  size_t pos = 1;
  while (pos + 3 <= size) {
    const uint8_t flags = data[pos];
    const size_t len =
        (static_cast<size_t>(data[pos + 1]) << 8) | data[pos + 2];
    pos += 3;
    const size_t n = std::min(len, size - pos);
    harness.Feed(flags, data + pos, n);
    pos += n;
  }
  harness.slow_reader_ = false;
  harness.hostile_slow_ = false;
  harness.Pump();
  harness.Finish();
}

}  // namespace meshguard::fuzz
