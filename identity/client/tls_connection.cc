#include "identity/client/tls_connection.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"

namespace meshguard::client {
namespace {

constexpr size_t kIoChunk = 16 * 1024;

// Owns a socket until it is handed to a TlsConnection.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() {
    if (fd_ >= 0) close(fd_);
  }
  UniqueFd(UniqueFd&& other) : fd_(other.Release()) {}
  UniqueFd& operator=(UniqueFd&& other) {
    if (this != &other) {
      if (fd_ >= 0) close(fd_);
      fd_ = other.Release();
    }
    return *this;
  }
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

std::string Errno(int err) { return std::strerror(err); }

// Waits until `fd` is ready for `events`, the deadline passes or the cancel
// fd becomes readable.
absl::Status WaitFd(int fd, short events, const IoLimits& limits,
                    const char* what) {
  while (true) {
    int timeout_ms = -1;
    if (limits.deadline != absl::InfiniteFuture()) {
      const absl::Duration left = limits.deadline - absl::Now();
      if (left <= absl::ZeroDuration()) {
        return absl::DeadlineExceededError(
            absl::StrCat("deadline exceeded while ", what));
      }
      timeout_ms = static_cast<int>(std::min<int64_t>(
          absl::ToInt64Milliseconds(absl::Ceil(left, absl::Milliseconds(1))),
          INT_MAX));
    }
    pollfd fds[2] = {{fd, events, 0}, {limits.cancel_fd, POLLIN, 0}};
    const nfds_t n = limits.cancel_fd >= 0 ? 2 : 1;
    const int r = poll(fds, n, timeout_ms);
    if (r < 0) {
      if (errno == EINTR) continue;
      return absl::UnavailableError(absl::StrCat("poll: ", Errno(errno)));
    }
    if (r == 0) continue;  // the loop re-checks the deadline
    if (n == 2 && fds[1].revents != 0) {
      return absl::CancelledError(absl::StrCat("cancelled while ", what));
    }
    // Readiness, or an error/hang-up that the next I/O call will report.
    if (fds[0].revents != 0) return absl::OkStatus();
  }
}

std::string AddressString(const sockaddr* sa) {
  char host[NI_MAXHOST];
  char port[NI_MAXSERV];
  if (getnameinfo(sa,
                  sa->sa_family == AF_INET6 ? sizeof(sockaddr_in6)
                                            : sizeof(sockaddr_in),
                  host, sizeof(host), port, sizeof(port),
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    return "?";
  }
  return sa->sa_family == AF_INET6 ? absl::StrCat("[", host, "]:", port)
                                   : absl::StrCat(host, ":", port);
}

// Connects to one resolved address.
absl::StatusOr<UniqueFd> ConnectOne(const addrinfo* ai,
                                    const IoLimits& limits) {
  UniqueFd fd(socket(ai->ai_family,
                     ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                     ai->ai_protocol));
  if (fd.get() < 0) {
    return absl::UnavailableError(absl::StrCat("socket: ", Errno(errno)));
  }
  const std::string where = AddressString(ai->ai_addr);
  if (connect(fd.get(), ai->ai_addr, ai->ai_addrlen) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(
          absl::StrCat("connect to ", where, ": ", Errno(errno)));
    }
    if (absl::Status s = WaitFd(fd.get(), POLLOUT, limits, "connecting");
        !s.ok()) {
      return s;
    }
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
      err = errno;
    }
    if (err != 0) {
      return absl::UnavailableError(
          absl::StrCat("connect to ", where, ": ", Errno(err)));
    }
  }
  int one = 1;
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  return fd;
}

absl::StatusOr<UniqueFd> ConnectTcp(const HostPort& endpoint,
                                    const IoLimits& limits) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  if (int rv = getaddrinfo(endpoint.host.c_str(), endpoint.port.c_str(), &hints,
                           &raw);
      rv != 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", endpoint.host, ": ", gai_strerror(rv)));
  }
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> list(raw, freeaddrinfo);
  absl::Status last =
      absl::UnavailableError(absl::StrCat("no address for ", endpoint.host));
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    absl::StatusOr<UniqueFd> fd = ConnectOne(ai, limits);
    if (fd.ok()) return fd;
    last = fd.status();
    // Out of time or asked to stop: no point trying the next address.
    if (!absl::IsUnavailable(last)) return last;
  }
  return last;
}

// Loads a client certificate chain and key into `ssl`.
absl::Status UseClientCertificate(SSL* ssl, const std::string& chain_pem,
                                  const std::string& key_pem) {
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(chain_pem);
  if (!chain.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("client certificate: ", chain.status().message()));
  }
  absl::StatusOr<crypto::EvpPkeyPtr> key = crypto::PrivateKeyFromPem(key_pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("client key: ", key.status().message()));
  }
  if (SSL_use_certificate(ssl, chain->front().get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("client certificate: ", crypto::ConsumeSslErrors()));
  }
  for (size_t i = 1; i < chain->size(); ++i) {
    if (SSL_add1_chain_cert(ssl, (*chain)[i].get()) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "client certificate chain: ", crypto::ConsumeSslErrors()));
    }
  }
  if (SSL_use_PrivateKey(ssl, key->get()) != 1 ||
      SSL_check_private_key(ssl) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("client key: ", crypto::ConsumeSslErrors()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HostPort> ParseHostPort(absl::string_view address) {
  absl::ConsumePrefix(&address, "dns:///");
  HostPort out;
  absl::string_view rest;
  if (absl::ConsumePrefix(&address, "[")) {
    const size_t close = address.find(']');
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("CA address \"", address, "\": unterminated [IPv6]"));
    }
    out.host = std::string(address.substr(0, close));
    rest = address.substr(close + 1);
  } else {
    const size_t colon = address.rfind(':');
    if (colon != absl::string_view::npos &&
        address.find(':') != colon) {  // a bare IPv6 literal: no port
      out.host = std::string(address);
    } else {
      out.host = std::string(address.substr(0, colon));
      if (colon != absl::string_view::npos) rest = address.substr(colon);
    }
  }
  if (out.host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CA address \"", address, "\" names no host"));
  }
  if (rest.empty()) {
    out.port = "443";
  } else {
    int port = 0;
    if (!absl::ConsumePrefix(&rest, ":") || !absl::SimpleAtoi(rest, &port) ||
        port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("CA address \"", address, "\": bad port"));
    }
    out.port = std::string(rest);
  }
  return out;
}

bool IsIpLiteral(absl::string_view host) {
  const std::string h(host);
  in6_addr addr;
  return inet_pton(AF_INET, h.c_str(), &addr) == 1 ||
         inet_pton(AF_INET6, h.c_str(), &addr) == 1;
}

absl::StatusOr<std::unique_ptr<TlsConnection>> TlsConnection::Connect(
    const TlsConnectOptions& options, const IoLimits& limits) {
  ERR_clear_error();
  crypto::SslPtr ssl(SSL_new(options.ctx));
  if (ssl == nullptr) {
    return absl::InternalError(
        absl::StrCat("SSL_new: ", crypto::ConsumeSslErrors()));
  }
  // The name check is part of chain verification, so a mismatch fails the
  // handshake with X509_V_ERR_HOSTNAME_MISMATCH / IP_ADDRESS_MISMATCH.
  if (IsIpLiteral(options.peer_name)) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()),
                                      options.peer_name.c_str()) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad server IP ", options.peer_name));
    }
  } else {
    SSL_set_hostflags(ssl.get(), X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (SSL_set1_host(ssl.get(), options.peer_name.c_str()) != 1 ||
        SSL_set_tlsext_host_name(ssl.get(), options.peer_name.c_str()) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("bad server name ", options.peer_name));
    }
  }
  if (!options.client_cert_chain_pem.empty()) {
    if (absl::Status s = UseClientCertificate(
            ssl.get(), options.client_cert_chain_pem, options.client_key_pem);
        !s.ok()) {
      return s;
    }
  }
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  if (rbio == nullptr || wbio == nullptr) {
    BIO_free(rbio);
    BIO_free(wbio);
    return absl::InternalError("BIO_new failed");
  }
  // An empty read BIO means "wait for more", not end of stream.
  BIO_set_mem_eof_return(rbio, -1);
  SSL_set_bio(ssl.get(), rbio, wbio);  // ssl owns both from here
  SSL_set_connect_state(ssl.get());

  absl::StatusOr<UniqueFd> fd = ConnectTcp(options.endpoint, limits);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<TlsConnection> conn(
      new TlsConnection(fd->Release(), std::move(ssl), rbio, wbio));
  if (absl::Status s = conn->Handshake(limits); !s.ok()) return s;
  return conn;
}

TlsConnection::~TlsConnection() { close(fd_); }

absl::Status TlsConnection::Wait(short events, const IoLimits& limits,
                                 const char* what) {
  return WaitFd(fd_, events, limits, what);
}

absl::Status TlsConnection::Handshake(const IoLimits& limits) {
  while (true) {
    ERR_clear_error();
    const int r = SSL_do_handshake(ssl_.get());
    const int err = r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), r);
    // Our side of the handshake (or our alert) goes out in any case.
    absl::Status flushed = Flush(limits);
    if (err == SSL_ERROR_NONE) {
      if (!flushed.ok()) return flushed;
      break;
    }
    if (err == SSL_ERROR_WANT_READ) {
      if (!flushed.ok()) return flushed;
      absl::StatusOr<bool> more = Fill(limits);
      if (!more.ok()) return more.status();
      if (!*more) {
        return absl::UnavailableError(
            "TLS handshake: the server closed the connection");
      }
      continue;
    }
    const long verify = SSL_get_verify_result(ssl_.get());
    if (verify != X509_V_OK) {
      return absl::UnavailableError(
          absl::StrCat("TLS handshake: certificate verify failed: ",
                       X509_verify_cert_error_string(verify)));
    }
    return absl::UnavailableError(
        absl::StrCat("TLS handshake failed: ", crypto::ConsumeSslErrors()));
  }
  const unsigned char* alpn = nullptr;
  unsigned int alpn_len = 0;
  SSL_get0_alpn_selected(ssl_.get(), &alpn, &alpn_len);
  if (alpn_len != 2 || std::memcmp(alpn, "h2", 2) != 0) {
    return absl::UnavailableError(
        "TLS handshake: the server did not select ALPN \"h2\"");
  }
  return absl::OkStatus();
}

absl::Status TlsConnection::Flush(const IoLimits& limits) {
  char buf[kIoChunk];
  while (BIO_ctrl_pending(wbio_) > 0) {
    const int n = BIO_read(wbio_, buf, sizeof(buf));
    if (n <= 0) break;
    size_t off = 0;
    while (off < static_cast<size_t>(n)) {
      const ssize_t w = send(fd_, buf + off, n - off, MSG_NOSIGNAL);
      if (w > 0) {
        off += static_cast<size_t>(w);
        continue;
      }
      if (w < 0 && errno == EINTR) continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (absl::Status s = Wait(POLLOUT, limits, "sending"); !s.ok()) {
          return s;
        }
        continue;
      }
      return absl::UnavailableError(absl::StrCat("send: ", Errno(errno)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> TlsConnection::Fill(const IoLimits& limits) {
  if (eof_) return false;
  char buf[kIoChunk];
  while (true) {
    const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
    if (n > 0) {
      BIO_write(rbio_, buf, static_cast<int>(n));
      return true;
    }
    if (n == 0) {
      eof_ = true;
      return false;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (absl::Status s = Wait(POLLIN, limits, "waiting for the server");
          !s.ok()) {
        return s;
      }
      continue;
    }
    return absl::UnavailableError(absl::StrCat("recv: ", Errno(errno)));
  }
}

absl::Status TlsConnection::WriteAll(absl::string_view data,
                                     const IoLimits& limits) {
  while (!data.empty()) {
    ERR_clear_error();
    const int n = std::min<size_t>(data.size(), INT_MAX);
    // A memory BIO takes everything: SSL_write completes or fails.
    const int r = SSL_write(ssl_.get(), data.data(), n);
    if (r <= 0) {
      return absl::UnavailableError(
          absl::StrCat("TLS write: ", crypto::ConsumeSslErrors()));
    }
    data.remove_prefix(static_cast<size_t>(r));
  }
  return Flush(limits);
}

absl::StatusOr<size_t> TlsConnection::Read(char* buf, size_t size,
                                           const IoLimits& limits) {
  while (true) {
    ERR_clear_error();
    const int r = SSL_read(ssl_.get(), buf,
                           static_cast<int>(std::min<size_t>(size, INT_MAX)));
    const int err = r > 0 ? SSL_ERROR_NONE : SSL_get_error(ssl_.get(), r);
    // Reading may make OpenSSL answer (e.g. a TLS 1.3 key update).
    if (absl::Status s = Flush(limits); !s.ok()) return s;
    if (r > 0) return static_cast<size_t>(r);
    if (err == SSL_ERROR_ZERO_RETURN) return 0;
    if (err == SSL_ERROR_WANT_READ) {
      absl::StatusOr<bool> more = Fill(limits);
      if (!more.ok()) return more.status();
      if (!*more) return 0;
      continue;
    }
    return absl::UnavailableError(
        absl::StrCat("TLS read: ", crypto::ConsumeSslErrors()));
  }
}

}  // namespace meshguard::client
