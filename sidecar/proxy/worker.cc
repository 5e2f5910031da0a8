#include "sidecar/proxy/worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "sidecar/proxy/connections.h"
#include "sidecar/proxy/upstream_pool.h"

namespace meshguard::sidecar::proxy {

bool ParseSocketAddress(const std::string& address, sockaddr_storage* out,
                        int* len) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  std::string host = address.substr(0, colon);
  const std::string port_text = address.substr(colon + 1);
  int port = 0;
  if (port_text.empty() || !absl::SimpleAtoi(port_text, &port) || port < 0 ||
      port > 65535) {
    return false;
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  *out = sockaddr_storage{};
  auto* in = reinterpret_cast<sockaddr_in*>(out);
  if (inet_pton(AF_INET, host.c_str(), &in->sin_addr) == 1) {
    in->sin_family = AF_INET;
    in->sin_port = htons(port);
    *len = sizeof(sockaddr_in);
    return true;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(out);
  if (inet_pton(AF_INET6, host.c_str(), &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    *len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

Worker::Worker(int index, const ProxyOptions& options,
               ConnectionSecurity* security)
    : index_(index), options_(options), security_(security) {}

Worker::~Worker() {
  Stop();
  cross_thread_event_.reset();
  if (wake_fd_ >= 0) close(wake_fd_);
}

absl::Status Worker::Init() {
  event_config* cfg = event_config_new();
  if (cfg == nullptr) return absl::InternalError("event_config_new failed");
  // One thread owns the loop; cross-thread wake-ups use wake_fd_.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
  // A read event disarmed and re-armed within one round costs no syscall.
  event_config_set_flag(cfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
  base_.reset(event_base_new_with_config(cfg));
  event_config_free(cfg);
  if (base_ == nullptr) return absl::InternalError("event_base_new failed");
  read_buffer_ = std::make_unique<uint8_t[]>(kReadBufferSize);
  plaintext_buffer_ = std::make_unique<uint8_t[]>(kPlaintextBufferSize);
  posted_event_.reset(event_new(base_.get(), -1, 0, &OnPosted, this));
  flush_event_.reset(event_new(base_.get(), -1, 0, &OnFlush, this));
  wake_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    return absl::InternalError(absl::StrCat("eventfd: ", strerror(errno)));
  }
  cross_thread_event_.reset(event_new(
      base_.get(), wake_fd_, EV_READ | EV_PERSIST, &OnCrossThread, this));
  event_add(cross_thread_event_.get(), nullptr);
  credential_timer_.reset(
      event_new(base_.get(), -1, EV_PERSIST, &OnCredentialTimer, this));
  timeval tv = absl::ToTimeval(options_.credential_check_interval);
  evtimer_add(credential_timer_.get(), &tv);
  pool_ = std::make_unique<UpstreamPool>(this);
  return absl::OkStatus();
}

absl::Status CheckNobodyListensOn(const std::string& address) {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (!ParseSocketAddress(address, &ss, &len)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listener address \"", address, "\" is not a numeric ip:port"));
  }
  const int port = ntohs(ss.ss_family == AF_INET
                             ? reinterpret_cast<sockaddr_in*>(&ss)->sin_port
                             : reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  if (port == 0) return absl::OkStatus();  // the kernel picks a free one
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  // SO_REUSEADDR: connections of an earlier run in TIME_WAIT are no
  // reason to refuse; a listener is.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  const int rc = bind(fd, reinterpret_cast<sockaddr*>(&ss), len);
  const int err = errno;
  close(fd);
  if (rc != 0) {
    return absl::UnavailableError(absl::StrCat(
        "cannot listen on ", address, ": ", strerror(err),
        err == EADDRINUSE ? " (another process is listening there)" : ""));
  }
  return absl::OkStatus();
}

absl::StatusOr<int> Worker::Listen(const ListenerConfig& config, int port) {
  sockaddr_storage ss{};
  int len = sizeof(ss);
  if (!ParseSocketAddress(config.address, &ss, &len)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listener address \"", config.address, "\" is not a numeric ip:port"));
  }
  if (port >= 0) {
    if (ss.ss_family == AF_INET) {
      reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(port);
    } else {
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(port);
    }
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  // One socket per worker on the same port: the kernel spreads connections
  // and each stays on the worker that accepted it.
  setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
  if (bind(fd, reinterpret_cast<sockaddr*>(&ss), len) != 0 ||
      listen(fd, 1024) != 0) {
    std::string err = strerror(errno);
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", config.address, ": ", err));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len);
  int bound_port =
      ntohs(bound.ss_family == AF_INET
                ? reinterpret_cast<sockaddr_in*>(&bound)->sin_port
                : reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port);

  auto state = std::make_unique<ListenerState>();
  state->worker = this;
  state->config = config;
  state->listener.reset(
      evconnlistener_new(base_.get(), &OnAccept, state.get(),
                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd));
  if (state->listener == nullptr) {
    close(fd);
    return absl::InternalError("evconnlistener_new failed");
  }
  const std::string host = config.address.substr(0, config.address.rfind(':'));
  state->pause = std::make_unique<util::ListenerPause>(
      base_.get(), state->listener.get(),
      [this, role = config.role, address = absl::StrCat(host, ":", bound_port)](
          const util::AcceptFailure& failure, bool report) {
        (role == ListenerRole::kInboundTls ? counters_.inbound_accept_failures
                                           : counters_.outbound_accept_failures)
            .Add();
        if (!report || !options_.on_accept_failure) return;
        AcceptFailureReport r;
        r.role = role;
        r.address = address;
        r.error = failure.error;
        r.failures = failure.failures;
        options_.on_accept_failure(r);
      });
  listeners_.push_back(std::move(state));
  return bound_port;
}

void Worker::RemoveConnection(Connection* c) {
  connections_.erase(c);
  for (auto& l : listeners_) {
    if (l->pause != nullptr) l->pause->Resume();
  }
}

void Worker::OnAccept(evconnlistener*, evutil_socket_t fd, sockaddr*, int,
                      void* arg) {
  auto* state = static_cast<ListenerState*>(arg);
  auto* conn = new DownstreamConnection(state->worker, state->config, fd);
  conn->Start();
}

void Worker::Start() {
  thread_ = std::thread(
      [this] { event_base_loop(base_.get(), EVLOOP_NO_EXIT_ON_EMPTY); });
}

void Worker::Stop() {
  if (base_ == nullptr) return;
  if (thread_.joinable()) {
    RunInLoop([this] {
      CloseAll();
      event_base_loopbreak(base_.get());
    });
    thread_.join();
  } else {
    CloseAll();
  }
}

void Worker::CloseAll() {
  for (auto& l : listeners_) l->Close();
  std::vector<Connection*> all(connections_.begin(), connections_.end());
  for (Connection* c : all) c->Close(false);
  RunPosted();
}

void Worker::RunInLoop(std::function<void()> fn) {
  {
    absl::MutexLock lock(&mu_);
    cross_thread_.push_back(std::move(fn));
  }
  const uint64_t one = 1;
  // Only fails when the counter would overflow: a wake-up is pending then.
  (void)!write(wake_fd_, &one, sizeof(one));
}

void Worker::OnCrossThread(evutil_socket_t fd, short, void* arg) {
  auto* self = static_cast<Worker*>(arg);
  uint64_t count;
  (void)!read(fd, &count, sizeof(count));
  std::vector<std::function<void()>> fns;
  {
    absl::MutexLock lock(&self->mu_);
    fns.swap(self->cross_thread_);
  }
  for (auto& fn : fns) fn();
}

void Worker::Post(std::function<void()> fn) {
  posted_.push_back(std::move(fn));
  if (!posted_scheduled_) {
    posted_scheduled_ = true;
    event_active(posted_event_.get(), EV_READ, 0);
  }
}

void Worker::DeferredDelete(std::unique_ptr<Deletable> object) {
  deferred_.push_back(std::move(object));
  if (!posted_scheduled_) {
    posted_scheduled_ = true;
    event_active(posted_event_.get(), EV_READ, 0);
  }
}

void Worker::QueueFlush(Connection* c) {
  flush_list_.push_back(c);
  if (!flush_scheduled_) {
    flush_scheduled_ = true;
    // Runs after the callbacks already active in this round.
    event_active(flush_event_.get(), EV_WRITE, 0);
  }
}

void Worker::CancelFlush(Connection* c) {
  for (Connection*& queued : flush_list_) {
    if (queued == c) queued = nullptr;
  }
}

void Worker::OnFlush(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Worker*>(arg);
  // By index: flushing may queue more (a drained session produces frames).
  for (size_t i = 0; i < self->flush_list_.size(); ++i) {
    if (Connection* c = self->flush_list_[i]) c->FlushOutput();
  }
  self->flush_list_.clear();
  self->flush_scheduled_ = false;
}

void Worker::OnPosted(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->RunPosted();
}

void Worker::RunPosted() {
  posted_scheduled_ = true;  // runs everything queued meanwhile, too
  while (!posted_.empty() || !deferred_.empty()) {
    std::vector<std::function<void()>> fns;
    fns.swap(posted_);
    for (auto& fn : fns) fn();
    std::vector<std::unique_ptr<Deletable>> dead;
    dead.swap(deferred_);
    dead.clear();
  }
  posted_scheduled_ = false;
}

void Worker::BeginDrain() {
  for (auto& l : listeners_) l->Close();  // configs stay for conns
  std::vector<Connection*> all(connections_.begin(), connections_.end());
  for (Connection* c : all) {
    if (c->is_downstream()) c->StartDrain();
  }
}

RecheckCounts Worker::RecheckPeersOlderThan(uint64_t version) {
  RecheckCounts counts;
  RecheckVerdicts verdicts(security_);
  std::vector<Connection*> all(connections_.begin(), connections_.end());
  for (Connection* c : all) {
    if (!c->is_tls() || c->draining() || c->credentials().version >= version) {
      continue;
    }
    switch (c->RecheckPeer(version, &verdicts)) {
      case Connection::Recheck::kKept:
        ++counts.kept;
        counters_.rechecks_kept.Add();
        break;
      case Connection::Recheck::kDrained:
        ++counts.drained;
        counters_.rechecks_drained.Add();
        counters_.connections_drained_for_credentials.Add();
        break;
      case Connection::Recheck::kDeferred:
        ++counts.in_handshake;
        counters_.rechecks_in_handshake.Add();
        break;
    }
  }
  counts.chains_verified = verdicts.verified();
  return counts;
}

void Worker::OnCredentialTimer(evutil_socket_t, short, void* arg) {
  auto* self = static_cast<Worker*>(arg);
  const absl::Time deadline =
      absl::Now() + self->options_.credential_expiry_margin;
  std::vector<Connection*> all(self->connections_.begin(),
                               self->connections_.end());
  for (Connection* c : all) {
    if (c->is_tls() && !c->draining() &&
        c->credentials().expires_at <= deadline) {
      self->counters_.connections_drained_for_credentials.Add();
      c->StartDrain();
    }
  }
}

}  // namespace meshguard::sidecar::proxy
