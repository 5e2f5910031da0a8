// The CA goes away and comes back: sidecars keep serving on the
// certificates they hold (a failed renewal never evicts good credentials),
// and once the CA is back on the same address and data dir, the next
// renewal succeeds.
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/sidecar_fixture.h"
#include "tests/integration/testing/process.h"
#include "tests/testing/echo.grpc.pb.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::EchoRequest;
using ::meshguard::testing::EchoResponse;

constexpr char kEchoAuthority[] = "echo.svc";
constexpr char kRenewals[] = "meshguard_certificate_renewals_total";

// Unary calls on one thread until stopped; counts and remembers failures.
class Load {
 public:
  explicit Load(const Sidecar* via) : stub_(via->Stub(kEchoAuthority)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int ok() const { return ok_.load(); }
  int failed() const { return failed_.load(); }
  std::string Errors() {
    absl::MutexLock lock(&mu_);
    return absl::StrJoin(errors_, "\n");
  }

 private:
  void Run() {
    while (!stop_.load()) {
      grpc::ClientContext context;
      context.set_deadline(std::chrono::system_clock::now() +
                           std::chrono::seconds(5));
      EchoRequest request;
      request.set_payload("during the outage");
      EchoResponse response;
      grpc::Status status = stub_->Echo(&context, request, &response);
      if (status.ok()) {
        ++ok_;
      } else {
        ++failed_;
        absl::MutexLock lock(&mu_);
        if (errors_.size() < 10) {
          errors_.push_back(absl::StrCat(
              absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::UTCTimeZone()),
              " ", status.error_code(), " ", status.error_message()));
        }
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
  }

  std::unique_ptr<meshguard::testing::Echo::Stub> stub_;
  std::atomic<bool> stop_{false};
  std::atomic<int> ok_{0};
  std::atomic<int> failed_{0};
  absl::Mutex mu_;
  std::vector<std::string> errors_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
};

TEST(SidecarCaOutageTest, TrafficSurvivesCaOutageAndRenewalResumes) {
  absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("outage");
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  absl::StatusOr<EchoApp*> app = (*mesh)->StartEchoServer();
  ASSERT_TRUE(app.ok()) << app.status();
  // 30 s certificates: renewal due at ~15 s (+/- 10%), expiry at 30 s.
  SidecarSpec b_spec;
  b_spec.name = "server";
  b_spec.app = (*app)->address();
  b_spec.ttl = absl::Seconds(30);
  absl::StatusOr<Sidecar*> b = (*mesh)->StartSidecar(b_spec);
  ASSERT_TRUE(b.ok()) << b.status();
  SidecarSpec a_spec;
  a_spec.name = "client";
  a_spec.ttl = absl::Seconds(30);
  a_spec.routes = {RouteTo(kEchoAuthority, **b)};
  absl::StatusOr<Sidecar*> a = (*mesh)->StartSidecar(a_spec);
  ASSERT_TRUE(a.ok()) << a.status();
  const std::string a_serial = (*a)->Serial();
  const std::string b_serial = (*b)->Serial();
  ASSERT_FALSE(a_serial.empty());
  const double a_ok_before = (*a)->MetricSum(kRenewals, {"result=\"ok\""});

  Load load(*a);
  const absl::Time stopped_at = absl::Now();
  ExitStatus stopped = (*mesh)->StopCa();
  EXPECT_TRUE(stopped.Success()) << stopped.ToString();

  // Stay down through a renewal attempt: it fails, and the certificate in
  // use stays.
  const bool renewal_failed = meshguard::testing::WaitFor(
      [&] { return (*a)->MetricSum(kRenewals, {"result=\"error\""}) > 0; },
      absl::Seconds(20), absl::Milliseconds(200));
  EXPECT_TRUE(renewal_failed) << "no failed renewal observed";
  // And at least ~5 s with the CA gone: every call still gets through on
  // the old certificate.
  const int ok_at_failure = load.ok();
  absl::SleepFor(std::max(absl::Seconds(2),
                          absl::Seconds(5) - (absl::Now() - stopped_at)));
  EXPECT_GT(load.ok(), ok_at_failure + 20);
  EXPECT_EQ(load.failed(), 0) << load.Errors();
  EXPECT_TRUE((*a)->process()->Running());
  EXPECT_EQ((*a)->Serial(), a_serial);
  EXPECT_EQ((*b)->Serial(), b_serial);
  printf("CA down for %.1f s; %d calls ok meanwhile\n",
         absl::ToDoubleSeconds(absl::Now() - stopped_at), load.ok());

  // Back on the same port and data dir: the next renewal succeeds before
  // the 30 s certificates run out.
  const absl::Time restarted_at = absl::Now();
  absl::Status restarted = (*mesh)->RestartCaOnSamePorts();
  ASSERT_TRUE(restarted.ok()) << restarted;
  const bool renewed = meshguard::testing::WaitFor(
      [&] {
        return (*a)->MetricSum(kRenewals, {"result=\"ok\""}) > a_ok_before &&
               (*a)->Serial() != a_serial && (*b)->Serial() != b_serial;
      },
      absl::Seconds(12), absl::Milliseconds(200));
  EXPECT_TRUE(renewed) << "after the CA came back: a serial " << (*a)->Serial()
                       << " (was " << a_serial << "), b serial "
                       << (*b)->Serial() << " (was " << b_serial << ")";
  printf("renewed %.1f s after the CA restart\n",
         absl::ToDoubleSeconds(absl::Now() - restarted_at));
  absl::SleepFor(absl::Seconds(1));
  load.Stop();
  EXPECT_EQ(load.failed(), 0) << load.Errors();
  if (HasFailure()) fprintf(stderr, "%s\n", (*mesh)->DescribeAll().c_str());
}

}  // namespace
}  // namespace meshguard::integration
