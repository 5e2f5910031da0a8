// The pure parts of reviewing a Kubernetes service-account token with the
// API server's TokenReview (authentication.k8s.io/v1): where the API server
// is, what to send it, and what its answer means. No I/O here, so each rule
// is tested with a table of answers (tests/identity/ca/token_review_test.cc);
// token_review_client.h sends the request and token_reviewer.h puts the two
// together.
//
// Pure functions, thread-safe.
#ifndef MESHGUARD_IDENTITY_CA_TOKEN_REVIEW_H_
#define MESHGUARD_IDENTITY_CA_TOKEN_REVIEW_H_

#include <cstddef>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshguard::ca {

inline constexpr absl::string_view kTokenReviewPath =
    "/apis/authentication.k8s.io/v1/tokenreviews";
inline constexpr absl::string_view kDefaultTokenReviewCaFile =
    "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
inline constexpr absl::string_view kDefaultTokenReviewTokenFile =
    "/var/run/secrets/kubernetes.io/serviceaccount/token";
// A TokenReview answer is well under 2 KiB; a larger one is not one.
inline constexpr size_t kMaxTokenReviewResponseBytes = 64 * 1024;

// kubernetes.token_review.timeout and cache_ttl: defaults and bounds.
inline constexpr absl::Duration kDefaultTokenReviewTimeout = absl::Seconds(5);
inline constexpr absl::Duration kMinTokenReviewTimeout =
    absl::Milliseconds(100);
inline constexpr absl::Duration kMaxTokenReviewTimeout = absl::Seconds(60);
inline constexpr absl::Duration kDefaultTokenReviewCacheTtl = absl::Seconds(10);
inline constexpr absl::Duration kMaxTokenReviewCacheTtl = absl::Hours(1);

// An API server address: "https://host[:port]" with an optional trailing
// "/". IPv6 literals in brackets.
struct ApiServerUrl {
  std::string host;  // without brackets
  int port = 443;
  bool host_is_ip = false;
  // "https://host:port" as given back (brackets kept), for messages.
  std::string ToString() const;
};

// INVALID_ARGUMENT saying what is wrong (not https, a path, a bad port...).
absl::StatusOr<ApiServerUrl> ParseApiServerUrl(absl::string_view url);

// The API server to use: `configured` if set, else the in-cluster one from
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT ("https://HOST:PORT",
// an IPv6 HOST bracketed), as client-go's InClusterConfig does. `getenv`
// is injected for tests. FAILED_PRECONDITION when neither is there,
// INVALID_ARGUMENT when the result is not a usable URL.
using GetEnv = std::function<const char*(const char*)>;
absl::StatusOr<ApiServerUrl> ResolveApiServer(absl::string_view configured,
                                              const GetEnv& getenv);

// The request body: {"apiVersion":"authentication.k8s.io/v1",
// "kind":"TokenReview","spec":{"token":T,"audiences":[A]}}.
std::string TokenReviewRequestJson(absl::string_view token,
                                   absl::string_view audience);

// What the CA needs the review to confirm.
struct TokenReviewExpectation {
  // "system:serviceaccount:<ns>:<sa>", from the token's own verified claims.
  std::string username;
  // The audience the CA asked for (kubernetes.audience).
  std::string audience;
};

// The decision on one answer of the API server.
struct TokenReviewVerdict {
  // OK: accept the token. UNAUTHENTICATED: the API server does not vouch
  // for it, or not for the identity its claims name (the caller's fault).
  // UNAVAILABLE "token review failed: ...": no usable answer (the API
  // server's fault; fail closed, the caller retries).
  absl::Status status;
  // For the CA's log only: what the API server said (status.error, the
  // username it found), which the caller has not proven it may know.
  std::string log_detail;
};

// UNAVAILABLE "token review failed: <why>": a review that could not be
// done (not the caller's fault; it may retry).
absl::Status TokenReviewFailed(absl::string_view why);

// Judges the API server's HTTP answer (status code and body) to a
// TokenReview. Accepts only a 2xx TokenReview whose status.authenticated is
// true, whose status.user.username is `expected.username`, and whose
// status.audiences, when not empty, contains `expected.audience`. A non-2xx
// code, a body over kMaxTokenReviewResponseBytes, malformed JSON, or an
// object that is not a TokenReview with a status is UNAVAILABLE.
TokenReviewVerdict DecideTokenReview(int http_status, absl::string_view body,
                                     const TokenReviewExpectation& expected);

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_TOKEN_REVIEW_H_
