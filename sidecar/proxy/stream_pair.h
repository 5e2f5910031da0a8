// The forwarder: binds one downstream stream (a call a client made to us,
// server-role session) to one upstream stream (our call to the upstream,
// client-role session) and relays headers, DATA, trailers and resets both
// ways, with end-to-end flow control.
//
// Life of a call: request headers arrive -> hop-by-hop fields removed ->
// x-forwarded-client-cert replaced (inbound) -> RequestFilter (may deny) ->
// Router (may fail) -> UpstreamConnector hands out a session (may fail) ->
// request submitted upstream; the body and the response stream through.
// Errors of the proxy itself become trailers-only gRPC responses.
//
// Threading: single-threaded, on the worker that owns the downstream
// connection (upstream sessions come from that worker's pool).
// Ownership: a StreamPair owns itself; it schedules its own deferred
// deletion once both streams are closed or detached.
#ifndef MESHGUARD_SIDECAR_PROXY_STREAM_PAIR_H_
#define MESHGUARD_SIDECAR_PROXY_STREAM_PAIR_H_

#include <cstdint>
#include <deque>
#include <string>

#include "absl/status/status.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "sidecar/proxy/api.h"
#include "sidecar/proxy/counters.h"
#include "sidecar/proxy/http2_session.h"
#include "sidecar/proxy/transport.h"

namespace meshguard::sidecar::proxy {

class UpstreamWaiter {
 public:
  virtual ~UpstreamWaiter() = default;
  // A session that can take one more stream right now.
  virtual void OnUpstreamReady(Http2Session* session) = 0;
  // No session: the status is UNAVAILABLE with a message starting with
  // "connect failure" or "handshake failure".
  virtual void OnUpstreamFailure(const absl::Status& status) = 0;
};

// The upstream connection pool, as the forwarder sees it.
class UpstreamConnector {
 public:
  virtual ~UpstreamConnector() = default;
  // Calls back exactly once (possibly before returning) unless cancelled.
  virtual void Acquire(const UpstreamTarget& target,
                       UpstreamWaiter* waiter) = 0;
  virtual void CancelAcquire(UpstreamWaiter* waiter) = 0;
};

// What a downstream connection gives each of its calls. The pointers are
// worker-lifetime objects; the strings are copied into each call.
struct DownstreamContext {
  Dispatcher* dispatcher = nullptr;
  Router* router = nullptr;
  RequestFilter* filter = nullptr;  // optional
  UpstreamConnector* connector = nullptr;
  Counters* counters = nullptr;
  std::string peer_identity;
  std::string original_destination;
  // Inbound listeners: drop the caller's x-forwarded-client-cert, and set
  // `xfcc` (when non-empty) in its place.
  bool strip_xfcc = false;
  std::string xfcc;
};

// Received bytes waiting for the other side to take them.
class ByteQueue {
 public:
  void Append(const uint8_t* data, size_t size);
  // Moves up to `size` bytes into `out`; returns the count.
  size_t Read(uint8_t* out, size_t size);
  size_t size() const { return size_; }
  void Clear();

 private:
  std::deque<std::string> chunks_;
  size_t front_offset_ = 0;
  size_t size_ = 0;
};

class StreamPair final : public Deletable, private UpstreamWaiter {
 public:
  StreamPair(const DownstreamContext& context, Http2Session* downstream,
             int32_t downstream_stream_id);
  ~StreamPair() override;

  StreamHandler* downstream_handler() { return &downstream_half_; }

  // Bytes held for each direction (for tests of the memory bound).
  size_t buffered_request_bytes() const { return request_body_.size(); }
  size_t buffered_response_bytes() const { return response_body_.size(); }

 private:
  class DownstreamHalf final : public StreamHandler {
   public:
    explicit DownstreamHalf(StreamPair* pair) : pair_(pair) {}
    void OnHeaders(HeaderList headers, HeadersKind kind,
                   bool end_stream) override;
    void OnData(const uint8_t* data, size_t size) override;
    void OnEndStream() override;
    ssize_t ReadBody(uint8_t* buf, size_t size, uint32_t* flags) override;
    void OnStreamClose(uint32_t error_code, bool connection_lost) override;

   private:
    StreamPair* const pair_;
  };
  class UpstreamHalf final : public StreamHandler {
   public:
    explicit UpstreamHalf(StreamPair* pair) : pair_(pair) {}
    void OnHeaders(HeaderList headers, HeadersKind kind,
                   bool end_stream) override;
    void OnData(const uint8_t* data, size_t size) override;
    void OnEndStream() override;
    ssize_t ReadBody(uint8_t* buf, size_t size, uint32_t* flags) override;
    void OnStreamClose(uint32_t error_code, bool connection_lost) override;

   private:
    StreamPair* const pair_;
  };

  // Request path.
  void OnRequestHeaders(HeaderList headers, bool end_stream);
  void OnRequestTrailers(HeaderList trailers);
  void OnRequestData(const uint8_t* data, size_t size);
  void OnRequestEnd();
  ssize_t ReadRequestBody(uint8_t* buf, size_t size, uint32_t* flags);
  void OnDownstreamClose(uint32_t error_code, bool connection_lost);
  // Response path.
  void OnResponseHeaders(HeaderList headers, HeadersKind kind, bool end_stream);
  void OnResponseData(const uint8_t* data, size_t size);
  void OnResponseEnd();
  ssize_t ReadResponseBody(uint8_t* buf, size_t size, uint32_t* flags);
  void OnUpstreamClose(uint32_t error_code, bool connection_lost);

  // UpstreamWaiter.
  void OnUpstreamReady(Http2Session* session) override;
  void OnUpstreamFailure(const absl::Status& status) override;

  // Answers the client with a gRPC status of our own; the upstream stream,
  // if any, is cancelled.
  void LocalReply(absl::StatusCode code, const std::string& message);
  // Resets the upstream stream (if open) and stops listening to it.
  void ResetUpstream(uint32_t error_code);
  void MaybeFinish();

  const DownstreamContext& context_;  // only used while downstream is open
  Dispatcher* const dispatcher_;
  Counters* const counters_;
  UpstreamConnector* const connector_;

  DownstreamHalf downstream_half_{this};
  UpstreamHalf upstream_half_{this};

  Http2Session* downstream_;  // null once the downstream stream closed
  const int32_t downstream_id_;
  Http2Session* upstream_ = nullptr;  // null until acquired / once closed
  int32_t upstream_id_ = -1;
  bool waiting_for_upstream_ = false;

  HeaderList request_headers_;  // until submitted upstream
  HeaderList request_trailers_;
  ByteQueue request_body_;
  bool request_end_ = false;
  // The call is answered locally or upstream is gone: request bytes are
  // credited back and dropped.
  bool discard_request_ = false;

  ByteQueue response_body_;
  HeaderList response_trailers_;
  bool response_started_ = false;
  bool response_end_ = false;
  bool answered_locally_ = false;
  bool upstream_answered_ = false;
  bool finished_ = false;

  // For the RequestFilter's OnCallEnd.
  RequestFilter* const filter_;
  const absl::Time start_;
  bool filtered_ = false;  // OnRequest ran: OnCallEnd is owed
  std::string authority_;
  std::string path_;
  std::string peer_identity_;
  std::string filter_note_;
  int grpc_status_ = -1;
  uint64_t request_bytes_ = 0;
  uint64_t response_bytes_ = 0;
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_STREAM_PAIR_H_
