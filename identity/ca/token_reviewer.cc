#include "identity/ca/token_reviewer.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/memory/memory.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
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

// A review that could not be done (UNAVAILABLE): the caller may retry.
TokenReviewResult Failed(absl::string_view why) {
  TokenReviewResult result;
  result.verdict.status = TokenReviewFailed(why);
  return result;
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
  if (options.max_concurrent_reviews < 1 || options.max_waiting_calls < 1) {
    return absl::InvalidArgumentError(
        "max_concurrent_reviews and max_waiting_calls must be at least 1");
  }
  auto reviewer = absl::WrapUnique(
      new TokenReviewer(std::move(options), std::move(client), clock));
  {
    absl::MutexLock lock(&reviewer->credential_mu_);
    reviewer->credential_ = *std::move(credential);
    reviewer->credential_version_ = *version;
  }
  for (int i = 0; i < reviewer->options_.max_concurrent_reviews; ++i) {
    reviewer->threads_.emplace_back([r = reviewer.get()] { r->Run(); });
  }
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

TokenReviewer::~TokenReviewer() { Stop(); }

void TokenReviewer::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  // What is left was never sent.
  std::vector<TokenReviewDone> waiters;
  {
    absl::MutexLock lock(&mu_);
    for (auto& [key, pending] : pending_) {
      for (TokenReviewDone& done : pending->waiters) {
        waiters.push_back(std::move(done));
      }
    }
    pending_.clear();
    line_.clear();
    waiting_calls_ = 0;
  }
  for (TokenReviewDone& done : waiters) {
    done(Failed("the CA is shutting down"));
  }
}

void TokenReviewer::ReviewAsync(absl::string_view token,
                                const KubernetesIdentity& identity,
                                TokenReviewDone done) {
  const std::string token_hash = crypto::Sha256Hex(token);
  std::optional<TokenReviewResult> answer;
  {
    absl::MutexLock lock(&mu_);
    answer = AnswerOrQueueLocked(token, token_hash, identity, done);
  }
  if (answer.has_value()) done(*std::move(answer));
}

std::optional<TokenReviewResult> TokenReviewer::AnswerOrQueueLocked(
    absl::string_view token, const std::string& token_hash,
    const KubernetesIdentity& identity, TokenReviewDone& done) {
  const absl::Time now = clock_->Now();
  if (auto cached = cache_.find(token_hash); cached != cache_.end()) {
    if (now < cached->second.until &&
        cached->second.username == identity.subject) {
      TokenReviewResult result;
      result.from_cache = true;
      return result;
    }
    cache_.erase(cached);
  }
  if (stopping_) return Failed("the CA is shutting down");
  if (waiting_calls_ >= options_.max_waiting_calls) {
    return Failed(
        absl::StrCat(waiting_calls_, " calls are already waiting for reviews"));
  }
  // One token can only carry one identity; the subject is in the key so
  // that a call claiming another is never answered for the first.
  std::string key = absl::StrCat(token_hash, " ", identity.subject);
  std::unique_ptr<Pending>& pending = pending_[key];
  if (pending == nullptr) {
    pending = std::make_unique<Pending>();
    pending->token = std::string(token);
    pending->identity = identity;
    pending->queued_at = now;
    line_.push_back(std::move(key));
  }
  pending->waiters.push_back(std::move(done));
  ++waiting_calls_;
  return std::nullopt;
}

TokenReviewResult TokenReviewer::Review(absl::string_view token,
                                        const KubernetesIdentity& identity) {
  absl::Notification answered;
  TokenReviewResult result;
  ReviewAsync(token, identity, [&](TokenReviewResult r) {
    result = std::move(r);
    answered.Notify();
  });
  answered.WaitForNotification();
  return result;
}

bool TokenReviewer::HasWorkLocked() const {
  return stopping_ || !line_.empty();
}

void TokenReviewer::Run() {
  for (;;) {
    std::string key;
    const Pending* pending = nullptr;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &TokenReviewer::HasWorkLocked));
      if (stopping_) return;
      key = std::move(line_.front());
      line_.pop_front();
      // Stays in pending_ (so later calls join it) until answered; its
      // token and identity do not change meanwhile.
      pending = pending_.at(key).get();
    }
    // Callers that have waited in line as long as a review may take are
    // not kept waiting for one more.
    TokenReviewResult result =
        clock_->Now() - pending->queued_at > options_.timeout
            ? Failed(absl::StrCat(
                  "waited longer than ", absl::FormatDuration(options_.timeout),
                  " (kubernetes.token_review.timeout) for a free review slot"))
            : Send(*pending);
    std::vector<TokenReviewDone> waiters;
    {
      absl::MutexLock lock(&mu_);
      auto node = pending_.extract(key);
      if (result.verdict.status.ok()) {
        CacheLocked(key.substr(0, key.find(' ')), node.mapped()->identity,
                    node.mapped()->queued_at);
      }
      waiters = std::move(node.mapped()->waiters);
      waiting_calls_ -= waiters.size();
    }
    for (size_t i = 0; i < waiters.size(); ++i) {
      TokenReviewResult r = result;
      if (i > 0) {
        r.joined = true;
        r.request_time = absl::ZeroDuration();
      }
      waiters[i](std::move(r));
    }
  }
}

TokenReviewResult TokenReviewer::Send(const Pending& pending) {
  const std::string request =
      TokenReviewRequestJson(pending.token, options_.audience);
  const absl::Time started = absl::Now();
  absl::StatusOr<TokenReviewHttpAnswer> answer =
      client_->Post(request, Credential(), options_.timeout);
  TokenReviewResult result;
  result.request_time = absl::Now() - started;
  if (!answer.ok()) {
    result.verdict.status = answer.status();
    return result;
  }
  result.verdict = DecideTokenReview(
      answer->status, answer->body,
      TokenReviewExpectation{pending.identity.subject, options_.audience});
  return result;
}

// A positive answer vouches for the token as of when it was asked for (no
// later than when its first caller queued it).
void TokenReviewer::CacheLocked(const std::string& token_hash,
                                const KubernetesIdentity& identity,
                                absl::Time asked_at) {
  if (options_.cache_ttl <= absl::ZeroDuration()) return;
  const absl::Time now = clock_->Now();
  const absl::Time until =
      std::min(identity.expires_at, asked_at + options_.cache_ttl);
  if (until <= now) return;
  if (cache_.size() >= options_.max_cache_entries) {
    absl::erase_if(
        cache_, [now](const auto& entry) { return entry.second.until <= now; });
    if (cache_.size() >= options_.max_cache_entries) cache_.clear();
  }
  cache_.insert_or_assign(token_hash, CachedReview{identity.subject, until});
}

size_t TokenReviewer::cache_size() const {
  absl::MutexLock lock(&mu_);
  return cache_.size();
}

}  // namespace meshguard::ca
