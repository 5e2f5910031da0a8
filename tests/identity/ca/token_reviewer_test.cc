// TokenReviewer with a fake client and a fake clock: which reviews go to
// the API server and which come from the cache, what the API server is
// sent, the CA's own token re-read when it rotates, and failures passed on
// as they are.
#include "identity/ca/token_reviewer.h"

#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
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

 private:
  mutable absl::Mutex mu_;
  std::deque<absl::StatusOr<TokenReviewHttpAnswer>> answers_;
  std::vector<Call> calls_;
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

  void Make(absl::Duration cache_ttl, size_t max_entries = 10000) {
    auto client = std::make_unique<FakeTokenReviewClient>();
    client_ = client.get();
    TokenReviewerOptions options;
    options.audience = kAudience;
    options.token_file = token_file_;
    options.timeout = absl::Seconds(3);
    options.cache_ttl = cache_ttl;
    options.max_cache_entries = max_entries;
    absl::StatusOr<std::unique_ptr<TokenReviewer>> reviewer =
        TokenReviewer::CreateWithClient(options, std::move(client), &clock_);
    ASSERT_TRUE(reviewer.ok()) << reviewer.status();
    reviewer_ = *std::move(reviewer);
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

}  // namespace
}  // namespace meshguard::ca
