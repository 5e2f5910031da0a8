// A ConnectionSecurity for tests: a throwaway CA and SPIFFE-ID leaf
// certificates made with raw OpenSSL calls, mutual TLS 1.3 with ALPN "h2".
// Stands in for the identity system's real implementation.
//
// Thread-safe after construction (SSL_CTX is shared read-only).
#ifndef MESHGUARD_TESTS_SIDECAR_PROXY_TESTING_TEST_SECURITY_H_
#define MESHGUARD_TESTS_SIDECAR_PROXY_TESTING_TEST_SECURITY_H_

#include <atomic>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"
#include "sidecar/proxy/api.h"

namespace meshguard::sidecar::proxy::testing {

class TestCa {
 public:
  static absl::StatusOr<std::unique_ptr<TestCa>> Create();
  struct Leaf {
    crypto::EvpPkeyPtr key;
    crypto::X509Ptr cert;
  };
  // A leaf for `spiffe_id` (one URI SAN) valid for `lifetime`.
  absl::StatusOr<Leaf> Issue(const std::string& spiffe_id,
                             absl::Duration lifetime = absl::Hours(1));
  X509* cert() const { return cert_.get(); }

 private:
  crypto::EvpPkeyPtr key_;
  crypto::X509Ptr cert_;
  long serial_ = 1;
};

class TestSecurity final : public ConnectionSecurity {
 public:
  // Our identity `spiffe_id`, issued by `ca`, which is also the only root
  // we trust.
  static absl::StatusOr<std::unique_ptr<TestSecurity>> Create(
      TestCa& ca, const std::string& spiffe_id, uint64_t version = 1,
      absl::Duration lifetime = absl::Hours(1));

  SSL* NewServerSsl() override;
  SSL* NewClientSsl(const UpstreamTarget& target) override;
  absl::StatusOr<std::string> PeerIdentity(
      SSL* ssl, const UpstreamTarget* target_or_null) override;
  CredentialInfo Credentials(SSL* ssl) override;
  // Counts the rechecks; refuses the peer's chain while refuse_recheck.
  Refusal RecheckPeer(SSL* ssl) override;

  void set_refuse_recheck(bool refuse) { refuse_recheck_ = refuse; }
  int rechecks() const { return rechecks_; }

 private:
  crypto::SslCtxPtr server_ctx_;
  crypto::SslCtxPtr client_ctx_;
  uint64_t version_ = 1;
  absl::Time expires_at_;
  std::atomic<bool> refuse_recheck_{false};
  std::atomic<int> rechecks_{0};
};

// The URI SAN of `cert`, or an error.
absl::StatusOr<std::string> SpiffeIdOf(X509* cert);

}  // namespace meshguard::sidecar::proxy::testing

#endif  // MESHGUARD_TESTS_SIDECAR_PROXY_TESTING_TEST_SECURITY_H_
