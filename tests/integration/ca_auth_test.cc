// meshguard-ca authentication end to end: each way a caller proves who it
// is, each way that proof can be wrong (with the gRPC status and nothing
// issued), admin over mTLS, TTL clamping and rate limiting. Each test starts
// its own CA.
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/client/ca_client.h"
#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "tests/identity/crypto/testing/test_keys.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::ReadFile;
using ::meshguard::testing::WriteFile;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class CaAuthTest : public ::testing::Test {
 protected:
  void StartCa(const std::string& config_yaml) {
    absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    absl::Status served = ca_->Serve(config_yaml);
    ASSERT_TRUE(served.ok()) << served;
  }

  // A CA trusting a JWKS with rsa_ (kid "rsa-1") and ec_ (kid "ec-1").
  void StartCaWithJwks(const std::string& extra_yaml = "") {
    absl::StatusOr<std::string> dir = meshguard::testing::MakeTempDir("jwks");
    ASSERT_TRUE(dir.ok());
    const std::string jwks = *dir + "/jwks.json";
    ASSERT_TRUE(WriteFile(jwks, JwksJson({rsa_, ec_})).ok());
    StartCa(absl::StrCat("kubernetes:\n  jwks_file: ", jwks, "\n", extra_yaml));
  }

  static void SetUpTestSuite() {
    rsa_ = SigningKey::Rsa("rsa-1");
    ec_ = SigningKey::Ec("ec-1");
    forger_ = SigningKey::Rsa("rsa-1");  // same kid, other key
  }

  static SigningKey rsa_;
  static SigningKey ec_;
  static SigningKey forger_;
  std::unique_ptr<CaInstance> ca_;
};

SigningKey CaAuthTest::rsa_;
SigningKey CaAuthTest::ec_;
SigningKey CaAuthTest::forger_;

// --- Each auth method succeeds ---------------------------------------------

TEST_F(CaAuthTest, KubernetesTokenRs256AndEs256GiveTheClaimsIdentity) {
  ASSERT_NO_FATAL_FAILURE(StartCaWithJwks());
  std::unique_ptr<client::CaClient> client = ca_->Client();
  ASSERT_NE(client, nullptr);

  TokenClaims shop;  // ns shop, sa frontend
  absl::StatusOr<client::IssuedCertificate> rs =
      client->IssueWithToken(MintToken(rsa_, shop));
  ASSERT_TRUE(rs.ok()) << rs.status() << ca_->process()->DescribeOutput();
  EXPECT_EQ(rs->spiffe_id, "spiffe://cluster.local/ns/shop/sa/frontend");
  absl::StatusOr<LeafInfo> leaf = DescribeLeaf(rs->ChainPem());
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_THAT(leaf->uri_sans,
              ElementsAre("spiffe://cluster.local/ns/shop/sa/frontend"));
  EXPECT_FALSE(leaf->is_ca);

  TokenClaims pay;
  pay.ns = "payments";
  pay.sa = "ledger";
  absl::StatusOr<client::IssuedCertificate> es =
      client->IssueWithToken(MintToken(ec_, pay));
  ASSERT_TRUE(es.ok()) << es.status();
  EXPECT_EQ(es->spiffe_id, "spiffe://cluster.local/ns/payments/sa/ledger");

  // The same through meshguardctl, with the token in a file as a pod has it.
  const std::string token_file = ca_->data_dir() + "/../token";
  TokenClaims cli_claims;
  cli_claims.ns = "cli";
  cli_claims.sa = "runner";
  ASSERT_TRUE(WriteFile(token_file, MintToken(ec_, cli_claims) + "\n").ok());
  const std::string out_dir = ca_->data_dir() + "/../k8s-out";
  RunResult r = ca_->Ctl(
      {"cert", "request", "--token_file", token_file, "--out_dir", out_dir});
  ASSERT_TRUE(r.status.Success()) << r.ToString();
  EXPECT_EQ(OutputField(r.out, "spiffe_id"),
            "spiffe://cluster.local/ns/cli/sa/runner");
  EXPECT_EQ(ca_->CountCertificates(), 3);
}

TEST_F(CaAuthTest, JoinTokenThroughMeshguardctl) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  const std::string id = SpiffeIdFor("shop", "orders");
  RunResult created = ca_->Ctl({"token", "create", "--spiffe_id", id});
  ASSERT_TRUE(created.status.Success()) << created.ToString();
  const std::string token(absl::StripAsciiWhitespace(created.out));
  ASSERT_FALSE(token.empty());
  EXPECT_THAT(created.err, HasSubstr(id));  // "join token for <id>, ..."

  const std::string out = ca_->data_dir() + "/../orders";
  RunResult issued =
      ca_->Ctl({"cert", "request", "--join_token", token, "--out_dir", out});
  ASSERT_TRUE(issued.status.Success())
      << issued.ToString() << ca_->process()->DescribeOutput();
  EXPECT_EQ(OutputField(issued.out, "spiffe_id"), id);

  struct stat st;
  ASSERT_EQ(stat((out + "/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600) << "key.pem must be private";

  absl::StatusOr<std::string> cert = ReadFile(out + "/cert.pem");
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(CountPemCertificates(*cert), 2) << "leaf + intermediate";
  absl::StatusOr<LeafInfo> leaf = DescribeLeaf(*cert);
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_THAT(leaf->uri_sans, ElementsAre(id)) << "leaf first";
  EXPECT_FALSE(leaf->is_ca);
  EXPECT_EQ(OutputField(issued.out, "serial"), leaf->serial);

  absl::StatusOr<std::string> bundle = ReadFile(out + "/bundle.pem");
  ASSERT_TRUE(bundle.ok());
  EXPECT_EQ(CountPemCertificates(*bundle), 1);
  EXPECT_EQ(*bundle, ca_->bundle_pem()) << "bundle.pem holds the CA's roots";

  RunResult verify =
      RunBinary(CtlBinary(), {"verify", "--bundle", out + "/bundle.pem",
                              "--chain", out + "/cert.pem"});
  EXPECT_EQ(verify.status.code, 0) << verify.ToString();
  EXPECT_EQ(verify.out, absl::StrCat("OK ", id, "\n"));

  // cert inspect shows the same identity.
  RunResult inspect =
      RunBinary(CtlBinary(), {"cert", "inspect", out + "/cert.pem"});
  EXPECT_TRUE(inspect.status.Success()) << inspect.ToString();
  EXPECT_EQ(OutputField(inspect.out, "spiffe_id"), id);

  // Listed, with how it was obtained.
  RunResult list = ca_->Ctl({"list"});
  ASSERT_TRUE(list.status.Success()) << list.ToString();
  EXPECT_THAT(list.out, HasSubstr(leaf->serial));
  EXPECT_THAT(list.out, HasSubstr("join_token"));
}

TEST_F(CaAuthTest, RenewalOverMtlsKeepsTheIdButChangesKeyAndSerial) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  const std::string id = SpiffeIdFor("shop", "cart");
  absl::StatusOr<std::string> token = ca_->JoinToken(id);
  ASSERT_TRUE(token.ok()) << token.status();
  const std::string first = ca_->data_dir() + "/../cart-1";
  RunResult issued =
      ca_->Ctl({"cert", "request", "--join_token", *token, "--out_dir", first});
  ASSERT_TRUE(issued.status.Success()) << issued.ToString();

  const std::string second = ca_->data_dir() + "/../cart-2";
  RunResult renewed =
      ca_->Ctl({"cert", "renew", "--cert", first + "/cert.pem", "--key",
                first + "/key.pem", "--out_dir", second});
  ASSERT_TRUE(renewed.status.Success())
      << renewed.ToString() << ca_->process()->DescribeOutput();
  EXPECT_EQ(OutputField(renewed.out, "spiffe_id"), id);
  EXPECT_NE(OutputField(renewed.out, "serial"),
            OutputField(issued.out, "serial"));

  absl::StatusOr<LeafInfo> old_leaf =
      DescribeLeaf(*ReadFile(first + "/cert.pem"));
  absl::StatusOr<LeafInfo> new_leaf =
      DescribeLeaf(*ReadFile(second + "/cert.pem"));
  ASSERT_TRUE(old_leaf.ok() && new_leaf.ok());
  EXPECT_EQ(new_leaf->uri_sans, old_leaf->uri_sans);
  EXPECT_NE(new_leaf->serial, old_leaf->serial);
  EXPECT_NE(new_leaf->public_key_pem, old_leaf->public_key_pem) << "new key";
  EXPECT_NE(*ReadFile(second + "/key.pem"), *ReadFile(first + "/key.pem"));

  // And through the library, renewing the renewed one.
  std::unique_ptr<client::CaClient> client = ca_->Client();
  absl::StatusOr<client::IssuedCertificate> third = client->Renew(
      *ReadFile(second + "/cert.pem"), *ReadFile(second + "/key.pem"));
  ASSERT_TRUE(third.ok()) << third.status();
  EXPECT_EQ(third->spiffe_id, id);
  EXPECT_NE(third->serial, new_leaf->serial);

  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> records =
      ca_->Records();
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_EQ((*records)[0].auth_method(), "renewal");  // newest first
  EXPECT_EQ((*records)[2].auth_method(), "join_token");
}

// --- Refusals ---------------------------------------------------------------

TEST_F(CaAuthTest, BadKubernetesTokensAreUnauthenticatedAndIssueNothing) {
  ASSERT_NO_FATAL_FAILURE(StartCaWithJwks());
  std::unique_ptr<client::CaClient> client = ca_->Client();
  ASSERT_EQ(ca_->CountCertificates(), 0);

  TokenClaims expired;
  expired.expires_in = -absl::Minutes(5);  // beyond the 30 s skew
  TokenClaims wrong_aud;
  wrong_aud.aud = "kubernetes";
  TokenClaims wrong_iss;
  wrong_iss.iss = "https://evil.example";
  const SigningKey stranger = SigningKey::Ec("stranger");
  struct Case {
    const char* name;
    std::string token;
    const char* reason;  // in the status message
  };
  const Case cases[] = {
      {"forged", MintToken(forger_, TokenClaims()), "signature"},
      {"expired", MintToken(rsa_, expired), "expired"},
      {"wrong_audience", MintToken(rsa_, wrong_aud), "aud"},
      {"wrong_issuer", MintToken(ec_, wrong_iss), "iss"},
      {"alg_none", MintUnsignedToken("rsa-1", TokenClaims()), "none"},
      {"unknown_kid", MintToken(stranger, TokenClaims()), "kid"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ASSERT_FALSE(c.token.empty());
    absl::StatusOr<client::IssuedCertificate> r =
        client->IssueWithToken(c.token);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
        << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.reason));
  }
  EXPECT_EQ(ca_->CountCertificates(), 0);

  // meshguardctl says so on stderr with a non-zero exit, and writes nothing.
  const std::string token_file = ca_->data_dir() + "/../forged";
  ASSERT_TRUE(WriteFile(token_file, MintToken(forger_, TokenClaims())).ok());
  const std::string out = ca_->data_dir() + "/../forged-out";
  RunResult cli = ca_->Ctl(
      {"cert", "request", "--token_file", token_file, "--out_dir", out});
  EXPECT_EQ(cli.status.code, 1) << cli.ToString();
  EXPECT_THAT(cli.err, HasSubstr("signature"));
  EXPECT_FALSE(ReadFile(out + "/key.pem").ok());
  RunResult list = ca_->Ctl({"list"});
  ASSERT_TRUE(list.status.Success()) << list.ToString();
  EXPECT_EQ(std::count(list.out.begin(), list.out.end(), '\n'), 1)
      << "header only:\n"
      << list.out;
}

TEST_F(CaAuthTest, JoinTokenWorksOnceEvenAcrossRestart) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  std::unique_ptr<client::CaClient> client = ca_->Client();
  const std::string id = SpiffeIdFor("shop", "once");
  absl::StatusOr<std::string> token = ca_->JoinToken(id);
  ASSERT_TRUE(token.ok()) << token.status();
  ASSERT_TRUE(client->IssueWithJoinToken(*token).ok());
  absl::StatusOr<client::IssuedCertificate> again =
      client->IssueWithJoinToken(*token);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnauthenticated)
      << again.status();

  // Used before the restart, refused after it; created but unused before the
  // restart, still good after it.
  absl::StatusOr<std::string> used = ca_->JoinToken(SpiffeIdFor("shop", "a"));
  absl::StatusOr<std::string> unused = ca_->JoinToken(SpiffeIdFor("shop", "b"));
  ASSERT_TRUE(used.ok() && unused.ok());
  ASSERT_TRUE(client->IssueWithJoinToken(*used).ok());
  EXPECT_EQ(ca_->CountCertificates(), 2);
  ExitStatus stopped = ca_->Stop();
  EXPECT_TRUE(stopped.Success()) << "SIGTERM: " << stopped.ToString();
  ASSERT_TRUE(ca_->Serve().ok());
  client = ca_->Client();

  for (const std::string* t : {&*token, &*used}) {
    absl::StatusOr<client::IssuedCertificate> r =
        client->IssueWithJoinToken(*t);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
        << r.status();
  }
  RunResult cli = ca_->Ctl({"cert", "request", "--join_token", *used,
                            "--out_dir", ca_->data_dir() + "/../reused"});
  EXPECT_EQ(cli.status.code, 1) << cli.ToString();
  EXPECT_FALSE(cli.err.empty());
  EXPECT_EQ(ca_->CountCertificates(), 2);

  absl::StatusOr<client::IssuedCertificate> fresh =
      client->IssueWithJoinToken(*unused);
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  EXPECT_EQ(fresh->spiffe_id, SpiffeIdFor("shop", "b"));
}

TEST_F(CaAuthTest, ExpiredJoinTokenIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  RunResult created = ca_->Ctl({"token", "create", "--spiffe_id",
                                SpiffeIdFor("shop", "late"), "--ttl", "1s"});
  ASSERT_TRUE(created.status.Success()) << created.ToString();
  const std::string token(absl::StripAsciiWhitespace(created.out));
  absl::SleepFor(absl::Milliseconds(1500));  // the expiry is the point
  absl::StatusOr<client::IssuedCertificate> r =
      ca_->Client()->IssueWithJoinToken(token);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
      << r.status();
  EXPECT_EQ(ca_->CountCertificates(), 0);
}

TEST_F(CaAuthTest, RenewalWithAnotherCasCertificateIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  absl::StatusOr<std::unique_ptr<CaInstance>> other = CaInstance::Init("other");
  ASSERT_TRUE(other.ok()) << other.status();
  ASSERT_TRUE((*other)->Serve("").ok());
  const std::string id = SpiffeIdFor("shop", "frontend");
  absl::StatusOr<client::IssuedCertificate> foreign = (*other)->IssueFor(id);
  ASSERT_TRUE(foreign.ok()) << foreign.status();

  absl::StatusOr<client::IssuedCertificate> r =
      ca_->Client()->Renew(foreign->ChainPem(), foreign->key_pem);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
      << r.status();
  EXPECT_EQ(ca_->CountCertificates(), 0);
}

TEST_F(CaAuthTest, RenewalAskingForAnotherIdIsPermissionDenied) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  absl::StatusOr<client::IssuedCertificate> mine =
      ca_->IssueFor(SpiffeIdFor("shop", "frontend"));
  ASSERT_TRUE(mine.ok()) << mine.status();

  crypto::EvpPkeyPtr key = NewKey();
  absl::StatusOr<crypto::SpiffeId> other =
      crypto::SpiffeId::Parse(SpiffeIdFor("payments", "ledger"));
  ASSERT_TRUE(other.ok());
  absl::StatusOr<std::string> csr = crypto::CreateCsrPem(key.get(), *other);
  ASSERT_TRUE(csr.ok()) << csr.status();
  ca::v1::IssueCertificateRequest request;
  request.set_csr_pem(*csr);
  absl::StatusOr<ca::v1::IssueCertificateResponse> r = ca_->Client()->Issue(
      request, /*bearer_token=*/"", mine->ChainPem(), mine->key_pem);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied)
      << r.status();
  EXPECT_EQ(ca_->CountCertificates(), 1);
}

TEST_F(CaAuthTest, MalformedCsrsAreInvalidArgument) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  const std::string id = SpiffeIdFor("shop", "frontend");
  absl::StatusOr<client::IssuedCertificate> mine = ca_->IssueFor(id);
  ASSERT_TRUE(mine.ok()) << mine.status();
  std::unique_ptr<client::CaClient> client = ca_->Client();
  crypto::EvpPkeyPtr key = NewKey();

  absl::StatusOr<crypto::SpiffeId> parsed = crypto::SpiffeId::Parse(id);
  absl::StatusOr<std::string> good = crypto::CreateCsrPem(key.get(), *parsed);
  ASSERT_TRUE(good.ok());
  // The requested ID and a good signature, but a P-256 key that spells out
  // its curve instead of naming it (RFC 5480 requires the name).
  crypto::EvpPkeyPtr explicit_key =
      crypto::testkeys::GenerateP256WithExplicitParameters();
  ASSERT_NE(explicit_key, nullptr);
  absl::StatusOr<std::string> explicit_csr =
      crypto::CreateCsrPem(explicit_key.get(), *parsed);
  ASSERT_TRUE(explicit_csr.ok()) << explicit_csr.status();
  // RSA 2048 with public exponent 3 (the Baseline Requirements' floor is
  // 65537).
  crypto::EvpPkeyPtr e3_key =
      crypto::testkeys::GenerateRsaWithExponent(2048, 3);
  ASSERT_NE(e3_key, nullptr);
  absl::StatusOr<std::string> e3_csr =
      crypto::CreateCsrPem(e3_key.get(), *parsed);
  ASSERT_TRUE(e3_csr.ok()) << e3_csr.status();
  struct Case {
    const char* name;
    std::string csr;
    const char* reason;
  };
  const Case cases[] = {
      {"bad_signature", BreakCsrSignature(*good), "signature"},
      {"https_uri_san", CsrWithUri(key.get(), "https://example.com/frontend"),
       "URI SAN"},
      {"garbage",
       "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n"
       "-----END CERTIFICATE REQUEST-----\n",
       "CSR"},
      {"explicit_curve_parameters", *explicit_csr,
       "explicit curve parameters is not accepted"},
      {"rsa_exponent_3", *e3_csr, "RSA public exponent 3 is not accepted"},
      {"sha1_signature", CsrWithUri(key.get(), id, EVP_sha1()),
       "signature algorithm ecdsa-with-SHA1 is not accepted"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    ca::v1::IssueCertificateRequest request;
    request.set_csr_pem(c.csr);
    absl::StatusOr<ca::v1::IssueCertificateResponse> r =
        client->Issue(request, "", mine->ChainPem(), mine->key_pem);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.reason));
  }
  // The unbroken CSR is fine: the refusals were about the CSR alone.
  ca::v1::IssueCertificateRequest request;
  request.set_csr_pem(*good);
  EXPECT_TRUE(client->Issue(request, "", mine->ChainPem(), mine->key_pem).ok());
  EXPECT_EQ(ca_->CountCertificates(), 2);
}

TEST_F(CaAuthTest, OversizedRequestIsResourceExhausted) {
  ASSERT_NO_FATAL_FAILURE(StartCa("max_request_bytes: 4096\n"));
  absl::StatusOr<std::string> token =
      ca_->JoinToken(SpiffeIdFor("shop", "big"));
  ASSERT_TRUE(token.ok());
  crypto::EvpPkeyPtr key = NewKey();
  absl::StatusOr<std::string> csr = crypto::CreateCsrPem(
      key.get(), *crypto::SpiffeId::Parse(SpiffeIdFor("shop", "big")));
  ASSERT_TRUE(csr.ok());
  ca::v1::IssueCertificateRequest request;
  request.set_csr_pem(*csr + std::string(8000, '\n'));
  request.set_join_token(*token);
  absl::StatusOr<ca::v1::IssueCertificateResponse> r =
      ca_->Client()->Issue(request, "", "", "");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
      << r.status();
  EXPECT_EQ(ca_->CountCertificates(), 0);
  // Refused before the CA looked at it: the token is still good.
  EXPECT_TRUE(ca_->Client()->IssueWithJoinToken(*token).ok());
}

TEST_F(CaAuthTest, AdminApiOverMtlsOnlyForAdminIds) {
  const std::string admin_id = SpiffeIdFor("ops", "admin");
  ASSERT_NO_FATAL_FAILURE(
      StartCa(absl::StrCat("admin_ids:\n  - ", admin_id, "\n")));
  absl::StatusOr<client::IssuedCertificate> admin = ca_->IssueFor(admin_id);
  absl::StatusOr<client::IssuedCertificate> plain =
      ca_->IssueFor(SpiffeIdFor("shop", "frontend"));
  ASSERT_TRUE(admin.ok() && plain.ok());

  absl::StatusOr<std::unique_ptr<client::CaAdminClient>> as_plain =
      client::CaAdminClient::ForMtls(ca_->ClientOptions(), plain->ChainPem(),
                                     plain->key_pem);
  ASSERT_TRUE(as_plain.ok());
  absl::StatusOr<ca::v1::ListCertificatesResponse> denied =
      (*as_plain)->List(ca::v1::ListCertificatesRequest());
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied)
      << denied.status();
  absl::StatusOr<ca::v1::CreateJoinTokenResponse> denied_token =
      (*as_plain)->CreateJoinToken(SpiffeIdFor("shop", "evil"),
                                   absl::Minutes(1));
  EXPECT_EQ(denied_token.status().code(), absl::StatusCode::kPermissionDenied);

  absl::StatusOr<std::unique_ptr<client::CaAdminClient>> as_admin =
      client::CaAdminClient::ForMtls(ca_->ClientOptions(), admin->ChainPem(),
                                     admin->key_pem);
  ASSERT_TRUE(as_admin.ok());
  absl::StatusOr<ca::v1::ListCertificatesResponse> listed =
      (*as_admin)->List(ca::v1::ListCertificatesRequest());
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->certificates_size(), 2);

  // meshguardctl with --cert/--key instead of the admin socket.
  const std::string dir = ca_->data_dir() + "/..";
  ASSERT_TRUE(WriteFile(dir + "/admin.crt", admin->ChainPem()).ok());
  ASSERT_TRUE(WriteFile(dir + "/admin.key", admin->key_pem, 0600).ok());
  ASSERT_TRUE(WriteFile(dir + "/plain.crt", plain->ChainPem()).ok());
  ASSERT_TRUE(WriteFile(dir + "/plain.key", plain->key_pem, 0600).ok());
  RunResult ok =
      RunBinary(CtlBinary(), {"--ca", ca_->address(), "--ca_bundle",
                              ca_->bundle_path(), "--cert", dir + "/admin.crt",
                              "--key", dir + "/admin.key", "list"});
  EXPECT_TRUE(ok.status.Success()) << ok.ToString();
  EXPECT_THAT(ok.out, HasSubstr(admin->serial));
  RunResult no =
      RunBinary(CtlBinary(), {"--ca", ca_->address(), "--ca_bundle",
                              ca_->bundle_path(), "--cert", dir + "/plain.crt",
                              "--key", dir + "/plain.key", "list"});
  EXPECT_EQ(no.status.code, 1) << no.ToString();
  EXPECT_THAT(no.err, HasSubstr("admin_ids"));
}

// --- Lifetimes and rate limits ---------------------------------------------

TEST_F(CaAuthTest, TtlIsClampedToMaxAndDefaultsToOneHour) {
  ASSERT_NO_FATAL_FAILURE(StartCa("max_ttl: 86400s\n"));
  const absl::Time before = absl::Now();
  absl::StatusOr<client::IssuedCertificate> asked48h =
      ca_->IssueFor(SpiffeIdFor("shop", "long"), absl::Hours(48));
  ASSERT_TRUE(asked48h.ok()) << asked48h.status();
  EXPECT_GE(asked48h->not_after, before + absl::Hours(24) - absl::Seconds(5));
  EXPECT_LE(asked48h->not_after,
            absl::Now() + absl::Hours(24) + absl::Seconds(5));

  absl::StatusOr<client::IssuedCertificate> unasked =
      ca_->IssueFor(SpiffeIdFor("shop", "default"));
  ASSERT_TRUE(unasked.ok()) << unasked.status();
  EXPECT_GE(unasked->not_after, before + absl::Hours(1) - absl::Seconds(5));
  EXPECT_LE(unasked->not_after,
            absl::Now() + absl::Hours(1) + absl::Seconds(5));

  // The certificate itself says the same as the response.
  absl::StatusOr<LeafInfo> leaf = DescribeLeaf(asked48h->ChainPem());
  ASSERT_TRUE(leaf.ok());
  EXPECT_LE(absl::AbsDuration(leaf->not_after - asked48h->not_after),
            absl::Seconds(1));

  // meshguardctl --ttl 48h: also clamped.
  absl::StatusOr<std::string> token = ca_->JoinToken(SpiffeIdFor("shop", "c"));
  ASSERT_TRUE(token.ok());
  RunResult cli = ca_->Ctl({"cert", "request", "--join_token", *token, "--ttl",
                            "48h", "--out_dir", ca_->data_dir() + "/../ttl"});
  ASSERT_TRUE(cli.status.Success()) << cli.ToString();
  absl::Time not_after;
  std::string error;
  ASSERT_TRUE(absl::ParseTime(absl::RFC3339_full,
                              OutputField(cli.out, "not_after"), &not_after,
                              &error))
      << error << "\n"
      << cli.out;
  EXPECT_LE(not_after, absl::Now() + absl::Hours(24) + absl::Seconds(5));
}

TEST_F(CaAuthTest, MalformedOrTinyTtlsAreInvalidArgumentAndSpendNothing) {
  ASSERT_NO_FATAL_FAILURE(StartCa(""));
  const std::string id = SpiffeIdFor("shop", "ttl");
  absl::StatusOr<std::string> token = ca_->JoinToken(id);
  ASSERT_TRUE(token.ok()) << token.status();
  std::unique_ptr<client::CaClient> client = ca_->Client();
  crypto::EvpPkeyPtr key = NewKey();
  struct Ttl {
    int64_t seconds;
    int32_t nanos;
  };
  // Nanos of the other sign than the seconds (not a valid Duration), and
  // lifetimes too short to be valid on arrival (validity is whole seconds).
  for (const Ttl& ttl :
       {Ttl{60, -999999999}, Ttl{-1, 5}, Ttl{0, 1}, Ttl{0, 999999999}}) {
    SCOPED_TRACE(absl::StrCat(ttl.seconds, "s ", ttl.nanos, "ns"));
    ca::v1::IssueCertificateRequest request;
    request.set_csr_pem(CsrWithUri(key.get(), id));
    request.set_join_token(*token);
    request.mutable_ttl()->set_seconds(ttl.seconds);
    request.mutable_ttl()->set_nanos(ttl.nanos);
    absl::StatusOr<ca::v1::IssueCertificateResponse> r =
        client->Issue(request, client::CallCredentials{});
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
        << r.status();
  }
  EXPECT_EQ(ca_->CountCertificates(), 0);
  // The join token was not spent by the refusals.
  ca::v1::IssueCertificateRequest ok;
  ok.set_csr_pem(CsrWithUri(key.get(), id));
  ok.set_join_token(*token);
  ok.mutable_ttl()->set_seconds(1);
  EXPECT_TRUE(client->Issue(ok, client::CallCredentials{}).ok());
}

TEST_F(CaAuthTest, BearerSchemeIsCaseInsensitive) {
  ASSERT_NO_FATAL_FAILURE(StartCaWithJwks());
  auto stub = ca_->RawStub();
  crypto::EvpPkeyPtr key = NewKey();
  for (const char* scheme : {"bearer ", "BEARER ", "Bearer "}) {
    SCOPED_TRACE(scheme);
    TokenClaims claims;
    ca::v1::IssueCertificateRequest request;
    request.set_csr_pem(CsrWithUri(key.get(), SpiffeIdFor("shop", "frontend")));
    grpc::ClientContext context;
    context.AddMetadata("authorization",
                        absl::StrCat(scheme, MintToken(rsa_, claims)));
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    ca::v1::IssueCertificateResponse response;
    grpc::Status s = stub->IssueCertificate(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  }
}

TEST_F(CaAuthTest, ThirdQuickRenewalIsRateLimited) {
  ASSERT_NO_FATAL_FAILURE(
      StartCa("rate_limit:\n  requests_per_second: 1\n  burst: 2\n"));
  absl::StatusOr<client::IssuedCertificate> mine =
      ca_->IssueFor(SpiffeIdFor("shop", "busy"));
  ASSERT_TRUE(mine.ok()) << mine.status();
  // The bootstrap counted against the same identity; let the bucket refill.
  absl::SleepFor(absl::Milliseconds(2100));
  std::unique_ptr<client::CaClient> client = ca_->Client();
  std::vector<absl::StatusCode> codes;
  for (int i = 0; i < 3; ++i) {
    codes.push_back(
        client->Renew(mine->ChainPem(), mine->key_pem).status().code());
  }
  EXPECT_THAT(codes, ElementsAre(absl::StatusCode::kOk, absl::StatusCode::kOk,
                                 absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(ca_->CountCertificates(), 3);
  // Another identity has its own bucket.
  EXPECT_TRUE(ca_->IssueFor(SpiffeIdFor("shop", "calm")).ok());
}

TEST_F(CaAuthTest, RateLimitedJoinTokenIsNotSpent) {
  ASSERT_NO_FATAL_FAILURE(
      StartCa("rate_limit:\n  requests_per_second: 1\n  burst: 1\n"));
  const std::string id = SpiffeIdFor("shop", "twice");
  ASSERT_TRUE(ca_->IssueFor(id).ok());  // empties the identity's bucket
  absl::StatusOr<std::string> token = ca_->JoinToken(id);
  ASSERT_TRUE(token.ok());
  std::unique_ptr<client::CaClient> client = ca_->Client();
  absl::StatusOr<client::IssuedCertificate> limited =
      client->IssueWithJoinToken(*token);
  ASSERT_EQ(limited.status().code(), absl::StatusCode::kResourceExhausted)
      << limited.status();
  absl::SleepFor(absl::Milliseconds(1200));  // the bucket refills
  // Nothing was issued with the token, so it must still be usable: the
  // caller did nothing wrong, the CA only asked it to slow down.
  absl::StatusOr<client::IssuedCertificate> retried =
      client->IssueWithJoinToken(*token);
  EXPECT_TRUE(retried.ok()) << retried.status();
}

TEST_F(CaAuthTest, UnauthenticatedCallersAreRateLimitedByPeerAddress) {
  // config.proto, RateLimit.requests_per_second: "per caller identity (the
  // authenticated SPIFFE ID, or the peer address before authentication)".
  // One token per 10 s after a burst of 2: nothing refills during the test.
  ASSERT_NO_FATAL_FAILURE(
      StartCa("rate_limit:\n  requests_per_second: 0.1\n  burst: 2\n"));
  // A good workload on the same address (here all of loopback; in a
  // cluster, a node's SNAT address or the host network).
  absl::StatusOr<client::IssuedCertificate> neighbour =
      ca_->IssueFor(SpiffeIdFor("shop", "neighbour"));
  ASSERT_TRUE(neighbour.ok()) << neighbour.status();
  std::unique_ptr<client::CaClient> client = ca_->Client();
  std::vector<absl::StatusCode> codes;
  for (int i = 0; i < 4; ++i) {
    codes.push_back(
        client->IssueWithJoinToken(absl::StrCat("guess-", i)).status().code());
  }
  EXPECT_EQ(codes.back(), absl::StatusCode::kResourceExhausted)
      << "token guessing from one address is not slowed down";
  // Its renewal, authenticated by its certificate, is not held back by the
  // guesser's failures.
  absl::StatusOr<client::IssuedCertificate> renewed =
      client->Renew(neighbour->ChainPem(), neighbour->key_pem);
  EXPECT_TRUE(renewed.ok()) << renewed.status();
  // Another token from that address still waits.
  absl::StatusOr<std::string> token =
      ca_->JoinToken(SpiffeIdFor("shop", "late"));
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(client->IssueWithJoinToken(*token).status().code(),
            absl::StatusCode::kResourceExhausted);
}

}  // namespace
}  // namespace meshguard::integration
