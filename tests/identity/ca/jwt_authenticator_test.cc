#include "identity/ca/jwt_authenticator.h"

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshguard::ca {
namespace {

using ::testing::HasSubstr;

// Test-only OpenSSL 3 helpers; product code uses identity/crypto/ssl_ptr.h.
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct JwtFree {
  void operator()(jwt_t* p) const { jwt_free(p); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);
constexpr char kIssuer[] = "https://kubernetes.default.svc.cluster.local";

std::string B64(const std::string& bytes) {
  return absl::WebSafeBase64Escape(bytes);
}

std::string BnParam(EVP_PKEY* pkey, const char* name, size_t pad_to = 0) {
  BIGNUM* bn = nullptr;
  EXPECT_EQ(EVP_PKEY_get_bn_param(pkey, name, &bn), 1) << name;
  std::string bytes(std::max<size_t>(BN_num_bytes(bn), pad_to), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()),
               static_cast<int>(bytes.size()));
  BN_free(bn);
  return B64(bytes);
}

std::string BioString(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(len));
}

struct TestKey {
  std::string private_pem;
  std::string public_pem;
  std::string jwk;  // JSON object without kid, for a JWKS

  static TestKey Make(PkeyPtr pkey) {
    TestKey key;
    BIO* priv = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(priv, pkey.get(), nullptr, nullptr, 0, nullptr,
                             nullptr);
    key.private_pem = BioString(priv);
    BIO_free(priv);
    BIO* pub = BIO_new(BIO_s_mem());
    PEM_write_bio_PUBKEY(pub, pkey.get());
    key.public_pem = BioString(pub);
    BIO_free(pub);
    if (EVP_PKEY_get_base_id(pkey.get()) == EVP_PKEY_RSA) {
      key.jwk =
          absl::StrCat(R"("kty":"RSA","alg":"RS256","use":"sig","n":")",
                       BnParam(pkey.get(), OSSL_PKEY_PARAM_RSA_N), R"(","e":")",
                       BnParam(pkey.get(), OSSL_PKEY_PARAM_RSA_E), "\"");
    } else {
      key.jwk = absl::StrCat(
          R"("kty":"EC","crv":"P-256","x":")",
          BnParam(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32), R"(","y":")",
          BnParam(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32), "\"");
    }
    return key;
  }
  static TestKey Rsa() { return Make(PkeyPtr(EVP_RSA_gen(2048))); }
  static TestKey Ec() { return Make(PkeyPtr(EVP_EC_gen("P-256"))); }
};

std::string WriteTempFile(const std::string& name, const std::string& data) {
  const char* dir = std::getenv("TEST_TMPDIR");
  const std::string path =
      absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
  return path;
}

constexpr char kProjected[] =
    R"({"namespace":"shop","serviceaccount":{"name":"frontend",)"
    R"("uid":"6a3b7d9e-0000-4000-8000-000000000001"},)"
    R"("pod":{"name":"frontend-7c9d","uid":"6a3b7d9e-0000-4000-8000-000000000002"}})";

struct Claims {
  std::string iss = kIssuer;
  std::string aud_json = R"("meshguard-ca")";
  std::optional<int64_t> exp = absl::ToUnixSeconds(kNow) + 3600;
  std::optional<int64_t> nbf = absl::ToUnixSeconds(kNow) - 60;
  std::optional<int64_t> iat = absl::ToUnixSeconds(kNow) - 60;
  std::string sub = "system:serviceaccount:shop:frontend";
  std::string kubernetes_json = kProjected;  // empty: no kubernetes.io claim

  std::string Json() const {
    std::vector<std::string> members = {
        absl::StrCat(R"("iss":")", iss, "\""),
        absl::StrCat(R"("aud":)", aud_json),
        absl::StrCat(R"("sub":")", sub, "\""),
    };
    if (iat) members.push_back(absl::StrCat(R"("iat":)", *iat));
    if (exp) members.push_back(absl::StrCat(R"("exp":)", *exp));
    if (nbf) members.push_back(absl::StrCat(R"("nbf":)", *nbf));
    if (!kubernetes_json.empty()) {
      members.push_back(absl::StrCat(R"("kubernetes.io":)", kubernetes_json));
    }
    return absl::StrCat("{", absl::StrJoin(members, ","), "}");
  }
};

// Mints a token with libjwt's encoder. `key` is a private key PEM (or, for
// HS256, the HMAC secret).
std::string Mint(jwt_alg_t alg, const std::string& key, const std::string& kid,
                 const Claims& claims = Claims()) {
  jwt_t* raw = nullptr;
  EXPECT_EQ(jwt_new(&raw), 0);
  JwtPtr jwt(raw);
  if (!kid.empty()) {
    EXPECT_EQ(jwt_add_header(jwt.get(), "kid", kid.c_str()), 0);
  }
  EXPECT_EQ(jwt_add_grants_json(jwt.get(), claims.Json().c_str()), 0);
  EXPECT_EQ(jwt_set_alg(jwt.get(), alg,
                        reinterpret_cast<const unsigned char*>(key.data()),
                        static_cast<int>(key.size())),
            0);
  char* encoded = jwt_encode_str(jwt.get());
  EXPECT_NE(encoded, nullptr);
  std::string token = encoded == nullptr ? "" : encoded;
  std::free(encoded);
  return token;
}

class JwtAuthenticatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    rsa_ = new TestKey(TestKey::Rsa());
    ec_ = new TestKey(TestKey::Ec());
    forger_ = new TestKey(TestKey::Rsa());
    pem_rsa_ = new TestKey(TestKey::Rsa());
    jwks_path_ = new std::string(WriteTempFile(
        "jwks.json",
        absl::StrCat(
            R"({"keys":[{"kid":"rsa-1",)", rsa_->jwk, R"(},{"kid":"ec-1",)",
            ec_->jwk, R"(},{"kty":"oct","kid":"hmac","k":"c2VjcmV0"},)",
            R"({"kty":"EC","crv":"P-384","kid":"p384","x":"AA","y":"AA"}]})")));
    pem_path_ = new std::string(WriteTempFile("sa.pub", pem_rsa_->public_pem));
  }

  static std::unique_ptr<JwtAuthenticator> Make(const std::string& jwks,
                                                const std::string& pem) {
    config::v1::KubernetesAuth config;
    config.set_jwks_file(jwks);
    if (!pem.empty()) config.add_public_key_files(pem);
    absl::StatusOr<std::unique_ptr<JwtAuthenticator>> auth =
        JwtAuthenticator::Create(config);
    EXPECT_TRUE(auth.ok()) << auth.status();
    return auth.ok() ? *std::move(auth) : nullptr;
  }

  static TestKey* rsa_;
  static TestKey* ec_;
  static TestKey* forger_;
  static TestKey* pem_rsa_;
  static std::string* jwks_path_;
  static std::string* pem_path_;
};

TestKey* JwtAuthenticatorTest::rsa_;
TestKey* JwtAuthenticatorTest::ec_;
TestKey* JwtAuthenticatorTest::forger_;
TestKey* JwtAuthenticatorTest::pem_rsa_;
std::string* JwtAuthenticatorTest::jwks_path_;
std::string* JwtAuthenticatorTest::pem_path_;

TEST_F(JwtAuthenticatorTest, RefusesBadTokens) {
  std::unique_ptr<JwtAuthenticator> auth = Make(*jwks_path_, "");
  ASSERT_NE(auth, nullptr);

  const std::string good_payload =
      B64(Claims().Json());  // for hand-built tokens
  auto claims_with = [](auto edit) {
    Claims c;
    edit(c);
    return c;
  };
  const int64_t now = absl::ToUnixSeconds(kNow);
  struct Case {
    const char* name;
    std::string token;
    const char* reason;
  };
  const Case cases[] = {
      {"forged_signature_same_kid",
       Mint(JWT_ALG_RS256, forger_->private_pem, "rsa-1"), "bad signature"},
      {"expired",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([&](Claims& c) { c.exp = now - 31; })),
       "expired at"},
      {"no_exp",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([](Claims& c) { c.exp.reset(); })),
       "no \"exp\""},
      {"not_yet_valid",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([&](Claims& c) { c.nbf = now + 31; })),
       "not yet valid"},
      // A year-long token (say, minted by hand and leaked) is refused even
      // though it has not expired: 48 h is the default limit.
      {"lifetime_over_the_limit",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([&](Claims& c) {
              c.iat = now - 60;
              c.exp = now - 60 + 48 * 3600 + 1;
            })),
       "lives 48h1s (iat to exp"},
      {"no_iat_and_far_exp",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([&](Claims& c) {
              c.iat.reset();
              c.exp = now + 365 * 24 * 3600;
            })),
       "longer than kubernetes.max_token_lifetime 48h"},
      {"wrong_audience",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([](Claims& c) { c.aud_json = R"("kubernetes")"; })),
       "\"aud\" does not contain \"meshguard-ca\""},
      {"wrong_audience_array",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with(
                [](Claims& c) { c.aud_json = R"(["a","meshguard-ca-x"])"; })),
       "\"aud\" does not contain"},
      {"wrong_issuer",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([](Claims& c) { c.iss = "https://evil.example"; })),
       "iss \"https://evil.example\" does not match"},
      {"alg_none",
       absl::StrCat(B64(R"({"alg":"none","kid":"rsa-1"})"), ".", good_payload,
                    "."),
       "alg \"none\" is not allowed"},
      {"alg_none_no_kid",
       absl::StrCat(B64(R"({"alg":"none"})"), ".", good_payload, "."),
       "alg \"none\" is not allowed"},
      {"alg_lowercase",
       absl::StrCat(B64(R"({"alg":"rs256","kid":"rsa-1"})"), ".", good_payload,
                    ".AAAA"),
       "alg \"rs256\" is not allowed"},
      {"hs256_with_rsa_public_key_as_secret",
       Mint(JWT_ALG_HS256, rsa_->public_pem, "rsa-1"),
       "alg \"HS256\" is not allowed"},
      {"duplicate_alg_in_header",
       absl::StrCat(B64(R"({"alg":"RS256","alg":"HS256","kid":"rsa-1"})"), ".",
                    good_payload, ".AAAA"),
       "header is not a JSON object"},
      {"unknown_kid", Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-9"),
       "unknown kid \"rsa-9\""},
      {"no_kid_without_anonymous_keys",
       Mint(JWT_ALG_RS256, rsa_->private_pem, ""), "unknown kid"},
      {"es256_with_rsa_kid", Mint(JWT_ALG_ES256, ec_->private_pem, "rsa-1"),
       "alg ES256 does not match key \"rsa-1\" of type RSA"},
      {"rs256_with_ec_kid", Mint(JWT_ALG_RS256, rsa_->private_pem, "ec-1"),
       "alg RS256 does not match key \"ec-1\" of type EC P-256"},
      {"garbage", "not-a-jwt", "not three dot-separated parts"},
      {"four_parts", "a.b.c.d", "not three dot-separated parts"},
      {"empty", "", "empty token"},
      {"oversized", std::string(16 * 1024 + 1, 'a'), "larger than 16384"},
      {"header_not_json", absl::StrCat(B64("hello"), ".", good_payload, ".AA"),
       "header is not a JSON object"},
      {"header_bad_base64", absl::StrCat("e30=.", good_payload, ".AA"),
       "header is not unpadded base64url"},
      {"empty_signature",
       absl::StrCat(B64(R"({"alg":"RS256","kid":"rsa-1"})"), ".", good_payload,
                    "."),
       "signature is empty"},
      {"missing_kubernetes_claims",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([](Claims& c) { c.kubernetes_json = ""; })),
       "missing claim \"kubernetes.io.namespace\""},
      {"missing_service_account",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with([](Claims& c) {
              c.kubernetes_json = R"({"namespace":"shop"})";
            })),
       "missing claim \"kubernetes.io.serviceaccount.name\""},
      {"sub_not_matching",
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
            claims_with(
                [](Claims& c) { c.sub = "system:serviceaccount:shop:admin"; })),
       "does not match the kubernetes.io claims"},
      {"namespace_not_spiffe_path",
       Mint(
           JWT_ALG_RS256, rsa_->private_pem, "rsa-1",
           claims_with([](Claims& c) {
             c.sub = "system:serviceaccount:sh%op:frontend";
             c.kubernetes_json =
                 R"({"namespace":"sh%op","serviceaccount":{"name":"frontend"}})";
           })),
       "SPIFFE"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<KubernetesIdentity> id = auth->Authenticate(c.token, kNow);
    ASSERT_FALSE(id.ok()) << c.name;
    EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated) << c.name;
    EXPECT_THAT(std::string(id.status().message()), HasSubstr(c.reason))
        << c.name;
  }
}

TEST_F(JwtAuthenticatorTest, MaxTokenLifetimeIsConfigurable) {
  const int64_t now = absl::ToUnixSeconds(kNow);
  Claims day;  // kubelet's longest usual: a projected volume asking for 24 h
  day.iat = now - 60;
  day.exp = now - 60 + 24 * 3600;
  Claims year;
  year.iat = now - 60;
  year.exp = now - 60 + 365 * 24 * 3600;
  const std::string day_token =
      Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1", day);
  const std::string year_token =
      Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1", year);

  auto with_max = [&](int64_t seconds) {
    config::v1::KubernetesAuth config;
    config.set_jwks_file(*jwks_path_);
    config.mutable_max_token_lifetime()->set_seconds(seconds);
    return JwtAuthenticator::Create(config);
  };
  absl::StatusOr<std::unique_ptr<JwtAuthenticator>> default_max =
      JwtAuthenticator::Create([&] {
        config::v1::KubernetesAuth config;
        config.set_jwks_file(*jwks_path_);
        return config;
      }());
  ASSERT_TRUE(default_max.ok()) << default_max.status();
  EXPECT_TRUE((*default_max)->Authenticate(day_token, kNow).ok());
  EXPECT_FALSE((*default_max)->Authenticate(year_token, kNow).ok());

  absl::StatusOr<std::unique_ptr<JwtAuthenticator>> hour = with_max(3600);
  ASSERT_TRUE(hour.ok()) << hour.status();
  absl::StatusOr<KubernetesIdentity> refused =
      (*hour)->Authenticate(day_token, kNow);
  ASSERT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("lives 24h (iat to exp"));
  EXPECT_THAT(refused.status().message(),
              HasSubstr("longer than kubernetes.max_token_lifetime 1h"));

  absl::StatusOr<std::unique_ptr<JwtAuthenticator>> unlimited = with_max(0);
  ASSERT_TRUE(unlimited.ok()) << unlimited.status();
  EXPECT_TRUE((*unlimited)->Authenticate(year_token, kNow).ok());

  absl::StatusOr<std::unique_ptr<JwtAuthenticator>> negative = with_max(-1);
  ASSERT_FALSE(negative.ok());
  EXPECT_THAT(negative.status().message(),
              HasSubstr("kubernetes.max_token_lifetime -1s must not be "
                        "negative"));
}

TEST_F(JwtAuthenticatorTest, PemKeyCannotStandInForAClaimedKid) {
  std::unique_ptr<JwtAuthenticator> auth = Make(*jwks_path_, *pem_path_);
  ASSERT_NE(auth, nullptr);
  absl::StatusOr<KubernetesIdentity> id = auth->Authenticate(
      Mint(JWT_ALG_RS256, pem_rsa_->private_pem, "rsa-1"), kNow);
  ASSERT_FALSE(id.ok());
  EXPECT_THAT(id.status().message(), HasSubstr("bad signature"));
}

TEST_F(JwtAuthenticatorTest, AcceptsGoodTokens) {
  std::unique_ptr<JwtAuthenticator> jwks = Make(*jwks_path_, "");
  std::unique_ptr<JwtAuthenticator> both = Make(*jwks_path_, *pem_path_);
  ASSERT_NE(jwks, nullptr);
  ASSERT_NE(both, nullptr);
  EXPECT_EQ(jwks->key_count(), 2u);
  EXPECT_EQ(jwks->notes().size(), 2u);  // the oct and P-384 entries

  const int64_t now = absl::ToUnixSeconds(kNow);
  Claims aud_array;
  aud_array.aud_json = R"(["https://kubernetes.default.svc","meshguard-ca"])";
  Claims within_skew;
  within_skew.exp = now - 29;
  within_skew.nbf = now + 29;
  struct Case {
    const char* name;
    const JwtAuthenticator* auth;
    std::string token;
    const char* key_id;
  };
  const Case cases[] = {
      {"rs256_jwks", jwks.get(),
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1"), "rsa-1"},
      {"rs256_jwks_audience_array", jwks.get(),
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1", aud_array), "rsa-1"},
      {"rs256_jwks_within_clock_skew", jwks.get(),
       Mint(JWT_ALG_RS256, rsa_->private_pem, "rsa-1", within_skew), "rsa-1"},
      {"es256_jwks", jwks.get(), Mint(JWT_ALG_ES256, ec_->private_pem, "ec-1"),
       "ec-1"},
      {"rs256_pem_no_kid", both.get(),
       Mint(JWT_ALG_RS256, pem_rsa_->private_pem, ""), "#1"},
      // What an API server started with --service-account-key-file sends: a
      // kid derived from the key, which no JWKS entry claims.
      {"rs256_pem_unclaimed_kid", both.get(),
       Mint(JWT_ALG_RS256, pem_rsa_->private_pem, "derived-kid"), "#1"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<KubernetesIdentity> id = c.auth->Authenticate(c.token, kNow);
    ASSERT_TRUE(id.ok()) << c.name << ": " << id.status();
    EXPECT_EQ(id->namespace_name, "shop") << c.name;
    EXPECT_EQ(id->service_account, "frontend") << c.name;
    EXPECT_EQ(id->subject, "system:serviceaccount:shop:frontend") << c.name;
    EXPECT_THAT(id->key_id, HasSubstr(c.key_id)) << c.name;
  }
}

TEST_F(JwtAuthenticatorTest, CreateRefusesBadConfig) {
  const std::string only_unusable = WriteTempFile(
      "unusable.json", R"({"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"}]})");
  const std::string not_json = WriteTempFile("bad.json", "{\"keys\": [");
  const std::string no_keys = WriteTempFile("nokeys.json", R"({"key":[]})");
  const std::string short_rsa = WriteTempFile(
      "short.json",
      R"({"keys":[{"kty":"RSA","kid":"s","n":"AQAB","e":"AQAB"}]})");
  const std::string dup_kid = WriteTempFile(
      "dup.json", absl::StrCat(R"({"keys":[{"kid":"a",)", rsa_->jwk,
                               R"(},{"kid":"a",)", ec_->jwk, "}]}"));
  const std::string garbage_pem = WriteTempFile("garbage.pem", "hello");
  struct Case {
    const char* name;
    std::string jwks;
    std::string pem;
    const char* reason;
  };
  const Case cases[] = {
      {"no_sources", "", "", "needs jwks_file or public_key_files"},
      {"missing_jwks", "/nonexistent/jwks.json", "",
       "cannot open JWKS file /nonexistent/jwks.json"},
      {"missing_pem", "", "/nonexistent/sa.pub",
       "cannot open public key file /nonexistent/sa.pub"},
      {"bad_json", not_json, "", "is not a JSON object"},
      {"no_keys_array", no_keys, "", "has no \"keys\" array"},
      {"zero_usable_keys", only_unusable, "", "no usable RS256/ES256 key"},
      {"short_rsa", short_rsa, "", "at least 2048"},
      {"duplicate_kid", dup_kid, "", "duplicate kid"},
      {"garbage_pem", "", garbage_pem, "garbage.pem: no \"-----BEGIN"},
  };
  for (const Case& c : cases) {
    config::v1::KubernetesAuth config;
    config.set_jwks_file(c.jwks);
    if (!c.pem.empty()) config.add_public_key_files(c.pem);
    absl::StatusOr<std::unique_ptr<JwtAuthenticator>> auth =
        JwtAuthenticator::Create(config);
    ASSERT_FALSE(auth.ok()) << c.name;
    EXPECT_THAT(auth.status().message(), HasSubstr(c.reason)) << c.name;
  }
}

}  // namespace
}  // namespace meshguard::ca
