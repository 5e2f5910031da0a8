// How many CPUs this process may use: its CPU affinity, capped by the CPU
// quota of its cgroup (Kubernetes' CPU limit). The sidecar's default number
// of workers, so that on a 64-core node a sidecar limited to half a CPU runs
// one event loop, not 64 (as Go's automaxprocs and linkerd2-proxy's
// core count from the limit do; Envoy needs --concurrency for it).
#ifndef MESHGUARD_SIDECAR_CONFIG_CPU_BUDGET_H_
#define MESHGUARD_SIDECAR_CONFIG_CPU_BUDGET_H_

#include <optional>
#include <string>

namespace meshguard::sidecar {

struct CpuBudget {
  int affinity_cpus = 1;  // CPUs in this process's affinity mask
  // The cgroup's CPU quota in CPUs (quota / period), the smallest on the
  // path from this process's cgroup to the root; none when unlimited.
  std::optional<double> quota_cpus;
  // Where the quota was read, e.g. "/sys/fs/cgroup/kubepods/.../cpu.max".
  std::string quota_file;

  // The workers to run: the quota rounded up, at most the affinity, at
  // least 1.
  int Workers() const;
};

// Reads the affinity mask and, with `proc_self_cgroup` (the text of
// /proc/self/cgroup) and `cgroup_root` (normally "/sys/fs/cgroup"), the
// quota: cgroup v2 `cpu.max` ("max 100000", "50000 100000"), or cgroup v1
// `cpu.cfs_quota_us` / `cpu.cfs_period_us` (-1: none) of the cpu
// controller's hierarchy. What cannot be read counts as unlimited.
CpuBudget ReadCpuBudget(const std::string& proc_self_cgroup,
                        const std::string& cgroup_root);

// ReadCpuBudget of this process, from /proc/self/cgroup and /sys/fs/cgroup.
CpuBudget CurrentCpuBudget();

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_CONFIG_CPU_BUDGET_H_
