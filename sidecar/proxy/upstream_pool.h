// A worker's upstream connections, keyed by UpstreamTarget (address,
// expected identity, TLS). Streams are multiplexed onto a connection up to
// the peer's SETTINGS_MAX_CONCURRENT_STREAMS; when all are full (or still
// connecting with enough waiters queued) another connection is opened.
//
// Threading: the owning worker's thread only.
#ifndef MESHGUARD_SIDECAR_PROXY_UPSTREAM_POOL_H_
#define MESHGUARD_SIDECAR_PROXY_UPSTREAM_POOL_H_

#include <deque>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/node_hash_map.h"
#include "absl/status/status.h"
#include "sidecar/proxy/stream_pair.h"

namespace meshguard::sidecar::proxy {

class UpstreamConnection;
class Worker;

class UpstreamPool final : public UpstreamConnector {
 public:
  explicit UpstreamPool(Worker* worker) : worker_(worker) {}
  ~UpstreamPool() override;

  void Acquire(const UpstreamTarget& target, UpstreamWaiter* waiter) override;
  void CancelAcquire(UpstreamWaiter* waiter) override;

  // From UpstreamConnection.
  void OnConnectionReady(UpstreamConnection* conn);
  void OnCapacityChanged(UpstreamConnection* conn);
  void OnConnectionFailed(UpstreamConnection* conn, const absl::Status& status);
  void OnConnectionClosed(UpstreamConnection* conn);

  size_t connection_count() const;

 private:
  struct Entry {
    std::vector<UpstreamConnection*> connections;
    std::deque<UpstreamWaiter*> waiters;
  };
  // Hands waiters to connections with room; opens one if waiters remain.
  void Serve(const UpstreamTarget& target);
  void OpenConnection(const UpstreamTarget& target, Entry& entry);
  // One more connection when the waiters exceed what those still connecting
  // are assumed to take.
  void OpenConnectionsForWaiters(const UpstreamTarget& target, Entry& entry);
  // The ready connection with the fewest streams (null if none has room);
  // opens a sibling when even that one is busy, up to a few per target.
  UpstreamConnection* Pick(const UpstreamTarget& target, Entry& entry);

  Worker* const worker_;
  // node_hash_map: entries stay put while callbacks add other targets.
  absl::node_hash_map<UpstreamTarget, Entry> entries_;
  absl::flat_hash_map<UpstreamWaiter*, UpstreamTarget> waiting_;
  bool serving_ = false;
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_UPSTREAM_POOL_H_
