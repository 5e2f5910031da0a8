#include "sidecar/config/cpu_budget.h"

#include <sched.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"

namespace meshguard::sidecar {
namespace {

std::optional<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// "/a/b/c" -> {"/a/b/c", "/a/b", "/a", ""}: the cgroup and its ancestors
// (the empty path is the hierarchy's root).
std::vector<std::string> SelfAndAncestors(std::string path) {
  std::vector<std::string> out;
  while (!path.empty() && path != "/") {
    out.push_back(path);
    path = path.substr(0, path.rfind('/'));
  }
  out.push_back("");
  return out;
}

// cgroup v2 "cpu.max": "max 100000" or "50000 100000".
std::optional<double> ParseCpuMax(absl::string_view text) {
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::StripAsciiWhitespace(text), ' ', absl::SkipEmpty());
  if (fields.size() != 2 || fields[0] == "max") return std::nullopt;
  double quota = 0;
  double period = 0;
  if (!absl::SimpleAtod(fields[0], &quota) ||
      !absl::SimpleAtod(fields[1], &period) || quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return quota / period;
}

// cgroup v1: cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us.
std::optional<double> ParseCfs(absl::string_view quota_text,
                               absl::string_view period_text) {
  double quota = 0;
  double period = 0;
  if (!absl::SimpleAtod(absl::StripAsciiWhitespace(quota_text), &quota) ||
      !absl::SimpleAtod(absl::StripAsciiWhitespace(period_text), &period) ||
      quota <= 0 || period <= 0) {
    return std::nullopt;
  }
  return quota / period;
}

void KeepSmallest(std::optional<double> cpus, const std::string& file,
                  CpuBudget* budget) {
  if (!cpus.has_value()) return;
  if (!budget->quota_cpus.has_value() || *cpus < *budget->quota_cpus) {
    budget->quota_cpus = cpus;
    budget->quota_file = file;
  }
}

}  // namespace

int CpuBudget::Workers() const {
  int workers = std::max(1, affinity_cpus);
  if (quota_cpus.has_value()) {
    // A quota of 1.5 CPUs can keep two loops busy part of the time.
    const int from_quota = static_cast<int>(std::ceil(*quota_cpus - 1e-9));
    workers = std::min(workers, std::max(1, from_quota));
  }
  return workers;
}

CpuBudget ReadCpuBudget(const std::string& proc_self_cgroup,
                        const std::string& cgroup_root) {
  CpuBudget budget;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    budget.affinity_cpus = std::max(1, CPU_COUNT(&set));
  }
  // Lines "ID:CONTROLLERS:PATH"; "0::PATH" is cgroup v2.
  for (absl::string_view line : absl::StrSplit(proc_self_cgroup, '\n')) {
    std::vector<absl::string_view> parts = absl::StrSplit(line, ':');
    if (parts.size() < 3) continue;
    const std::string path(parts[2]);
    if (parts[0] == "0" && parts[1].empty()) {
      for (const std::string& dir : SelfAndAncestors(path)) {
        const std::string file = cgroup_root + dir + "/cpu.max";
        if (std::optional<std::string> text = ReadSmallFile(file)) {
          KeepSmallest(ParseCpuMax(*text), file, &budget);
        }
      }
      continue;
    }
    // cgroup v1: the hierarchy whose controllers include "cpu", mounted at
    // <root>/<controllers> (e.g. "cpu,cpuacct").
    const std::vector<absl::string_view> controllers =
        absl::StrSplit(parts[1], ',');
    if (std::find(controllers.begin(), controllers.end(), "cpu") ==
        controllers.end()) {
      continue;
    }
    for (const std::string& dir : SelfAndAncestors(path)) {
      const std::string base =
          cgroup_root + "/" + std::string(parts[1]) + dir + "/cpu.cfs_";
      std::optional<std::string> quota = ReadSmallFile(base + "quota_us");
      std::optional<std::string> period = ReadSmallFile(base + "period_us");
      if (quota && period) {
        KeepSmallest(ParseCfs(*quota, *period), base + "quota_us", &budget);
      }
    }
  }
  return budget;
}

CpuBudget CurrentCpuBudget() {
  return ReadCpuBudget(ReadSmallFile("/proc/self/cgroup").value_or(""),
                       "/sys/fs/cgroup");
}

}  // namespace meshguard::sidecar
