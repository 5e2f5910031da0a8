// The meshguard CA client library over gRPC C++: any program links it to get
// and renew an X.509-SVID, to fetch or watch the trust bundle, and for the
// admin calls. meshguardctl uses it. Programs that must not carry gRPC (the
// sidecar) use IdentityClient over H2CaTransport instead (h2_transport.h):
// the same calls, checks and status codes.
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
#include "identity/client/ca_transport.h"
#include "identity/client/identity_client.h"
#include "identity/crypto/ssl_ptr.h"
#include "proto/ca.grpc.pb.h"

namespace meshguard::client {

// IdentityClient over gRPC C++ (see identity_client.h for the calls).
class CaClient final : public IdentityClient {
 public:
  static absl::StatusOr<std::unique_ptr<CaClient>> Create(
      CaClientOptions options);

  // Lower-level: send a CSR made elsewhere, with a bearer token or a client
  // certificate (empty strings for none).
  using IdentityClient::Issue;
  absl::StatusOr<meshguard::ca::v1::IssueCertificateResponse> Issue(
      const meshguard::ca::v1::IssueCertificateRequest& request,
      const std::string& bearer_token, const std::string& client_cert_chain_pem,
      const std::string& client_key_pem);

 private:
  explicit CaClient(std::unique_ptr<CaTransport> transport)
      : IdentityClient(std::move(transport)) {}
};

// The gRPC C++ CaTransport that CaClient uses, for programs that want to
// choose their transport (IdentityClient::Create).
absl::StatusOr<std::unique_ptr<CaTransport>> NewGrpcCaTransport(
    CaClientOptions options);

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
