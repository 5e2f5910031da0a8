// Cryptographic randomness and hashing helpers (OpenSSL/BoringSSL).
#ifndef MESHGUARD_IDENTITY_CRYPTO_RANDOM_H_
#define MESHGUARD_IDENTITY_CRYPTO_RANDOM_H_

#include <string>

#include "absl/strings/string_view.h"

namespace meshguard::crypto {

// `n` bytes from the CSPRNG. Aborts if the CSPRNG fails (it cannot, short of
// a broken system), since no caller could continue safely.
std::string RandomBytes(size_t n);

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// A one-time token: 32 random bytes, base64url without padding, prefixed so
// operators recognise it ("mgjt_...").
std::string NewJoinToken();

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_RANDOM_H_
