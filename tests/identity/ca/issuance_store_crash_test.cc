// Durability under kill -9: whatever IssuanceStore acknowledged before the
// process died is there after a restart.
//
// A child process records issuances and consumes join tokens in a loop and
// reports each one on a pipe only after the store returned OK, as the CA
// acknowledges a certificate only then. The parent kills the child with
// SIGKILL at a random moment (most likely inside an fsync or a transaction),
// reopens the store and checks every acknowledged write. The child writes
// from one thread, then (second test) from several at once, so that
// RecordIssuance commits rows in groups.
#include <errno.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "identity/ca/issuance_store.h"

namespace meshguard::ca {
namespace {

constexpr int kRounds = 4;
const absl::Time kNow = absl::FromUnixSeconds(1704067200);
constexpr absl::string_view kId = "spiffe://cluster.local/ns/crash/sa/test";

// Writes one whole line; lines are far below PIPE_BUF, so each write is
// atomic: the parent sees a line entirely or not at all.
bool WriteLine(int fd, const std::string& line) {
  const std::string data = line + "\n";
  ssize_t n;
  do {
    n = write(fd, data.data(), data.size());
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(data.size());
}

// One writer thread of the child: records, creates and consumes tokens, and
// acknowledges each on `fd` once the store returned OK. Returns only on
// failure (after reporting it).
void WriteUntilKilled(IssuanceStore& store, int round, int thread, int fd) {
  for (int i = 0;; ++i) {
    IssuanceRecord r;
    r.serial = absl::StrFormat("%02x%02x%08x", round, thread, i);
    r.spiffe_id = std::string(kId);
    r.issued_at = kNow;
    r.not_before = kNow;
    r.not_after = kNow + absl::Hours(1);
    r.auth_method = std::string(kAuthRenewal);
    r.requester = "crash-test";
    absl::Status status = store.RecordIssuance(r);
    if (!status.ok()) {
      WriteLine(fd, absl::StrCat("E record: ", status.ToString()));
      return;
    }
    if (!WriteLine(fd, absl::StrCat("S ", r.serial))) return;

    if (i % 2 == 0) {
      const std::string hash =
          absl::StrFormat("%08x%08x%048x", round, thread, i);
      status = store.CreateJoinToken(hash, std::string(kId),
                                     kNow + absl::Hours(1), kNow);
      if (!status.ok()) {
        WriteLine(fd, absl::StrCat("E create: ", status.ToString()));
        return;
      }
      absl::StatusOr<std::string> id = store.ConsumeJoinToken(hash, kNow);
      if (!id.ok()) {
        WriteLine(fd, absl::StrCat("E consume: ", id.status().ToString()));
        return;
      }
      if (!WriteLine(fd, absl::StrCat("T ", hash))) return;
    }
  }
}

// The child: never returns.
[[noreturn]] void RunWriter(const std::string& path, int round, int threads,
                            int fd) {
  absl::StatusOr<std::unique_ptr<IssuanceStore>> store =
      IssuanceStore::Open(path);
  if (!store.ok()) {
    WriteLine(fd, absl::StrCat("E open: ", store.status().ToString()));
    _exit(2);
  }
  std::vector<std::thread> writers;
  for (int t = 1; t < threads; ++t) {
    writers.emplace_back([&, t] {
      WriteUntilKilled(**store, round, t, fd);
      _exit(2);
    });
  }
  WriteUntilKilled(**store, round, 0, fd);
  _exit(2);
}

// Kills and reaps the child if the parent leaves the round early (a failed
// ASSERT), so no writer outlives the test.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void Reaped() { pid_ = -1; }

 private:
  pid_t pid_;
};

struct Acks {
  std::vector<std::string> serials;
  std::vector<std::string> tokens;
  std::vector<std::string> errors;
};

void ParseInto(absl::string_view complete_lines, Acks& acks) {
  for (absl::string_view line :
       absl::StrSplit(complete_lines, '\n', absl::SkipEmpty())) {
    if (absl::ConsumePrefix(&line, "S ")) {
      acks.serials.emplace_back(line);
    } else if (absl::ConsumePrefix(&line, "T ")) {
      acks.tokens.emplace_back(line);
    } else {
      acks.errors.emplace_back(line);
    }
  }
}

// kRounds rounds of a child writing from `threads` threads, killed.
void KillWritersAndCheck(const std::string& name, int threads) {
  const std::string dir = absl::StrCat(::testing::TempDir(), "/", name);
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0) << dir;
  const std::string path = dir + "/ca.db";
  // Create the schema up front, so that every child spends its life writing.
  ASSERT_TRUE(IssuanceStore::Open(path).ok());

  const unsigned seed = std::random_device()();
  SCOPED_TRACE(absl::StrCat("seed ", seed));
  std::mt19937 rng(seed);
  // Counted from the child's first acknowledgement, so that a slow start on
  // a loaded machine does not leave a round with nothing to check.
  std::uniform_int_distribution<int> kill_after_ms(0, 550);

  size_t total_serials = 0;
  for (int round = 0; round < kRounds; ++round) {
    SCOPED_TRACE(absl::StrCat("round ", round));
    int fds[2];
    ASSERT_EQ(pipe(fds), 0);
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      close(fds[0]);
      RunWriter(path, round, threads, fds[1]);
    }
    close(fds[1]);
    ChildGuard guard(pid);

    // Read acknowledgements until the kill moment, then kill, then drain what
    // the child wrote before it died: those were acknowledged too.
    std::string buffer;
    Acks acks;
    const absl::Time first_ack_deadline = absl::Now() + absl::Seconds(20);
    absl::Time kill_at = first_ack_deadline;
    bool armed = false;
    bool killed = false;
    while (true) {
      if (!armed && !acks.serials.empty()) {
        armed = true;
        kill_at = absl::Now() + absl::Milliseconds(kill_after_ms(rng));
      }
      if (!killed && absl::Now() >= kill_at) {
        ASSERT_EQ(kill(pid, SIGKILL), 0);
        killed = true;
      }
      int timeout_ms = -1;
      if (!killed) {
        timeout_ms = static_cast<int>(
            absl::ToInt64Milliseconds(kill_at - absl::Now()) + 1);
      }
      pollfd p = {fds[0], POLLIN, 0};
      const int ready = poll(&p, 1, timeout_ms);
      if (ready < 0 && errno == EINTR) continue;
      ASSERT_GE(ready, 0);
      if (ready == 0) continue;
      char chunk[4096];
      const ssize_t n = read(fds[0], chunk, sizeof(chunk));
      if (n < 0 && errno == EINTR) continue;
      ASSERT_GE(n, 0);
      if (n == 0) break;  // EOF: the child is gone.
      buffer.append(chunk, static_cast<size_t>(n));
      const size_t end = buffer.rfind('\n');
      if (end != std::string::npos) {
        ParseInto(absl::string_view(buffer).substr(0, end + 1), acks);
        buffer.erase(0, end + 1);
      }
    }
    close(fds[0]);
    int wstatus = 0;
    ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
    guard.Reaped();
    EXPECT_TRUE(WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL)
        << "child ended otherwise: status " << wstatus;
    EXPECT_TRUE(buffer.empty()) << "torn line: " << buffer;
    for (const std::string& e : acks.errors) ADD_FAILURE() << "child: " << e;
    EXPECT_GT(acks.serials.size(), 0u) << "the child acknowledged nothing";

    absl::StatusOr<std::unique_ptr<IssuanceStore>> store =
        IssuanceStore::Open(path);
    ASSERT_TRUE(store.ok()) << store.status();
    for (const std::string& serial : acks.serials) {
      absl::StatusOr<std::optional<IssuanceRecord>> got = (*store)->Get(serial);
      ASSERT_TRUE(got.ok()) << got.status();
      EXPECT_TRUE(got->has_value()) << "acknowledged serial lost: " << serial;
    }
    for (const std::string& hash : acks.tokens) {
      absl::StatusOr<std::string> id = (*store)->ConsumeJoinToken(hash, kNow);
      EXPECT_FALSE(id.ok())
          << "acknowledged consumed token usable again: " << hash;
      EXPECT_TRUE(absl::StrContains(id.status().message(), "already used"))
          << id.status();
    }
    // The store is writable after recovery.
    IssuanceRecord r;
    r.serial = absl::StrFormat("after-crash-%d", round);
    r.spiffe_id = std::string(kId);
    r.not_before = kNow;
    r.not_after = kNow + absl::Hours(1);
    r.issued_at = kNow;
    r.auth_method = std::string(kAuthK8sToken);
    EXPECT_TRUE((*store)->RecordIssuance(r).ok());

    total_serials += acks.serials.size();
    std::printf("round %d: %zu serials, %zu tokens acknowledged\n", round,
                acks.serials.size(), acks.tokens.size());
  }
  std::printf("total %zu acknowledged serials checked\n", total_serials);
}

TEST(IssuanceStoreCrashTest, AcknowledgedWritesSurviveSigkill) {
  KillWritersAndCheck("issuance_store_crash_test", 1);
}

// Rows committed in groups (one transaction, one fsync for several callers)
// are acknowledged only once that transaction is durable.
TEST(IssuanceStoreCrashTest, GroupCommittedWritesSurviveSigkill) {
  KillWritersAndCheck("issuance_store_group_crash_test", 8);
}

}  // namespace
}  // namespace meshguard::ca
