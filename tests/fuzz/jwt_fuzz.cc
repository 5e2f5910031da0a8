// Kubernetes service-account tokens as the CA receives them (the
// `authorization: Bearer` value of an IssueCertificate call, from anyone who
// can reach its port), against a JWKS holding the fixture's ES256 key
// ("ec-1") and RS256 key ("rsa-1").
//
// Input: the token text. Invariant: an accepted token names a namespace and
// service account that form a valid SPIFFE ID in the fixture trust domain
// and a subject "system:serviceaccount:<ns>:<sa>" matching them, and the
// key that verified it is one of the two.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "identity/ca/jwt_authenticator.h"
#include "identity/crypto/spiffe_id.h"
#include "proto/config.pb.h"
#include "tests/fuzz/fixtures.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

const meshguard::ca::JwtAuthenticator* Authenticator() {
  static const meshguard::ca::JwtAuthenticator* auth = [] {
    meshguard::config::v1::KubernetesAuth config;
    config.set_jwks_file(meshguard::fuzz::WriteTempFile(
        "jwks.json", meshguard::fuzz::GetFixtures().jwks_json));
    config.set_issuer(meshguard::fuzz::kJwtIssuer);
    absl::StatusOr<std::unique_ptr<meshguard::ca::JwtAuthenticator>> a =
        meshguard::ca::JwtAuthenticator::Create(config);
    FUZZ_CHECK(a.ok() && (*a)->key_count() == 2);
    return a->release();
  }();
  return auth;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  Authenticator();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string token(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<meshguard::ca::KubernetesIdentity> identity =
      Authenticator()->Authenticate(token, meshguard::fuzz::GetFixtures().now);
  if (!identity.ok()) {
    FUZZ_CHECK(absl::IsUnauthenticated(identity.status()));
    FUZZ_CHECK(!identity.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(identity->key_id == "ec-1" || identity->key_id == "rsa-1");
  FUZZ_REACHED(identity->key_id == "ec-1" ? "es256_accepted"
                                          : "rs256_accepted");
  FUZZ_CHECK(identity->subject ==
             absl::StrCat("system:serviceaccount:", identity->namespace_name,
                          ":", identity->service_account));
  FUZZ_CHECK(meshguard::crypto::SpiffeId::ForServiceAccount(
                 meshguard::fuzz::kTrustDomain, identity->namespace_name,
                 identity->service_account)
                 .ok());
  return 0;
}
