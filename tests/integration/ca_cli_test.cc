// What an operator sees of meshguard-ca and meshguardctl: --help (whole and
// per command), the documented flag spellings, init and serve errors, verify
// on garbage, and the CA's observability (/metrics, /healthz, /readyz, JSON
// log lines).
#include <sys/stat.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/client/ca_client.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::HttpGet;
using ::meshguard::testing::HttpResponse;
using ::meshguard::testing::MakeShortTempDir;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::Process;
using ::meshguard::testing::ProcessOptions;
using ::meshguard::testing::RemoveTree;
using ::meshguard::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// A scratch dir under /tmp, removed at the end of the test.
class ScratchDir {
 public:
  ScratchDir() : path_(*MakeShortTempDir("mg-cli")) {}
  ~ScratchDir() { RemoveTree(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(CaCliTest, HelpExitsZeroAndListsTheCommands) {
  RunResult ca = RunBinary(CaBinary(), {"--help"});
  EXPECT_EQ(ca.status.code, 0) << ca.ToString();
  EXPECT_THAT(ca.out + ca.err, AllOf(HasSubstr("init"), HasSubstr("serve"),
                                     HasSubstr("data-dir")))
      << "--help lists the commands and the flags";

  RunResult ctl = RunBinary(CtlBinary(), {"--help"});
  EXPECT_EQ(ctl.status.code, 0) << ctl.ToString();
  for (const char* command :
       {"cert request", "cert renew", "cert inspect", "bundle fetch", "verify",
        "token create", "revoke", "list"}) {
    EXPECT_THAT(ctl.out + ctl.err, HasSubstr(command));
  }
}

// `COMMAND --help` is that command's help, on stdout with exit 0: its usage,
// what it does and writes, its own flags and the global ones it uses, not
// every flag of every command.
TEST(CaCliTest, CommandHelpListsOnlyThatCommandsFlags) {
  RunResult request = RunBinary(CtlBinary(), {"cert", "request", "--help"});
  EXPECT_EQ(request.status.code, 0) << request.ToString();
  EXPECT_THAT(
      request.out,
      AllOf(HasSubstr("Usage: meshguardctl cert request"),
            HasSubstr("--token-file"), HasSubstr("--join-token"),
            HasSubstr("--out-dir"), HasSubstr("--ttl"),
            HasSubstr("key.pem (0600)"), HasSubstr("cert.pem"),
            HasSubstr("bundle.pem"), HasSubstr("--ca-bundle"),
            Not(HasSubstr("--spiffe-id")), Not(HasSubstr("--path-only")),
            Not(HasSubstr("--admin-socket"))))
      << request.ToString();
  // Each flag's help text and default are the ones the flag was defined
  // with (the full --help shows the same).
  EXPECT_THAT(request.out,
              AllOf(HasSubstr("file holding the service-account token"),
                    HasSubstr("--ca (default: 127.0.0.1:15012)")));
  EXPECT_EQ(request.err, "");

  // The same help, asked other ways (a global flag's value before the
  // command is not taken for the command).
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{
           {"help", "cert", "request"},
           {"--ca", "127.0.0.1:1", "cert", "request", "-h"},
           {"cert", "request", "--out-dir", "o", "--help"}}) {
    RunResult again = RunBinary(CtlBinary(), args);
    EXPECT_EQ(again.status.code, 0) << again.ToString();
    EXPECT_EQ(again.out, request.out) << absl::StrJoin(args, " ");
  }

  RunResult verify = RunBinary(CtlBinary(), {"verify", "--help"});
  EXPECT_EQ(verify.status.code, 0) << verify.ToString();
  EXPECT_THAT(verify.out,
              AllOf(HasSubstr("--path-only"), HasSubstr("--chain"),
                    HasSubstr("--crl"), Not(HasSubstr("--token")),
                    Not(HasSubstr("--out-dir")), Not(HasSubstr("--ca "))))
      << verify.ToString();

  RunResult list = RunBinary(CtlBinary(), {"list", "--help"});
  EXPECT_EQ(list.status.code, 0) << list.ToString();
  EXPECT_THAT(list.out,
              AllOf(HasSubstr("--live"), HasSubstr("--spiffe-id"),
                    HasSubstr("--admin-socket"), Not(HasSubstr("--serial"))))
      << list.ToString();

  RunResult check = RunBinary(CtlBinary(), {"policy", "check", "--help"});
  EXPECT_EQ(check.status.code, 0) << check.ToString();
  EXPECT_THAT(check.out, AllOf(HasSubstr("--policy"), HasSubstr("--header"),
                               Not(HasSubstr("--ca-bundle"))))
      << check.ToString();

  // No command: the full help, every command's flags.
  RunResult full = RunBinary(CtlBinary(), {"--help"});
  EXPECT_EQ(full.status.code, 0) << full.ToString();
  EXPECT_THAT(full.out,
              AllOf(HasSubstr("--token-file"), HasSubstr("--spiffe-id"),
                    HasSubstr("--path-only")));

  RunResult init = RunBinary(CaBinary(), {"init", "--help"});
  EXPECT_EQ(init.status.code, 0) << init.ToString();
  EXPECT_THAT(
      init.out,
      AllOf(HasSubstr("Usage: meshguard-ca init"), HasSubstr("--data-dir"),
            HasSubstr("--trust-domain"), HasSubstr("--root-ttl"),
            HasSubstr("--intermediate-ttl"), HasSubstr("bundle.pem"),
            Not(HasSubstr("--listen")), Not(HasSubstr("--config"))))
      << init.ToString();

  RunResult serve = RunBinary(CaBinary(), {"serve", "--help"});
  EXPECT_EQ(serve.status.code, 0) << serve.ToString();
  EXPECT_THAT(
      serve.out,
      AllOf(HasSubstr("Usage: meshguard-ca serve"), HasSubstr("--listen"),
            HasSubstr("--admin-listen"), HasSubstr("--config"),
            HasSubstr("--data-dir"), Not(HasSubstr("--root-ttl"))))
      << serve.ToString();
}

// Help for a command that does not exist is an error naming it, not the
// full help with exit 0.
TEST(CaCliTest, HelpForAnUnknownCommandIsAnError) {
  const std::map<std::vector<std::string>, std::string> cases = {
      {{"frobnicate", "--help"}, "unknown command: frobnicate"},
      {{"help", "frobnicate"}, "unknown command: frobnicate"},
      {{"cert", "frobnicate", "-h"}, "unknown command: cert frobnicate"},
  };
  for (const auto& [args, error] : cases) {
    RunResult ctl = RunBinary(CtlBinary(), args);
    EXPECT_EQ(ctl.status.code, 2) << ctl.ToString();
    EXPECT_THAT(ctl.err, HasSubstr(error)) << ctl.ToString();
    EXPECT_EQ(ctl.out, "") << ctl.ToString();
  }
  RunResult ca = RunBinary(CaBinary(), {"frobnicate", "--help"});
  EXPECT_EQ(ca.status.code, 2) << ca.ToString();
  EXPECT_THAT(ca.err, HasSubstr("unknown command \"frobnicate\""))
      << ca.ToString();
}

TEST(CaCliTest, DocumentedDashedFlagsAreAccepted) {
  // README and `--help` spell flags with dashes (--data-dir, --out-dir,
  // --admin-socket); absl registers them with underscores.
  ScratchDir dir;
  RunResult init =
      RunBinary(CaBinary(), {"init", "--data-dir", dir.path() + "/data"});
  EXPECT_EQ(init.status.code, 0) << init.ToString();
  RunResult list = RunBinary(
      CtlBinary(), {"--admin-socket", dir.path() + "/data/admin.sock", "list"});
  EXPECT_THAT(list.err, ::testing::Not(HasSubstr("Unknown command line flag")))
      << list.ToString();
}

// A flag of another command is refused, not ignored: `cert request
// --spiffe-id X` must not look as if it asked for X.
TEST(CaCliTest, FlagsOfAnotherCommandAreRefused) {
  ScratchDir dir;
  const std::string out = dir.path() + "/out";
  RunResult request = RunBinary(
      CtlBinary(), {"cert", "request", "--join-token", "unused", "--out-dir",
                    out, "--spiffe-id", "spiffe://cluster.local/ns/a/sa/b"});
  EXPECT_EQ(request.status.code, 2) << request.ToString();
  EXPECT_THAT(request.err,
              HasSubstr("--spiffe-id does not apply to cert request (it is "
                        "for list, revoke, token create)"))
      << request.ToString();
  struct stat st;
  EXPECT_NE(stat(out.c_str(), &st), 0) << "nothing is done: " << out;

  RunResult inspect =
      RunBinary(CtlBinary(), {"cert", "inspect", "/dev/null", "--live"});
  EXPECT_EQ(inspect.status.code, 2) << inspect.ToString();
  EXPECT_THAT(inspect.err, HasSubstr("--live does not apply to cert inspect"));

  RunResult verify = RunBinary(
      CtlBinary(),
      {"verify", "--bundle", "b.pem", "--chain", "c.pem", "--ttl", "1h"});
  EXPECT_EQ(verify.status.code, 2) << verify.ToString();
  EXPECT_THAT(verify.err, HasSubstr("--ttl does not apply to verify"));

  RunResult init = RunBinary(
      CaBinary(),
      {"init", "--data-dir", dir.path() + "/data", "--listen", "127.0.0.1:1"});
  EXPECT_EQ(init.status.code, 2) << init.ToString();
  EXPECT_THAT(init.err,
              HasSubstr("--listen does not apply to init (it is for serve)"));
  EXPECT_NE(stat((dir.path() + "/data").c_str(), &st), 0);

  // Global flags go with any command, and a command's own flags with it
  // (here it fails later, on the missing files, not on the flags).
  RunResult own =
      RunBinary(CtlBinary(), {"--ca", "127.0.0.1:1", "verify", "--bundle",
                              "b.pem", "--chain", "c.pem", "--path-only",
                              "--trust-domain", "cluster.local"});
  EXPECT_THAT(own.err, Not(HasSubstr("does not apply"))) << own.ToString();
}

TEST(CaCliTest, InitTwiceFailsNamingTheExistingFile) {
  ScratchDir dir;
  const std::string data = dir.path() + "/data";
  RunResult first = RunBinary(CaBinary(), {"init", "--data_dir", data});
  ASSERT_EQ(first.status.code, 0) << first.ToString();
  absl::StatusOr<std::string> bundle_before =
      meshguard::testing::ReadFile(data + "/bundle.pem");
  RunResult second = RunBinary(CaBinary(), {"init", "--data_dir", data});
  EXPECT_NE(second.status.code, 0) << second.ToString();
  EXPECT_THAT(second.err,
              AllOf(HasSubstr(data + "/"), HasSubstr("already exists")));
  EXPECT_EQ(*meshguard::testing::ReadFile(data + "/bundle.pem"), *bundle_before)
      << "nothing overwritten";
}

TEST(CaCliTest, ServeRefusesUnknownConfigFieldWithFileLineAndField) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("cfg");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const std::string config = (*ca)->data_dir() + "/../bad.yaml";
  ASSERT_TRUE(WriteFile(config,
                        "trust_domain: cluster.local\n"
                        "max_ttl: 3600s\n"
                        "rate_limit:\n"
                        "  requests_per_secnd: 3\n")
                  .ok());
  absl::StatusOr<int> port = PickFreePort();
  absl::StatusOr<int> http = PickFreePort();
  ASSERT_TRUE(port.ok() && http.ok());
  const absl::Time start = absl::Now();
  RunResult r = RunBinary(
      CaBinary(), {"serve", "--data_dir", (*ca)->data_dir(), "--config", config,
                   "--listen", absl::StrCat("127.0.0.1:", *port),
                   "--admin_listen", absl::StrCat("127.0.0.1:", *http)});
  EXPECT_LT(absl::Now() - start, absl::Seconds(10)) << "fails at start";
  EXPECT_NE(r.status.code, 0) << r.ToString();
  EXPECT_FALSE(r.timed_out);
  EXPECT_THAT(r.err, AllOf(HasSubstr(config), HasSubstr(":4"),
                           HasSubstr("requests_per_secnd")))
      << r.ToString();
}

TEST(CaCliTest, VerifyOnGarbageSaysParse) {
  ScratchDir dir;
  RunResult init =
      RunBinary(CaBinary(), {"init", "--data_dir", dir.path() + "/data"});
  ASSERT_TRUE(init.status.Success()) << init.ToString();
  const std::string garbage = dir.path() + "/garbage.pem";
  ASSERT_TRUE(WriteFile(garbage, "this is not a certificate\n").ok());
  RunResult v = RunBinary(
      CtlBinary(), {"verify", "--bundle", dir.path() + "/data/bundle.pem",
                    "--chain", garbage});
  EXPECT_EQ(v.status.code, 1) << v.ToString();
  EXPECT_THAT(v.out, StartsWith("FAILED parse:")) << v.ToString();
}

// "name{a="x",b="y"} 3" -> value, for the series with exactly these labels.
double MetricValue(const std::string& metrics, const std::string& name,
                   const std::map<std::string, std::string>& labels) {
  for (absl::string_view line : absl::StrSplit(metrics, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    if (!absl::ConsumePrefix(&line, name)) continue;
    std::map<std::string, std::string> got;
    if (absl::ConsumePrefix(&line, "{")) {
      size_t close = line.find('}');
      if (close == absl::string_view::npos) continue;
      for (absl::string_view pair :
           absl::StrSplit(line.substr(0, close), ',', absl::SkipEmpty())) {
        std::vector<absl::string_view> kv =
            absl::StrSplit(pair, absl::MaxSplits('=', 1));
        if (kv.size() != 2) continue;
        got[std::string(kv[0])] = std::string(
            absl::StripPrefix(absl::StripSuffix(kv[1], "\""), "\""));
      }
      line.remove_prefix(close + 1);
    } else if (!line.empty() && line[0] != ' ') {
      continue;  // a longer metric name
    }
    if (got != labels) continue;
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(line), &value)) {
      return value;
    }
  }
  return -1;
}

TEST(CaObservabilityTest, MetricsHealthAndLogLinesMatchWhatHappened) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca_or = CaInstance::Init("obs");
  ASSERT_TRUE(ca_or.ok()) << ca_or.status();
  CaInstance& ca = **ca_or;
  const SigningKey key = SigningKey::Ec("ec-1");
  const std::string jwks = ca.data_dir() + "/../jwks.json";
  ASSERT_TRUE(WriteFile(jwks, JwksJson({key})).ok());
  absl::Status served =
      ca.Serve(absl::StrCat("kubernetes:\n  jwks_file: ", jwks, "\n"));
  ASSERT_TRUE(served.ok()) << served;

  for (const char* path : {"/healthz", "/readyz"}) {
    absl::StatusOr<HttpResponse> r = HttpGet("127.0.0.1", ca.http_port(), path);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 200) << path << ": " << r->body;
  }

  // 2 join-token issuances, 1 k8s-token issuance, 1 renewal; refused: 1 bad
  // k8s token, 1 reused join token.
  std::unique_ptr<client::CaClient> client = ca.Client();
  absl::StatusOr<std::string> token = ca.JoinToken(SpiffeIdFor("o", "a"));
  ASSERT_TRUE(token.ok());
  absl::StatusOr<client::IssuedCertificate> a =
      client->IssueWithJoinToken(*token);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_FALSE(client->IssueWithJoinToken(*token).ok());
  ASSERT_TRUE(ca.IssueFor(SpiffeIdFor("o", "b")).ok());
  ASSERT_TRUE(client->IssueWithToken(MintToken(key, TokenClaims())).ok());
  TokenClaims expired;
  expired.expires_in = -absl::Minutes(10);
  EXPECT_FALSE(client->IssueWithToken(MintToken(key, expired)).ok());
  ASSERT_TRUE(client->Renew(a->ChainPem(), a->key_pem).ok());

  absl::StatusOr<HttpResponse> metrics =
      HttpGet("127.0.0.1", ca.http_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  ASSERT_EQ(metrics->status, 200);
  const std::string& m = metrics->body;
  const std::string name = "meshguard_ca_issuances_total";
  EXPECT_EQ(MetricValue(m, name,
                        {{"auth_method", "join_token"}, {"result", "issued"}}),
            2)
      << m;
  EXPECT_EQ(MetricValue(m, name,
                        {{"auth_method", "join_token"}, {"result", "refused"}}),
            1);
  EXPECT_EQ(MetricValue(m, name,
                        {{"auth_method", "k8s_token"}, {"result", "issued"}}),
            1);
  EXPECT_EQ(MetricValue(m, name,
                        {{"auth_method", "k8s_token"}, {"result", "refused"}}),
            1);
  EXPECT_EQ(
      MetricValue(m, name, {{"auth_method", "renewal"}, {"result", "issued"}}),
      1);

  // One JSON line per issuance and per refusal.
  std::vector<std::string> issued = ca.LogLines("issued");
  std::vector<std::string> refused = ca.LogLines("issuance_refused");
  EXPECT_EQ(issued.size(), 4u) << ca.process()->DescribeOutput();
  EXPECT_EQ(refused.size(), 2u) << ca.process()->DescribeOutput();
  for (const std::string& line : issued) {
    EXPECT_THAT(line, StartsWith("{"));
    EXPECT_THAT(line, HasSubstr("\"serial\":"));
    EXPECT_THAT(line, HasSubstr("\"spiffe_id\":\"spiffe://cluster.local/"));
  }
  for (const std::string& line : refused) {
    EXPECT_THAT(line, HasSubstr("\"reason\":"));
  }
  EXPECT_EQ(ca.LogLines("ca_started").size(), 1u);

  // After SIGTERM: exit 0, and /readyz is gone.
  ExitStatus stopped = ca.Stop();
  EXPECT_TRUE(stopped.Success()) << stopped.ToString();
  EXPECT_FALSE(HttpGet("127.0.0.1", ca.http_port(), "/readyz").ok());
}

}  // namespace
}  // namespace meshguard::integration
