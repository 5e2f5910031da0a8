#include "identity/crypto/keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "identity/crypto/ssl_ptr.h"
#include "tests/identity/crypto/testing/test_keys.h"

namespace meshguard::crypto {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

using testkeys::GenerateEc;
using testkeys::GenerateEd25519;
using testkeys::GenerateRsa;

EvpPkeyPtr P256() {
  absl::StatusOr<EvpPkeyPtr> key = GenerateEcP256Key();
  EXPECT_TRUE(key.ok()) << key.status();
  return key.ok() ? *std::move(key) : nullptr;
}

// --- The CA's key policy -------------------------------------------------

enum class KeyKind { kP256, kP384, kRsa1024, kRsa2048, kEd25519, kNull };

EvpPkeyPtr MakeKey(KeyKind kind) {
  switch (kind) {
    case KeyKind::kP256:
      return P256();
    case KeyKind::kP384:
      return GenerateEc(NID_secp384r1);
    case KeyKind::kRsa1024:
      return GenerateRsa(1024);
    case KeyKind::kRsa2048:
      return GenerateRsa(2048);
    case KeyKind::kEd25519:
      return GenerateEd25519();
    case KeyKind::kNull:
      return nullptr;
  }
  return nullptr;
}

struct PolicyCase {
  std::string name;
  KeyKind kind;
  std::string description;
  bool issuable;
  std::string reason;  // substring of the refusal
};

class KeyPolicyTest : public ::testing::TestWithParam<PolicyCase> {};

TEST_P(KeyPolicyTest, DescribesAndChecks) {
  const PolicyCase& c = GetParam();
  EvpPkeyPtr key = MakeKey(c.kind);
  if (c.kind != KeyKind::kNull) {
    ASSERT_NE(key, nullptr);
  }
  EXPECT_EQ(DescribeKey(key.get()), c.description);
  absl::Status s = CheckIssuableKey(key.get());
  if (c.issuable) {
    EXPECT_TRUE(s.ok()) << s;
  } else {
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.reason));
  }
}

INSTANTIATE_TEST_SUITE_P(
    Keys, KeyPolicyTest,
    ::testing::Values(
        PolicyCase{"null", KeyKind::kNull, "no key", false, "null"},
        PolicyCase{"p384", KeyKind::kP384, "ECDSA P-384", false,
                   "key type ECDSA P-384 is not accepted"},
        PolicyCase{"rsa1024", KeyKind::kRsa1024, "RSA 1024", false,
                   "key type RSA 1024 is not accepted"},
        PolicyCase{"ed25519", KeyKind::kEd25519, "Ed25519", false,
                   "key type Ed25519 is not accepted"},
        PolicyCase{"p256", KeyKind::kP256, "ECDSA P-256", true, ""},
        PolicyCase{"rsa2048", KeyKind::kRsa2048, "RSA 2048", true, ""}),
    [](const auto& info) { return info.param.name; });

TEST(KeyPolicyTest, P256WithExplicitCurveParametersIsRefused) {
  EvpPkeyPtr key = testkeys::GenerateP256WithExplicitParameters();
  if (key == nullptr) GTEST_SKIP() << "this library always names the curve";
  EXPECT_EQ(DescribeKey(key.get()), "ECDSA P-256");
  absl::Status s = CheckIssuableKey(key.get());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("explicit curve parameters is not accepted"));
}

// A 2048-bit RSA public key with exponent `e`, built from a real modulus:
// key generation refuses e = 1 and even exponents, a client's CSR need not.
EvpPkeyPtr RsaPublicKeyWithExponent(uint64_t e) {
  EvpPkeyPtr real = GenerateRsa(2048);
  if (real == nullptr) return nullptr;
  const RSA* real_rsa = EVP_PKEY_get0_RSA(real.get());
  const BIGNUM* n = nullptr;
  RSA_get0_key(real_rsa, &n, nullptr, nullptr);
  RsaPtr rsa(RSA_new());
  BIGNUM* n_copy = BN_dup(n);
  BIGNUM* e_bn = BN_new();
  if (rsa == nullptr || n_copy == nullptr || e_bn == nullptr ||
      !BN_set_word(e_bn, static_cast<BN_ULONG>(e)) ||
      !RSA_set0_key(rsa.get(), n_copy, e_bn, nullptr)) {
    BN_free(n_copy);
    BN_free(e_bn);
    return nullptr;
  }
  EvpPkeyPtr key(EVP_PKEY_new());
  if (key == nullptr || !EVP_PKEY_assign_RSA(key.get(), rsa.get())) {
    return nullptr;
  }
  rsa.release();  // Now owned by `key`.
  return key;
}

// CA/Browser Forum Baseline Requirements 6.1.6: the exponent is odd, and
// should be at least 2^16 + 1. e = 1 makes every "signature" the padded
// hash itself, so proof of possession would prove nothing.
TEST(KeyPolicyTest, RsaExponentMustBeOddAndAtLeast65537) {
  for (uint64_t e : {uint64_t{1}, uint64_t{3}, uint64_t{65538}}) {
    SCOPED_TRACE(e);
    EvpPkeyPtr key = RsaPublicKeyWithExponent(e);
    ASSERT_NE(key, nullptr);
    EXPECT_EQ(DescribeKey(key.get()), "RSA 2048");
    absl::Status s = CheckIssuableKey(key.get());
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(
        std::string(s.message()),
        HasSubstr(absl::StrCat("RSA public exponent ", e, " is not accepted")));
  }
  EvpPkeyPtr f4 = RsaPublicKeyWithExponent(65537);
  ASSERT_NE(f4, nullptr);
  EXPECT_TRUE(CheckIssuableKey(f4.get()).ok());
}

// The point at infinity decodes (a single 0x00 octet) and passes an
// on-curve check, but ECDSA verification with it accepts signatures anyone
// can compute: a certificate for it would let anyone act as its holder.
TEST(KeyPolicyTest, P256PointAtInfinityIsRefused) {
  EcKeyPtr ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  ASSERT_NE(ec, nullptr);
  const unsigned char infinity[] = {0x00};
  const unsigned char* p = infinity;
  EC_KEY* raw_ec = ec.get();
  if (o2i_ECPublicKey(&raw_ec, &p, sizeof(infinity)) == nullptr) {
    GTEST_SKIP() << "this library does not decode the point at infinity";
  }
  ASSERT_EQ(EC_POINT_is_at_infinity(EC_KEY_get0_group(ec.get()),
                                    EC_KEY_get0_public_key(ec.get())),
            1);
  EvpPkeyPtr key(EVP_PKEY_new());
  ASSERT_NE(key, nullptr);
  ASSERT_EQ(EVP_PKEY_assign_EC_KEY(key.get(), ec.get()), 1);
  ec.release();  // Now owned by `key`.
  absl::Status s = CheckIssuableKey(key.get());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("point at infinity"));
}

// --- Bad PEM first --------------------------------------------------------

struct BadPemCase {
  std::string name;
  std::string pem;
  std::string reason;
};

std::string ValidKeyPem() {
  EvpPkeyPtr key = P256();
  absl::StatusOr<std::string> pem = PrivateKeyToPem(key.get());
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.ok() ? *pem : "";
}

std::vector<BadPemCase> BadPrivateKeyPems() {
  const std::string good = ValidKeyPem();
  std::string public_pem;
  {
    EvpPkeyPtr key = P256();
    public_pem = PublicKeyToPem(key.get()).value();
  }
  return {
      {"empty", "", "is empty"},
      {"garbage", "this is not a key\n", "no PEM block"},
      {"truncated", good.substr(0, good.size() / 2), "truncated or malformed"},
      {"oversized", std::string(kMaxPemBytes + 1, 'a'), "too large"},
      {"two_keys", good + good, "2 PEM blocks"},
      {"public_key", public_pem, "\"PUBLIC KEY\" block"},
      {"encrypted_pkcs8", WritePemBlock("ENCRYPTED PRIVATE KEY", "xx").value(),
       "encrypted"},
      {"legacy_encrypted",
       "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: "
       "AES-128-CBC,00000000000000000000000000000000\n\nAAAA\n-----END EC "
       "PRIVATE KEY-----\n",
       "encrypted"},
      {"bad_der", WritePemBlock("PRIVATE KEY", "not DER at all").value(),
       "cannot parse private key DER"},
  };
}

class BadPrivateKeyPemTest : public ::testing::TestWithParam<BadPemCase> {};

TEST_P(BadPrivateKeyPemTest, RefusedWithReason) {
  const BadPemCase& c = GetParam();
  absl::StatusOr<EvpPkeyPtr> key = PrivateKeyFromPem(c.pem);
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(key.status().message()), HasSubstr(c.reason));
  EXPECT_EQ(ERR_peek_error(), 0u) << "error queue not cleared";
}

INSTANTIATE_TEST_SUITE_P(Pem, BadPrivateKeyPemTest,
                         ::testing::ValuesIn(BadPrivateKeyPems()),
                         [](const auto& info) { return info.param.name; });

TEST(PrivateKeyFromDerTest, RefusesEmptyGarbageAndTrailingBytes) {
  EXPECT_THAT(std::string(PrivateKeyFromDer("").status().message()),
              HasSubstr("empty"));
  EXPECT_THAT(std::string(PrivateKeyFromDer("garbage").status().message()),
              HasSubstr("cannot parse"));
  EvpPkeyPtr key = P256();
  std::string der = PrivateKeyToDer(key.get()).value();
  absl::StatusOr<EvpPkeyPtr> trailing = PrivateKeyFromDer(der + "x");
  ASSERT_FALSE(trailing.ok());
  EXPECT_THAT(std::string(trailing.status().message()), HasSubstr("trailing"));
}

TEST(PublicKeyFromPemTest, RefusesBadInput) {
  EXPECT_FALSE(PublicKeyFromPem("").ok());
  EXPECT_FALSE(PublicKeyFromPem("garbage").ok());
  absl::StatusOr<EvpPkeyPtr> wrong = PublicKeyFromPem(ValidKeyPem());
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(std::string(wrong.status().message()),
              HasSubstr("\"PRIVATE KEY\" block"));
  EXPECT_FALSE(
      PublicKeyFromPem(WritePemBlock("PUBLIC KEY", "junk").value()).ok());
}

TEST(NullKeyTest, EncodersRefuseNull) {
  EXPECT_EQ(PrivateKeyToPem(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PrivateKeyToDer(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PublicKeyToPem(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(PublicKeysEqual(nullptr, nullptr));
}

// --- Round trips ----------------------------------------------------------

class KeyRoundTripTest : public ::testing::TestWithParam<KeyKind> {};

TEST_P(KeyRoundTripTest, PemAndDerKeepTheKey) {
  EvpPkeyPtr key = MakeKey(GetParam());
  ASSERT_NE(key, nullptr);

  absl::StatusOr<std::string> pem = PrivateKeyToPem(key.get());
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_THAT(*pem, StartsWith("-----BEGIN PRIVATE KEY-----\n"));
  absl::StatusOr<EvpPkeyPtr> from_pem = PrivateKeyFromPem(*pem);
  ASSERT_TRUE(from_pem.ok()) << from_pem.status();
  EXPECT_TRUE(PublicKeysEqual(key.get(), from_pem->get()));
  EXPECT_EQ(DescribeKey(from_pem->get()), DescribeKey(key.get()));

  absl::StatusOr<std::string> der = PrivateKeyToDer(key.get());
  ASSERT_TRUE(der.ok()) << der.status();
  // PKCS#8 PrivateKeyInfo is a SEQUENCE starting with INTEGER version 0.
  ASSERT_GT(der->size(), 8u);
  EXPECT_EQ(static_cast<unsigned char>((*der)[0]), 0x30);
  absl::StatusOr<EvpPkeyPtr> from_der = PrivateKeyFromDer(*der);
  ASSERT_TRUE(from_der.ok()) << from_der.status();
  EXPECT_TRUE(PublicKeysEqual(key.get(), from_der->get()));
  // The PEM holds exactly the DER.
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPemBlocks(*pem, "key");
  ASSERT_TRUE(blocks.ok());
  EXPECT_EQ(blocks->front().der, *der);

  absl::StatusOr<std::string> pub = PublicKeyToPem(key.get());
  ASSERT_TRUE(pub.ok()) << pub.status();
  EXPECT_THAT(*pub, StartsWith("-----BEGIN PUBLIC KEY-----\n"));
  absl::StatusOr<EvpPkeyPtr> from_pub = PublicKeyFromPem(*pub);
  ASSERT_TRUE(from_pub.ok()) << from_pub.status();
  EXPECT_TRUE(PublicKeysEqual(key.get(), from_pub->get()));
}

INSTANTIATE_TEST_SUITE_P(Keys, KeyRoundTripTest,
                         ::testing::Values(KeyKind::kP256, KeyKind::kP384,
                                           KeyKind::kRsa2048));

TEST(GenerateEcP256KeyTest, FreshKeysDiffer) {
  EvpPkeyPtr a = P256();
  EvpPkeyPtr b = P256();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(DescribeKey(a.get()), "ECDSA P-256");
  EXPECT_TRUE(PublicKeysEqual(a.get(), a.get()));
  EXPECT_FALSE(PublicKeysEqual(a.get(), b.get()));
}

TEST(ReadPemBlocksTest, KeepsOrderAndSkipsTextBetweenBlocks) {
  std::string pem =
      absl::StrCat("leading text\n", WritePemBlock("ONE", "first").value(),
                   "between\n", WritePemBlock("TWO", "second").value());
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPemBlocks(pem, "test");
  ASSERT_TRUE(blocks.ok()) << blocks.status();
  ASSERT_EQ(blocks->size(), 2u);
  EXPECT_EQ((*blocks)[0].type, "ONE");
  EXPECT_EQ((*blocks)[0].der, "first");
  EXPECT_EQ((*blocks)[1].type, "TWO");
  EXPECT_EQ((*blocks)[1].der, "second");
}

TEST(ReadPemBlocksTest, MissingEndLineIsTruncation) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadPemBlocks("-----BEGIN CERTIFICATE-----\nAAAA\n", "test");
  ASSERT_FALSE(blocks.ok());
  EXPECT_THAT(std::string(blocks.status().message()),
              HasSubstr("truncated or malformed"));
}

TEST(ReadPemBlocksTest, LimitIsConfigurable) {
  std::string pem = WritePemBlock("X", std::string(100, 'x')).value();
  EXPECT_TRUE(ReadPemBlocks(pem, "test", pem.size()).ok());
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadPemBlocks(pem, "test", pem.size() - 1);
  ASSERT_FALSE(blocks.ok());
  EXPECT_THAT(std::string(blocks.status().message()),
              HasSubstr("test is too large"));
}

}  // namespace
}  // namespace meshguard::crypto
