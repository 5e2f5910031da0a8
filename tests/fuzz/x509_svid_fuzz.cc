// The X.509-SVID verifier (identity/crypto/verifier.h) on what a peer can
// send: the sidecar's inbound listener and the CA's renewal path run it on
// every client certificate chain; the sidecar also runs TrustBundle::Create
// on the bundles and CRLs the CA publishes.
//
// Input: the first byte picks what the rest is:
//   0 mod 3: a peer's chain, DER certificates each preceded by a 2-byte
//            big-endian length, leaf first; verified against the fixture
//            bundle (root + CRL revoking serial 666) at the fixture time;
//   1 mod 3: a root certificate (DER) for a new trust bundle;
//   2 mod 3: a CRL (DER) for a bundle of the fixture root.
// Invariants: a chain that verifies has a leaf with exactly one URI SAN,
// the SPIFFE ID returned, in the fixture trust domain, not CA:true, not the
// revoked serial; whatever passes the full verification passes the
// path-only one with the same ID.
#include <openssl/x509.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "identity/crypto/certificate.h"
#include "identity/crypto/verifier.h"
#include "tests/fuzz/fixtures.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace crypto = ::meshguard::crypto;
using ::meshguard::fuzz::DerToPem;
using ::meshguard::fuzz::Fixtures;
using ::meshguard::fuzz::GetFixtures;

void VerifyChain(const std::string& input) {
  std::vector<crypto::X509Ptr> certs;
  size_t pos = 0;
  while (pos + 2 <= input.size() && certs.size() < 12) {
    const size_t len = (static_cast<uint8_t>(input[pos]) << 8) |
                       static_cast<uint8_t>(input[pos + 1]);
    pos += 2;
    const std::string der = input.substr(pos, len);
    pos += der.size();
    absl::StatusOr<crypto::X509Ptr> cert = crypto::ParseCertificateDer(der);
    if (!cert.ok()) return;
    // What the admin pages and meshguardctl print of any certificate.
    crypto::DescribeCertificate(cert->get());
    certs.push_back(*std::move(cert));
  }
  if (certs.empty()) return;
  std::vector<X509*> intermediates;
  for (size_t i = 1; i < certs.size(); ++i) {
    intermediates.push_back(certs[i].get());
  }
  const Fixtures& f = GetFixtures();
  crypto::VerifyOptions options;
  options.at = f.now;
  absl::StatusOr<crypto::SpiffeId> id =
      crypto::VerifyX509Svid(certs[0].get(), intermediates, *f.bundle, options);
  crypto::VerifyOptions path_only = options;
  path_only.path_only = true;
  absl::StatusOr<crypto::SpiffeId> path_id = crypto::VerifyX509Svid(
      certs[0].get(), intermediates, *f.bundle, path_only);
  if (!id.ok()) {
    FUZZ_CHECK(!id.status().message().empty());
    FUZZ_REACHED("chain_refused");
    return;
  }
  X509* leaf = certs[0].get();
  const std::vector<std::string> uris = crypto::UriSans(leaf);
  FUZZ_CHECK(uris.size() == 1 && uris[0] == id->ToString());
  FUZZ_CHECK(id->MemberOf(meshguard::fuzz::kTrustDomain));
  FUZZ_CHECK(!crypto::IsCa(leaf));
  FUZZ_CHECK(crypto::SerialHex(leaf) != "029A");  // 666, the revoked one
  FUZZ_CHECK(path_id.ok() && *path_id == *id);
  FUZZ_REACHED("chain_verified");
}

void MakeBundle(const std::string& root_der) {
  absl::StatusOr<std::shared_ptr<const crypto::TrustBundle>> bundle =
      crypto::TrustBundle::Create(meshguard::fuzz::kTrustDomain,
                                  {DerToPem(root_der, "CERTIFICATE")}, {});
  if (!bundle.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(bundle.status()));
    return;
  }
  FUZZ_REACHED("root_accepted");
  FUZZ_CHECK((*bundle)->roots().size() == 1);
  FUZZ_CHECK(crypto::IsCa((*bundle)->roots()[0]));
}

void AddCrl(const std::string& crl_der) {
  const Fixtures& f = GetFixtures();
  absl::StatusOr<std::shared_ptr<const crypto::TrustBundle>> bundle =
      crypto::TrustBundle::Create(meshguard::fuzz::kTrustDomain, {f.root_pem},
                                  {DerToPem(crl_der, "X509 CRL")});
  if (!bundle.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(bundle.status()));
    return;
  }
  FUZZ_REACHED("crl_accepted");
  // The intermediate is valid and unrevoked by any CRL the root signed
  // (the fixture root signed none), so an accepted CRL either applies to
  // nothing or is a forgery: the path check must still pass or refuse
  // cleanly, never crash.
  crypto::VerifyOptions options;
  options.at = f.now;
  crypto::VerifyPath(f.intermediate.get(), {}, **bundle, options).IgnoreError();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  GetFixtures();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 3) {
    case 0:
      VerifyChain(body);
      break;
    case 1:
      MakeBundle(body);
      break;
    default:
      AddCrl(body);
      break;
  }
  return 0;
}
