// With no --workers, the sidecar runs one event loop per CPU it may use:
// its CPU affinity, capped by its cgroup's CPU quota (what a Kubernetes CPU
// limit sets). A sidecar limited to half a CPU runs one loop, whatever the
// node's core count. The sidecar is started inside a real cgroup with a
// quota (cgroup v1 cpu controller or cgroup v2 cpu.max; root), or with a
// one-CPU affinity mask.
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <string>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/sidecar_fixture.h"

namespace meshguard::integration {
namespace {

bool WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

// The "workers" of a sidecar_ready line, or -1.
int ReadyWorkers(const Sidecar& sidecar) {
  const std::vector<std::string> lines = sidecar.LogLines("sidecar_ready");
  if (lines.empty()) return -1;
  const std::string key = "\"workers\":";
  const size_t at = lines.back().find(key);
  return at == std::string::npos
             ? -1
             : std::atoi(lines.back().c_str() + at + key.size());
}

// A cgroup with a CPU quota that this process joins for as long as it
// exists: children started meanwhile are in it (and stay there).
class QuotaCgroup {
 public:
  // Half a CPU. Empty error() when it worked.
  QuotaCgroup() {
    const std::string name = absl::StrCat("meshguard-test-", getpid());
    if (access("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", W_OK) == 0) {
      parent_ = "/sys/fs/cgroup/cpu";  // cgroup v1
      dir_ = parent_ + "/" + name;
      if (mkdir(dir_.c_str(), 0755) != 0 ||
          !WriteFile(dir_ + "/cpu.cfs_period_us", "100000") ||
          !WriteFile(dir_ + "/cpu.cfs_quota_us", "50000")) {
        error_ = absl::StrCat("cgroup v1 ", dir_, ": ", strerror(errno));
      }
    } else if (access("/sys/fs/cgroup/cgroup.subtree_control", W_OK) == 0) {
      parent_ = "/sys/fs/cgroup";  // cgroup v2
      dir_ = parent_ + "/" + name;
      if (!WriteFile(parent_ + "/cgroup.subtree_control", "+cpu") ||
          mkdir(dir_.c_str(), 0755) != 0 ||
          !WriteFile(dir_ + "/cpu.max", "50000 100000")) {
        error_ = absl::StrCat("cgroup v2 ", dir_, ": ", strerror(errno));
      }
    } else {
      error_ = "no writable cgroup cpu controller";
    }
    if (error_.empty() &&
        !WriteFile(dir_ + "/cgroup.procs", std::to_string(getpid()))) {
      error_ = absl::StrCat("joining ", dir_, ": ", strerror(errno));
    }
  }
  // Back to the parent; the cgroup itself goes once its processes have.
  void Leave() {
    if (!left_ && !parent_.empty()) {
      WriteFile(parent_ + "/cgroup.procs", std::to_string(getpid()));
    }
    left_ = true;
  }
  ~QuotaCgroup() {
    Leave();
    if (!dir_.empty()) rmdir(dir_.c_str());
  }
  const std::string& error() const { return error_; }

 private:
  std::string parent_;
  std::string dir_;
  std::string error_;
  bool left_ = false;
};

class SidecarCpuBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("cpus");
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = std::move(*mesh);
  }
  void TearDown() override {
    if (HasFailure() && mesh_ != nullptr) {
      fprintf(stderr, "%s\n", mesh_->DescribeAll(2000).c_str());
    }
  }

  absl::StatusOr<Sidecar*> StartWithDefaultWorkers(const std::string& name) {
    SidecarSpec spec;
    spec.name = name;
    spec.workers = 0;  // --workers 0: the default
    return mesh_->StartSidecar(spec);
  }

  std::unique_ptr<Mesh> mesh_;
};

TEST_F(SidecarCpuBudgetTest, HalfACpuQuotaRunsOneWorker) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "one CPU: nothing to cap";
  QuotaCgroup cgroup;
  // Declared after the cgroup, so it runs first: the sidecar has left the
  // cgroup (stopped) before the cgroup is removed, also on a failure.
  auto stop_sidecar = absl::MakeCleanup([&] {
    if (HasFailure()) fprintf(stderr, "%s\n", mesh_->DescribeAll(2000).c_str());
    mesh_.reset();
  });
  ASSERT_TRUE(cgroup.error().empty()) << cgroup.error();
  absl::StatusOr<Sidecar*> sidecar = StartWithDefaultWorkers("limited");
  cgroup.Leave();
  ASSERT_TRUE(sidecar.ok()) << sidecar.status();
  EXPECT_EQ(ReadyWorkers(**sidecar), 1);
}

TEST_F(SidecarCpuBudgetTest, WithoutAQuotaItRunsOneWorkerPerCpuOfItsAffinity) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  absl::StatusOr<Sidecar*> wide = StartWithDefaultWorkers("wide");
  ASSERT_TRUE(wide.ok()) << wide.status();
  EXPECT_EQ(ReadyWorkers(**wide), CPU_COUNT(&all));

  // One CPU in the mask (taskset -c 0): one worker. The mask is this
  // thread's, inherited by the sidecar, and restored at once.
  cpu_set_t one;
  CPU_ZERO(&one);
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (CPU_ISSET(cpu, &all)) {
      CPU_SET(cpu, &one);
      break;
    }
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
  absl::StatusOr<Sidecar*> pinned = StartWithDefaultWorkers("pinned");
  sched_setaffinity(0, sizeof(all), &all);
  ASSERT_TRUE(pinned.ok()) << pinned.status();
  EXPECT_EQ(ReadyWorkers(**pinned), 1);
}

}  // namespace
}  // namespace meshguard::integration
