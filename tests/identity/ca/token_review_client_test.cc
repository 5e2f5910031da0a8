// HttpsTokenReviewClient against a fake Kubernetes API server on 127.0.0.1
// (tests/integration/testing/fake_kube_apiserver.py): every way the
// exchange can fail first, each UNAVAILABLE with its cause, then what a
// good exchange puts on the wire.
#include "identity/ca/token_review_client.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/ca/token_review.h"
#include "tests/integration/testing/fake_kube_apiserver.h"
#include "tests/integration/testing/process.h"

namespace meshguard::ca {
namespace {

using ::meshguard::testing::FakeApiServerTls;
using ::meshguard::testing::FakeKubeApiServer;
using ::meshguard::testing::MakeTempDir;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::WriteFile;
using ::testing::HasSubstr;

constexpr char kToken[] =
    "eyJhbGciOiJSUzI1NiJ9.eyJrdWJlcm5ldGVzLmlvIjp7Im5hbWVzcGFjZSI6InNob3AiLCJz"
    "ZXJ2aWNlYWNjb3VudCI6eyJuYW1lIjoiZnJvbnRlbmQifX19.c2ln";  // shop/frontend
constexpr char kUser[] = "system:serviceaccount:shop:frontend";

class TokenReviewClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = MakeTempDir("review-client");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
    absl::StatusOr<FakeApiServerTls> tls = FakeApiServerTls::Make("cluster");
    ASSERT_TRUE(tls.ok()) << tls.status();
    tls_ = *std::move(tls);
    ASSERT_TRUE(WriteFile(ca_file(), tls_.ca_pem).ok());
  }

  std::string ca_file() const { return dir_ + "/ca.crt"; }

  void StartApi(const FakeApiServerTls& tls) {
    absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> api =
        FakeKubeApiServer::Start(tls);
    ASSERT_TRUE(api.ok()) << api.status();
    api_ = *std::move(api);
  }

  std::unique_ptr<HttpsTokenReviewClient> Client(const std::string& url) {
    absl::StatusOr<ApiServerUrl> server = ParseApiServerUrl(url);
    EXPECT_TRUE(server.ok()) << server.status();
    if (!server.ok()) return nullptr;
    absl::StatusOr<std::unique_ptr<HttpsTokenReviewClient>> client =
        HttpsTokenReviewClient::Create(*server, ca_file());
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  absl::StatusOr<TokenReviewHttpAnswer> Post(
      TokenReviewClient* client, absl::Duration timeout = absl::Seconds(5)) {
    return client->Post(TokenReviewRequestJson(kToken, "meshguard-ca"),
                        "ca-own-token", timeout);
  }

  std::string dir_;
  FakeApiServerTls tls_;
  std::unique_ptr<FakeKubeApiServer> api_;
};

// --- No usable answer: UNAVAILABLE, with the cause --------------------------

TEST_F(TokenReviewClientTest, ACertificateFromAnotherCaIsRefused) {
  absl::StatusOr<FakeApiServerTls> impostor = FakeApiServerTls::Make("other");
  ASSERT_TRUE(impostor.ok());
  ASSERT_NO_FATAL_FAILURE(StartApi(*impostor));
  std::unique_ptr<HttpsTokenReviewClient> client = Client(api_->url());
  ASSERT_NE(client, nullptr);
  absl::StatusOr<TokenReviewHttpAnswer> answer = Post(client.get());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(answer.status().message()),
              HasSubstr("TLS verification of the API server's certificate "
                        "failed: unable to get local issuer certificate"));
  EXPECT_THAT(std::string(answer.status().message()),
              HasSubstr("token review failed: " + api_->url()));
  EXPECT_TRUE(api_->Requests().empty()) << "the token left the CA";
}

TEST_F(TokenReviewClientTest, ACertificateForAnotherHostIsRefused) {
  // The cluster's CA, but not for the address dialled.
  absl::StatusOr<FakeApiServerTls> elsewhere =
      FakeApiServerTls::Make("cluster", /*ip_sans=*/{"10.96.0.1"},
                             /*dns_sans=*/{"kubernetes.default.svc"});
  ASSERT_TRUE(elsewhere.ok());
  ASSERT_TRUE(WriteFile(ca_file(), elsewhere->ca_pem).ok());
  ASSERT_NO_FATAL_FAILURE(StartApi(*elsewhere));
  std::unique_ptr<HttpsTokenReviewClient> client = Client(api_->url());
  ASSERT_NE(client, nullptr);
  absl::StatusOr<TokenReviewHttpAnswer> answer = Post(client.get());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(answer.status().message()),
              HasSubstr("IP address mismatch"));
  EXPECT_TRUE(api_->Requests().empty());
}

TEST_F(TokenReviewClientTest, NothingListeningIsRefusedAtOnce) {
  absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok());
  std::unique_ptr<HttpsTokenReviewClient> client =
      Client(absl::StrCat("https://127.0.0.1:", *port));
  ASSERT_NE(client, nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<TokenReviewHttpAnswer> answer = Post(client.get());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(answer.status().message()),
              HasSubstr("cannot connect (TCP connection refused"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(2));
}

TEST_F(TokenReviewClientTest, ASlowApiServerIsCutOffAtTheTimeout) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_TRUE(api_->SetBehaviour(R"({"delay": 5})").ok());
  std::unique_ptr<HttpsTokenReviewClient> client = Client(api_->url());
  ASSERT_NE(client, nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<TokenReviewHttpAnswer> answer =
      Post(client.get(), absl::Milliseconds(700));
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(answer.status().message()),
              HasSubstr("no answer within 700ms"));
  EXPECT_GE(took, absl::Milliseconds(650));
  EXPECT_LT(took, absl::Seconds(2));
}

TEST_F(TokenReviewClientTest, AnOversizedAnswerIsNotRead) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  ASSERT_TRUE(api_->SetBehaviour(R"({"padding": 70000})").ok());
  std::unique_ptr<HttpsTokenReviewClient> client = Client(api_->url());
  ASSERT_NE(client, nullptr);
  absl::StatusOr<TokenReviewHttpAnswer> answer = Post(client.get());
  EXPECT_EQ(answer.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(answer.status().message()),
              HasSubstr("larger than 65536 bytes"));
}

// --- Answers are brought back as they are --------------------------------

TEST_F(TokenReviewClientTest, ErrorStatusesAndOddBodiesComeBackForTheDecision) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  std::unique_ptr<HttpsTokenReviewClient> client = Client(api_->url());
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(
      api_->SetBehaviour(
              R"({"http_status": 403, "raw_body": "{\"kind\":\"Status\"}"})")
          .ok());
  absl::StatusOr<TokenReviewHttpAnswer> forbidden = Post(client.get());
  ASSERT_TRUE(forbidden.ok()) << forbidden.status();
  EXPECT_EQ(forbidden->status, 403);
  EXPECT_EQ(forbidden->body, R"({"kind":"Status"})");

  ASSERT_TRUE(api_->SetBehaviour(R"({"raw_body": "not json"})").ok());
  absl::StatusOr<TokenReviewHttpAnswer> garbage = Post(client.get());
  ASSERT_TRUE(garbage.ok()) << garbage.status();
  EXPECT_EQ(garbage->body, "not json");
  EXPECT_EQ(
      DecideTokenReview(garbage->status, garbage->body, {kUser, "meshguard-ca"})
          .status.code(),
      absl::StatusCode::kUnavailable);
}

TEST_F(TokenReviewClientTest, SendsAnAuthenticatedJsonPostAndReadsTheAnswer) {
  ASSERT_NO_FATAL_FAILURE(StartApi(tls_));
  std::unique_ptr<HttpsTokenReviewClient> client = Client(api_->url());
  ASSERT_NE(client, nullptr);
  absl::StatusOr<TokenReviewHttpAnswer> answer = Post(client.get());
  ASSERT_TRUE(answer.ok()) << answer.status() << "\n"
                           << api_->process()->DescribeOutput();
  EXPECT_EQ(answer->status, 201);
  EXPECT_TRUE(
      DecideTokenReview(answer->status, answer->body, {kUser, "meshguard-ca"})
          .status.ok())
      << answer->body;

  std::vector<FakeKubeApiServer::Request> seen = api_->Requests();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].path, "/apis/authentication.k8s.io/v1/tokenreviews");
  EXPECT_EQ(seen[0].headers["authorization"], "Bearer ca-own-token");
  EXPECT_EQ(seen[0].headers["content-type"], "application/json");
  EXPECT_EQ(seen[0].headers["host"], absl::StrCat("127.0.0.1:", api_->port()));
  EXPECT_EQ(seen[0].body, TokenReviewRequestJson(kToken, "meshguard-ca"));
}

TEST_F(TokenReviewClientTest, ADnsNameIsResolvedAndMustBeInTheCertificate) {
  absl::StatusOr<FakeApiServerTls> named = FakeApiServerTls::Make(
      "cluster", /*ip_sans=*/{}, /*dns_sans=*/{"localhost"});
  ASSERT_TRUE(named.ok());
  ASSERT_TRUE(WriteFile(ca_file(), named->ca_pem).ok());
  ASSERT_NO_FATAL_FAILURE(StartApi(*named));
  std::unique_ptr<HttpsTokenReviewClient> by_name =
      Client(absl::StrCat("https://localhost:", api_->port()));
  ASSERT_NE(by_name, nullptr);
  absl::StatusOr<TokenReviewHttpAnswer> answer = Post(by_name.get());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 201);
  EXPECT_EQ(api_->Requests().at(0).headers["host"],
            absl::StrCat("localhost:", api_->port()));

  // The same server by its IP: the certificate does not name it.
  std::unique_ptr<HttpsTokenReviewClient> by_ip = Client(api_->url());
  ASSERT_NE(by_ip, nullptr);
  EXPECT_THAT(std::string(Post(by_ip.get()).status().message()),
              HasSubstr("IP address mismatch"));
}

TEST_F(TokenReviewClientTest, NewRootsInCaFileAreUsedWithoutARestart) {
  absl::StatusOr<FakeApiServerTls> rotated = FakeApiServerTls::Make("next");
  ASSERT_TRUE(rotated.ok());
  ASSERT_NO_FATAL_FAILURE(StartApi(*rotated));  // serves the next CA's cert
  std::unique_ptr<HttpsTokenReviewClient> client = Client(api_->url());
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(Post(client.get()).status().code(), absl::StatusCode::kUnavailable);

  // A broken file keeps the old roots (still refusing the new server).
  ASSERT_TRUE(WriteFile(ca_file() + ".new", "garbage").ok());
  ASSERT_EQ(rename((ca_file() + ".new").c_str(), ca_file().c_str()), 0);
  EXPECT_EQ(Post(client.get()).status().code(), absl::StatusCode::kUnavailable);

  // The kubelet updates ca.crt with both CAs.
  ASSERT_TRUE(
      WriteFile(ca_file() + ".new", tls_.ca_pem + rotated->ca_pem).ok());
  ASSERT_EQ(rename((ca_file() + ".new").c_str(), ca_file().c_str()), 0);
  absl::StatusOr<TokenReviewHttpAnswer> answer = Post(client.get());
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 201);
}

}  // namespace
}  // namespace meshguard::ca
