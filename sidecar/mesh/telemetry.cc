#include "sidecar/mesh/telemetry.h"

#include <cerrno>
#include <cstring>
#include <functional>
#include <random>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "identity/util/json_log.h"

namespace meshguard::sidecar {
namespace {

// Each worker thread's cache of metric children, keyed by the telemetry
// object and the label values.
template <typename T>
T* Cached(const void* owner, const std::string& key,
          const std::function<T*()>& make) {
  thread_local absl::flat_hash_map<std::string, void*> cache;
  std::string full = absl::StrCat(reinterpret_cast<uintptr_t>(owner), "|", key);
  auto it = cache.find(full);
  if (it != cache.end()) return static_cast<T*>(it->second);
  T* child = make();
  cache.emplace(std::move(full), child);
  return child;
}

bool Sampled(double rate) {
  if (rate >= 1.0) return true;
  if (rate <= 0.0) return false;
  thread_local std::minstd_rand rng(std::random_device{}());
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng) < rate;
}

}  // namespace

std::string BoundedLabel::Map(absl::string_view value) {
  absl::MutexLock lock(&mu_);
  if (seen_.contains(value)) return std::string(value);
  if (seen_.size() >= cap_) return "other";
  seen_.insert(std::string(value));
  return std::string(value);
}

absl::StatusOr<std::unique_ptr<AccessLog>> AccessLog::Open(
    const std::string& path, double sample_rate) {
  if (path == "off") {
    return std::unique_ptr<AccessLog>(new AccessLog(nullptr, false, 0));
  }
  if (path.empty() || path == "stdout") {
    return std::unique_ptr<AccessLog>(
        new AccessLog(stdout, false, sample_rate));
  }
  FILE* f = fopen(path.c_str(), "ae");
  if (f == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "access_log.path: cannot open ", path, ": ", strerror(errno)));
  }
  return std::unique_ptr<AccessLog>(new AccessLog(f, true, sample_rate));
}

AccessLog::~AccessLog() {
  if (owned_ && out_ != nullptr) fclose(out_);
}

void AccessLog::Write(absl::string_view direction,
                      const proxy::CallSummary& call,
                      absl::string_view decision, absl::string_view rule,
                      bool always) {
  if (out_ == nullptr || (!always && !Sampled(sample_rate_))) return;
  util::LogLine line("info", "call");
  line.Add("direction", direction)
      .Add("peer", absl::string_view(call.peer_identity.data(),
                                     call.peer_identity.size()))
      .Add("authority",
           absl::string_view(call.authority.data(), call.authority.size()))
      .Add("method", absl::string_view(call.path.data(), call.path.size()))
      .Add("grpc_status", call.grpc_status)
      .Add("decision", decision)
      .Add("rule", rule)
      .Add("local_reply", call.local_reply)
      .Add("duration_ms", absl::ToDoubleMilliseconds(call.duration))
      .Add("request_bytes", static_cast<int64_t>(call.request_bytes))
      .Add("response_bytes", static_cast<int64_t>(call.response_bytes));
  std::string json = line.ToJson();
  json.push_back('\n');
  absl::MutexLock lock(&mu_);
  fwrite(json.data(), 1, json.size(), out_);
  fflush(out_);
}

CallTelemetry::CallTelemetry(util::MetricsRegistry* registry, AccessLog* log,
                             size_t max_principals, size_t max_methods)
    : log_(log),
      principals_(max_principals),
      methods_(max_methods),
      rules_(max_methods) {
  requests_ = registry->AddCounter(
      "meshguard_requests_total",
      "Calls through the sidecar by direction, source principal, method, "
      "gRPC status and authorization decision.",
      {"direction", "source_principal", "method", "grpc_status", "decision"});
  latency_ = registry->AddHistogram(
      "meshguard_request_duration_seconds",
      "Time from request headers to the end of the call, by direction.",
      {"direction"},
      {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
       0.25, 0.5, 1, 2.5, 5, 10});
  decisions_ = registry->AddCounter(
      "meshguard_authz_decisions_total",
      "Inbound authorization decisions by outcome and deciding rule.",
      {"decision", "rule"});
  audits_ = registry->AddCounter(
      "meshguard_authz_audit_matches_total",
      "AUDIT and dry-run rule matches, with what they would have done.",
      {"rule", "would"});
}

void CallTelemetry::Record(const CallRecord& record,
                           const proxy::CallSummary& call) {
  std::string status = call.grpc_status < 0 ? std::string("reset")
                                            : absl::StrCat(call.grpc_status);
  const absl::string_view path(call.path.data(), call.path.size());
  std::string key = absl::StrCat(record.direction, "|", record.principal, "|",
                                 path, "|", status, "|", record.decision);
  util::Counter* counter = Cached<util::Counter>(this, key, [&] {
    return requests_->WithLabels(
        {std::string(record.direction), principals_.Map(record.principal),
         methods_.Map(path), status, std::string(record.decision)});
  });
  counter->Inc();
  util::Histogram* histogram = Cached<util::Histogram>(
      &latency_, std::string(record.direction),
      [&] { return latency_->WithLabels({std::string(record.direction)}); });
  histogram->Observe(absl::ToDoubleSeconds(call.duration));
  if (record.decision != "none") {
    util::Counter* decided = Cached<util::Counter>(
        &decisions_, absl::StrCat(record.decision, "|", record.rule), [&] {
          return decisions_->WithLabels(
              {std::string(record.decision), rules_.Map(record.rule)});
        });
    decided->Inc();
  }
  if (log_ != nullptr) {
    log_->Write(record.direction, call, record.decision, record.rule,
                record.decision == "deny");
  }
}

void CallTelemetry::RecordAudit(absl::string_view rule,
                                absl::string_view would) {
  util::Counter* counter =
      Cached<util::Counter>(&audits_, absl::StrCat(rule, "|", would), [&] {
        return audits_->WithLabels({rules_.Map(rule), std::string(would)});
      });
  counter->Inc();
}

}  // namespace meshguard::sidecar
