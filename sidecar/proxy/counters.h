// Per-worker counters: plain uint64 values, one writer (the worker thread),
// readable from any thread (relaxed atomics, no lock, no metrics library).
#ifndef MESHGUARD_SIDECAR_PROXY_COUNTERS_H_
#define MESHGUARD_SIDECAR_PROXY_COUNTERS_H_

#include <atomic>
#include <cstdint>

namespace meshguard::sidecar::proxy {

// X(name): every counter and gauge, in one list so that the live and the
// snapshot structs cannot drift apart.
#define MESHGUARD_PROXY_COUNTERS(X)                                         \
  X(downstream_connections_active)                                          \
  X(downstream_connections_total)                                           \
  X(upstream_connections_active)                                            \
  X(upstream_connections_total)                                             \
  X(streams_active)                                                         \
  X(requests_total)                                                         \
  /* Requests by result. */                                                 \
  X(requests_completed) /* upstream answered, response fully relayed */     \
  X(requests_denied)    /* filter denied */                                 \
  X(requests_no_route)                                                      \
  X(requests_connect_failure)                                               \
  X(requests_handshake_failure)                                             \
  X(requests_upstream_reset)   /* RST_STREAM or connection loss upstream */ \
  X(requests_downstream_reset) /* client cancelled / went away */           \
  /* Handshake failures by reason. */                                       \
  X(downstream_handshake_tls_error)                                         \
  X(downstream_handshake_identity_rejected)                                 \
  X(downstream_handshake_alpn_mismatch)                                     \
  X(downstream_handshake_timeout)                                           \
  X(upstream_connect_error)                                                 \
  X(upstream_connect_timeout)                                               \
  X(upstream_handshake_tls_error)                                           \
  X(upstream_handshake_identity_rejected)                                   \
  X(upstream_handshake_alpn_mismatch)                                       \
  /* accept() failures (out of descriptors or memory): listener paused. */  \
  X(inbound_accept_failures)                                                \
  X(outbound_accept_failures)                                               \
  X(goaways_sent)                                                           \
  X(goaways_received)                                                       \
  X(connections_drained_for_credentials)                                    \
  /* Connections checked again on a new trust bundle, by outcome. */        \
  X(rechecks_kept)                                                          \
  X(rechecks_drained)                                                       \
  X(rechecks_in_handshake)                                                  \
  X(bytes_in)                                                               \
  X(bytes_out)

// A single-writer counter: the worker increments with a plain load+store
// (no locked instruction); scrapers read a possibly slightly stale value.
class Counter {
 public:
  void Add(uint64_t n = 1) {
    value_.store(value_.load(std::memory_order_relaxed) + n,
                 std::memory_order_relaxed);
  }
  void Sub(uint64_t n = 1) { Add(-n); }
  uint64_t Get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A snapshot, for scraping.
struct CounterValues {
#define MESHGUARD_PROXY_FIELD(name) uint64_t name = 0;
  MESHGUARD_PROXY_COUNTERS(MESHGUARD_PROXY_FIELD)
#undef MESHGUARD_PROXY_FIELD

  CounterValues& operator+=(const CounterValues& o) {
#define MESHGUARD_PROXY_ADD(name) name += o.name;
    MESHGUARD_PROXY_COUNTERS(MESHGUARD_PROXY_ADD)
#undef MESHGUARD_PROXY_ADD
    return *this;
  }
};

// The live counters of one worker.
struct Counters {
#define MESHGUARD_PROXY_FIELD(name) Counter name;
  MESHGUARD_PROXY_COUNTERS(MESHGUARD_PROXY_FIELD)
#undef MESHGUARD_PROXY_FIELD

  CounterValues Snapshot() const {
    CounterValues v;
#define MESHGUARD_PROXY_COPY(name) v.name = name.Get();
    MESHGUARD_PROXY_COUNTERS(MESHGUARD_PROXY_COPY)
#undef MESHGUARD_PROXY_COPY
    return v;
  }
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_COUNTERS_H_
