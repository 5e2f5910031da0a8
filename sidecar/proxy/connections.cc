#include "sidecar/proxy/connections.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/ssl_ptr.h"
#include "sidecar/proxy/upstream_pool.h"

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80  // <linux/netfilter_ipv4.h>
#endif

namespace meshguard::sidecar::proxy {
namespace {

timeval DurationToTimeval(absl::Duration d) { return absl::ToTimeval(d); }

std::string FormatAddress(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf));
    return absl::StrCat(buf, ":", ntohs(in->sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf));
    return absl::StrCat("[", buf, "]:", ntohs(in6->sin6_port));
  }
  return "";
}

// With iptables REDIRECT, the address the client meant; otherwise ours.
std::string OriginalDestination(evutil_socket_t fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len) != 0) {
    len = sizeof(ss);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) {
      return "";
    }
  }
  return FormatAddress(ss);
}

void SetNoDelay(evutil_socket_t fd) {
  // Small gRPC frames must not wait for Nagle.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

// Largest plaintext handed to one SSL_write: one full TLS record.
constexpr size_t kTlsRecordPayload = 16384;

// Envoy's x-forwarded-client-cert: By=<us>;Hash=<sha256 of peer
// cert>;URI=<peer>.
std::string ForwardedClientCert(SSL* ssl, const std::string& local_identity,
                                const std::string& peer_identity) {
#if OPENSSL_VERSION_NUMBER >= 0x30000000L
  crypto::X509Ptr cert(SSL_get1_peer_certificate(ssl));
#else
  crypto::X509Ptr cert(SSL_get_peer_certificate(ssl));
#endif
  std::string hash;
  if (cert != nullptr) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_digest(cert.get(), EVP_sha256(), md, &md_len) == 1) {
      hash = absl::BytesToHexString(
          absl::string_view(reinterpret_cast<char*>(md), md_len));
    }
  }
  std::string out;
  if (!local_identity.empty())
    absl::StrAppend(&out, "By=", local_identity, ";");
  absl::StrAppend(&out, "Hash=", hash, ";URI=", peer_identity);
  return out;
}

}  // namespace

// The BIO under a connection's SSL: reads come from the ciphertext the
// connection just received (tls_in_), writes append to its output queue.
// Neither touches the socket, so OpenSSL never makes a system call.
struct ConnectionBio {
  static int Write(BIO* bio, const char* data, int len) {
    BIO_clear_retry_flags(bio);
    auto* c = static_cast<Connection*>(BIO_get_data(bio));
    c->out_.append(data, static_cast<size_t>(len));
    return len;
  }
  static int Read(BIO* bio, char* out, int len) {
    BIO_clear_retry_flags(bio);
    auto* c = static_cast<Connection*>(BIO_get_data(bio));
    if (c->tls_in_len_ == 0) {
      BIO_set_retry_read(bio);
      return -1;
    }
    size_t n = std::min(c->tls_in_len_, static_cast<size_t>(len));
    memcpy(out, c->tls_in_, n);
    c->tls_in_ += n;
    c->tls_in_len_ -= n;
    return static_cast<int>(n);
  }
  static long Ctrl(BIO*, int cmd, long, void*) {
    // Writes are complete when Write returns; nothing else is supported.
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
  }
  static int Create(BIO* bio) {
    BIO_set_init(bio, 1);
    return 1;
  }
  static const BIO_METHOD* Method() {
    static BIO_METHOD* method = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                   "meshguard connection");
      BIO_meth_set_write(m, &Write);
      BIO_meth_set_read(m, &Read);
      BIO_meth_set_ctrl(m, &Ctrl);
      BIO_meth_set_create(m, &Create);
      return m;
    }();
    return method;
  }
};

// ---- Connection ----

Connection::Connection(Worker* worker) : worker_(worker) {}

Connection::~Connection() {
  // The session's transport is this object: destroy it first.
  session_.reset();
  if (flush_queued_) worker_->CancelFlush(this);
  read_event_.reset();
  write_event_.reset();
  if (socket_ >= 0) evutil_closesocket(socket_);
}

void Connection::Adopt(evutil_socket_t fd, crypto::SslPtr ssl, bool server) {
  socket_ = fd;
  read_event_.reset(
      event_new(worker_->base(), fd, EV_READ | EV_PERSIST, &OnReadable, this));
  write_event_.reset(
      event_new(worker_->base(), fd, EV_WRITE | EV_PERSIST, &OnWritable, this));
  event_add(read_event_.get(), nullptr);
  if (ssl == nullptr) return;
  ssl_owner_ = std::move(ssl);
  ssl_ = ssl_owner_.get();
  BIO* bio = BIO_new(ConnectionBio::Method());
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by the SSL
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
  }
  handshaking_ = true;
  ContinueHandshake();  // the client's first flight
}

absl::Status Connection::StartSession(Http2Session::Role role) {
  absl::StatusOr<std::unique_ptr<Http2Session>> session =
      Http2Session::Create(role, this, this);
  if (!session.ok()) return session.status();
  session_ = std::move(*session);
  session_->Flush();  // our SETTINGS (and the client preface)
  UpdateIdleTimer();
  return absl::OkStatus();
}

absl::StatusOr<std::string> Connection::CheckPeer(
    const UpstreamTarget* target) {
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_, &alpn, &alpn_len);
  if (alpn_len > 0 &&
      std::string_view(reinterpret_cast<const char*>(alpn), alpn_len) != "h2") {
    return absl::FailedPreconditionError(absl::StrCat(
        "ALPN negotiated \"",
        absl::string_view(reinterpret_cast<const char*>(alpn), alpn_len),
        "\", not h2"));
  }
  return worker_->security()->PeerIdentity(ssl_, target);
}

void Connection::Write(const uint8_t* data, size_t size) {
  if (closed_ && !closing_) return;
  (ssl_ != nullptr ? plain_out_ : out_)
      .append(reinterpret_cast<const char*>(data), size);
  if (BufferedWriteBytes() >= kWriteHighWatermark) producer_blocked_ = true;
  ScheduleFlush();
}

size_t Connection::BufferedWriteBytes() const {
  return plain_out_.size() + (out_.size() - out_head_);
}

void Connection::SetReadEnabled(bool enabled) {
  if (read_event_ == nullptr || closed_ || enabled == read_enabled_) return;
  read_enabled_ = enabled;
  if (enabled) {
    event_add(read_event_.get(), nullptr);
  } else {
    event_del(read_event_.get());
  }
}

void Connection::OnBytesSent(size_t n) { worker_->counters().bytes_out.Add(n); }

void Connection::ScheduleFlush() {
  if (flush_queued_ || final_closed_) return;
  flush_queued_ = true;
  worker_->QueueFlush(this);
}

void Connection::OnReadable(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (self->closed_) return;
  uint8_t* buf = self->worker_->read_buffer();
  const size_t cap = Worker::kReadBufferSize;
  ssize_t n;
  do {
    n = recv(fd, buf, cap, 0);
  } while (n < 0 && errno == EINTR);
  if (n == 0) {
    self->OnTransportError("connection closed by peer", !self->connected_);
    return;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    self->OnIoError(strerror(errno));
    return;
  }
  if (self->ssl_ == nullptr) {
    self->worker_->counters().bytes_in.Add(static_cast<size_t>(n));
    if (self->session_ != nullptr) {
      self->session_->Receive(buf, static_cast<size_t>(n)).IgnoreError();
    }
    return;
  }
  self->tls_in_ = buf;
  self->tls_in_len_ = static_cast<size_t>(n);
  if (self->handshaking_) self->ContinueHandshake();
  if (!self->handshaking_ && !self->closed_) self->ReadTls();
  // OpenSSL keeps a partial record itself; what is left here belongs to a
  // connection that closed meanwhile.
  self->tls_in_ = nullptr;
  self->tls_in_len_ = 0;
}

void Connection::ContinueHandshake() {
  ERR_clear_error();
  int rv = SSL_do_handshake(ssl_);
  if (rv == 1) {
    handshaking_ = false;
    if (!out_.empty()) ScheduleFlush();  // our last flight
    if (handshake_timer_ != nullptr) evtimer_del(handshake_timer_.get());
    connected_ = true;
    OnConnected();
    return;
  }
  int err = SSL_get_error(ssl_, rv);
  if (!out_.empty()) ScheduleFlush();
  if (err == SSL_ERROR_WANT_READ) return;
  std::string reason = crypto::ConsumeSslErrors();
  // Our verifier's own words ("peer is X, expected Y", "crl: ... revoked")
  // say more than OpenSSL's "certificate verify failed".
  if (worker_->security() != nullptr) {
    ConnectionSecurity::Refusal refusal =
        worker_->security()->HandshakeRefusal(ssl_);
    refusal_kind_ = refusal.kind;
    if (!refusal.message.empty()) reason = std::move(refusal.message);
  }
  // Best effort: let the peer see our alert before the socket closes.
  SendPending();
  if (!closed_) OnTransportError(reason, /*handshake=*/true);
}

ConnectionSecurity::Refusal::Kind Connection::HandshakeRefusalKind() const {
  if (refusal_kind_.has_value()) return *refusal_kind_;
  if (ssl_ == nullptr || worker_->security() == nullptr) {
    return ConnectionSecurity::Refusal::Kind::kNone;
  }
  return worker_->security()->HandshakeRefusal(ssl_).kind;
}

void Connection::ReadTls() {
  uint8_t* plain = worker_->plaintext_buffer();
  while (!closed_) {
    ERR_clear_error();
    int n =
        SSL_read(ssl_, plain, static_cast<int>(Worker::kPlaintextBufferSize));
    if (n > 0) {
      worker_->counters().bytes_in.Add(static_cast<size_t>(n));
      if (session_ != nullptr &&
          !session_->Receive(plain, static_cast<size_t>(n)).ok()) {
        break;
      }
      continue;
    }
    int err = SSL_get_error(ssl_, n);
    if (err == SSL_ERROR_WANT_READ) break;
    if (err == SSL_ERROR_ZERO_RETURN) {
      OnTransportError("connection closed by peer", false);
      return;
    }
    OnIoError(absl::StrCat("TLS read failed: ", crypto::ConsumeSslErrors()));
    return;
  }
  // Post-handshake messages (key update) may have produced output.
  if (!out_.empty() && !closed_) ScheduleFlush();
}

bool Connection::EncryptPending() {
  size_t off = 0;
  while (off < plain_out_.size()) {
    const size_t chunk = std::min(kTlsRecordPayload, plain_out_.size() - off);
    ERR_clear_error();
    int n = SSL_write(ssl_, plain_out_.data() + off, static_cast<int>(chunk));
    if (n <= 0) {
      plain_out_.clear();
      OnIoError(absl::StrCat("TLS write failed: ", crypto::ConsumeSslErrors()));
      return false;
    }
    off += static_cast<size_t>(n);
  }
  plain_out_.clear();
  return true;
}

void Connection::SendPending() {
  while (out_head_ < out_.size()) {
    ssize_t n = send(socket_, out_.data() + out_head_, out_.size() - out_head_,
                     MSG_NOSIGNAL);
    if (n > 0) {
      out_head_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!write_armed_ && write_event_ != nullptr) {
        write_armed_ = true;
        event_add(write_event_.get(), nullptr);
      }
      // Keep the queue from growing at the front forever.
      if (out_head_ >= kWriteHighWatermark && out_head_ * 2 >= out_.size()) {
        out_.erase(0, out_head_);
        out_head_ = 0;
      }
      return;
    }
    // A socket error: what is queued can never be sent. The caller's state
    // decides what the error means (during Close it just ends the flush).
    const std::string error = n < 0 ? strerror(errno) : "send failed";
    ClearOutput();
    if (!closed_) OnIoError(error);
    return;
  }
  ClearOutput();
}

void Connection::ClearOutput() {
  out_.clear();
  out_head_ = 0;
  if (write_armed_) {
    write_armed_ = false;
    event_del(write_event_.get());
  }
}

void Connection::AfterSend() {
  if (closing_) {
    if (BufferedWriteBytes() == 0) FinalClose();
    return;
  }
  if (producer_blocked_ && !closed_ && session_ != nullptr &&
      BufferedWriteBytes() < kWriteHighWatermark / 2) {
    producer_blocked_ = false;
    session_->OnWriteDrained();
  }
}

void Connection::FlushOutput() {
  flush_queued_ = false;
  if (final_closed_ || socket_ < 0) return;
  if (ssl_ != nullptr && !handshaking_ && !plain_out_.empty() &&
      !EncryptPending()) {
    return;
  }
  SendPending();
  AfterSend();
}

void Connection::OnWritable(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (self->final_closed_) return;
  self->SendPending();
  self->AfterSend();
}

void Connection::OnIoError(const std::string& reason) {
  if (closed_) {
    FinalClose();
    return;
  }
  OnTransportError(reason, !connected_);
}

void Connection::ArmHandshakeTimer() {
  handshake_timer_.reset(
      evtimer_new(worker_->base(), &OnHandshakeTimeout, this));
  timeval tv = DurationToTimeval(worker_->options().connect_timeout);
  evtimer_add(handshake_timer_.get(), &tv);
}

void Connection::OnHandshakeTimeout(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (!self->closed_ && !self->connected_) {
    self->OnTransportError("timed out", /*handshake=*/true);
  }
}

void Connection::UpdateIdleTimer() {
  if (closed_ || session_ == nullptr) return;
  if (session_->active_streams() == 0) {
    if (idle_timer_ == nullptr) {
      idle_timer_.reset(evtimer_new(worker_->base(), &OnIdleTimeout, this));
    }
    timeval tv = DurationToTimeval(worker_->options().idle_timeout);
    evtimer_add(idle_timer_.get(), &tv);
  } else if (idle_timer_ != nullptr) {
    evtimer_del(idle_timer_.get());
  }
}

void Connection::OnIdleTimeout(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (!self->closed_) self->StartDrain();
}

ConnectionSecurity::Refusal RecheckVerdicts::Check(SSL* ssl) {
  std::string key = security_->PeerChainKey(ssl);
  if (!key.empty()) {
    auto it = by_chain_.find(key);
    if (it != by_chain_.end()) return it->second;
  }
  ++verified_;
  ConnectionSecurity::Refusal refusal = security_->RecheckPeer(ssl);
  if (!key.empty()) by_chain_.emplace(std::move(key), refusal);
  return refusal;
}

Connection::Recheck Connection::RecheckPeer(uint64_t version,
                                            RecheckVerdicts* verdicts) {
  if (!connected_) {
    // The handshake runs under the old bundle; the peer is checked once it
    // completes (OnConnected), before the connection carries a call.
    recheck_peer_ = true;
    return Recheck::kDeferred;
  }
  ConnectionSecurity::Refusal refusal = verdicts->Check(ssl_);
  if (refusal.kind == ConnectionSecurity::Refusal::Kind::kNone) {
    credentials_.version = version;
    return Recheck::kKept;
  }
  StartDrain();
  return Recheck::kDrained;
}

bool Connection::PeerPassesRecheck(Counter& identity_rejected,
                                   Counter& tls_error, std::string* why) {
  if (!recheck_peer_) return true;
  ConnectionSecurity::Refusal refusal = worker_->security()->RecheckPeer(ssl_);
  if (refusal.kind == ConnectionSecurity::Refusal::Kind::kNone) return true;
  (refusal.kind == ConnectionSecurity::Refusal::Kind::kIdentity
       ? identity_rejected
       : tls_error)
      .Add();
  if (why != nullptr) *why = std::move(refusal.message);
  return false;
}

void Connection::Close(bool flush) {
  if (closed_) return;
  closed_ = true;
  worker_->RemoveConnection(this);
  OnClose();
  for (EventPtr* t : {&handshake_timer_, &idle_timer_, &goaway_timer_}) {
    t->reset();
  }
  // Streams still open learn that the connection is gone.
  if (session_ != nullptr && !session_->done()) {
    session_->Terminate(absl::CancelledError("connection closed"));
  }
  if (flush && socket_ >= 0 && BufferedWriteBytes() > 0 && !handshaking_) {
    // Let the last frames (GOAWAY) out, but not forever.
    closing_ = true;
    if (read_event_ != nullptr) event_del(read_event_.get());
    close_timer_.reset(evtimer_new(worker_->base(), &OnCloseTimeout, this));
    timeval tv = {1, 0};
    evtimer_add(close_timer_.get(), &tv);
    FlushOutput();
    return;
  }
  FinalClose();
}

void Connection::OnCloseTimeout(evutil_socket_t, short, void* arg) {
  static_cast<Connection*>(arg)->FinalClose();
}

void Connection::FinalClose() {
  if (final_closed_) return;
  final_closed_ = true;
  closed_ = true;
  closing_ = false;
  read_event_.reset();
  write_event_.reset();
  close_timer_.reset();
  worker_->DeferredDelete(std::unique_ptr<Deletable>(this));
}

// ---- DownstreamConnection ----

DownstreamConnection::DownstreamConnection(Worker* worker,
                                           const ListenerConfig& config,
                                           evutil_socket_t fd)
    : Connection(worker), config_(config), fd_(fd) {
  worker->counters().downstream_connections_active.Add();
  worker->counters().downstream_connections_total.Add();
  context_.dispatcher = worker;
  context_.router = config.router;
  context_.filter = config.filter;
  context_.connector = &worker->pool();
  context_.counters = &worker->counters();
  context_.original_destination = OriginalDestination(fd);
  context_.strip_xfcc = config.role == ListenerRole::kInboundTls;
}

DownstreamConnection::~DownstreamConnection() {
  worker_->counters().downstream_connections_active.Sub();
}

void DownstreamConnection::Start() {
  worker_->AddConnection(this);
  SetNoDelay(fd_);
  crypto::SslPtr ssl;
  if (config_.role == ListenerRole::kInboundTls &&
      worker_->security() != nullptr) {
    ssl.reset(worker_->security()->NewServerSsl());
    if (ssl == nullptr) {
      // A TLS listener never falls back to plaintext: no context, no call.
      worker_->counters().downstream_handshake_tls_error.Add();
      evutil_closesocket(fd_);
      Close(false);
      return;
    }
  }
  const evutil_socket_t fd = fd_;
  fd_ = -1;  // the connection owns it from here
  if (ssl != nullptr) {
    ArmHandshakeTimer();
    Adopt(fd, std::move(ssl), /*server=*/true);
    return;
  }
  Adopt(fd, nullptr, /*server=*/true);
  connected_ = true;
  OnConnected();
}

void DownstreamConnection::OnConnected() {
  Counters& counters = worker_->counters();
  if (ssl_ != nullptr) {
    absl::StatusOr<std::string> peer = CheckPeer(nullptr);
    if (!peer.ok()) {
      if (absl::StartsWith(peer.status().message(), "ALPN")) {
        counters.downstream_handshake_alpn_mismatch.Add();
      } else {
        counters.downstream_handshake_identity_rejected.Add();
      }
      Close(false);
      return;
    }
    if (!PeerPassesRecheck(counters.downstream_handshake_identity_rejected,
                           counters.downstream_handshake_tls_error, nullptr)) {
      Close(false);
      return;
    }
    context_.peer_identity = *peer;
    credentials_ = worker_->security()->Credentials(ssl_);
    context_.xfcc = ForwardedClientCert(ssl_, config_.local_identity,
                                        context_.peer_identity);
  }
  if (!StartSession(Http2Session::Role::kServer).ok()) Close(false);
}

void DownstreamConnection::OnTransportError(const std::string& reason,
                                            bool handshake) {
  if (handshake && ssl_ != nullptr) {
    using Kind = ConnectionSecurity::Refusal::Kind;
    const Kind kind = HandshakeRefusalKind();
    if (reason == "timed out") {
      worker_->counters().downstream_handshake_timeout.Add();
    } else if (kind == Kind::kIdentity) {
      worker_->counters().downstream_handshake_identity_rejected.Add();
    } else if (kind == Kind::kAlpn) {
      worker_->counters().downstream_handshake_alpn_mismatch.Add();
    } else {
      worker_->counters().downstream_handshake_tls_error.Add();
    }
  }
  Close(false);
}

StreamHandler* DownstreamConnection::OnNewStream(int32_t stream_id) {
  auto* pair = new StreamPair(context_, session_.get(), stream_id);
  return pair->downstream_handler();
}

void DownstreamConnection::OnActiveStreamsChanged() { UpdateIdleTimer(); }

void DownstreamConnection::OnSessionDone(absl::Status) { Close(true); }

void DownstreamConnection::StartDrain() {
  if (draining_ || closed_) return;
  draining_ = true;
  if (session_ == nullptr) {
    Close(false);
    return;
  }
  worker_->counters().goaways_sent.Add();
  // Two-step GOAWAY (RFC 9113 6.8): first announce, then, after streams
  // the client opened meanwhile had time to arrive, the real last stream id.
  session_->SubmitShutdownNotice();
  goaway_timer_.reset(evtimer_new(worker_->base(), &OnGoawayTimer, this));
  timeval tv = DurationToTimeval(worker_->options().goaway_notice_delay);
  evtimer_add(goaway_timer_.get(), &tv);
}

void DownstreamConnection::OnGoawayTimer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<DownstreamConnection*>(arg);
  if (!self->closed_ && self->session_ != nullptr) {
    self->session_->SubmitGoaway();
  }
}

// ---- UpstreamConnection ----

UpstreamConnection::UpstreamConnection(Worker* worker, UpstreamPool* pool,
                                       const UpstreamTarget& target)
    : Connection(worker), pool_(pool), target_(target) {
  worker->counters().upstream_connections_active.Add();
  worker->counters().upstream_connections_total.Add();
}

UpstreamConnection::~UpstreamConnection() {
  if (fd_ >= 0) evutil_closesocket(fd_);
  worker_->counters().upstream_connections_active.Sub();
}

bool UpstreamConnection::HasCapacity() const {
  return ready() && !draining_ && session_->CanOpenStream();
}

void UpstreamConnection::Start() {
  worker_->AddConnection(this);
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (!ParseSocketAddress(target_.address, &ss, &len)) {
    // Reported after Acquire returns, like every other failure.
    worker_->Post([this] {
      Fail(absl::StrCat("connect failure: ", target_.address,
                        ": not a numeric address:port"));
    });
    return;
  }
  fd_ = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    const std::string err = strerror(errno);
    worker_->Post([this, err] {
      Fail(absl::StrCat("connect failure: ", target_.address, ": ", err));
    });
    return;
  }
  SetNoDelay(fd_);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&ss), len) != 0 &&
      errno != EINPROGRESS) {
    const std::string err = strerror(errno);
    worker_->Post([this, err] {
      Fail(absl::StrCat("connect failure: ", target_.address, ": ", err));
    });
    return;
  }
  connect_event_.reset(
      event_new(worker_->base(), fd_, EV_WRITE, &OnSocketConnected, this));
  timeval tv = DurationToTimeval(worker_->options().connect_timeout);
  event_add(connect_event_.get(), &tv);
}

void UpstreamConnection::OnSocketConnected(evutil_socket_t fd, short events,
                                           void* arg) {
  auto* self = static_cast<UpstreamConnection*>(arg);
  self->connect_event_.reset();
  if (self->closed_) return;
  if (events & EV_TIMEOUT) {
    self->worker_->counters().upstream_connect_timeout.Add();
    self->Fail(absl::StrCat("connect failure: ", self->target_.address,
                            ": timed out"));
    return;
  }
  int err = 0;
  socklen_t err_len = sizeof(err);
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len);
  if (err != 0) {
    self->worker_->counters().upstream_connect_error.Add();
    self->Fail(absl::StrCat("connect failure: ", self->target_.address, ": ",
                            strerror(err)));
    return;
  }
  self->fd_ = -1;  // the connection owns it from here
  if (self->target_.use_tls) {
    ConnectionSecurity* security = self->worker_->security();
    crypto::SslPtr ssl(
        security != nullptr ? security->NewClientSsl(self->target_) : nullptr);
    if (ssl == nullptr) {
      evutil_closesocket(fd);
      self->worker_->counters().upstream_handshake_tls_error.Add();
      self->Fail("handshake failure: no TLS context for " +
                 self->target_.address);
      return;
    }
    self->ArmHandshakeTimer();
    self->Adopt(fd, std::move(ssl), /*server=*/false);
    return;
  }
  self->Adopt(fd, nullptr, /*server=*/false);
  self->connected_ = true;
  self->OnConnected();
}

void UpstreamConnection::OnConnected() {
  if (ssl_ != nullptr) {
    absl::StatusOr<std::string> peer = CheckPeer(&target_);
    if (!peer.ok()) {
      if (absl::StartsWith(peer.status().message(), "ALPN")) {
        worker_->counters().upstream_handshake_alpn_mismatch.Add();
      } else {
        worker_->counters().upstream_handshake_identity_rejected.Add();
      }
      Fail(absl::StrCat("handshake failure: ", target_.address, ": ",
                        peer.status().message()));
      return;
    }
    // The calls waiting for this connection go to the peer only if it
    // passes under the trust bundle current now.
    std::string why;
    if (!PeerPassesRecheck(
            worker_->counters().upstream_handshake_identity_rejected,
            worker_->counters().upstream_handshake_tls_error, &why)) {
      Fail(absl::StrCat("handshake failure: ", target_.address, ": ", why));
      return;
    }
    credentials_ = worker_->security()->Credentials(ssl_);
  }
  absl::Status s = StartSession(Http2Session::Role::kClient);
  if (!s.ok()) {
    Fail(absl::StrCat("connect failure: ", target_.address, ": ", s.message()));
    return;
  }
  pool_->OnConnectionReady(this);
}

void UpstreamConnection::OnTransportError(const std::string& reason,
                                          bool handshake) {
  if (session_ == nullptr) {
    if (target_.use_tls) {
      if (reason == "timed out") {
        worker_->counters().upstream_connect_timeout.Add();
      } else if (HandshakeRefusalKind() ==
                 ConnectionSecurity::Refusal::Kind::kIdentity) {
        worker_->counters().upstream_handshake_identity_rejected.Add();
      } else {
        worker_->counters().upstream_handshake_tls_error.Add();
      }
      Fail(absl::StrCat("handshake failure: ", target_.address, ": ", reason));
    } else {
      Fail(absl::StrCat("connect failure: ", target_.address, ": ", reason));
    }
    return;
  }
  if (target_.use_tls && !remote_settings_seen_) {
    // Our handshake was done, theirs was not: in TLS 1.3 the server checks
    // our certificate after we sent it, and its refusal (an alert: revoked,
    // unknown CA, no certificate) arrives where its SETTINGS would have.
    worker_->counters().upstream_handshake_tls_error.Add();
    session_->set_loss_message(absl::StrCat(
        "handshake failure: ", target_.address,
        ": the peer refused our certificate or the connection: ", reason));
  }
  Close(false);
}

void UpstreamConnection::Fail(const std::string& message) {
  if (failed_ || closed_) return;
  failed_ = true;
  pool_->OnConnectionFailed(this, absl::UnavailableError(message));
  Close(false);
}

void UpstreamConnection::OnClose() { pool_->OnConnectionClosed(this); }

void UpstreamConnection::OnGoaway(int32_t, uint32_t) {
  worker_->counters().goaways_received.Add();
  draining_ = true;
  pool_->OnCapacityChanged(this);
}

void UpstreamConnection::OnRemoteSettings() {
  remote_settings_seen_ = true;
  pool_->OnCapacityChanged(this);
}

void UpstreamConnection::OnActiveStreamsChanged() {
  UpdateIdleTimer();
  if (draining_ && session_ != nullptr && session_->active_streams() == 0 &&
      !session_->goaway_received()) {
    session_->SubmitGoaway();
    return;
  }
  pool_->OnCapacityChanged(this);
}

void UpstreamConnection::OnSessionDone(absl::Status) { Close(true); }

void UpstreamConnection::StartDrain() {
  if (draining_ || closed_) return;
  draining_ = true;
  if (session_ == nullptr) return;  // still connecting: serves its waiters
  if (session_->active_streams() == 0) session_->SubmitGoaway();
}

}  // namespace meshguard::sidecar::proxy
