// The CA API over our own gRPC-over-HTTP/2 client: nghttp2 for the framing
// and OpenSSL for TLS, blocking on the caller's thread. It exists so that
// the sidecar can talk to the CA without gRPC's C core (its library pages,
// its 8 threads); meshguardctl keeps gRPC C++ (CaClient).
//
// Same security as the gRPC transport: TLS 1.2 or 1.3, the CA's certificate
// verified against the configured bundle and CaClientOptions::server_name
// (DNS SAN, or IP SAN for an IP), ALPN h2, a client certificate for
// renewals. Same protocol (grpc/doc/PROTOCOL-HTTP2.md): POST with
// content-type application/grpc, te: trailers, grpc-timeout from the
// deadline, length-prefixed messages of at most max_response_bytes, the
// status from grpc-status / grpc-message. Failures below gRPC (connection
// refused, handshake refused, non-200, RST_STREAM, GOAWAY, closed
// connection) are UNAVAILABLE, an expired deadline DEADLINE_EXCEEDED; every
// error message starts with "CA <address>: ".
//
// Each unary call uses its own connection (the agent makes one every few
// minutes at most; a renewal needs its own client certificate anyway). A
// watch holds one connection on its own thread.
//
// Thread-safe: calls may run concurrently from any threads.
#ifndef MESHGUARD_IDENTITY_CLIENT_H2_TRANSPORT_H_
#define MESHGUARD_IDENTITY_CLIENT_H2_TRANSPORT_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "identity/client/ca_transport.h"
#include "identity/client/identity_client.h"
#include "proto/ca.pb.h"

namespace meshguard::client {

namespace internal {
struct H2Target;
}  // namespace internal

class H2CaTransport final : public CaTransport {
 public:
  // INVALID_ARGUMENT for options that cannot work (no address, a CA bundle
  // that does not parse, an address that is not host:port).
  static absl::StatusOr<std::unique_ptr<H2CaTransport>> Create(
      CaClientOptions options);
  ~H2CaTransport() override;

  absl::StatusOr<meshguard::ca::v1::IssueCertificateResponse> IssueCertificate(
      const meshguard::ca::v1::IssueCertificateRequest& request,
      const CallCredentials& credentials) override;

  absl::StatusOr<meshguard::ca::v1::TrustBundle> GetTrustBundle() override;

  // The watch keeps what it needs alive: it may outlive this transport.
  // nullptr if the process is out of file descriptors (no eventfd to stop
  // it with).
  std::unique_ptr<BundleWatch> WatchTrustBundle(
      std::function<void(const meshguard::ca::v1::TrustBundle&)> on_bundle)
      override;

 private:
  explicit H2CaTransport(std::shared_ptr<const internal::H2Target> target)
      : target_(std::move(target)) {}

  const std::shared_ptr<const internal::H2Target> target_;
};

// IdentityClient over H2CaTransport: what the sidecar's agent uses.
absl::StatusOr<std::unique_ptr<IdentityClient>> NewH2IdentityClient(
    CaClientOptions options);

}  // namespace meshguard::client

#endif  // MESHGUARD_IDENTITY_CLIENT_H2_TRANSPORT_H_
