#include "identity/ca/token_review.h"

#include <arpa/inet.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "proto/k8s_token_review.pb.h"

namespace meshguard::ca {
namespace {

namespace k8s = ::meshguard::k8s::authentication::v1;

constexpr char kApiVersion[] = "authentication.k8s.io/v1";
constexpr char kKind[] = "TokenReview";

// Text from the API server in messages: short and escaped.
std::string Quote(absl::string_view s, size_t max = 64) {
  std::string out =
      absl::StrCat("\"", absl::CHexEscape(s.substr(0, max)), "\"");
  if (s.size() > max) absl::StrAppend(&out, "...");
  return out;
}

absl::Status Refused(absl::string_view why) {
  return absl::UnauthenticatedError(
      absl::StrCat("kubernetes service-account token: ", why));
}

bool IsIpv4(const std::string& host) {
  in_addr a;
  return inet_pton(AF_INET, host.c_str(), &a) == 1;
}

bool IsIpv6(const std::string& host) {
  in6_addr a;
  return inet_pton(AF_INET6, host.c_str(), &a) == 1;
}

bool IsHostNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '.';
}

// protobuf's JSON parser reads "yes", "1" and 1 into a bool field as true;
// a yes must be the JSON literal true. (Struct keeps JSON's own types.)
bool AuthenticatedIsJsonTrue(absl::string_view body) {
  google::protobuf::Struct answer;
  if (!google::protobuf::util::JsonStringToMessage(std::string(body), &answer)
           .ok()) {
    return false;
  }
  auto status = answer.fields().find("status");
  if (status == answer.fields().end() ||
      status->second.kind_case() != google::protobuf::Value::kStructValue) {
    return false;
  }
  const auto& fields = status->second.struct_value().fields();
  auto authenticated = fields.find("authenticated");
  return authenticated != fields.end() &&
         authenticated->second.kind_case() ==
             google::protobuf::Value::kBoolValue &&
         authenticated->second.bool_value();
}

}  // namespace

std::string ApiServerUrl::ToString() const {
  const bool v6 = host.find(':') != std::string::npos;
  return absl::StrCat("https://", v6 ? "[" : "", host, v6 ? "]" : "", ":",
                      port);
}

absl::StatusOr<ApiServerUrl> ParseApiServerUrl(absl::string_view url) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(Quote(url, 200), ": ", why));
  };
  absl::string_view rest = url;
  if (!absl::ConsumePrefix(&rest, "https://")) {
    return invalid("want https://host[:port] (TLS is required)");
  }
  absl::ConsumeSuffix(&rest, "/");
  if (rest.find_first_of("/?#@") != absl::string_view::npos) {
    return invalid("want https://host[:port], without a path, query or user");
  }
  ApiServerUrl out;
  absl::string_view port_text;
  if (absl::ConsumePrefix(&rest, "[")) {
    const size_t close = rest.find(']');
    if (close == absl::string_view::npos) return invalid("unclosed '['");
    out.host = std::string(rest.substr(0, close));
    if (!IsIpv6(out.host)) return invalid("not an IPv6 address in brackets");
    rest.remove_prefix(close + 1);
    if (!rest.empty()) {
      if (!absl::ConsumePrefix(&rest, ":")) {
        return invalid("want ':' and a port after ']'");
      }
      if (rest.empty()) return invalid("empty port");
    }
    port_text = rest;
  } else {
    const size_t colon = rest.find(':');
    out.host = std::string(rest.substr(0, colon));
    if (colon != absl::string_view::npos) {
      port_text = rest.substr(colon + 1);
      if (port_text.find(':') != absl::string_view::npos) {
        return invalid("put an IPv6 address in brackets");
      }
      if (port_text.empty()) return invalid("empty port");
    }
    if (out.host.empty()) return invalid("no host");
    if (!std::all_of(out.host.begin(), out.host.end(), IsHostNameChar)) {
      return invalid("the host is neither a DNS name nor an IP address");
    }
  }
  if (!port_text.empty() &&
      (!std::all_of(port_text.begin(), port_text.end(),
                    [](char c) { return absl::ascii_isdigit(c); }) ||
       !absl::SimpleAtoi(port_text, &out.port) || out.port < 1 ||
       out.port > 65535)) {
    return invalid("the port must be 1..65535");
  }
  out.host_is_ip = IsIpv4(out.host) || IsIpv6(out.host);
  return out;
}

absl::StatusOr<ApiServerUrl> ResolveApiServer(absl::string_view configured,
                                              const GetEnv& getenv) {
  if (!configured.empty()) return ParseApiServerUrl(configured);
  const char* host = getenv("KUBERNETES_SERVICE_HOST");
  const char* port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') {
    return absl::FailedPreconditionError(
        "not set, and KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT are "
        "not in the environment (not running in a pod?): set it to the "
        "Kubernetes API server's https://host:port");
  }
  const std::string host_text(host);
  const bool v6 = host_text.find(':') != std::string::npos;
  absl::StatusOr<ApiServerUrl> url = ParseApiServerUrl(absl::StrCat(
      "https://", v6 ? "[" : "", host_text, v6 ? "]" : "", ":", port));
  if (!url.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("from KUBERNETES_SERVICE_HOST / KUBERNETES_SERVICE_PORT: ",
                     url.status().message()));
  }
  return url;
}

std::string TokenReviewRequestJson(absl::string_view token,
                                   absl::string_view audience) {
  k8s::TokenReview review;
  review.set_api_version(kApiVersion);
  review.set_kind(kKind);
  review.mutable_spec()->set_token(std::string(token));
  review.mutable_spec()->add_audiences(std::string(audience));
  std::string json;
  // Cannot fail: every field is a valid UTF-8 string or was checked to be
  // base64url (the token) before.
  (void)google::protobuf::util::MessageToJsonString(review, &json);
  return json;
}

absl::Status TokenReviewFailed(absl::string_view why) {
  return absl::UnavailableError(absl::StrCat("token review failed: ", why));
}

TokenReviewVerdict DecideTokenReview(int http_status, absl::string_view body,
                                     const TokenReviewExpectation& expected) {
  TokenReviewVerdict verdict;
  if (http_status < 200 || http_status > 299) {
    std::string hint;
    if (http_status == 401) {
      hint =
          " (the CA's own token, kubernetes.token_review.token_file, was "
          "refused)";
    } else if (http_status == 403) {
      hint =
          " (the CA's service account may not create tokenreviews: bind "
          "it to a ClusterRole that allows that, as deploy/k8s/ca/rbac.yaml "
          "does)";
    }
    verdict.status = TokenReviewFailed(
        absl::StrCat("the API server answered HTTP ", http_status, hint));
    verdict.log_detail = absl::StrCat("response body: ", Quote(body, 512));
    return verdict;
  }
  if (body.size() > kMaxTokenReviewResponseBytes) {
    verdict.status = TokenReviewFailed(absl::StrCat(
        "the answer is larger than ", kMaxTokenReviewResponseBytes, " bytes"));
    return verdict;
  }
  k8s::TokenReview review;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  if (const auto parsed = google::protobuf::util::JsonStringToMessage(
          std::string(body), &review, options);
      !parsed.ok()) {
    verdict.status = TokenReviewFailed(
        absl::StrCat("the answer is not a TokenReview in JSON: ",
                     Quote(std::string(parsed.message()), 200)));
    return verdict;
  }
  if (review.kind() != kKind || review.api_version() != kApiVersion) {
    verdict.status = TokenReviewFailed(absl::StrCat(
        "the answer is kind ", Quote(review.kind()), " apiVersion ",
        Quote(review.api_version()), ", not a ", kApiVersion, " ", kKind));
    return verdict;
  }
  if (!review.has_status()) {
    verdict.status = TokenReviewFailed("the answer has no status");
    return verdict;
  }
  const k8s::TokenReviewStatus& status = review.status();
  if (status.authenticated() && !AuthenticatedIsJsonTrue(body)) {
    verdict.status =
        TokenReviewFailed("status.authenticated is not the JSON boolean true");
    return verdict;
  }
  if (!status.authenticated()) {
    verdict.status = Refused(
        "not authenticated by the API server's TokenReview (its pod "
        "or service account was deleted, or it was revoked)");
    verdict.log_detail = absl::StrCat(
        "status.error: ",
        status.error().empty() ? "(none)" : Quote(status.error(), 256));
    return verdict;
  }
  if (status.user().username() != expected.username) {
    verdict.status = Refused(
        "the API server's TokenReview names another identity than the "
        "token's claims");
    verdict.log_detail =
        absl::StrCat("TokenReview status.user.username ",
                     Quote(status.user().username(), 256), ", claims ",
                     Quote(expected.username, 256));
    return verdict;
  }
  // Empty: the API server did not narrow the audiences (an old one, or a
  // token for its own audience); the offline check already found ours in
  // the token's aud.
  if (!status.audiences().empty() &&
      std::find(status.audiences().begin(), status.audiences().end(),
                expected.audience) == status.audiences().end()) {
    verdict.status = Refused(
        absl::StrCat("the API server's TokenReview does not confirm audience ",
                     Quote(expected.audience)));
    std::vector<std::string> quoted;
    for (const std::string& a : status.audiences()) quoted.push_back(Quote(a));
    verdict.log_detail = absl::StrCat("TokenReview status.audiences [",
                                      absl::StrJoin(quoted, ", "), "]");
    return verdict;
  }
  verdict.status = absl::OkStatus();
  return verdict;
}

}  // namespace meshguard::ca
