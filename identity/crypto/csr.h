// PKCS#10 certificate signing requests carrying a SPIFFE ID.
//
// The sidecar and the client library create them (CreateCsrPem); the CA
// parses them (Csr::ParsePem) and decides whether to sign. Only the public
// key and the SANs of a CSR matter: the CA takes the subject from its own
// profile, never from the request.
#ifndef MESHGUARD_IDENTITY_CRYPTO_CSR_H_
#define MESHGUARD_IDENTITY_CRYPTO_CSR_H_

#include <cstddef>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {

// Larger CSR PEM text is refused before any parsing.
inline constexpr size_t kMaxCsrPemBytes = 64 * 1024;

// A CSR for `key` (signed with it, SHA-256) with an empty subject and `id` as
// the only subjectAltName (a URI) in the requested extensions. Does not apply
// the CA's key policy: that is the CA's call (CheckIssuableKey).
absl::StatusOr<std::string> CreateCsrPem(EVP_PKEY* key, const SpiffeId& id);

// The same without any subjectAltName: for bootstrap requests (join token,
// service-account token), where the CA derives the identity from the
// credential and the client does not know it yet.
absl::StatusOr<std::string> CreateCsrPemWithoutIdentity(EVP_PKEY* key);

// A parsed CSR. Move-only; thread-compatible (const methods may be called
// concurrently, OpenSSL decodes the extensions afresh on each call).
class Csr final {
 public:
  // Exactly one "CERTIFICATE REQUEST" PEM block of at most kMaxCsrPemBytes.
  // INVALID_ARGUMENT naming the problem for empty, oversized, garbage,
  // truncated or multi-block input. Does not check the signature.
  static absl::StatusOr<Csr> ParsePem(absl::string_view pem);

  Csr(Csr&&) = default;
  Csr& operator=(Csr&&) = default;
  Csr(const Csr&) = delete;
  Csr& operator=(const Csr&) = delete;

  // OK if the CSR is signed by the private half of its own public key.
  absl::Status CheckSignature() const;

  // The URI / DNS names of the requested subjectAltName extension(s).
  std::vector<std::string> UriSans() const;
  std::vector<std::string> DnsSans() const;

  // Owned by this Csr. The request's key is public_key(): with OpenSSL 3 the
  // request is parsed without decoding its key (csr.cc says why), so
  // X509_REQ_get_pubkey(req()) does not return it.
  EVP_PKEY* public_key() const { return public_key_.get(); }
  X509_REQ* req() const { return req_.get(); }

 private:
  Csr(X509ReqPtr req, EvpPkeyPtr public_key)
      : req_(std::move(req)), public_key_(std::move(public_key)) {}

  std::vector<std::string> SansOfType(int type) const;

  X509ReqPtr req_;
  EvpPkeyPtr public_key_;
};

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_CSR_H_
