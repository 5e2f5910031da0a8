// Graceful shutdown: SIGTERM reaches a sidecar while a 1 s call is in
// flight through it. The call completes OK, and the process exits 0 well
// within the drain deadline (15 s by default), on the outbound (caller's)
// side and on the inbound (callee's) side.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/integration/sidecar_fixture.h"
#include "tests/integration/testing/process.h"
#include "tests/testing/echo.grpc.pb.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::CancelStateRequest;
using ::meshguard::testing::CancelStateResponse;
using ::meshguard::testing::SleepRequest;
using ::meshguard::testing::SleepResponse;

constexpr char kEchoAuthority[] = "echo.svc";
constexpr absl::Duration kDrainDeadline = absl::Seconds(15);  // the default

enum class Side { kOutbound, kInbound };

void SigtermWithCallInFlight(Side side) {
  absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("shutdown");
  ASSERT_TRUE(mesh.ok()) << mesh.status();
  absl::StatusOr<EchoApp*> app = (*mesh)->StartEchoServer();
  ASSERT_TRUE(app.ok()) << app.status();
  SidecarSpec b_spec;
  b_spec.name = "server";
  b_spec.app = (*app)->address();
  absl::StatusOr<Sidecar*> b = (*mesh)->StartSidecar(b_spec);
  ASSERT_TRUE(b.ok()) << b.status();
  SidecarSpec a_spec;
  a_spec.name = "client";
  a_spec.routes = {RouteTo(kEchoAuthority, **b)};
  absl::StatusOr<Sidecar*> a = (*mesh)->StartSidecar(a_spec);
  ASSERT_TRUE(a.ok()) << a.status();
  Sidecar* victim = side == Side::kOutbound ? *a : *b;

  // A second channel, for watching the app, made before the signal.
  auto watch = (*a)->Stub(kEchoAuthority);
  auto stub = (*a)->Stub(kEchoAuthority);
  const std::string token = "in-flight";
  grpc::Status status;
  absl::Time call_done;
  std::thread caller([&] {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    SleepRequest request;
    request.set_token(token);
    request.set_sleep_ms(1000);
    SleepResponse response;
    status = stub->Sleep(&context, request, &response);
    call_done = absl::Now();
  });
  const bool started = meshguard::testing::WaitFor(
      [&] {
        grpc::ClientContext c;
        c.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(2));
        CancelStateRequest r;
        r.set_token(token);
        CancelStateResponse s;
        return watch->GetCancelState(&c, r, &s).ok() && s.started();
      },
      absl::Seconds(5), absl::Milliseconds(20));
  EXPECT_TRUE(started) << "the call never reached the app";

  const absl::Time signalled = absl::Now();
  victim->process()->Signal(SIGTERM);
  caller.join();
  EXPECT_TRUE(status.ok()) << status.error_code() << " "
                           << status.error_message();
  absl::StatusOr<ExitStatus> exit =
      victim->process()->Wait(kDrainDeadline + absl::Seconds(5));
  const absl::Duration exit_after = absl::Now() - signalled;
  ASSERT_TRUE(exit.ok()) << "still running " << exit_after << " after SIGTERM";
  EXPECT_TRUE(exit->Success()) << exit->ToString();
  EXPECT_LT(exit_after, kDrainDeadline);
  printf("call done %.2f s after SIGTERM, process exited after %.2f s\n",
         absl::ToDoubleSeconds(call_done - signalled),
         absl::ToDoubleSeconds(exit_after));
  if (::testing::Test::HasFailure()) {
    fprintf(stderr, "%s\n", (*mesh)->DescribeAll().c_str());
  }
}

TEST(SidecarShutdownTest, SigtermOnCallerSideLetsInFlightCallFinish) {
  SigtermWithCallInFlight(Side::kOutbound);
}

TEST(SidecarShutdownTest, SigtermOnCalleeSideLetsInFlightCallFinish) {
  SigtermWithCallInFlight(Side::kInbound);
}

}  // namespace
}  // namespace meshguard::integration
