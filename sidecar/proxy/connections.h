// Sockets (plain or TLS, through libevent bufferevents) bound to an
// Http2Session: the downstream side (a client connected to a listener,
// server role) and the upstream side (our connection to a target, client
// role). Internal to the proxy runtime.
//
// Threading: the owning worker's thread only. Ownership: the worker holds
// raw pointers; a connection deletes itself (deferred) in Close().
#ifndef MESHGUARD_SIDECAR_PROXY_CONNECTIONS_H_
#define MESHGUARD_SIDECAR_PROXY_CONNECTIONS_H_

#include <event2/bufferevent.h>
#include <event2/event.h>

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "sidecar/proxy/api.h"
#include "sidecar/proxy/http2_session.h"
#include "sidecar/proxy/proxy.h"
#include "sidecar/proxy/stream_pair.h"
#include "sidecar/proxy/transport.h"
#include "sidecar/proxy/worker.h"

namespace meshguard::sidecar::proxy {

struct BufferEventDeleter {
  void operator()(bufferevent* b) const { bufferevent_free(b); }
};
using BufferEventPtr = std::unique_ptr<bufferevent, BufferEventDeleter>;

class Connection : public Deletable, public Transport, public SessionCallbacks {
 public:
  explicit Connection(Worker* worker);
  ~Connection() override;

  // Graceful: GOAWAY, in-flight streams finish, then close.
  virtual void StartDrain() = 0;
  virtual bool is_downstream() const = 0;
  bool is_tls() const { return ssl_ != nullptr; }
  const CredentialInfo& credentials() const { return credentials_; }
  bool draining() const { return draining_; }
  // Closes now; with `flush`, what is queued is written first (bounded).
  void Close(bool flush);

  // Transport.
  void Write(const uint8_t* data, size_t size) override;
  size_t BufferedWriteBytes() const override;
  void SetReadEnabled(bool enabled) override;

  // SessionCallbacks (common part).
  void OnBytesSent(size_t n) override;

 protected:
  // Takes over `bev` (callbacks are set here); `ssl` is the bufferevent's
  // SSL (owned by it) or null.
  void Adopt(bufferevent* bev, SSL* ssl);
  absl::Status StartSession(Http2Session::Role role);
  // TLS handshake finished (or plaintext connected).
  virtual void OnConnected() = 0;
  // Error, EOF or timeout before or after the session started.
  virtual void OnTransportError(const std::string& reason, bool handshake) = 0;
  // Close() hook, before the streams are told.
  virtual void OnClose() {}
  void ArmHandshakeTimer();
  void UpdateIdleTimer();
  // ALPN + ConnectionSecurity::PeerIdentity after a TLS handshake.
  absl::StatusOr<std::string> CheckPeer(const UpstreamTarget* target);

  Worker* const worker_;
  BufferEventPtr bev_;
  SSL* ssl_ = nullptr;  // owned by bev_
  std::unique_ptr<Http2Session> session_;
  CredentialInfo credentials_;
  bool connected_ = false;
  bool draining_ = false;
  bool closed_ = false;
  bool final_closed_ = false;
  EventPtr handshake_timer_;
  EventPtr idle_timer_;
  EventPtr goaway_timer_;
  EventPtr close_timer_;

 private:
  static void OnRead(bufferevent* bev, void* arg);
  static void OnWrite(bufferevent* bev, void* arg);
  static void OnEvent(bufferevent* bev, short events, void* arg);
  static void OnFlushedForClose(bufferevent* bev, void* arg);
  static void OnHandshakeTimeout(evutil_socket_t, short, void* arg);
  static void OnIdleTimeout(evutil_socket_t, short, void* arg);
  static void OnCloseTimeout(evutil_socket_t, short, void* arg);
  void FinalClose();
};

// A client's connection to one of our listeners.
class DownstreamConnection final : public Connection {
 public:
  // Takes ownership of `fd`.
  DownstreamConnection(Worker* worker, const ListenerConfig& config,
                       evutil_socket_t fd);
  ~DownstreamConnection() override;
  void Start();

  void StartDrain() override;
  bool is_downstream() const override { return true; }

  // SessionCallbacks.
  StreamHandler* OnNewStream(int32_t stream_id) override;
  void OnActiveStreamsChanged() override;
  void OnSessionDone(absl::Status status) override;

 private:
  void OnConnected() override;
  void OnTransportError(const std::string& reason, bool handshake) override;
  static void OnGoawayTimer(evutil_socket_t, short, void* arg);

  const ListenerConfig& config_;
  evutil_socket_t fd_;
  DownstreamContext context_;
};

// Our connection to an upstream target, owned by the worker's pool.
class UpstreamConnection final : public Connection {
 public:
  UpstreamConnection(Worker* worker, UpstreamPool* pool,
                     const UpstreamTarget& target);
  ~UpstreamConnection() override;
  // Starts connecting; failure is reported to the pool (asynchronously).
  void Start();

  const UpstreamTarget& target() const { return target_; }
  bool ready() const { return session_ != nullptr && !closed_; }
  bool connecting() const { return !ready() && !closed_; }
  // Whether a new stream may go here now.
  bool HasCapacity() const;
  Http2Session* session() { return session_.get(); }

  void StartDrain() override;
  bool is_downstream() const override { return false; }

  // SessionCallbacks.
  StreamHandler* OnNewStream(int32_t) override { return nullptr; }
  void OnGoaway(int32_t last_stream_id, uint32_t error_code) override;
  void OnRemoteSettings() override;
  void OnActiveStreamsChanged() override;
  void OnSessionDone(absl::Status status) override;

 private:
  void OnConnected() override;
  void OnTransportError(const std::string& reason, bool handshake) override;
  void OnClose() override;
  static void OnSocketConnected(evutil_socket_t fd, short events, void* arg);
  void Fail(const std::string& message);

  UpstreamPool* const pool_;
  const UpstreamTarget target_;
  evutil_socket_t fd_ = -1;
  EventPtr connect_event_;
  bool failed_ = false;
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_CONNECTIONS_H_
