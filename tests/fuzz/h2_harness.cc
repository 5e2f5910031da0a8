#include "tests/fuzz/h2_harness.h"

#include <nghttp2/nghttp2.h>

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
      s->BindTo(server_.get(), id);
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

H2Harness::~H2Harness() {
  Finish();
  if (deflater_ != nullptr) nghttp2_hd_deflate_del(deflater_);
}

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
    s.BindTo(client_.get(), *id);
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
  if (structured_ && counters_.requests_completed.Get() > 0) {
    FUZZ_REACHED("structured_call_completed");
  }
  if (counters_.requests_completed.Get() > 0) {
    FUZZ_REACHED(hostile_ == Hostile::kClient
                     ? "call_completed_hostile_client"
                     : "call_completed_hostile_upstream");
  }
}

const std::vector<std::string>& H2Harness::StructuredWords() {
  static const auto* words =
      new std::vector<std::string>{":method",
                                   "POST",
                                   "GET",
                                   "CONNECT",
                                   ":scheme",
                                   "http",
                                   "https",
                                   ":path",
                                   "/pkg.Svc/Unary",
                                   "/deny/Me",
                                   "",
                                   ":authority",
                                   "svc",
                                   "nowhere",
                                   ":status",
                                   "200",
                                   "404",
                                   ":protocol",
                                   "content-type",
                                   "application/grpc",
                                   "te",
                                   "trailers",
                                   "grpc-timeout",
                                   "1S",
                                   "grpc-status",
                                   "0",
                                   "14",
                                   "grpc-message",
                                   "x-forwarded-client-cert",
                                   "By=forged",
                                   "connection",
                                   "keep-alive",
                                   "transfer-encoding",
                                   "chunked",
                                   "upgrade",
                                   "x-meta-bin",
                                   "AAEC",
                                   "content-length",
                                   "5",
                                   "host",
                                   "Upper-Case"};
  return *words;
}

std::string H2Harness::StructuredFrame(uint8_t type, uint8_t flags,
                                       uint8_t stream,
                                       const std::string& payload) {
  std::string chunk{static_cast<char>(type), static_cast<char>(flags),
                    static_cast<char>(stream)};
  return chunk + payload;
}

std::string H2Harness::StructuredHeaders(
    uint8_t type, uint8_t flags, uint8_t stream,
    const std::vector<std::pair<std::string, std::string>>& headers) {
  const std::vector<std::string>& words = StructuredWords();
  std::string rest;
  auto add = [&](const std::string& s) {
    auto it = std::find(words.begin(), words.end(), s);
    if (it != words.end()) {
      rest.push_back(static_cast<char>(it - words.begin()));
    } else {
      rest.push_back(static_cast<char>(0xff));
      rest.push_back(static_cast<char>(std::min<size_t>(s.size(), 255)));
      rest.append(s, 0, 255);
    }
  };
  for (const auto& [name, value] : headers) {
    add(name);
    add(value);
  }
  return StructuredFrame(type, flags, stream, rest);
}

std::string H2Harness::EncodeStructured(const uint8_t* data, size_t size) {
  if (size < 3) return "";
  const uint8_t type = data[0] % 10;
  const uint8_t frame_flags = data[1];
  const uint32_t stream = data[2];
  std::string payload;
  if (type == NGHTTP2_HEADERS || type == NGHTTP2_PUSH_PROMISE ||
      type == NGHTTP2_CONTINUATION) {
    const std::vector<std::string>& words = StructuredWords();
    std::vector<std::string> strings;
    size_t pos = 3;
    while (pos < size && strings.size() < 64) {
      const uint8_t pick = data[pos++];
      if (pick < words.size()) {
        strings.push_back(words[pick]);
      } else {
        const size_t len = pos < size ? data[pos++] : 0;
        const size_t n = std::min(len, size - pos);
        strings.emplace_back(reinterpret_cast<const char*>(data + pos), n);
        pos += n;
      }
    }
    std::vector<nghttp2_nv> nva;
    for (size_t i = 0; i + 1 < strings.size(); i += 2) {
      nva.push_back({reinterpret_cast<uint8_t*>(strings[i].data()),
                     reinterpret_cast<uint8_t*>(strings[i + 1].data()),
                     strings[i].size(), strings[i + 1].size(),
                     NGHTTP2_NV_FLAG_NONE});
    }
    if (deflater_ == nullptr) nghttp2_hd_deflate_new(&deflater_, 4096);
    std::string block(
        nghttp2_hd_deflate_bound(deflater_, nva.data(), nva.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(
        deflater_, reinterpret_cast<uint8_t*>(block.data()), block.size(),
        nva.data(), nva.size());
    block.resize(n < 0 ? 0 : static_cast<size_t>(n));
    if (type == NGHTTP2_PUSH_PROMISE) {
      payload.assign("\0\0\0\2", 4);  // promised stream 2
    }
    payload += block;
  } else {
    payload.assign(reinterpret_cast<const char*>(data + 3), size - 3);
  }
  const size_t len = std::min<size_t>(payload.size(), 0xffffff);
  std::string frame{static_cast<char>(len >> 16),
                    static_cast<char>(len >> 8),
                    static_cast<char>(len),
                    static_cast<char>(type),
                    static_cast<char>(frame_flags),
                    0,
                    0,
                    0,
                    static_cast<char>(stream)};
  frame.append(payload, 0, len);
  return frame;
}

void H2Harness::Run(const uint8_t* data, size_t size) {
  if (size == 0) return;
  const bool structured = (data[0] & kModeStructured) != 0;
  H2Harness harness(
      (data[0] & kModeUpstreamHostile) ? Hostile::kUpstream : Hostile::kClient,
      /*record=*/false);
  harness.structured_ = structured;
  if (structured) {
    // What the hostile side sends before any frame of its own choosing:
    // the client preface, and either side's (empty) SETTINGS.
    std::string start =
        harness.hostile_ == Hostile::kClient
            ? std::string(NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN)
            : std::string();
    start.append("\0\0\0\4\0\0\0\0\0", 9);
    harness.Feed(kChunkPump, reinterpret_cast<const uint8_t*>(start.data()),
                 start.size());
  }
  size_t pos = 1;
  while (pos + 3 <= size) {
    const uint8_t flags = data[pos];
    const size_t len =
        (static_cast<size_t>(data[pos + 1]) << 8) | data[pos + 2];
    pos += 3;
    const size_t n = std::min(len, size - pos);
    if (structured) {
      const std::string frame = harness.EncodeStructured(data + pos, n);
      harness.Feed(flags, reinterpret_cast<const uint8_t*>(frame.data()),
                   frame.size());
    } else {
      harness.Feed(flags, data + pos, n);
    }
    pos += n;
  }
  harness.slow_reader_ = false;
  harness.hostile_slow_ = false;
  harness.Pump();
  harness.Finish();
}

}  // namespace meshguard::fuzz
