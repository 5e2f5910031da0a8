// Fakes for driving the forwarder (sidecar/proxy: Http2Session, StreamPair)
// without sockets or an event loop: a dispatcher that runs posted work when
// asked, a transport that keeps written bytes until the test moves them, and
// a stream handler that records what arrives and sends what it is told.
// Used by the forwarder's unit tests and its fuzz target.
#ifndef MESHGUARD_TESTS_SIDECAR_PROXY_TESTING_FAKE_H2_H_
#define MESHGUARD_TESTS_SIDECAR_PROXY_TESTING_FAKE_H2_H_

#include <algorithm>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sidecar/proxy/http2_session.h"
#include "sidecar/proxy/transport.h"

namespace meshguard::sidecar::proxy::testing {

class FakeDispatcher final : public Dispatcher {
 public:
  void Post(std::function<void()> fn) override {
    posted_.push_back(std::move(fn));
  }
  void DeferredDelete(std::unique_ptr<Deletable> object) override {
    deleted_.push_back(std::move(object));
  }
  // Runs what was posted so far, then the deferred deletions; true if there
  // was anything to do.
  bool RunOnce() {
    bool did = !posted_.empty() || !deleted_.empty();
    auto fns = std::move(posted_);
    posted_.clear();
    for (auto& fn : fns) fn();
    deleted_.clear();
    return did;
  }

 private:
  std::vector<std::function<void()>> posted_;
  std::vector<std::unique_ptr<Deletable>> deleted_;
};

// One direction of a socket: bytes written wait in `out` until the test
// hands them to the peer session.
class FakeTransport final : public Transport {
 public:
  void Write(const uint8_t* data, size_t size) override {
    out.append(reinterpret_cast<const char*>(data), size);
    total_written += size;
  }
  size_t BufferedWriteBytes() const override { return out.size(); }
  void SetReadEnabled(bool enabled) override { read_enabled = enabled; }

  std::string out;
  size_t total_written = 0;
  bool read_enabled = true;
};

// A test endpoint's stream: records what arrives, sends what it is told.
class RecordingStream final : public StreamHandler {
 public:
  void OnHeaders(HeaderList h, HeadersKind kind, bool end_stream) override {
    if (kind == HeadersKind::kTrailers) {
      trailers = std::move(h);
    } else {
      headers = std::move(h);
    }
    if (end_stream) ended = true;
  }
  void OnData(const uint8_t* d, size_t n) override {
    data.append(reinterpret_cast<const char*>(d), n);
    if (consume) consume(n);
  }
  void OnEndStream() override { ended = true; }
  ssize_t ReadBody(uint8_t* buf, size_t size, uint32_t* flags) override {
    size_t n = std::min(size, to_send.size());
    memcpy(buf, to_send.data(), n);
    to_send.erase(0, n);
    if (n > 0) return static_cast<ssize_t>(n);
    if (!end_body) return NGHTTP2_ERR_DEFERRED;
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    if (!send_trailers.empty()) {
      *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
      trailer_sink(send_trailers);
    }
    return 0;
  }
  void OnStreamClose(uint32_t code, bool) override {
    closed = true;
    close_code = code;
  }

  // Credits received DATA back to `session` and sends trailers through it,
  // as an endpoint's stream `id` of that session does.
  void BindTo(Http2Session* session, int32_t id) {
    consume = [session, id](size_t n) { session->Consume(id, n); };
    trailer_sink = [session, id](const HeaderList& t) {
      session->SubmitTrailers(id, t).IgnoreError();
    };
  }

  HeaderList headers, trailers;
  std::string data;
  bool ended = false;
  bool closed = false;
  uint32_t close_code = 0;
  // Sending side.
  std::string to_send;
  bool end_body = false;
  HeaderList send_trailers;
  std::function<void(const HeaderList&)> trailer_sink;
  std::function<void(size_t)> consume;
};

// The value of the first header called `name`, or "<absent>".
inline std::string Get(const HeaderList& h, const std::string& name) {
  for (const Header& x : h) {
    if (x.name == name) return x.value;
  }
  return "<absent>";
}

}  // namespace meshguard::sidecar::proxy::testing

#endif  // MESHGUARD_TESTS_SIDECAR_PROXY_TESTING_FAKE_H2_H_
