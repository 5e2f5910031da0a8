// Out of file descriptors. accept() then fails with EMFILE while the
// connection it could not take waits in the listen backlog, so the
// listening socket stays readable: a proxy that only retries spins a core
// and floods its log. The sidecar must pause accepting, say so once in its
// log and in /metrics, keep serving the connections it has, and accept
// again once descriptors are free. Its admin endpoint, a listener of its
// own, must not spin either. The CA, whose gRPC server gives up its
// listener on EMFILE, must exit to be restarted rather than run on
// unreachable.
//
// The limit is lowered on the running process with prlimit(2) to a few
// descriptors above what it holds, then more connections are opened than
// that leaves room for.
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/sidecar_fixture.h"
#include "tests/integration/testing/process.h"
#include "tests/testing/echo.grpc.pb.h"

namespace meshguard::integration {
namespace {

constexpr char kAuthority[] = "echo.fdlimit";

// utime + stime of `pid`, in seconds (-1 if unreadable).
double CpuSeconds(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) return -1;
  const size_t close = line.rfind(')');
  if (close == std::string::npos) return -1;
  std::vector<std::string> fields =
      absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
  if (fields.size() < 13) return -1;  // fields[11], [12]: utime, stime
  return (std::stod(fields[11]) + std::stod(fields[12])) /
         static_cast<double>(sysconf(_SC_CLK_TCK));
}

// How many descriptors `pid` has open (-1 if unreadable).
int OpenDescriptors(pid_t pid) {
  DIR* dir = opendir(absl::StrCat("/proc/", pid, "/fd").c_str());
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* entry = readdir(dir)) {
    if (entry->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

// A TCP connection to 127.0.0.1:`port` (the kernel completes it into the
// listen backlog whether or not the sidecar accepts it), or -1. From
// 127.0.0.2: its ephemeral source port is then never one that a test
// running beside this one has just picked to listen on at 127.0.0.1.
int ConnectLoopback(int port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in source{};
  source.sin_family = AF_INET;
  source.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1);
  if (bind(fd, reinterpret_cast<sockaddr*>(&source), sizeof(source)) != 0) {
    close(fd);
    return -1;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

class SidecarFdLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("fdlimit");
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = std::move(*mesh);
    absl::StatusOr<EchoApp*> app = mesh_->StartEchoServer();
    ASSERT_TRUE(app.ok()) << app.status();
    SidecarSpec server;
    server.name = "server";
    server.app = (*app)->address();
    absl::StatusOr<Sidecar*> b = mesh_->StartSidecar(server);
    ASSERT_TRUE(b.ok()) << b.status();
    server_ = *b;
    SidecarSpec client;
    client.name = "client";
    client.routes = {RouteTo(kAuthority, *server_)};
    absl::StatusOr<Sidecar*> a = mesh_->StartSidecar(client);
    ASSERT_TRUE(a.ok()) << a.status();
    client_ = *a;
  }
  void TearDown() override {
    for (int fd : held_) close(fd);
    if (HasFailure() && mesh_ != nullptr) {
      fprintf(stderr, "%s\n", mesh_->DescribeAll(2000).c_str());
    }
  }

  // Lowers `sidecar`'s descriptor limit to `headroom` above what it holds
  // now, then opens `connections` connections to `port`, which it cannot
  // all accept.
  void Exhaust(Sidecar* sidecar, int port, int headroom, int connections) {
    const pid_t pid = sidecar->process()->pid();
    const int open = OpenDescriptors(pid);
    ASSERT_GT(open, 0);
    rlimit limit{};
    limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(open + headroom);
    ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &limit, nullptr), 0)
        << strerror(errno);
    for (int i = 0; i < connections; ++i) {
      const int fd = ConnectLoopback(port);
      ASSERT_GE(fd, 0) << "connect: " << strerror(errno);
      held_.push_back(fd);
    }
  }

  void ReleaseHeld() {
    for (int fd : held_) close(fd);
    held_.clear();
  }

  // The sidecar's CPU time over `window`.
  static double CpuOver(Sidecar* sidecar, absl::Duration window) {
    const pid_t pid = sidecar->process()->pid();
    const double start = CpuSeconds(pid);
    absl::SleepFor(window);
    return CpuSeconds(pid) - start;
  }

  // Once `sidecar` says a listener ran out of descriptors, with connections
  // still waiting to be accepted: it must not spin. Its accept_failed lines.
  static std::vector<std::string> ExpectPausedNotSpinning(Sidecar* sidecar) {
    if (!meshguard::testing::WaitFor(
            [&] { return !sidecar->LogLines("accept_failed").empty(); },
            absl::Seconds(5), absl::Milliseconds(50))) {
      ADD_FAILURE() << "no accept_failed line once the descriptors ran out";
      return {};
    }
    const double cpu = CpuOver(sidecar, absl::Seconds(1.5));
    EXPECT_LT(cpu, 0.3) << "the sidecar used " << cpu
                        << " CPU-s in 1.5 s with nothing to do but wait";
    return sidecar->LogLines("accept_failed");
  }

  std::unique_ptr<Mesh> mesh_;
  Sidecar* server_ = nullptr;
  Sidecar* client_ = nullptr;
  std::vector<int> held_;
};

TEST_F(SidecarFdLimitTest, OutOfDescriptorsPausesAcceptingAndRecovers) {
  auto stub = client_->Stub(kAuthority);
  ASSERT_TRUE(
      EchoOnce(stub.get(), "out of descriptors", absl::Seconds(10), true).ok());

  const absl::Time exhausted = absl::Now();
  ASSERT_NO_FATAL_FAILURE(Exhaust(client_, client_->outbound_port(),
                                  /*headroom=*/4, /*connections=*/16));
  const std::vector<std::string> lines = ExpectPausedNotSpinning(client_);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - exhausted);
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(), ::testing::HasSubstr("Too many open files"));
  EXPECT_THAT(lines.front(), ::testing::HasSubstr(R"("listener":"outbound")"));
  EXPECT_THAT(lines.front(), ::testing::HasSubstr(client_->outbound_address()));
  // At most one line a second, however often accept() failed (every
  // 100 ms here): the first at once, then one per second.
  EXPECT_LE(static_cast<double>(lines.size()), seconds + 1) << lines.back();

  // The call path it already has still works.
  grpc::Status during =
      EchoOnce(stub.get(), "out of descriptors", absl::Seconds(5), false);
  EXPECT_TRUE(during.ok()) << during.error_message();

  // The load goes away, the limit stays: it accepts again.
  ReleaseHeld();
  auto fresh = client_->Stub(kAuthority);  // a new connection
  grpc::Status after =
      EchoOnce(fresh.get(), "out of descriptors", absl::Seconds(5), true);
  EXPECT_TRUE(after.ok()) << after.error_message();
  EXPECT_GE(client_->MetricSum("meshguard_accept_failures_total",
                               {"listener=\"outbound\""}),
            1);
}

TEST_F(SidecarFdLimitTest, TheInboundListenerPausesToo) {
  ASSERT_NO_FATAL_FAILURE(Exhaust(server_, server_->inbound_port(),
                                  /*headroom=*/4, /*connections=*/16));
  const std::vector<std::string> lines = ExpectPausedNotSpinning(server_);
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(), ::testing::HasSubstr(R"("listener":"inbound")"));

  ReleaseHeld();
  auto stub = client_->Stub(kAuthority);
  grpc::Status after =
      EchoOnce(stub.get(), "out of descriptors", absl::Seconds(8), true);
  EXPECT_TRUE(after.ok()) << after.error_message();
  EXPECT_GE(server_->MetricSum("meshguard_accept_failures_total",
                               {"listener=\"inbound\""}),
            1);
}

// The admin endpoint is a listener too (libevent's evhttp): out of
// descriptors, with scrapers knocking, it must not spin either, and
// /metrics answers again once descriptors are free.
TEST_F(SidecarFdLimitTest, TheAdminEndpointPausesToo) {
  ASSERT_NO_FATAL_FAILURE(Exhaust(server_, server_->admin_port(),
                                  /*headroom=*/2, /*connections=*/16));
  absl::SleepFor(absl::Milliseconds(300));
  const double cpu = CpuOver(server_, absl::Seconds(1.5));
  EXPECT_LT(cpu, 0.3) << "the sidecar used " << cpu
                      << " CPU-s in 1.5 s with nothing to do but wait";
  ReleaseHeld();
  EXPECT_TRUE(
      meshguard::testing::WaitFor([&] { return server_->Metrics().ok(); },
                                  absl::Seconds(5), absl::Milliseconds(100)))
      << "/metrics did not answer once descriptors were free";
  const std::vector<std::string> lines = server_->LogLines("accept_failed");
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(), ::testing::HasSubstr(R"("listener":"admin")"));
  EXPECT_THAT(lines.front(), ::testing::HasSubstr("Too many open files"));
}

// Started with a shell's soft limit of 1024 under a higher hard limit, the
// sidecar raises its own soft limit to the hard one, and says so.
TEST_F(SidecarFdLimitTest, ItRaisesItsSoftLimitToTheHardOne) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max <= 1024) GTEST_SKIP() << "hard limit " << saved.rlim_max;
  rlimit low = saved;
  low.rlim_cur = 1024;  // inherited by the sidecar
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  SidecarSpec spec;
  spec.name = "raised";
  absl::StatusOr<Sidecar*> started = mesh_->StartSidecar(spec);
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_TRUE(started.ok()) << started.status();
  rlimit now{};
  ASSERT_EQ(prlimit((*started)->process()->pid(), RLIMIT_NOFILE, nullptr, &now),
            0);
  EXPECT_EQ(now.rlim_cur, saved.rlim_max);
  const std::vector<std::string> lines =
      (*started)->LogLines("sidecar_starting");
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(), ::testing::HasSubstr(absl::StrCat(
                                 "\"max_open_files\":", saved.rlim_max)));
}

// The CA's gRPC server (gRPC 1.51) gives up a listening port for good when
// accept() fails with EMFILE. The CA must not carry on unreachable: it
// stops, says why, exits 1, and a restart on the same data dir serves.
TEST(CaFdLimitTest, OutOfDescriptorsTheCaExitsToBeRestarted) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("fdlimit");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE((*ca)->Serve().ok());
  const pid_t pid = (*ca)->process()->pid();
  const int open = OpenDescriptors(pid);
  ASSERT_GT(open, 0);
  rlimit limit{};
  limit.rlim_cur = limit.rlim_max = static_cast<rlim_t>(open + 4);
  ASSERT_EQ(prlimit(pid, RLIMIT_NOFILE, &limit, nullptr), 0) << strerror(errno);
  // Until the CA, out of descriptors, gives up its listener and stops:
  // then connecting is refused.
  std::vector<int> held;
  for (int i = 0; i < 16; ++i) {
    const int fd = ConnectLoopback((*ca)->grpc_port());
    if (fd < 0) {
      ASSERT_EQ(errno, ECONNREFUSED) << strerror(errno);
      break;
    }
    held.push_back(fd);
  }
  ASSERT_FALSE(held.empty()) << "the CA's port refused the first connection";
  absl::StatusOr<ExitStatus> exited = (*ca)->process()->Wait(absl::Seconds(15));
  for (int fd : held) close(fd);
  ASSERT_TRUE(exited.ok()) << "the CA kept running without a listener";
  EXPECT_TRUE(exited->exited && exited->code == 1) << exited->ToString();
  const std::vector<std::string> lines =
      (*ca)->LogLines("grpc_listener_failed");
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.front(), ::testing::HasSubstr("Too many open files"));

  ASSERT_TRUE((*ca)->Serve().ok());
  RunResult fetch =
      (*ca)->Ctl({"bundle", "fetch", "--out-dir",
                  absl::StrCat((*ca)->data_dir(), "/../fetched")});
  EXPECT_TRUE(fetch.status.Success()) << fetch.ToString();
}

}  // namespace
}  // namespace meshguard::integration
