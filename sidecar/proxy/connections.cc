#include "sidecar/proxy/connections.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent_ssl.h>
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

std::string OpensslErrorString(bufferevent* bev) {
  std::string out;
  unsigned long err;
  while (bev != nullptr && (err = bufferevent_get_openssl_error(bev)) != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

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

// ---- Connection ----

Connection::Connection(Worker* worker) : worker_(worker) {}

Connection::~Connection() {
  // The session's transport is this object: destroy it first.
  session_.reset();
  bev_.reset();
}

void Connection::Adopt(bufferevent* bev, SSL* ssl) {
  bev_.reset(bev);
  ssl_ = ssl;
  bufferevent_setcb(bev, &OnRead, &OnWrite, &OnEvent, this);
  // Called back when the kernel has taken enough of our output that the
  // session may produce more (see kWriteHighWatermark).
  bufferevent_setwatermark(bev, EV_WRITE, kWriteHighWatermark / 2, 0);
  bufferevent_enable(bev, EV_READ | EV_WRITE);
}

absl::Status Connection::StartSession(Http2Session::Role role) {
  absl::StatusOr<std::unique_ptr<Http2Session>> session =
      Http2Session::Create(role, this, this);
  if (!session.ok()) return session.status();
  session_ = std::move(*session);
  session_->Flush();  // our SETTINGS (and the client preface)
  UpdateIdleTimer();
  // Bytes that arrived with the end of the handshake.
  if (bev_ != nullptr &&
      evbuffer_get_length(bufferevent_get_input(bev_.get())) > 0) {
    OnRead(bev_.get(), this);
  }
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
  if (bev_ != nullptr) bufferevent_write(bev_.get(), data, size);
}

size_t Connection::BufferedWriteBytes() const {
  return bev_ == nullptr
             ? 0
             : evbuffer_get_length(bufferevent_get_output(bev_.get()));
}

void Connection::SetReadEnabled(bool enabled) {
  if (bev_ == nullptr || closed_) return;
  if (enabled) {
    bufferevent_enable(bev_.get(), EV_READ);
  } else {
    bufferevent_disable(bev_.get(), EV_READ);
  }
}

void Connection::OnBytesSent(size_t n) { worker_->counters().bytes_out.Add(n); }

void Connection::OnRead(bufferevent* bev, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (self->closed_ || self->session_ == nullptr) return;
  evbuffer* in = bufferevent_get_input(bev);
  // Hand nghttp2 the buffer's chunks in place; no copy.
  while (!self->closed_ && evbuffer_get_length(in) > 0) {
    evbuffer_iovec vec;
    if (evbuffer_peek(in, -1, nullptr, &vec, 1) < 1) break;
    self->worker_->counters().bytes_in.Add(vec.iov_len);
    absl::Status s = self->session_->Receive(
        static_cast<const uint8_t*>(vec.iov_base), vec.iov_len);
    evbuffer_drain(in, vec.iov_len);
    if (!s.ok()) break;
  }
}

void Connection::OnWrite(bufferevent*, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (!self->closed_ && self->session_ != nullptr) {
    self->session_->OnWriteDrained();
  }
}

void Connection::OnEvent(bufferevent* bev, short events, void* arg) {
  auto* self = static_cast<Connection*>(arg);
  if (self->closed_) {
    self->FinalClose();
    return;
  }
  if (events & BEV_EVENT_CONNECTED) {
    if (self->handshake_timer_ != nullptr)
      evtimer_del(self->handshake_timer_.get());
    self->connected_ = true;
    self->OnConnected();
    return;
  }
  if (events & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
    std::string reason;
    if (events & BEV_EVENT_EOF) {
      reason = "connection closed by peer";
    } else {
      reason = OpensslErrorString(bev);
      if (reason.empty()) {
        int err = EVUTIL_SOCKET_ERROR();
        reason =
            err != 0 ? evutil_socket_error_to_string(err) : "connection error";
      }
    }
    self->OnTransportError(reason, !self->connected_);
  }
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
  if (flush && bev_ != nullptr && BufferedWriteBytes() > 0) {
    // Let the last frames (GOAWAY) out, but not forever.
    bufferevent_disable(bev_.get(), EV_READ);
    bufferevent_setwatermark(bev_.get(), EV_WRITE, 0, 0);
    bufferevent_setcb(bev_.get(), nullptr, &OnFlushedForClose, &OnEvent, this);
    close_timer_.reset(evtimer_new(worker_->base(), &OnCloseTimeout, this));
    timeval tv = {1, 0};
    evtimer_add(close_timer_.get(), &tv);
    return;
  }
  FinalClose();
}

void Connection::OnFlushedForClose(bufferevent*, void* arg) {
  static_cast<Connection*>(arg)->FinalClose();
}

void Connection::OnCloseTimeout(evutil_socket_t, short, void* arg) {
  static_cast<Connection*>(arg)->FinalClose();
}

void Connection::FinalClose() {
  if (final_closed_) return;
  final_closed_ = true;
  closed_ = true;
  if (bev_ != nullptr) {
    bufferevent_setcb(bev_.get(), nullptr, nullptr, nullptr, nullptr);
    bufferevent_disable(bev_.get(), EV_READ | EV_WRITE);
  }
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
  const int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
  if (ssl != nullptr) {
    bufferevent* bev = bufferevent_openssl_socket_new(
        worker_->base(), fd_, ssl.get(), BUFFEREVENT_SSL_ACCEPTING, options);
    if (bev == nullptr) {
      evutil_closesocket(fd_);
      Close(false);
      return;
    }
    SSL* raw = ssl.release();  // the bufferevent frees it
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    Adopt(bev, raw);
    ArmHandshakeTimer();
    return;
  }
  bufferevent* bev = bufferevent_socket_new(worker_->base(), fd_, options);
  if (bev == nullptr) {
    evutil_closesocket(fd_);
    Close(false);
    return;
  }
  Adopt(bev, nullptr);
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
    if (reason == "timed out") {
      worker_->counters().downstream_handshake_timeout.Add();
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
  if (fd_ >= 0 && bev_ == nullptr) evutil_closesocket(fd_);
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
  const int options = BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS;
  if (self->target_.use_tls) {
    ConnectionSecurity* security = self->worker_->security();
    crypto::SslPtr ssl(
        security != nullptr ? security->NewClientSsl(self->target_) : nullptr);
    if (ssl == nullptr) {
      self->worker_->counters().upstream_handshake_tls_error.Add();
      self->Fail("handshake failure: no TLS context for " +
                 self->target_.address);
      return;
    }
    bufferevent* bev =
        bufferevent_openssl_socket_new(self->worker_->base(), fd, ssl.get(),
                                       BUFFEREVENT_SSL_CONNECTING, options);
    if (bev == nullptr) {
      self->Fail("handshake failure: cannot create TLS bufferevent");
      return;
    }
    SSL* raw = ssl.release();  // the bufferevent frees it
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    self->Adopt(bev, raw);
    self->ArmHandshakeTimer();
    return;
  }
  bufferevent* bev = bufferevent_socket_new(self->worker_->base(), fd, options);
  if (bev == nullptr) {
    self->Fail("connect failure: cannot create bufferevent");
    return;
  }
  self->Adopt(bev, nullptr);
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
      } else {
        worker_->counters().upstream_handshake_tls_error.Add();
      }
      Fail(absl::StrCat("handshake failure: ", target_.address, ": ", reason));
    } else {
      Fail(absl::StrCat("connect failure: ", target_.address, ": ", reason));
    }
    return;
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

void UpstreamConnection::OnRemoteSettings() { pool_->OnCapacityChanged(this); }

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
