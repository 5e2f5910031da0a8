// The admin HTTP/1.1 endpoint of meshguard-ca and meshguard-sidecar
// (/metrics, /healthz, /readyz, ...), served by libevent's evhttp.
//
// Two ways to run it:
//   - Create(address, nullptr): the server owns an event_base and serves it
//     on its own thread, started by Start() and joined by Stop().
//   - Create(address, base): the server lives on the caller's event loop
//     and runs no thread; whoever runs `base` serves requests.
//
// Threading contract:
//   - Handlers run on the event loop thread (the server's own thread, or the
//     thread running the external base). They must not block for long:
//     every other admin request, and with an external base the loop's other
//     work, waits for them.
//   - Handle() is thread-safe and may be called before or after Start().
//   - Create/Start/Stop/destructor are called from one owning thread. With
//     an external base, they must run on the loop's thread or while the loop
//     is not running. With an own thread, Stop() may be called while
//     requests are in flight; it waits for the running handler to return.
#ifndef MESHGUARD_IDENTITY_UTIL_ADMIN_HTTP_H_
#define MESHGUARD_IDENTITY_UTIL_ADMIN_HTTP_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "identity/util/listener_pause.h"
#include "identity/util/metrics.h"

struct event;
struct event_base;
struct evhttp;
struct evhttp_request;

namespace meshguard::util {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string path;    // Percent-decoded, without the query.
  // Query parameters, decoded ("+" is a space); for a repeated key, the
  // last value.
  std::map<std::string, std::string> query;
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

class AdminHttpServer final {
 public:
  // `listen_address` is "host:port" ("127.0.0.1:15014", "[::1]:0",
  // "localhost:15000"); port 0 picks a free port (see port()). `base`:
  // nullptr to run on an own thread, else the event loop to serve on.
  // Errors (InvalidArgument) name the address.
  static absl::StatusOr<std::unique_ptr<AdminHttpServer>> Create(
      const std::string& listen_address, event_base* base);

  ~AdminHttpServer();
  AdminHttpServer(const AdminHttpServer&) = delete;
  AdminHttpServer& operator=(const AdminHttpServer&) = delete;

  // Serves `path` (exact match) with `handler`, for any method. Replaces an
  // earlier handler for the same path.
  void Handle(const std::string& path, HttpHandler handler);
  // The same, for the listed methods only ("GET", "POST", ...); others get
  // 405 with an Allow header. A GET handler also answers HEAD.
  void Handle(const std::string& path, std::vector<std::string> methods,
              HttpHandler handler);

  // Binds and starts serving. Errors name the address, e.g. "cannot listen
  // on 127.0.0.1:15014: Address already in use". Call once.
  absl::Status Start();

  // The bound port, once Start() succeeded; 0 before.
  int port() const { return port_; }

  // Stops serving and, with an own thread, joins it. Idempotent; the
  // server cannot be started again.
  void Stop();

 private:
  struct Route {
    std::vector<std::string> methods;  // Empty: any.
    HttpHandler handler;
  };

  AdminHttpServer(std::string listen_address, std::string host, int port,
                  event_base* base, bool owns_base);
  static void OnRequest(evhttp_request* req, void* arg);
  void Serve(evhttp_request* req);
  std::string Index() const;

  const std::string listen_address_;
  const std::string host_;
  const int requested_port_;
  event_base* const base_;
  const bool owns_base_;
  evhttp* http_ = nullptr;
  event* stop_event_ = nullptr;  // Own thread only: breaks the loop.
  std::unique_ptr<ListenerPause> accept_pause_;  // once started
  int port_ = 0;
  bool started_ = false;
  bool stopped_ = false;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::map<std::string, Route> routes_ ABSL_GUARDED_BY(mu_);
};

// /metrics (the registry, text/plain; version=0.0.4), /healthz (200 "ok"),
// /readyz (200 "ready" when ready() is true, else 503 "not ready"). GET and
// HEAD only. `ready` runs on the event loop thread; both pointers must
// outlive the server.
void RegisterStandardHandlers(AdminHttpServer* server,
                              MetricsRegistry* registry,
                              std::function<bool()> ready);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_ADMIN_HTTP_H_
