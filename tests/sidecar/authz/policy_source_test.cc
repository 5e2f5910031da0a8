#include "sidecar/authz/policy_source.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace meshguard::sidecar::authz {
namespace {

using ::testing::HasSubstr;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr char kGet[] = "/shop.v1.Orders/Get";

// Same length on purpose: an in-place rewrite keeps size and inode, and
// may keep the mtime tick, so only the content hash can tell them apart.
constexpr char kAllowFrontend[] = R"(default_action: DENY
rules:
  - name: frontend
    action: ALLOW
    from:
      principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
)";
constexpr char kDenyFrontend[] = R"(default_action: DENY
rules:
  - name: frontend
    action:  DENY
    from:
      principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
)";
// Unknown field on line 4.
constexpr char kUnknownField[] = R"(default_action: DENY
rules:
  - name: frontend
    actoin: ALLOW
)";
// Valid YAML, invalid policy.
constexpr char kBadPrincipal[] = R"(rules:
  - name: frontend
    action: ALLOW
    from:
      principals: ["frontend"]
)";

class PolicyWatcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* dir = std::getenv("TEST_TMPDIR");
    path_ = absl::StrCat(
        dir != nullptr ? dir : "/tmp", "/policy_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        ".yaml");
    std::remove(path_.c_str());
  }

  // In place, as an editor without atomic save would.
  void Write(const std::string& contents) {
    std::ofstream f(path_, std::ios::binary | std::ios::trunc);
    f << contents;
  }

  // As Kubernetes and careful tools do: new file, rename over.
  void Replace(const std::string& contents) {
    std::string tmp = path_ + ".tmp";
    {
      std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
      f << contents;
    }
    ASSERT_EQ(std::rename(tmp.c_str(), path_.c_str()), 0);
  }

  std::unique_ptr<PolicyWatcher> MustCreate() {
    PolicyWatcher::Options options;
    options.path = path_;
    options.start_thread = false;
    absl::StatusOr<std::unique_ptr<PolicyWatcher>> w =
        PolicyWatcher::Create(options);
    EXPECT_TRUE(w.ok()) << w.status();
    return w.ok() ? *std::move(w) : nullptr;
  }

  static bool Allowed(const PolicyWatcher& w) {
    return w.Current()->policy->Evaluate(Request{kFrontend, kGet}).allowed;
  }

  std::string path_;
};

TEST_F(PolicyWatcherTest, InitialLoad) {
  Replace(kAllowFrontend);
  std::unique_ptr<PolicyWatcher> w = MustCreate();
  ASSERT_NE(w, nullptr);
  std::shared_ptr<const PolicySnapshot> s = w->Current();
  EXPECT_EQ(s->version, 1u);
  EXPECT_EQ(s->source, path_);
  EXPECT_EQ(s->content_hash, ContentHash(kAllowFrontend));
  EXPECT_EQ(s->content_hash.size(), 16u);
  EXPECT_TRUE(Allowed(*w));
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_EQ(w->Current()->version, 1u);  // nothing changed
  ReloadStats stats = w->reload_stats();
  EXPECT_EQ(stats.ok, 0u);
  EXPECT_EQ(stats.error, 0u);
  EXPECT_TRUE(stats.last_result.ok());
}

TEST_F(PolicyWatcherTest, ValidChangeFlipsDecisionAfterPoll) {
  Replace(kAllowFrontend);
  std::unique_ptr<PolicyWatcher> w = MustCreate();
  ASSERT_NE(w, nullptr);
  std::shared_ptr<const PolicySnapshot> before = w->Current();

  Replace(kDenyFrontend);
  EXPECT_TRUE(Allowed(*w));  // not before Poll()
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_FALSE(Allowed(*w));
  EXPECT_EQ(w->Current()->version, 2u);
  EXPECT_EQ(w->Current()->content_hash, ContentHash(kDenyFrontend));
  EXPECT_EQ(w->reload_stats().ok, 1u);
  // A reader that took the old snapshot keeps a working old policy.
  EXPECT_TRUE(before->policy->Evaluate(Request{kFrontend, kGet}).allowed);
}

TEST_F(PolicyWatcherTest, SameSizeInPlaceRewriteIsSeen) {
  ASSERT_EQ(sizeof(kAllowFrontend), sizeof(kDenyFrontend));
  Write(kAllowFrontend);
  std::unique_ptr<PolicyWatcher> w = MustCreate();
  ASSERT_NE(w, nullptr);
  Write(kDenyFrontend);
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_FALSE(Allowed(*w));
  // Rewriting identical bytes is not a reload.
  Write(kDenyFrontend);
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_EQ(w->Current()->version, 2u);
  EXPECT_EQ(w->reload_stats().ok, 1u);
}

TEST_F(PolicyWatcherTest, BrokenFileKeepsOldPolicyAndRecordsError) {
  Replace(kAllowFrontend);
  std::unique_ptr<PolicyWatcher> w = MustCreate();
  ASSERT_NE(w, nullptr);

  Replace(kUnknownField);
  absl::Status s = w->Poll();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(path_ + ":4:"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("actoin"));
  EXPECT_TRUE(Allowed(*w));
  EXPECT_EQ(w->Current()->version, 1u);
  ReloadStats stats = w->reload_stats();
  EXPECT_EQ(stats.ok, 0u);
  EXPECT_EQ(stats.error, 1u);
  EXPECT_EQ(stats.last_result, s);

  // The same broken contents are not retried or counted again.
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_EQ(w->reload_stats().error, 1u);

  // A semantic error names file, rule and field.
  Replace(kBadPrincipal);
  s = w->Poll();
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat(path_,
                                     ": rules[0] \"frontend\": field "
                                     "\"from.principals[0]\"")));
  EXPECT_TRUE(Allowed(*w));
  EXPECT_EQ(w->reload_stats().error, 2u);

  // Fixed: applies, and the last result is OK again.
  Replace(kDenyFrontend);
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_FALSE(Allowed(*w));
  stats = w->reload_stats();
  EXPECT_EQ(stats.ok, 1u);
  EXPECT_EQ(stats.error, 2u);
  EXPECT_TRUE(stats.last_result.ok());
  EXPECT_EQ(w->Current()->version, 2u);
}

TEST_F(PolicyWatcherTest, EmptiedFileKeepsOldPolicy) {
  // A writer that truncates before it writes: in between the file is
  // empty, which must not be read as "no rules, default DENY".
  Replace(kAllowFrontend);
  std::unique_ptr<PolicyWatcher> w = MustCreate();
  ASSERT_NE(w, nullptr);
  for (const char* empty : {"", "\n  \n"}) {
    Replace(empty);
    absl::Status s = w->Poll();
    EXPECT_FALSE(s.ok());
    EXPECT_THAT(std::string(s.message()), HasSubstr("policy file is empty"));
    EXPECT_TRUE(Allowed(*w)) << "an empty file took the policy's place";
    EXPECT_EQ(w->Current()->version, 1u);
  }
  Replace(kDenyFrontend);
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_FALSE(Allowed(*w));
}

TEST_F(PolicyWatcherTest, MissingFileKeepsPolicyAndCountsOnce) {
  Replace(kAllowFrontend);
  std::unique_ptr<PolicyWatcher> w = MustCreate();
  ASSERT_NE(w, nullptr);
  ASSERT_EQ(std::remove(path_.c_str()), 0);
  absl::Status s = w->Poll();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path_));
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_EQ(w->reload_stats().error, 1u);
  EXPECT_TRUE(Allowed(*w));

  Replace(kDenyFrontend);
  EXPECT_TRUE(w->Poll().ok());
  EXPECT_FALSE(Allowed(*w));
}

TEST_F(PolicyWatcherTest, BrokenFileAtStartIsAnError) {
  Replace(kUnknownField);
  PolicyWatcher::Options options;
  options.path = path_;
  absl::StatusOr<std::unique_ptr<PolicyWatcher>> w =
      PolicyWatcher::Create(options);
  ASSERT_FALSE(w.ok());
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(path_ + ":4:"));
}

TEST_F(PolicyWatcherTest, MissingFileAtStartIsAnError) {
  PolicyWatcher::Options options;
  options.path = path_;
  absl::StatusOr<std::unique_ptr<PolicyWatcher>> w =
      PolicyWatcher::Create(options);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(path_));
}

TEST_F(PolicyWatcherTest, NoFileMeansBuiltinTrustDomainPolicy) {
  PolicyWatcher::Options options;
  options.trust_domain = "cluster.local";
  absl::StatusOr<std::unique_ptr<PolicyWatcher>> w =
      PolicyWatcher::Create(options);
  ASSERT_TRUE(w.ok()) << w.status();
  std::shared_ptr<const PolicySnapshot> s = (*w)->Current();
  EXPECT_EQ(s->source, "<built-in>");
  EXPECT_EQ(s->version, 1u);
  Decision d = s->policy->Evaluate(Request{kFrontend, kGet});
  EXPECT_TRUE(d.allowed);
  EXPECT_EQ(d.rule, "builtin-allow-trust-domain");
  EXPECT_FALSE(
      s->policy->Evaluate(Request{"spiffe://evil.org/ns/shop/sa/x", kGet})
          .allowed);
  EXPECT_FALSE(s->policy->Evaluate(Request{"", kGet}).allowed);
  EXPECT_TRUE((*w)->Poll().ok());

  options.trust_domain = "";
  EXPECT_FALSE(PolicyWatcher::Create(options).ok());
}

TEST_F(PolicyWatcherTest, OwnThreadAppliesChangeWithinTwoSeconds) {
  Replace(kAllowFrontend);
  std::atomic<int> callbacks{0};
  PolicyWatcher::Options options;
  options.path = path_;
  options.poll_interval = absl::Milliseconds(20);
  options.on_reload = [&](const absl::Status& s, const PolicySnapshot& now) {
    EXPECT_TRUE(s.ok()) << s;
    EXPECT_EQ(now.version, 2u);
    ++callbacks;
  };
  absl::StatusOr<std::unique_ptr<PolicyWatcher>> w =
      PolicyWatcher::Create(options);
  ASSERT_TRUE(w.ok()) << w.status();
  Replace(kDenyFrontend);
  absl::Time deadline = absl::Now() + absl::Seconds(2);
  while (Allowed(**w) && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_FALSE(Allowed(**w));
  w->reset();  // joins the thread
  EXPECT_EQ(callbacks.load(), 1);
}

TEST_F(PolicyWatcherTest, ReadersNeverSeeAGap) {
  Replace(kAllowFrontend);
  std::unique_ptr<PolicyWatcher> w = MustCreate();
  ASSERT_NE(w, nullptr);
  std::atomic<bool> stop{false};
  std::atomic<int> null_snapshots{0};
  std::vector<std::thread> readers;
  for (int i = 0; i < 2; ++i) {
    readers.emplace_back([&] {
      while (!stop.load()) {
        std::shared_ptr<const PolicySnapshot> s = w->Current();
        if (s == nullptr || s->policy == nullptr)
          ++null_snapshots;
        else
          s->policy->Evaluate(Request{kFrontend, kGet});
      }
    });
  }
  for (int i = 0; i < 20; ++i) {
    Replace(i % 2 == 0 ? kDenyFrontend : kAllowFrontend);
    w->Poll().IgnoreError();
  }
  stop = true;
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(null_snapshots.load(), 0);
  EXPECT_EQ(w->Current()->version, 21u);
}

TEST(ContentHashTest, Fnv1a64) {
  EXPECT_EQ(ContentHash(""), "cbf29ce484222325");
  EXPECT_EQ(ContentHash("a"), "af63dc4c8601ec8c");
}

}  // namespace
}  // namespace meshguard::sidecar::authz
