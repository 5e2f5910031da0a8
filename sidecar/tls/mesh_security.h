// ConnectionSecurity over the credential store: every new connection takes
// the current TLS credentials snapshot and keeps it for its life. With no
// valid identity, handshakes fail closed (a context with no certificate),
// never fall back to plaintext.
//
// Thread-safe: called from every worker thread.
#ifndef MESHGUARD_SIDECAR_TLS_MESH_SECURITY_H_
#define MESHGUARD_SIDECAR_TLS_MESH_SECURITY_H_

#include "identity/crypto/ssl_ptr.h"
#include "sidecar/identity/credential_store.h"
#include "sidecar/proxy/api.h"

namespace meshguard::sidecar {

class MeshConnectionSecurity final : public proxy::ConnectionSecurity {
 public:
  // `store` must outlive this object.
  explicit MeshConnectionSecurity(const CredentialStore* store);

  SSL* NewServerSsl() override;
  SSL* NewClientSsl(const proxy::UpstreamTarget& target) override;
  absl::StatusOr<std::string> PeerIdentity(
      SSL* ssl, const proxy::UpstreamTarget* target_or_null) override;
  proxy::CredentialInfo Credentials(SSL* ssl) override;
  Refusal HandshakeRefusal(SSL* ssl) override;
  // The peer's chain through the same checks as at the handshake
  // (crypto::VerifyX509Svid), against the trust bundle current now.
  Refusal RecheckPeer(SSL* ssl) override;
  std::string PeerChainKey(SSL* ssl) override;

 private:
  SSL* NewSsl(bool server);

  const CredentialStore* const store_;
  // Has no certificate: any handshake through it fails.
  crypto::SslCtxPtr refuse_ctx_;
};

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_TLS_MESH_SECURITY_H_
