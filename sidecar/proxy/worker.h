// One event loop on one thread, and everything it owns: listeners,
// connections, the upstream pool, counters. Internal to the proxy runtime.
//
// Threading: RunInLoop and counters() may be called from any thread;
// the event base has no locks.
// everything else only on the worker's own thread (or before Start).
#ifndef MESHGUARD_SIDECAR_PROXY_WORKER_H_
#define MESHGUARD_SIDECAR_PROXY_WORKER_H_

#include <event2/event.h>
#include <event2/listener.h>
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "identity/util/listener_pause.h"
#include "sidecar/proxy/counters.h"
#include "sidecar/proxy/proxy.h"
#include "sidecar/proxy/transport.h"

namespace meshguard::sidecar::proxy {

struct EventBaseDeleter {
  void operator()(event_base* b) const { event_base_free(b); }
};
struct EventDeleter {
  void operator()(event* e) const { event_free(e); }
};
struct ListenerDeleter {
  void operator()(evconnlistener* l) const { evconnlistener_free(l); }
};
using EventPtr = std::unique_ptr<event, EventDeleter>;

class Connection;
class UpstreamPool;

// "1.2.3.4:80" or "[::1]:80" (numeric only; port 0 allowed, unlike
// evutil_parse_sockaddr_port) into `out`.
bool ParseSocketAddress(const std::string& address, sockaddr_storage* out,
                        int* len);

class Worker final : public Dispatcher {
 public:
  Worker(int index, const ProxyOptions& options, ConnectionSecurity* security);
  ~Worker() override;

  absl::Status Init();
  // Binds a listening socket for `config` on this worker; `port` 0 picks
  // one (the first worker's choice is then passed to the others).
  absl::StatusOr<int> Listen(const ListenerConfig& config, int port);
  void Start();
  // Closes everything now and joins the thread.
  void Stop();
  void RunInLoop(std::function<void()> fn);

  // Dispatcher.
  void Post(std::function<void()> fn) override;
  void DeferredDelete(std::unique_ptr<Deletable> object) override;

  // Loop thread only.
  event_base* base() const { return base_.get(); }
  UpstreamPool& pool() { return *pool_; }
  ConnectionSecurity* security() const { return security_; }
  const ProxyOptions& options() const { return options_; }
  void AddConnection(Connection* c) { connections_.insert(c); }
  // Connections with output to send: flushed once per loop round, after
  // every socket that was ready has been read (see connections.h).
  void QueueFlush(Connection* c);
  void CancelFlush(Connection* c);
  // Scratch space for one recv() (ciphertext or h2c bytes) and for one
  // SSL_read; only valid within one callback.
  static constexpr size_t kReadBufferSize = 64 << 10;
  static constexpr size_t kPlaintextBufferSize = 64 << 10;
  uint8_t* read_buffer() { return read_buffer_.get(); }
  uint8_t* plaintext_buffer() { return plaintext_buffer_.get(); }
  // A closed connection frees a descriptor: a listener paused for want of
  // one tries again at once.
  void RemoveConnection(Connection* c);
  void BeginDrain();
  // Connection::RecheckPeer for every TLS connection older than `version`.
  RecheckCounts RecheckPeersOlderThan(uint64_t version);

  Counters& counters() { return counters_; }
  const Counters& counters() const { return counters_; }

 private:
  struct ListenerState {
    Worker* worker;
    ListenerConfig config;
    std::unique_ptr<evconnlistener, ListenerDeleter> listener;
    // After `listener`: destroyed first, while the listener still exists.
    std::unique_ptr<util::ListenerPause> pause;
    void Close() {
      pause.reset();
      listener.reset();
    }
  };

  static void OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr* addr,
                       int addrlen, void* arg);
  static void OnPosted(evutil_socket_t, short, void* arg);
  static void OnCrossThread(evutil_socket_t, short, void* arg);
  static void OnFlush(evutil_socket_t, short, void* arg);
  static void OnCredentialTimer(evutil_socket_t, short, void* arg);
  void RunPosted();
  void CloseAll();

  const int index_;
  const ProxyOptions options_;
  ConnectionSecurity* const security_;
  // Declared before everything that counts into it.
  Counters counters_;
  std::unique_ptr<event_base, EventBaseDeleter> base_;
  EventPtr posted_event_;
  EventPtr flush_event_;
  // The loop is lock-free (EVENT_BASE_FLAG_NOLOCK): other threads wake it
  // through this eventfd, never through libevent calls.
  int wake_fd_ = -1;
  EventPtr cross_thread_event_;
  EventPtr credential_timer_;
  std::vector<std::unique_ptr<ListenerState>> listeners_;
  std::unique_ptr<UpstreamPool> pool_;
  absl::flat_hash_set<Connection*> connections_;
  std::vector<std::function<void()>> posted_;
  std::vector<std::unique_ptr<Deletable>> deferred_;
  bool posted_scheduled_ = false;
  std::vector<Connection*> flush_list_;
  bool flush_scheduled_ = false;
  std::unique_ptr<uint8_t[]> read_buffer_;
  std::unique_ptr<uint8_t[]> plaintext_buffer_;
  std::thread thread_;

  absl::Mutex mu_;
  std::vector<std::function<void()>> cross_thread_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_WORKER_H_
