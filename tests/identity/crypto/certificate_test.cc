#include "identity/crypto/certificate.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/sha.h>

#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "identity/crypto/ca_signer.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

const absl::Time kNow = absl::FromUnixSeconds(1700000000);

// A root, an intermediate and a leaf, generated for each test.
class CertificateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_key_ = GenerateEcP256Key().value();
    root_ = CreateRootCertificate(root_key_.get(), "example.org",
                                  absl::Hours(24 * 365), kNow)
                .value();
    intermediate_key_ = GenerateEcP256Key().value();
    intermediate_ = CreateIntermediateCertificate(
                        intermediate_key_.get(), root_.get(), root_key_.get(),
                        "example.org", absl::Hours(24 * 30), kNow)
                        .value();
    leaf_key_ = GenerateEcP256Key().value();
    std::unique_ptr<CaSigner> signer =
        CaSigner::Create(
            X509Ptr(X509_dup(intermediate_.get())),
            EvpPkeyPtr(PrivateKeyFromDer(
                           PrivateKeyToDer(intermediate_key_.get()).value())
                           .value()),
            {})
            .value();
    LeafRequest request{
        leaf_key_.get(),
        SpiffeId::Parse("spiffe://example.org/ns/shop/sa/frontend").value(),
        absl::Hours(1),
        kNow,
        {"frontend.shop.svc"},
        {}};
    leaf_ = signer->IssueLeaf(request).value();
  }

  std::string Pem(X509* cert) { return CertificateToPem(cert).value(); }

  EvpPkeyPtr root_key_, intermediate_key_, leaf_key_;
  X509Ptr root_, intermediate_, leaf_;
};

// --- Bad input first -------------------------------------------------------

struct BadPemCase {
  std::string name;
  std::string pem;
  std::string reason;
};

std::vector<BadPemCase> BadCases(const std::string& good,
                                 const std::string& der) {
  return {
      {"empty", "", "certificate PEM is empty"},
      {"garbage", "\x01\x02garbage\n", "no PEM block"},
      {"truncated", good.substr(0, good.size() - 30), "truncated or malformed"},
      {"oversized", std::string(kMaxPemBytes + 1, '-'), "too large"},
      {"key_only", WritePemBlock("PRIVATE KEY", "x").value(),
       "no \"CERTIFICATE\" block"},
      {"bad_der", WritePemBlock("CERTIFICATE", "\x30\x01").value(),
       "cannot parse certificate DER"},
      {"trailing_der", WritePemBlock("CERTIFICATE", der + "x").value(),
       "trailing bytes"},
  };
}

TEST_F(CertificateTest, ChainParserRefusesBadInput) {
  for (const BadPemCase& c :
       BadCases(Pem(leaf_.get()), CertificateToDer(leaf_.get()).value())) {
    SCOPED_TRACE(c.name);
    absl::StatusOr<std::vector<X509Ptr>> chain =
        ParseCertificateChainPem(c.pem);
    ASSERT_FALSE(chain.ok());
    EXPECT_EQ(chain.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(chain.status().message()), HasSubstr(c.reason));
    EXPECT_EQ(ERR_peek_error(), 0u);
  }
}

TEST_F(CertificateTest, SingleParserRefusesBadInputAndChains) {
  for (const BadPemCase& c :
       BadCases(Pem(leaf_.get()), CertificateToDer(leaf_.get()).value())) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(ParseCertificatePem(c.pem).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
  absl::StatusOr<X509Ptr> two =
      ParseCertificatePem(Pem(leaf_.get()) + Pem(intermediate_.get()));
  ASSERT_FALSE(two.ok());
  EXPECT_THAT(std::string(two.status().message()),
              HasSubstr("2 PEM blocks; expected exactly one"));
  EXPECT_FALSE(ParseCertificateDer("").ok());
}

TEST_F(CertificateTest, CrlParserRefusesBadInput) {
  EXPECT_THAT(std::string(ParseCrlPem("").status().message()),
              HasSubstr("empty"));
  EXPECT_THAT(std::string(ParseCrlPem("junk").status().message()),
              HasSubstr("no PEM block"));
  EXPECT_THAT(std::string(ParseCrlPem(Pem(root_.get())).status().message()),
              HasSubstr("not \"X509 CRL\""));
  EXPECT_THAT(std::string(ParseCrlPem(WritePemBlock("X509 CRL", "zz").value())
                              .status()
                              .message()),
              HasSubstr("cannot parse CRL DER"));
}

TEST(NullCertificateTest, AccessorsTolerateNull) {
  EXPECT_EQ(CertificateToPem(nullptr).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(SerialHex(nullptr), "");
  EXPECT_THAT(UriSans(nullptr), IsEmpty());
  EXPECT_EQ(NotAfter(nullptr), absl::InfinitePast());
  EXPECT_FALSE(IsCa(nullptr));
  EXPECT_EQ(Asn1TimeToAbsl(nullptr), absl::InfinitePast());
}

// --- Parsing and encoding ---------------------------------------------------

TEST_F(CertificateTest, ChainKeepsOrderAndSkipsOtherBlocks) {
  std::string pem =
      absl::StrCat(Pem(leaf_.get()), PrivateKeyToPem(leaf_key_.get()).value(),
                   Pem(intermediate_.get()), Pem(root_.get()));
  absl::StatusOr<std::vector<X509Ptr>> chain = ParseCertificateChainPem(pem);
  ASSERT_TRUE(chain.ok()) << chain.status();
  ASSERT_EQ(chain->size(), 3u);
  EXPECT_EQ(X509_cmp((*chain)[0].get(), leaf_.get()), 0);
  EXPECT_EQ(X509_cmp((*chain)[1].get(), intermediate_.get()), 0);
  EXPECT_EQ(X509_cmp((*chain)[2].get(), root_.get()), 0);
}

TEST_F(CertificateTest, PemAndDerRoundTrip) {
  absl::StatusOr<X509Ptr> from_pem = ParseCertificatePem(Pem(leaf_.get()));
  ASSERT_TRUE(from_pem.ok()) << from_pem.status();
  EXPECT_EQ(X509_cmp(from_pem->get(), leaf_.get()), 0);
  std::string der = CertificateToDer(leaf_.get()).value();
  absl::StatusOr<X509Ptr> from_der = ParseCertificateDer(der);
  ASSERT_TRUE(from_der.ok()) << from_der.status();
  EXPECT_EQ(CertificateToDer(from_der->get()).value(), der);
}

TEST_F(CertificateTest, FingerprintIsSha256OfDer) {
  std::string der = CertificateToDer(leaf_.get()).value();
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(der.data()), der.size(), md);
  std::string expected = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(md), sizeof(md)));
  EXPECT_EQ(Sha256FingerprintHex(leaf_.get()), expected);
  EXPECT_EQ(expected.size(), 64u);
  EXPECT_EQ(expected, absl::AsciiStrToLower(expected));
}

TEST_F(CertificateTest, SansAndValidity) {
  EXPECT_THAT(UriSans(leaf_.get()),
              ElementsAre("spiffe://example.org/ns/shop/sa/frontend"));
  EXPECT_THAT(DnsSans(leaf_.get()), ElementsAre("frontend.shop.svc"));
  EXPECT_THAT(UriSans(root_.get()), ElementsAre("spiffe://example.org"));
  EXPECT_THAT(DnsSans(root_.get()), IsEmpty());
  EXPECT_EQ(NotBefore(leaf_.get()), kNow - kClockSkewAllowance);
  EXPECT_EQ(NotAfter(leaf_.get()), kNow + absl::Hours(1));
}

TEST_F(CertificateTest, DescribeCertificate) {
  CertificateInfo root = DescribeCertificate(root_.get());
  EXPECT_EQ(root.subject, "CN=meshguard root example.org,O=meshguard");
  EXPECT_EQ(root.issuer, root.subject);
  EXPECT_EQ(root.serial, SerialHex(root_.get()));
  EXPECT_TRUE(root.is_ca);
  EXPECT_EQ(root.key_description, "ECDSA P-256");
  EXPECT_THAT(root.uri_sans, ElementsAre("spiffe://example.org"));
  EXPECT_EQ(root.not_after, kNow + absl::Hours(24 * 365));

  CertificateInfo leaf = DescribeCertificate(leaf_.get());
  EXPECT_EQ(leaf.subject, "");
  EXPECT_EQ(leaf.issuer, "CN=meshguard intermediate example.org,O=meshguard");
  EXPECT_FALSE(leaf.is_ca);
  EXPECT_THAT(leaf.dns_sans, ElementsAre("frontend.shop.svc"));
  EXPECT_EQ(leaf.not_before, kNow - kClockSkewAllowance);
}

// --- Serials
// ------------------------------------------------------------------

struct SerialCase {
  std::string name;
  std::string hex_in;  // for BN_hex2bn
  bool negative;
  std::string expected;
};

class SerialHexTest : public ::testing::TestWithParam<SerialCase> {};

TEST_P(SerialHexTest, LowercaseWithoutLeadingZeros) {
  const SerialCase& c = GetParam();
  X509Ptr cert(X509_new());
  BIGNUM* raw = nullptr;
  ASSERT_GT(BN_hex2bn(&raw, c.hex_in.c_str()), 0);
  BignumPtr bn(raw);
  BN_set_negative(bn.get(), c.negative ? 1 : 0);
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  ASSERT_NE(serial, nullptr);
  ASSERT_TRUE(X509_set_serialNumber(cert.get(), serial.get()));
  EXPECT_EQ(SerialHex(cert.get()), c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Serials, SerialHexTest,
    ::testing::Values(SerialCase{"zero", "0", false, "0"},
                      SerialCase{"one_nibble", "A", false, "a"},
                      SerialCase{"leading_zero_byte", "00FF10", false, "ff10"},
                      SerialCase{"odd_nibbles", "ABC", false, "abc"},
                      SerialCase{"128_bit", "7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF",
                                 false, "7fffffffffffffffffffffffffffffff"},
                      SerialCase{"negative", "0A", true, "-a"}),
    [](const auto& info) { return info.param.name; });

// --- Times
// --------------------------------------------------------------------

struct TimeCase {
  std::string name;
  std::string asn1;  // UTCTime (13 chars) or GeneralizedTime (15 chars)
  int64_t unix_seconds;
};

class Asn1TimeTest : public ::testing::TestWithParam<TimeCase> {};

TEST_P(Asn1TimeTest, Converts) {
  const TimeCase& c = GetParam();
  Asn1TimePtr t(ASN1_TIME_new());
  ASSERT_TRUE(ASN1_TIME_set_string(t.get(), c.asn1.c_str()));
  EXPECT_EQ(Asn1TimeToAbsl(t.get()), absl::FromUnixSeconds(c.unix_seconds));
  Asn1TimePtr back = AbslToAsn1Time(absl::FromUnixSeconds(c.unix_seconds));
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(Asn1TimeToAbsl(back.get()), absl::FromUnixSeconds(c.unix_seconds));
}

INSTANTIATE_TEST_SUITE_P(
    Times, Asn1TimeTest,
    ::testing::Values(TimeCase{"epoch", "700101000000Z", 0},
                      TimeCase{"utc", "231114221320Z", 1700000000},
                      TimeCase{"utc_last_year", "491231235959Z", 2524607999},
                      TimeCase{"generalized", "20500101000000Z", 2524608000},
                      TimeCase{"far_future", "99991231235959Z", 253402300799}),
    [](const auto& info) { return info.param.name; });

TEST(Asn1TimeTest, SubSecondsAreTruncated) {
  Asn1TimePtr t = AbslToAsn1Time(absl::FromUnixMillis(1700000000999));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(Asn1TimeToAbsl(t.get()), absl::FromUnixSeconds(1700000000));
  EXPECT_EQ(AbslToAsn1Time(absl::InfiniteFuture()), nullptr);
}

// --- CRLs
// ---------------------------------------------------------------------

TEST_F(CertificateTest, CrlPemRoundTrip) {
  std::unique_ptr<CaSigner> signer =
      CaSigner::Create(
          X509Ptr(X509_dup(root_.get())),
          PrivateKeyFromPem(PrivateKeyToPem(root_key_.get()).value()).value(),
          {})
          .value();
  X509CrlPtr crl = signer
                       ->CreateCrl({{SerialHex(intermediate_.get()), kNow}}, 1,
                                   kNow, absl::Hours(1))
                       .value();
  absl::StatusOr<std::string> pem = CrlToPem(crl.get());
  ASSERT_TRUE(pem.ok()) << pem.status();
  EXPECT_THAT(*pem, HasSubstr("-----BEGIN X509 CRL-----"));
  absl::StatusOr<X509CrlPtr> parsed = ParseCrlPem(*pem);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(CrlToPem(parsed->get()).value(), *pem);
  EXPECT_FALSE(ParseCrlPem(*pem + *pem).ok());
}

TEST(NormalizeSerialHexTest, AcceptsTheWaysToolsPrintASerial) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"3f2a9c", "3f2a9c"},
      {"3F2A9C", "3f2a9c"},
      {"003f2a9c", "3f2a9c"},
      {"3F:2A:9C", "3f2a9c"},
      {"0x3f2a9c", "3f2a9c"},
      {"0X00:3F:2A:9C", "3f2a9c"},
      {"  3f2a9c\n", "3f2a9c"},
      {"0", "0"},
      {"0000", "0"},
      {std::string(40, 'f'), std::string(40, 'f')},
      {"00" + std::string(40, 'f'), std::string(40, 'f')},
  };
  for (const auto& [typed, want] : cases) {
    absl::StatusOr<std::string> got = NormalizeSerialHex(typed);
    ASSERT_TRUE(got.ok()) << typed << ": " << got.status();
    EXPECT_EQ(*got, want) << typed;
  }
}

TEST(NormalizeSerialHexTest, RefusesWhatIsNotASerialNamingIt) {
  for (const std::string& bad :
       {std::string(""), std::string("0x"), std::string(":"),
        std::string("zz12"), std::string("3f 2a"), std::string("-3f"),
        std::string("3f2a9g"), std::string(41, 'f')}) {
    absl::StatusOr<std::string> got = NormalizeSerialHex(bad);
    EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(got.status().message(), HasSubstr(absl::StrCat("\"", bad)))
        << bad;
  }
}

TEST_F(CertificateTest, NormalizedSerialMatchesSerialHex) {
  const std::string printed = SerialHex(leaf_.get());
  absl::StatusOr<std::string> normalized =
      NormalizeSerialHex(absl::AsciiStrToUpper("00" + printed));
  ASSERT_TRUE(normalized.ok()) << normalized.status();
  EXPECT_EQ(*normalized, printed);
}

}  // namespace
}  // namespace meshguard::crypto
