// Asks the Kubernetes API server whether a service-account token that
// passed JwtAuthenticator's offline checks is still good (TokenReview), so
// that the token of a deleted pod or service account stops authenticating
// before it expires. This is what SPIRE's k8s_psat attestor and Istio's CA
// do.
//
// Per review: the CA's own token (token_file, re-read when it changes), the
// request from TokenReviewRequestJson, one POST through a TokenReviewClient
// bounded by `timeout`, and the answer judged by DecideTokenReview.
// Positive verdicts are cached by the SHA-256 of the token until the
// earlier of the token's exp and now + cache_ttl; refusals and failures
// never are.
//
// Reviews run on the reviewer's own threads (max_concurrent_reviews of
// them), never on the caller's: a gRPC handler hands a review over and
// returns, so a slow API server holds up bootstraps only, not the CA's
// other calls. Calls that bring the same token while its review is in
// flight or in line join it and share its verdict (one request to the API
// server). The line is bounded (max_waiting_calls) and a review that waited
// in it longer than `timeout` fails without being sent.
//
// Thread-safe: ReviewAsync and Review may be called from any thread,
// concurrently.
#ifndef MESHGUARD_IDENTITY_CA_TOKEN_REVIEWER_H_
#define MESHGUARD_IDENTITY_CA_TOKEN_REVIEWER_H_

#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "identity/ca/jwt_authenticator.h"
#include "identity/ca/token_review.h"
#include "identity/ca/token_review_client.h"
#include "identity/util/clock.h"
#include "identity/util/file_util.h"
#include "proto/config.pb.h"

namespace meshguard::ca {

struct TokenReviewerOptions {
  std::string audience;    // kubernetes.audience
  std::string token_file;  // the CA's own credential
  absl::Duration timeout = kDefaultTokenReviewTimeout;
  absl::Duration cache_ttl = kDefaultTokenReviewCacheTtl;  // zero: no cache
  // Most cached verdicts; past it, expired ones are dropped, then all.
  size_t max_cache_entries = 10000;
  // Requests to the API server at once; each is a thread of the reviewer
  // waiting for its answer. More reviews wait in line.
  int max_concurrent_reviews = 4;
  // Calls waiting for a review, in line or joined to one in flight; past
  // it, a call that needs a review gets UNAVAILABLE at once.
  size_t max_waiting_calls = 1024;
};

// One review's verdict (see DecideTokenReview) and where it came from.
struct TokenReviewResult {
  TokenReviewVerdict verdict;
  bool from_cache = false;
  // The verdict of a review another call had started for the same token:
  // no request of this call's own.
  bool joined = false;
  // How long the API server took (the request this verdict came from);
  // zero when from the cache, joined, or never sent.
  absl::Duration request_time = absl::ZeroDuration();
};

// Receives a review's verdict; see TokenReviewer::ReviewAsync for the
// thread it runs on.
using TokenReviewDone = std::function<void(TokenReviewResult)>;

class TokenReviewer final {
 public:
  // The real thing, from a defaulted and validated config (ApplyCaDefaults,
  // ValidateCaConfig): resolves kubernetes.token_review.api_server (from
  // `getenv` when unset), loads ca_file and reads token_file. Errors name
  // the field: "field kubernetes.token_review.ca_file: ...".
  static absl::StatusOr<std::unique_ptr<TokenReviewer>> Create(
      const meshguard::config::v1::KubernetesAuth& config, const GetEnv& getenv,
      const util::Clock* clock);

  // With any client (tests: a fake). Reads options.token_file now; NOT_FOUND
  // or INVALID_ARGUMENT (empty) naming it.
  static absl::StatusOr<std::unique_ptr<TokenReviewer>> CreateWithClient(
      TokenReviewerOptions options, std::unique_ptr<TokenReviewClient> client,
      const util::Clock* clock);

  // Stops the reviewer's threads once each has finished the review it is
  // sending (at most about `timeout`); calls still in line get UNAVAILABLE,
  // and so does every later call that needs a review. Idempotent; not to be
  // called from a `done` callback.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  ~TokenReviewer();

  // Reviews `token`, which JwtAuthenticator accepted as `identity`, and
  // hands the verdict to `done`: on the calling thread when the cache
  // answers or the line is full, otherwise on one of the reviewer's threads
  // once the API server has answered (or the review failed).
  void ReviewAsync(absl::string_view token, const KubernetesIdentity& identity,
                   TokenReviewDone done) ABSL_LOCKS_EXCLUDED(mu_);

  // The same, waiting for the verdict on the calling thread.
  TokenReviewResult Review(absl::string_view token,
                           const KubernetesIdentity& identity)
      ABSL_LOCKS_EXCLUDED(mu_);

  size_t cache_size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  TokenReviewer(TokenReviewerOptions options,
                std::unique_ptr<TokenReviewClient> client,
                const util::Clock* clock)
      : options_(std::move(options)),
        client_(std::move(client)),
        clock_(clock) {}

  // A review in line or in flight, and the calls waiting for its verdict.
  struct Pending {
    std::string token;
    KubernetesIdentity identity;
    absl::Time queued_at;
    std::vector<TokenReviewDone> waiters;
  };

  // The verdict for a call that can have one now (from the cache, or a
  // refusal: stopping, the line full); otherwise `done` waits for the
  // review of `token` (in flight, or queued now) and nothing is returned.
  std::optional<TokenReviewResult> AnswerOrQueueLocked(
      absl::string_view token, const std::string& token_hash,
      const KubernetesIdentity& identity, TokenReviewDone& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A reviewer thread: takes the oldest review in line, sends it, caches a
  // positive verdict and answers every call that waited for it.
  void Run() ABSL_LOCKS_EXCLUDED(mu_);
  bool HasWorkLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Sends one review to the API server and judges the answer.
  TokenReviewResult Send(const Pending& pending) ABSL_LOCKS_EXCLUDED(mu_);
  void CacheLocked(const std::string& key, const KubernetesIdentity& identity,
                   absl::Time asked_at) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // The CA's token as of now: re-read when token_file changed; a re-read
  // that fails (the kubelet mid-swap, an empty file) keeps the last good
  // one and is logged.
  std::string Credential() ABSL_LOCKS_EXCLUDED(credential_mu_);

  const TokenReviewerOptions options_;
  const std::unique_ptr<TokenReviewClient> client_;
  const util::Clock* const clock_;

  absl::Mutex credential_mu_;
  std::string credential_ ABSL_GUARDED_BY(credential_mu_);
  util::FileVersion credential_version_ ABSL_GUARDED_BY(credential_mu_);

  struct CachedReview {
    std::string username;
    absl::Time until;
  };
  mutable absl::Mutex mu_;
  // SHA-256 (hex) of the token -> its positive review.
  absl::flat_hash_map<std::string, CachedReview> cache_ ABSL_GUARDED_BY(mu_);
  // SHA-256 (hex) of the token and the subject it claims -> its review in
  // line or in flight; `line_` holds the keys of those not yet sent, oldest
  // first.
  absl::flat_hash_map<std::string, std::unique_ptr<Pending>> pending_
      ABSL_GUARDED_BY(mu_);
  std::deque<std::string> line_ ABSL_GUARDED_BY(mu_);
  size_t waiting_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_TOKEN_REVIEWER_H_
