// Keeps a libevent listener from spinning when accept() fails.
//
// accept() failing for want of file descriptors (EMFILE, ENFILE) or kernel
// memory (ENOBUFS, ENOMEM) leaves the connection in the listen backlog, so
// the listening socket stays readable and a level-triggered loop calls
// accept() again at once, forever: a core spent and, with libevent's
// default handling, a warning on stderr each time. Like nginx, a
// ListenerPause stops the listener on such a failure and starts it again
// after a pause (or earlier, at Resume(), when the owner has just closed a
// connection and freed a descriptor).
//
// Everything runs on the listener's loop thread.
#ifndef MESHGUARD_IDENTITY_UTIL_LISTENER_PAUSE_H_
#define MESHGUARD_IDENTITY_UTIL_LISTENER_PAUSE_H_

#include <cstdint>
#include <functional>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

struct event;
struct event_base;
struct evconnlistener;

namespace meshguard::util {

struct AcceptFailure {
  int error = 0;          // errno of the failed accept()
  uint64_t failures = 0;  // failures since the last report, this one included
};

class ListenerPause {
 public:
  // The paused time, after which the listener tries again.
  static constexpr absl::Duration kPause = absl::Milliseconds(100);
  // Reports (on_failure's `report`) come at most this often.
  static constexpr absl::Duration kReportEvery = absl::Seconds(1);

  // on_failure runs after every failed accept(), on the loop thread;
  // `report` is true for at most one call every kReportEvery (log those,
  // count them all). Installs itself as `listener`'s error callback; the
  // listener must outlive this object.
  using OnFailure = std::function<void(const AcceptFailure&, bool report)>;
  ListenerPause(event_base* base, evconnlistener* listener,
                OnFailure on_failure);
  ~ListenerPause();
  ListenerPause(const ListenerPause&) = delete;
  ListenerPause& operator=(const ListenerPause&) = delete;

  // Starts the listener again now, if it is paused.
  void Resume();
  bool paused() const { return paused_; }

 private:
  static void OnError(evconnlistener* listener, void* arg);
  static void OnTimer(int fd, short what, void* arg);
  void Failed(int error);

  evconnlistener* const listener_;
  event* timer_ = nullptr;
  OnFailure on_failure_;
  bool paused_ = false;
  uint64_t unreported_ = 0;
  absl::Time last_report_ = absl::InfinitePast();
};

// The "accept_failed" log line (warn) for a failure ListenerPause reported:
// which listener ("inbound", "outbound", "admin"), its address, the error,
// how many attempts failed since the previous line, and the pause.
void LogAcceptFailure(absl::string_view listener, absl::string_view address,
                      const AcceptFailure& failure);

// Raises this process's soft limit on open file descriptors to its hard
// limit, as Go's runtime and nginx's worker_rlimit_nofile do, so that a
// proxy or server is not held to a shell's default of 1024 while its
// container allows far more. Returns the soft limit now in force.
uint64_t RaiseOpenFileLimit();

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_LISTENER_PAUSE_H_
