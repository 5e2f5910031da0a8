// The CA with a full disk. Its issuance log cannot commit, so it must issue
// nothing, and say so as what it is: UNAVAILABLE (retry later), not a bad
// credential. A join token is not spent by a bootstrap that failed for
// that, so the same token works once there is room again; nothing
// acknowledged is lost.
//
// The disk is a 4 MB tmpfs on /tmp (where CaInstance puts the CA's data
// dir) in a mount namespace of this test process and its children only,
// filled with a file and emptied by deleting it.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::HttpGet;
using ::meshguard::testing::HttpResponse;
using ::meshguard::testing::SumMetric;
using ::testing::HasSubstr;

constexpr char kFiller[] = "/tmp/filler";

class CaDiskFullTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // This thread (and what it starts) gets its own mounts; nothing here is
    // seen by the rest of the machine, and it all goes when the test ends.
    if (unshare(CLONE_NEWNS) != 0) {
      setup_error_ = absl::StrCat("unshare(CLONE_NEWNS): ", strerror(errno));
    } else if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      setup_error_ = absl::StrCat("mount --make-rprivate /: ", strerror(errno));
    } else if (mount("tmpfs", "/tmp", "tmpfs", 0, "size=4m,mode=1777") != 0) {
      setup_error_ = absl::StrCat("mount tmpfs /tmp: ", strerror(errno));
    }
  }

  void SetUp() override {
    ASSERT_TRUE(setup_error_.empty()) << setup_error_;
    absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("full");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = std::move(*ca);
    ASSERT_TRUE(ca_->Serve().ok());
  }
  void TearDown() override { unlink(kFiller); }

  // Writes kFiller until the tmpfs is full.
  static void FillTheDisk() {
    const int fd =
        open(kFiller, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0) << strerror(errno);
    std::vector<char> chunk(16 << 10, 'x');
    int err = 0;
    while (true) {
      const ssize_t n = write(fd, chunk.data(), chunk.size());
      if (n < 0) {
        err = errno;
        break;
      }
      if (n < static_cast<ssize_t>(chunk.size())) chunk.resize(1);
    }
    close(fd);
    ASSERT_EQ(err, ENOSPC) << strerror(err);
  }

  std::string Metrics() const {
    absl::StatusOr<HttpResponse> r =
        HttpGet("127.0.0.1", ca_->http_port(), "/metrics");
    return r.ok() ? r->body : "";
  }

  static std::string setup_error_;
  std::unique_ptr<CaInstance> ca_;
};

std::string CaDiskFullTest::setup_error_;

TEST_F(CaDiskFullTest, NothingIsIssuedTheCallerRetriesAndTheTokenSurvives) {
  std::unique_ptr<client::CaClient> client = ca_->Client();
  absl::StatusOr<client::IssuedCertificate> first =
      ca_->IssueFor(SpiffeIdFor("shop", "orders"));
  ASSERT_TRUE(first.ok()) << first.status();
  absl::StatusOr<std::string> token =
      ca_->JoinToken(SpiffeIdFor("shop", "payments"));
  ASSERT_TRUE(token.ok()) << token.status();
  const int issued_before = ca_->CountCertificates();
  ASSERT_EQ(issued_before, 1);

  ASSERT_NO_FATAL_FAILURE(FillTheDisk());

  // Bootstrap: the token cannot be spent, so nothing is issued; the caller
  // is told to come back, not that its token is bad.
  absl::StatusOr<client::IssuedCertificate> bootstrap =
      client->IssueWithJoinToken(*token);
  ASSERT_FALSE(bootstrap.ok());
  EXPECT_EQ(bootstrap.status().code(), absl::StatusCode::kUnavailable)
      << bootstrap.status();
  EXPECT_THAT(std::string(bootstrap.status().message()),
              HasSubstr("issuance log"));
  // Renewal: signed, but the record cannot be made durable, so the
  // certificate is never returned.
  absl::StatusOr<client::IssuedCertificate> renewal =
      client->Renew(first->ChainPem(), first->key_pem);
  ASSERT_FALSE(renewal.ok());
  EXPECT_EQ(renewal.status().code(), absl::StatusCode::kUnavailable)
      << renewal.status();

  const std::string metrics = Metrics();
  EXPECT_GE(SumMetric(metrics, "meshguard_ca_issuance_failures_total",
                      {"reason=\"storage_failed\""}),
            2)
      << metrics;
  EXPECT_EQ(SumMetric(metrics, "meshguard_ca_issuance_failures_total",
                      {"reason=\"bad_join_token\""}),
            0)
      << metrics;

  // Room again: the same join token works, and so does the renewal.
  ASSERT_EQ(unlink(kFiller), 0) << strerror(errno);
  absl::StatusOr<client::IssuedCertificate> retried =
      client->IssueWithJoinToken(*token);
  ASSERT_TRUE(retried.ok()) << retried.status();
  EXPECT_EQ(retried->spiffe_id, SpiffeIdFor("shop", "payments"));
  absl::StatusOr<client::IssuedCertificate> renewed =
      client->Renew(first->ChainPem(), first->key_pem);
  ASSERT_TRUE(renewed.ok()) << renewed.status();

  // Exactly what was acknowledged is in the log.
  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> records =
      ca_->Records();
  ASSERT_TRUE(records.ok()) << records.status();
  std::vector<std::string> serials;
  for (const ca::v1::CertificateRecord& r : *records) {
    serials.push_back(r.serial());
  }
  EXPECT_THAT(serials, ::testing::UnorderedElementsAre(
                           first->serial, retried->serial, renewed->serial));
  // The spent token stays spent.
  absl::StatusOr<client::IssuedCertificate> again =
      client->IssueWithJoinToken(*token);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnauthenticated);
}

}  // namespace
}  // namespace meshguard::integration
