// Authenticates IssueCertificate callers by a projected Kubernetes
// service-account token (`authorization: Bearer <JWT>`, audience
// "meshguard-ca"), and derives their namespace and service account.
//
// Only RS256 and ES256 are accepted, and the algorithm is checked against
// the chosen key's type before any signature check, so "none" and HMAC
// tokens (algorithm confusion: an RSA public key used as an HMAC secret)
// never reach the verifier.
//
// Key selection (one rule, whatever the key source):
//   * a token whose `kid` names a JWKS key is checked against that key only;
//   * any other token (no `kid`, or a `kid` no JWKS key claims) is checked
//     against the anonymous keys: every key from public_key_files and every
//     JWKS key without a `kid`, of the type the token's `alg` needs; the
//     first that verifies wins. With no anonymous key of that type, the token
//     is refused ("unknown kid").
// So a PEM key can never stand in for a JWKS key that claims the token's kid.
//
// Immutable after Create; Authenticate may be called from any thread.
#ifndef MESHGUARD_IDENTITY_CA_JWT_AUTHENTICATOR_H_
#define MESHGUARD_IDENTITY_CA_JWT_AUTHENTICATOR_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "identity/crypto/jwk.h"
#include "proto/config.pb.h"

namespace meshguard::ca {

inline constexpr absl::string_view kDefaultKubernetesIssuer =
    "https://kubernetes.default.svc.cluster.local";
inline constexpr absl::string_view kDefaultKubernetesAudience = "meshguard-ca";
inline constexpr absl::Duration kDefaultKubernetesClockSkew = absl::Seconds(30);
inline constexpr absl::Duration kMaxKubernetesClockSkew = absl::Minutes(10);
inline constexpr absl::Duration kDefaultMaxTokenLifetime = absl::Hours(48);
// Projected tokens are about 1 KiB; anything near this is not one.
inline constexpr size_t kMaxKubernetesTokenBytes = 16 * 1024;

struct KubernetesIdentity {
  std::string namespace_name;
  std::string service_account;
  std::string subject;  // "system:serviceaccount:<ns>:<sa>"
  // The key that verified the token: its JWKS kid, or for a key without
  // one "<file>#<n>" (n counts from 1 within the file; "jwks[<i>]" for a
  // kid-less JWKS entry).
  std::string key_id;
  // The token's exp (without the clock skew allowance).
  absl::Time expires_at = absl::InfinitePast();
};

class JwtAuthenticator final {
 public:
  // Loads every key named by `config` (jwks_file and/or public_key_files)
  // and applies the defaults above. `config.enabled` is the caller's
  // business. Errors name the file and what is wrong with it; JWKS entries
  // of a type, curve, `alg` or `use` we do not verify are skipped with a
  // note (see notes()); a supported entry with bad key material is an error,
  // and so is ending up with no usable key.
  static absl::StatusOr<std::unique_ptr<JwtAuthenticator>> Create(
      const meshguard::config::v1::KubernetesAuth& config);

  // The token's identity, or UNAUTHENTICATED with the precise reason.
  // `now` is injected so that expiry is testable.
  absl::StatusOr<KubernetesIdentity> Authenticate(absl::string_view token,
                                                  absl::Time now) const;

  // What Create skipped, one line per key, for the caller to log.
  const std::vector<std::string>& notes() const { return notes_; }
  size_t key_count() const { return keys_.size(); }

 private:
  struct Key {
    std::string kid;    // empty: an anonymous key (PEM, or kid-less JWKS)
    std::string label;  // what KubernetesIdentity::key_id reports
    crypto::PublicKeyType type;
    std::string pem;
  };

  JwtAuthenticator() = default;

  absl::Status LoadJwks(const std::string& path);
  absl::Status LoadPemFile(const std::string& path);

  std::vector<Key> keys_;
  std::vector<std::string> notes_;
  std::string issuer_;
  std::string audience_;
  absl::Duration clock_skew_;
  absl::Duration max_lifetime_;  // zero: no limit
};

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_JWT_AUTHENTICATOR_H_
