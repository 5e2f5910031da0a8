#include "sidecar/proxy/proxy.h"

#include <csignal>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "sidecar/proxy/worker.h"

namespace meshguard::sidecar::proxy {

Proxy::Proxy(const ProxyOptions& options, ConnectionSecurity* security)
    : options_(options), security_(security) {}

absl::StatusOr<std::unique_ptr<Proxy>> Proxy::Create(
    const ProxyOptions& options, ConnectionSecurity* security) {
  if (options.num_workers < 1) {
    return absl::InvalidArgumentError("num_workers must be at least 1");
  }
  static std::once_flag once;
  std::call_once(once, [] {
    // Sockets are written with MSG_NOSIGNAL; this also covers any other
    // write(2) in the process: a peer that closed its end must be an EPIPE
    // on that connection, not a process-killing signal.
    signal(SIGPIPE, SIG_IGN);
  });
  std::unique_ptr<Proxy> proxy(new Proxy(options, security));
  for (int i = 0; i < options.num_workers; ++i) {
    auto worker = std::make_unique<Worker>(i, options, security);
    if (absl::Status s = worker->Init(); !s.ok()) return s;
    proxy->workers_.push_back(std::move(worker));
  }
  return proxy;
}

Proxy::~Proxy() { Stop(); }

absl::StatusOr<int> Proxy::AddListener(const ListenerConfig& config) {
  if (started_) {
    return absl::FailedPreconditionError("AddListener after Start");
  }
  if (config.router == nullptr) {
    return absl::InvalidArgumentError("listener needs a router");
  }
  if (config.role == ListenerRole::kInboundTls && security_ == nullptr) {
    return absl::InvalidArgumentError(
        "inbound TLS listener needs a ConnectionSecurity");
  }
  if (absl::Status s = CheckNobodyListensOn(config.address); !s.ok()) {
    return s;
  }
  int port = -1;  // keep the configured port for the first worker
  for (auto& worker : workers_) {
    absl::StatusOr<int> bound = worker->Listen(config, port);
    if (!bound.ok()) return bound.status();
    port = *bound;
  }
  return port;
}

absl::Status Proxy::Start() {
  if (started_) return absl::FailedPreconditionError("already started");
  started_ = true;
  for (auto& worker : workers_) worker->Start();
  return absl::OkStatus();
}

void Proxy::Drain(absl::Time deadline) {
  if (stopped_) return;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->RunInLoop([w] { w->BeginDrain(); });
  }
  while (absl::Now() < deadline) {
    if (TotalCounters().downstream_connections_active == 0) break;
    absl::SleepFor(absl::Milliseconds(5));
  }
  Stop();
}

RecheckCounts Proxy::RecheckPeersOlderThan(uint64_t version) {
  RecheckCounts total;
  if (stopped_) return total;
  // Shared with the tasks: a task that runs after a timed-out wait must not
  // touch this frame.
  struct Slot {
    absl::Notification done;
    RecheckCounts counts;
  };
  auto slots = std::make_shared<std::vector<Slot>>(workers_.size());
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker* w = workers_[i].get();
    w->RunInLoop([w, version, slots, i] {
      (*slots)[i].counts = w->RecheckPeersOlderThan(version);
      (*slots)[i].done.Notify();
    });
  }
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  for (Slot& slot : *slots) {
    if (slot.done.WaitForNotificationWithDeadline(deadline)) {
      total += slot.counts;
    }
  }
  return total;
}

void Proxy::Stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& worker : workers_) worker->Stop();
}

std::vector<CounterValues> Proxy::WorkerCounters() const {
  std::vector<CounterValues> out;
  for (const auto& worker : workers_)
    out.push_back(worker->counters().Snapshot());
  return out;
}

CounterValues Proxy::TotalCounters() const {
  CounterValues total;
  for (const auto& worker : workers_) total += worker->counters().Snapshot();
  return total;
}

}  // namespace meshguard::sidecar::proxy
