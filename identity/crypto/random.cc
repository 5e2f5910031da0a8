#include "identity/crypto/random.h"

#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace meshguard::crypto {

std::string RandomBytes(size_t n) {
  std::string out(n, '\0');
  if (n > 0 &&
      RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), n) != 1) {
    abort();
  }
  return out;
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(),
         digest);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::string NewJoinToken() {
  std::string token;
  absl::WebSafeBase64Escape(RandomBytes(32), &token);
  return absl::StrCat("mgjt_", token);
}

}  // namespace meshguard::crypto
