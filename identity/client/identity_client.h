// Gets and renews this program's X.509-SVID over any CaTransport: makes the
// key (in memory; it never leaves the process, only its CSR does), the CSR,
// and checks what the CA returns (our key, the SPIFFE ID we expect).
//
// CaClient (ca_client.h) is this over gRPC C++; the sidecar uses it over
// H2CaTransport (h2_transport.h), which does not link gRPC.
//
// Thread-safe; each call is one RPC with the transport's deadline.
#ifndef MESHGUARD_IDENTITY_CLIENT_IDENTITY_CLIENT_H_
#define MESHGUARD_IDENTITY_CLIENT_IDENTITY_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "identity/client/ca_transport.h"
#include "proto/ca.pb.h"

namespace meshguard::client {

class IdentityClient {
 public:
  static absl::StatusOr<std::unique_ptr<IdentityClient>> Create(
      std::unique_ptr<CaTransport> transport);

  // Bootstrap with a Kubernetes service-account token (Bearer).
  absl::StatusOr<IssuedCertificate> IssueWithToken(
      const std::string& token, absl::Duration ttl = absl::ZeroDuration());
  // Bootstrap with a one-time join token.
  absl::StatusOr<IssuedCertificate> IssueWithJoinToken(
      const std::string& join_token, absl::Duration ttl = absl::ZeroDuration());
  // Renew over mTLS with the current certificate; a new key every time and
  // the same SPIFFE ID.
  absl::StatusOr<IssuedCertificate> Renew(
      const std::string& cert_chain_pem, const std::string& key_pem,
      absl::Duration ttl = absl::ZeroDuration());

  absl::StatusOr<meshguard::ca::v1::TrustBundle> GetTrustBundle();

  std::unique_ptr<BundleWatch> WatchTrustBundle(
      std::function<void(const meshguard::ca::v1::TrustBundle&)> on_bundle);

  // Lower-level: send a CSR made elsewhere.
  absl::StatusOr<meshguard::ca::v1::IssueCertificateResponse> Issue(
      const meshguard::ca::v1::IssueCertificateRequest& request,
      const CallCredentials& credentials);

  virtual ~IdentityClient() = default;

 protected:
  // `transport` must not be null (Create checks).
  explicit IdentityClient(std::unique_ptr<CaTransport> transport)
      : transport_(std::move(transport)) {}

 private:
  absl::StatusOr<IssuedCertificate> IssueNew(const std::string& join_token,
                                             CallCredentials credentials,
                                             const std::string& spiffe_id,
                                             absl::Duration ttl);

  const std::unique_ptr<CaTransport> transport_;
};

}  // namespace meshguard::client

#endif  // MESHGUARD_IDENTITY_CLIENT_IDENTITY_CLIENT_H_
