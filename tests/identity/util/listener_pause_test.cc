// ListenerPause against a real listener whose accept() fails: the test's
// own descriptor limit is lowered until no descriptor is left for the
// connection waiting in the backlog.
#include "identity/util/listener_pause.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace meshguard::util {
namespace {

struct Seen {
  std::vector<AcceptFailure> failures;
  std::vector<bool> reports;
  int accepted = 0;
};

void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int, void* arg) {
  ++static_cast<Seen*>(arg)->accepted;
  close(fd);
}

class ListenerPauseTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved_), 0);
    base_ = event_base_new();
    ASSERT_NE(base_, nullptr);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    listener_ = evconnlistener_new_bind(
        base_, &OnAccept, &seen_, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 16,
        reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    ASSERT_NE(listener_, nullptr);
    sockaddr_in bound{};
    socklen_t len = sizeof(bound);
    ASSERT_EQ(getsockname(evconnlistener_get_fd(listener_),
                          reinterpret_cast<sockaddr*>(&bound), &len),
              0);
    port_ = ntohs(bound.sin_port);
    // Runs while no descriptor is left: it touches no polymorphic object,
    // since UBSan (--config=asan) checks a vptr through a pipe(2), which
    // would fail then.
    pause_ = std::make_unique<ListenerPause>(
        base_, listener_, [seen = &seen_](const AcceptFailure& f, bool report) {
          seen->failures.push_back(f);
          seen->reports.push_back(report);
        });
  }
  void TearDown() override {
    RestoreLimit();
    if (client_ >= 0) close(client_);
    pause_.reset();
    if (listener_ != nullptr) evconnlistener_free(listener_);
    if (base_ != nullptr) event_base_free(base_);
  }

  // A connection waiting in the backlog.
  void Connect() {
    client_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(client_, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(
        connect(client_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  // No descriptor left to take it: the soft limit becomes the lowest free
  // descriptor number. Until RestoreLimit, no gtest assertion may run (see
  // above); false if the limit could not be set.
  bool Exhaust() {
    const int lowest_free = dup(0);
    if (lowest_free < 0) return false;
    close(lowest_free);
    rlimit low = saved_;
    low.rlim_cur = static_cast<rlim_t>(lowest_free);
    return setrlimit(RLIMIT_NOFILE, &low) == 0;
  }
  void RestoreLimit() { setrlimit(RLIMIT_NOFILE, &saved_); }

  void RunFor(absl::Duration d) {
    const timeval tv = absl::ToTimeval(d);
    event_base_loopexit(base_, &tv);
    event_base_dispatch(base_);
  }

  rlimit saved_{};
  event_base* base_ = nullptr;
  evconnlistener* listener_ = nullptr;
  int port_ = 0;
  int client_ = -1;
  Seen seen_;
  std::unique_ptr<ListenerPause> pause_;
};

TEST_F(ListenerPauseTest, OutOfDescriptorsItPausesInsteadOfSpinning) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  const bool exhausted = Exhaust();
  RunFor(absl::Milliseconds(350));
  const bool paused = pause_->paused();
  RestoreLimit();
  ASSERT_TRUE(exhausted);

  // One try per pause (100 ms), not one per loop round.
  ASSERT_FALSE(seen_.failures.empty());
  EXPECT_LE(seen_.failures.size(), 5u);
  EXPECT_GE(seen_.failures.size(), 3u);
  EXPECT_EQ(seen_.failures.front().error, EMFILE);
  EXPECT_TRUE(paused);
  EXPECT_EQ(seen_.accepted, 0);
  // Reported once; the later failures are counted, not reported.
  EXPECT_TRUE(seen_.reports.front());
  for (size_t i = 1; i < seen_.reports.size(); ++i) {
    EXPECT_FALSE(seen_.reports[i]) << i;
  }
  EXPECT_EQ(seen_.failures.front().failures, 1u);

  // A descriptor is free again: the next try takes the connection.
  RunFor(absl::Milliseconds(150));
  EXPECT_EQ(seen_.accepted, 1);
  EXPECT_FALSE(pause_->paused());
}

TEST_F(ListenerPauseTest, ResumeTriesAgainWithoutWaitingForThePause) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  const bool exhausted = Exhaust();
  RunFor(absl::Milliseconds(20));
  RestoreLimit();
  ASSERT_TRUE(exhausted);
  ASSERT_EQ(seen_.failures.size(), 1u);
  ASSERT_TRUE(pause_->paused());
  pause_->Resume();
  RunFor(absl::Milliseconds(20));  // well inside the 100 ms pause
  EXPECT_EQ(seen_.accepted, 1);
  EXPECT_EQ(seen_.failures.size(), 1u);
}

TEST_F(ListenerPauseTest, ANextReportCarriesTheFailuresSinceTheLastOne) {
  ASSERT_NO_FATAL_FAILURE(Connect());
  const bool exhausted = Exhaust();
  RunFor(ListenerPause::kReportEvery + absl::Milliseconds(150));
  RestoreLimit();
  ASSERT_TRUE(exhausted);
  size_t reports = 0;
  uint64_t reported = 0;  // the sum of the reports' failure counts
  size_t through = 0;     // failures up to the last report, inclusive
  for (size_t i = 0; i < seen_.failures.size(); ++i) {
    if (!seen_.reports[i]) continue;
    ++reports;
    reported += seen_.failures[i].failures;
    through = i + 1;
  }
  EXPECT_EQ(reports, 2u);
  // The second report counts every failure since the first: none is lost.
  EXPECT_EQ(reported, through);
  EXPECT_GE(through, 10u);
}

TEST(RaiseOpenFileLimitTest, RaisesTheSoftLimitToTheHardOne) {
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = std::min<rlim_t>(saved.rlim_max, 256);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  const uint64_t now = RaiseOpenFileLimit();
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  setrlimit(RLIMIT_NOFILE, &saved);
  EXPECT_EQ(after.rlim_cur, saved.rlim_max);
  EXPECT_EQ(now, static_cast<uint64_t>(saved.rlim_max));
}

}  // namespace
}  // namespace meshguard::util
