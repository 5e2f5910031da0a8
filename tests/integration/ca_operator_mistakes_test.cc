// What happens when an operator gets something wrong, or does something
// twice: a second CA on the same port or data dir, a restart between
// revocations, a revocation that changes nothing, a serial typed the way
// `openssl x509 -serial` prints it, an output directory that cannot be
// written, a negative TTL. Each must fail at once with a message naming
// what was wrong, and leave nothing lost or half-written behind.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::ProcessOptions;
using ::meshguard::testing::ReadFile;
using ::meshguard::testing::RunToCompletion;
using ::meshguard::testing::WaitForHttpOk;
using ::meshguard::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// `meshguard-ca serve` run to completion (it is expected to fail at start).
RunResult ServeExpectingFailure(const std::vector<std::string>& args) {
  ProcessOptions options;
  options.binary = CaBinary();
  options.args = {"serve"};
  options.args.insert(options.args.end(), args.begin(), args.end());
  absl::StatusOr<RunResult> r = RunToCompletion(options, absl::Seconds(20));
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : RunResult{};
}

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

uint64_t SequenceOf(const RunResult& r, const std::string& field) {
  uint64_t n = 0;
  EXPECT_TRUE(absl::SimpleAtoi(OutputField(r.out, field), &n)) << r.ToString();
  return n;
}

class CaOperatorMistakesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("ops");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    absl::Status served = ca_->Serve("");
    ASSERT_TRUE(served.ok()) << served;
  }

  std::string Scratch(const std::string& name) const {
    return absl::StrCat(ca_->data_dir(), "/../", name);
  }

  uint64_t FetchedSequence() {
    RunResult fetched =
        ca_->Ctl({"bundle", "fetch", "--out_dir", Scratch("fetched")});
    EXPECT_TRUE(fetched.status.Success()) << fetched.ToString();
    return SequenceOf(fetched, "sequence_number");
  }

  std::unique_ptr<CaInstance> ca_;
};

TEST_F(CaOperatorMistakesTest, SecondCaOnTheSamePortFailsAtStart) {
  absl::StatusOr<std::unique_ptr<CaInstance>> other = CaInstance::Init("two");
  ASSERT_TRUE(other.ok()) << other.status();
  absl::StatusOr<int> http = PickFreePort();
  ASSERT_TRUE(http.ok());
  RunResult r = ServeExpectingFailure({"--data_dir", (*other)->data_dir(),
                                       "--listen", Loopback(ca_->grpc_port()),
                                       "--admin_listen", Loopback(*http)});
  EXPECT_FALSE(r.timed_out) << "it must not start serving";
  EXPECT_NE(r.status.code, 0) << r.ToString();
  EXPECT_THAT(r.err, HasSubstr(absl::StrCat("cannot listen on ",
                                            Loopback(ca_->grpc_port()))))
      << r.ToString();
  // The first CA still answers every call, not a neighbour's.
  for (int i = 0; i < 6; ++i) {
    RunResult fetched =
        ca_->Ctl({"bundle", "fetch", "--out_dir", Scratch("fetched")});
    EXPECT_TRUE(fetched.status.Success()) << fetched.ToString();
  }
}

TEST_F(CaOperatorMistakesTest, SecondCaOnTheSameDataDirFailsAtStart) {
  absl::StatusOr<int> port = PickFreePort();
  absl::StatusOr<int> http = PickFreePort();
  ASSERT_TRUE(port.ok() && http.ok());
  RunResult r = ServeExpectingFailure({"--data_dir", ca_->data_dir(),
                                       "--listen", Loopback(*port),
                                       "--admin_listen", Loopback(*http)});
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.status.code, 0) << r.ToString();
  EXPECT_THAT(r.err,
              AllOf(HasSubstr(absl::StrCat("data dir ", ca_->data_dir(),
                                           " is in use by another process")),
                    HasSubstr(absl::StrCat("pid ", ca_->process()->pid())),
                    HasSubstr("ca.lock")))
      << r.ToString();
  // The first CA keeps its admin socket and serving certificate.
  RunResult list = ca_->Ctl({"list"});
  EXPECT_TRUE(list.status.Success()) << list.ToString();
  EXPECT_TRUE(ca_->IssueFor(SpiffeIdFor("shop", "after")).ok());
}

TEST_F(CaOperatorMistakesTest, BundleSequenceKeepsRisingAcrossRestarts) {
  absl::StatusOr<client::IssuedCertificate> a =
      ca_->IssueFor(SpiffeIdFor("shop", "a"));
  ASSERT_TRUE(a.ok()) << a.status();
  RunResult revoked = ca_->Ctl({"revoke", "--serial", a->serial});
  ASSERT_TRUE(revoked.status.Success()) << revoked.ToString();
  const uint64_t before_restart = SequenceOf(revoked, "bundle_sequence_number");
  EXPECT_EQ(FetchedSequence(), before_restart);

  ASSERT_TRUE(ca_->Stop().Success());
  ASSERT_TRUE(ca_->Serve().ok());
  // Sidecars ignore a bundle whose number is not above the last they saw:
  // a restarted CA that counted from 1 again would go unheard.
  const uint64_t after_restart = FetchedSequence();
  EXPECT_GT(after_restart, before_restart);

  absl::StatusOr<client::IssuedCertificate> b =
      ca_->IssueFor(SpiffeIdFor("shop", "b"));
  ASSERT_TRUE(b.ok()) << b.status();
  RunResult again = ca_->Ctl({"revoke", "--serial", b->serial});
  ASSERT_TRUE(again.status.Success()) << again.ToString();
  EXPECT_GT(SequenceOf(again, "bundle_sequence_number"), after_restart);
}

TEST_F(CaOperatorMistakesTest, RevocationThatChangesNothingPublishesNothing) {
  absl::StatusOr<client::IssuedCertificate> a =
      ca_->IssueFor(SpiffeIdFor("shop", "a"));
  ASSERT_TRUE(a.ok()) << a.status();
  RunResult first = ca_->Ctl({"revoke", "--serial", a->serial});
  ASSERT_TRUE(first.status.Success()) << first.ToString();
  const uint64_t sequence = SequenceOf(first, "bundle_sequence_number");

  RunResult twice = ca_->Ctl({"revoke", "--serial", a->serial});
  EXPECT_TRUE(twice.status.Success()) << twice.ToString();
  EXPECT_THAT(twice.out, HasSubstr("nothing newly revoked"));
  EXPECT_EQ(SequenceOf(twice, "bundle_sequence_number"), sequence);
  RunResult nobody =
      ca_->Ctl({"revoke", "--spiffe_id", SpiffeIdFor("shop", "never-issued")});
  EXPECT_TRUE(nobody.status.Success()) << nobody.ToString();
  EXPECT_THAT(nobody.out, HasSubstr("nothing newly revoked"));
  EXPECT_EQ(FetchedSequence(), sequence)
      << "a new bundle makes every sidecar drain its connections";

  // Not an ID at all, or not this CA's: refused, naming it.
  for (const std::string& bad :
       {std::string("not-a-spiffe-id"),
        std::string("spiffe://other.example/ns/shop/sa/a")}) {
    SCOPED_TRACE(bad);
    RunResult r = ca_->Ctl({"revoke", "--spiffe_id", bad});
    EXPECT_NE(r.status.code, 0) << r.ToString();
    EXPECT_THAT(r.err, HasSubstr(bad)) << r.ToString();
    RunResult listed = ca_->Ctl({"list", "--spiffe_id", bad});
    EXPECT_NE(listed.status.code, 0) << listed.ToString();
  }
  EXPECT_EQ(FetchedSequence(), sequence);
}

TEST_F(CaOperatorMistakesTest, SerialIsAcceptedAsOpensslAndBrowsersPrintIt) {
  // `openssl x509 -serial` prints upper case with leading zeros; browsers
  // and many tools put ':' between bytes; some write 0x.
  auto upper_with_colons = [](const std::string& lower) {
    std::string hex = absl::AsciiStrToUpper(lower);
    if (hex.size() % 2 != 0) hex = "0" + hex;
    std::string out;
    for (size_t i = 0; i < hex.size(); i += 2) {
      if (!out.empty()) out += ":";
      out += hex.substr(i, 2);
    }
    return out;
  };
  const std::vector<std::function<std::string(const std::string&)>> spellings =
      {[](const std::string& s) { return "00" + absl::AsciiStrToUpper(s); },
       upper_with_colons, [](const std::string& s) { return "0x" + s; }};
  for (size_t i = 0; i < spellings.size(); ++i) {
    SCOPED_TRACE(i);
    absl::StatusOr<client::IssuedCertificate> c =
        ca_->IssueFor(SpiffeIdFor("shop", absl::StrCat("s", i)));
    ASSERT_TRUE(c.ok()) << c.status();
    const std::string typed = spellings[i](c->serial);
    RunResult r = ca_->Ctl({"revoke", "--serial", typed});
    EXPECT_TRUE(r.status.Success()) << r.ToString();
    EXPECT_THAT(r.out, HasSubstr(absl::StrCat("revoked ", c->serial)))
        << "typed as " << typed;
  }
  RunResult garbage = ca_->Ctl({"revoke", "--serial", "zz12"});
  EXPECT_NE(garbage.status.code, 0) << garbage.ToString();
  EXPECT_THAT(garbage.err, HasSubstr("not a hexadecimal number"));
}

TEST_F(CaOperatorMistakesTest, UnwritableOutDirDoesNotUseUpTheJoinToken) {
  const std::string id = SpiffeIdFor("shop", "frontend");
  absl::StatusOr<std::string> token = ca_->JoinToken(id);
  ASSERT_TRUE(token.ok()) << token.status();
  const int issued_before = ca_->CountCertificates();
  const std::string not_a_dir = Scratch("a-file");
  ASSERT_TRUE(WriteFile(not_a_dir, "x").ok());

  RunResult r = ca_->Ctl(
      {"cert", "request", "--join_token", *token, "--out_dir", not_a_dir});
  EXPECT_NE(r.status.code, 0) << r.ToString();
  EXPECT_THAT(r.err, HasSubstr(not_a_dir)) << r.ToString();
  EXPECT_EQ(ca_->CountCertificates(), issued_before)
      << "nothing may be issued for output that cannot be written";

  // The token still works.
  RunResult retry = ca_->Ctl({"cert", "request", "--join_token", *token,
                              "--out_dir", Scratch("creds")});
  EXPECT_TRUE(retry.status.Success()) << retry.ToString();
  EXPECT_EQ(OutputField(retry.out, "spiffe_id"), id);
}

TEST_F(CaOperatorMistakesTest, FailedWriteLeavesTheOldCredentialsWhole) {
  const std::string id = SpiffeIdFor("shop", "orders");
  absl::StatusOr<std::string> token = ca_->JoinToken(id);
  ASSERT_TRUE(token.ok()) << token.status();
  const std::string creds = Scratch("orders");
  RunResult got =
      ca_->Ctl({"cert", "request", "--join_token", *token, "--out_dir", creds});
  ASSERT_TRUE(got.status.Success()) << got.ToString();

  // A directory where one of the files should go: the set cannot be
  // replaced, so none of it may be.
  const std::string target = Scratch("target");
  ASSERT_EQ(mkdir(target.c_str(), 0700), 0);
  ASSERT_TRUE(WriteFile(target + "/key.pem", "old key\n", 0600).ok());
  ASSERT_EQ(mkdir((target + "/cert.pem").c_str(), 0700), 0);
  RunResult renew =
      ca_->Ctl({"cert", "renew", "--cert", creds + "/cert.pem", "--key",
                creds + "/key.pem", "--out_dir", target});
  EXPECT_NE(renew.status.code, 0) << renew.ToString();
  EXPECT_THAT(renew.err, HasSubstr(target + "/cert.pem")) << renew.ToString();
  EXPECT_EQ(*ReadFile(target + "/key.pem"), "old key\n")
      << "the key must not be replaced without its certificate";
  EXPECT_FALSE(ReadFile(target + "/bundle.pem").ok());
  // No temporary files left behind.
  RunResult ls = RunBinary("/bin/ls", {"-A", target});
  EXPECT_EQ(ls.out, "cert.pem\nkey.pem\n");

  // Renewing in place replaces key and certificate together, and the pair
  // renews again.
  RunResult in_place =
      ca_->Ctl({"cert", "renew", "--cert", creds + "/cert.pem", "--key",
                creds + "/key.pem", "--out_dir", creds});
  ASSERT_TRUE(in_place.status.Success()) << in_place.ToString();
  RunResult next = ca_->Ctl({"cert", "renew", "--cert", creds + "/cert.pem",
                             "--key", creds + "/key.pem", "--out_dir", creds});
  EXPECT_TRUE(next.status.Success()) << next.ToString();
}

TEST_F(CaOperatorMistakesTest, ErrorsAreTheToolsOwnWithoutGrpcLogLines) {
  // A bundle that does not authenticate the CA: the TLS handshake fails.
  absl::StatusOr<std::unique_ptr<CaInstance>> other = CaInstance::Init("oth");
  ASSERT_TRUE(other.ok()) << other.status();
  RunResult r =
      RunBinary(CtlBinary(),
                {"--ca", ca_->address(), "--ca_bundle", (*other)->bundle_path(),
                 "bundle", "fetch", "--out_dir", Scratch("never")});
  EXPECT_EQ(r.status.code, 1) << r.ToString();
  EXPECT_THAT(r.err, ::testing::StartsWith("meshguardctl: ")) << r.ToString();
  EXPECT_THAT(r.err, HasSubstr("certificate verify failed")) << r.ToString();
  EXPECT_THAT(r.err, Not(HasSubstr("ssl_transport_security.cc")))
      << "gRPC's own log line leaked: " << r.ToString();
}

TEST_F(CaOperatorMistakesTest, NegativeTtlIsRefused) {
  RunResult token = ca_->Ctl({"token", "create", "--spiffe_id",
                              SpiffeIdFor("shop", "a"), "--ttl", "-5m"});
  EXPECT_EQ(token.status.code, 2) << token.ToString();
  EXPECT_THAT(token.err, HasSubstr("--ttl must not be negative"));
  EXPECT_THAT(token.out, Not(HasSubstr("token")));
  absl::StatusOr<client::IssuedCertificate> issued =
      ca_->Client()->IssueWithJoinToken("unused", absl::Minutes(-1));
  EXPECT_EQ(issued.status().code(), absl::StatusCode::kInvalidArgument)
      << issued.status();
}

// A data dir anyone may write to, or a signing key anyone may read, is
// refused at start with the path and its mode; group access, which
// Kubernetes gives the pod's fsGroup on a PVC and a Secret volume, is not.
TEST(CaDataDirModeTest, WorldAccessIsRefusedGroupAccessIsNot) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("modes");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const std::string dir = (*ca)->data_dir();
  const std::string key = dir + "/intermediate-key.pem";
  absl::StatusOr<int> port = PickFreePort();
  absl::StatusOr<int> http = PickFreePort();
  ASSERT_TRUE(port.ok() && http.ok());
  const std::vector<std::string> args = {"--data_dir",     dir,
                                         "--listen",       Loopback(*port),
                                         "--admin_listen", Loopback(*http)};

  ASSERT_EQ(chmod(key.c_str(), 0644), 0);
  RunResult readable = ServeExpectingFailure(args);
  EXPECT_FALSE(readable.timed_out) << "it must not start serving";
  EXPECT_NE(readable.status.code, 0) << readable.ToString();
  EXPECT_THAT(readable.err, AllOf(HasSubstr(absl::StrCat("signing key ", key)),
                                  HasSubstr("open to every user (mode 0644)"),
                                  HasSubstr("chmod o-rwx")))
      << readable.ToString();

  ASSERT_EQ(chmod(key.c_str(), 0600), 0);
  ASSERT_EQ(chmod(dir.c_str(), 0777), 0);
  RunResult writable = ServeExpectingFailure(args);
  EXPECT_FALSE(writable.timed_out) << "it must not start serving";
  EXPECT_NE(writable.status.code, 0) << writable.ToString();
  EXPECT_THAT(writable.err,
              AllOf(HasSubstr(absl::StrCat("data dir ", dir)),
                    HasSubstr("writable by every user (mode 0777)")))
      << writable.ToString();
  // Refused before anything was created in it.
  struct stat st;
  EXPECT_NE(stat((dir + "/admin.sock").c_str(), &st), 0);
  EXPECT_NE(stat((dir + "/meshguard-ca.db").c_str(), &st), 0);

  // The modes a Kubernetes fsGroup gives: the CA serves and issues.
  ASSERT_EQ(chmod(dir.c_str(), 02770), 0);
  ASSERT_EQ(chmod(key.c_str(), 0440), 0);
  absl::Status served = (*ca)->Serve("");
  ASSERT_TRUE(served.ok()) << served;
  EXPECT_TRUE((*ca)->IssueFor(SpiffeIdFor("shop", "fsgroup")).ok());
}

TEST(CaTrustDomainTest, ServeTakesTheTrustDomainFromTheDataDir) {
  absl::StatusOr<std::string> work =
      meshguard::testing::MakeShortTempDir("mg-td");
  ASSERT_TRUE(work.ok());
  const std::string data = *work + "/data";
  RunResult init = RunBinary(CaBinary(), {"init", "--data_dir", data,
                                          "--trust_domain", "example.org"});
  ASSERT_TRUE(init.status.Success()) << init.ToString();

  // Another trust domain on the command line: refused, naming both and the
  // flag that set it.
  absl::StatusOr<int> port = PickFreePort();
  absl::StatusOr<int> http = PickFreePort();
  ASSERT_TRUE(port.ok() && http.ok());
  RunResult wrong = ServeExpectingFailure(
      {"--data_dir", data, "--listen", Loopback(*port), "--admin_listen",
       Loopback(*http), "--trust_domain", "cluster.local"});
  EXPECT_NE(wrong.status.code, 0) << wrong.ToString();
  EXPECT_THAT(wrong.err, AllOf(HasSubstr("--trust-domain: \"cluster.local\""),
                               HasSubstr("\"example.org\"")))
      << wrong.ToString();

  // No config, no flag: the data dir's trust domain.
  ProcessOptions options;
  options.binary = CaBinary();
  options.args = {"serve",         "--data_dir",     data,           "--listen",
                  Loopback(*port), "--admin_listen", Loopback(*http)};
  absl::StatusOr<std::unique_ptr<meshguard::testing::Process>> ca =
      meshguard::testing::Process::Start(options);
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE(
      WaitForHttpOk("127.0.0.1", *http, "/readyz", absl::Seconds(15), ca->get())
          .ok())
      << (*ca)->ReadStderr();
  RunResult token = RunBinary(
      CtlBinary(), {"--admin_socket", data + "/admin.sock", "token", "create",
                    "--spiffe_id", "spiffe://example.org/ns/shop/sa/a"});
  ASSERT_TRUE(token.status.Success()) << token.ToString();
  RunResult got = RunBinary(
      CtlBinary(), {"--ca", Loopback(*port), "--ca_bundle",
                    data + "/bundle.pem", "cert", "request", "--join_token",
                    std::string(absl::StripAsciiWhitespace(token.out)),
                    "--out_dir", *work + "/creds"});
  EXPECT_TRUE(got.status.Success()) << got.ToString();
  EXPECT_EQ(OutputField(got.out, "spiffe_id"),
            "spiffe://example.org/ns/shop/sa/a");
  EXPECT_TRUE((*ca)->Stop().Success());
  meshguard::testing::RemoveTree(*work);
}

// One WatchTrustBundle stream of the watch-limit tests.
struct BundleWatch {
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientReader<ca::v1::TrustBundle>> reader;

  // Opens the stream; true once its first bundle has arrived.
  bool Open(ca::v1::CertificateAuthority::Stub* stub) {
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(30));
    reader =
        stub->WatchTrustBundle(&context, ca::v1::WatchTrustBundleRequest());
    ca::v1::TrustBundle first;
    return reader->Read(&first);
  }
  void Close() {
    context.TryCancel();
    reader->Finish().IgnoreError();
  }
};

// Whether a new watch opens within 5 s (the CA notices a closed watch
// asynchronously, so a freed place may take a moment to show).
bool WatchReopens(ca::v1::CertificateAuthority::Stub* stub) {
  for (int i = 0; i < 50; ++i) {
    BundleWatch d;
    const bool opened = d.Open(stub);
    d.Close();
    if (opened) return true;
    absl::SleepFor(absl::Milliseconds(100));
  }
  return false;
}

TEST(CaWatchLimitTest, WatchersBeyondTheCapAreRefusedUntilOneCloses) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("wcap");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE((*ca)->Serve("max_bundle_watchers: 2\n").ok());
  auto stub = (*ca)->RawStub();
  BundleWatch a, b, c;
  ASSERT_TRUE(a.Open(stub.get()));
  ASSERT_TRUE(b.Open(stub.get()));
  EXPECT_FALSE(c.Open(stub.get())) << "a third watch got a bundle";
  grpc::Status refused = c.reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("max_bundle_watchers 2"));

  a.Close();
  EXPECT_TRUE(WatchReopens(stub.get()))
      << "a closed watch did not free its place";
  b.Close();
}

TEST(CaWatchLimitTest, OneAddressCannotTakeEveryWatchPlace) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("wpa");
  ASSERT_TRUE(ca.ok()) << ca.status();
  // Room for 10 watchers in all, 2 of them from one address: the third
  // from 127.0.0.1 is refused although the CA has room.
  ASSERT_TRUE((*ca)
                  ->Serve("max_bundle_watchers: 10\n"
                          "max_bundle_watchers_per_address: 2\n")
                  .ok());
  auto stub = (*ca)->RawStub();
  BundleWatch a, b, c;
  ASSERT_TRUE(a.Open(stub.get()));
  ASSERT_TRUE(b.Open(stub.get()));
  EXPECT_FALSE(c.Open(stub.get()))
      << "a third watch from one address got a bundle";
  grpc::Status refused = c.reader->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(
      refused.error_message(),
      HasSubstr("from ipv4:127.0.0.1 (max_bundle_watchers_per_address 2)"));

  // A closed watch gives its address its place back.
  a.Close();
  EXPECT_TRUE(WatchReopens(stub.get()))
      << "a closed watch did not free its address's place";
  b.Close();
}

TEST(CaInitTest, BadLifetimeLeavesNoDirectoryAndClampingIsShown) {
  absl::StatusOr<std::string> work =
      meshguard::testing::MakeShortTempDir("mg-init");
  ASSERT_TRUE(work.ok());
  const std::string data = *work + "/data";
  RunResult bad =
      RunBinary(CaBinary(), {"init", "--data_dir", data, "--root_ttl", "-1h"});
  EXPECT_NE(bad.status.code, 0) << bad.ToString();
  EXPECT_THAT(bad.err, HasSubstr("--root-ttl -1h: must be positive"));
  struct stat st;
  EXPECT_NE(stat(data.c_str(), &st), 0) << "a failed init left " << data;

  // An intermediate asked to outlive its root is cut to the root's expiry,
  // and init says so by printing both.
  RunResult good =
      RunBinary(CaBinary(), {"init", "--data_dir", data, "--root_ttl", "10h",
                             "--intermediate_ttl", "100h"});
  ASSERT_TRUE(good.status.Success()) << good.ToString();
  const std::string root_until = OutputField(good.out, "root_not_after");
  EXPECT_FALSE(root_until.empty()) << good.out;
  EXPECT_EQ(OutputField(good.out, "intermediate_not_after"), root_until)
      << good.out;
  meshguard::testing::RemoveTree(*work);
}

TEST(CaCliVerifyTest, UnreadableCrlIsBlamedOnTheCrlFile) {
  absl::StatusOr<std::string> work =
      meshguard::testing::MakeShortTempDir("mg-crl");
  ASSERT_TRUE(work.ok());
  RunResult init = RunBinary(CaBinary(), {"init", "--data_dir", *work + "/d"});
  ASSERT_TRUE(init.status.Success()) << init.ToString();
  const std::string crl = *work + "/not-a-crl.pem";
  ASSERT_TRUE(WriteFile(crl, "not a CRL\n").ok());
  RunResult v = RunBinary(
      CtlBinary(), {"verify", "--bundle", *work + "/d/bundle.pem", "--chain",
                    *work + "/d/intermediate.pem", "--crl", crl});
  EXPECT_EQ(v.status.code, 2) << "not a verification failure (1) but input "
                                 "it cannot use: "
                              << v.ToString();
  EXPECT_THAT(v.err, HasSubstr(crl + ": ")) << v.ToString();
  RunResult missing =
      RunBinary(CtlBinary(), {"verify", "--bundle", *work + "/d/missing.pem",
                              "--chain", *work + "/d/intermediate.pem"});
  EXPECT_EQ(missing.status.code, 2) << missing.ToString();
  EXPECT_THAT(missing.err, HasSubstr(*work + "/d/missing.pem"));
  EXPECT_THAT(v.err, Not(HasSubstr("bundle.pem:"))) << v.ToString();
  meshguard::testing::RemoveTree(*work);
}

}  // namespace
}  // namespace meshguard::integration
