// A client TLS connection for H2CaTransport: a non-blocking TCP socket
// driven with poll(2), so that every step honours a deadline and a cancel
// fd, and OpenSSL over memory BIOs, so that writes use send(MSG_NOSIGNAL)
// and a closed peer never raises SIGPIPE in the host program.
//
// One connection carries one call and is used by one thread.
#ifndef MESHGUARD_IDENTITY_CLIENT_TLS_CONNECTION_H_
#define MESHGUARD_IDENTITY_CLIENT_TLS_CONNECTION_H_

#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::client {

// Bounds each blocking step: DEADLINE_EXCEEDED at `deadline`, CANCELLED as
// soon as `cancel_fd` is readable (-1: not cancellable).
struct IoLimits {
  absl::Time deadline = absl::InfiniteFuture();
  int cancel_fd = -1;
};

// "host:port", "[v6]:port" or "dns:///host:port" (gRPC's spelling); the
// port defaults to 443 as in gRPC.
struct HostPort {
  std::string host;
  std::string port;
};
absl::StatusOr<HostPort> ParseHostPort(absl::string_view address);

// True for an IPv4 or IPv6 literal (which is checked against IP SANs).
bool IsIpLiteral(absl::string_view host);

struct TlsConnectOptions {
  HostPort endpoint;
  // Roots, verification mode, protocol versions and ALPN come from here.
  SSL_CTX* ctx = nullptr;
  // The server certificate must carry this DNS SAN (or IP SAN for an IP
  // literal). Also sent as SNI when it is a name.
  std::string peer_name;
  // Optional client certificate (mTLS): leaf first, with its key.
  std::string client_cert_chain_pem;
  std::string client_key_pem;
};

class TlsConnection final {
 public:
  // Resolves the host, connects to each address in turn, handshakes and
  // checks that the server chose ALPN "h2". UNAVAILABLE with the cause
  // (connect errno, "certificate verify failed: <reason>", the TLS alert,
  // no h2) or DEADLINE_EXCEEDED / CANCELLED.
  static absl::StatusOr<std::unique_ptr<TlsConnection>> Connect(
      const TlsConnectOptions& options, const IoLimits& limits);

  ~TlsConnection();
  TlsConnection(const TlsConnection&) = delete;
  TlsConnection& operator=(const TlsConnection&) = delete;

  absl::Status WriteAll(absl::string_view data, const IoLimits& limits);

  // Reads at least one byte into `buf`; 0 when the server closed the
  // connection (cleanly or not).
  absl::StatusOr<size_t> Read(char* buf, size_t size, const IoLimits& limits);

 private:
  TlsConnection(int fd, crypto::SslPtr ssl, BIO* rbio, BIO* wbio)
      : fd_(fd), ssl_(std::move(ssl)), rbio_(rbio), wbio_(wbio) {}

  absl::Status Handshake(const IoLimits& limits);
  // Sends whatever OpenSSL has written to wbio_.
  absl::Status Flush(const IoLimits& limits);
  // Waits for socket bytes and feeds them to rbio_; false at end of stream.
  absl::StatusOr<bool> Fill(const IoLimits& limits);
  absl::Status Wait(short events, const IoLimits& limits, const char* what);

  const int fd_;
  const crypto::SslPtr ssl_;
  BIO* const rbio_;  // owned by ssl_
  BIO* const wbio_;  // owned by ssl_
  bool eof_ = false;
};

}  // namespace meshguard::client

#endif  // MESHGUARD_IDENTITY_CLIENT_TLS_CONNECTION_H_
