// Revocation end to end: meshguardctl revoke (by serial, by SPIFFE ID), the
// next bundle's CRL as `bundle fetch` writes it and `verify --crl` uses it,
// the WatchTrustBundle push, and renewal with a revoked certificate.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/client/ca_client.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::ReadFile;
using ::meshguard::testing::WaitFor;
using ::meshguard::testing::WriteFile;
using ::testing::HasSubstr;
using ::testing::StartsWith;

class CaRevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("rev");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    absl::Status served = ca_->Serve("");
    ASSERT_TRUE(served.ok()) << served;
  }

  // Issues `id` and writes its chain to <work>/<name>.pem.
  std::string IssueToFile(const std::string& id, const std::string& name,
                          client::IssuedCertificate* out) {
    absl::StatusOr<client::IssuedCertificate> issued = ca_->IssueFor(id);
    EXPECT_TRUE(issued.ok()) << issued.status();
    if (!issued.ok()) return "";
    const std::string path = ca_->data_dir() + "/../" + name + ".pem";
    EXPECT_TRUE(WriteFile(path, issued->ChainPem()).ok());
    *out = *std::move(issued);
    return path;
  }

  std::unique_ptr<CaInstance> ca_;
};

TEST_F(CaRevocationTest, RevokedCertificatesFailVerifyUnderTheNextCrl) {
  client::IssuedCertificate a, b, c;
  const std::string a_pem = IssueToFile(SpiffeIdFor("shop", "a"), "a", &a);
  const std::string b_pem = IssueToFile(SpiffeIdFor("shop", "b"), "b", &b);
  const std::string c_pem = IssueToFile(SpiffeIdFor("shop", "c"), "c", &c);
  ASSERT_FALSE(a_pem.empty() || b_pem.empty() || c_pem.empty());

  // A watcher, open before the revocations.
  absl::Mutex mu;
  std::vector<std::pair<uint64_t, absl::Time>> seen;  // guarded by mu
  std::unique_ptr<client::CaClient> client = ca_->Client();
  std::unique_ptr<client::BundleWatch> watch =
      client->WatchTrustBundle([&](const ca::v1::TrustBundle& bundle) {
        absl::MutexLock lock(&mu);
        seen.emplace_back(bundle.sequence_number(), absl::Now());
      });
  auto max_seen = [&] {
    absl::MutexLock lock(&mu);
    uint64_t m = 0;
    for (const auto& s : seen) m = std::max(m, s.first);
    return m;
  };
  ASSERT_TRUE(WaitFor([&] { return max_seen() > 0; }, absl::Seconds(5)))
      << "the stream sends the current bundle at once";
  const uint64_t initial = max_seen();

  // By serial.
  RunResult by_serial =
      ca_->Ctl({"revoke", "--serial", a.serial, "--reason", "key compromise"});
  const absl::Time revoked_a = absl::Now();
  ASSERT_TRUE(by_serial.status.Success()) << by_serial.ToString();
  EXPECT_THAT(by_serial.out, HasSubstr(absl::StrCat("revoked ", a.serial)));
  uint64_t sequence_a = 0;
  ASSERT_TRUE(absl::SimpleAtoi(
      OutputField(by_serial.out, "bundle_sequence_number"), &sequence_a))
      << by_serial.out;
  EXPECT_GT(sequence_a, initial);
  EXPECT_TRUE(
      WaitFor([&] { return max_seen() >= sequence_a; }, absl::Seconds(1)))
      << "WatchTrustBundle did not deliver bundle " << sequence_a
      << " within 1 s of the revocation (last " << max_seen() << ")";
  {
    absl::MutexLock lock(&mu);
    for (const auto& [sequence, at] : seen) {
      if (sequence == sequence_a) {
        EXPECT_LE(at - revoked_a, absl::Seconds(1));
      }
    }
  }

  // By SPIFFE ID.
  RunResult by_id =
      ca_->Ctl({"revoke", "--spiffe_id", SpiffeIdFor("shop", "b")});
  ASSERT_TRUE(by_id.status.Success()) << by_id.ToString();
  EXPECT_THAT(by_id.out, HasSubstr(absl::StrCat("revoked ", b.serial)));
  uint64_t sequence_b = 0;
  ASSERT_TRUE(absl::SimpleAtoi(OutputField(by_id.out, "bundle_sequence_number"),
                               &sequence_b));
  EXPECT_GT(sequence_b, sequence_a);
  EXPECT_TRUE(
      WaitFor([&] { return max_seen() >= sequence_b; }, absl::Seconds(1)));
  watch->Stop();

  // Revoking again changes nothing and says so.
  RunResult again = ca_->Ctl({"revoke", "--serial", a.serial});
  ASSERT_TRUE(again.status.Success()) << again.ToString();
  EXPECT_THAT(again.out, HasSubstr("nothing newly revoked"));

  // The next bundle: its CRL refuses a and b, still accepts c.
  const std::string bundle_dir = ca_->data_dir() + "/../fetched";
  RunResult fetched = ca_->Ctl({"bundle", "fetch", "--out_dir", bundle_dir});
  ASSERT_TRUE(fetched.status.Success()) << fetched.ToString();
  absl::StatusOr<std::string> crl = ReadFile(bundle_dir + "/crl.pem");
  ASSERT_TRUE(crl.ok());
  EXPECT_THAT(*crl, HasSubstr("-----BEGIN X509 CRL-----"));
  for (const std::string& revoked : {a_pem, b_pem}) {
    SCOPED_TRACE(revoked);
    RunResult v = RunBinary(
        CtlBinary(), {"verify", "--bundle", bundle_dir + "/bundle.pem", "--crl",
                      bundle_dir + "/crl.pem", "--chain", revoked});
    EXPECT_EQ(v.status.code, 1) << v.ToString();
    EXPECT_THAT(v.out, StartsWith("FAILED crl:"));
  }
  RunResult v = RunBinary(
      CtlBinary(), {"verify", "--bundle", bundle_dir + "/bundle.pem", "--crl",
                    bundle_dir + "/crl.pem", "--chain", c_pem});
  EXPECT_EQ(v.status.code, 0) << v.ToString();
  EXPECT_EQ(v.out, absl::StrCat("OK ", SpiffeIdFor("shop", "c"), "\n"));

  // The log shows both as revoked, with the reason.
  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> records =
      ca_->Records();
  ASSERT_TRUE(records.ok()) << records.status();
  for (const ca::v1::CertificateRecord& r : *records) {
    const bool should = r.serial() == a.serial || r.serial() == b.serial;
    EXPECT_EQ(r.has_revoked_at(), should) << r.serial();
    if (r.serial() == a.serial) {
      EXPECT_EQ(r.revocation_reason(), "key compromise");
    }
  }
  RunResult live = ca_->Ctl({"list", "--live"});
  ASSERT_TRUE(live.status.Success());
  EXPECT_THAT(live.out, HasSubstr(c.serial));
  EXPECT_THAT(live.out, ::testing::Not(HasSubstr(a.serial)));
}

TEST_F(CaRevocationTest, RenewalWithRevokedCertificateIsRefused) {
  const std::string id = SpiffeIdFor("shop", "gone");
  absl::StatusOr<client::IssuedCertificate> mine = ca_->IssueFor(id);
  ASSERT_TRUE(mine.ok()) << mine.status();
  std::unique_ptr<client::CaClient> client = ca_->Client();
  absl::StatusOr<client::IssuedCertificate> before_revocation =
      client->Renew(mine->ChainPem(), mine->key_pem);
  ASSERT_TRUE(before_revocation.ok())
      << "renewal works before the revocation: " << before_revocation.status()
      << "\n"
      << ca_->process()->DescribeOutput();
  const int before = ca_->CountCertificates();

  ca::v1::RevokeCertificateRequest request;
  request.set_serial(mine->serial);
  absl::StatusOr<ca::v1::RevokeCertificateResponse> revoked =
      ca_->Admin()->Revoke(request);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  ASSERT_EQ(revoked->revoked_serials_size(), 1);

  absl::StatusOr<client::IssuedCertificate> r =
      client->Renew(mine->ChainPem(), mine->key_pem);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("revoked"));
  EXPECT_EQ(ca_->CountCertificates(), before);
}

}  // namespace
}  // namespace meshguard::integration
