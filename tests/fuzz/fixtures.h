// Fixed keys and the trust material built from them, shared by the fuzz
// targets and by make_seeds (which writes their seed corpora).
//
// The keys are constants so that seeds stay valid: a leaf written by
// make_seeds last year still chains to the root and intermediate rebuilt
// here at start (same keys, names and key identifiers; only the ECDSA
// signatures of the rebuilt certificates differ). They are test keys,
// printed in this repository: never trust them anywhere.
#ifndef MESHGUARD_TESTS_FUZZ_FIXTURES_H_
#define MESHGUARD_TESTS_FUZZ_FIXTURES_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "identity/crypto/ca_signer.h"
#include "identity/crypto/ssl_ptr.h"
#include "identity/crypto/verifier.h"

namespace meshguard::fuzz {

inline constexpr char kTrustDomain[] = "fuzz.example";
// The serial the fixture CRL revokes; make_seeds issues one leaf with it.
inline constexpr uint64_t kRevokedSerial = 666;
// The issuer and audience the JWT fixture accepts.
inline constexpr char kJwtIssuer[] = "https://kubernetes.default.svc";

struct Fixtures {
  crypto::EvpPkeyPtr root_key, intermediate_key, jwt_ec_key, jwt_rsa_key;
  crypto::X509Ptr root, intermediate;
  std::string root_pem, intermediate_pem, crl_pem;
  // Root plus CRL (revoking kRevokedSerial), trust domain kTrustDomain.
  std::shared_ptr<const crypto::TrustBundle> bundle;
  // Signs with the intermediate, as the CA does.
  std::unique_ptr<crypto::CaSigner> signer;
  // The verification time: inside every fixture certificate's validity.
  absl::Time now;
  // PEM private keys of the JWT keys (for minting seeds).
  std::string jwt_ec_private_pem, jwt_rsa_private_pem;
  // A JWKS holding both JWT keys, kids "ec-1" and "rsa-1".
  std::string jwks_json;
};

// Built once, on first use; aborts if the fixtures cannot be built (a
// broken fixture must not look like a clean fuzzing run).
const Fixtures& GetFixtures();

// Prints "fuzz fixtures: <what>" and aborts: for set-up that must not
// fail (a broken fixture must not look like a clean fuzzing run).
[[noreturn]] void Die(const std::string& what);

// The value, or Die naming `what` and the status.
template <typename T>
T Must(absl::StatusOr<T> v, const char* what) {
  if (!v.ok()) Die(std::string(what) + ": " + v.status().ToString());
  return *std::move(v);
}

// One PEM block labelled `label` ("CERTIFICATE", "X509 CRL", ...) around
// `der`, whatever its bytes: the fuzz targets wrap mutated DER this way so
// that mutations reach the ASN.1 rather than the base64.
std::string DerToPem(const std::string& der, const char* label);

// Writes `contents` to a new file under $TEST_TMPDIR (or /tmp) and returns
// its path; aborts on failure.
std::string WriteTempFile(const std::string& name, const std::string& contents);

}  // namespace meshguard::fuzz

#endif  // MESHGUARD_TESTS_FUZZ_FIXTURES_H_
