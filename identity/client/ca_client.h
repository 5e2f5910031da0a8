// The meshguard CA client library: any program links it to get and renew
// an X.509-SVID and to fetch or watch the trust bundle. meshguardctl and the
// sidecar's identity agent use it.
//
// Private keys are generated here, in memory, and never leave the process
// (only their CSRs do). CaClient is thread-safe; each call is one RPC with
// the configured deadline.
#ifndef MESHGUARD_IDENTITY_CLIENT_CA_CLIENT_H_
#define MESHGUARD_IDENTITY_CLIENT_CA_CLIENT_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "identity/crypto/ssl_ptr.h"
#include "proto/ca.grpc.pb.h"

namespace meshguard::client {

struct CaClientOptions {
  // host:port of meshguard-ca.
  std::string address = "127.0.0.1:15012";
  // PEM roots that authenticate the CA's serving certificate.
  std::string ca_bundle_pem;
  // Name the CA's certificate must carry (a DNS SAN).
  std::string server_name = "meshguard-ca";
  absl::Duration timeout = absl::Seconds(10);
};

// A certificate the CA issued, with the key it was issued for.
struct IssuedCertificate {
  crypto::EvpPkeyPtr key;
  std::string key_pem;                 // PKCS#8
  std::vector<std::string> chain_pem;  // leaf first
  meshguard::ca::v1::TrustBundle bundle;
  std::string spiffe_id;
  std::string serial;
  absl::Time not_before;
  absl::Time not_after;

  std::string ChainPem() const;   // chain_pem concatenated
  std::string BundlePem() const;  // bundle roots concatenated
};

// Runs WatchTrustBundle on its own thread and calls `on_bundle` for each
// bundle received (on that thread). Reconnects with backoff until Stop().
class BundleWatch {
 public:
  virtual ~BundleWatch() = default;
  virtual void Stop() = 0;
};

class CaClient final {
 public:
  static absl::StatusOr<std::unique_ptr<CaClient>> Create(
      CaClientOptions options);

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
      const std::string& bearer_token, const std::string& client_cert_chain_pem,
      const std::string& client_key_pem);

 private:
  explicit CaClient(CaClientOptions options);
  std::shared_ptr<grpc::Channel> MakeChannel(
      const std::string& client_cert_chain_pem,
      const std::string& client_key_pem) const;
  absl::StatusOr<IssuedCertificate> IssueNew(const std::string& bearer_token,
                                             const std::string& join_token,
                                             const std::string& renew_chain,
                                             const std::string& renew_key,
                                             const std::string& spiffe_id,
                                             absl::Duration ttl);

  const CaClientOptions options_;
  // Channel for unauthenticated-TLS calls (token bootstrap, bundle), shared.
  std::shared_ptr<grpc::Channel> channel_;
};

// Admin calls, over the CA's Unix socket (unix:PATH) or over mTLS with an
// admin identity.
class CaAdminClient final {
 public:
  static absl::StatusOr<std::unique_ptr<CaAdminClient>> ForSocket(
      const std::string& socket_path);
  static absl::StatusOr<std::unique_ptr<CaAdminClient>> ForMtls(
      const CaClientOptions& options, const std::string& cert_chain_pem,
      const std::string& key_pem);

  absl::StatusOr<meshguard::ca::v1::CreateJoinTokenResponse> CreateJoinToken(
      const std::string& spiffe_id, absl::Duration ttl);
  absl::StatusOr<meshguard::ca::v1::RevokeCertificateResponse> Revoke(
      const meshguard::ca::v1::RevokeCertificateRequest& request);
  absl::StatusOr<meshguard::ca::v1::ListCertificatesResponse> List(
      const meshguard::ca::v1::ListCertificatesRequest& request);

 private:
  CaAdminClient(std::shared_ptr<grpc::Channel> channel, absl::Duration timeout)
      : stub_(meshguard::ca::v1::CertificateAuthorityAdmin::NewStub(channel)),
        timeout_(timeout) {}
  std::unique_ptr<meshguard::ca::v1::CertificateAuthorityAdmin::Stub> stub_;
  absl::Duration timeout_;
};

// grpc::Status -> absl::Status, keeping code and message.
absl::Status FromGrpc(const grpc::Status& status);

}  // namespace meshguard::client

#endif  // MESHGUARD_IDENTITY_CLIENT_CA_CLIENT_H_
