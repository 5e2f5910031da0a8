#include "identity/util/listener_pause.h"

#include <event2/event.h>
#include <event2/listener.h>
#include <sys/resource.h>

#include <cstring>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "identity/util/json_log.h"

namespace meshguard::util {
namespace {

// libevent hands an error callback the listener and the listener's own
// user data (the accept callback's: a worker's listener state, or evhttp's
// server), not ours; so the pause is found by its listener. Touched only
// when a pause is made or destroyed and when accept() fails.
struct Registry {
  absl::Mutex mu;
  absl::flat_hash_map<evconnlistener*, ListenerPause*> pauses
      ABSL_GUARDED_BY(mu);
};

Registry& Pauses() {
  static Registry* registry = new Registry;  // never destroyed
  return *registry;
}

}  // namespace

ListenerPause::ListenerPause(event_base* base, evconnlistener* listener,
                             OnFailure on_failure)
    : listener_(listener), on_failure_(std::move(on_failure)) {
  timer_ = evtimer_new(base, &ListenerPause::OnTimer, this);
  {
    Registry& r = Pauses();
    absl::MutexLock lock(&r.mu);
    r.pauses[listener_] = this;
  }
  evconnlistener_set_error_cb(listener_, &ListenerPause::OnError);
}

ListenerPause::~ListenerPause() {
  evconnlistener_set_error_cb(listener_, nullptr);
  {
    Registry& r = Pauses();
    absl::MutexLock lock(&r.mu);
    r.pauses.erase(listener_);
  }
  if (timer_ != nullptr) event_free(timer_);
}

void ListenerPause::OnError(evconnlistener* listener, void*) {
  const int error = EVUTIL_SOCKET_ERROR();
  ListenerPause* pause = nullptr;
  {
    Registry& r = Pauses();
    absl::MutexLock lock(&r.mu);
    auto it = r.pauses.find(listener);
    if (it != r.pauses.end()) pause = it->second;
  }
  if (pause != nullptr) pause->Failed(error);
}

void ListenerPause::Failed(int error) {
  evconnlistener_disable(listener_);
  paused_ = true;
  const timeval delay = absl::ToTimeval(kPause);
  evtimer_add(timer_, &delay);
  ++unreported_;
  const absl::Time now = absl::Now();
  const bool report = now - last_report_ >= kReportEvery;
  AcceptFailure failure;
  failure.error = error;
  failure.failures = unreported_;
  if (report) {
    last_report_ = now;
    unreported_ = 0;
  }
  if (on_failure_) on_failure_(failure, report);
}

void ListenerPause::Resume() {
  if (!paused_) return;
  paused_ = false;
  evtimer_del(timer_);
  evconnlistener_enable(listener_);
}

void ListenerPause::OnTimer(int, short, void* arg) {
  static_cast<ListenerPause*>(arg)->Resume();
}

void LogAcceptFailure(absl::string_view listener, absl::string_view address,
                      const AcceptFailure& failure) {
  char buf[256];
  LogLine("warn", "accept_failed")
      .Add("listener", std::string(listener))
      .Add("address", std::string(address))
      .Add("error", strerror_r(failure.error, buf, sizeof(buf)))  // GNU
      .Add("failures", static_cast<int64_t>(failure.failures))
      .Add("paused_ms", absl::ToInt64Milliseconds(ListenerPause::kPause))
      .Emit();
}

uint64_t RaiseOpenFileLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return static_cast<uint64_t>(limit.rlim_cur);
}

}  // namespace meshguard::util
