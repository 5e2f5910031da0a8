#include "identity/ca/token_reviewer.h"

#include <algorithm>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/random.h"
#include "identity/util/json_log.h"
#include "identity/util/proto_duration.h"

namespace meshguard::ca {
namespace {

// A projected token is about 1 KiB.
constexpr size_t kMaxCredentialBytes = 64 * 1024;

using ::meshguard::util::ToAbsl;

absl::Status InField(absl::string_view field, const absl::Status& s) {
  return absl::Status(
      s.code(), absl::StrCat("config field kubernetes.token_review.", field,
                             ": ", s.message()));
}

absl::StatusOr<std::string> ReadCredential(const std::string& path) {
  absl::StatusOr<std::string> data = util::ReadFile(path, kMaxCredentialBytes);
  if (!data.ok()) return data.status();
  std::string token(absl::StripAsciiWhitespace(*data));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is empty"));
  }
  return token;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TokenReviewer>> TokenReviewer::Create(
    const meshguard::config::v1::KubernetesAuth& config, const GetEnv& getenv,
    const util::Clock* clock) {
  const meshguard::config::v1::KubernetesTokenReview& review =
      config.token_review();
  absl::StatusOr<ApiServerUrl> server =
      ResolveApiServer(review.api_server(), getenv);
  if (!server.ok()) return InField("api_server", server.status());
  absl::StatusOr<std::unique_ptr<HttpsTokenReviewClient>> client =
      HttpsTokenReviewClient::Create(*server, review.ca_file());
  if (!client.ok()) return InField("ca_file", client.status());
  TokenReviewerOptions options;
  options.audience = config.audience();
  options.token_file = review.token_file();
  options.timeout = ToAbsl(review.timeout());
  options.cache_ttl = ToAbsl(review.cache_ttl());
  absl::StatusOr<std::unique_ptr<TokenReviewer>> reviewer =
      CreateWithClient(std::move(options), *std::move(client), clock);
  if (!reviewer.ok()) return InField("token_file", reviewer.status());
  util::LogLine("info", "token_review_enabled")
      .Add("api_server", server->ToString())
      .Add("ca_file", review.ca_file())
      .Add("token_file", review.token_file())
      .Add("timeout", absl::FormatDuration(ToAbsl(review.timeout())))
      .Add("cache_ttl", absl::FormatDuration(ToAbsl(review.cache_ttl())))
      .Emit();
  return reviewer;
}

absl::StatusOr<std::unique_ptr<TokenReviewer>> TokenReviewer::CreateWithClient(
    TokenReviewerOptions options, std::unique_ptr<TokenReviewClient> client,
    const util::Clock* clock) {
  absl::StatusOr<util::FileVersion> version =
      util::StatFileVersion(options.token_file);
  if (!version.ok()) return version.status();
  absl::StatusOr<std::string> credential = ReadCredential(options.token_file);
  if (!credential.ok()) return credential.status();
  auto reviewer = absl::WrapUnique(
      new TokenReviewer(std::move(options), std::move(client), clock));
  absl::MutexLock lock(&reviewer->credential_mu_);
  reviewer->credential_ = *std::move(credential);
  reviewer->credential_version_ = *version;
  return reviewer;
}

std::string TokenReviewer::Credential() {
  absl::StatusOr<util::FileVersion> version =
      util::StatFileVersion(options_.token_file);
  absl::MutexLock lock(&credential_mu_);
  if (!version.ok() || *version == credential_version_) return credential_;
  absl::StatusOr<std::string> fresh = ReadCredential(options_.token_file);
  if (!fresh.ok()) {
    // Not remembered: the next review tries again (the kubelet may have
    // been half-way through replacing it).
    util::LogLine("warn", "token_review_token_file_unreadable")
        .Add("token_file", options_.token_file)
        .Add("message", fresh.status().ToString())
        .Emit();
    return credential_;
  }
  credential_ = *std::move(fresh);
  credential_version_ = *version;
  return credential_;
}

TokenReviewResult TokenReviewer::Review(absl::string_view token,
                                        const KubernetesIdentity& identity) {
  const std::string key = crypto::Sha256Hex(token);
  if (options_.cache_ttl > absl::ZeroDuration()) {
    const absl::Time now = clock_->Now();
    absl::MutexLock lock(&mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      if (now < it->second.until && it->second.username == identity.subject) {
        return TokenReviewResult{TokenReviewVerdict{absl::OkStatus(), ""},
                                 /*from_cache=*/true};
      }
      cache_.erase(it);
    }
  }

  const std::string request = TokenReviewRequestJson(token, options_.audience);
  // A positive answer vouches for the token as of when it was asked for.
  const absl::Time asked_at = clock_->Now();
  absl::StatusOr<TokenReviewHttpAnswer> answer =
      client_->Post(request, Credential(), options_.timeout);
  TokenReviewResult result;
  if (!answer.ok()) {
    result.verdict.status = answer.status();
    return result;
  }
  result.verdict = DecideTokenReview(
      answer->status, answer->body,
      TokenReviewExpectation{identity.subject, options_.audience});
  if (!result.verdict.status.ok() ||
      options_.cache_ttl <= absl::ZeroDuration()) {
    return result;
  }
  const absl::Time now = clock_->Now();
  const absl::Time until =
      std::min(identity.expires_at, asked_at + options_.cache_ttl);
  if (until <= now) return result;
  absl::MutexLock lock(&mu_);
  if (cache_.size() >= options_.max_cache_entries) {
    absl::erase_if(
        cache_, [now](const auto& entry) { return entry.second.until <= now; });
    if (cache_.size() >= options_.max_cache_entries) cache_.clear();
  }
  cache_.insert_or_assign(key, CachedReview{identity.subject, until});
  return result;
}

size_t TokenReviewer::cache_size() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

}  // namespace meshguard::ca
