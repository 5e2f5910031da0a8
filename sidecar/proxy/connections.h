// Sockets (plain or TLS) bound to an Http2Session: the downstream side (a
// client connected to a listener, server role) and the upstream side (our
// connection to a target, client role). Internal to the proxy runtime.
//
// I/O path: one persistent EV_READ event per socket; each readiness does
// one recv() into the worker's buffer, and TLS records are decrypted from
// memory (a BIO over that buffer), so a record costs no extra system call.
// Output (the session's frames; for TLS, the plaintext) is queued per
// connection and written by the worker once per loop round, after every
// ready socket has been read: frames produced for one peer while handling
// several inputs leave in one send() and, for TLS, in records of up to
// 16 KiB. EV_WRITE is armed only while the kernel refuses bytes.
//
// Threading: the owning worker's thread only. Ownership: the worker holds
// raw pointers; a connection deletes itself (deferred) in Close().
#ifndef MESHGUARD_SIDECAR_PROXY_CONNECTIONS_H_
#define MESHGUARD_SIDECAR_PROXY_CONNECTIONS_H_

#include <event2/event.h>
#include <openssl/ssl.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"
#include "sidecar/proxy/api.h"
#include "sidecar/proxy/http2_session.h"
#include "sidecar/proxy/proxy.h"
#include "sidecar/proxy/stream_pair.h"
#include "sidecar/proxy/transport.h"
#include "sidecar/proxy/worker.h"

namespace meshguard::sidecar::proxy {

// One recheck pass's verdicts (Worker::RecheckPeersOlderThan), by the peer's
// chain (ConnectionSecurity::PeerChainKey): the connections of one peer,
// pooled siblings and those of every worker of a peer sidecar, cost one
// chain verification per pass. Lives on the worker's stack for the pass, so
// no verdict outlives the credentials it was reached under.
class RecheckVerdicts {
 public:
  explicit RecheckVerdicts(ConnectionSecurity* security)
      : security_(security) {}
  ConnectionSecurity::Refusal Check(SSL* ssl);
  int verified() const { return verified_; }

 private:
  ConnectionSecurity* security_;
  absl::flat_hash_map<std::string, ConnectionSecurity::Refusal> by_chain_;
  int verified_ = 0;
};

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
  // The trust bundle changed (credentials `version`). A connected TLS
  // connection whose peer still passes (ConnectionSecurity::RecheckPeer)
  // carries on, as of `version`; one whose peer does not (revoked, or its
  // root gone) is drained. One still in its handshake checks its peer once
  // the handshake completes, and is closed then if it fails.
  // `verdicts` holds the pass's verdicts so far, by peer chain.
  enum class Recheck { kKept, kDrained, kDeferred };
  Recheck RecheckPeer(uint64_t version, RecheckVerdicts* verdicts);
  // Closes now; with `flush`, what is queued is written first (bounded).
  void Close(bool flush);

  // Transport.
  void Write(const uint8_t* data, size_t size) override;
  size_t BufferedWriteBytes() const override;
  void SetReadEnabled(bool enabled) override;

  // SessionCallbacks (common part).
  void OnBytesSent(size_t n) override;

  // Encrypts and sends what is queued; the worker calls it once per loop
  // round for every connection that queued output.
  void FlushOutput();

 protected:
  // After a failed handshake: what we refused of the peer, if anything
  // (see ConnectionSecurity::HandshakeRefusal).
  ConnectionSecurity::Refusal::Kind HandshakeRefusalKind() const;
  // Takes over the connected, non-blocking socket `fd` and starts reading.
  // With `ssl`, runs the TLS handshake in the given role first; without,
  // the connection is up at once (the caller then calls OnConnected).
  void Adopt(evutil_socket_t fd, crypto::SslPtr ssl, bool server);
  absl::Status StartSession(Http2Session::Role role);
  // In OnConnected: true unless the trust bundle changed during the
  // handshake and the peer fails under the new one; that refusal is counted
  // on `identity_rejected` or `tls_error`, and `why` (if given) says why.
  bool PeerPassesRecheck(Counter& identity_rejected, Counter& tls_error,
                         std::string* why);
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
  evutil_socket_t socket_ = -1;  // owned once adopted
  crypto::SslPtr ssl_owner_;
  SSL* ssl_ = nullptr;  // ssl_owner_.get()
  std::unique_ptr<Http2Session> session_;
  CredentialInfo credentials_;
  bool connected_ = false;
  bool draining_ = false;
  // The trust bundle changed while the TLS handshake was under way: once
  // it completes, the peer is checked again (ConnectionSecurity::
  // RecheckPeer) before the connection carries a call.
  bool recheck_peer_ = false;
  bool closed_ = false;
  bool final_closed_ = false;
  // What ContinueHandshake learned of a failed handshake, kept for
  // HandshakeRefusalKind (the security object is asked once).
  std::optional<ConnectionSecurity::Refusal::Kind> refusal_kind_;
  EventPtr handshake_timer_;
  EventPtr idle_timer_;
  EventPtr goaway_timer_;
  EventPtr close_timer_;

 private:
  friend struct ConnectionBio;
  static void OnReadable(evutil_socket_t, short, void* arg);
  static void OnWritable(evutil_socket_t, short, void* arg);
  static void OnHandshakeTimeout(evutil_socket_t, short, void* arg);
  static void OnIdleTimeout(evutil_socket_t, short, void* arg);
  static void OnCloseTimeout(evutil_socket_t, short, void* arg);
  void FinalClose();
  void ScheduleFlush();
  // TLS: drives the handshake from the input in tls_in_.
  void ContinueHandshake();
  // TLS: decrypts what tls_in_ holds and hands it to the session.
  void ReadTls();
  // plain_out_ into TLS records in out_.
  bool EncryptPending();
  // out_ to the socket; arms EV_WRITE when the kernel refuses bytes.
  void SendPending();
  // Empties out_ and disarms EV_WRITE.
  void ClearOutput();
  void AfterSend();
  // A socket or TLS error after adoption.
  void OnIoError(const std::string& reason);

  EventPtr read_event_;
  EventPtr write_event_;
  bool read_enabled_ = true;
  bool write_armed_ = false;
  bool handshaking_ = false;
  bool flush_queued_ = false;
  bool closing_ = false;  // Close(flush) waiting for out_ to drain
  // The session stopped producing at the high watermark: tell it when the
  // queue drains below half of it.
  bool producer_blocked_ = false;
  // TLS: plaintext frames not yet encrypted.
  std::string plain_out_;
  // Bytes for the socket (ciphertext for TLS); out_head_ of them are sent.
  std::string out_;
  size_t out_head_ = 0;
  // TLS: ciphertext received and not yet taken by OpenSSL (points into the
  // worker's read buffer during one OnReadable).
  const uint8_t* tls_in_ = nullptr;
  size_t tls_in_len_ = 0;
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
  // The peer's SETTINGS arrived: HTTP/2 is up (TLS 1.3 servers check our
  // certificate after our side of the handshake; a refusal comes first).
  bool remote_settings_seen_ = false;
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_CONNECTIONS_H_
