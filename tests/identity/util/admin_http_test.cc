#include "identity/util/admin_http.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "identity/util/metrics.h"

namespace meshguard::util {
namespace {

using ::testing::HasSubstr;

struct Fetched {
  int status = 0;  // 0: could not connect or no response.
  std::map<std::string, std::string> headers;  // Lowercase names.
  std::string body;
};

// A tiny blocking HTTP/1.1 client: one request, "Connection: close", read
// to EOF.
Fetched Fetch(int port, const std::string& method, const std::string& target,
              const std::string& body = "") {
  Fetched result;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  timeval timeout{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return result;
  }
  std::string request =
      absl::StrCat(method, " ", target,
                   " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n");
  if (!body.empty())
    absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n");
  absl::StrAppend(&request, "\r\n", body);
  send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, n);
  close(fd);

  size_t end = response.find("\r\n\r\n");
  if (end == std::string::npos) return result;
  std::vector<std::string> lines =
      absl::StrSplit(response.substr(0, end), "\r\n");
  std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
  if (status_line.size() < 2 ||
      !absl::SimpleAtoi(status_line[1], &result.status)) {
    return result;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    size_t colon = lines[i].find(':');
    if (colon == std::string::npos) continue;
    result.headers[absl::AsciiStrToLower(lines[i].substr(0, colon))] =
        std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
  }
  result.body = response.substr(end + 4);
  return result;
}

std::unique_ptr<AdminHttpServer> MustCreate(const std::string& address,
                                            event_base* base = nullptr) {
  absl::StatusOr<std::unique_ptr<AdminHttpServer>> server =
      AdminHttpServer::Create(address, base);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

TEST(AdminHttpTest, StandardHandlers) {
  MetricsRegistry registry;
  registry.AddCounter("meshguard_test_total", "A test counter.")
      ->WithLabels({})
      ->Inc(7);
  std::atomic<bool> ready{false};
  std::unique_ptr<AdminHttpServer> server = MustCreate("127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  RegisterStandardHandlers(server.get(), &registry,
                           [&ready] { return ready.load(); });
  ASSERT_TRUE(server->Start().ok());
  int port = server->port();
  ASSERT_GT(port, 0);

  Fetched metrics = Fetch(port, "GET", "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_THAT(metrics.headers["content-type"],
              HasSubstr("text/plain; version=0.0.4"));
  EXPECT_EQ(metrics.body, registry.RenderPrometheusText());
  EXPECT_THAT(metrics.body, HasSubstr("meshguard_test_total 7\n"));

  Fetched healthz = Fetch(port, "GET", "/healthz");
  EXPECT_EQ(healthz.status, 200);
  EXPECT_EQ(healthz.body, "ok");

  Fetched readyz = Fetch(port, "GET", "/readyz");
  EXPECT_EQ(readyz.status, 503);
  EXPECT_EQ(readyz.body, "not ready");
  ready = true;
  readyz = Fetch(port, "GET", "/readyz");
  EXPECT_EQ(readyz.status, 200);
  EXPECT_EQ(readyz.body, "ready");
  ready = false;
  EXPECT_EQ(Fetch(port, "GET", "/readyz").status, 503);

  Fetched missing = Fetch(port, "GET", "/nope");
  EXPECT_EQ(missing.status, 404);

  Fetched index = Fetch(port, "GET", "/");
  EXPECT_EQ(index.status, 200);
  EXPECT_EQ(index.body, "/healthz\n/metrics\n/readyz\n");

  Fetched post = Fetch(port, "POST", "/metrics", "x");
  EXPECT_EQ(post.status, 405);
  EXPECT_EQ(post.headers["allow"], "GET, HEAD");

  Fetched head = Fetch(port, "HEAD", "/healthz");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");
}

TEST(AdminHttpTest, RequestIsDecoded) {
  std::unique_ptr<AdminHttpServer> server = MustCreate("127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  HttpRequest seen;
  server->Handle("/some path", [&seen](const HttpRequest& r) {
    seen = r;
    HttpResponse response;
    response.status = 201;
    response.content_type = "application/json";
    response.body = "{\"ok\":true}";
    return response;
  });
  ASSERT_TRUE(server->Start().ok());
  Fetched f = Fetch(server->port(), "POST",
                    "/some%20path?name=a%20b&plus=1+2&empty=", "payload");
  EXPECT_EQ(f.status, 201);
  EXPECT_EQ(f.headers["content-type"], "application/json");
  EXPECT_EQ(f.body, "{\"ok\":true}");
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.path, "/some path");
  EXPECT_EQ(seen.body, "payload");
  EXPECT_EQ(seen.query["name"], "a b");
  EXPECT_EQ(seen.query["plus"], "1 2");
  EXPECT_EQ(seen.query.count("empty"), 1u);
}

TEST(AdminHttpTest, BusyPortIsRefusedNamingTheAddress) {
  std::unique_ptr<AdminHttpServer> first = MustCreate("127.0.0.1:0");
  ASSERT_NE(first, nullptr);
  ASSERT_TRUE(first->Start().ok());
  std::string address = absl::StrCat("127.0.0.1:", first->port());
  std::unique_ptr<AdminHttpServer> second = MustCreate(address);
  ASSERT_NE(second, nullptr);
  absl::Status s = second->Start();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(absl::StrCat("cannot listen on ", address,
                                     ": Address already in use")));
  EXPECT_EQ(second->port(), 0);
  second->Stop();
  // The first one still serves.
  first->Handle("/x", [](const HttpRequest&) { return HttpResponse{}; });
  EXPECT_EQ(Fetch(first->port(), "GET", "/x").status, 200);
}

TEST(AdminHttpTest, InvalidAddressesAreNamed) {
  for (const char* address :
       {"nonsense", "127.0.0.1:99999", ":80", "127.0.0.1:http", "::1:80"}) {
    absl::StatusOr<std::unique_ptr<AdminHttpServer>> server =
        AdminHttpServer::Create(address, nullptr);
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(server.status().message()), HasSubstr(address));
  }
  EXPECT_TRUE(AdminHttpServer::Create("[::1]:0", nullptr).ok());
}

TEST(AdminHttpTest, StopTwiceAndStopsServing) {
  std::unique_ptr<AdminHttpServer> server = MustCreate("127.0.0.1:0");
  ASSERT_NE(server, nullptr);
  RegisterStandardHandlers(server.get(), nullptr, [] { return true; });
  ASSERT_TRUE(server->Start().ok());
  int port = server->port();
  EXPECT_EQ(Fetch(port, "GET", "/healthz").status, 200);
  server->Stop();
  server->Stop();
  EXPECT_EQ(Fetch(port, "GET", "/healthz").status, 0);  // Refused.
  EXPECT_FALSE(server->Start().ok());
}

TEST(AdminHttpTest, StopRightAfterStart) {
  for (int i = 0; i < 20; ++i) {
    std::unique_ptr<AdminHttpServer> server = MustCreate("127.0.0.1:0");
    ASSERT_NE(server, nullptr);
    ASSERT_TRUE(server->Start().ok());
    server->Stop();  // Must not hang if the loop has not started yet.
  }
  // Never started: the destructor alone.
  MustCreate("127.0.0.1:0");
}

TEST(AdminHttpTest, ExternalEventBaseRunsNoThread) {
  evthread_use_pthreads();
  event_base* base = event_base_new();
  ASSERT_NE(base, nullptr);
  {
    std::unique_ptr<AdminHttpServer> server = MustCreate("127.0.0.1:0", base);
    ASSERT_NE(server, nullptr);
    std::thread::id handler_thread;
    server->Handle("/who", [&handler_thread](const HttpRequest&) {
      handler_thread = std::this_thread::get_id();
      return HttpResponse{};
    });
    ASSERT_TRUE(server->Start().ok());
    std::thread loop(
        [base] { event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY); });
    EXPECT_EQ(Fetch(server->port(), "GET", "/who").status, 200);
    EXPECT_EQ(handler_thread, loop.get_id());
    event_base_loopbreak(base);  // The loop is running: not lost.
    loop.join();
    server->Stop();  // Loop not running: allowed from here.
  }
  event_base_free(base);
}

}  // namespace
}  // namespace meshguard::util
