// Certificate rotation under live traffic: two sidecars with 4 s
// certificates (renewed every ~2 s) carry a steady stream of unary calls for
// ~20 s across several rotations on both sides. Not one call may fail, and
// both the sidecars' serials (/certs) and the caller certificate the app sees
// (the Hash in x-forwarded-client-cert) must change over time.
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <memory>
#include <set>
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

// "...;Hash=<hex>;..." -> "<hex>".
std::string HashOf(const std::string& xfcc) {
  size_t start = xfcc.find("Hash=");
  if (start == std::string::npos) return "";
  start += 5;
  size_t end = xfcc.find(';', start);
  return xfcc.substr(start, end == std::string::npos ? end : end - start);
}

TEST(SidecarRotationTest, RotationUnderSteadyLoadLosesNoCall) {
  absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("rotation");
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  absl::StatusOr<EchoApp*> app = (*mesh)->StartEchoServer();
  ASSERT_TRUE(app.ok()) << app.status();
  SidecarSpec b_spec;
  b_spec.name = "server";
  b_spec.app = (*app)->address();
  b_spec.ttl = absl::Seconds(4);
  absl::StatusOr<Sidecar*> b = (*mesh)->StartSidecar(b_spec);
  ASSERT_TRUE(b.ok()) << b.status();
  SidecarSpec a_spec;
  a_spec.name = "client";
  a_spec.ttl = absl::Seconds(4);
  a_spec.routes = {RouteTo(kEchoAuthority, **b)};
  absl::StatusOr<Sidecar*> a = (*mesh)->StartSidecar(a_spec);
  ASSERT_TRUE(a.ok()) << a.status();
  const double a_renewals_before = (*a)->MetricSum(
      "meshguard_certificate_renewals_total", {"result=\"ok\""});
  const double b_renewals_before = (*b)->MetricSum(
      "meshguard_certificate_renewals_total", {"result=\"ok\""});

  constexpr int kThreads = 4;
  const absl::Duration kLoad = absl::Seconds(20);
  std::atomic<bool> stop{false};
  std::atomic<int> ok_calls{0};
  std::atomic<int> failed_calls{0};
  absl::Mutex mu;
  std::vector<std::string> errors;  // guarded by mu
  std::set<std::string> hashes;     // guarded by mu
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto stub = (*a)->Stub(kEchoAuthority);
      int i = 0;
      while (!stop.load()) {
        grpc::ClientContext context;
        context.set_deadline(std::chrono::system_clock::now() +
                             std::chrono::seconds(5));
        EchoRequest request;
        request.set_payload(absl::StrCat("t", t, " call ", i++));
        EchoResponse response;
        grpc::Status status = stub->Echo(&context, request, &response);
        absl::MutexLock lock(&mu);
        if (status.ok() && response.payload() == request.payload()) {
          ++ok_calls;
          hashes.insert(HashOf(response.forwarded_client_cert()));
        } else {
          ++failed_calls;
          if (errors.size() < 10) {
            errors.push_back(absl::StrCat(
                absl::FormatTime("%H:%M:%E3S", absl::Now(),
                                 absl::UTCTimeZone()),
                " ", status.error_code(), " ", status.error_message()));
          }
        }
      }
    });
  }
  std::set<std::string> a_serials;
  std::set<std::string> b_serials;
  const absl::Time end = absl::Now() + kLoad;
  while (absl::Now() < end) {
    if (std::string s = (*a)->Serial(); !s.empty()) a_serials.insert(s);
    if (std::string s = (*b)->Serial(); !s.empty()) b_serials.insert(s);
    absl::SleepFor(absl::Milliseconds(250));
  }
  stop = true;
  for (std::thread& t : threads) t.join();

  absl::MutexLock lock(&mu);
  EXPECT_EQ(failed_calls.load(), 0) << "first errors (UTC):\n"
                                    << absl::StrJoin(errors, "\n");
  EXPECT_GT(ok_calls.load(), 200);
  // 20 s of 4 s certificates renewed at ~half-life: ~10 serials each. Ask
  // for a few, so that a slow machine does not fail the test.
  EXPECT_GE(a_serials.size(), 4u) << absl::StrJoin(a_serials, ",");
  EXPECT_GE(b_serials.size(), 4u) << absl::StrJoin(b_serials, ",");
  EXPECT_GE(hashes.size(), 3u)
      << "the app kept seeing the same caller certificate";
  EXPECT_GE((*a)->MetricSum("meshguard_certificate_renewals_total",
                            {"result=\"ok\""}) -
                a_renewals_before,
            3);
  EXPECT_GE((*b)->MetricSum("meshguard_certificate_renewals_total",
                            {"result=\"ok\""}) -
                b_renewals_before,
            3);
  printf("rotation: %d calls ok, %d failed; serials a=%zu b=%zu; hashes=%zu\n",
         ok_calls.load(), failed_calls.load(), a_serials.size(),
         b_serials.size(), hashes.size());
  if (HasFailure()) fprintf(stderr, "%s\n", (*mesh)->DescribeAll().c_str());
}

// BUG (fails today): the identity agent schedules renewal from the
// certificate's notBefore, and meshguard-ca backdates notBefore by 5 minutes
// (kClockSkewAllowance) for clock skew. For any TTL under ~5 minutes the
// computed renewal time is already past, so the agent renews every ~100 ms
// (its floor) for the whole life of the sidecar: a renewal storm against the
// CA, and a new TLS context (and connection drains) several times a second.
// With --ttl 60s the first renewal is due ~30 s (27-33 s) after issuance.
TEST(SidecarRotationTest, RenewsAtHalfLifeNotContinuouslyWithBackdatedCert) {
  absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("halflife");
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  SidecarSpec spec;
  spec.name = "lonely";
  spec.ttl = absl::Seconds(60);
  absl::StatusOr<Sidecar*> s = (*mesh)->StartSidecar(spec);
  ASSERT_TRUE(s.ok()) << s.status();
  const std::string serial = (*s)->Serial();
  ASSERT_FALSE(serial.empty());
  absl::SleepFor(absl::Seconds(3));
  const double renewals =
      (*s)->MetricSum("meshguard_certificate_renewals_total", {});
  absl::StatusOr<google::protobuf::Struct> certs = (*s)->Certs();
  ASSERT_TRUE(certs.ok()) << certs.status();
  const auto& f = certs->fields();
  EXPECT_EQ((*s)->Serial(), serial)
      << "renewed within 3 s of a 60 s certificate; /certs not_before="
      << f.at("not_before").string_value()
      << " not_after=" << f.at("not_after").string_value()
      << " next_renewal=" << f.at("next_renewal").string_value()
      << " renewals_ok=" << f.at("renewals_ok").number_value();
  EXPECT_EQ(renewals, 0);
}

}  // namespace
}  // namespace meshguard::integration
