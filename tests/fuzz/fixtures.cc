#include "tests/fuzz/fixtures.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/certificate.h"
#include "tests/identity/crypto/testing/cert_factory.h"

namespace meshguard::fuzz {
namespace {

using crypto::testing::CertSpec;
using crypto::testing::TestCert;

constexpr char kRootKeyPem[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgs6Hc2H+C2pjSYoxY
gPpTH8IQ+RBLUvzHGEBp0f9MC0OhRANCAAQOOK6EEqd4pmsKjxBLauowzHILIr67
pj86WtqfbeZrD8Bvnl40zCNf64GpGixtlTs8IQpSWCclUmnZvtRoM7Uy
-----END PRIVATE KEY-----
)";
constexpr char kIntermediateKeyPem[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg68D/c6stUx88W3il
ytVILUZb6aBxXXf9QZCRI8YzXF2hRANCAAQzpNBUdZsjXRKS5UH6ONYA7nj+ezLG
RkBm/TYjgHpHIhFwhmTwwSuS7+IpeQggcec1iEQzct8wM0N0ZsOeJ5sc
-----END PRIVATE KEY-----
)";
constexpr char kJwtEcKeyPem[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg8l8zUGWDA3wvRYR+
KR3NoWqZmZExKH2r9UvjGjyVicihRANCAAQYi2EzC7I9MG5qeF54zzoP4/ctscjO
rXVHaA7E4nNWi/StSxD91XkkacCLnlZwNhKysCEqoDnLaXBimZlQENrp
-----END PRIVATE KEY-----
)";
constexpr char kJwtRsaKeyPem[] = R"(-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDXVGeeuj0GZFka
BGIDBtW+UdAXKbiPsSTlfNUoV0GvH/7QQ483IPBHONS+tWSSvGkgmT6L2GjXaCYM
WoO7fYZOSbws9Km56tOyfbeiAyKb1V51eZt1xLK8Q5PC5zLjFgPRgjZPYRqt5mig
lbYQYhdMnSLjSvO8+rUbVDsX76+5laJCw+ZdzxzpJX+AJttplRlMB7NscY3PPClR
OQTo3LE1Iz/jmPaKSbXCUmNg06gHgkZaxjaoVBYQQdUrOlVXn9U+3C3ls5ZuVC4K
DXFm7TX20JnshGQWEEEkn12LWH01k5gJhZwvVGCsrHLAO/Dnsb5YMaPU9hl5tavo
ZooiRlCZAgMBAAECggEABbv/aEUZgIYzWmulCw4swB04ZhIuvQfjXZ0CkF5A10Jf
lDRaYpDVCUaF4YrIh1ZZvobKOT9DAn/elIa5ZPNfBw50YruaGgOwjdDb2du3bsWN
bDeNTe3Lhz3i+AZVbvdRqcvhOPcIbCVmIlGpArHEC6lQdKkKND1hIuhONxEuDDUt
Be2249hG3TfKaA2363FDYOKQWcI6HB5W7HYXBASb3wTZSn2uSjZ4+KKAe057qdHi
B61iCw3VK5q+5o50WSw6wzxlj2L6/QeT0d+9x25fxPX5vMee8XF5F8CIi8xB0uow
XwtWnl2kTG9Lln+y8ocWuzeRNXaEQ8H7WgMlg821UQKBgQD562Ax2+1PNzIcmj4f
oo3Y1OXwSczNXbdgO3bt8PvybWCkMs/62y/pyLJlp6Lyp2+UkiclfeCG9KoF92Q9
vKNYNru9bu/cZFYryYAUechEQd/UnubvUl60f8OdiicCKyHA8iZPelLjbCurgieB
uCA0u/tx/sFr139QtAt8EyVaCQKBgQDckZYztQr74cIPHId7c+54hK8PcPWg6Vbq
0GN6aGgAMwfc8a1MfvtPJYd0NtbiJ2ejaAIo+uVyphcEZaMfXe5vVZyXY/P1yQ1U
E4yNWS0nPrFEBaJWUzCWbrPezs6QRBHhqr44gKCO7x5MJZKbC/G/DgW9asD4FSML
r7CPOX4mEQKBgQDe/jH6yu1XvTwtYUMFHxnJ20y/tlnS9Efmyag4bsmfahDM8bm5
b1G1G6pyIb23HcblnfLn9QUd5bi/UhpTK7njwBKL2CyVTcHFmCl8G52hqdV59b7A
05JFI6r7KoXb3XhknKuqRs8mtSHSCnQNvqid5Q1ajaEwBDxJWhzVPJAbYQKBgGUe
RWrtG9z/0bSV0rLRIkmUIqGEmscrUlKSOJjclplIy9kJ3vYL3PCa9u9bWMYTZJrw
StU4uMoHxNOaON9fc7kM2Z46D5TlmDusPqpqcJ3mSuQxZQwIVWUR2VpTGzXeTwhS
+6PxrCn7C7vDGeQE5M4/AnilIVRadFeeMuZmaCPRAoGBAJosXhs1vBSkHnHL+Qh3
0M4Z1PPfeBonrZ5eh7gVy/MgfQ7jJorEglifJxLBlBUDzuAuFnl9klZQakifKpzE
pGkarGWuhPY18sP4QOUWKjnRGZ3Qkr8e51Mng3hGgp54VKgD/SajjLqCyu4ZO4fK
+SsK1bHovSzZhYWIgw1OADTx
-----END PRIVATE KEY-----
)";

crypto::EvpPkeyPtr LoadKey(const char* pem) {
  crypto::BioPtr bio(BIO_new_mem_buf(pem, -1));
  crypto::EvpPkeyPtr key(
      PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) Die("cannot read a fixture key");
  return key;
}

std::string PrivatePem(EVP_PKEY* key) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                           nullptr);
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

// A big-number parameter as unpadded base64url, left-padded to `width`.
std::string B64Param(EVP_PKEY* key, const char* name, int width = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) Die("key parameter");
  std::string bytes(width > 0 ? width : BN_num_bytes(bn), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()),
               static_cast<int>(bytes.size()));
  BN_free(bn);
  return absl::WebSafeBase64Escape(bytes);
}

Fixtures* Build() {
  auto* f = new Fixtures;
  f->root_key = LoadKey(kRootKeyPem);
  f->intermediate_key = LoadKey(kIntermediateKeyPem);
  f->jwt_ec_key = LoadKey(kJwtEcKeyPem);
  f->jwt_rsa_key = LoadKey(kJwtRsaKeyPem);
  f->now = crypto::testing::FixtureNow();

  CertSpec root_spec = crypto::testing::RootSpec("meshguard fuzz root");
  root_spec.key = f->root_key.get();
  root_spec.uri_sans = {absl::StrCat("spiffe://", kTrustDomain)};
  TestCert root = Must(crypto::testing::MakeCert(root_spec), "root");
  CertSpec inter_spec =
      crypto::testing::IntermediateSpec("meshguard fuzz intermediate", root);
  inter_spec.key = f->intermediate_key.get();
  inter_spec.serial = 2;
  inter_spec.uri_sans = {absl::StrCat("spiffe://", kTrustDomain)};
  TestCert intermediate =
      Must(crypto::testing::MakeCert(inter_spec), "intermediate");
  f->root_pem = root.Pem();
  f->intermediate_pem = intermediate.Pem();
  f->root = root.CertRef();
  f->intermediate = intermediate.CertRef();

  crypto::testing::CrlSpec crl;
  crl.issuer = &intermediate;
  crl.revoked_serials = {kRevokedSerial};
  f->crl_pem = Must(crypto::testing::MakeCrlPem(crl), "CRL");
  f->bundle = Must(
      crypto::TrustBundle::Create(kTrustDomain, {f->root_pem}, {f->crl_pem}),
      "trust bundle");

  crypto::EvpPkeyPtr signer_key = LoadKey(kIntermediateKeyPem);
  f->signer = Must(crypto::CaSigner::Create(intermediate.CertRef(),
                                            std::move(signer_key), {}),
                   "signer");

  f->jwt_ec_private_pem = PrivatePem(f->jwt_ec_key.get());
  f->jwt_rsa_private_pem = PrivatePem(f->jwt_rsa_key.get());
  f->jwks_json = absl::StrCat(
      R"({"keys":[{"kid":"ec-1","kty":"EC","crv":"P-256","x":")",
      B64Param(f->jwt_ec_key.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32), R"(","y":")",
      B64Param(f->jwt_ec_key.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32),
      R"("},{"kid":"rsa-1","kty":"RSA","alg":"RS256","use":"sig","n":")",
      B64Param(f->jwt_rsa_key.get(), OSSL_PKEY_PARAM_RSA_N), R"(","e":")",
      B64Param(f->jwt_rsa_key.get(), OSSL_PKEY_PARAM_RSA_E), R"("}]})");
  return f;
}

}  // namespace

const Fixtures& GetFixtures() {
  static const Fixtures* fixtures = Build();
  return *fixtures;
}

void Die(const std::string& what) {
  std::fprintf(stderr, "fuzz fixtures: %s\n", what.c_str());
  std::abort();
}

std::string DerToPem(const std::string& der, const char* label) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio(bio.get(), label, "",
                reinterpret_cast<const unsigned char*>(der.data()),
                static_cast<long>(der.size()));
  char* out = nullptr;
  const long n = BIO_get_mem_data(bio.get(), &out);
  return std::string(out, static_cast<size_t>(n));
}

std::string WriteTempFile(const std::string& name,
                          const std::string& contents) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(
      dir != nullptr ? dir : "/tmp", "/meshguard-fuzz-", getpid(), "-", name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << contents;
  out.close();
  if (!out) Die(absl::StrCat("cannot write ", path));
  return path;
}

}  // namespace meshguard::fuzz
