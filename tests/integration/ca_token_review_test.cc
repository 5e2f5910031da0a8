// meshguard-ca with kubernetes.token_review against a fake Kubernetes API
// server on 127.0.0.1 (tests/integration/testing/fake_kube_apiserver.py):
// a token that passes the offline checks gets a certificate only if the
// API server still vouches for it; a refusal is UNAUTHENTICATED, an API
// server that cannot be asked UNAVAILABLE, and in both cases nothing is
// issued. Each test starts its own CA and fake.
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "identity/client/ca_client.h"
#include "proto/k8s_token_review.pb.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/fake_kube_apiserver.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::FakeApiServerTls;
using ::meshguard::testing::FakeKubeApiServer;
using ::meshguard::testing::HttpGet;
using ::meshguard::testing::HttpResponse;
using ::meshguard::testing::MakeTempDir;
using ::meshguard::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kCaOwnToken[] = "the-ca-service-account-token";

// The /metrics line counting `n` reviews with `result`.
std::string ReviewsCounted(const std::string& result, int n) {
  return absl::StrCat("meshguard_ca_token_reviews_total{result=\"", result,
                      "\"} ", n);
}

class CaTokenReviewTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { key_ = SigningKey::Ec("ec-1"); }

  void SetUp() override {
    absl::StatusOr<std::string> dir = MakeTempDir("token-review");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
    ASSERT_TRUE(WriteFile(dir_ + "/jwks.json", JwksJson({key_})).ok());
    ASSERT_TRUE(WriteFile(dir_ + "/ca-token", kCaOwnToken).ok());
    absl::StatusOr<FakeApiServerTls> tls = FakeApiServerTls::Make("cluster");
    ASSERT_TRUE(tls.ok()) << tls.status();
    tls_ = *std::move(tls);
    ASSERT_TRUE(WriteFile(dir_ + "/k8s-ca.crt", tls_.ca_pem).ok());
    absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("ca");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
  }

  void StartApi(const FakeApiServerTls& tls) {
    absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> api =
        FakeKubeApiServer::Start(tls);
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = *std::move(api);
  }

  // ca.yaml with the JWKS and token_review settings (`review_yaml`, each
  // line indented by four).
  std::string Config(const std::string& review_yaml,
                     const std::string& extra = "") const {
    return absl::StrCat("kubernetes:\n  jwks_file: ", dir_, "/jwks.json\n",
                        review_yaml.empty() ? "" : "  token_review:\n",
                        review_yaml, extra);
  }

  // Review on, against api_ (the files written by SetUp).
  std::string ReviewYaml(const std::string& more = "") const {
    return absl::StrCat("    enabled: true\n    api_server: ", api_->url(),
                        "\n    ca_file: ", dir_, "/k8s-ca.crt\n",
                        "    token_file: ", dir_, "/ca-token\n",
                        "    timeout: 2s\n", more);
  }

  void ServeCa(const std::string& config_yaml) {
    absl::Status served = ca_->Serve(config_yaml);
    ASSERT_TRUE(served.ok()) << served;
  }

  absl::StatusOr<client::IssuedCertificate> IssueWith(
      const std::string& token) {
    std::unique_ptr<client::CaClient> client = ca_->Client();
    if (client == nullptr) return absl::InternalError("no client");
    return client->IssueWithToken(token);
  }

  std::string Metrics() const {
    absl::StatusOr<HttpResponse> r =
        HttpGet("127.0.0.1", ca_->http_port(), "/metrics");
    return r.ok() ? r->body : "";
  }

  static SigningKey key_;
  std::string dir_;
  FakeApiServerTls tls_;
  std::unique_ptr<FakeKubeApiServer> api_;
  std::unique_ptr<CaInstance> ca_;
};

SigningKey CaTokenReviewTest::key_;

// --- Refusals ---------------------------------------------------------------

TEST_F(CaTokenReviewTest, ATokenOfADeletedPodIsRefusedAndNothingIssued) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml())));
  // Valid signature, issuer, audience and lifetime: only the API server
  // knows that its pod is gone.
  ASSERT_TRUE(
      api_->SetBehaviour(
              R"({"authenticated": false, "error": "[invalid bearer token, pod \"frontend-7c9d\" not found]"})")
          .ok());
  const std::string token = MintToken(key_, TokenClaims());
  absl::StatusOr<client::IssuedCertificate> r = IssueWith(token);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("TokenReview"));
  // The API server's reason is for the CA's log, not for the caller.
  EXPECT_THAT(std::string(r.status().message()), Not(HasSubstr("not found")));
  EXPECT_EQ(ca_->CountCertificates(), 0);
  RunResult list = ca_->Ctl({"list"});
  ASSERT_TRUE(list.status.Success()) << list.ToString();
  EXPECT_EQ(std::count(list.out.begin(), list.out.end(), '\n'), 1)
      << "header only:\n"
      << list.out;

  std::vector<std::string> refused = ca_->LogLines("issuance_refused");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_THAT(refused[0], HasSubstr(R"("reason":"bad_token")"));
  EXPECT_THAT(refused[0], HasSubstr("frontend-7c9d"));
  EXPECT_THAT(refused[0], Not(HasSubstr(token)));
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr(ReviewsCounted("refused", 1)));
  EXPECT_THAT(
      metrics,
      HasSubstr(
          R"(meshguard_ca_issuance_failures_total{reason="bad_token"} 1)"));

  // A refusal is not remembered: the next call asks again.
  EXPECT_EQ(IssueWith(token).status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(api_->Requests().size(), 2u);
}

TEST_F(CaTokenReviewTest, TheApiServerVouchingForAnotherIdentityIsRefused) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml())));
  for (const char* behaviour :
       {R"({"username": "system:serviceaccount:shop:admin"})",
        R"({"username": "system:serviceaccount:kube-system:frontend"})",
        R"({"audiences": ["https://kubernetes.default.svc"]})"}) {
    SCOPED_TRACE(behaviour);
    ASSERT_TRUE(api_->SetBehaviour(behaviour).ok());
    absl::StatusOr<client::IssuedCertificate> r =
        IssueWith(MintToken(key_, TokenClaims()));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
        << r.status();
  }
  EXPECT_EQ(ca_->CountCertificates(), 0);
}

TEST_F(CaTokenReviewTest,
       AnApiServerThatIsDownFailsUnavailableAndIssuesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml())));
  api_->Stop();
  absl::StatusOr<client::IssuedCertificate> r =
      IssueWith(MintToken(key_, TokenClaims()));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("token review failed: " + api_->url()));
  EXPECT_EQ(ca_->CountCertificates(), 0);
  std::vector<std::string> refused = ca_->LogLines("issuance_refused");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_THAT(refused[0], HasSubstr(R"("reason":"token_review_failed")"));
  EXPECT_THAT(Metrics(), HasSubstr(ReviewsCounted("failed", 1)));
}

TEST_F(CaTokenReviewTest, AnApiServerWithACertificateOfAnotherCaIsNotTrusted) {
  absl::StatusOr<FakeApiServerTls> impostor = FakeApiServerTls::Make("other");
  ASSERT_TRUE(impostor.ok());
  ASSERT_NO_FATAL_FAILURE(StartApi(*impostor));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml())));
  const std::string token = MintToken(key_, TokenClaims());
  absl::StatusOr<client::IssuedCertificate> r = IssueWith(token);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("TLS verification of the API server's certificate "
                        "failed"));
  EXPECT_EQ(ca_->CountCertificates(), 0);
  // Neither the caller's token nor the CA's own went to the impostor.
  EXPECT_TRUE(api_->Requests().empty());
}

TEST_F(CaTokenReviewTest, SlowOrBrokenAnswersFailUnavailableAndIssueNothing) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml("    cache_ttl: 0s\n"))));
  struct Case {
    const char* behaviour;
    const char* message;
  };
  const Case cases[] = {
      {R"({"delay": 4})", "no answer within 2s"},
      {R"({"padding": 70000})", "larger than 65536 bytes"},
      {R"({"http_status": 403, "raw_body": "{\"kind\":\"Status\"}"})",
       "HTTP 403"},
      {R"({"raw_body": "{\"kind\":\"TokenReview\""})", "not a TokenReview"},
      {R"({"omit_status": true})", "no status"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.behaviour);
    ASSERT_TRUE(api_->SetBehaviour(c.behaviour).ok());
    const absl::Time start = absl::Now();
    absl::StatusOr<client::IssuedCertificate> r =
        IssueWith(MintToken(key_, TokenClaims()));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.message));
    EXPECT_LT(absl::Now() - start, absl::Seconds(4));
  }
  EXPECT_EQ(ca_->CountCertificates(), 0);
}

TEST_F(CaTokenReviewTest, FailedReviewsAreNotChargedToTheCallersThrottle) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(
      ServeCa(Config(ReviewYaml("    cache_ttl: 0s\n"),
                     "rate_limit:\n  requests_per_second: 0.01\n"
                     "  burst: 2\n")));
  ASSERT_TRUE(
      api_->SetBehaviour(R"({"http_status": 503, "raw_body": "busy"})").ok());
  const std::string token = MintToken(key_, TokenClaims());
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(IssueWith(token).status().code(), absl::StatusCode::kUnavailable);
  }
  // The API server is back: the caller is not held back for its outage.
  ASSERT_TRUE(api_->SetBehaviour("{}").ok());
  absl::StatusOr<client::IssuedCertificate> r = IssueWith(token);
  ASSERT_TRUE(r.ok()) << r.status();

  // Refusals (the caller's fault) are charged, as for any bad token.
  ASSERT_TRUE(api_->SetBehaviour(R"({"authenticated": false})").ok());
  for (int i = 0; i < 2; ++i) {
    EXPECT_EQ(IssueWith(token).status().code(),
              absl::StatusCode::kUnauthenticated);
  }
  EXPECT_EQ(IssueWith(token).status().code(),
            absl::StatusCode::kResourceExhausted);
}

// --- Issued ----------------------------------------------------------------

TEST_F(CaTokenReviewTest, AnAuthenticatedTokenGetsItsCertificate) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml())));
  const std::string token = MintToken(key_, TokenClaims());
  absl::StatusOr<client::IssuedCertificate> r = IssueWith(token);
  ASSERT_TRUE(r.ok()) << r.status() << ca_->process()->DescribeOutput()
                      << api_->process()->DescribeOutput();
  EXPECT_EQ(r->spiffe_id, SpiffeIdFor("shop", "frontend"));
  EXPECT_EQ(ca_->CountCertificates(), 1);

  // What the API server got: the CA's own token, the caller's token and
  // the configured audience, as a v1 TokenReview.
  std::vector<FakeKubeApiServer::Request> seen = api_->Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/apis/authentication.k8s.io/v1/tokenreviews");
  EXPECT_EQ(seen[0].headers["authorization"],
            absl::StrCat("Bearer ", kCaOwnToken));
  meshguard::k8s::authentication::v1::TokenReview review;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(seen[0].body, &review).ok())
      << seen[0].body;
  EXPECT_EQ(review.api_version(), "authentication.k8s.io/v1");
  EXPECT_EQ(review.kind(), "TokenReview");
  EXPECT_EQ(review.spec().token(), token);
  EXPECT_THAT(review.spec().audiences(),
              ::testing::ElementsAre("meshguard-ca"));
}

TEST_F(CaTokenReviewTest, ASecondCallWithinCacheTtlIsNotReviewedAgain) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml("    cache_ttl: 60s\n"))));
  const std::string token = MintToken(key_, TokenClaims());
  ASSERT_TRUE(IssueWith(token).ok());
  ASSERT_TRUE(IssueWith(token).ok());
  EXPECT_EQ(api_->Requests().size(), 1u);
  EXPECT_EQ(ca_->CountCertificates(), 2);
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr(ReviewsCounted("authenticated", 1)));
  EXPECT_THAT(metrics, HasSubstr(ReviewsCounted("cached", 1)));

  // Another token (another pod) is reviewed on its own.
  TokenClaims other;
  other.sa = "orders";
  ASSERT_TRUE(IssueWith(MintToken(key_, other)).ok());
  EXPECT_EQ(api_->Requests().size(), 2u);
}

TEST_F(CaTokenReviewTest, RenewalsNeverAskTheApiServer) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml())));
  absl::StatusOr<client::IssuedCertificate> first =
      IssueWith(MintToken(key_, TokenClaims()));
  ASSERT_TRUE(first.ok()) << first.status();
  api_->Stop();
  std::unique_ptr<client::CaClient> client = ca_->Client();
  absl::StatusOr<client::IssuedCertificate> renewed =
      client->Renew(first->ChainPem(), first->key_pem);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->spiffe_id, first->spiffe_id);
}

// A review waits on the reviewer's threads, not on the CA's gRPC threads:
// bootstraps stuck behind a slow API server do not hold up renewals.
TEST_F(CaTokenReviewTest, ASlowApiServerHoldsUpBootstrapsOnly) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml("    cache_ttl: 0s\n"))));
  absl::StatusOr<client::IssuedCertificate> first =
      IssueWith(MintToken(key_, TokenClaims()));
  ASSERT_TRUE(first.ok()) << first.status();

  ASSERT_TRUE(api_->SetBehaviour(R"({"delay": 1.5})").ok());
  constexpr int kBootstraps = 8;  // more than the CA has gRPC threads
  std::vector<absl::Status> bootstrapped(kBootstraps);
  std::vector<std::thread> threads;
  for (int i = 0; i < kBootstraps; ++i) {
    threads.emplace_back([&, i] {
      TokenClaims claims;
      claims.sa = absl::StrCat("worker-", i);  // eight tokens, eight reviews
      bootstrapped[i] = IssueWith(MintToken(key_, claims)).status();
    });
  }
  for (int i = 0; i < 100 && api_->Requests().size() < 5; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(api_->Requests().size(), 5u) << "the bootstraps' reviews";

  // Answered while every review is still waiting for the API server.
  std::unique_ptr<client::CaClient> client = ca_->Client();
  const absl::Time start = absl::Now();
  absl::StatusOr<client::IssuedCertificate> renewed =
      client->Renew(first->ChainPem(), first->key_pem);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_LT(took, absl::Milliseconds(1000));

  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kBootstraps; ++i) {
    EXPECT_TRUE(bootstrapped[i].ok()) << i << ": " << bootstrapped[i];
  }
  EXPECT_EQ(api_->Requests().size(), 1u + kBootstraps);
  EXPECT_EQ(ca_->CountCertificates(), 2 + kBootstraps);
}

// Calls that bring the same token while its review is in flight wait for
// that review, even with the cache off: one request, one verdict for all.
TEST_F(CaTokenReviewTest, CallsWithOneTokenShareOneReview) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml("    cache_ttl: 0s\n"))));
  ASSERT_TRUE(api_->SetBehaviour(R"({"delay": 1})").ok());
  const std::string token = MintToken(key_, TokenClaims());
  constexpr int kCalls = 4;
  std::vector<absl::Status> issued(kCalls);
  std::vector<std::thread> threads;
  for (int i = 0; i < kCalls; ++i) {
    threads.emplace_back([&, i] { issued[i] = IssueWith(token).status(); });
  }
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kCalls; ++i) {
    EXPECT_TRUE(issued[i].ok()) << i << ": " << issued[i];
  }
  EXPECT_EQ(api_->Requests().size(), 1u);
  EXPECT_EQ(ca_->CountCertificates(), kCalls);
  const std::string metrics = Metrics();
  EXPECT_THAT(metrics, HasSubstr(ReviewsCounted("authenticated", 1)));
  EXPECT_THAT(metrics, HasSubstr(ReviewsCounted("joined", 3)));
}

// SIGTERM while bootstraps wait for the API server: the CA answers them
// (their review finishes, or they get UNAVAILABLE) and exits cleanly.
TEST_F(CaTokenReviewTest, StoppingWhileReviewsWaitExitsCleanly) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(ReviewYaml("    cache_ttl: 0s\n"))));
  ASSERT_TRUE(api_->SetBehaviour(R"({"delay": 1.5})").ok());
  constexpr int kBootstraps = 8;  // 4 sent, 4 in line
  std::vector<absl::Status> bootstrapped(kBootstraps);
  std::vector<std::thread> threads;
  for (int i = 0; i < kBootstraps; ++i) {
    threads.emplace_back([&, i] {
      TokenClaims claims;
      claims.sa = absl::StrCat("worker-", i);
      bootstrapped[i] = IssueWith(MintToken(key_, claims)).status();
    });
  }
  for (int i = 0; i < 100 && api_->Requests().size() < 4; ++i) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  ASSERT_GE(api_->Requests().size(), 4u);
  const absl::Time start = absl::Now();
  ExitStatus stopped = ca_->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));
  EXPECT_TRUE(stopped.Success())
      << stopped.ToString() << ca_->process()->DescribeOutput();
  for (std::thread& t : threads) t.join();
  for (int i = 0; i < kBootstraps; ++i) {
    EXPECT_TRUE(bootstrapped[i].ok() || absl::IsUnavailable(bootstrapped[i]) ||
                absl::IsCancelled(bootstrapped[i]))
        << i << ": " << bootstrapped[i];
  }
}

TEST_F(CaTokenReviewTest, InAPodTheApiServerComesFromTheEnvironment) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ca_->SetServeEnv({{"KUBERNETES_SERVICE_HOST", "127.0.0.1"},
                    {"KUBERNETES_SERVICE_PORT", absl::StrCat(api_->port())}});
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config(
      absl::StrCat("    enabled: true\n    ca_file: ", dir_, "/k8s-ca.crt\n",
                   "    token_file: ", dir_, "/ca-token\n"))));
  ASSERT_TRUE(IssueWith(MintToken(key_, TokenClaims())).ok());
  EXPECT_EQ(api_->Requests().size(), 1u);
}

TEST_F(CaTokenReviewTest, OffByDefaultTheApiServerIsNeverAsked) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_TRUE(api_->SetBehaviour(R"({"authenticated": false})").ok());
  ASSERT_NO_FATAL_FAILURE(ServeCa(Config("")));
  ASSERT_TRUE(IssueWith(MintToken(key_, TokenClaims())).ok());
  EXPECT_TRUE(api_->Requests().empty());
}

// --- Start ------------------------------------------------------------------

TEST_F(CaTokenReviewTest, AnUnusableSetupStopsTheCaAtStartNamingTheField) {
  struct Case {
    const char* name;
    std::string review_yaml;
    const char* error;
  };
  const Case cases[] = {
      // Not in a pod (the test's environment has no KUBERNETES_SERVICE_*).
      {"no_api_server",
       absl::StrCat("    enabled: true\n    ca_file: ", dir_,
                    "/k8s-ca.crt\n    token_file: ", dir_, "/ca-token\n"),
       "field kubernetes.token_review.api_server: not set"},
      {"unreadable_ca_file",
       absl::StrCat("    enabled: true\n    api_server: https://127.0.0.1:1\n",
                    "    ca_file: ", dir_,
                    "/missing.crt\n    token_file: ", dir_, "/ca-token\n"),
       "field kubernetes.token_review.ca_file: "},
      {"unreadable_token_file",
       absl::StrCat("    enabled: true\n    api_server: https://127.0.0.1:1\n",
                    "    ca_file: ", dir_,
                    "/k8s-ca.crt\n    token_file: ", dir_, "/missing-token\n"),
       "field kubernetes.token_review.token_file: "},
      {"plain_http",
       absl::StrCat("    enabled: true\n    api_server: http://127.0.0.1:1\n"),
       "field kubernetes.token_review.api_server: "},
      {"zero_timeout", "    enabled: true\n    timeout: 0s\n",
       "field kubernetes.token_review.timeout: "},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    absl::Status s = ca_->Serve(Config(c.review_yaml));
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.error));
    ca_->Stop();
  }
}

}  // namespace
}  // namespace meshguard::integration
