// JSON Web Key (RFC 7517/7518) public-key material to PEM, and inspection of
// PEM public keys, for verifying JWTs (Kubernetes service-account tokens).
//
// Only the key types meshguard verifies are accepted: RSA with a modulus of
// kMinRsaModulusBits..kMaxRsaModulusBits bits, and ECDSA on P-256. The output
// is a PKIX "PUBLIC KEY" PEM block, which is what libjwt and OpenSSL's
// PEM_read_bio_PUBKEY take.
//
// Written against the API subset that OpenSSL 3 and BoringSSL share; callers
// see only strings. Pure functions, safe to call from any thread.
#ifndef MESHGUARD_IDENTITY_CRYPTO_JWK_H_
#define MESHGUARD_IDENTITY_CRYPTO_JWK_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshguard::crypto {

inline constexpr int kMinRsaModulusBits = 2048;
// Larger moduli only cost verification time (a DoS lever), never security.
inline constexpr int kMaxRsaModulusBits = 8192;

enum class PublicKeyType {
  kRsa,     // verifies RS256
  kEcP256,  // verifies ES256
};

// "RSA" or "EC P-256", for messages.
absl::string_view PublicKeyTypeName(PublicKeyType type);

struct PublicKeyPem {
  PublicKeyType type;
  std::string pem;  // exactly one "PUBLIC KEY" block
};

// An RSA JWK's "n" and "e" (base64url, unpadded) to a PEM public key.
// Refuses moduli outside [kMinRsaModulusBits, kMaxRsaModulusBits], even or
// tiny exponents, and anything that is not strict unpadded base64url.
absl::StatusOr<std::string> RsaJwkToPem(absl::string_view n_b64url,
                                        absl::string_view e_b64url);

// An EC JWK's "crv", "x" and "y" to a PEM public key. Only crv "P-256";
// x and y must be 32 bytes each and the point must lie on the curve.
absl::StatusOr<std::string> EcJwkToPem(absl::string_view crv,
                                       absl::string_view x_b64url,
                                       absl::string_view y_b64url);

// Every "PUBLIC KEY" (PKIX) block in `pem`, type-checked like the JWK
// functions (RSA in range, EC only on P-256) and re-encoded one per entry.
// At least one key is required; blocks of other kinds are skipped.
absl::StatusOr<std::vector<PublicKeyPem>> ParsePublicKeysPem(
    absl::string_view pem);

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_JWK_H_
