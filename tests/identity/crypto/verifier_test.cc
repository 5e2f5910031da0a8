#include "identity/crypto/verifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "tests/identity/crypto/testing/cert_factory.h"

namespace meshguard::crypto {
namespace {

using ::meshguard::crypto::testing::BasicConstraints;
using ::meshguard::crypto::testing::CertSpec;
using ::meshguard::crypto::testing::CrlSpec;
using ::meshguard::crypto::testing::FixtureNow;
using ::meshguard::crypto::testing::IntermediateSpec;
using ::meshguard::crypto::testing::KeyType;
using ::meshguard::crypto::testing::LeafSpec;
using ::meshguard::crypto::testing::MakeCert;
using ::meshguard::crypto::testing::MakeCrlPem;
using ::meshguard::crypto::testing::RootSpec;
using ::meshguard::crypto::testing::TestCert;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kTrustDomain[] = "cluster.local";
constexpr char kId[] = "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr uint64_t kLeafSerial = 1001;

TestCert Make(const CertSpec& spec) {
  absl::StatusOr<TestCert> cert = MakeCert(spec);
  EXPECT_TRUE(cert.ok()) << cert.status();
  if (!cert.ok()) abort();
  return *std::move(cert);
}

// The PKI most fixtures hang off: root -> inter -> leaf.
struct Pki {
  TestCert root = Make(RootSpec("root"));
  TestCert inter = Make(IntermediateSpec("inter", root));
  TestCert root2 = Make(RootSpec("root-2"));
  TestCert inter2 = Make(IntermediateSpec("inter-2", root2));
  TestCert other_root = Make(RootSpec("other-root"));
  TestCert other_inter = Make(IntermediateSpec("other-inter", other_root));
};

const Pki& GetPki() {
  static const Pki* pki = new Pki();
  return *pki;
}

CertSpec GoodLeaf() {
  CertSpec spec = LeafSpec(kId, GetPki().inter);
  spec.serial = kLeafSerial;
  return spec;
}

// What a case verifies: a chain (leaf first) against a bundle.
struct Scenario {
  std::vector<TestCert> chain;
  std::vector<TestCert> roots = {GetPki().root};
  std::vector<std::string> crls;
  VerifyOptions options = {FixtureNow(), "", false};
};

Scenario LeafViaInter(const CertSpec& leaf_spec) {
  Scenario s;
  s.chain = {Make(leaf_spec), GetPki().inter};
  return s;
}

Scenario WithInter(const CertSpec& inter_spec) {
  TestCert inter = Make(inter_spec);
  CertSpec leaf = GoodLeaf();
  leaf.issuer = &inter;
  Scenario s;
  s.chain = {Make(leaf), inter};
  return s;
}

std::string CrlPem(const CrlSpec& spec) {
  absl::StatusOr<std::string> pem = MakeCrlPem(spec);
  EXPECT_TRUE(pem.ok()) << pem.status();
  return pem.value_or("");
}

struct Case {
  std::string name;
  std::function<Scenario()> build;
  // OK: the SPIFFE ID expected; otherwise a substring of the error.
  absl::StatusCode code;
  std::string expect;
};

absl::StatusOr<SpiffeId> RunScenario(const Scenario& s) {
  std::vector<std::string> root_pems;
  for (const TestCert& root : s.roots) root_pems.push_back(root.Pem());
  absl::StatusOr<std::shared_ptr<const TrustBundle>> bundle =
      TrustBundle::Create(kTrustDomain, root_pems, s.crls);
  if (!bundle.ok()) return bundle.status();
  std::vector<X509*> intermediates;
  for (size_t i = 1; i < s.chain.size(); ++i) {
    intermediates.push_back(s.chain[i].cert());
  }
  X509* leaf = s.chain.empty() ? nullptr : s.chain[0].cert();
  absl::StatusOr<SpiffeId> direct =
      VerifyX509Svid(leaf, intermediates, **bundle, s.options);
  // The PEM entry point must agree with the X509* one.
  std::string pem;
  for (const TestCert& cert : s.chain) pem += cert.Pem();
  absl::StatusOr<SpiffeId> via_pem =
      VerifyX509SvidPem(pem, **bundle, s.options);
  EXPECT_EQ(direct.status(), via_pem.status());
  return direct;
}

class VerifierTest : public ::testing::TestWithParam<Case> {};

TEST_P(VerifierTest, Verifies) {
  const Case& c = GetParam();
  absl::StatusOr<SpiffeId> id = RunScenario(c.build());
  if (c.code == absl::StatusCode::kOk) {
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(id->ToString(), c.expect);
  } else {
    ASSERT_FALSE(id.ok()) << "accepted " << id->ToString();
    EXPECT_EQ(id.status().code(), c.code) << id.status();
    EXPECT_THAT(std::string(id.status().message()), HasSubstr(c.expect));
  }
}

const auto kUnauth = absl::StatusCode::kUnauthenticated;
const auto kOk = absl::StatusCode::kOk;

std::vector<Case> Cases() {
  return {
      {"good_leaf_via_intermediate", [] { return LeafViaInter(GoodLeaf()); },
       kOk, kId},
      {"good_leaf_two_roots_rotation",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.issuer = &GetPki().inter2;
         Scenario s;
         s.chain = {Make(leaf), GetPki().inter2};
         s.roots = {GetPki().root, GetPki().root2};
         return s;
       },
       kOk, kId},
      {"p384_chain",
       [] {
         CertSpec inter_spec = IntermediateSpec("inter-p384", GetPki().root);
         inter_spec.key_type = KeyType::kP384;
         TestCert inter = Make(inter_spec);
         CertSpec leaf = GoodLeaf();
         leaf.issuer = &inter;
         leaf.key_type = KeyType::kP384;
         Scenario s;
         s.chain = {Make(leaf), inter};
         return s;
       },
       kOk, kId},
      {"rsa_2048_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_type = KeyType::kRsa2048;
         return LeafViaInter(leaf);
       },
       kOk, kId},
      {"ed25519_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_type = KeyType::kEd25519;
         return LeafViaInter(leaf);
       },
       kOk, kId},
      {"leaf_without_eku",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.ext_key_usage.clear();
         return LeafViaInter(leaf);
       },
       kOk, kId},
      {"leaf_directly_under_root",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.issuer = &GetPki().root;
         Scenario s;
         s.chain = {Make(leaf)};
         return s;
       },
       kOk, kId},
      {"trust_domain_option_overrides_bundle",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans = {"spiffe://other.org/ns/a/sa/b"};
         Scenario s = LeafViaInter(leaf);
         s.options.trust_domain = "other.org";
         return s;
       },
       kOk, "spiffe://other.org/ns/a/sa/b"},
      {"name_constraints_satisfied",
       [] {
         CertSpec inter = IntermediateSpec("inter-nc", GetPki().root);
         inter.permitted_uris = {"cluster.local"};
         return WithInter(inter);
       },
       kOk, kId},

      // Path.
      {"wrong_ca",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.issuer = &GetPki().other_inter;
         Scenario s;
         s.chain = {Make(leaf), GetPki().other_inter};
         return s;
       },
       kUnauth, "path: no path to a trusted root"},
      {"missing_intermediate",
       [] {
         Scenario s = LeafViaInter(GoodLeaf());
         s.chain.pop_back();
         return s;
       },
       kUnauth, "path: no path to a trusted root (issuer CN=inter"},
      {"expired_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.not_after = FixtureNow() - absl::Hours(1);
         return LeafViaInter(leaf);
       },
       kUnauth,
       "path: certificate has expired (notAfter 2025-12-31T23:00:00Z) for "
       "subject CN=workload"},
      {"not_yet_valid_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.not_before = FixtureNow() + absl::Hours(1);
         return LeafViaInter(leaf);
       },
       kUnauth,
       "path: certificate is not yet valid (notBefore 2026-01-01T01:00:00Z) "
       "for subject CN=workload"},
      {"expired_intermediate",
       [] {
         CertSpec inter = IntermediateSpec("inter-expired", GetPki().root);
         inter.not_after = FixtureNow() - absl::Hours(1);
         return WithInter(inter);
       },
       kUnauth,
       "path: certificate has expired (notAfter 2025-12-31T23:00:00Z) "
       "for subject CN=inter-expired"},
      {"expired_root",
       [] {
         CertSpec root_spec = RootSpec("root-expired");
         root_spec.not_after = FixtureNow() - absl::Hours(1);
         TestCert root = Make(root_spec);
         TestCert inter = Make(IntermediateSpec("inter", root));
         CertSpec leaf = GoodLeaf();
         leaf.issuer = &inter;
         Scenario s;
         s.chain = {Make(leaf), inter};
         s.roots = {root};
         return s;
       },
       kUnauth, "for subject CN=root-expired"},
      {"intermediate_without_ca",
       [] {
         CertSpec inter = IntermediateSpec("inter-not-ca", GetPki().root);
         inter.basic_constraints = BasicConstraints::kCaFalse;
         return WithInter(inter);
       },
       kUnauth,
       "path: keyUsage keyCertSign without basicConstraints cA=true for "
       "subject CN=inter-not-ca"},
      {"intermediate_without_basic_constraints",
       [] {
         CertSpec inter = IntermediateSpec("inter-no-bc", GetPki().root);
         inter.basic_constraints = BasicConstraints::kAbsent;
         return WithInter(inter);
       },
       kUnauth,
       "path: keyUsage keyCertSign without basicConstraints cA=true for "
       "subject CN=inter-no-bc"},
      {"intermediate_without_keycertsign",
       [] {
         CertSpec inter = IntermediateSpec("inter-no-kcs", GetPki().root);
         inter.key_usage = testing::kCrlSign | testing::kDigitalSignature;
         return WithInter(inter);
       },
       kUnauth, "keyUsage lacks keyCertSign for subject CN=inter-no-kcs"},
      {"path_len_exceeded",
       [] {
         CertSpec upper_spec =
             IntermediateSpec("inter-pathlen-0", GetPki().root);
         upper_spec.path_len = 0;
         TestCert upper = Make(upper_spec);
         TestCert lower = Make(IntermediateSpec("inter-lower", upper));
         CertSpec leaf = GoodLeaf();
         leaf.issuer = &lower;
         Scenario s;
         s.chain = {Make(leaf), lower, upper};
         return s;
       },
       kUnauth, "path: basicConstraints pathLen constraint exceeded"},
      {"name_constraints_violation",
       [] {
         CertSpec inter = IntermediateSpec("inter-nc", GetPki().root);
         inter.permitted_uris = {"cluster.local"};
         TestCert nc_inter = Make(inter);
         CertSpec leaf = GoodLeaf();
         leaf.issuer = &nc_inter;
         leaf.uri_sans = {"spiffe://evil.org/ns/shop/sa/frontend"};
         Scenario s;
         s.chain = {Make(leaf), nc_inter};
         return s;
       },
       kUnauth, "path: name constraints violation"},
      {"unknown_critical_extension",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.unknown_critical_extension = true;
         return LeafViaInter(leaf);
       },
       kUnauth, "path: unhandled critical extension 1.3.6.1.4.1.55555.1.1"},
      {"unknown_critical_extension_on_intermediate",
       [] {
         CertSpec inter = IntermediateSpec("inter-unknown-ext", GetPki().root);
         inter.unknown_critical_extension = true;
         return WithInter(inter);
       },
       kUnauth,
       "path: unhandled critical extension 1.3.6.1.4.1.55555.1.1 for "
       "subject CN=inter-unknown-ext"},
      {"rsa_1024_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_type = KeyType::kRsa1024;
         return LeafViaInter(leaf);
       },
       kUnauth, "path: RSA key of 1024 bits is outside 2048..8192"},
      {"p521_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_type = KeyType::kP521;
         return LeafViaInter(leaf);
       },
       kUnauth, "path: EC curve secp521r1 is not accepted"},
      {"v1_intermediate",
       [] {
         CertSpec inter = IntermediateSpec("inter-v1", GetPki().root);
         inter.version = 1;
         return WithInter(inter);
       },
       kUnauth,
       "path: certificate is version 1; only v3 is accepted for "
       "subject CN=inter-v1"},
      {"v1_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.version = 1;
         return LeafViaInter(leaf);
       },
       kUnauth, "path: certificate is version 1"},
      {"tampered_signature",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.tamper_signature = true;
         return LeafViaInter(leaf);
       },
       kUnauth,
       "path: certificate signature does not verify for subject "
       "CN=workload"},
      {"tampered_intermediate_signature",
       [] {
         CertSpec inter = IntermediateSpec("inter-tampered", GetPki().root);
         inter.tamper_signature = true;
         return WithInter(inter);
       },
       kUnauth,
       "path: certificate signature does not verify for subject "
       "CN=inter-tampered"},

      // Revocation.
      {"revoked_leaf",
       [] {
         Scenario s = LeafViaInter(GoodLeaf());
         s.crls = {CrlPem({&GetPki().inter, {7, kLeafSerial}})};
         return s;
       },
       kUnauth,
       "crl: certificate is revoked (serial 0x03E9) for subject "
       "CN=workload"},
      // After a signer switch the CA publishes its new intermediate's CRL,
      // which lists the old intermediate's revoked leaves too; no CRL of the
      // old intermediate exists. Such a leaf must still be refused.
      {"revoked_leaf_listed_by_another_intermediates_crl",
       [] {
         Scenario s = LeafViaInter(GoodLeaf());
         s.roots = {GetPki().root, GetPki().root2};
         s.crls = {CrlPem({&GetPki().inter2, {7, kLeafSerial}})};
         return s;
       },
       kUnauth,
       "crl: certificate is revoked (serial 0x03E9) for subject "
       "CN=workload"},
      {"another_intermediates_crl_for_another_serial",
       [] {
         Scenario s = LeafViaInter(GoodLeaf());
         s.roots = {GetPki().root, GetPki().root2};
         s.crls = {CrlPem({&GetPki().inter2, {7}})};
         return s;
       },
       kOk, kId},
      {"crl_for_another_serial",
       [] {
         Scenario s = LeafViaInter(GoodLeaf());
         s.crls = {CrlPem({&GetPki().inter, {7}})};
         return s;
       },
       kOk, kId},
      {"revoked_intermediate",
       [] {
         CertSpec inter_spec = IntermediateSpec("inter-revoked", GetPki().root);
         inter_spec.serial = 77;
         Scenario s = WithInter(inter_spec);
         s.crls = {CrlPem({&GetPki().root, {77}})};
         return s;
       },
       kUnauth,
       "crl: certificate is revoked (serial 0x4D) for subject "
       "CN=inter-revoked"},
      {"expired_crl",
       [] {
         Scenario s = LeafViaInter(GoodLeaf());
         CrlSpec crl{&GetPki().inter, {7}};
         crl.this_update = FixtureNow() - absl::Hours(48);
         crl.next_update = FixtureNow() - absl::Hours(24);
         s.crls = {CrlPem(crl)};
         return s;
       },
       kUnauth, "crl: CRL has expired"},
      {"tampered_crl",
       [] {
         Scenario s = LeafViaInter(GoodLeaf());
         CrlSpec crl{&GetPki().inter, {7}};
         crl.tamper_signature = true;
         s.crls = {CrlPem(crl)};
         return s;
       },
       kUnauth, "crl: CRL signature does not verify"},

      // X.509-SVID leaf rules.
      {"wrong_trust_domain",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans = {"spiffe://other.org/ns/shop/sa/frontend"};
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: trust domain \"other.org\" is not \"cluster.local\""},
      {"two_uri_sans",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans.push_back("spiffe://cluster.local/ns/shop/sa/other");
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf has 2 URI SANs; an X.509-SVID has exactly one"},
      {"no_uri_san",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans.clear();
         leaf.dns_sans = {"frontend.shop.svc"};
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf has 0 URI SANs; an X.509-SVID has exactly one"},
      {"non_spiffe_uri",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans = {"https://cluster.local/ns/shop/sa/frontend"};
         return LeafViaInter(leaf);
       },
       kUnauth,
       "svid: URI SAN \"https://cluster.local/ns/shop/sa/frontend\" "
       "is not a spiffe:// URI"},
      {"invalid_spiffe_id_uppercase_trust_domain",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans = {"spiffe://Cluster.local/ns/shop/sa/frontend"};
         return LeafViaInter(leaf);
       },
       kUnauth, "uppercase"},
      {"invalid_spiffe_id_dot_dot_segment",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans = {"spiffe://cluster.local/ns/../sa/frontend"};
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: invalid SPIFFE ID"},
      {"ca_true_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.basic_constraints = BasicConstraints::kCaTrue;
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf is a CA (basicConstraints cA=true)"},
      {"leaf_with_keycertsign",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_usage = testing::kDigitalSignature | testing::kKeyCertSign;
         return LeafViaInter(leaf);
       },
       // An RFC 5280 path rule before it is an SVID rule.
       kUnauth,
       "path: keyUsage keyCertSign without basicConstraints cA=true for "
       "subject CN=workload"},
      {"leaf_with_crlsign",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_usage = testing::kDigitalSignature | testing::kCrlSign;
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf keyUsage has cRLSign"},
      {"leaf_without_digital_signature",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_usage = testing::kKeyAgreement;
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf keyUsage lacks digitalSignature"},
      {"leaf_without_key_usage",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.key_usage.reset();
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf has no keyUsage extension"},
      {"eku_server_only",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.ext_key_usage = {"serverAuth"};
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf extendedKeyUsage lacks clientAuth"},
      {"eku_client_only",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.ext_key_usage = {"clientAuth"};
         return LeafViaInter(leaf);
       },
       kUnauth, "svid: leaf extendedKeyUsage lacks serverAuth"},

      // path_only: SVID rules skipped, path rules kept.
      {"path_only_two_uri_sans",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans.push_back("spiffe://cluster.local/ns/shop/sa/other");
         Scenario s = LeafViaInter(leaf);
         s.options.path_only = true;
         return s;
       },
       kOk, kId},
      {"path_only_wrong_trust_domain",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans = {"spiffe://other.org/ns/a/sa/b"};
         Scenario s = LeafViaInter(leaf);
         s.options.path_only = true;
         return s;
       },
       kOk, "spiffe://other.org/ns/a/sa/b"},
      {"path_only_expired_leaf",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.not_after = FixtureNow() - absl::Hours(1);
         Scenario s = LeafViaInter(leaf);
         s.options.path_only = true;
         return s;
       },
       kUnauth, "path: certificate has expired"},
      {"path_only_no_spiffe_uri",
       [] {
         CertSpec leaf = GoodLeaf();
         leaf.uri_sans = {"https://example.org/"};
         Scenario s = LeafViaInter(leaf);
         s.options.path_only = true;
         return s;
       },
       kUnauth, "svid: leaf has no SPIFFE ID URI SAN"},
  };
}

INSTANTIATE_TEST_SUITE_P(Fixtures, VerifierTest, ::testing::ValuesIn(Cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return info.param.name;
                         });

std::shared_ptr<const TrustBundle> DefaultBundle(
    std::vector<std::string> crls = {}) {
  absl::StatusOr<std::shared_ptr<const TrustBundle>> bundle =
      TrustBundle::Create(kTrustDomain, {GetPki().root.Pem()}, crls);
  EXPECT_TRUE(bundle.ok()) << bundle.status();
  return bundle.value_or(nullptr);
}

TEST(VerifierLimitsTest, TooManyIntermediatesRefusedUpFront) {
  // Nine unrelated CA certificates: refused by count, before any chain
  // building or signature check.
  std::vector<TestCert> junk;
  for (int i = 0; i < 9; ++i) {
    junk.push_back(Make(IntermediateSpec("junk", GetPki().other_root)));
  }
  std::vector<X509*> intermediates;
  for (const TestCert& cert : junk) intermediates.push_back(cert.cert());
  TestCert leaf = Make(GoodLeaf());
  auto bundle = DefaultBundle();
  absl::Time start = absl::Now();
  absl::StatusOr<SpiffeId> id = VerifyX509Svid(
      leaf.cert(), intermediates, *bundle, {FixtureNow(), "", false});
  EXPECT_LT(absl::Now() - start, absl::Milliseconds(50));
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("path: chain has 9 intermediates; at most 8"));

  std::string pem = leaf.Pem();
  for (const TestCert& cert : junk) pem += cert.Pem();
  id = VerifyX509SvidPem(pem, *bundle, {FixtureNow(), "", false});
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(id.status().message()),
              StartsWith("path: the chain has more "
                         "than 9 certificates"));
}

TEST(VerifierLimitsTest, EightIntermediatesAccepted) {
  std::vector<TestCert> chain;
  chain.push_back(GetPki().root);
  for (int i = 0; i < 8; ++i) {
    chain.push_back(
        Make(IntermediateSpec(absl::StrCat("inter-", i), chain.back())));
  }
  CertSpec leaf_spec = GoodLeaf();
  leaf_spec.issuer = &chain.back();
  TestCert leaf = Make(leaf_spec);
  std::vector<X509*> intermediates;
  for (size_t i = chain.size() - 1; i >= 1; --i) {
    intermediates.push_back(chain[i].cert());
  }
  absl::StatusOr<SpiffeId> id = VerifyX509Svid(
      leaf.cert(), intermediates, *DefaultBundle(), {FixtureNow(), "", false});
  ASSERT_TRUE(id.ok()) << id.status();
}

TEST(VerifierParseTest, GarbageAndEmptyChainPem) {
  auto bundle = DefaultBundle();
  VerifyOptions options{FixtureNow(), "", false};
  for (const std::string& pem :
       {std::string(""), std::string("not a certificate"),
        std::string("-----BEGIN CERTIFICATE-----\nAAAA\n-----END "
                    "CERTIFICATE-----\n")}) {
    absl::StatusOr<SpiffeId> id = VerifyX509SvidPem(pem, *bundle, options);
    ASSERT_FALSE(id.ok()) << pem;
    EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(id.status().message()), StartsWith("parse: "))
        << pem;
  }
  absl::StatusOr<SpiffeId> id = VerifyX509Svid(nullptr, {}, *bundle, options);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(VerifierPathOnlyTest, VerifyPathIgnoresSvidRules) {
  CertSpec leaf_spec = GoodLeaf();
  leaf_spec.uri_sans.push_back("spiffe://cluster.local/ns/shop/sa/other");
  leaf_spec.ext_key_usage = {"serverAuth"};
  TestCert leaf = Make(leaf_spec);
  auto bundle = DefaultBundle();
  VerifyOptions options{FixtureNow(), "", false};
  EXPECT_TRUE(
      VerifyPath(leaf.cert(), {GetPki().inter.cert()}, *bundle, options).ok());
  EXPECT_FALSE(
      VerifyX509Svid(leaf.cert(), {GetPki().inter.cert()}, *bundle, options)
          .ok());
  options.at = FixtureNow() + absl::Hours(24 * 366);
  absl::Status expired =
      VerifyPath(leaf.cert(), {GetPki().inter.cert()}, *bundle, options);
  EXPECT_THAT(std::string(expired.message()),
              StartsWith("path: certificate has expired"));
}

TEST(VerifierKeysTest, LibrarySpecificWeakKeys) {
  // Keys only OpenSSL can make; BoringSSL builds skip them.
  for (KeyType type : {KeyType::kDsa2048, KeyType::kP256ExplicitParams}) {
    CertSpec leaf_spec = GoodLeaf();
    leaf_spec.key_type = type;
    absl::StatusOr<TestCert> leaf = MakeCert(leaf_spec);
    if (absl::IsUnimplemented(leaf.status())) continue;
    ASSERT_TRUE(leaf.ok()) << leaf.status();
    absl::StatusOr<SpiffeId> id =
        VerifyX509Svid(leaf->cert(), {GetPki().inter.cert()}, *DefaultBundle(),
                       {FixtureNow(), "", false});
    ASSERT_FALSE(id.ok());
    EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(std::string(id.status().message()),
                HasSubstr(type == KeyType::kDsa2048
                              ? "path: DSA keys are not accepted"
                              : "path: EC key has explicit curve parameters"));
  }
}

TEST(TrustBundleTest, AccessorsAndSeveralRootsInOnePem) {
  CertSpec early = RootSpec("root-early");
  early.not_after = FixtureNow() + absl::Hours(10);
  TestCert early_root = Make(early);
  absl::StatusOr<std::shared_ptr<const TrustBundle>> bundle =
      TrustBundle::Create(kTrustDomain,
                          {GetPki().root.Pem() + early_root.Pem()}, {});
  ASSERT_TRUE(bundle.ok()) << bundle.status();
  EXPECT_EQ((*bundle)->trust_domain(), kTrustDomain);
  EXPECT_EQ((*bundle)->roots().size(), 2u);
  EXPECT_EQ((*bundle)->earliest_root_expiry(), FixtureNow() + absl::Hours(10));
}

struct BadBundleCase {
  std::string name;
  std::function<std::vector<std::string>()> roots;
  std::vector<std::string> crls;
  std::string trust_domain;
  std::string reason;
};

class TrustBundleRejectTest : public ::testing::TestWithParam<BadBundleCase> {};

TEST_P(TrustBundleRejectTest, Rejects) {
  const BadBundleCase& c = GetParam();
  absl::StatusOr<std::shared_ptr<const TrustBundle>> bundle =
      TrustBundle::Create(c.trust_domain, c.roots(), c.crls);
  ASSERT_FALSE(bundle.ok());
  EXPECT_EQ(bundle.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(bundle.status().message()), HasSubstr(c.reason));
}

std::vector<std::string> Pems(std::vector<CertSpec> specs) {
  std::vector<std::string> out;
  for (const CertSpec& spec : specs) out.push_back(Make(spec).Pem());
  return out;
}

INSTANTIATE_TEST_SUITE_P(
    Create, TrustBundleRejectTest,
    ::testing::Values(
        BadBundleCase{"no_roots",
                      [] { return std::vector<std::string>{}; },
                      {},
                      kTrustDomain,
                      "trust bundle: no root certificate"},
        BadBundleCase{"garbage_root",
                      [] { return std::vector<std::string>{"junk"}; },
                      {},
                      kTrustDomain,
                      "parse: no PEM certificate in root PEM 0"},
        BadBundleCase{"bad_trust_domain",
                      [] { return std::vector<std::string>{}; },
                      {},
                      "Cluster.local",
                      "uppercase"},
        BadBundleCase{"root_not_ca",
                      [] {
                        CertSpec spec = RootSpec("root-not-ca");
                        spec.basic_constraints = BasicConstraints::kCaFalse;
                        spec.key_usage = testing::kDigitalSignature;
                        return Pems({RootSpec("good-root"), spec});
                      },
                      {},
                      kTrustDomain,
                      "root 1 (subject CN=root-not-ca): root is not a CA"},
        BadBundleCase{"root_without_keycertsign",
                      [] {
                        CertSpec spec = RootSpec("root-no-kcs");
                        spec.key_usage = testing::kCrlSign;
                        return Pems({spec});
                      },
                      {},
                      kTrustDomain,
                      "root 0 (subject CN=root-no-kcs): root keyUsage lacks "
                      "keyCertSign"},
        BadBundleCase{
            "root_not_self_signed",
            [] { return std::vector<std::string>{GetPki().inter.Pem()}; },
            {},
            kTrustDomain,
            "root 0 (subject CN=inter): not self-signed"},
        BadBundleCase{"root_rsa_1024",
                      [] {
                        CertSpec spec = RootSpec("root-rsa-1024");
                        spec.key_type = KeyType::kRsa1024;
                        return Pems({spec});
                      },
                      {},
                      kTrustDomain,
                      "RSA key of 1024 bits"},
        BadBundleCase{
            "garbage_crl",
            [] { return std::vector<std::string>{GetPki().root.Pem()}; },
            {"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 "
             "CRL-----\n"},
            kTrustDomain,
            "trust bundle: CRL PEM 0: parse:"},
        BadBundleCase{
            "crl_pem_without_crl",
            [] { return std::vector<std::string>{GetPki().root.Pem()}; },
            {"hello"},
            kTrustDomain,
            "trust bundle: CRL PEM 0: parse: no PEM X509 CRL"}),
    [](const ::testing::TestParamInfo<BadBundleCase>& info) {
      return info.param.name;
    });

TEST(VerifierConcurrencyTest, OneBundleManyThreads) {
  auto bundle = DefaultBundle({CrlPem({&GetPki().inter, {7}})});
  TestCert good = Make(GoodLeaf());
  CertSpec revoked_spec = GoodLeaf();
  revoked_spec.serial = 7;
  TestCert revoked = Make(revoked_spec);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        VerifyOptions options{FixtureNow(), "", false};
        if (!VerifyX509Svid(good.cert(), {GetPki().inter.cert()}, *bundle,
                            options)
                 .ok()) {
          ++failures;
        }
        if (VerifyX509Svid(revoked.cert(), {GetPki().inter.cert()}, *bundle,
                           options)
                .ok()) {
          ++failures;
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(failures.load(), 0);
}

}  // namespace
}  // namespace meshguard::crypto
