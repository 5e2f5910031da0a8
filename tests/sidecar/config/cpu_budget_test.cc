// CpuBudget: the sidecar's default worker count from its affinity and its
// cgroup's CPU quota, read from fake cgroup trees (v2 cpu.max, v1 CFS).
#include "sidecar/config/cpu_budget.h"

#include <sched.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace meshguard::sidecar {
namespace {

class CpuBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    root_ = absl::StrCat(
        tmp != nullptr ? tmp : "/tmp", "/cgroup.",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(system(absl::StrCat("rm -rf '", root_, "'").c_str()), 0);
    ASSERT_EQ(mkdir(root_.c_str(), 0755), 0);
  }

  // Writes `text` to root_/`relative`, making its directories.
  void Write(const std::string& relative, const std::string& text) {
    const std::string path = root_ + "/" + relative;
    const std::string dir = path.substr(0, path.rfind('/'));
    ASSERT_EQ(system(absl::StrCat("mkdir -p '", dir, "'").c_str()), 0);
    std::ofstream(path) << text;
  }

  static int Affinity() {
    cpu_set_t set;
    CPU_ZERO(&set);
    sched_getaffinity(0, sizeof(set), &set);
    return CPU_COUNT(&set);
  }

  std::string root_;
};

TEST_F(CpuBudgetTest, NoQuotaMeansEveryCpuOfTheAffinity) {
  Write("cpu.max", "max 100000\n");
  CpuBudget b = ReadCpuBudget("0::/\n", root_);
  EXPECT_EQ(b.affinity_cpus, Affinity());
  EXPECT_FALSE(b.quota_cpus.has_value());
  EXPECT_EQ(b.Workers(), Affinity());
}

TEST_F(CpuBudgetTest, HalfACpuIsOneWorker) {
  Write("kubepods/pod1/ctr/cpu.max", "50000 100000\n");
  CpuBudget b = ReadCpuBudget("0::/kubepods/pod1/ctr\n", root_);
  ASSERT_TRUE(b.quota_cpus.has_value());
  EXPECT_DOUBLE_EQ(*b.quota_cpus, 0.5);
  EXPECT_EQ(b.quota_file, root_ + "/kubepods/pod1/ctr/cpu.max");
  EXPECT_EQ(b.Workers(), 1);
}

TEST_F(CpuBudgetTest, AQuotaIsRoundedUpAndCappedByTheAffinity) {
  CpuBudget b;
  b.affinity_cpus = 8;
  b.quota_cpus = 1.5;
  EXPECT_EQ(b.Workers(), 2);
  b.quota_cpus = 2.0;
  EXPECT_EQ(b.Workers(), 2);
  b.quota_cpus = 0.01;
  EXPECT_EQ(b.Workers(), 1);
  b.quota_cpus = 64;
  EXPECT_EQ(b.Workers(), 8);
  b.quota_cpus.reset();
  EXPECT_EQ(b.Workers(), 8);
  b.affinity_cpus = 0;  // never fewer than one
  EXPECT_EQ(b.Workers(), 1);
}

TEST_F(CpuBudgetTest, TheSmallestQuotaOnThePathToTheRootWins) {
  // The pod's limit (2 CPUs) is above the container's own (unlimited).
  Write("cpu.max", "max 100000\n");
  Write("kubepods/cpu.max", "800000 100000\n");
  Write("kubepods/pod1/cpu.max", "200000 100000\n");
  Write("kubepods/pod1/ctr/cpu.max", "max 100000\n");
  CpuBudget b = ReadCpuBudget("0::/kubepods/pod1/ctr\n", root_);
  ASSERT_TRUE(b.quota_cpus.has_value());
  EXPECT_DOUBLE_EQ(*b.quota_cpus, 2.0);
  EXPECT_EQ(b.quota_file, root_ + "/kubepods/pod1/cpu.max");
}

TEST_F(CpuBudgetTest, CgroupV1CfsQuota) {
  Write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
  Write("cpu,cpuacct/cpu.cfs_period_us", "100000\n");
  Write("cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n");
  Write("cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
  CpuBudget b = ReadCpuBudget(
      "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n", root_);
  ASSERT_TRUE(b.quota_cpus.has_value());
  EXPECT_DOUBLE_EQ(*b.quota_cpus, 1.5);
  EXPECT_EQ(b.Workers(), std::min(2, Affinity()));
}

TEST_F(CpuBudgetTest, CgroupV1WithoutAQuota) {
  Write("cpu/cpu.cfs_quota_us", "-1\n");
  Write("cpu/cpu.cfs_period_us", "100000\n");
  CpuBudget b = ReadCpuBudget("2:cpuacct:/\n1:cpu:/\n0::/\n", root_);
  EXPECT_FALSE(b.quota_cpus.has_value());
  EXPECT_EQ(b.Workers(), Affinity());
}

TEST_F(CpuBudgetTest, UnreadableOrGarbageCountsAsUnlimited) {
  Write("a/cpu.max", "fifty percent\n");
  Write("b/cpu.max", "0 100000\n");
  Write("c/cpu.max", "50000\n");
  for (const char* cgroup : {"0::/a\n", "0::/b\n", "0::/c\n", "0::/missing\n",
                             "", "garbage\n", "0::\n"}) {
    CpuBudget b = ReadCpuBudget(cgroup, root_);
    EXPECT_FALSE(b.quota_cpus.has_value()) << cgroup;
    EXPECT_EQ(b.Workers(), Affinity()) << cgroup;
  }
}

}  // namespace
}  // namespace meshguard::sidecar
