// Policy hot reload in a running sidecar B: an edited file (renamed over, or
// rewritten in place) flips decisions within 2 s, in the same process, while
// calls keep flowing; a broken file keeps the old policy, and /policy and
// meshguard_policy_reloads_total say so.
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/authz_fixture.h"

namespace meshguard::integration {
namespace {

using ::google::protobuf::Struct;
using ::meshguard::testing::Echo;
using ::meshguard::testing::WaitFor;
using ::testing::HasSubstr;

constexpr absl::Duration kReloadBound = absl::Seconds(2);

std::string Policy(const std::string& yaml) {
  return absl::StrReplaceAll(yaml, {{"FRONTEND", kFrontendId},
                                    {"STRANGER", kStrangerId},
                                    {"ECHO", "/meshguard.testing.Echo"}});
}

// Before: A may call Echo and Sleep; C nothing.
constexpr char kBefore[] = R"(default_action: DENY
rules:
  - name: frontend-calls
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo", "ECHO/Sleep"]}
)";

// After: A may no longer Sleep; C may Echo.
constexpr char kAfter[] = R"(default_action: DENY
rules:
  - name: frontend-calls
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo", "ECHO/Sleep"]}
  - name: no-more-sleep
    action: DENY
    to: {methods: ["ECHO/Sleep"]}
  - name: stranger-welcome
    action: ALLOW
    from: {principals: ["STRANGER"]}
    to: {methods: ["ECHO/Echo"]}
)";

// Calls in a loop on a thread of its own until stopped, remembering every
// outcome in order.
class CallLoop {
 public:
  explicit CallLoop(std::unique_ptr<Echo::Stub> stub) : stub_(std::move(stub)) {
    thread_ = std::thread([this] {
      while (!stop_.load()) {
        grpc::Status s =
            EchoCall(*stub_, "loop", {}, nullptr, absl::Seconds(5));
        absl::MutexLock lock(&mu_);
        outcomes_.push_back(s);
      }
    });
  }
  ~CallLoop() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::vector<grpc::Status> outcomes() {
    absl::MutexLock lock(&mu_);
    return outcomes_;
  }

 private:
  std::unique_ptr<Echo::Stub> stub_;
  std::atomic<bool> stop_{false};
  absl::Mutex mu_;
  std::vector<grpc::Status> outcomes_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

class AuthzReloadTest : public ::testing::Test {
 protected:
  void StartMesh(const std::string& policy) {
    AuthzMesh::Options options;
    options.policy_yaml = Policy(policy);
    absl::StatusOr<std::unique_ptr<AuthzMesh>> mesh = AuthzMesh::Start(options);
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = *std::move(mesh);
  }

  // Edits the file with `edit`, keeps calls flowing from A (Echo: allowed
  // before and after) and C (Echo: denied, then allowed), and holds a long
  // Sleep from A in flight across the edit (allowed when it started).
  void FlipUnderTraffic(const std::function<absl::Status()>& edit) {
    const pid_t pid = mesh_->b()->process()->pid();
    Struct before = mesh_->b()->PolicyStatus();
    ASSERT_EQ(NumberField(before, "version"), 1) << before.DebugString();

    std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
    ASSERT_TRUE(SleepCall(*a, "warm", 1).ok());
    CallLoop a_loop(mesh_->StubVia(mesh_->a()));
    CallLoop c_loop(mesh_->StubVia(mesh_->c()));
    grpc::Status long_sleep;
    std::thread sleeper([&] {
      long_sleep = SleepCall(*mesh_->StubVia(mesh_->a()), "in-flight", 3000);
    });
    // A failed ASSERT below must not leave a joinable thread behind.
    auto join_sleeper = absl::MakeCleanup([&] {
      if (sleeper.joinable()) sleeper.join();
    });
    // Let the loops and the sleeper get going under the old policy.
    std::unique_ptr<Echo::Stub> app = mesh_->DirectStub();
    ASSERT_TRUE(WaitFor(
        [&] {
          auto state = CancelState(*app, "in-flight");
          return state.ok() && state->started();
        },
        absl::Seconds(5)));
    absl::SleepFor(absl::Milliseconds(200));

    const absl::Time edited = absl::Now();
    ASSERT_TRUE(edit().ok());
    // Poll with fresh Sleep calls until one is denied by the new rule.
    absl::Time flipped = absl::InfiniteFuture();
    int probe = 0;
    while (absl::Now() < edited + absl::Seconds(5)) {
      grpc::Status s = SleepCall(*a, absl::StrCat("probe-", probe++), 1);
      if (s.error_code() == grpc::StatusCode::PERMISSION_DENIED) {
        flipped = absl::Now();
        EXPECT_THAT(s.error_message(), HasSubstr("\"no-more-sleep\""));
        break;
      }
      EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
      absl::SleepFor(absl::Milliseconds(25));
    }
    ASSERT_NE(flipped, absl::InfiniteFuture())
        << "the edit never applied\n"
        << mesh_->b()->process()->DescribeOutput();
    EXPECT_LE(flipped - edited, kReloadBound);
    // Some calls after the flip, then stop the traffic.
    absl::SleepFor(absl::Milliseconds(300));
    std::move(join_sleeper).Invoke();
    a_loop.Stop();
    c_loop.Stop();

    // The in-flight Sleep was decided under the old policy and finished.
    EXPECT_TRUE(long_sleep.ok())
        << long_sleep.error_code() << ": " << long_sleep.error_message();
    // A's Echo never failed.
    std::vector<grpc::Status> a_calls = a_loop.outcomes();
    EXPECT_GT(a_calls.size(), 10u);
    for (size_t i = 0; i < a_calls.size(); ++i) {
      EXPECT_TRUE(a_calls[i].ok())
          << "A's call " << i << " failed: " << a_calls[i].error_code() << ": "
          << a_calls[i].error_message();
    }
    // C: denied by default, then allowed, and never back.
    std::vector<grpc::Status> c_calls = c_loop.outcomes();
    size_t first_ok = c_calls.size();
    for (size_t i = 0; i < c_calls.size(); ++i) {
      if (c_calls[i].ok()) {
        if (first_ok == c_calls.size()) first_ok = i;
        continue;
      }
      EXPECT_LT(i, first_ok) << "C denied again after being allowed";
      EXPECT_EQ(c_calls[i].error_code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_THAT(c_calls[i].error_message(),
                  HasSubstr("denied by the default policy"));
    }
    EXPECT_GT(first_ok, 0u) << "C was allowed before the edit";
    EXPECT_LT(first_ok, c_calls.size()) << "C was never allowed";

    // Same process, new version.
    EXPECT_TRUE(mesh_->b()->process()->Running());
    EXPECT_EQ(mesh_->b()->process()->pid(), pid);
    EXPECT_EQ(mesh_->b()->LogEvents("sidecar_ready").size(), 1u);
    Struct after = mesh_->b()->PolicyStatus();
    EXPECT_EQ(NumberField(after, "version"), 2) << after.DebugString();
    EXPECT_EQ(StringField(after, "source"), mesh_->policy_path());
    EXPECT_NE(StringField(after, "content_hash"),
              StringField(before, "content_hash"));
    EXPECT_EQ(StringField(after, "last_reload_result"), "ok");
    EXPECT_EQ(NumberField(after, "rules"), 3);
    EXPECT_EQ(MetricSum(mesh_->b()->Metrics(), "meshguard_policy_reloads_total",
                        {{"result", "ok"}}),
              1);
  }

  std::unique_ptr<AuthzMesh> mesh_;
};

TEST_F(AuthzReloadTest, RenamedOverFileFlipsDecisionsUnderTraffic) {
  StartMesh(kBefore);
  FlipUnderTraffic([&] { return mesh_->ReplacePolicy(Policy(kAfter)); });
}

TEST_F(AuthzReloadTest, InPlaceRewriteFlipsDecisionsUnderTraffic) {
  StartMesh(kBefore);
  FlipUnderTraffic([&] { return mesh_->RewritePolicyInPlace(Policy(kAfter)); });
}

TEST_F(AuthzReloadTest, InPlaceRewriteOfSameSizeWithinTheSameSecondIsSeen) {
  // Two edits in quick succession that keep the size (and likely the mtime
  // second): the second must still apply.
  StartMesh(R"(default_action: DENY
rules:
  - name: frontend-calls
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
)");
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  ASSERT_TRUE(EchoCall(*a).ok());
  const std::string deny = Policy(R"(default_action: DENY
rules:
  - name: frontend-calls
    action: AUDIT
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
)");
  const std::string allow = Policy(R"(default_action: DENY
rules:
  - name: frontend-calls
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
)");
  ASSERT_EQ(deny.size(), allow.size());  // same size on purpose
  ASSERT_TRUE(mesh_->RewritePolicyInPlace(deny).ok());
  ASSERT_TRUE(WaitFor([&] { return !EchoCall(*a).ok(); }, kReloadBound))
      << "the DENY edit never applied";
  ASSERT_TRUE(mesh_->RewritePolicyInPlace(allow).ok());
  EXPECT_TRUE(WaitFor([&] { return EchoCall(*a).ok(); }, kReloadBound))
      << "the second same-size edit never applied";
  EXPECT_EQ(NumberField(mesh_->b()->PolicyStatus(), "version"), 3);
}

// Design question, not a settled bug (see the report): an empty file is a
// valid policy (default DENY, no rules), so a poll that lands between an
// in-place writer's O_TRUNC and its write() publishes deny-all until the
// next poll. The truncated moment is held open here to make it
// deterministic. Disabled until the expected behaviour is decided; run with
// --gtest_also_run_disabled_tests.
TEST_F(AuthzReloadTest, DISABLED_EmptyFileMidRewriteDoesNotBecomeDenyAll) {
  StartMesh(kBefore);
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  ASSERT_TRUE(EchoCall(*a).ok());
  ASSERT_TRUE(mesh_->RewritePolicyInPlace("").ok());
  absl::SleepFor(kReloadBound);
  grpc::Status s = EchoCall(*a);
  EXPECT_TRUE(s.ok()) << "an empty policy file took effect: "
                      << s.error_message();
  EXPECT_EQ(NumberField(mesh_->b()->PolicyStatus(), "version"), 1);
}

TEST_F(AuthzReloadTest, BrokenFilesKeepTheOldPolicyAndAreReported) {
  StartMesh(kBefore);
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  std::unique_ptr<Echo::Stub> c = mesh_->StubVia(mesh_->c());
  auto old_decisions_hold = [&] {
    grpc::Status s = SleepCall(*a, "old-policy", 1);
    EXPECT_TRUE(s.ok()) << s.error_message();
    s = EchoCall(*c);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  };
  const std::string hash =
      StringField(mesh_->b()->PolicyStatus(), "content_hash");
  auto wait_errors = [&](int n) {
    Struct status;
    bool ok = WaitFor(
        [&] {
          status = mesh_->b()->PolicyStatus();
          return NumberField(status, "reloads_error") >= n;
        },
        kReloadBound + absl::Milliseconds(500));
    EXPECT_TRUE(ok) << "reload error " << n
                    << " not reported: " << status.DebugString();
    return status;
  };

  // 1. An unknown field (a typo of "action") on line 8.
  ASSERT_TRUE(mesh_
                  ->ReplacePolicy(Policy(R"(default_action: DENY
rules:
  - name: frontend-calls
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo", "ECHO/Sleep"]}
  - name: stranger-welcome
    actoin: ALLOW
    from: {principals: ["STRANGER"]}
)"))
                  .ok());
  Struct status = wait_errors(1);
  std::string result = StringField(status, "last_reload_result");
  EXPECT_THAT(result, HasSubstr(mesh_->policy_path() + ":8"));
  EXPECT_THAT(result, HasSubstr("actoin"));
  EXPECT_EQ(NumberField(status, "version"), 1);
  EXPECT_EQ(StringField(status, "content_hash"), hash);
  old_decisions_hold();
  EXPECT_EQ(MetricSum(mesh_->b()->Metrics(), "meshguard_policy_reloads_total",
                      {{"result", "error"}}),
            1);
  EXPECT_FALSE(mesh_->b()->LogEvents("policy_refused").empty());

  // 2. A YAML syntax error (an unclosed flow sequence) on line 5.
  ASSERT_TRUE(mesh_
                  ->ReplacePolicy(Policy(R"(default_action: DENY
rules:
  - name: stranger-welcome
    action: ALLOW
    from: {principals: ["STRANGER"
    to: {methods: ["ECHO/Echo"]}
)"))
                  .ok());
  status = wait_errors(2);
  result = StringField(status, "last_reload_result");
  EXPECT_THAT(result,
              ::testing::ContainsRegex(mesh_->policy_path() + ":[0-9]+"));
  EXPECT_EQ(NumberField(status, "version"), 1);
  old_decisions_hold();
  // Counted once, not once per poll.
  absl::SleepFor(absl::Milliseconds(2500));
  std::string metrics = mesh_->b()->Metrics();
  EXPECT_EQ(MetricSum(metrics, "meshguard_policy_reloads_total",
                      {{"result", "error"}}),
            2);
  EXPECT_EQ(
      MetricSum(metrics, "meshguard_policy_reloads_total", {{"result", "ok"}}),
      0);

  // 3. A good file again applies.
  ASSERT_TRUE(mesh_->ReplacePolicy(Policy(kAfter)).ok());
  EXPECT_TRUE(WaitFor([&] { return EchoCall(*c).ok(); },
                      kReloadBound + absl::Milliseconds(500)));
  status = mesh_->b()->PolicyStatus();
  EXPECT_EQ(NumberField(status, "version"), 2);
  EXPECT_EQ(StringField(status, "last_reload_result"), "ok");
  EXPECT_TRUE(mesh_->b()->process()->Running());
}

}  // namespace
}  // namespace meshguard::integration
