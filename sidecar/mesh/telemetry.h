// Per-call telemetry for both listeners: Prometheus counters and a latency
// histogram, and the JSON access log (sampled; denied calls always logged).
//
// Thread-safety: Record() is called on worker threads concurrently. The
// steady state takes no lock: each worker keeps its own cache of metric
// children; a lock is taken only the first time a worker sees a label set.
#ifndef MESHGUARD_SIDECAR_MESH_TELEMETRY_H_
#define MESHGUARD_SIDECAR_MESH_TELEMETRY_H_

#include <cstdio>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "identity/util/metrics.h"
#include "sidecar/proxy/api.h"

namespace meshguard::sidecar {

// Keeps at most `cap` distinct values of one label; later ones become
// "other" (bounded cardinality, whatever callers send).
class BoundedLabel final {
 public:
  explicit BoundedLabel(size_t cap) : cap_(cap) {}
  std::string Map(absl::string_view value) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const size_t cap_;
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> seen_ ABSL_GUARDED_BY(mu_);
};

class AccessLog final {
 public:
  // path: "stdout", "off", or a file (appended). sample_rate in [0, 1].
  static absl::StatusOr<std::unique_ptr<AccessLog>> Open(
      const std::string& path, double sample_rate);
  ~AccessLog();

  bool enabled() const { return out_ != nullptr; }
  // One JSON line. `always`: log regardless of sampling (denials).
  void Write(absl::string_view direction, const proxy::CallSummary& call,
             absl::string_view decision, absl::string_view rule, bool always);

 private:
  AccessLog(FILE* out, bool owned, double sample_rate)
      : out_(out), owned_(owned), sample_rate_(sample_rate) {}
  FILE* const out_;
  const bool owned_;
  const double sample_rate_;
  absl::Mutex mu_;
};

struct CallRecord {
  absl::string_view direction;  // "inbound" | "outbound"
  absl::string_view principal;  // the caller (inbound) or ourselves
  absl::string_view decision;   // "allow" | "deny" | "none"
  absl::string_view rule;
};

class CallTelemetry final {
 public:
  CallTelemetry(util::MetricsRegistry* registry, AccessLog* log,
                size_t max_principals, size_t max_methods);

  void Record(const CallRecord& record, const proxy::CallSummary& call);
  // An AUDIT or dry-run rule matched (counted; logged by the caller).
  void RecordAudit(absl::string_view rule, absl::string_view would);

 private:
  util::CounterFamily* requests_;
  util::HistogramFamily* latency_;
  util::CounterFamily* decisions_;
  util::CounterFamily* audits_;
  AccessLog* const log_;
  BoundedLabel principals_;
  BoundedLabel methods_;
  BoundedLabel rules_;
};

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_MESH_TELEMETRY_H_
