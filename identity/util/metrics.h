// A small Prometheus metrics library: counters, gauges and histograms in
// labelled families, rendered in the text exposition format 0.0.4.
//
//   MetricsRegistry registry;
//   CounterFamily* calls = registry.AddCounter(
//       "meshguard_authz_decisions_total", "Authorization decisions.",
//       {"decision", "rule"}, FamilyOptions{/*max_children=*/200});
//   Counter* allowed = calls->WithLabels({"allow", "frontend-reads-orders"});
//   allowed->Inc();  // Hot path: keep the pointer, no lock.
//
// Threading contract:
//   - Everything here is thread-safe.
//   - Registering a family and WithLabels() take a mutex; do them at setup
//     time, or once per new label set, and keep the returned pointers.
//   - Counter/Gauge/Histogram updates are lock-free atomics (relaxed order).
//   - Pointers returned by Add*() and WithLabels() stay valid for the
//     registry's lifetime; children are never removed.
//   - RenderPrometheusText() may run concurrently with updates; each value
//     is read atomically, but a histogram's buckets are not one snapshot.
//   - Gauge callbacks run on the thread that renders, without any registry
//     lock held (they may use the registry), and must be thread-safe.
//
// Programming errors (an invalid metric or label name, registering one name
// twice with a different type or labels, unsorted histogram buckets) abort
// the process at registration time, as CHECK would; they are not runtime
// conditions.
#ifndef MESHGUARD_IDENTITY_UTIL_METRICS_H_
#define MESHGUARD_IDENTITY_UTIL_METRICS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace meshguard::util {

// A monotonically increasing count.
class Counter final {
 public:
  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  void Inc(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down, or one computed at scrape time by a
// callback (e.g. seconds until the certificate expires).
class Gauge final {
 public:
  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v);
  void Inc() { Add(1); }
  void Dec() { Add(-1); }

  // While set, Value() is the callback's result and Set/Add are ignored.
  // Clear it (nullptr) before anything it captures is destroyed.
  void SetCallback(std::function<double()> callback);

  // Runs the callback, if any, on the calling thread.
  double Value() const;

 private:
  std::atomic<double> value_{0};
  std::atomic<bool> has_callback_{false};
  mutable absl::Mutex callback_mu_;
  std::shared_ptr<std::function<double()>> callback_
      ABSL_GUARDED_BY(callback_mu_);
};

// Observations counted into fixed buckets.
class Histogram final {
 public:
  // `bounds` are the finite upper bounds, strictly increasing; +Inf is
  // implicit.
  explicit Histogram(std::shared_ptr<const std::vector<double>> bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  void Observe(double v);

  const std::vector<double>& bounds() const { return *bounds_; }
  // Cumulative counts, one per bound plus the final +Inf one (== count).
  std::vector<uint64_t> CumulativeCounts() const;
  double Sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::shared_ptr<const std::vector<double>> bounds_;
  // Per bucket (not cumulative); the last one is (last bound, +Inf].
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0};
};

struct FamilyOptions {
  // Most distinct label sets kept; past it, new label sets all share one
  // child whose label values are all "other". 0: unbounded.
  size_t max_children = 0;
};

// Prometheus' default buckets, in seconds.
std::vector<double> DefaultHistogramBuckets();

// A metric name with a set of label names; one child metric per distinct
// list of label values.
template <typename T>
class Family final {
 public:
  // Returns the child for these label values (one per label name), creating
  // it on first use. Cached and stable: keep it. A list of the wrong length
  // is a programming error and gets the overflow child.
  T* WithLabels(const std::vector<std::string>& label_values)
      ABSL_LOCKS_EXCLUDED(mu_);

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const std::vector<std::string>& label_names() const { return label_names_; }

  // Label values and child, sorted by label values.
  std::vector<std::pair<std::vector<std::string>, const T*>> Children() const
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  friend class MetricsRegistry;
  Family(std::string name, std::string help,
         std::vector<std::string> label_names, FamilyOptions options,
         std::function<std::unique_ptr<T>()> make_child);

  const std::string name_;
  const std::string help_;
  const std::vector<std::string> label_names_;
  const FamilyOptions options_;
  const std::function<std::unique_ptr<T>()> make_child_;

  mutable absl::Mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<T>> children_
      ABSL_GUARDED_BY(mu_);
};

extern template class Family<Counter>;
extern template class Family<Gauge>;
extern template class Family<Histogram>;

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class MetricsRegistry final {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;
  ~MetricsRegistry();

  // Registers a family. Registering an existing name again with the same
  // type and label names returns the existing family. A family without
  // labels has its one child from the start: WithLabels({}).
  CounterFamily* AddCounter(const std::string& name, const std::string& help,
                            const std::vector<std::string>& label_names = {},
                            FamilyOptions options = {});
  GaugeFamily* AddGauge(const std::string& name, const std::string& help,
                        const std::vector<std::string>& label_names = {},
                        FamilyOptions options = {});
  // `buckets`: finite upper bounds, strictly increasing.
  HistogramFamily* AddHistogram(
      const std::string& name, const std::string& help,
      const std::vector<std::string>& label_names = {},
      std::vector<double> buckets = DefaultHistogramBuckets(),
      FamilyOptions options = {});

  // Every family, sorted by name, in the Prometheus text format 0.0.4
  // (Content-Type "text/plain; version=0.0.4").
  std::string RenderPrometheusText() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct Entry {
    enum Kind { kCounter, kGauge, kHistogram } kind;
    std::unique_ptr<CounterFamily> counter;
    std::unique_ptr<GaugeFamily> gauge;
    std::unique_ptr<HistogramFamily> histogram;
    std::vector<double> buckets;
  };

  Entry* FindOrCheck(const std::string& name, Entry::Kind kind,
                     const std::vector<std::string>& label_names,
                     const std::vector<double>& buckets)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable absl::Mutex mu_;
  std::map<std::string, Entry> families_ ABSL_GUARDED_BY(mu_);
};

// Label values for the overflow child.
inline constexpr char kOverflowLabelValue[] = "other";

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_METRICS_H_
