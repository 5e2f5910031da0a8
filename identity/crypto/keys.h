// Private and public keys: generation, PKCS#8 / SubjectPublicKeyInfo
// encoding, and the CA's key policy (which keys it will certify).
//
// Also the small PEM reader every parser in identity/crypto shares, so that
// all of them refuse oversized, truncated and garbage input the same way.
//
// Free functions, no shared state: safe to call from any thread. Keys passed
// in are only read.
#ifndef MESHGUARD_IDENTITY_CRYPTO_KEYS_H_
#define MESHGUARD_IDENTITY_CRYPTO_KEYS_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {

// Largest PEM text any parser here accepts unless it says otherwise (a trust
// bundle with a few dozen roots stays far below it).
inline constexpr size_t kMaxPemBytes = 1 << 20;

// A fresh ECDSA P-256 key (the mesh's workload and CA key type).
absl::StatusOr<EvpPkeyPtr> GenerateEcP256Key();

// PKCS#8 (unencrypted) private key, PEM ("PRIVATE KEY") or DER.
absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key);
absl::StatusOr<std::string> PrivateKeyToDer(EVP_PKEY* key);
// Accepts exactly one PEM block: "PRIVATE KEY" (PKCS#8), or the traditional
// "EC PRIVATE KEY" / "RSA PRIVATE KEY". Encrypted keys are refused, never
// prompted for.
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem);
// PKCS#8 DER (traditional EC/RSA DER is accepted too). Trailing bytes are an
// error.
absl::StatusOr<EvpPkeyPtr> PrivateKeyFromDer(absl::string_view der);

// SubjectPublicKeyInfo, PEM ("PUBLIC KEY").
absl::StatusOr<std::string> PublicKeyToPem(EVP_PKEY* key);
absl::StatusOr<EvpPkeyPtr> PublicKeyFromPem(absl::string_view pem);

// "ECDSA P-256", "ECDSA P-384", "RSA 2048", "Ed25519", ...; "no key" for null.
std::string DescribeKey(EVP_PKEY* key);

// The CA's key policy: ECDSA P-256, or RSA of at least 2048 bits. Anything
// else is INVALID_ARGUMENT naming the key type and size.
absl::Status CheckIssuableKey(EVP_PKEY* key);

// True when both keys have the same public half (compares the DER
// SubjectPublicKeyInfo). False if either is null.
bool PublicKeysEqual(EVP_PKEY* a, EVP_PKEY* b);

// Drains this thread's OpenSSL error queue and returns its entries joined
// with "; " ("no OpenSSL error" if it was empty), for status messages.
std::string ConsumeSslErrors();

// INTERNAL with `what` and the drained OpenSSL error queue.
absl::Status SslError(absl::string_view what);

// The bytes written to a memory BIO.
absl::StatusOr<std::string> BioContents(BIO* bio, absl::string_view what);

// One PEM block: its type line ("CERTIFICATE") and its decoded bytes.
struct PemBlock {
  std::string type;
  std::string der;
};

// Reads every PEM block of `pem` in order. `what` names the input in error
// messages ("certificate chain"). INVALID_ARGUMENT if the input is empty,
// larger than `max_bytes`, has no PEM block, or a block is truncated or not
// valid base64. Text outside blocks is ignored, as OpenSSL does.
absl::StatusOr<std::vector<PemBlock>> ReadPemBlocks(
    absl::string_view pem, absl::string_view what,
    size_t max_bytes = kMaxPemBytes);

// PEM-encodes `der` as one block of type `type`.
absl::StatusOr<std::string> WritePemBlock(absl::string_view type,
                                          absl::string_view der);

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_KEYS_H_
