// TokenReviewer with a fake client and a fake clock: which reviews go to
// the API server and which come from the cache, what the API server is
// sent, the CA's own token re-read when it rotates, failures passed on as
// they are, and the reviewer's threads: a review never blocks its caller,
// calls with one token share one request, and the line is bounded.
#include "identity/ca/token_reviewer.h"

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "identity/util/clock.h"
#include "identity/util/file_util.h"
#include "proto/k8s_token_review.pb.h"
#include "tests/integration/testing/process.h"

namespace meshguard::ca {
namespace {

using ::meshguard::testing::MakeTempDir;
using ::meshguard::testing::WriteFile;
using ::testing::HasSubstr;

constexpr char kAudience[] = "meshguard-ca";

// Answers from a script (the last one repeats) and records what it got.
class FakeTokenReviewClient final : public TokenReviewClient {
 public:
  struct Call {
    std::string request_json;
    std::string bearer_token;
    absl::Duration timeout;
  };

  absl::StatusOr<TokenReviewHttpAnswer> Post(absl::string_view request_json,
                                             absl::string_view bearer_token,
                                             absl::Duration timeout) override {
    absl::MutexLock lock(&mu_);
    calls_.push_back(
        {std::string(request_json), std::string(bearer_token), timeout});
    // An API server that has not answered yet.
    ++in_progress_;
    max_in_progress_ = std::max(max_in_progress_, in_progress_);
    mu_.Await(absl::Condition(
        +[](bool* held) { return !*held; }, &held_));
    --in_progress_;
    if (answers_.size() > 1) {
      auto next = answers_.front();
      answers_.pop_front();
      return next;
    }
    if (answers_.empty()) return absl::UnavailableError("no answer scripted");
    return answers_.front();
  }

  void Answer(absl::StatusOr<TokenReviewHttpAnswer> answer) {
    absl::MutexLock lock(&mu_);
    answers_.clear();
    answers_.push_back(std::move(answer));
  }
  std::vector<Call> calls() const {
    absl::MutexLock lock(&mu_);
    return calls_;
  }

  // From Hold() until Release(), requests wait for their answer.
  void Hold() {
    absl::MutexLock lock(&mu_);
    held_ = true;
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    held_ = false;
  }
  // Waits until `n` requests are waiting for their answer; false after 10 s.
  bool AwaitInProgress(int n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return in_progress_ >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(10));
  }
  int max_in_progress() const {
    absl::MutexLock lock(&mu_);
    return max_in_progress_;
  }

 private:
  mutable absl::Mutex mu_;
  std::deque<absl::StatusOr<TokenReviewHttpAnswer>> answers_;
  std::vector<Call> calls_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int in_progress_ ABSL_GUARDED_BY(mu_) = 0;
  int max_in_progress_ ABSL_GUARDED_BY(mu_) = 0;
};

// Verdicts handed to ReviewAsync's callback, and on which threads.
class Verdicts {
 public:
  TokenReviewDone Add() {
    return [this](TokenReviewResult result) {
      absl::MutexLock lock(&mu_);
      results_.push_back(std::move(result));
      threads_.push_back(std::this_thread::get_id());
    };
  }
  // Waits for `n` verdicts; false after 10 s.
  bool Await(size_t n) {
    absl::MutexLock lock(&mu_);
    auto reached = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return results_.size() >= n;
    };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), absl::Seconds(10));
  }
  std::vector<TokenReviewResult> results() const {
    absl::MutexLock lock(&mu_);
    return results_;
  }
  std::vector<std::thread::id> threads() const {
    absl::MutexLock lock(&mu_);
    return threads_;
  }

 private:
  mutable absl::Mutex mu_;
  std::vector<TokenReviewResult> results_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread::id> threads_ ABSL_GUARDED_BY(mu_);
};

TokenReviewHttpAnswer AuthenticatedAs(const std::string& username) {
  return {
      201,
      absl::StrCat(
          R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",)",
          R"("status":{"authenticated":true,"user":{"username":")", username,
          R"("},"audiences":["meshguard-ca"]}})")};
}

TokenReviewHttpAnswer NotAuthenticated() {
  return {201,
          R"({"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1",)"
          R"("status":{"user":{},"error":"pod deleted"}})"};
}

KubernetesIdentity Identity(const std::string& ns, const std::string& sa,
                            absl::Time expires_at) {
  KubernetesIdentity id;
  id.namespace_name = ns;
  id.service_account = sa;
  id.subject = absl::StrCat("system:serviceaccount:", ns, ":", sa);
  id.expires_at = expires_at;
  return id;
}

class TokenReviewerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir = MakeTempDir("reviewer");
    ASSERT_TRUE(dir.ok());
    token_file_ = *dir + "/token";
    ASSERT_TRUE(WriteFile(token_file_, "ca-token-1\n").ok());
  }

  void TearDown() override {
    // A test that failed half-way may leave requests held.
    if (client_ != nullptr) client_->Release();
    reviewer_.reset();
  }

  void Make(absl::Duration cache_ttl, size_t max_entries = 10000,
            int max_concurrent = 4, size_t max_waiting = 1024) {
    auto client = std::make_unique<FakeTokenReviewClient>();
    client_ = client.get();
    TokenReviewerOptions options;
    options.audience = kAudience;
    options.token_file = token_file_;
    options.timeout = absl::Seconds(3);
    options.cache_ttl = cache_ttl;
    options.max_cache_entries = max_entries;
    options.max_concurrent_reviews = max_concurrent;
    options.max_waiting_calls = max_waiting;
    absl::StatusOr<std::unique_ptr<TokenReviewer>> reviewer =
        TokenReviewer::CreateWithClient(options, std::move(client), &clock_);
    ASSERT_TRUE(reviewer.ok()) << reviewer.status();
    reviewer_ = *std::move(reviewer);
  }

  // shop/frontend, with a token good for an hour.
  KubernetesIdentity Frontend() const {
    return Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  }

  // Holds the API server's answers and starts a review of `token` that
  // waits for one.
  void StartHeld(absl::string_view token, const KubernetesIdentity& id,
                 Verdicts* verdicts) {
    client_->Hold();
    reviewer_->ReviewAsync(token, id, verdicts->Add());
    ASSERT_TRUE(client_->AwaitInProgress(1));
  }

  util::FakeClock clock_;
  std::string token_file_;
  FakeTokenReviewClient* client_ = nullptr;
  std::unique_ptr<TokenReviewer> reviewer_;
};

// --- Refusals and failures ------------------------------------------------

TEST_F(TokenReviewerTest, RefusalsAreNeverCached) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  client_->Answer(NotAuthenticated());
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  for (int i = 0; i < 3; ++i) {
    TokenReviewResult r = reviewer_->Review("tok", id);
    EXPECT_EQ(r.verdict.status.code(), absl::StatusCode::kUnauthenticated);
    EXPECT_FALSE(r.from_cache);
  }
  EXPECT_EQ(client_->calls().size(), 3u);
  EXPECT_EQ(reviewer_->cache_size(), 0u);

  // Once the API server vouches for it again, that is what counts.
  client_->Answer(AuthenticatedAs(id.subject));
  EXPECT_TRUE(reviewer_->Review("tok", id).verdict.status.ok());
}

TEST_F(TokenReviewerTest, FailuresPassThroughAndAreNeverCached) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  client_->Answer(absl::UnavailableError(
      "token review failed: https://10.96.0.1:443: cannot connect"));
  TokenReviewResult down = reviewer_->Review("tok", id);
  EXPECT_EQ(down.verdict.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(down.verdict.status.message()),
              HasSubstr("cannot connect"));
  client_->Answer(TokenReviewHttpAnswer{503, "overloaded"});
  TokenReviewResult busy = reviewer_->Review("tok", id);
  EXPECT_EQ(busy.verdict.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(busy.verdict.status.message()),
              HasSubstr("HTTP 503"));
  EXPECT_EQ(reviewer_->cache_size(), 0u);
  EXPECT_EQ(client_->calls().size(), 2u);
}

TEST_F(TokenReviewerTest, APositiveReviewForAnotherIdentityIsARefusal) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  client_->Answer(AuthenticatedAs("system:serviceaccount:shop:admin"));
  TokenReviewResult r = reviewer_->Review(
      "tok", Identity("shop", "frontend", clock_.Now() + absl::Hours(1)));
  EXPECT_EQ(r.verdict.status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(reviewer_->cache_size(), 0u);
}

TEST_F(TokenReviewerTest, ACachedReviewIsNotLentToAnotherIdentity) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity frontend =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  client_->Answer(AuthenticatedAs(frontend.subject));
  ASSERT_TRUE(reviewer_->Review("tok", frontend).verdict.status.ok());
  // The same token bytes can only carry one identity; if a caller ever
  // managed otherwise, the API server is asked again.
  client_->Answer(AuthenticatedAs(frontend.subject));
  TokenReviewResult r = reviewer_->Review(
      "tok", Identity("shop", "admin", clock_.Now() + absl::Hours(1)));
  EXPECT_FALSE(r.from_cache);
  EXPECT_EQ(r.verdict.status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(client_->calls().size(), 2u);
}

// --- The cache --------------------------------------------------------------

TEST_F(TokenReviewerTest, ASecondCallWithinCacheTtlIsNotReviewedAgain) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  client_->Answer(AuthenticatedAs(id.subject));
  TokenReviewResult first = reviewer_->Review("tok", id);
  ASSERT_TRUE(first.verdict.status.ok()) << first.verdict.status;
  EXPECT_FALSE(first.from_cache);

  clock_.Advance(absl::Seconds(9));
  TokenReviewResult second = reviewer_->Review("tok", id);
  EXPECT_TRUE(second.verdict.status.ok());
  EXPECT_TRUE(second.from_cache);
  EXPECT_EQ(client_->calls().size(), 1u);

  // Another token is reviewed on its own.
  EXPECT_FALSE(reviewer_->Review("tok2", id).from_cache);
  EXPECT_EQ(client_->calls().size(), 2u);

  // Past cache_ttl, the API server is asked again, and its answer counts.
  clock_.Advance(absl::Seconds(2));
  client_->Answer(NotAuthenticated());
  TokenReviewResult later = reviewer_->Review("tok", id);
  EXPECT_FALSE(later.from_cache);
  EXPECT_EQ(later.verdict.status.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(client_->calls().size(), 3u);
}

TEST_F(TokenReviewerTest, TheCacheNeverOutlivesTheToken) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(60)));
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Seconds(5));
  client_->Answer(AuthenticatedAs(id.subject));
  ASSERT_TRUE(reviewer_->Review("tok", id).verdict.status.ok());
  clock_.Advance(absl::Seconds(4));
  EXPECT_TRUE(reviewer_->Review("tok", id).from_cache);
  clock_.Advance(absl::Seconds(1));
  EXPECT_FALSE(reviewer_->Review("tok", id).from_cache);
  EXPECT_EQ(client_->calls().size(), 2u);

  // A token past its exp (the offline check allows clock skew) is never
  // cached at all.
  const KubernetesIdentity expired =
      Identity("shop", "frontend", clock_.Now() - absl::Seconds(1));
  EXPECT_TRUE(reviewer_->Review("old", expired).verdict.status.ok());
  EXPECT_FALSE(reviewer_->Review("old", expired).from_cache);
}

TEST_F(TokenReviewerTest, ZeroCacheTtlReviewsEveryCall) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::ZeroDuration()));
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  client_->Answer(AuthenticatedAs(id.subject));
  for (int i = 0; i < 3; ++i) {
    TokenReviewResult r = reviewer_->Review("tok", id);
    EXPECT_TRUE(r.verdict.status.ok());
    EXPECT_FALSE(r.from_cache);
  }
  EXPECT_EQ(client_->calls().size(), 3u);
  EXPECT_EQ(reviewer_->cache_size(), 0u);
}

TEST_F(TokenReviewerTest, TheCacheIsBounded) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10), /*max_entries=*/4));
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  client_->Answer(AuthenticatedAs(id.subject));
  for (int i = 0; i < 10; ++i) {
    ASSERT_TRUE(
        reviewer_->Review(absl::StrCat("tok", i), id).verdict.status.ok());
    EXPECT_LE(reviewer_->cache_size(), 4u);
  }
}

// --- What the API server is sent --------------------------------------------

TEST_F(TokenReviewerTest, SendsTheTokenOurAudienceAndTheCasOwnCredential) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::ZeroDuration()));
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  client_->Answer(AuthenticatedAs(id.subject));
  ASSERT_TRUE(reviewer_->Review("the.caller.token", id).verdict.status.ok());
  std::vector<FakeTokenReviewClient::Call> calls = client_->calls();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0].bearer_token, "ca-token-1");  // trailing newline gone
  EXPECT_EQ(calls[0].timeout, absl::Seconds(3));
  meshguard::k8s::authentication::v1::TokenReview sent;
  ASSERT_TRUE(
      google::protobuf::util::JsonStringToMessage(calls[0].request_json, &sent)
          .ok())
      << calls[0].request_json;
  EXPECT_EQ(sent.api_version(), "authentication.k8s.io/v1");
  EXPECT_EQ(sent.kind(), "TokenReview");
  EXPECT_EQ(sent.spec().token(), "the.caller.token");
  ASSERT_EQ(sent.spec().audiences_size(), 1);
  EXPECT_EQ(sent.spec().audiences(0), kAudience);
}

TEST_F(TokenReviewerTest, TheCasOwnTokenIsReReadWhenTheKubeletRotatesIt) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::ZeroDuration()));
  const KubernetesIdentity id =
      Identity("shop", "frontend", clock_.Now() + absl::Hours(1));
  client_->Answer(AuthenticatedAs(id.subject));
  reviewer_->Review("tok", id);

  // The kubelet writes a new file and swaps it in (a new inode).
  ASSERT_TRUE(WriteFile(token_file_ + ".new", "ca-token-2").ok());
  ASSERT_EQ(rename((token_file_ + ".new").c_str(), token_file_.c_str()), 0);
  reviewer_->Review("tok", id);

  // Gone or empty for a moment: the last good one is kept.
  ASSERT_EQ(unlink(token_file_.c_str()), 0);
  reviewer_->Review("tok", id);
  ASSERT_TRUE(WriteFile(token_file_ + ".new", "\n").ok());
  ASSERT_EQ(rename((token_file_ + ".new").c_str(), token_file_.c_str()), 0);
  reviewer_->Review("tok", id);
  ASSERT_TRUE(WriteFile(token_file_ + ".new", "ca-token-3\n").ok());
  ASSERT_EQ(rename((token_file_ + ".new").c_str(), token_file_.c_str()), 0);
  reviewer_->Review("tok", id);

  std::vector<std::string> sent;
  for (const auto& call : client_->calls()) sent.push_back(call.bearer_token);
  EXPECT_THAT(sent,
              ::testing::ElementsAre("ca-token-1", "ca-token-2", "ca-token-2",
                                     "ca-token-2", "ca-token-3"));
}

TEST_F(TokenReviewerTest, AMissingOrEmptyCredentialAtStartIsAnError) {
  TokenReviewerOptions options;
  options.audience = kAudience;
  options.token_file = token_file_ + ".missing";
  absl::StatusOr<std::unique_ptr<TokenReviewer>> missing =
      TokenReviewer::CreateWithClient(
          options, std::make_unique<FakeTokenReviewClient>(), &clock_);
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()),
              HasSubstr(options.token_file));

  ASSERT_TRUE(WriteFile(token_file_, " \n").ok());
  options.token_file = token_file_;
  absl::StatusOr<std::unique_ptr<TokenReviewer>> empty =
      TokenReviewer::CreateWithClient(
          options, std::make_unique<FakeTokenReviewClient>(), &clock_);
  EXPECT_EQ(empty.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(empty.status().message()), HasSubstr("empty"));
}

// --- The reviewer's threads -------------------------------------------------

TEST_F(TokenReviewerTest, AReviewNeverBlocksItsCaller) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity id = Frontend();
  client_->Answer(AuthenticatedAs(id.subject));
  client_->Hold();
  Verdicts verdicts;
  // Returns while the API server has not answered.
  reviewer_->ReviewAsync("tok", id, verdicts.Add());
  ASSERT_TRUE(client_->AwaitInProgress(1));
  EXPECT_TRUE(verdicts.results().empty());

  client_->Release();
  ASSERT_TRUE(verdicts.Await(1));
  TokenReviewResult r = verdicts.results()[0];
  EXPECT_TRUE(r.verdict.status.ok()) << r.verdict.status;
  EXPECT_FALSE(r.from_cache);
  EXPECT_FALSE(r.joined);
  EXPECT_NE(verdicts.threads()[0], std::this_thread::get_id());

  // A cached verdict is handed over at once, on the caller's thread.
  Verdicts cached;
  reviewer_->ReviewAsync("tok", id, cached.Add());
  ASSERT_EQ(cached.results().size(), 1u);
  EXPECT_TRUE(cached.results()[0].from_cache);
  EXPECT_EQ(cached.threads()[0], std::this_thread::get_id());
  EXPECT_EQ(client_->calls().size(), 1u);
}

TEST_F(TokenReviewerTest, CallsWithOneTokenShareOneRequest) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity id = Frontend();
  client_->Answer(AuthenticatedAs(id.subject));
  Verdicts verdicts;
  ASSERT_NO_FATAL_FAILURE(StartHeld("tok", id, &verdicts));
  for (int i = 0; i < 4; ++i) reviewer_->ReviewAsync("tok", id, verdicts.Add());
  client_->Release();
  ASSERT_TRUE(verdicts.Await(5));
  int joined = 0;
  for (const TokenReviewResult& r : verdicts.results()) {
    EXPECT_TRUE(r.verdict.status.ok()) << r.verdict.status;
    if (r.joined) {
      ++joined;
      EXPECT_EQ(r.request_time, absl::ZeroDuration());
    }
  }
  EXPECT_EQ(joined, 4);
  EXPECT_EQ(client_->calls().size(), 1u);
}

TEST_F(TokenReviewerTest, ASharedRefusalIsStillNeverCached) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity id = Frontend();
  client_->Answer(NotAuthenticated());
  Verdicts verdicts;
  ASSERT_NO_FATAL_FAILURE(StartHeld("tok", id, &verdicts));
  reviewer_->ReviewAsync("tok", id, verdicts.Add());
  client_->Release();
  ASSERT_TRUE(verdicts.Await(2));
  for (const TokenReviewResult& r : verdicts.results()) {
    EXPECT_EQ(r.verdict.status.code(), absl::StatusCode::kUnauthenticated);
  }
  EXPECT_EQ(client_->calls().size(), 1u);
  // The next call asks again.
  EXPECT_FALSE(reviewer_->Review("tok", id).from_cache);
  EXPECT_EQ(client_->calls().size(), 2u);
}

TEST_F(TokenReviewerTest, ACallClaimingAnotherIdentityDoesNotJoin) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity frontend = Frontend();
  client_->Answer(AuthenticatedAs(frontend.subject));
  Verdicts verdicts;
  ASSERT_NO_FATAL_FAILURE(StartHeld("tok", frontend, &verdicts));
  reviewer_->ReviewAsync(
      "tok", Identity("shop", "admin", clock_.Now() + absl::Hours(1)),
      verdicts.Add());
  ASSERT_TRUE(client_->AwaitInProgress(2));
  client_->Release();
  ASSERT_TRUE(verdicts.Await(2));
  int refused = 0;
  for (const TokenReviewResult& r : verdicts.results()) {
    EXPECT_FALSE(r.joined);
    if (absl::IsUnauthenticated(r.verdict.status)) ++refused;
  }
  EXPECT_EQ(refused, 1);
  EXPECT_EQ(client_->calls().size(), 2u);
}

TEST_F(TokenReviewerTest, ReviewsOfDifferentTokensRunSideBySide) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10), 10000, /*max_concurrent=*/2));
  const KubernetesIdentity id = Frontend();
  client_->Answer(AuthenticatedAs(id.subject));
  client_->Hold();
  Verdicts verdicts;
  for (int i = 0; i < 3; ++i) {
    reviewer_->ReviewAsync(absl::StrCat("tok", i), id, verdicts.Add());
  }
  ASSERT_TRUE(client_->AwaitInProgress(2));
  client_->Release();
  ASSERT_TRUE(verdicts.Await(3));
  // Two at once, never more: the third waited in line.
  EXPECT_EQ(client_->max_in_progress(), 2);
  EXPECT_EQ(client_->calls().size(), 3u);
}

TEST_F(TokenReviewerTest, TheLineIsBounded) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10), 10000, /*max_concurrent=*/1,
                               /*max_waiting=*/3));
  const KubernetesIdentity id = Frontend();
  client_->Answer(AuthenticatedAs(id.subject));
  Verdicts verdicts;
  ASSERT_NO_FATAL_FAILURE(StartHeld("tok0", id, &verdicts));
  reviewer_->ReviewAsync("tok1", id, verdicts.Add());
  reviewer_->ReviewAsync("tok1", id, verdicts.Add());  // joins
  // A fourth waiting call, with a new token or a known one, is refused at
  // once on the caller's thread.
  Verdicts refused;
  reviewer_->ReviewAsync("tok2", id, refused.Add());
  reviewer_->ReviewAsync("tok1", id, refused.Add());
  ASSERT_EQ(refused.results().size(), 2u);
  for (const TokenReviewResult& r : refused.results()) {
    EXPECT_EQ(r.verdict.status.code(), absl::StatusCode::kUnavailable);
    EXPECT_THAT(std::string(r.verdict.status.message()),
                HasSubstr("3 calls are already waiting"));
  }
  client_->Release();
  ASSERT_TRUE(verdicts.Await(3));
  for (const TokenReviewResult& r : verdicts.results()) {
    EXPECT_TRUE(r.verdict.status.ok()) << r.verdict.status;
  }
  EXPECT_EQ(client_->calls().size(), 2u);
  // Room again.
  EXPECT_TRUE(reviewer_->Review("tok2", id).verdict.status.ok());
}

TEST_F(TokenReviewerTest, AReviewThatWaitedPastTheTimeoutIsNotSent) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10), 10000, /*max_concurrent=*/1));
  const KubernetesIdentity id = Frontend();
  client_->Answer(AuthenticatedAs(id.subject));
  Verdicts first, second;
  ASSERT_NO_FATAL_FAILURE(StartHeld("tok0", id, &first));
  reviewer_->ReviewAsync("tok1", id, second.Add());
  clock_.Advance(absl::Seconds(4));  // the timeout is 3 s
  client_->Release();
  ASSERT_TRUE(second.Await(1));
  TokenReviewResult r = second.results()[0];
  EXPECT_EQ(r.verdict.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(r.verdict.status.message()),
              HasSubstr("waited longer than 3s"));
  ASSERT_TRUE(first.Await(1));
  EXPECT_TRUE(first.results()[0].verdict.status.ok());
  EXPECT_EQ(client_->calls().size(), 1u);
}

TEST_F(TokenReviewerTest, StoppingAnswersEveryWaitingCall) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10), 10000, /*max_concurrent=*/1));
  const KubernetesIdentity id = Frontend();
  client_->Answer(AuthenticatedAs(id.subject));
  Verdicts sent, in_line;
  ASSERT_NO_FATAL_FAILURE(StartHeld("tok0", id, &sent));
  reviewer_->ReviewAsync("tok1", id, in_line.Add());
  std::thread stop([this] { reviewer_.reset(); });
  // The destructor marks the reviewer stopping at once, then waits for the
  // review being sent; let the API server answer only after that.
  absl::SleepFor(absl::Milliseconds(300));
  client_->Release();
  stop.join();
  // The review being sent is finished; the one in line is never sent.
  ASSERT_EQ(sent.results().size(), 1u);
  EXPECT_TRUE(sent.results()[0].verdict.status.ok());
  ASSERT_EQ(in_line.results().size(), 1u);
  EXPECT_EQ(in_line.results()[0].verdict.status.code(),
            absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(in_line.results()[0].verdict.status.message()),
              HasSubstr("shutting down"));
  client_ = nullptr;  // gone with the reviewer
}

TEST_F(TokenReviewerTest, AfterStopACallThatNeedsAReviewIsRefusedAtOnce) {
  ASSERT_NO_FATAL_FAILURE(Make(absl::Seconds(10)));
  const KubernetesIdentity id = Frontend();
  client_->Answer(AuthenticatedAs(id.subject));
  ASSERT_TRUE(reviewer_->Review("cached", id).verdict.status.ok());
  reviewer_->Stop();
  reviewer_->Stop();  // idempotent
  Verdicts verdicts;
  reviewer_->ReviewAsync("new", id, verdicts.Add());
  ASSERT_EQ(verdicts.results().size(), 1u);
  EXPECT_EQ(verdicts.results()[0].verdict.status.code(),
            absl::StatusCode::kUnavailable);
  EXPECT_THAT(std::string(verdicts.results()[0].verdict.status.message()),
              HasSubstr("shutting down"));
  // The cache still answers: no review needed.
  EXPECT_TRUE(reviewer_->Review("cached", id).from_cache);
  EXPECT_EQ(client_->calls().size(), 1u);
}

}  // namespace
}  // namespace meshguard::ca
