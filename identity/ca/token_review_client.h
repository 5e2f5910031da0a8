// Sends a TokenReview to the Kubernetes API server and brings back its HTTP
// answer, nothing more: what the answer means is DecideTokenReview's
// business (token_review.h).
//
// TokenReviewClient is the interface TokenReviewer uses (tests give it a
// FakeTokenReviewClient); HttpsTokenReviewClient is the real one: libevent's
// evhttp client over a bufferevent_openssl connection, one connection per
// review, verified against the configured roots and the API server's host
// name or IP.
#ifndef MESHGUARD_IDENTITY_CA_TOKEN_REVIEW_CLIENT_H_
#define MESHGUARD_IDENTITY_CA_TOKEN_REVIEW_CLIENT_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "identity/ca/token_review.h"
#include "identity/crypto/ssl_ptr.h"
#include "identity/util/file_util.h"

namespace meshguard::ca {

// A complete HTTP answer, whatever its status code.
struct TokenReviewHttpAnswer {
  int status = 0;
  std::string body;
};

class TokenReviewClient {
 public:
  virtual ~TokenReviewClient() = default;

  // POSTs `request_json` to kTokenReviewPath with "Authorization: Bearer
  // <bearer_token>", and returns the answer; UNAVAILABLE "token review
  // failed: <cause>" when no complete answer arrives (cannot connect, TLS
  // verification failed, closed early, body over
  // kMaxTokenReviewResponseBytes, not done within `timeout`).
  //
  // Thread-safe; blocks the calling thread (a gRPC handler's) for at most
  // about `timeout`.
  virtual absl::StatusOr<TokenReviewHttpAnswer> Post(
      absl::string_view request_json, absl::string_view bearer_token,
      absl::Duration timeout) = 0;
};

class HttpsTokenReviewClient final : public TokenReviewClient {
 public:
  // Loads the roots in `ca_file` (PEM, one or more certificates); the error
  // names the file. Later, the file is re-read when it changes (the
  // cluster's CA rotates); a re-read that fails keeps the roots already
  // loaded and is logged.
  static absl::StatusOr<std::unique_ptr<HttpsTokenReviewClient>> Create(
      ApiServerUrl server, std::string ca_file);

  absl::StatusOr<TokenReviewHttpAnswer> Post(absl::string_view request_json,
                                             absl::string_view bearer_token,
                                             absl::Duration timeout) override;

 private:
  using SslCtxRef = std::shared_ptr<SSL_CTX>;

  HttpsTokenReviewClient(ApiServerUrl server, std::string ca_file)
      : server_(std::move(server)), ca_file_(std::move(ca_file)) {}

  // A client context trusting the roots in `ca_file_` now.
  absl::StatusOr<SslCtxRef> LoadContext() const;
  // The current context, reloaded first if ca_file_ changed.
  SslCtxRef Context() ABSL_LOCKS_EXCLUDED(mu_);

  const ApiServerUrl server_;
  const std::string ca_file_;

  absl::Mutex mu_;
  // Immutable once published; a review holds its own reference.
  SslCtxRef ctx_ ABSL_GUARDED_BY(mu_);
  util::FileVersion ca_version_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_TOKEN_REVIEW_CLIENT_H_
