// examples/svid_client, the client library's example program, against a
// real meshguard-ca: it gets an identity with a join token, writes key,
// chain and bundle as a set, renews at half-life with a new key and serial
// and the same SPIFFE ID, and follows the trust bundle.
#include <sys/stat.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::ProcessOptions;
using ::meshguard::testing::RunfilePath;
using ::meshguard::testing::WaitFor;
using ::testing::HasSubstr;

// "key=value" out of one of svid_client's lines.
std::string Field(absl::string_view line, absl::string_view key) {
  for (absl::string_view part : absl::StrSplit(line, ' ')) {
    if (absl::ConsumePrefix(&part, absl::StrCat(key, "="))) {
      return std::string(part);
    }
  }
  return "";
}

TEST(SvidClientExampleTest, HoldsAndRenewsItsIdentityAndFollowsTheBundle) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("svid");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE((*ca)->Serve("rate_limit:\n  requests_per_second: 0\n").ok());
  const std::string id = SpiffeIdFor("shop", "batch-job");
  absl::StatusOr<std::string> token = (*ca)->JoinToken(id);
  ASSERT_TRUE(token.ok()) << token.status();
  const std::string out = (*ca)->data_dir() + "/../svid";

  ProcessOptions options;
  options.binary = RunfilePath("examples/svid_client/svid_client");
  options.args = {"--ca",         (*ca)->address(),
                  "--ca-bundle",  (*ca)->bundle_path(),
                  "--join-token", *token,
                  "--out-dir",    out,
                  "--ttl",        "6s",
                  "--renewals",   "2"};
  absl::StatusOr<std::unique_ptr<meshguard::testing::Process>> p =
      meshguard::testing::Process::Start(options);
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(
      WaitFor([&] { return absl::StrContains((*p)->ReadStdout(), "issued "); },
              absl::Seconds(10)))
      << (*p)->ReadStderr();

  // A revocation elsewhere: the program hears of the new bundle.
  absl::StatusOr<client::IssuedCertificate> other =
      (*ca)->IssueFor(SpiffeIdFor("shop", "other"));
  ASSERT_TRUE(other.ok()) << other.status();
  RunResult revoked = (*ca)->Ctl({"revoke", "--serial", other->serial});
  ASSERT_TRUE(revoked.status.Success()) << revoked.ToString();
  const std::string sequence =
      OutputField(revoked.out, "bundle_sequence_number");

  absl::StatusOr<meshguard::testing::ExitStatus> exited =
      (*p)->Wait(absl::Seconds(20));
  ASSERT_TRUE(exited.ok()) << "still running after two renewals' time";
  EXPECT_TRUE(exited->Success()) << exited->ToString() << (*p)->ReadStderr();

  const std::string stdout_text = (*p)->ReadStdout();
  std::vector<std::string> certs, bundles;
  for (absl::string_view line : absl::StrSplit(stdout_text, '\n')) {
    if (absl::StartsWith(line, "issued ") ||
        absl::StartsWith(line, "renewed ")) {
      certs.emplace_back(line);
    } else if (absl::StartsWith(line, "bundle ")) {
      bundles.emplace_back(line);
    }
  }
  ASSERT_EQ(certs.size(), 3u) << stdout_text;
  std::set<std::string> serials;
  for (const std::string& line : certs) {
    EXPECT_EQ(Field(line, "spiffe_id"), id) << line;
    serials.insert(Field(line, "serial"));
  }
  EXPECT_EQ(serials.size(), 3u) << "every renewal is a new certificate";
  EXPECT_TRUE(std::any_of(bundles.begin(), bundles.end(),
                          [&](const std::string& line) {
                            return Field(line, "sequence") == sequence;
                          }))
      << "no bundle " << sequence << " in: " << stdout_text;

  // What it left on disk is the last certificate, with its key: it verifies
  // against the bundle it wrote, and renews.
  struct stat st;
  ASSERT_EQ(stat((out + "/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  RunResult verify =
      RunBinary(CtlBinary(), {"verify", "--bundle", out + "/bundle.pem",
                              "--chain", out + "/cert.pem"});
  EXPECT_EQ(verify.out, "OK " + id + "\n") << verify.ToString();
  RunResult inspect =
      RunBinary(CtlBinary(), {"cert", "inspect", out + "/cert.pem"});
  EXPECT_THAT(inspect.out,
              HasSubstr("serial: " + Field(certs.back(), "serial")));
  RunResult renew =
      (*ca)->Ctl({"cert", "renew", "--cert", out + "/cert.pem", "--key",
                  out + "/key.pem", "--out_dir", out + "-renewed"});
  EXPECT_TRUE(renew.status.Success()) << renew.ToString();
}

}  // namespace
}  // namespace meshguard::integration
