#include "identity/util/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"

namespace meshguard::util {
namespace {

[[noreturn]] void Fatal(const std::string& message) {
  std::fprintf(stderr, "meshguard metrics: %s\n", message.c_str());
  std::abort();
}

void AtomicAdd(std::atomic<double>* target, double v) {
  double current = target->load(std::memory_order_relaxed);
  while (!target->compare_exchange_weak(current, current + v,
                                        std::memory_order_relaxed)) {
  }
}

bool ValidMetricName(const std::string& name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = absl::ascii_isalpha(c) || c == '_' || c == ':' ||
              (i > 0 && absl::ascii_isdigit(c));
    if (!ok) return false;
  }
  return true;
}

bool ValidLabelName(const std::string& name) {
  if (name.empty() || absl::StartsWith(name, "__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok =
        absl::ascii_isalpha(c) || c == '_' || (i > 0 && absl::ascii_isdigit(c));
    if (!ok) return false;
  }
  return true;
}

// Shortest text that reads back as the same double: "0.005", "3600",
// "1e+06", "2.5e-05" (close to Go's FormatFloat(v, 'g', -1, 64), which
// Prometheus' own clients use).
std::string FormatDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  int precision = 1;
  for (; precision < 17; ++precision) {
    std::string s = absl::StrFormat("%.*g", precision, v);
    if (std::strtod(s.c_str(), nullptr) == v) break;
  }
  // %g switches to exponent form at exponent >= precision; at least 6
  // digits (%g drops trailing zeros) prints 3600 as "3600", not "3.6e+03".
  return absl::StrFormat("%.*g", std::max(precision, 6), v);
}

std::string EscapeHelp(const std::string& help) {
  std::string out;
  for (char c : help) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

std::string EscapeLabelValue(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}`, with an optional extra label (histograms' "le"); empty
// when there are no labels at all.
std::string LabelText(const std::vector<std::string>& names,
                      const std::vector<std::string>& values,
                      const char* extra_name = nullptr,
                      const std::string& extra_value = "") {
  std::vector<std::string> parts;
  for (size_t i = 0; i < names.size() && i < values.size(); ++i) {
    parts.push_back(
        absl::StrCat(names[i], "=\"", EscapeLabelValue(values[i]), "\""));
  }
  if (extra_name != nullptr) {
    parts.push_back(absl::StrCat(extra_name, "=\"", extra_value, "\""));
  }
  if (parts.empty()) return "";
  return absl::StrCat("{", absl::StrJoin(parts, ","), "}");
}

void RenderHeader(const std::string& name, const std::string& help,
                  const char* type, std::string* out) {
  absl::StrAppend(out, "# HELP ", name, " ", EscapeHelp(help), "\n");
  absl::StrAppend(out, "# TYPE ", name, " ", type, "\n");
}

void RenderFamily(const CounterFamily& family, std::string* out) {
  RenderHeader(family.name(), family.help(), "counter", out);
  for (const auto& [values, child] : family.Children()) {
    absl::StrAppend(out, family.name(), LabelText(family.label_names(), values),
                    " ", child->Value(), "\n");
  }
}

void RenderFamily(const GaugeFamily& family, std::string* out) {
  RenderHeader(family.name(), family.help(), "gauge", out);
  for (const auto& [values, child] : family.Children()) {
    absl::StrAppend(out, family.name(), LabelText(family.label_names(), values),
                    " ", FormatDouble(child->Value()), "\n");
  }
}

void RenderFamily(const HistogramFamily& family, std::string* out) {
  RenderHeader(family.name(), family.help(), "histogram", out);
  const std::vector<std::string>& names = family.label_names();
  for (const auto& [values, child] : family.Children()) {
    std::vector<uint64_t> counts = child->CumulativeCounts();
    const std::vector<double>& bounds = child->bounds();
    for (size_t i = 0; i < counts.size(); ++i) {
      std::string le = i < bounds.size() ? FormatDouble(bounds[i]) : "+Inf";
      absl::StrAppend(out, family.name(), "_bucket",
                      LabelText(names, values, "le", le), " ", counts[i], "\n");
    }
    absl::StrAppend(out, family.name(), "_sum", LabelText(names, values), " ",
                    FormatDouble(child->Sum()), "\n");
    absl::StrAppend(out, family.name(), "_count", LabelText(names, values), " ",
                    counts.back(), "\n");
  }
}

}  // namespace

void Gauge::Add(double v) { AtomicAdd(&value_, v); }

void Gauge::SetCallback(std::function<double()> callback) {
  absl::MutexLock lock(&callback_mu_);
  has_callback_.store(callback != nullptr, std::memory_order_release);
  callback_ =
      callback != nullptr
          ? std::make_shared<std::function<double()>>(std::move(callback))
          : nullptr;
}

double Gauge::Value() const {
  if (has_callback_.load(std::memory_order_acquire)) {
    std::shared_ptr<std::function<double()>> callback;
    {
      absl::MutexLock lock(&callback_mu_);
      callback = callback_;
    }
    if (callback != nullptr) return (*callback)();
  }
  return value_.load(std::memory_order_relaxed);
}

Histogram::Histogram(std::shared_ptr<const std::vector<double>> bounds)
    : bounds_(std::move(bounds)),
      buckets_(new std::atomic<uint64_t>[bounds_->size() + 1]) {
  for (size_t i = 0; i <= bounds_->size(); ++i) buckets_[i].store(0);
}

void Histogram::Observe(double v) {
  // Bucket i holds (bounds[i-1], bounds[i]]; NaN goes to +Inf.
  size_t i = std::isnan(v)
                 ? bounds_->size()
                 : std::lower_bound(bounds_->begin(), bounds_->end(), v) -
                       bounds_->begin();
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  AtomicAdd(&sum_, v);
}

std::vector<uint64_t> Histogram::CumulativeCounts() const {
  std::vector<uint64_t> counts(bounds_->size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    total += buckets_[i].load(std::memory_order_relaxed);
    counts[i] = total;
  }
  return counts;
}

std::vector<double> DefaultHistogramBuckets() {
  return {.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10};
}

template <typename T>
Family<T>::Family(std::string name, std::string help,
                  std::vector<std::string> label_names, FamilyOptions options,
                  std::function<std::unique_ptr<T>()> make_child)
    : name_(std::move(name)),
      help_(std::move(help)),
      label_names_(std::move(label_names)),
      options_(options),
      make_child_(std::move(make_child)) {
  if (label_names_.empty())
    children_.emplace(std::vector<std::string>{}, make_child_());
}

template <typename T>
T* Family<T>::WithLabels(const std::vector<std::string>& label_values) {
  const std::vector<std::string> overflow(label_names_.size(),
                                          kOverflowLabelValue);
  const std::vector<std::string>& wanted =
      label_values.size() == label_names_.size() ? label_values : overflow;
  absl::MutexLock lock(&mu_);
  auto it = children_.find(wanted);
  if (it != children_.end()) return it->second.get();
  const std::vector<std::string>& key =
      options_.max_children > 0 && children_.size() >= options_.max_children
          ? overflow
          : wanted;
  std::unique_ptr<T>& child = children_[key];
  if (child == nullptr) child = make_child_();
  return child.get();
}

template <typename T>
std::vector<std::pair<std::vector<std::string>, const T*>> Family<T>::Children()
    const {
  absl::MutexLock lock(&mu_);
  std::vector<std::pair<std::vector<std::string>, const T*>> children;
  children.reserve(children_.size());
  for (const auto& [values, child] : children_) {
    children.emplace_back(values, child.get());
  }
  return children;
}

template class Family<Counter>;
template class Family<Gauge>;
template class Family<Histogram>;

MetricsRegistry::~MetricsRegistry() = default;

MetricsRegistry::Entry* MetricsRegistry::FindOrCheck(
    const std::string& name, Entry::Kind kind,
    const std::vector<std::string>& label_names,
    const std::vector<double>& buckets) {
  if (!ValidMetricName(name)) Fatal("invalid metric name \"" + name + "\"");
  for (const std::string& label : label_names) {
    if (!ValidLabelName(label) ||
        (kind == Entry::kHistogram && label == "le")) {
      Fatal(absl::StrCat("metric ", name, ": invalid label name \"", label,
                         "\""));
    }
  }
  for (size_t i = 0; i < buckets.size(); ++i) {
    if (!std::isfinite(buckets[i]) || (i > 0 && buckets[i] <= buckets[i - 1])) {
      Fatal(absl::StrCat("metric ", name,
                         ": histogram buckets must be finite and strictly "
                         "increasing"));
    }
  }
  auto it = families_.find(name);
  if (it == families_.end()) return nullptr;
  const Entry& e = it->second;
  const std::vector<std::string>& existing_labels =
      e.kind == Entry::kCounter ? e.counter->label_names()
      : e.kind == Entry::kGauge ? e.gauge->label_names()
                                : e.histogram->label_names();
  if (e.kind != kind || existing_labels != label_names ||
      e.buckets != buckets) {
    Fatal(absl::StrCat("metric ", name,
                       " registered twice with a different type, labels or "
                       "buckets"));
  }
  return &it->second;
}

CounterFamily* MetricsRegistry::AddCounter(
    const std::string& name, const std::string& help,
    const std::vector<std::string>& label_names, FamilyOptions options) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = FindOrCheck(name, Entry::kCounter, label_names, {})) {
    return e->counter.get();
  }
  Entry& e = families_[name];
  e.kind = Entry::kCounter;
  e.counter.reset(new CounterFamily(name, help, label_names, options, [] {
    return std::make_unique<Counter>();
  }));
  return e.counter.get();
}

GaugeFamily* MetricsRegistry::AddGauge(
    const std::string& name, const std::string& help,
    const std::vector<std::string>& label_names, FamilyOptions options) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = FindOrCheck(name, Entry::kGauge, label_names, {})) {
    return e->gauge.get();
  }
  Entry& e = families_[name];
  e.kind = Entry::kGauge;
  e.gauge.reset(new GaugeFamily(name, help, label_names, options,
                                [] { return std::make_unique<Gauge>(); }));
  return e.gauge.get();
}

HistogramFamily* MetricsRegistry::AddHistogram(
    const std::string& name, const std::string& help,
    const std::vector<std::string>& label_names, std::vector<double> buckets,
    FamilyOptions options) {
  absl::MutexLock lock(&mu_);
  if (Entry* e = FindOrCheck(name, Entry::kHistogram, label_names, buckets)) {
    return e->histogram.get();
  }
  Entry& e = families_[name];
  e.kind = Entry::kHistogram;
  e.buckets = buckets;
  auto bounds = std::make_shared<const std::vector<double>>(std::move(buckets));
  e.histogram.reset(new HistogramFamily(
      name, help, label_names, options,
      [bounds] { return std::make_unique<Histogram>(bounds); }));
  return e.histogram.get();
}

std::string MetricsRegistry::RenderPrometheusText() const {
  // Entries are never removed, so the pointers outlive the lock; rendering
  // (and gauge callbacks) run without it.
  std::vector<const Entry*> entries;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [name, entry] : families_) entries.push_back(&entry);
  }
  std::string out;
  for (const Entry* e : entries) {
    switch (e->kind) {
      case Entry::kCounter:
        RenderFamily(*e->counter, &out);
        break;
      case Entry::kGauge:
        RenderFamily(*e->gauge, &out);
        break;
      case Entry::kHistogram:
        RenderFamily(*e->histogram, &out);
        break;
    }
  }
  return out;
}

}  // namespace meshguard::util
