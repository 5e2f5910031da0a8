#include "identity/util/admin_http.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshguard::util {
namespace {

constexpr ev_ssize_t kMaxBodyBytes = 1 << 20;
constexpr ev_ssize_t kMaxHeaderBytes = 64 << 10;
constexpr int kRequestTimeoutSeconds = 30;

std::string ErrnoString(int err) {
  char buf[256];
  return strerror_r(err, buf, sizeof(buf));  // GNU variant.
}

const char* MethodName(evhttp_cmd_type cmd) {
  switch (cmd) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_TRACE:
      return "TRACE";
    case EVHTTP_REQ_CONNECT:
      return "CONNECT";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
  }
  return "UNKNOWN";
}

void Reply(evhttp_request* req, const HttpResponse& response,
           const std::string& allow = "") {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  evhttp_add_header(headers, "Content-Type", response.content_type.c_str());
  if (!allow.empty()) evhttp_add_header(headers, "Allow", allow.c_str());
  evbuffer* body = evbuffer_new();
  // evhttp writes whatever body it is given, even for HEAD.
  if (evhttp_request_get_command(req) != EVHTTP_REQ_HEAD) {
    evbuffer_add(body, response.body.data(), response.body.size());
  }
  // A null reason makes evhttp use the standard phrase for the code.
  evhttp_send_reply(req, response.status, nullptr, body);
  evbuffer_free(body);
}

HttpResponse Text(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

void OnStopEvent(evutil_socket_t, short, void* arg) {
  event_base_loopbreak(static_cast<event_base*>(arg));
}

}  // namespace

absl::StatusOr<std::unique_ptr<AdminHttpServer>> AdminHttpServer::Create(
    const std::string& listen_address, event_base* base) {
  auto invalid = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid listen address \"", listen_address, "\": ", why));
  };
  std::string host;
  std::string port_text;
  if (!listen_address.empty() && listen_address[0] == '[') {
    size_t close = listen_address.find("]:");
    if (close == std::string::npos) return invalid("want [ipv6]:port");
    host = listen_address.substr(1, close - 1);
    port_text = listen_address.substr(close + 2);
  } else {
    size_t colon = listen_address.rfind(':');
    if (colon == std::string::npos) return invalid("want host:port");
    host = listen_address.substr(0, colon);
    port_text = listen_address.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return invalid("put an IPv6 address in brackets");
    }
  }
  int port;
  if (host.empty()) return invalid("empty host");
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535) {
    return invalid("port must be 0..65535");
  }

  bool owns_base = base == nullptr;
  if (owns_base) {
    // Lets Stop() wake the loop from another thread. Must precede
    // event_base_new().
    static std::once_flag threads_once;
    std::call_once(threads_once, [] { evthread_use_pthreads(); });
    base = event_base_new();
    if (base == nullptr) {
      return absl::InternalError(absl::StrCat(
          "admin server on ", listen_address, ": event_base_new failed"));
    }
  }
  std::unique_ptr<AdminHttpServer> server(
      new AdminHttpServer(listen_address, host, port, base, owns_base));
  server->http_ = evhttp_new(base);
  if (server->http_ == nullptr) {
    return absl::InternalError(absl::StrCat("admin server on ", listen_address,
                                            ": evhttp_new failed"));
  }
  evhttp_set_gencb(server->http_, &AdminHttpServer::OnRequest, server.get());
  evhttp_set_max_body_size(server->http_, kMaxBodyBytes);
  evhttp_set_max_headers_size(server->http_, kMaxHeaderBytes);
  evhttp_set_timeout(server->http_, kRequestTimeoutSeconds);
  if (owns_base) {
    server->stop_event_ = event_new(base, -1, 0, &OnStopEvent, base);
  }
  return server;
}

AdminHttpServer::AdminHttpServer(std::string listen_address, std::string host,
                                 int port, event_base* base, bool owns_base)
    : listen_address_(std::move(listen_address)),
      host_(std::move(host)),
      requested_port_(port),
      base_(base),
      owns_base_(owns_base) {}

AdminHttpServer::~AdminHttpServer() {
  Stop();
  if (stop_event_ != nullptr) event_free(stop_event_);
  if (owns_base_) event_base_free(base_);
}

void AdminHttpServer::Handle(const std::string& path, HttpHandler handler) {
  Handle(path, {}, std::move(handler));
}

void AdminHttpServer::Handle(const std::string& path,
                             std::vector<std::string> methods,
                             HttpHandler handler) {
  absl::MutexLock lock(&mu_);
  routes_[path] = Route{std::move(methods), std::move(handler)};
}

absl::Status AdminHttpServer::Start() {
  if (started_ || stopped_) {
    return absl::FailedPreconditionError(absl::StrCat(
        "admin server on ", listen_address_, " was already started"));
  }
  auto fail = [&](const std::string& why) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", listen_address_, ": ", why));
  };
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  std::string port_text = std::to_string(requested_port_);
  int gai = getaddrinfo(host_.c_str(), port_text.c_str(), &hints, &found);
  if (gai != 0) return fail(gai_strerror(gai));
  std::unique_ptr<addrinfo, void (*)(addrinfo*)> addresses(found,
                                                           &freeaddrinfo);

  int fd = socket(found->ai_family,
                  found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(ErrnoString(errno));
  // SO_REUSEADDR only (not SO_REUSEPORT): restarts are not blocked by
  // TIME_WAIT, but a port someone listens on is still refused.
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 ||
      listen(fd, 128) != 0) {
    int err = errno;
    close(fd);
    return fail(ErrnoString(err));
  }
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    int err = errno;
    close(fd);
    return fail(ErrnoString(err));
  }
  port_ = bound.ss_family == AF_INET6
              ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
              : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  evhttp_bound_socket* bound_socket =
      evhttp_accept_socket_with_handle(http_, fd);
  if (bound_socket == nullptr) {
    close(fd);
    port_ = 0;
    return fail("evhttp_accept_socket_with_handle failed");
  }
  // Out of descriptors, a scraper knocking must not make the loop spin.
  accept_pause_ = std::make_unique<ListenerPause>(
      base_, evhttp_bound_socket_get_listener(bound_socket),
      [address = host_.find(':') == std::string::npos
                     ? absl::StrCat(host_, ":", port_)
                     : absl::StrCat("[", host_, "]:", port_)](
          const AcceptFailure& failure, bool report) {
        if (report) LogAcceptFailure("admin", address, failure);
      });
  started_ = true;
  if (owns_base_) {
    event_base* base = base_;
    thread_ =
        std::thread([base] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
  }
  return absl::OkStatus();
}

void AdminHttpServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    // event_active, unlike event_base_loopbreak, is not lost if the loop
    // has not started yet.
    event_active(stop_event_, EV_READ, 0);
    thread_.join();
  }
  accept_pause_.reset();  // before its listener goes with http_
  if (http_ != nullptr) {
    evhttp_free(http_);  // Closes the listener and open connections.
    http_ = nullptr;
  }
}

void AdminHttpServer::OnRequest(evhttp_request* req, void* arg) {
  static_cast<AdminHttpServer*>(arg)->Serve(req);
}

void AdminHttpServer::Serve(evhttp_request* req) {
  HttpRequest request;
  request.method = MethodName(evhttp_request_get_command(req));

  const evhttp_uri* uri = evhttp_request_get_evhttp_uri(req);
  const char* raw_path = uri != nullptr ? evhttp_uri_get_path(uri) : nullptr;
  if (raw_path == nullptr || raw_path[0] == '\0') raw_path = "/";
  size_t path_len = 0;
  char* path = evhttp_uridecode(raw_path, /*decode_plus=*/0, &path_len);
  if (path == nullptr) {
    Reply(req, Text(HTTP_BADREQUEST, "bad path\n"));
    return;
  }
  request.path.assign(path, path_len);
  free(path);

  const char* query = uri != nullptr ? evhttp_uri_get_query(uri) : nullptr;
  if (query != nullptr) {
    evkeyvalq params;
    if (evhttp_parse_query_str(query, &params) != 0) {
      Reply(req, Text(HTTP_BADREQUEST, "bad query string\n"));
      return;
    }
    for (evkeyval* kv = params.tqh_first; kv != nullptr;
         kv = kv->next.tqe_next) {
      request.query[kv->key] = kv->value;
    }
    evhttp_clear_headers(&params);
  }

  evbuffer* input = evhttp_request_get_input_buffer(req);
  request.body.resize(evbuffer_get_length(input));
  if (!request.body.empty()) {
    evbuffer_copyout(input, &request.body[0], request.body.size());
  }

  Route route;
  bool found = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = routes_.find(request.path);
    if (it != routes_.end()) {
      route = it->second;
      found = true;
    }
  }
  if (!found) {
    if (request.path == "/") {
      Reply(req, Text(HTTP_OK, Index()));
    } else {
      Reply(req, Text(HTTP_NOTFOUND,
                      absl::StrCat("not found: ", request.path, "\n")));
    }
    return;
  }
  if (!route.methods.empty()) {
    auto allows = [&](const std::string& m) {
      return std::find(route.methods.begin(), route.methods.end(), m) !=
             route.methods.end();
    };
    if (!allows(request.method) &&
        !(request.method == "HEAD" && allows("GET"))) {
      std::vector<std::string> allowed = route.methods;
      if (allows("GET") && !allows("HEAD")) allowed.push_back("HEAD");
      Reply(req,
            Text(HTTP_BADMETHOD,
                 absl::StrCat("method ", request.method, " not allowed\n")),
            absl::StrJoin(allowed, ", "));
      return;
    }
  }
  Reply(req, route.handler(request));
}

std::string AdminHttpServer::Index() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  for (const auto& [path, route] : routes_) absl::StrAppend(&out, path, "\n");
  return out;
}

void RegisterStandardHandlers(AdminHttpServer* server,
                              MetricsRegistry* registry,
                              std::function<bool()> ready) {
  server->Handle("/metrics", {"GET"}, [registry](const HttpRequest&) {
    HttpResponse r;
    r.content_type = "text/plain; version=0.0.4; charset=utf-8";
    r.body = registry->RenderPrometheusText();
    return r;
  });
  server->Handle("/healthz", {"GET"},
                 [](const HttpRequest&) { return Text(HTTP_OK, "ok"); });
  server->Handle("/readyz", {"GET"},
                 [ready = std::move(ready)](const HttpRequest&) {
                   return ready() ? Text(HTTP_OK, "ready")
                                  : Text(HTTP_SERVUNAVAIL, "not ready");
                 });
}

}  // namespace meshguard::util
