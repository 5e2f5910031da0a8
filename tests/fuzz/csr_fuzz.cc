// A CSR as the CA receives it, from anyone who can reach its port.
//
// Input: the first byte picks the encoding, the rest is the request:
//   even: PEM text as sent (exercises the PEM/size checks);
//   odd:  DER, wrapped into one PEM block here (so mutations reach the
//         ASN.1 rather than the base64).
// Everything the CA does with a request before it signs runs: parse, the
// key policy, the signature, the SANs. Invariant: a request that passes
// every check the CA applies is issued, and the leaf verifies as an
// X.509-SVID of the requested ID against the fixture bundle.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/verifier.h"
#include "tests/fuzz/fixtures.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using meshguard::crypto::Csr;
using meshguard::crypto::SpiffeId;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  meshguard::fuzz::GetFixtures();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const std::string pem =
      (data[0] & 1) ? meshguard::fuzz::DerToPem(body, "CERTIFICATE REQUEST")
                    : body;

  absl::StatusOr<Csr> csr = Csr::ParsePem(pem);
  if (!csr.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(csr.status()));
    return 0;
  }
  FUZZ_CHECK(csr->req() != nullptr && csr->public_key() != nullptr);
  const std::vector<std::string> uris = csr->UriSans();
  csr->DnsSans();
  // The CA's order: key policy, then the signature.
  FUZZ_REACHED("parsed");
  if (!meshguard::crypto::CheckIssuableKey(csr->public_key()).ok()) return 0;
  if (!csr->CheckSignature().ok()) return 0;
  if (uris.size() != 1) return 0;
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse(uris[0]);
  if (!id.ok() || !id->MemberOf(meshguard::fuzz::kTrustDomain)) return 0;

  const meshguard::fuzz::Fixtures& f = meshguard::fuzz::GetFixtures();
  const meshguard::crypto::LeafRequest request{
      csr->public_key(), *id, absl::Hours(1), f.now, {}, {}};
  absl::StatusOr<meshguard::crypto::X509Ptr> leaf =
      f.signer->IssueLeaf(request);
  FUZZ_CHECK(leaf.ok());
  meshguard::crypto::VerifyOptions options;
  options.at = f.now;
  absl::StatusOr<SpiffeId> verified = meshguard::crypto::VerifyX509Svid(
      leaf->get(), {f.intermediate.get()}, *f.bundle, options);
  FUZZ_CHECK(verified.ok() && *verified == *id);
  FUZZ_REACHED("issued_and_verified");
  return 0;
}
