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
// Thread-safe: Review may be called from any thread, concurrently.
#ifndef MESHGUARD_IDENTITY_CA_TOKEN_REVIEWER_H_
#define MESHGUARD_IDENTITY_CA_TOKEN_REVIEWER_H_

#include <memory>
#include <string>

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
};

// One review's verdict (see DecideTokenReview) and where it came from.
struct TokenReviewResult {
  TokenReviewVerdict verdict;
  bool from_cache = false;
};

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

  // Reviews `token`, which JwtAuthenticator accepted as `identity`.
  TokenReviewResult Review(absl::string_view token,
                           const KubernetesIdentity& identity)
      ABSL_LOCKS_EXCLUDED(mu_, credential_mu_);

  size_t cache_size() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  TokenReviewer(TokenReviewerOptions options,
                std::unique_ptr<TokenReviewClient> client,
                const util::Clock* clock)
      : options_(std::move(options)),
        client_(std::move(client)),
        clock_(clock) {}

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
};

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_TOKEN_REVIEWER_H_
