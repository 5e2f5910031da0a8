// kubernetes.token_review in ca.yaml: the YAML as an operator writes it,
// its defaults, and every setup that cannot work refused at start with the
// field named (ValidateCaConfig for what the file alone says,
// TokenReviewer::Create for the environment and the files).
#include <map>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/ca/ca_material.h"
#include "identity/ca/token_review.h"
#include "identity/ca/token_reviewer.h"
#include "identity/util/clock.h"
#include "identity/util/yaml_config.h"
#include "proto/config.pb.h"
#include "tests/identity/crypto/testing/cert_factory.h"
#include "tests/integration/testing/process.h"

namespace meshguard::ca {
namespace {

using ::meshguard::config::v1::CaConfig;
using ::meshguard::testing::MakeTempDir;
using ::meshguard::testing::WriteFile;
using ::testing::HasSubstr;

// ca.yaml as an operator writes it, defaulted; `data_dir` and a JWKS are
// set so that only token_review is at issue.
absl::StatusOr<CaConfig> Load(const std::string& token_review_yaml,
                              bool with_jwks = true) {
  CaConfig config;
  const std::string yaml = absl::StrCat(
      "data_dir: /var/lib/meshguard-ca\n", "kubernetes:\n",
      with_jwks ? "  jwks_file: /etc/meshguard-ca/jwks/jwks.json\n" : "",
      token_review_yaml.empty() ? "" : "  token_review:\n", token_review_yaml);
  if (absl::Status s = util::ParseYamlToMessage(yaml, "ca.yaml", &config);
      !s.ok()) {
    return s;
  }
  ApplyCaDefaults(&config);
  return config;
}

absl::Duration ToAbsl(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

TEST(TokenReviewConfigTest, RefusesSettingsThatCannotWork) {
  struct Case {
    const char* yaml;
    bool with_jwks;
    const char* error;  // the whole message must contain it
  };
  const Case cases[] = {
      {"    enabled: true\n    timeout: 0s\n", true,
       "field kubernetes.token_review.timeout: 0s is outside [0.100s, 60s]"},
      {"    timeout: 0.05s\n", true, "field kubernetes.token_review.timeout"},
      {"    timeout: 61s\n", true, "field kubernetes.token_review.timeout"},
      {"    timeout: -5s\n", true, "field kubernetes.token_review.timeout"},
      {"    cache_ttl: -1s\n", true,
       "field kubernetes.token_review.cache_ttl: -1s is outside [0s, 3600s]"},
      {"    cache_ttl: 3601s\n", true,
       "field kubernetes.token_review.cache_ttl"},
      {"    api_server: http://10.96.0.1:443\n", true,
       "field kubernetes.token_review.api_server: \"http://10.96.0.1:443\": "
       "want https://"},
      {"    api_server: https://10.96.0.1:443/api\n", true,
       "field kubernetes.token_review.api_server"},
      {"    api_server: https://fd00::1\n", true,
       "field kubernetes.token_review.api_server"},
      {"    enabled: true\n", false,
       "field kubernetes.token_review.enabled: reviews follow the offline "
       "token checks, which are off"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.yaml);
    absl::StatusOr<CaConfig> config = Load(c.yaml, c.with_jwks);
    ASSERT_TRUE(config.ok()) << config.status();
    absl::Status s = ValidateCaConfig(*config);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.error));
  }
}

TEST(TokenReviewConfigTest, UnknownFieldsAndBadDurationsDoNotParse) {
  EXPECT_THAT(
      std::string(Load("    api_sever: https://x\n").status().message()),
      HasSubstr("token_review.api_sever"));
  EXPECT_FALSE(Load("    timeout: 5\n").ok());  // durations need "Ns"
  EXPECT_FALSE(Load("    enabled: maybe\n").ok());
}

TEST(TokenReviewConfigTest, OffByDefaultWithInClusterDefaults) {
  absl::StatusOr<CaConfig> config = Load("");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(ValidateCaConfig(*config).ok());
  const auto& review = config->kubernetes().token_review();
  EXPECT_FALSE(review.enabled());
  EXPECT_EQ(review.api_server(), "");  // from the environment, at start
  EXPECT_EQ(review.ca_file(),
            "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt");
  EXPECT_EQ(review.token_file(),
            "/var/run/secrets/kubernetes.io/serviceaccount/token");
  EXPECT_EQ(ToAbsl(review.timeout()), absl::Seconds(5));
  EXPECT_EQ(ToAbsl(review.cache_ttl()), absl::Seconds(10));
}

TEST(TokenReviewConfigTest, ExplicitValuesAreKeptAndZeroCacheTtlTurnsItOff) {
  absl::StatusOr<CaConfig> config = Load(
      "    enabled: true\n"
      "    api_server: https://[fd00:10:96::1]:6443\n"
      "    ca_file: /etc/k8s/ca.crt\n"
      "    token_file: /etc/k8s/token\n"
      "    timeout: 1.5s\n"
      "    cache_ttl: 0s\n");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(ValidateCaConfig(*config).ok()) << ValidateCaConfig(*config);
  const auto& review = config->kubernetes().token_review();
  EXPECT_EQ(review.ca_file(), "/etc/k8s/ca.crt");
  EXPECT_EQ(review.token_file(), "/etc/k8s/token");
  EXPECT_EQ(ToAbsl(review.timeout()), absl::Milliseconds(1500));
  EXPECT_TRUE(review.has_cache_ttl());
  EXPECT_EQ(ToAbsl(review.cache_ttl()), absl::ZeroDuration());
}

// --- At start: the environment and the files --------------------------------

class TokenReviewStartTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = MakeTempDir("review-start");
    ASSERT_TRUE(dir.ok());
    dir_ = *dir;
    // Any CA certificate will do as the roots.
    absl::StatusOr<crypto::testing::TestCert> root =
        crypto::testing::MakeCert(crypto::testing::RootSpec("kubernetes"));
    ASSERT_TRUE(root.ok()) << root.status();
    ASSERT_TRUE(WriteFile(dir_ + "/ca.crt", root->Pem()).ok());
    ASSERT_TRUE(WriteFile(dir_ + "/token", "ca-token\n").ok());
  }

  absl::Status Create(const std::string& extra_yaml,
                      std::map<std::string, std::string> env = {}) {
    absl::StatusOr<CaConfig> config = Load(absl::StrCat(
        "    enabled: true\n    ca_file: ", dir_,
        "/ca.crt\n    token_file: ", dir_, "/token\n", extra_yaml));
    if (!config.ok()) return config.status();
    if (absl::Status s = ValidateCaConfig(*config); !s.ok()) return s;
    absl::StatusOr<std::unique_ptr<TokenReviewer>> reviewer =
        TokenReviewer::Create(
            config->kubernetes(),
            [env](const char* name) -> const char* {
              auto it = env.find(name);
              return it == env.end() ? nullptr : it->second.c_str();
            },
            util::RealClock());
    return reviewer.status();
  }

  std::string dir_;
};

TEST_F(TokenReviewStartTest, NoApiServerOutsideAPodNamesTheField) {
  absl::Status s = Create("");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("field kubernetes.token_review.api_server: not set, "
                        "and KUBERNETES_SERVICE_HOST"));
}

TEST_F(TokenReviewStartTest, AnUnusableCaFileNamesTheFieldAndTheFile) {
  const std::string api = "    api_server: https://127.0.0.1:6443\n";
  ASSERT_EQ(unlink((dir_ + "/ca.crt").c_str()), 0);
  absl::Status missing = Create(api);
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()),
              HasSubstr("field kubernetes.token_review.ca_file: "));
  EXPECT_THAT(std::string(missing.message()), HasSubstr(dir_ + "/ca.crt"));

  ASSERT_TRUE(WriteFile(dir_ + "/ca.crt", "not a certificate\n").ok());
  absl::Status garbage = Create(api);
  EXPECT_EQ(garbage.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(garbage.message()),
              HasSubstr("field kubernetes.token_review.ca_file: "));
}

TEST_F(TokenReviewStartTest, AnUnreadableCredentialNamesTheField) {
  ASSERT_EQ(unlink((dir_ + "/token").c_str()), 0);
  absl::Status s = Create("    api_server: https://127.0.0.1:6443\n");
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("field kubernetes.token_review.token_file: "));
}

TEST_F(TokenReviewStartTest, InAPodTheApiServerComesFromTheEnvironment) {
  EXPECT_TRUE(Create("", {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                          {"KUBERNETES_SERVICE_PORT", "443"}})
                  .ok());
  absl::Status bad = Create("", {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                 {"KUBERNETES_SERVICE_PORT", "x"}});
  EXPECT_THAT(std::string(bad.message()),
              HasSubstr("field kubernetes.token_review.api_server: from "
                        "KUBERNETES_SERVICE_HOST"));
}

}  // namespace
}  // namespace meshguard::ca
