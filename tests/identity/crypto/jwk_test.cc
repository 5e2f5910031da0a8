#include "identity/crypto/jwk.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <string>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {
namespace {

using ::testing::HasSubstr;

std::string BnToBase64Url(const BIGNUM* bn, size_t pad_to = 0) {
  std::string bytes(std::max<size_t>(BN_num_bytes(bn), pad_to), '\0');
  BN_bn2binpad(bn, reinterpret_cast<uint8_t*>(bytes.data()),
               static_cast<int>(bytes.size()));
  return absl::WebSafeBase64Escape(bytes);
}

std::string PubkeyPem(EVP_PKEY* pkey) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  EXPECT_EQ(PEM_write_bio_PUBKEY(bio.get(), pkey), 1);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

struct RsaFixture {
  std::string n, e, pem;
};

RsaFixture MakeRsa(int bits) {
  RsaPtr rsa(RSA_new());
  BignumPtr e(BN_new());
  BN_set_word(e.get(), RSA_F4);
  EXPECT_EQ(RSA_generate_key_ex(rsa.get(), bits, e.get(), nullptr), 1);
  const BIGNUM* n_bn = nullptr;
  const BIGNUM* e_bn = nullptr;
  RSA_get0_key(rsa.get(), &n_bn, &e_bn, nullptr);
  RsaFixture out{BnToBase64Url(n_bn), BnToBase64Url(e_bn), ""};
  EvpPkeyPtr pkey(EVP_PKEY_new());
  EXPECT_EQ(EVP_PKEY_set1_RSA(pkey.get(), rsa.get()), 1);
  out.pem = PubkeyPem(pkey.get());
  return out;
}

struct EcFixture {
  std::string x, y, pem;
};

EcFixture MakeEc(int nid, size_t coordinate_bytes) {
  EcKeyPtr ec(EC_KEY_new_by_curve_name(nid));
  EXPECT_EQ(EC_KEY_generate_key(ec.get()), 1);
  BignumPtr x(BN_new());
  BignumPtr y(BN_new());
  EXPECT_EQ(EC_POINT_get_affine_coordinates_GFp(
                EC_KEY_get0_group(ec.get()), EC_KEY_get0_public_key(ec.get()),
                x.get(), y.get(), nullptr),
            1);
  EcFixture out{BnToBase64Url(x.get(), coordinate_bytes),
                BnToBase64Url(y.get(), coordinate_bytes), ""};
  EvpPkeyPtr pkey(EVP_PKEY_new());
  EXPECT_EQ(EVP_PKEY_set1_EC_KEY(pkey.get(), ec.get()), 1);
  out.pem = PubkeyPem(pkey.get());
  return out;
}

TEST(RsaJwkToPemTest, RoundTripsAGeneratedKey) {
  const RsaFixture key = MakeRsa(2048);
  absl::StatusOr<std::string> pem = RsaJwkToPem(key.n, key.e);
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_EQ(*pem, key.pem);
}

TEST(RsaJwkToPemTest, RefusesShortModulus) {
  const RsaFixture short_rsa = MakeRsa(1024);
  absl::StatusOr<std::string> pem = RsaJwkToPem(short_rsa.n, short_rsa.e);
  ASSERT_FALSE(pem.ok());
  EXPECT_THAT(pem.status().message(), HasSubstr("at least 2048"));
}

TEST(RsaJwkToPemTest, RefusesBadExponent) {
  const RsaFixture key = MakeRsa(2048);
  // e = 1 and e = 2.
  EXPECT_THAT(RsaJwkToPem(key.n, "AQ").status().message(),
              HasSubstr("exponent"));
  EXPECT_THAT(RsaJwkToPem(key.n, "Ag").status().message(),
              HasSubstr("exponent"));
}

TEST(RsaJwkToPemTest, RefusesBadBase64) {
  const RsaFixture key = MakeRsa(2048);
  struct Case {
    const char* name;
    std::string n, e;
    const char* reason;
  };
  const Case cases[] = {
      {"padded", key.n, "AQAB==", "bad character"},
      {"standard_alphabet", "ab+/" + key.n, key.e, "bad character"},
      {"whitespace", key.n + " ", key.e, "bad character"},
      {"impossible_length", key.n, "AQABA", "not valid base64url"},
      {"empty_n", "", key.e, "\"n\" is empty"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::string> pem = RsaJwkToPem(c.n, c.e);
    ASSERT_FALSE(pem.ok()) << c.name;
    EXPECT_EQ(pem.status().code(), absl::StatusCode::kInvalidArgument)
        << c.name;
    EXPECT_THAT(pem.status().message(), HasSubstr(c.reason)) << c.name;
  }
}

TEST(EcJwkToPemTest, RoundTripsAGeneratedKey) {
  const EcFixture key = MakeEc(NID_X9_62_prime256v1, 32);
  absl::StatusOr<std::string> pem = EcJwkToPem("P-256", key.x, key.y);
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_EQ(*pem, key.pem);
}

TEST(EcJwkToPemTest, RefusesP384) {
  const EcFixture key = MakeEc(NID_secp384r1, 48);
  absl::StatusOr<std::string> pem = EcJwkToPem("P-384", key.x, key.y);
  ASSERT_FALSE(pem.ok());
  EXPECT_THAT(pem.status().message(), HasSubstr("only P-256"));
}

TEST(EcJwkToPemTest, RefusesPointOffCurve) {
  const EcFixture key = MakeEc(NID_X9_62_prime256v1, 32);
  std::string y;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(key.y, &y));
  y.back() ^= 1;
  absl::StatusOr<std::string> pem =
      EcJwkToPem("P-256", key.x, absl::WebSafeBase64Escape(y));
  ASSERT_FALSE(pem.ok());
  EXPECT_THAT(pem.status().message(), HasSubstr("not on the P-256 curve"));
}

TEST(EcJwkToPemTest, RefusesShortCoordinate) {
  const EcFixture key = MakeEc(NID_X9_62_prime256v1, 32);
  std::string x;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(key.x, &x));
  absl::StatusOr<std::string> pem =
      EcJwkToPem("P-256", absl::WebSafeBase64Escape(x.substr(1)), key.y);
  ASSERT_FALSE(pem.ok());
  EXPECT_THAT(pem.status().message(), HasSubstr("32 bytes"));
}

TEST(EcJwkToPemTest, RefusesBadBase64) {
  const EcFixture key = MakeEc(NID_X9_62_prime256v1, 32);
  absl::StatusOr<std::string> pem = EcJwkToPem("P-256", key.x, "!!" + key.y);
  ASSERT_FALSE(pem.ok());
  EXPECT_THAT(pem.status().message(), HasSubstr("\"y\" is not unpadded"));
}

TEST(ParsePublicKeysPemTest, ReadsRsaAndEcKeysInOneFile) {
  const RsaFixture rsa = MakeRsa(2048);
  const EcFixture ec = MakeEc(NID_X9_62_prime256v1, 32);
  absl::StatusOr<std::vector<PublicKeyPem>> keys =
      ParsePublicKeysPem(rsa.pem + ec.pem);
  ASSERT_TRUE(keys.ok()) << keys.status();
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].type, PublicKeyType::kRsa);
  EXPECT_EQ((*keys)[0].pem, rsa.pem);
  EXPECT_EQ((*keys)[1].type, PublicKeyType::kEcP256);
  EXPECT_EQ((*keys)[1].pem, ec.pem);
}

TEST(ParsePublicKeysPemTest, RefusesBadKeys) {
  struct Case {
    const char* name;
    std::string pem;
    const char* reason;
  };
  const Case cases[] = {
      {"short_rsa", MakeRsa(1024).pem, "at least 2048"},
      {"p384", MakeEc(NID_secp384r1, 48).pem, "P-256"},
      {"garbage", "not a pem file", "no \"-----BEGIN PUBLIC KEY-----\""},
      {"empty", "", "no \"-----BEGIN PUBLIC KEY-----\""},
      {"corrupt_body",
       "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
       "not a valid PUBLIC KEY"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<std::vector<PublicKeyPem>> keys = ParsePublicKeysPem(c.pem);
    ASSERT_FALSE(keys.ok()) << c.name;
    EXPECT_THAT(keys.status().message(), HasSubstr(c.reason)) << c.name;
  }
}

}  // namespace
}  // namespace meshguard::crypto
