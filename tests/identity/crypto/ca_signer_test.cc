#include "identity/crypto/ca_signer.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/ec.h>
#include <openssl/err.h>

#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/ssl_ptr.h"
#include "tests/identity/crypto/testing/test_keys.h"

namespace meshguard::crypto {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);
constexpr absl::string_view kTrustDomain = "example.org";
constexpr absl::string_view kId = "spiffe://example.org/ns/shop/sa/frontend";

EvpPkeyPtr P256() { return GenerateEcP256Key().value(); }

using testkeys::GenerateEc;
using testkeys::GenerateRsa;

X509Ptr Dup(X509* cert) { return X509Ptr(X509_dup(cert)); }

EvpPkeyPtr DupKey(EVP_PKEY* key) {
  EVP_PKEY_up_ref(key);
  return EvpPkeyPtr(key);
}

// The decoded extension and whether it was critical (-1: absent).
template <typename T>
std::unique_ptr<T, void (*)(T*)> Ext(X509* cert, int nid, int* critical,
                                     void (*free_fn)(T*)) {
  return std::unique_ptr<T, void (*)(T*)>(
      static_cast<T*>(X509_get_ext_d2i(cert, nid, critical, nullptr)), free_fn);
}

std::string OctetString(const ASN1_OCTET_STRING* s) {
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     ASN1_STRING_length(s));
}

std::string SkiOf(X509* cert) {
  Asn1OctetStringPtr ski(static_cast<ASN1_OCTET_STRING*>(
      X509_get_ext_d2i(cert, NID_subject_key_identifier, nullptr, nullptr)));
  return ski == nullptr ? "" : OctetString(ski.get());
}

std::string AkiOf(X509* cert) {
  AuthorityKeyIdPtr aki(static_cast<AUTHORITY_KEYID*>(
      X509_get_ext_d2i(cert, NID_authority_key_identifier, nullptr, nullptr)));
  return aki == nullptr || aki->keyid == nullptr ? "" : OctetString(aki->keyid);
}

// OpenSSL keeps no stack at all for an empty CRL.
int RevokedCount(X509_CRL* crl) {
  STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl);
  return revoked == nullptr ? 0
                            : static_cast<int>(sk_X509_REVOKED_num(revoked));
}

// Verifies `leaf` up to `root` through `intermediates` at `at`.
int VerifyChain(X509* leaf, X509* root, const std::vector<X509*>& intermediates,
                absl::Time at) {
  X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), root);
  X509StackPtr untrusted(sk_X509_new_null());
  for (X509* cert : intermediates) {
    X509_up_ref(cert);
    sk_X509_push(untrusted.get(), cert);
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get());
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(at));
  if (X509_verify_cert(ctx.get()) == 1) return X509_V_OK;
  int error = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  return error;
}

class CaSignerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_key_ = P256();
    root_ = CreateRootCertificate(root_key_.get(), kTrustDomain,
                                  absl::Hours(24 * 365), kNow)
                .value();
    intermediate_key_ = P256();
    intermediate_ = CreateIntermediateCertificate(
                        intermediate_key_.get(), root_.get(), root_key_.get(),
                        kTrustDomain, absl::Hours(24 * 30), kNow)
                        .value();
    signer_ = CaSigner::Create(Dup(intermediate_.get()),
                               DupKey(intermediate_key_.get()), {})
                  .value();
    leaf_key_ = P256();
  }

  LeafRequest Request(absl::Duration ttl = absl::Hours(1),
                      absl::Time now = kNow) {
    return LeafRequest{
        leaf_key_.get(), SpiffeId::Parse(kId).value(), ttl, now, {}, {}};
  }

  EvpPkeyPtr root_key_, intermediate_key_, leaf_key_;
  X509Ptr root_, intermediate_;
  std::unique_ptr<CaSigner> signer_;
};

// --- Refusals first ----------------------------------------------------------

struct RefusalCase {
  std::string name;
  std::function<void(LeafRequest&, EvpPkeyPtr&)> mutate;
  absl::StatusCode code;
  std::string reason;
};

class IssueLeafRefusalTest : public CaSignerTest,
                             public ::testing::WithParamInterface<RefusalCase> {
};

TEST_P(IssueLeafRefusalTest, RefusedWithReason) {
  const RefusalCase& c = GetParam();
  LeafRequest request = Request();
  EvpPkeyPtr holder;
  c.mutate(request, holder);
  absl::StatusOr<X509Ptr> leaf = signer_->IssueLeaf(request);
  ASSERT_FALSE(leaf.ok());
  EXPECT_EQ(leaf.status().code(), c.code) << leaf.status();
  EXPECT_THAT(std::string(leaf.status().message()), HasSubstr(c.reason));
  EXPECT_EQ(ERR_peek_error(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Refusals, IssueLeafRefusalTest,
    ::testing::Values(
        RefusalCase{
            "zero_ttl",
            [](LeafRequest& r, EvpPkeyPtr&) { r.ttl = absl::ZeroDuration(); },
            absl::StatusCode::kInvalidArgument, "TTL must be positive"},
        RefusalCase{
            "negative_ttl",
            [](LeafRequest& r, EvpPkeyPtr&) { r.ttl = -absl::Hours(1); },
            absl::StatusCode::kInvalidArgument, "TTL must be positive"},
        RefusalCase{"null_key",
                    [](LeafRequest& r, EvpPkeyPtr&) { r.public_key = nullptr; },
                    absl::StatusCode::kInvalidArgument, "no public key"},
        RefusalCase{"p384_key",
                    [](LeafRequest& r, EvpPkeyPtr& k) {
                      k = GenerateEc(NID_secp384r1);
                      r.public_key = k.get();
                    },
                    absl::StatusCode::kInvalidArgument,
                    "ECDSA P-384 is not accepted"},
        RefusalCase{"rsa1024_key",
                    [](LeafRequest& r, EvpPkeyPtr& k) {
                      k = GenerateRsa(1024);
                      r.public_key = k.get();
                    },
                    absl::StatusCode::kInvalidArgument,
                    "RSA 1024 is not accepted"},
#ifndef OPENSSL_IS_BORINGSSL
        // BoringSSL always names the curve; there is no such key to refuse.
        RefusalCase{"p256_explicit_parameters_key",
                    [](LeafRequest& r, EvpPkeyPtr& k) {
                      k = testkeys::GenerateP256WithExplicitParameters();
                      r.public_key = k.get();
                    },
                    absl::StatusCode::kInvalidArgument,
                    "explicit curve parameters is not accepted"},
#endif
        RefusalCase{
            "wrong_trust_domain",
            [](LeafRequest& r, EvpPkeyPtr&) {
              r.spiffe_id =
                  SpiffeId::Parse("spiffe://other.org/ns/a/sa/b").value();
            },
            absl::StatusCode::kInvalidArgument,
            "signs for trust domain \"example.org\""},
        RefusalCase{
            "bad_dns_name",
            [](LeafRequest& r, EvpPkeyPtr&) { r.dns_names = {"bad name"}; },
            absl::StatusCode::kInvalidArgument, "invalid DNS name"},
        RefusalCase{"bad_ip",
                    [](LeafRequest& r, EvpPkeyPtr&) {
                      r.ip_addresses = {"10.0.0.256"};
                    },
                    absl::StatusCode::kInvalidArgument, "invalid IP address"},
        RefusalCase{"signer_expired",
                    [](LeafRequest& r, EvpPkeyPtr&) {
                      r.now = kNow + absl::Hours(24 * 31);
                    },
                    absl::StatusCode::kFailedPrecondition,
                    "signing chain expires"}),
    [](const auto& info) { return info.param.name; });

TEST_F(CaSignerTest, CreateRefusesMismatchedKey) {
  absl::StatusOr<std::unique_ptr<CaSigner>> signer =
      CaSigner::Create(Dup(intermediate_.get()), P256(), {});
  ASSERT_FALSE(signer.ok());
  EXPECT_EQ(signer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(signer.status().message()),
              HasSubstr("does not match"));
}

TEST_F(CaSignerTest, CreateRefusesLeafAsSigner) {
  X509Ptr leaf = signer_->IssueLeaf(Request()).value();
  absl::StatusOr<std::unique_ptr<CaSigner>> signer =
      CaSigner::Create(std::move(leaf), DupKey(leaf_key_.get()), {});
  ASSERT_FALSE(signer.ok());
  EXPECT_THAT(std::string(signer.status().message()), HasSubstr("not a CA"));
}

TEST_F(CaSignerTest, CreateRefusesNullAndNullChainEntries) {
  EXPECT_FALSE(CaSigner::Create(nullptr, nullptr, {}).ok());
  std::vector<X509Ptr> chain;
  chain.push_back(nullptr);
  absl::StatusOr<std::unique_ptr<CaSigner>> signer =
      CaSigner::Create(Dup(intermediate_.get()),
                       DupKey(intermediate_key_.get()), std::move(chain));
  ASSERT_FALSE(signer.ok());
  EXPECT_THAT(std::string(signer.status().message()),
              HasSubstr("chain_above[0] is null"));
}

TEST_F(CaSignerTest, CaCertificatesRefuseBadArguments) {
  EXPECT_FALSE(
      CreateRootCertificate(root_key_.get(), "Bad Domain", absl::Hours(1), kNow)
          .ok());
  EXPECT_THAT(std::string(CreateRootCertificate(root_key_.get(), kTrustDomain,
                                                absl::ZeroDuration(), kNow)
                              .status()
                              .message()),
              HasSubstr("TTL must be positive"));
  EvpPkeyPtr p384 = GenerateEc(NID_secp384r1);
  EXPECT_THAT(std::string(CreateRootCertificate(p384.get(), kTrustDomain,
                                                absl::Hours(1), kNow)
                              .status()
                              .message()),
              HasSubstr("ECDSA P-384"));
  // Issuer key does not match the issuer certificate.
  EXPECT_FALSE(CreateIntermediateCertificate(P256().get(), root_.get(),
                                             intermediate_key_.get(),
                                             kTrustDomain, absl::Hours(1), kNow)
                   .ok());
  // Issuer from another trust domain.
  EXPECT_THAT(std::string(CreateIntermediateCertificate(
                              P256().get(), root_.get(), root_key_.get(),
                              "other.org", absl::Hours(1), kNow)
                              .status()
                              .message()),
              HasSubstr("trust domain \"example.org\""));
  // Issuer expired.
  EXPECT_EQ(CreateIntermediateCertificate(
                P256().get(), root_.get(), root_key_.get(), kTrustDomain,
                absl::Hours(1), kNow + absl::Hours(24 * 366))
                .status()
                .code(),
            absl::StatusCode::kFailedPrecondition);
}

// --- Root and intermediate profile
// --------------------------------------------

TEST_F(CaSignerTest, RootProfile) {
  EXPECT_EQ(X509_get_version(root_.get()), 2);
  EXPECT_EQ(X509_verify(root_.get(), root_key_.get()), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(root_.get()),
                          X509_get_issuer_name(root_.get())),
            0);
  EXPECT_EQ(DescribeCertificate(root_.get()).subject,
            "CN=meshguard root example.org,O=meshguard");
  int critical = -1;
  auto bc = Ext<BASIC_CONSTRAINTS>(root_.get(), NID_basic_constraints,
                                   &critical, BASIC_CONSTRAINTS_free);
  ASSERT_NE(bc, nullptr);
  EXPECT_EQ(critical, 1);
  EXPECT_NE(bc->ca, 0);
  EXPECT_EQ(bc->pathlen, nullptr);
  auto ku = Ext<ASN1_BIT_STRING>(root_.get(), NID_key_usage, &critical,
                                 ASN1_BIT_STRING_free);
  ASSERT_NE(ku, nullptr);
  EXPECT_EQ(critical, 1);
  EXPECT_FALSE(ASN1_BIT_STRING_get_bit(ku.get(), 0));
  EXPECT_TRUE(ASN1_BIT_STRING_get_bit(ku.get(), 5));
  EXPECT_TRUE(ASN1_BIT_STRING_get_bit(ku.get(), 6));
  EXPECT_THAT(UriSans(root_.get()), ElementsAre("spiffe://example.org"));
  EXPECT_EQ(SkiOf(root_.get()).size(), 20u);
  EXPECT_EQ(SkiOf(root_.get()), AkiOf(root_.get()));
  EXPECT_EQ(X509_get_signature_nid(root_.get()), NID_ecdsa_with_SHA256);
  EXPECT_EQ(NotBefore(root_.get()), kNow - kClockSkewAllowance);
  EXPECT_EQ(NotAfter(root_.get()), kNow + absl::Hours(24 * 365));
}

TEST_F(CaSignerTest, IntermediateProfile) {
  EXPECT_EQ(X509_verify(intermediate_.get(), root_key_.get()), 1);
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(intermediate_.get()),
                          X509_get_subject_name(root_.get())),
            0);
  int critical = -1;
  auto bc = Ext<BASIC_CONSTRAINTS>(intermediate_.get(), NID_basic_constraints,
                                   &critical, BASIC_CONSTRAINTS_free);
  ASSERT_NE(bc, nullptr);
  EXPECT_EQ(critical, 1);
  EXPECT_NE(bc->ca, 0);
  ASSERT_NE(bc->pathlen, nullptr);
  EXPECT_EQ(ASN1_INTEGER_get(bc->pathlen), 0);
  EXPECT_EQ(AkiOf(intermediate_.get()), SkiOf(root_.get()));
  EXPECT_NE(SkiOf(intermediate_.get()), SkiOf(root_.get()));
  EXPECT_EQ(VerifyChain(intermediate_.get(), root_.get(), {}, kNow), X509_V_OK);
}

TEST_F(CaSignerTest, IntermediateNeverOutlivesItsIssuer) {
  X509Ptr intermediate =
      CreateIntermediateCertificate(P256().get(), root_.get(), root_key_.get(),
                                    kTrustDomain, absl::Hours(24 * 1000),
                                    kNow + absl::Hours(1))
          .value();
  EXPECT_EQ(NotAfter(intermediate.get()), NotAfter(root_.get()));
  // Made before the root's notBefore: starts when the root does.
  X509Ptr early = CreateIntermediateCertificate(
                      P256().get(), root_.get(), root_key_.get(), kTrustDomain,
                      absl::Hours(1), kNow - absl::Minutes(3))
                      .value();
  EXPECT_EQ(NotBefore(early.get()), NotBefore(root_.get()));
}

// --- Leaf profile
// ---------------------------------------------------------------

TEST_F(CaSignerTest, LeafHasTheSvidProfile) {
  absl::StatusOr<X509Ptr> issued = signer_->IssueLeaf(Request());
  ASSERT_TRUE(issued.ok()) << issued.status();
  X509* leaf = issued->get();

  EXPECT_EQ(X509_get_version(leaf), 2);
  EXPECT_EQ(X509_get_signature_nid(leaf), NID_ecdsa_with_SHA256);
  EXPECT_EQ(X509_verify(leaf, intermediate_key_.get()), 1);
  EvpPkeyPtr leaf_public(X509_get_pubkey(leaf));
  EXPECT_TRUE(PublicKeysEqual(leaf_public.get(), leaf_key_.get()));
  EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(leaf),
                          X509_get_subject_name(intermediate_.get())),
            0);
  EXPECT_EQ(X509_NAME_entry_count(X509_get_subject_name(leaf)), 0);

  int critical = -1;
  auto bc = Ext<BASIC_CONSTRAINTS>(leaf, NID_basic_constraints, &critical,
                                   BASIC_CONSTRAINTS_free);
  ASSERT_NE(bc, nullptr);
  EXPECT_EQ(critical, 1);
  EXPECT_EQ(bc->ca, 0);
  EXPECT_EQ(bc->pathlen, nullptr);

  auto ku = Ext<ASN1_BIT_STRING>(leaf, NID_key_usage, &critical,
                                 ASN1_BIT_STRING_free);
  ASSERT_NE(ku, nullptr);
  EXPECT_EQ(critical, 1);
  EXPECT_TRUE(ASN1_BIT_STRING_get_bit(ku.get(), 0));   // digitalSignature
  EXPECT_FALSE(ASN1_BIT_STRING_get_bit(ku.get(), 2));  // keyEncipherment
  EXPECT_FALSE(ASN1_BIT_STRING_get_bit(ku.get(), 5));  // keyCertSign
  EXPECT_FALSE(ASN1_BIT_STRING_get_bit(ku.get(), 6));  // cRLSign

  auto eku = Ext<EXTENDED_KEY_USAGE>(leaf, NID_ext_key_usage, &critical,
                                     EXTENDED_KEY_USAGE_free);
  ASSERT_NE(eku, nullptr);
  EXPECT_EQ(critical, 0);
  std::vector<int> purposes;
  for (int i = 0; i < static_cast<int>(sk_ASN1_OBJECT_num(eku.get())); ++i) {
    purposes.push_back(OBJ_obj2nid(sk_ASN1_OBJECT_value(eku.get(), i)));
  }
  EXPECT_THAT(purposes, UnorderedElementsAre(NID_server_auth, NID_client_auth));

  auto san = Ext<GENERAL_NAMES>(leaf, NID_subject_alt_name, &critical,
                                GENERAL_NAMES_free);
  ASSERT_NE(san, nullptr);
  EXPECT_EQ(critical, 1);  // the subject is empty (RFC 5280 4.2.1.6)
  EXPECT_EQ(static_cast<int>(sk_GENERAL_NAME_num(san.get())), 1);
  EXPECT_THAT(UriSans(leaf), ElementsAre(std::string(kId)));

  EXPECT_EQ(SkiOf(leaf).size(), 20u);
  EXPECT_EQ(AkiOf(leaf), SkiOf(intermediate_.get()));

  EXPECT_EQ(NotBefore(leaf), kNow - kClockSkewAllowance);
  EXPECT_EQ(NotAfter(leaf), kNow + absl::Hours(1));
  EXPECT_EQ(VerifyChain(leaf, root_.get(), {intermediate_.get()}, kNow),
            X509_V_OK);
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(CaSignerTest, RsaLeafAlsoGetsKeyEncipherment) {
  EvpPkeyPtr rsa = GenerateRsa(2048);
  LeafRequest request = Request();
  request.public_key = rsa.get();
  absl::StatusOr<X509Ptr> leaf = signer_->IssueLeaf(request);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  int critical = -1;
  auto ku = Ext<ASN1_BIT_STRING>(leaf->get(), NID_key_usage, &critical,
                                 ASN1_BIT_STRING_free);
  ASSERT_NE(ku, nullptr);
  EXPECT_TRUE(ASN1_BIT_STRING_get_bit(ku.get(), 0));
  EXPECT_TRUE(ASN1_BIT_STRING_get_bit(ku.get(), 2));
  EXPECT_FALSE(ASN1_BIT_STRING_get_bit(ku.get(), 5));
}

// A CSR may carry its point compressed (0x02/0x03 and X); the leaf always
// carries it uncompressed (0x04, X, Y), the one form RFC 5480 requires every
// verifier to read (Go's crypto/x509, for one, reads no other).
TEST_F(CaSignerTest, LeafCarriesTheEcPointUncompressed) {
  EcKeyPtr ec(EVP_PKEY_get1_EC_KEY(leaf_key_.get()));
  ASSERT_NE(ec, nullptr);
  unsigned char* compressed = nullptr;
  const size_t compressed_len = EC_KEY_key2buf(
      ec.get(), POINT_CONVERSION_COMPRESSED, &compressed, nullptr);
  ASSERT_EQ(compressed_len, 33u);
  OpensslBytes compressed_owner(compressed);
  // The key as the CA gets it from such a CSR: decoded from 33 octets.
  EcKeyPtr from_csr(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  EC_KEY* raw = from_csr.get();
  const unsigned char* in = compressed;
  ASSERT_NE(o2i_ECPublicKey(&raw, &in, static_cast<long>(compressed_len)),
            nullptr);
  EvpPkeyPtr key(EVP_PKEY_new());
  ASSERT_EQ(EVP_PKEY_assign_EC_KEY(key.get(), from_csr.get()), 1);
  from_csr.release();  // Now owned by `key`.

  LeafRequest request = Request();
  request.public_key = key.get();
  absl::StatusOr<X509Ptr> leaf = signer_->IssueLeaf(request);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  const unsigned char* point = nullptr;
  int point_len = 0;
  ASSERT_TRUE(X509_PUBKEY_get0_param(nullptr, &point, &point_len, nullptr,
                                     X509_get_X509_PUBKEY(leaf->get())));
  ASSERT_EQ(point_len, 65);
  EXPECT_EQ(point[0], 0x04);
  EvpPkeyPtr leaf_key(X509_get_pubkey(leaf->get()));
  EXPECT_TRUE(PublicKeysEqual(leaf_key.get(), leaf_key_.get()));
}

TEST_F(CaSignerTest, ServingCertificateGetsDnsAndIpSans) {
  LeafRequest request = Request();
  request.dns_names = {"meshguard-ca.meshguard.svc", "localhost"};
  request.ip_addresses = {"10.0.0.1", "::1"};
  absl::StatusOr<X509Ptr> leaf = signer_->IssueLeaf(request);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_THAT(UriSans(leaf->get()), ElementsAre(std::string(kId)));
  EXPECT_THAT(DnsSans(leaf->get()),
              ElementsAre("meshguard-ca.meshguard.svc", "localhost"));
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf->get(), NID_subject_alt_name, nullptr, nullptr)));
  EXPECT_THAT(GeneralNameStrings(names.get(), GEN_IPADD),
              ElementsAre(std::string("\x0a\x00\x00\x01", 4),
                          std::string(15, '\0') + "\x01"));
}

// --- Validity clamping
// -----------------------------------------------------------

TEST_F(CaSignerTest, TtlPastIssuerExpiryIsClamped) {
  absl::StatusOr<X509Ptr> leaf =
      signer_->IssueLeaf(Request(absl::Hours(24 * 365)));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(NotAfter(leaf->get()), NotAfter(intermediate_.get()));
  EXPECT_EQ(NotAfter(leaf->get()), kNow + absl::Hours(24 * 30));
}

TEST_F(CaSignerTest, TtlIsClampedToChainAbove) {
  // An intermediate above the signer that expires before the signer does.
  EvpPkeyPtr upper_key = P256();
  X509Ptr upper = CreateIntermediateCertificate(upper_key.get(), root_.get(),
                                                root_key_.get(), kTrustDomain,
                                                absl::Hours(2), kNow)
                      .value();
  std::vector<X509Ptr> chain_above;
  chain_above.push_back(Dup(upper.get()));
  std::unique_ptr<CaSigner> signer =
      CaSigner::Create(Dup(intermediate_.get()),
                       DupKey(intermediate_key_.get()), std::move(chain_above))
          .value();
  ASSERT_EQ(signer->ChainAbove().size(), 1u);
  EXPECT_EQ(X509_cmp(signer->ChainAbove()[0], upper.get()), 0);
  absl::StatusOr<X509Ptr> leaf = signer->IssueLeaf(Request(absl::Hours(5)));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(NotAfter(leaf->get()), kNow + absl::Hours(2));
}

TEST_F(CaSignerTest, NotBeforeNeverPrecedesIssuer) {
  absl::StatusOr<X509Ptr> leaf =
      signer_->IssueLeaf(Request(absl::Hours(1), kNow - absl::Minutes(2)));
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(NotBefore(leaf->get()), NotBefore(intermediate_.get()));
  EXPECT_EQ(NotBefore(leaf->get()), kNow - kClockSkewAllowance);
}

// --- Serials
// ----------------------------------------------------------------------

TEST_F(CaSignerTest, SerialsArePositive128BitAndDistinct) {
  std::set<std::string> serials;
  int over_64_bits = 0;
  for (int i = 0; i < 32; ++i) {
    X509Ptr leaf = signer_->IssueLeaf(Request()).value();
    const ASN1_INTEGER* serial = X509_get0_serialNumber(leaf.get());
    BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
    ASSERT_NE(bn, nullptr);
    EXPECT_FALSE(BN_is_negative(bn.get()));
    EXPECT_FALSE(BN_is_zero(bn.get()));
    EXPECT_LE(BN_num_bits(bn.get()), 127);  // 16 octets, top bit clear
    if (BN_num_bits(bn.get()) > 64) ++over_64_bits;
    serials.insert(SerialHex(leaf.get()));
  }
  EXPECT_EQ(serials.size(), 32u);
  EXPECT_GT(over_64_bits, 0);
  EXPECT_NE(SerialHex(root_.get()), SerialHex(intermediate_.get()));
}

TEST_F(CaSignerTest, ConcurrentIssuance) {
  constexpr int kThreads = 4;
  constexpr int kPerThread = 8;
  std::vector<std::vector<std::string>> serials(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        absl::StatusOr<X509Ptr> leaf = signer_->IssueLeaf(Request());
        if (!leaf.ok()) continue;
        if (X509_verify(leaf->get(), intermediate_key_.get()) == 1) {
          serials[t].push_back(SerialHex(leaf->get()));
        }
      }
      absl::StatusOr<X509CrlPtr> crl =
          signer_->CreateCrl({}, t, kNow, absl::Hours(1));
      if (!crl.ok()) serials[t].clear();
    });
  }
  for (std::thread& thread : threads) thread.join();
  std::set<std::string> all;
  for (const auto& s : serials) all.insert(s.begin(), s.end());
  EXPECT_EQ(all.size(), static_cast<size_t>(kThreads * kPerThread));
}

// --- CRLs
// ---------------------------------------------------------------------------

TEST_F(CaSignerTest, CrlListsSerialsAndVerifies) {
  X509Ptr revoked1 = signer_->IssueLeaf(Request()).value();
  X509Ptr revoked2 = signer_->IssueLeaf(Request()).value();
  X509Ptr kept = signer_->IssueLeaf(Request()).value();
  absl::StatusOr<X509CrlPtr> crl =
      signer_->CreateCrl({{SerialHex(revoked1.get()), kNow - absl::Minutes(10)},
                          {SerialHex(revoked2.get()), kNow - absl::Minutes(1)}},
                         7, kNow, absl::Hours(6));
  ASSERT_TRUE(crl.ok()) << crl.status();

  EXPECT_EQ(X509_CRL_get_version(crl->get()), 1);  // v2
  EvpPkeyPtr issuer_public(X509_get_pubkey(intermediate_.get()));
  EXPECT_EQ(X509_CRL_verify(crl->get(), issuer_public.get()), 1);
  EvpPkeyPtr root_public(X509_get_pubkey(root_.get()));
  EXPECT_NE(X509_CRL_verify(crl->get(), root_public.get()), 1);
  ERR_clear_error();
  EXPECT_EQ(X509_NAME_cmp(X509_CRL_get_issuer(crl->get()),
                          X509_get_subject_name(intermediate_.get())),
            0);
  EXPECT_EQ(Asn1TimeToAbsl(X509_CRL_get0_lastUpdate(crl->get())), kNow);
  EXPECT_EQ(Asn1TimeToAbsl(X509_CRL_get0_nextUpdate(crl->get())),
            kNow + absl::Hours(6));

  X509_REVOKED* entry = nullptr;
  ASSERT_EQ(
      X509_CRL_get0_by_serial(
          crl->get(), &entry,
          const_cast<ASN1_INTEGER*>(X509_get0_serialNumber(revoked1.get()))),
      1);
  EXPECT_EQ(Asn1TimeToAbsl(X509_REVOKED_get0_revocationDate(entry)),
            kNow - absl::Minutes(10));
  EXPECT_EQ(
      X509_CRL_get0_by_serial(
          crl->get(), &entry,
          const_cast<ASN1_INTEGER*>(X509_get0_serialNumber(revoked2.get()))),
      1);
  EXPECT_EQ(X509_CRL_get0_by_serial(
                crl->get(), &entry,
                const_cast<ASN1_INTEGER*>(X509_get0_serialNumber(kept.get()))),
            0);
  EXPECT_EQ(RevokedCount(crl->get()), 2);

  int critical = -1;
  Asn1IntegerPtr number(static_cast<ASN1_INTEGER*>(
      X509_CRL_get_ext_d2i(crl->get(), NID_crl_number, &critical, nullptr)));
  ASSERT_NE(number, nullptr);
  EXPECT_EQ(ASN1_INTEGER_get(number.get()), 7);
  EXPECT_EQ(critical, 0);
  AuthorityKeyIdPtr aki(static_cast<AUTHORITY_KEYID*>(X509_CRL_get_ext_d2i(
      crl->get(), NID_authority_key_identifier, nullptr, nullptr)));
  ASSERT_NE(aki, nullptr);
  ASSERT_NE(aki->keyid, nullptr);
  EXPECT_EQ(OctetString(aki->keyid), SkiOf(intermediate_.get()));

  // A revoked leaf fails chain verification once the CRL is checked.
  X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), root_.get());
  X509_STORE_add_crl(store.get(), crl->get());
  X509_STORE_set_flags(store.get(), X509_V_FLAG_CRL_CHECK);
  X509StackPtr untrusted(sk_X509_new_null());
  X509_up_ref(intermediate_.get());
  sk_X509_push(untrusted.get(), intermediate_.get());
  for (X509* leaf : {revoked1.get(), kept.get()}) {
    X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get());
    X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(kNow));
    int ok = X509_verify_cert(ctx.get());
    int error = X509_STORE_CTX_get_error(ctx.get());
    ERR_clear_error();
    if (leaf == kept.get()) {
      EXPECT_EQ(ok, 1) << X509_verify_cert_error_string(error);
    } else {
      EXPECT_EQ(error, X509_V_ERR_CERT_REVOKED);
    }
  }
}

TEST_F(CaSignerTest, EmptyCrlIsValid) {
  absl::StatusOr<X509CrlPtr> crl =
      signer_->CreateCrl({}, 0, kNow, absl::Hours(1));
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_EQ(RevokedCount(crl->get()), 0);
  EvpPkeyPtr issuer_public(X509_get_pubkey(intermediate_.get()));
  EXPECT_EQ(X509_CRL_verify(crl->get(), issuer_public.get()), 1);
}

struct BadCrlCase {
  std::string name;
  std::vector<RevokedCertificate> revoked;
  int64_t number;
  absl::Duration validity;
  std::string reason;
};

class BadCrlTest : public CaSignerTest,
                   public ::testing::WithParamInterface<BadCrlCase> {};

TEST_P(BadCrlTest, Refused) {
  const BadCrlCase& c = GetParam();
  absl::StatusOr<X509CrlPtr> crl =
      signer_->CreateCrl(c.revoked, c.number, kNow, c.validity);
  ASSERT_FALSE(crl.ok());
  EXPECT_EQ(crl.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(crl.status().message()), HasSubstr(c.reason));
}

INSTANTIATE_TEST_SUITE_P(
    Crls, BadCrlTest,
    ::testing::Values(
        BadCrlCase{"zero_validity",
                   {},
                   1,
                   absl::ZeroDuration(),
                   "validity must be positive"},
        BadCrlCase{
            "negative_number", {}, -1, absl::Hours(1), "must not be negative"},
        BadCrlCase{
            "empty_serial", {{"", kNow}}, 1, absl::Hours(1), "invalid serial"},
        BadCrlCase{
            "not_hex", {{"12xy", kNow}}, 1, absl::Hours(1), "invalid serial"},
        BadCrlCase{"too_long",
                   {{std::string(41, 'a'), kNow}},
                   1,
                   absl::Hours(1),
                   "invalid serial"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace meshguard::crypto
