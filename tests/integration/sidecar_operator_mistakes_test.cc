// What happens to a sidecar started wrongly, or stopped at a bad moment:
// ports another sidecar already listens on, config mistakes that used to
// surface only after the one-time join token was spent, SIGTERM while the
// CA is unreachable, and the readiness metric once the identity expired.
#include <csignal>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/sidecar_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::HttpGet;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::ProcessOptions;
using ::meshguard::testing::RunToCompletion;
using ::meshguard::testing::WaitFor;
using ::meshguard::testing::WaitForHttpOk;
using ::testing::AllOf;
using ::testing::HasSubstr;

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

class SidecarOperatorMistakesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("mistakes");
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = *std::move(mesh);
  }

  // A sidecar command line on fresh ports unless overridden: --ca, bundle,
  // --join-token (or the given credential flags), listeners, app.
  std::vector<std::string> Args(const std::vector<std::string>& credential,
                                std::string outbound = "",
                                std::string inbound = "") {
    if (outbound.empty()) outbound = Loopback(*PickFreePort());
    if (inbound.empty()) inbound = Loopback(*PickFreePort());
    admin_port_ = *PickFreePort();
    std::vector<std::string> args = {"--ca",
                                     mesh_->ca().address(),
                                     "--ca-bundle",
                                     mesh_->ca().bundle_path(),
                                     "--app",
                                     Loopback(*PickFreePort()),
                                     "--inbound-listen",
                                     inbound,
                                     "--outbound-listen",
                                     outbound,
                                     "--admin-listen",
                                     Loopback(admin_port_)};
    args.insert(args.end(), credential.begin(), credential.end());
    return args;
  }

  // Runs a sidecar expected to fail at start (20 s cap).
  RunResult StartExpectingFailure(std::vector<std::string> args) {
    ProcessOptions options;
    options.binary = SidecarBinary();
    options.args = std::move(args);
    absl::StatusOr<RunResult> r = RunToCompletion(options, absl::Seconds(20));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : RunResult{};
  }

  std::string Token(const std::string& name) {
    absl::StatusOr<std::string> token =
        mesh_->ca().JoinToken(MeshSpiffeId(name));
    EXPECT_TRUE(token.ok()) << token.status();
    return token.ok() ? *token : "";
  }

  // The token was not spent: a certificate can still be had with it.
  void ExpectTokenStillWorks(const std::string& token) {
    const std::string out = mesh_->ca().data_dir() + "/../unspent";
    RunResult r = mesh_->ca().Ctl(
        {"cert", "request", "--join_token", token, "--out_dir", out});
    EXPECT_TRUE(r.status.Success())
        << "the join token was spent by a start that failed: " << r.ToString();
  }

  std::unique_ptr<Mesh> mesh_;
  int admin_port_ = 0;
};

TEST_F(SidecarOperatorMistakesTest, PortsAnotherSidecarListensOnAreRefused) {
  SidecarSpec spec;
  spec.name = "first";
  absl::StatusOr<Sidecar*> first = mesh_->StartSidecar(spec);
  ASSERT_TRUE(first.ok()) << first.status();

  struct Case {
    const char* field;
    std::string outbound, inbound, taken;
  };
  const std::vector<Case> cases = {
      {"listeners.outbound", (*first)->outbound_address(), "",
       (*first)->outbound_address()},
      {"listeners.inbound", "", (*first)->inbound_address(),
       (*first)->inbound_address()},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    const std::string token = Token("second");
    RunResult r = StartExpectingFailure(
        Args({"--join-token", token}, c.outbound, c.inbound));
    EXPECT_FALSE(r.timed_out) << "it must not start serving";
    EXPECT_NE(r.status.code, 0) << r.ToString();
    EXPECT_THAT(
        r.err,
        AllOf(HasSubstr(absl::StrCat(c.field, ": cannot listen on ", c.taken)),
              HasSubstr("Address already in use")))
        << r.ToString();
    ExpectTokenStillWorks(token);
  }
  // The first sidecar still has its ports to itself.
  EXPECT_EQ((*first)->MetricSum("meshguard_ready"), 1);
}

TEST_F(SidecarOperatorMistakesTest,
       ConfigMistakesAreFoundBeforeTheTokenIsSpent) {
  struct Mistake {
    std::vector<std::string> flags;
    std::string named;  // what the error must name
  };
  const std::vector<Mistake> mistakes = {
      {{"--access-log", "/nonexistent-dir/access.log"},
       "/nonexistent-dir/access.log"},
      {{"--route", "a.svc=no-such-host.invalid:15006"}, "no-such-host.invalid"},
  };
  for (const Mistake& mistake : mistakes) {
    SCOPED_TRACE(mistake.named);
    const std::string token = Token("mistaken");
    std::vector<std::string> args = Args({"--join-token", token});
    args.insert(args.end(), mistake.flags.begin(), mistake.flags.end());
    const absl::Time start = absl::Now();
    RunResult r = StartExpectingFailure(args);
    EXPECT_LT(absl::Now() - start, absl::Seconds(10));
    EXPECT_NE(r.status.code, 0) << r.ToString();
    EXPECT_THAT(r.err, HasSubstr(mistake.named)) << r.ToString();
    EXPECT_THAT(r.out, ::testing::Not(HasSubstr("identity_installed")));
    ExpectTokenStillWorks(token);
  }
}

TEST_F(SidecarOperatorMistakesTest, MissingTokenFileFailsAtStart) {
  const absl::Time start = absl::Now();
  RunResult r =
      StartExpectingFailure(Args({"--token-file", "/nonexistent-dir/token"}));
  EXPECT_LT(absl::Now() - start, absl::Seconds(10))
      << "not retried until the bootstrap timeout";
  EXPECT_NE(r.status.code, 0) << r.ToString();
  EXPECT_THAT(r.err, AllOf(HasSubstr("ca.token_file"),
                           HasSubstr("/nonexistent-dir/token")))
      << r.ToString();
}

TEST_F(SidecarOperatorMistakesTest, SigtermWhileTheCaIsUnreachableExitsZero) {
  // A CA address nobody listens on: the bootstrap retries with backoff.
  std::vector<std::string> args = Args({"--join-token", "never-used"});
  args[1] = Loopback(*PickFreePort());
  ProcessOptions options;
  options.binary = SidecarBinary();
  options.args = args;
  absl::StatusOr<std::unique_ptr<meshguard::testing::Process>> p =
      meshguard::testing::Process::Start(options);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(WaitForHttpOk("127.0.0.1", admin_port_, "/healthz",
                            absl::Seconds(10), p->get())
                  .ok());
  ASSERT_TRUE(WaitFor(
      [&] { return absl::StrContains((*p)->ReadStdout(), "bootstrap_failed"); },
      absl::Seconds(10)));
  absl::StatusOr<meshguard::testing::HttpResponse> ready =
      HttpGet("127.0.0.1", admin_port_, "/readyz");
  ASSERT_TRUE(ready.ok());
  EXPECT_EQ(ready->status, 503);

  const absl::Time sent = absl::Now();
  (*p)->Signal(SIGTERM);
  absl::StatusOr<meshguard::testing::ExitStatus> exited =
      (*p)->Wait(absl::Seconds(5));
  ASSERT_TRUE(exited.ok()) << "still running 5 s after SIGTERM (the kubelet "
                              "would have to SIGKILL it)";
  EXPECT_TRUE(exited->Success()) << exited->ToString();
  EXPECT_LT(absl::Now() - sent, absl::Seconds(2));
  EXPECT_THAT((*p)->ReadStdout(), HasSubstr("\"sidecar_stopped\""));
}

TEST_F(SidecarOperatorMistakesTest, ReadyMetricDropsWhenTheIdentityExpires) {
  SidecarSpec spec;
  spec.name = "short";
  spec.ttl = absl::Seconds(6);
  absl::StatusOr<Sidecar*> s = mesh_->StartSidecar(spec);
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ((*s)->MetricSum("meshguard_ready"), 1);
  // No CA: the renewal at half-life fails and the certificate runs out.
  mesh_->StopCa();
  auto readyz = [&] {
    absl::StatusOr<meshguard::testing::HttpResponse> r =
        HttpGet("127.0.0.1", (*s)->admin_port(), "/readyz");
    return r.ok() ? r->status : 0;
  };
  ASSERT_TRUE(WaitFor([&] { return readyz() == 503; }, absl::Seconds(20)))
      << mesh_->DescribeAll();
  // The documented alert (meshguard_ready == 0) must see what /readyz sees.
  EXPECT_EQ((*s)->MetricSum("meshguard_ready"), 0);
  // The expiry gauge shows the time that has passed (0 once the agent has
  // withdrawn the certificate).
  EXPECT_LE((*s)->MetricSum("meshguard_certificate_expiry_timestamp_seconds"),
            absl::ToUnixSeconds(absl::Now()));
}

}  // namespace
}  // namespace meshguard::integration
