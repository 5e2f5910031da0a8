#include "sidecar/proxy/upstream_pool.h"

#include <algorithm>
#include <utility>

#include "sidecar/proxy/connections.h"
#include "sidecar/proxy/worker.h"

namespace meshguard::sidecar::proxy {
namespace {

// Streams a connection that is still connecting is assumed to take: the
// limit nghttp2 applies before the peer's SETTINGS arrive.
constexpr size_t kAssumedStreamsPerConnection = 100;

// Concurrent calls to one target are spread over up to this many
// connections (per worker) before they share one. A gRPC server processes
// each connection's frames serially (gRPC C++ runs a connection's transport
// under one lock), so one busy connection would cap a multi-core server at
// one core; a few connections keep it parallel, as the clients' own
// connections would have.
constexpr size_t kSpreadConnectionsPerTarget = 4;

}  // namespace

UpstreamPool::~UpstreamPool() = default;

void UpstreamPool::Acquire(const UpstreamTarget& target,
                           UpstreamWaiter* waiter) {
  Entry& entry = entries_[target];
  if (UpstreamConnection* conn = Pick(target, entry)) {
    waiter->OnUpstreamReady(conn->session());
    return;
  }
  entry.waiters.push_back(waiter);
  waiting_.emplace(waiter, target);
  OpenConnectionsForWaiters(target, entry);
}

UpstreamConnection* UpstreamPool::Pick(const UpstreamTarget& target,
                                       Entry& entry) {
  UpstreamConnection* least_busy = nullptr;
  for (UpstreamConnection* conn : entry.connections) {
    if (conn->HasCapacity() && (least_busy == nullptr ||
                                conn->session()->active_streams() <
                                    least_busy->session()->active_streams())) {
      least_busy = conn;
    }
  }
  // Every ready connection is carrying calls: add a sibling for the next
  // ones (this call does not wait for it).
  if (least_busy != nullptr && least_busy->session()->active_streams() > 0 &&
      entry.connections.size() < kSpreadConnectionsPerTarget) {
    OpenConnection(target, entry);
  }
  return least_busy;
}

void UpstreamPool::CancelAcquire(UpstreamWaiter* waiter) {
  auto it = waiting_.find(waiter);
  if (it == waiting_.end()) return;
  Entry& entry = entries_[it->second];
  waiting_.erase(it);
  entry.waiters.erase(
      std::remove(entry.waiters.begin(), entry.waiters.end(), waiter),
      entry.waiters.end());
}

void UpstreamPool::OpenConnectionsForWaiters(const UpstreamTarget& target,
                                             Entry& entry) {
  size_t connecting = 0;
  for (UpstreamConnection* conn : entry.connections) {
    if (conn->connecting()) ++connecting;
  }
  if (entry.waiters.size() > connecting * kAssumedStreamsPerConnection) {
    OpenConnection(target, entry);
  }
}

void UpstreamPool::OpenConnection(const UpstreamTarget& target, Entry& entry) {
  auto* conn = new UpstreamConnection(worker_, this, target);
  entry.connections.push_back(conn);
  conn->Start();
}

void UpstreamPool::Serve(const UpstreamTarget& target) {
  // Submitting a stream reports a stream-count change, which lands here
  // again: the outer loop already serves everyone.
  if (serving_) return;
  serving_ = true;
  Entry& entry = entries_[target];
  while (!entry.waiters.empty()) {
    UpstreamConnection* ready = Pick(target, entry);
    if (ready == nullptr) break;
    UpstreamWaiter* waiter = entry.waiters.front();
    entry.waiters.pop_front();
    waiting_.erase(waiter);
    waiter->OnUpstreamReady(ready->session());
  }
  OpenConnectionsForWaiters(target, entry);
  serving_ = false;
}

void UpstreamPool::OnConnectionReady(UpstreamConnection* conn) {
  Serve(conn->target());
}

void UpstreamPool::OnCapacityChanged(UpstreamConnection* conn) {
  if (waiting_.empty()) return;
  Serve(conn->target());
}

void UpstreamPool::OnConnectionFailed(UpstreamConnection* conn,
                                      const absl::Status& status) {
  const UpstreamTarget target = conn->target();
  Entry& entry = entries_[target];
  entry.connections.erase(
      std::remove(entry.connections.begin(), entry.connections.end(), conn),
      entry.connections.end());
  for (UpstreamConnection* other : entry.connections) {
    // Another attempt is under way: its waiters keep waiting.
    if (other->connecting()) return;
  }
  // Fail fast rather than hang: nothing else is on its way.
  std::deque<UpstreamWaiter*> waiters;
  waiters.swap(entry.waiters);
  for (UpstreamWaiter* w : waiters) waiting_.erase(w);
  for (UpstreamWaiter* w : waiters) w->OnUpstreamFailure(status);
}

void UpstreamPool::OnConnectionClosed(UpstreamConnection* conn) {
  auto it = entries_.find(conn->target());
  if (it == entries_.end()) return;
  Entry& entry = it->second;
  entry.connections.erase(
      std::remove(entry.connections.begin(), entry.connections.end(), conn),
      entry.connections.end());
  if (!entry.waiters.empty()) Serve(conn->target());
}

size_t UpstreamPool::connection_count() const {
  size_t n = 0;
  for (const auto& [target, entry] : entries_) n += entry.connections.size();
  return n;
}

}  // namespace meshguard::sidecar::proxy
