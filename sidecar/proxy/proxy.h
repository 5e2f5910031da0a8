// The data plane runtime: N workers (one libevent loop and thread each),
// listeners bound once per worker with SO_REUSEPORT so that the kernel
// spreads connections and each connection lives on one worker for its whole
// life, and a pool of upstream connections per worker. Nothing is shared
// between workers on the per-call path, so there is no lock on it.
//
//   ProxyOptions options;
//   options.num_workers = 4;
//   auto proxy = Proxy::Create(options, &security);   // security may be null
//   auto port = (*proxy)->AddListener({.address = "127.0.0.1:15001",
//                                      .role = ListenerRole::kOutboundH2c,
//                                      .router = &router});
//   (*proxy)->Start();
//   ...
//   (*proxy)->Drain(absl::Now() + absl::Seconds(5));
//
// Threading: the Proxy's methods are called from one control thread (not a
// worker). Router, RequestFilter and ConnectionSecurity are called on worker
// threads and must outlive the Proxy.
#ifndef MESHGUARD_SIDECAR_PROXY_PROXY_H_
#define MESHGUARD_SIDECAR_PROXY_PROXY_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "sidecar/proxy/api.h"
#include "sidecar/proxy/counters.h"

namespace meshguard::sidecar::proxy {

enum class ListenerRole {
  // App -> sidecar: plaintext HTTP/2 (h2c), routed by :authority.
  kOutboundH2c,
  // Peer sidecar -> sidecar: TLS (ConnectionSecurity::NewServerSsl; a
  // nullptr there closes the connection; plaintext only when the Proxy has
  // no ConnectionSecurity at all, for tests), peer identity known to the
  // filter;
  // x-forwarded-client-cert is replaced.
  kInboundTls,
};

// A listener's accept() failed for want of descriptors or memory, and the
// listener pauses (util::ListenerPause) instead of spinning. At most one
// report a second per listener; every failure is counted in Counters.
struct AcceptFailureReport {
  ListenerRole role = ListenerRole::kOutboundH2c;
  std::string address;    // as bound: "127.0.0.1:15001"
  int error = 0;          // errno
  uint64_t failures = 0;  // since the previous report, this one included
};

struct ProxyOptions {
  int num_workers = 1;
  // TCP connect, and separately the TLS handshake, must finish within this
  // (upstream and downstream).
  absl::Duration connect_timeout = absl::Seconds(5);
  // A connection without streams for this long is closed (GOAWAY first).
  absl::Duration idle_timeout = absl::Minutes(5);
  // How often each worker looks for connections whose credentials expire.
  absl::Duration credential_check_interval = absl::Seconds(1);
  // Connections are drained this long before their credentials expire, so
  // that in-flight calls can finish on them.
  absl::Duration credential_expiry_margin = absl::Seconds(30);
  // Graceful GOAWAY: between the shutdown notice (GOAWAY 2^31-1) and the
  // final GOAWAY, so that streams the client opened meanwhile still count.
  absl::Duration goaway_notice_delay = absl::Milliseconds(200);
  // Runs on a worker thread; optional.
  std::function<void(const AcceptFailureReport&)> on_accept_failure;
};

struct ListenerConfig {
  std::string address;  // "127.0.0.1:0": port 0 picks one
  ListenerRole role = ListenerRole::kOutboundH2c;
  Router* router = nullptr;         // required; not owned
  RequestFilter* filter = nullptr;  // optional; not owned
  // Inbound: our own SPIFFE ID, for x-forwarded-client-cert's By=.
  std::string local_identity;
};

class Worker;

// UNAVAILABLE if another socket is listening on `address` (a numeric
// ip:port with a port other than 0). The workers' listeners share their port
// through SO_REUSEPORT, which would also let them join a group another
// process (of the same user) already listens with, silently splitting its
// connections; a bind without SO_REUSEPORT is refused by any listener there.
absl::Status CheckNobodyListensOn(const std::string& address);

class Proxy {
 public:
  // Process-wide side effect: SIGPIPE is ignored (as nginx and gRPC do).
  // `security` may be null when only h2c is used (no TLS listener, no TLS
  // upstream target); not owned.
  static absl::StatusOr<std::unique_ptr<Proxy>> Create(
      const ProxyOptions& options, ConnectionSecurity* security);
  ~Proxy();  // Stops at once (no drain).

  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  // Before Start(). Binds one socket per worker; returns the port.
  absl::StatusOr<int> AddListener(const ListenerConfig& config);
  absl::Status Start();

  // Stops accepting, GOAWAYs every downstream connection, lets in-flight
  // streams finish until `deadline`, then closes everything and stops the
  // workers. Blocks until done.
  void Drain(absl::Time deadline);
  // After a new trust bundle (credentials `version`): checks the peer of
  // every TLS connection (both directions) authenticated under an older
  // one again (ConnectionSecurity::RecheckPeer). Those that pass carry on;
  // those that fail (a revoked peer, a root taken out of the bundle) get
  // GOAWAY, and new calls go to fresh connections; those still in their
  // handshake are checked when it completes. Returns once every worker has
  // done so (or after 5 s if a worker's loop no longer runs), so a call
  // made after it returns does not reuse a refused connection. Not to be
  // called from a worker's thread.
  RecheckCounts RecheckPeersOlderThan(uint64_t version);

  std::vector<CounterValues> WorkerCounters() const;
  CounterValues TotalCounters() const;

 private:
  Proxy(const ProxyOptions& options, ConnectionSecurity* security);
  void Stop();

  const ProxyOptions options_;
  ConnectionSecurity* const security_;
  std::vector<std::unique_ptr<Worker>> workers_;
  bool started_ = false;
  bool stopped_ = false;
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_PROXY_H_
