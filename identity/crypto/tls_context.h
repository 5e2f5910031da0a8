// mTLS contexts for sidecar-to-sidecar traffic: TLS 1.3 only, ALPN h2, a
// client certificate required, and the peer verified with VerifyX509Svid
// against the trust bundle baked into the context.
//
// A context is immutable once built: rotation builds a new one (new key,
// chain or bundle) and publishes it; handshakes already under way or done
// keep the context (and bundle) they started with, because the bundle is
// owned by the SSL_CTX itself.
//
// Thread-safety: contexts may be shared by any number of threads; the
// per-SSL helpers below are called on the thread that owns the SSL.
#ifndef MESHGUARD_IDENTITY_CRYPTO_TLS_CONTEXT_H_
#define MESHGUARD_IDENTITY_CRYPTO_TLS_CONTEXT_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"
#include "identity/crypto/verifier.h"

namespace meshguard::crypto {

enum class TlsRole { kServer, kClient };

// `chain`: leaf first, then intermediates. The bundle decides which peers
// are accepted (roots, CRLs, trust domain).
absl::StatusOr<SslCtxPtr> NewMeshTlsContext(
    TlsRole role, EVP_PKEY* key, const std::vector<X509*>& chain,
    std::shared_ptr<const TrustBundle> bundle);

// Client side, before the handshake: the SPIFFE ID the server must present
// (empty: any ID of the bundle's trust domain).
void SetExpectedPeerId(SSL* ssl, absl::string_view spiffe_id);

// After a successful handshake: the verified peer SPIFFE ID.
// Before one, or after a failed one, an error with the verifier's reason.
absl::StatusOr<std::string> VerifiedPeerId(SSL* ssl);

// The reason the last verification on this SSL failed, or empty; a short
// label for metrics ("no_client_certificate", "path", "crl", "svid",
// "unexpected_peer", and "alpn" when a server refused a client that did not
// offer h2) is returned by VerifyFailureLabel.
std::string VerifyFailureMessage(SSL* ssl);
std::string VerifyFailureLabel(SSL* ssl);

// The peer's leaf certificate (not owned), or nullptr.
X509* PeerLeaf(SSL* ssl);

// After a handshake: the peer's chain verified again, as the handshake did,
// against `bundle` (a newer one than the handshake used) at `at`.
// FAILED_PRECONDITION "no_client_certificate: ..." when the peer sent none;
// otherwise VerifyX509Svid's result.
absl::StatusOr<SpiffeId> VerifyPeerAgain(SSL* ssl, const TrustBundle& bundle,
                                         absl::Time at);

// The chain the peer sent, DER-encoded and concatenated, leaf first (the
// certificates VerifyPeerAgain checks): equal for two connections exactly
// when their peers sent the same chain. Empty when the peer sent none.
std::string PeerChainDer(SSL* ssl);

// The metrics label of a verifier failure message (see VerifyFailureLabel):
// the text before its first ':', or "verify".
std::string VerifyFailureLabelOf(absl::string_view message);

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_TLS_CONTEXT_H_
