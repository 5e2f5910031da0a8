#include "sidecar/tls/mesh_security.h"

#include <algorithm>
#include <string>

#include "identity/crypto/certificate.h"
#include "identity/crypto/tls_context.h"

namespace meshguard::sidecar {
namespace {

using CredsHolder = std::shared_ptr<const TlsCredentials>;

void FreeCreds(void* parent, void* ptr, CRYPTO_EX_DATA* ad, int index,
               long argl, void* argp) {
  delete static_cast<CredsHolder*>(ptr);
}

int CredsIndex() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeCreds);
  return index;
}

const TlsCredentials* CredsOf(SSL* ssl) {
  auto* holder = static_cast<CredsHolder*>(SSL_get_ex_data(ssl, CredsIndex()));
  return holder == nullptr ? nullptr : holder->get();
}

// What a verifier failure label (crypto::VerifyFailureLabel) refused.
proxy::ConnectionSecurity::Refusal::Kind RefusalKind(const std::string& label) {
  using Kind = proxy::ConnectionSecurity::Refusal::Kind;
  if (label == "svid" || label == "unexpected_peer") return Kind::kIdentity;
  if (label == "alpn") return Kind::kAlpn;
  return Kind::kChain;
}

}  // namespace

MeshConnectionSecurity::MeshConnectionSecurity(const CredentialStore* store)
    : store_(store), refuse_ctx_(SSL_CTX_new(TLS_method())) {
  SSL_CTX_set_min_proto_version(refuse_ctx_.get(), TLS1_3_VERSION);
}

SSL* MeshConnectionSecurity::NewSsl(bool server) {
  CredsHolder creds = store_->Current();
  if (creds == nullptr) {
    // Fail closed: a handshake with no certificate on either side fails.
    return SSL_new(refuse_ctx_.get());
  }
  SSL* ssl =
      SSL_new(server ? creds->server_ctx.get() : creds->client_ctx.get());
  if (ssl == nullptr) return nullptr;
  auto* holder = new CredsHolder(std::move(creds));
  if (SSL_set_ex_data(ssl, CredsIndex(), holder) != 1) {
    delete holder;
    SSL_free(ssl);
    return nullptr;
  }
  return ssl;
}

SSL* MeshConnectionSecurity::NewServerSsl() { return NewSsl(true); }

SSL* MeshConnectionSecurity::NewClientSsl(const proxy::UpstreamTarget& target) {
  SSL* ssl = NewSsl(false);
  if (ssl != nullptr) crypto::SetExpectedPeerId(ssl, target.expected_spiffe_id);
  return ssl;
}

absl::StatusOr<std::string> MeshConnectionSecurity::PeerIdentity(
    SSL* ssl, const proxy::UpstreamTarget* target_or_null) {
  if (CredsOf(ssl) == nullptr) {
    return absl::UnavailableError("no valid identity held by this sidecar");
  }
  // The verify callback already applied the bundle, the CRL, the X.509-SVID
  // rules, the trust domain and (client side) the expected ID.
  return crypto::VerifiedPeerId(ssl);
}

proxy::ConnectionSecurity::Refusal MeshConnectionSecurity::HandshakeRefusal(
    SSL* ssl) {
  Refusal refusal;
  refusal.message = crypto::VerifyFailureMessage(ssl);
  const std::string label = crypto::VerifyFailureLabel(ssl);
  if (!label.empty()) refusal.kind = RefusalKind(label);
  return refusal;
}

proxy::ConnectionSecurity::Refusal MeshConnectionSecurity::RecheckPeer(
    SSL* ssl) {
  Refusal refusal;
  CredsHolder creds = store_->Current();
  if (creds == nullptr || creds->bundle == nullptr) {
    refusal.kind = Refusal::Kind::kChain;
    refusal.message = "no valid identity held by this sidecar";
    return refusal;
  }
  absl::StatusOr<crypto::SpiffeId> id =
      crypto::VerifyPeerAgain(ssl, *creds->bundle, absl::Now());
  if (!id.ok()) {
    refusal.message = std::string(id.status().message());
    refusal.kind = RefusalKind(crypto::VerifyFailureLabelOf(refusal.message));
  }
  return refusal;
}

// RecheckPeer checks the chain the peer sent against the current bundle at
// the current time; within one recheck pass only the chain differs.
std::string MeshConnectionSecurity::PeerChainKey(SSL* ssl) {
  return crypto::PeerChainDer(ssl);
}

proxy::CredentialInfo MeshConnectionSecurity::Credentials(SSL* ssl) {
  proxy::CredentialInfo info;
  const TlsCredentials* creds = CredsOf(ssl);
  if (creds == nullptr) return info;
  info.version = creds->version;
  info.expires_at = creds->not_after;
  if (X509* peer = crypto::PeerLeaf(ssl)) {
    info.expires_at = std::min(info.expires_at, crypto::NotAfter(peer));
  }
  return info;
}

}  // namespace meshguard::sidecar
