// One HTTP/2 connection's protocol state (nghttp2), in the server role (a
// downstream client connected to us) or the client role (our connection to
// an upstream). Bytes come in through Receive() and go out through the
// Transport; events go to a SessionCallbacks (connection-wide) and to one
// StreamHandler per stream.
//
// Flow control is end to end: automatic WINDOW_UPDATEs are off, and a
// stream's received DATA is only credited back (Consume) once the handler
// has passed it on, so a slow consumer anywhere slows the sender and a
// stream never buffers more than its window.
//
// Threading: single-threaded; every method and callback runs on the owning
// worker's thread. Re-entrancy: handlers may call any method of any session
// from a callback; output produced from inside a callback of this session is
// flushed when the outermost call returns.
#ifndef MESHGUARD_SIDECAR_PROXY_HTTP2_SESSION_H_
#define MESHGUARD_SIDECAR_PROXY_HTTP2_SESSION_H_

#include <nghttp2/nghttp2.h>

#include <cstdint>
#include <memory>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "sidecar/proxy/api.h"
#include "sidecar/proxy/transport.h"

namespace meshguard::sidecar::proxy {

// Per-stream receive window we advertise: what one stream may buffer in the
// proxy. 1 MiB keeps a single fast stream near line rate on a LAN.
inline constexpr int32_t kStreamWindow = 1 << 20;
// Connection receive window: bounds all streams of one connection together.
inline constexpr int32_t kConnectionWindow = 16 << 20;
// Streams a downstream client may open on one connection.
inline constexpr uint32_t kMaxConcurrentStreams = 2048;
// The session stops producing frames while the transport holds this much
// unsent output, and stops reading input while it holds kReadPauseBytes
// (a peer that sends but does not read cannot grow our buffers).
inline constexpr size_t kWriteHighWatermark = 64 << 10;
inline constexpr size_t kReadPauseBytes = 4 << 20;

enum class HeadersKind {
  kRequest,        // server role: the request's header block
  kResponse,       // client role: the final response header block
  kTrailers,       // trailers (either direction)
  kInformational,  // client role: a 1xx response; the proxy drops these
};

class StreamHandler {
 public:
  virtual ~StreamHandler() = default;
  virtual void OnHeaders(HeaderList headers, HeadersKind kind,
                         bool end_stream) = 0;
  // Each chunk must be given back with Http2Session::Consume once passed on.
  virtual void OnData(const uint8_t* data, size_t size) = 0;
  // END_STREAM arrived on a DATA frame (on HEADERS it comes with OnHeaders).
  virtual void OnEndStream() = 0;
  // The body source for this stream's outgoing DATA: copy up to `size`
  // bytes into `buf`; return the count, NGHTTP2_ERR_DEFERRED when nothing is
  // available yet (then call ResumeData), and set NGHTTP2_DATA_FLAG_EOF (and
  // NGHTTP2_DATA_FLAG_NO_END_STREAM after submitting trailers) at the end.
  virtual ssize_t ReadBody(uint8_t* buf, size_t size, uint32_t* flags) = 0;
  // The last call: the stream is closed (error_code NGHTTP2_NO_ERROR after a
  // normal end, the RST_STREAM code otherwise). `connection_lost` when the
  // whole connection went away underneath it.
  virtual void OnStreamClose(uint32_t error_code, bool connection_lost) = 0;
};

class SessionCallbacks {
 public:
  virtual ~SessionCallbacks() = default;
  // Server role: a client opened `stream_id`. Return its handler (valid
  // until its OnStreamClose) or nullptr to refuse it with REFUSED_STREAM.
  virtual StreamHandler* OnNewStream(int32_t stream_id) = 0;
  virtual void OnGoaway(int32_t last_stream_id, uint32_t error_code) {}
  virtual void OnRemoteSettings() {}
  virtual void OnActiveStreamsChanged() {}
  // The session has nothing left to do (GOAWAY exchanged and no streams,
  // peer closed, or a protocol error): the owner should close the transport
  // and destroy the session (deferred; this runs inside session calls).
  virtual void OnSessionDone(absl::Status status) = 0;
  // Accounting hooks.
  virtual void OnBytesSent(size_t n) {}
};

class Http2Session final {
 public:
  enum class Role { kServer, kClient };

  // `transport` and `callbacks` must outlive the session.
  static absl::StatusOr<std::unique_ptr<Http2Session>> Create(
      Role role, Transport* transport, SessionCallbacks* callbacks);
  ~Http2Session();

  Http2Session(const Http2Session&) = delete;
  Http2Session& operator=(const Http2Session&) = delete;

  // Feeds bytes from the peer. An error means the session is done.
  absl::Status Receive(const uint8_t* data, size_t size);
  // Writes whatever nghttp2 has queued, up to the transport's watermark.
  // Call again when the transport's buffer drains.
  void Flush();
  // The transport drained below the watermark.
  void OnWriteDrained();

  // Client role. Returns the new stream id. With `has_body`, the handler's
  // ReadBody supplies DATA; otherwise the HEADERS carry END_STREAM. Does not
  // flush: call Flush() once the id is recorded.
  absl::StatusOr<int32_t> SubmitRequest(const HeaderList& headers,
                                        StreamHandler* handler, bool has_body);
  // Server role: response headers; with has_body=false it is trailers-only
  // (HEADERS with END_STREAM).
  absl::Status SubmitResponse(int32_t stream_id, const HeaderList& headers,
                              bool has_body);
  // Trailers; must be called from the handler's ReadBody when it returns
  // EOF with NO_END_STREAM, or when no body is in flight.
  absl::Status SubmitTrailers(int32_t stream_id, const HeaderList& headers);
  void SubmitRst(int32_t stream_id, uint32_t error_code);
  void ResumeData(int32_t stream_id);
  // Credits `size` received bytes back to the peer (stream and connection).
  void Consume(int32_t stream_id, size_t size);
  // Stops calling the stream's handler; later events for it are dropped
  // (received DATA is credited back at once).
  void Detach(int32_t stream_id);

  // Server role, graceful shutdown phase 1: GOAWAY(2^31-1) warns the client
  // that no new streams will be accepted soon.
  void SubmitShutdownNotice();
  // GOAWAY(last processed stream): in-flight streams finish, new ones are
  // refused; the session is done once they have.
  void SubmitGoaway(uint32_t error_code = NGHTTP2_NO_ERROR);
  // Ends the connection now: handlers get OnStreamClose(connection_lost).
  void Terminate(absl::Status reason);
  // Set before the connection is lost for a reason a caller should read in
  // its UNAVAILABLE (e.g. the peer refused our certificate); empty: none.
  void set_loss_message(std::string message) {
    loss_message_ = std::move(message);
  }
  const std::string& loss_message() const { return loss_message_; }

  bool goaway_sent() const { return goaway_sent_; }
  bool goaway_received() const { return goaway_received_; }
  bool done() const { return done_; }
  // Client role: whether another stream may be opened now.
  bool CanOpenStream() const;
  size_t active_streams() const { return handlers_.size(); }
  uint32_t peer_max_concurrent_streams() const;
  // Receive window still open to the peer on `stream_id` (for tests).
  int32_t StreamReceiveWindow(int32_t stream_id) const;
  int32_t ConnectionSendWindow() const;
  int32_t StreamSendWindow(int32_t stream_id) const;

 private:
  Http2Session(Role role, Transport* transport, SessionCallbacks* callbacks);

  StreamHandler* Find(int32_t stream_id) const;
  void CloseStream(int32_t stream_id, uint32_t error_code,
                   bool connection_lost);
  void CheckDone();
  void Finish(absl::Status status);

  // nghttp2 callbacks.
  static int OnBeginHeaders(nghttp2_session*, const nghttp2_frame* frame,
                            void* user_data);
  static int OnHeader(nghttp2_session*, const nghttp2_frame* frame,
                      const uint8_t* name, size_t namelen, const uint8_t* value,
                      size_t valuelen, uint8_t flags, void* user_data);
  static int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame,
                         void* user_data);
  static int OnDataChunkRecv(nghttp2_session*, uint8_t flags, int32_t stream_id,
                             const uint8_t* data, size_t len, void* user_data);
  static int OnStreamCloseCb(nghttp2_session*, int32_t stream_id,
                             uint32_t error_code, void* user_data);
  static int OnFrameNotSend(nghttp2_session*, const nghttp2_frame* frame,
                            int lib_error_code, void* user_data);
  static ssize_t ReadBodyCb(nghttp2_session*, int32_t stream_id, uint8_t* buf,
                            size_t length, uint32_t* data_flags,
                            nghttp2_data_source* source, void* user_data);

  struct NgSessionDeleter {
    void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
  };

  const Role role_;
  Transport* const transport_;
  SessionCallbacks* const callbacks_;
  std::unique_ptr<nghttp2_session, NgSessionDeleter> session_;
  // Streams with a live handler, and the header block being received on
  // each. The handler map, not nghttp2's stream user data, is the truth, so
  // that Terminate can reach every stream.
  absl::flat_hash_map<int32_t, StreamHandler*> handlers_;
  absl::flat_hash_map<int32_t, HeaderList> pending_headers_;
  absl::flat_hash_map<int32_t, bool> got_initial_headers_;
  // Depth of nghttp2 calls in progress on this session (which may call back
  // into us); output requested meanwhile is flushed when it returns to 0.
  int busy_ = 0;
  bool flush_pending_ = false;
  bool read_paused_ = false;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  bool done_ = false;
  std::string loss_message_;
  bool destroying_ = false;
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_HTTP2_SESSION_H_
