#include "identity/crypto/csr.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/ssl_ptr.h"
#include "tests/identity/crypto/testing/test_keys.h"

namespace meshguard::crypto {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr absl::string_view kId = "spiffe://cluster.local/ns/shop/sa/frontend";

SpiffeId Id(absl::string_view id = kId) { return SpiffeId::Parse(id).value(); }

EvpPkeyPtr P256() { return GenerateEcP256Key().value(); }

using testkeys::GenerateEc;
using testkeys::GenerateRsa;

std::string ValidCsrPem() {
  EvpPkeyPtr key = P256();
  return CreateCsrPem(key.get(), Id()).value();
}

std::string DerOf(const std::string& pem) {
  return ReadPemBlocks(pem, "test").value().front().der;
}

std::string ReqPem(X509_REQ* req) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// A CSR with arbitrary URI SANs, built with raw OpenSSL calls, as a
// misbehaving client would.
std::string CsrWithUris(EVP_PKEY* key, const std::vector<std::string>& uris) {
  X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_REQ_set_pubkey(req.get(), key);
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  for (const std::string& uri : uris) {
    EXPECT_TRUE(AddGeneralName(names.get(), GEN_URI, uri).ok());
  }
  X509ExtensionPtr san(X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get()));
  ExtensionStackPtr exts(sk_X509_EXTENSION_new_null());
  sk_X509_EXTENSION_push(exts.get(), san.release());
  X509_REQ_add_extensions(req.get(), exts.get());
  EXPECT_GT(X509_REQ_sign(req.get(), key, EVP_sha256()), 0);
  return ReqPem(req.get());
}

// A CSR for `key` with no extensions, signed over `md` (nullptr for keys that
// take none, as Ed25519).
std::string SignedCsrPem(EVP_PKEY* key, const EVP_MD* md) {
  X509ReqPtr req(X509_REQ_new());
  EXPECT_TRUE(X509_REQ_set_version(req.get(), 0));
  EXPECT_TRUE(X509_REQ_set_pubkey(req.get(), key));
  EXPECT_GT(X509_REQ_sign(req.get(), key, md), 0);
  return ReqPem(req.get());
}

// --- Bad input first -------------------------------------------------------

struct BadCsrCase {
  std::string name;
  std::string pem;
  std::string reason;
};

std::vector<BadCsrCase> BadCsrs() {
  const std::string good = ValidCsrPem();
  const std::string der = DerOf(good);
  return {
      {"empty", "", "CSR PEM is empty"},
      {"garbage", "GET / HTTP/1.1\r\n\r\n", "no PEM block"},
      {"truncated", good.substr(0, good.size() / 2), "truncated or malformed"},
      {"oversized", absl::StrCat(std::string(kMaxCsrPemBytes, '#'), "\n", good),
       "too large"},
      {"two_blocks", good + good, "2 PEM blocks; expected exactly one"},
      {"certificate_block", WritePemBlock("CERTIFICATE", der).value(),
       "not \"CERTIFICATE REQUEST\""},
      {"bad_der", WritePemBlock("CERTIFICATE REQUEST", "\x30\x03junk").value(),
       "cannot parse CSR DER"},
      {"truncated_der",
       WritePemBlock("CERTIFICATE REQUEST", der.substr(0, der.size() - 10))
           .value(),
       "cannot parse CSR DER"},
      {"trailing_der", WritePemBlock("CERTIFICATE REQUEST", der + "xx").value(),
       "trailing bytes"},
  };
}

class BadCsrTest : public ::testing::TestWithParam<BadCsrCase> {};

TEST_P(BadCsrTest, RefusedWithReason) {
  const BadCsrCase& c = GetParam();
  absl::StatusOr<Csr> csr = Csr::ParsePem(c.pem);
  ASSERT_FALSE(csr.ok());
  EXPECT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(csr.status().message()), HasSubstr(c.reason));
}

INSTANTIATE_TEST_SUITE_P(Pem, BadCsrTest, ::testing::ValuesIn(BadCsrs()),
                         [](const auto& info) { return info.param.name; });

// The CA decodes a request's public key itself (csr.cc, DecodeReqPublicKey)
// rather than through the parse: a point that is not on the curve must still
// be refused there, before any signature check.
TEST(CsrTest, PublicKeyOffTheCurveIsRefused) {
  EvpPkeyPtr key = P256();
  std::string der = DerOf(CreateCsrPem(key.get(), Id()).value());
  unsigned char* raw = nullptr;
  const int spki_len = i2d_PUBKEY(key.get(), &raw);
  ASSERT_GT(spki_len, 65);
  OpensslBytes spki(raw);
  const size_t at = der.find(
      std::string(reinterpret_cast<const char*>(spki.get()), spki_len));
  ASSERT_NE(at, std::string::npos);
  // The SPKI ends with the uncompressed point 04||X||Y; (X, Y^1) is not on
  // P-256 (Y^1 is neither Y nor p-Y).
  der[at + spki_len - 1] ^= 0x01;
  absl::StatusOr<Csr> csr =
      Csr::ParsePem(WritePemBlock("CERTIFICATE REQUEST", der).value());
  ASSERT_FALSE(csr.ok());
  EXPECT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(csr.status().message()),
              HasSubstr("CSR public key cannot be decoded"));
}

#ifndef OPENSSL_IS_BORINGSSL
// An attacker's CSR for the point at infinity: nobody holds its private key,
// yet a signature can be computed from public values alone (u1 = k, so
// u1*G + u2*Q = k*G whatever u2 is). The CA must not certify the key.
TEST(CsrTest, PointAtInfinityKeyIsNeverIssuable) {
  EcGroupPtr group_owner(EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1));
  ASSERT_NE(group_owner, nullptr);
  const EC_GROUP* group = group_owner.get();

  // OpenSSL will not encode such a key itself, so the attacker writes the
  // SubjectPublicKeyInfo by hand: id-ecPublicKey, prime256v1, one 0x00.
  X509ReqPtr req(X509_REQ_new());
  ASSERT_TRUE(X509_REQ_set_version(req.get(), 0));
  auto* point = static_cast<unsigned char*>(OPENSSL_malloc(1));
  ASSERT_NE(point, nullptr);
  point[0] = 0x00;
  ASSERT_TRUE(X509_PUBKEY_set0_param(
      X509_REQ_get_X509_PUBKEY(req.get()),
      OBJ_nid2obj(NID_X9_62_id_ecPublicKey), V_ASN1_OBJECT,
      OBJ_nid2obj(NID_X9_62_prime256v1), point, 1));
  X509AlgorPtr alg(X509_ALGOR_new());
  ASSERT_TRUE(X509_ALGOR_set0(alg.get(), OBJ_nid2obj(NID_ecdsa_with_SHA256),
                              V_ASN1_UNDEF, nullptr));
  ASSERT_TRUE(X509_REQ_set1_signature_algo(req.get(), alg.get()));
  unsigned char* tbs_raw = nullptr;
  const int tbs_len = i2d_re_X509_REQ_tbs(req.get(), &tbs_raw);
  ASSERT_GT(tbs_len, 0);
  OpensslBytes tbs(tbs_raw);
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(tbs.get(), static_cast<size_t>(tbs_len), digest);

  // r = x(k*G) mod n, s = e/k mod n.
  BnCtxPtr bn_ctx(BN_CTX_new());
  BignumPtr order(BN_new()), k(BN_new()),
      e(BN_bin2bn(digest, sizeof(digest), nullptr));
  BignumPtr x(BN_new()), r(BN_new()), s(BN_new()), k_inv(BN_new());
  EcPointPtr big_r(EC_POINT_new(group));
  ASSERT_TRUE(EC_GROUP_get_order(group, order.get(), bn_ctx.get()));
  ASSERT_TRUE(BN_rand_range(k.get(), order.get()));
  ASSERT_TRUE(EC_POINT_mul(group, big_r.get(), k.get(), nullptr, nullptr,
                           bn_ctx.get()));
  ASSERT_TRUE(EC_POINT_get_affine_coordinates(group, big_r.get(), x.get(),
                                              nullptr, bn_ctx.get()));
  ASSERT_TRUE(BN_nnmod(r.get(), x.get(), order.get(), bn_ctx.get()));
  ASSERT_NE(BN_mod_inverse(k_inv.get(), k.get(), order.get(), bn_ctx.get()),
            nullptr);
  ASSERT_TRUE(
      BN_mod_mul(s.get(), e.get(), k_inv.get(), order.get(), bn_ctx.get()));
  EcdsaSigPtr sig(ECDSA_SIG_new());
  ASSERT_TRUE(ECDSA_SIG_set0(sig.get(), r.release(), s.release()));
  unsigned char* sig_der = nullptr;
  const int sig_len = i2d_ECDSA_SIG(sig.get(), &sig_der);
  ASSERT_GT(sig_len, 0);
  OpensslBytes sig_bytes(sig_der);
  ASN1_BIT_STRING* bits = ASN1_BIT_STRING_new();
  ASSERT_NE(bits, nullptr);
  ASSERT_TRUE(ASN1_BIT_STRING_set(bits, sig_bytes.get(), sig_len));
  X509_REQ_set0_signature(req.get(), bits);  // takes `bits`

  absl::StatusOr<Csr> csr = Csr::ParsePem(ReqPem(req.get()));
  // Refused as it is read, as OpenSSL's own decoder refused it before the
  // parse went around the decoder (keys_test checks the key policy too).
  ASSERT_FALSE(csr.ok());
  EXPECT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(csr.status().message()),
              HasSubstr("CSR public key cannot be decoded"));
  EXPECT_THAT(std::string(csr.status().message()),
              HasSubstr("point at infinity"));
}
#endif

// A P-256 key whose CSR spells out the curve's parameters instead of naming
// it. RFC 5480 (and so an X.509-SVID) requires the named curve; the CA would
// otherwise copy the explicit parameters into the leaf it signs.
TEST(CsrTest, ExplicitCurveParametersAreRefusedByKeyPolicy) {
  EvpPkeyPtr key = testkeys::GenerateP256WithExplicitParameters();
  if (key == nullptr) GTEST_SKIP() << "this library always names the curve";
  const std::string pem = SignedCsrPem(key.get(), EVP_sha256());
  // The prime of P-256 appears in the request only if the parameters are
  // spelled out (a named curve is just its OID).
  ASSERT_NE(DerOf(pem).find(std::string("\xff\xff\xff\xff\x00\x00\x00\x01", 8)),
            std::string::npos);
  absl::StatusOr<Csr> csr = Csr::ParsePem(pem);
  if (!csr.ok()) {
    // A library that refuses explicit parameters outright is just as good.
    EXPECT_EQ(csr.status().code(), absl::StatusCode::kInvalidArgument);
    return;
  }
  absl::Status s = CheckIssuableKey(csr->public_key());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("explicit curve parameters"));
}

// Keys of a type the CA does not certify still parse (the generic decoder),
// so the refusal can name the key type (the CA checks the key before the
// signature).
TEST(CsrTest, Ed25519KeyParsesButKeyPolicyRefuses) {
  EvpPkeyPtr key = testkeys::GenerateEd25519();
  ASSERT_NE(key, nullptr);
  absl::StatusOr<Csr> csr = Csr::ParsePem(SignedCsrPem(key.get(), nullptr));
  ASSERT_TRUE(csr.ok()) << csr.status();
  // Its signature algorithm is not one the CA takes either.
  EXPECT_THAT(std::string(csr->CheckSignature().message()),
              HasSubstr("CSR signature algorithm ED25519 is not accepted"));
  EXPECT_TRUE(PublicKeysEqual(csr->public_key(), key.get()));
  absl::Status s = CheckIssuableKey(csr->public_key());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("is not accepted"));
}

// The CA parses requests on several gRPC threads at once.
TEST(CsrTest, ParsesConcurrently) {
  std::vector<std::string> pems;
  std::vector<EvpPkeyPtr> keys;
  for (int i = 0; i < 4; ++i) {
    keys.push_back(P256());
    pems.push_back(CreateCsrPem(keys.back().get(), Id()).value());
  }
  std::atomic<int> good{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 50; ++i) {
        absl::StatusOr<Csr> csr = Csr::ParsePem(pems[(t + i) % 4]);
        if (csr.ok() && csr->CheckSignature().ok() &&
            PublicKeysEqual(csr->public_key(), keys[(t + i) % 4].get())) {
          ++good;
        }
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(good.load(), 200);
}

TEST(CsrTest, SizeLimitIsInclusive) {
  std::string good = ValidCsrPem();
  std::string padded =
      std::string(kMaxCsrPemBytes - good.size() - 1, '#') + "\n";
  EXPECT_TRUE(Csr::ParsePem(padded + good).ok());
}

TEST(CsrTest, TamperedSignatureIsRefused) {
  std::string der = DerOf(ValidCsrPem());
  // The signature BIT STRING ends the DER; its last byte is the low byte of
  // the ECDSA `s` value, so flipping it keeps the DER well-formed.
  der.back() ^= 0x01;
  absl::StatusOr<Csr> csr =
      Csr::ParsePem(WritePemBlock("CERTIFICATE REQUEST", der).value());
  ASSERT_TRUE(csr.ok()) << csr.status();
  absl::Status s = csr->CheckSignature();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("CSR signature does not verify"));
}

// A signature over SHA-1 proves little (and MD5 nothing); the CA takes the
// SHA-2 family only, and says which algorithm it refused.
TEST(CsrTest, WeakSignatureDigestsAreRefused) {
  struct Case {
    const char* name;
    EvpPkeyPtr key;
    const EVP_MD* md;
    const char* algorithm;
  };
  Case cases[] = {
      {"ecdsa_sha1", P256(), EVP_sha1(), "ecdsa-with-SHA1"},
      {"rsa_sha1", GenerateRsa(2048), EVP_sha1(), "sha1WithRSAEncryption"},
  };
  for (Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_NE(c.key, nullptr);
    absl::StatusOr<Csr> csr = Csr::ParsePem(SignedCsrPem(c.key.get(), c.md));
    ASSERT_TRUE(csr.ok()) << csr.status();
    absl::Status s = csr->CheckSignature();
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()),
                HasSubstr(absl::StrCat("CSR signature algorithm ", c.algorithm,
                                       " is not accepted")));
  }
}

TEST(CsrTest, TamperedContentIsRefused) {
  std::string der = DerOf(ValidCsrPem());
  size_t at = der.find("frontend");
  ASSERT_NE(at, std::string::npos);
  der[at] = 'F';  // The signed SAN now says "Frontend".
  absl::StatusOr<Csr> csr =
      Csr::ParsePem(WritePemBlock("CERTIFICATE REQUEST", der).value());
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_FALSE(csr->CheckSignature().ok());
}

TEST(CsrTest, TwoUriSansAreBothReported) {
  EvpPkeyPtr key = P256();
  absl::StatusOr<Csr> csr = Csr::ParsePem(CsrWithUris(
      key.get(), {std::string(kId), "spiffe://cluster.local/ns/x/sa/admin"}));
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_TRUE(csr->CheckSignature().ok());
  EXPECT_THAT(
      csr->UriSans(),
      ElementsAre(std::string(kId), "spiffe://cluster.local/ns/x/sa/admin"));
}

TEST(CsrTest, NoSanMeansNoUris) {
  EvpPkeyPtr key = P256();
  absl::StatusOr<Csr> csr = Csr::ParsePem(CsrWithUris(key.get(), {}));
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_THAT(csr->UriSans(), IsEmpty());
}

struct WeakKeyCase {
  std::string name;
  int kind;  // 0: P-384, 1: RSA 1024
  std::string reason;
};

class WeakKeyCsrTest : public ::testing::TestWithParam<WeakKeyCase> {};

TEST_P(WeakKeyCsrTest, ParsesButKeyPolicyRefuses) {
  const WeakKeyCase& c = GetParam();
  EvpPkeyPtr key = c.kind == 0 ? GenerateEc(NID_secp384r1) : GenerateRsa(1024);
  ASSERT_NE(key, nullptr);
  absl::StatusOr<std::string> pem = CreateCsrPem(key.get(), Id());
  ASSERT_TRUE(pem.ok()) << pem.status();
  absl::StatusOr<Csr> csr = Csr::ParsePem(*pem);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_TRUE(csr->CheckSignature().ok());
  absl::Status s = CheckIssuableKey(csr->public_key());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(c.reason));
}

INSTANTIATE_TEST_SUITE_P(
    Keys, WeakKeyCsrTest,
    ::testing::Values(WeakKeyCase{"p384", 0, "ECDSA P-384 is not accepted"},
                      WeakKeyCase{"rsa1024", 1, "RSA 1024 is not accepted"}),
    [](const auto& info) { return info.param.name; });

TEST(CreateCsrPemTest, RefusesNullKey) {
  EXPECT_EQ(CreateCsrPem(nullptr, Id()).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CreateCsrPemWithoutIdentity(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(CreateCsrPemTest, WithoutIdentityHasNoSans) {
  EvpPkeyPtr key = P256();
  absl::StatusOr<std::string> pem = CreateCsrPemWithoutIdentity(key.get());
  ASSERT_TRUE(pem.ok()) << pem.status();
  absl::StatusOr<Csr> csr = Csr::ParsePem(*pem);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_TRUE(csr->CheckSignature().ok());
  EXPECT_THAT(csr->UriSans(), IsEmpty());
  EXPECT_TRUE(PublicKeysEqual(csr->public_key(), key.get()));
}

// --- The good case ----------------------------------------------------------

class CsrRoundTripTest : public ::testing::TestWithParam<int> {};

TEST_P(CsrRoundTripTest, CarriesIdKeyAndSha256) {
  EvpPkeyPtr key = GetParam() == 0 ? P256() : GenerateRsa(2048);
  ASSERT_NE(key, nullptr);
  absl::StatusOr<std::string> pem = CreateCsrPem(key.get(), Id());
  ASSERT_TRUE(pem.ok()) << pem.status();
  absl::StatusOr<Csr> csr = Csr::ParsePem(*pem);
  ASSERT_TRUE(csr.ok()) << csr.status();
  EXPECT_TRUE(csr->CheckSignature().ok());
  EXPECT_THAT(csr->UriSans(), ElementsAre(std::string(kId)));
  EXPECT_THAT(csr->DnsSans(), IsEmpty());
  EXPECT_TRUE(PublicKeysEqual(csr->public_key(), key.get()));
  EXPECT_TRUE(CheckIssuableKey(csr->public_key()).ok());
  EXPECT_EQ(X509_NAME_entry_count(X509_REQ_get_subject_name(csr->req())), 0);
  const ASN1_BIT_STRING* sig = nullptr;
  const X509_ALGOR* alg = nullptr;
  X509_REQ_get0_signature(csr->req(), &sig, &alg);
  ASSERT_NE(alg, nullptr);
  const ASN1_OBJECT* oid = nullptr;
  X509_ALGOR_get0(&oid, nullptr, nullptr, alg);
  int nid = OBJ_obj2nid(oid);
  EXPECT_TRUE(nid == NID_ecdsa_with_SHA256 ||
              nid == NID_sha256WithRSAEncryption)
      << OBJ_nid2sn(nid);

  Csr moved = *std::move(csr);
  EXPECT_THAT(moved.UriSans(), ElementsAre(std::string(kId)));
}

INSTANTIATE_TEST_SUITE_P(Keys, CsrRoundTripTest, ::testing::Values(0, 1));

}  // namespace
}  // namespace meshguard::crypto
