// The pure parts of TokenReview: what the CA makes of each answer the API
// server could give (bad answers first), the request it sends, and where
// it finds the API server.
#include "identity/ca/token_review.h"

#include <map>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "proto/k8s_token_review.pb.h"

namespace meshguard::ca {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUser[] = "system:serviceaccount:shop:frontend";
constexpr char kAudience[] = "meshguard-ca";

const TokenReviewExpectation kExpected{kUser, kAudience};

// A TokenReview answer with `status_json` as its status (nothing if empty).
std::string Answer(const std::string& status_json) {
  return absl::StrCat(
      R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",)",
      R"("metadata":{"creationTimestamp":null},)",
      R"("spec":{"token":"x.y.z","audiences":["meshguard-ca"]})",
      status_json.empty() ? "" : absl::StrCat(R"(,"status":)", status_json),
      "}");
}

// What a current API server answers for a good token of shop/frontend.
std::string Authenticated(
    const std::string& username = kUser,
    const std::string& audiences = R"(["meshguard-ca"])") {
  return Answer(absl::StrCat(
      R"({"authenticated":true,"user":{"username":")", username,
      R"(","uid":"6a3b7d9e","groups":["system:serviceaccounts",)",
      R"("system:serviceaccounts:shop","system:authenticated"],)",
      R"("extra":{"authentication.kubernetes.io/pod-name":["frontend-7c9d"],)",
      R"("authentication.kubernetes.io/pod-uid":["1b2c"]}},)",
      R"("audiences":)", audiences, "}"));
}

// --- Answers the CA must not accept -------------------------------------

struct BadAnswer {
  const char* name;
  int http_status;
  std::string body;
  absl::StatusCode code;
  const char* message;     // in the status message
  const char* log_detail;  // in the log detail ("" : not checked)
};

TEST(DecideTokenReviewTest, RefusesEveryAnswerThatDoesNotVouchForTheToken) {
  const BadAnswer cases[] = {
      // The caller's fault: UNAUTHENTICATED.
      {"deleted_pod", 201,
       Answer(
           R"({"user":{},"error":"[invalid bearer token, pod \"frontend-7c9d\" not found]"})"),
       absl::StatusCode::kUnauthenticated, "not authenticated",
       "pod \\\"frontend-7c9d\\\" not found"},
      {"authenticated_false_no_error", 201,
       Answer(R"({"authenticated":false,"user":{}})"),
       absl::StatusCode::kUnauthenticated, "not authenticated",
       "status.error: (none)"},
      {"empty_status", 201, Answer("{}"), absl::StatusCode::kUnauthenticated,
       "not authenticated", ""},
      {"other_service_account", 201,
       Authenticated("system:serviceaccount:shop:admin"),
       absl::StatusCode::kUnauthenticated, "another identity",
       "system:serviceaccount:shop:admin"},
      {"other_namespace", 201,
       Authenticated("system:serviceaccount:payments:frontend"),
       absl::StatusCode::kUnauthenticated, "another identity", "payments"},
      {"a_user_not_a_service_account", 201, Authenticated("alice"),
       absl::StatusCode::kUnauthenticated, "another identity", "alice"},
      {"username_prefix_only", 201,
       Authenticated("system:serviceaccount:shop:frontend2"),
       absl::StatusCode::kUnauthenticated, "another identity", ""},
      {"no_username", 201, Answer(R"({"authenticated":true,"user":{}})"),
       absl::StatusCode::kUnauthenticated, "another identity", ""},
      {"audiences_without_ours", 201,
       Authenticated(kUser, R"(["https://kubernetes.default.svc"])"),
       absl::StatusCode::kUnauthenticated, "audience",
       "https://kubernetes.default.svc"},
      // The API server's (or the path's) fault: UNAVAILABLE.
      {"missing_status", 201, Answer(""), absl::StatusCode::kUnavailable,
       "no status", ""},
      {"null_status", 201,
       absl::StrCat(Answer("").substr(0, Answer("").size() - 1),
                    R"(,"status":null})"),
       absl::StatusCode::kUnavailable, "no status", ""},
      {"malformed_json", 201,
       R"({"kind":"TokenReview","status":{"authenticated":true)",
       absl::StatusCode::kUnavailable, "not a TokenReview in JSON", ""},
      {"not_json", 200, "<html>hello</html>", absl::StatusCode::kUnavailable,
       "not a TokenReview in JSON", ""},
      {"empty_body", 201, "", absl::StatusCode::kUnavailable,
       "not a TokenReview", ""},
      // protobuf's parser reads the first two as true, refuses the third.
      {"authenticated_as_string", 201,
       Answer(absl::StrCat(R"({"authenticated":"yes","user":{"username":")",
                           kUser, R"("}})")),
       absl::StatusCode::kUnavailable, "not the JSON boolean true", ""},
      {"authenticated_as_string_true", 201,
       Answer(absl::StrCat(R"({"authenticated":"true","user":{"username":")",
                           kUser, R"("}})")),
       absl::StatusCode::kUnavailable, "not the JSON boolean true", ""},
      {"authenticated_as_number", 201,
       Answer(absl::StrCat(R"({"authenticated":1,"user":{"username":")", kUser,
                           R"("}})")),
       absl::StatusCode::kUnavailable, "not a TokenReview in JSON", ""},
      {"duplicate_status", 201,
       absl::StrCat(Answer("").substr(0, Answer("").size() - 1),
                    R"(,"status":{"authenticated":false},)",
                    R"("status":{"authenticated":true,"user":{"username":")",
                    kUser, R"("}}})"),
       absl::StatusCode::kUnavailable, "", ""},
      {"json_array", 201, "[]", absl::StatusCode::kUnavailable,
       "not a TokenReview in JSON", ""},
      {"status_object_not_tokenreview", 201,
       R"({"kind":"Status","apiVersion":"v1","status":{"authenticated":true}})",
       absl::StatusCode::kUnavailable, "not a authentication.k8s.io/v1", ""},
      {"old_api_version", 201,
       absl::StrCat(
           R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1beta1",)",
           R"("status":{"authenticated":true,"user":{"username":")", kUser,
           R"("}}})"),
       absl::StatusCode::kUnavailable, "v1beta1", ""},
      {"forbidden", 403,
       R"({"kind":"Status","message":"tokenreviews.authentication.k8s.io is forbidden"})",
       absl::StatusCode::kUnavailable, "HTTP 403", "forbidden"},
      {"ca_token_refused", 401, R"({"kind":"Status","code":401})",
       absl::StatusCode::kUnavailable, "HTTP 401", ""},
      {"server_error", 500, Authenticated(), absl::StatusCode::kUnavailable,
       "HTTP 500", ""},
      {"no_answer_code", 0, Authenticated(), absl::StatusCode::kUnavailable,
       "HTTP 0", ""},
      {"redirect", 302, Authenticated(), absl::StatusCode::kUnavailable,
       "HTTP 302", ""},
      {"oversized_but_positive", 201,
       Authenticated().substr(0, Authenticated().size() - 1) +
           R"(,"padding":")" + std::string(kMaxTokenReviewResponseBytes, 'x') +
           R"("})",
       absl::StatusCode::kUnavailable, "larger than 65536 bytes", ""},
  };
  for (const BadAnswer& c : cases) {
    SCOPED_TRACE(c.name);
    TokenReviewVerdict v = DecideTokenReview(c.http_status, c.body, kExpected);
    EXPECT_EQ(v.status.code(), c.code) << v.status;
    EXPECT_THAT(std::string(v.status.message()), HasSubstr(c.message));
    if (c.code == absl::StatusCode::kUnavailable) {
      EXPECT_THAT(std::string(v.status.message()),
                  HasSubstr("token review failed: "));
    }
    if (*c.log_detail != '\0') {
      EXPECT_THAT(v.log_detail, HasSubstr(c.log_detail));
    }
  }
}

TEST(DecideTokenReviewTest, TheApiServersReasonStaysOutOfTheCallersMessage) {
  TokenReviewVerdict deleted = DecideTokenReview(
      201,
      Answer(
          R"({"user":{},"error":"service account shop/frontend-secret-uid-42 has been deleted"})"),
      kExpected);
  EXPECT_EQ(deleted.status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(deleted.status.message()), Not(HasSubstr("uid-42")));
  EXPECT_THAT(deleted.log_detail, HasSubstr("uid-42"));

  TokenReviewVerdict other = DecideTokenReview(
      201, Authenticated("system:serviceaccount:kube-system:root-ish"),
      kExpected);
  EXPECT_THAT(std::string(other.status.message()), Not(HasSubstr("root-ish")));
  EXPECT_THAT(other.log_detail, HasSubstr("root-ish"));
}

TEST(DecideTokenReviewTest, AnApiServerErrorIsQuotedShortAndEscaped) {
  TokenReviewVerdict v = DecideTokenReview(
      201,
      Answer(absl::StrCat(R"({"user":{},"error":"line1\nline2)",
                          std::string(1000, 'e'), R"("})")),
      kExpected);
  EXPECT_THAT(v.log_detail, HasSubstr("line1\\nline2"));
  EXPECT_LT(v.log_detail.size(), 400u);
}

// --- Answers the CA accepts ---------------------------------------------

TEST(DecideTokenReviewTest, AcceptsAuthenticatedForTheClaimedIdentity) {
  for (int code : {200, 201}) {
    TokenReviewVerdict v = DecideTokenReview(code, Authenticated(), kExpected);
    EXPECT_TRUE(v.status.ok()) << code << ": " << v.status;
  }
}

TEST(DecideTokenReviewTest, AudiencesLeftOutOrListingOthersToo) {
  // An API server that does not narrow audiences says nothing about them;
  // the offline check already found ours in the token's aud.
  EXPECT_TRUE(DecideTokenReview(201, Authenticated(kUser, "[]"), kExpected)
                  .status.ok());
  EXPECT_TRUE(
      DecideTokenReview(
          201,
          Answer(absl::StrCat(R"({"authenticated":true,"user":{"username":")",
                              kUser, R"("}})")),
          kExpected)
          .status.ok());
  EXPECT_TRUE(
      DecideTokenReview(
          201, Authenticated(kUser, R"(["other","meshguard-ca"])"), kExpected)
          .status.ok());
}

TEST(DecideTokenReviewTest, UnknownFieldsOfNewerApiServersAreIgnored) {
  const std::string answer = absl::StrCat(
      R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",)",
      R"("metadata":{"managedFields":[{"manager":"x"}]},"futureField":[1,{}],)",
      R"("status":{"authenticated":true,"newThing":{"a":1},)",
      R"("user":{"username":")", kUser, R"(","extra":{}}}})");
  EXPECT_TRUE(DecideTokenReview(201, answer, kExpected).status.ok());
}

TEST(DecideTokenReviewTest, ExactlyTheSizeLimitIsStillRead) {
  std::string answer = Authenticated();
  const std::string open = R"(,"padding":")";
  const std::string close = R"("})";
  answer.pop_back();  // the final '}'
  const size_t filler =
      kMaxTokenReviewResponseBytes - answer.size() - open.size() - close.size();
  answer += open + std::string(filler, 'x') + close;
  ASSERT_EQ(answer.size(), kMaxTokenReviewResponseBytes);
  EXPECT_TRUE(DecideTokenReview(201, answer, kExpected).status.ok());
}

// --- The request ----------------------------------------------------------

TEST(TokenReviewRequestJsonTest, IsATokenReviewWithTheTokenAndOurAudience) {
  const std::string json = TokenReviewRequestJson("aaa.bbb.ccc", kAudience);
  EXPECT_EQ(json,
            R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview",)"
            R"("spec":{"token":"aaa.bbb.ccc","audiences":["meshguard-ca"]}})");
}

// --- The API server's address ----------------------------------------------

TEST(ParseApiServerUrlTest, RefusesWhatIsNotAnHttpsHostAndPort) {
  const char* bad[] = {
      "",
      "http://10.0.0.1:443",
      "10.0.0.1:443",
      "https://",
      "https://:443",
      "https://10.0.0.1:",
      "https://10.0.0.1:0",
      "https://10.0.0.1:65536",
      "https://10.0.0.1:44x",
      "https://10.0.0.1:+443",
      "https://10.0.0.1/api",
      "https://10.0.0.1:443/apis/authentication.k8s.io",
      "https://user@10.0.0.1",
      "https://10.0.0.1?x=1",
      "https://fd00::1:443",
      "https://[fd00::1",
      "https://[not-v6]:443",
      "https://[fd00::1]443",
      "https://[fd00::1]:",
      "https://ku_be:443",
      "https://kube rnetes",
  };
  for (const char* url : bad) {
    SCOPED_TRACE(url);
    absl::StatusOr<ApiServerUrl> parsed = ParseApiServerUrl(url);
    EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(ParseApiServerUrlTest, HostsPortsAndIpLiterals) {
  struct Case {
    const char* url;
    const char* host;
    int port;
    bool ip;
    const char* normalized;
  };
  const Case cases[] = {
      {"https://10.96.0.1:443", "10.96.0.1", 443, true,
       "https://10.96.0.1:443"},
      {"https://10.96.0.1", "10.96.0.1", 443, true, "https://10.96.0.1:443"},
      {"https://kubernetes.default.svc/", "kubernetes.default.svc", 443, false,
       "https://kubernetes.default.svc:443"},
      {"https://api.example.com:6443", "api.example.com", 6443, false,
       "https://api.example.com:6443"},
      {"https://[fd00:10:96::1]:443", "fd00:10:96::1", 443, true,
       "https://[fd00:10:96::1]:443"},
      {"https://[::1]", "::1", 443, true, "https://[::1]:443"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    absl::StatusOr<ApiServerUrl> parsed = ParseApiServerUrl(c.url);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->host, c.host);
    EXPECT_EQ(parsed->port, c.port);
    EXPECT_EQ(parsed->host_is_ip, c.ip);
    EXPECT_EQ(parsed->ToString(), c.normalized);
  }
}

GetEnv EnvOf(std::map<std::string, std::string> vars) {
  auto held =
      std::make_shared<std::map<std::string, std::string>>(std::move(vars));
  return [held](const char* name) -> const char* {
    auto it = held->find(name);
    return it == held->end() ? nullptr : it->second.c_str();
  };
}

TEST(ResolveApiServerTest, OutsideAPodWithoutApiServerIsAnError) {
  for (const auto& env : std::vector<std::map<std::string, std::string>>{
           {},
           {{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}},
           {{"KUBERNETES_SERVICE_PORT", "443"}},
           {{"KUBERNETES_SERVICE_HOST", ""},
            {"KUBERNETES_SERVICE_PORT", "443"}},
       }) {
    absl::StatusOr<ApiServerUrl> url = ResolveApiServer("", EnvOf(env));
    EXPECT_EQ(url.status().code(), absl::StatusCode::kFailedPrecondition);
    EXPECT_THAT(std::string(url.status().message()),
                HasSubstr("KUBERNETES_SERVICE_HOST"));
  }
  absl::StatusOr<ApiServerUrl> garbage =
      ResolveApiServer("", EnvOf({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                  {"KUBERNETES_SERVICE_PORT", "https"}}));
  EXPECT_EQ(garbage.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(garbage.status().message()),
              HasSubstr("KUBERNETES_SERVICE_PORT"));
}

TEST(ResolveApiServerTest, InAPodFromTheServiceEnvironment) {
  absl::StatusOr<ApiServerUrl> v4 =
      ResolveApiServer("", EnvOf({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                                  {"KUBERNETES_SERVICE_PORT", "443"}}));
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->ToString(), "https://10.96.0.1:443");
  EXPECT_TRUE(v4->host_is_ip);

  // An IPv6 service address is bracketed, as client-go does.
  absl::StatusOr<ApiServerUrl> v6 =
      ResolveApiServer("", EnvOf({{"KUBERNETES_SERVICE_HOST", "fd00:10:96::1"},
                                  {"KUBERNETES_SERVICE_PORT", "6443"}}));
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "fd00:10:96::1");
  EXPECT_EQ(v6->port, 6443);
  EXPECT_EQ(v6->ToString(), "https://[fd00:10:96::1]:6443");

  // The configured one wins over the environment.
  absl::StatusOr<ApiServerUrl> configured =
      ResolveApiServer("https://api.example.com:6443",
                       EnvOf({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"},
                              {"KUBERNETES_SERVICE_PORT", "443"}}));
  ASSERT_TRUE(configured.ok());
  EXPECT_EQ(configured->host, "api.example.com");
}

}  // namespace
}  // namespace meshguard::ca
