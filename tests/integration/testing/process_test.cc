#include "tests/integration/testing/process.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace meshguard::testing {
namespace {

using ::testing::HasSubstr;

ProcessOptions Shell(const std::string& script) {
  ProcessOptions options;
  options.binary = "/bin/sh";
  options.args = {"-c", script};
  return options;
}

bool PidAlive(pid_t pid) { return kill(pid, 0) == 0 || errno != ESRCH; }

TEST(RunTest, CapturesOutputAndExitCode) {
  ProcessOptions options =
      Shell("echo out; echo err >&2; echo \"$FOO\"; exit 3");
  options.env["FOO"] = "bar baz";
  absl::StatusOr<RunResult> result = RunToCompletion(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->status.exited);
  EXPECT_EQ(result->status.code, 3);
  EXPECT_FALSE(result->status.Success());
  EXPECT_EQ(result->out, "out\nbar baz\n");
  EXPECT_EQ(result->err, "err\n");
  EXPECT_FALSE(result->timed_out);
}

TEST(RunTest, FeedsStdinAndCleansEnvironment) {
  ProcessOptions options = Shell("cat; echo \"[$HOME]\"");
  options.stdin_data = "hello\n";
  options.inherit_env = false;
  absl::StatusOr<RunResult> result = RunToCompletion(options);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->out, "hello\n[]\n");
}

TEST(RunTest, KillsOnTimeout) {
  absl::StatusOr<RunResult> result =
      RunToCompletion(Shell("sleep 30"), absl::Milliseconds(200));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->timed_out);
  EXPECT_EQ(result->status.signal, SIGKILL);
}

TEST(ProcessTest, MissingBinaryIsAnError) {
  ProcessOptions options;
  options.binary = "/nonexistent/meshguard";
  absl::StatusOr<std::unique_ptr<Process>> p = Process::Start(options);
  EXPECT_FALSE(p.ok());
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("/nonexistent"));
}

TEST(ProcessTest, StopSendsSigtermFirst) {
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Start(Shell("trap 'echo term; exit 7' TERM; echo up; "
                           "while true; do sleep 0.05; done"));
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_TRUE(
      WaitFor([&] { return (*p)->ReadStdout() == "up\n"; }, absl::Seconds(5)));
  ExitStatus status = (*p)->Stop(absl::Seconds(5));
  EXPECT_TRUE(status.exited) << status.ToString();
  EXPECT_EQ(status.code, 7);
  EXPECT_EQ((*p)->ReadStdout(), "up\nterm\n");
}

TEST(ProcessTest, StopEscalatesToSigkillAndTakesTheGroup) {
  // The shell ignores SIGTERM and so does its `sleep` child.
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Start(Shell("trap '' TERM; sleep 30 & echo $!; wait"));
  ASSERT_TRUE(p.ok()) << p.status();
  pid_t grandchild = 0;
  ASSERT_TRUE(WaitFor(
      [&] {
        std::string out = (*p)->ReadStdout();
        return !out.empty() && out.back() == '\n' &&
               absl::SimpleAtoi(out.substr(0, out.size() - 1), &grandchild);
      },
      absl::Seconds(5)));
  const absl::Time start = absl::Now();
  ExitStatus status = (*p)->Stop(absl::Milliseconds(300));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  EXPECT_FALSE(status.exited);
  EXPECT_EQ(status.signal, SIGKILL);
  EXPECT_TRUE(WaitFor([&] { return !PidAlive(grandchild); }, absl::Seconds(5)))
      << "grandchild " << grandchild << " survived";
}

TEST(ProcessTest, DestructorKillsTheChild) {
  pid_t pid = 0;
  {
    absl::StatusOr<std::unique_ptr<Process>> p =
        Process::Start(Shell("exec sleep 30"));
    ASSERT_TRUE(p.ok()) << p.status();
    pid = (*p)->pid();
    EXPECT_TRUE((*p)->Running());
  }
  EXPECT_FALSE(PidAlive(pid));  // killed and reaped, not a zombie
}

TEST(ProcessTest, WaitReportsExitAndTimeout) {
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Start(Shell("sleep 0.2; exit 4"));
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ((*p)->Wait(absl::Milliseconds(10)).status().code(),
            absl::StatusCode::kDeadlineExceeded);
  absl::StatusOr<ExitStatus> status = (*p)->Wait(absl::Seconds(5));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(status->code, 4);
  EXPECT_FALSE((*p)->Running());
}

TEST(PortTest, PickFreePortGivesDistinctBindablePorts) {
  absl::StatusOr<int> a = PickFreePort();
  absl::StatusOr<int> b = PickFreePort();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_GT(*a, 0);
}

// A one-shot HTTP server on a thread: accepts `count` connections and answers
// each with `reply` after reading the request head.
class TinyHttpServer {
 public:
  TinyHttpServer(std::vector<std::string> replies) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    listen(fd_, 8);
    thread_ = std::thread([this, replies] {
      for (const std::string& reply : replies) {
        int c = accept(fd_, nullptr, nullptr);
        if (c < 0) return;
        std::string head;
        char ch;
        while (head.find("\r\n\r\n") == std::string::npos &&
               read(c, &ch, 1) == 1) {
          head.push_back(ch);
        }
        requests_.push_back(head);
        // Dribble the reply to exercise partial reads.
        size_t half = reply.size() / 2;
        send(c, reply.data(), half, MSG_NOSIGNAL);
        absl::SleepFor(absl::Milliseconds(20));
        send(c, reply.data() + half, reply.size() - half, MSG_NOSIGNAL);
        close(c);
      }
    });
  }
  ~TinyHttpServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  const std::vector<std::string>& requests() const { return requests_; }

 private:
  int fd_;
  int port_;
  std::thread thread_;
  std::vector<std::string> requests_;
};

TEST(HttpTest, GetHandlesLengthChunkedAndEof) {
  TinyHttpServer server({
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhelloTRAILING",
      "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n"
      "4\r\nnot \r\n5\r\nready\r\n0\r\n\r\n",
      "HTTP/1.0 200 OK\r\n\r\nto eof",
  });
  absl::StatusOr<HttpResponse> r = HttpGet("127.0.0.1", server.port(), "/a");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello");
  EXPECT_EQ(r->headers["x-a"], "b");
  r = HttpGet("127.0.0.1", server.port(), "/b");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(r->body, "not ready");
  r = HttpGet("127.0.0.1", server.port(), "/c");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "to eof");
  EXPECT_THAT(server.requests()[0], HasSubstr("GET /a HTTP/1.1\r\n"));
}

TEST(HttpTest, WaitForHttpOkRetriesUntil200) {
  TinyHttpServer server({
      "HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 503 No\r\nContent-Length: 0\r\n\r\n",
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
  });
  EXPECT_TRUE(
      WaitForTcpPort("127.0.0.1", server.port(), absl::Seconds(5)).ok());
  // The TCP probe used the first reply; WaitForHttpOk sees 503, then 200.
  EXPECT_TRUE(
      WaitForHttpOk("127.0.0.1", server.port(), "/readyz", absl::Seconds(5))
          .ok());
}

TEST(HttpTest, WaitFailsFastWhenTheWatchedProcessDies) {
  absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok());
  absl::StatusOr<std::unique_ptr<Process>> p =
      Process::Start(Shell("echo cannot bind >&2; exit 1"));
  ASSERT_TRUE(p.ok()) << p.status();
  const absl::Time start = absl::Now();
  absl::Status s =
      WaitForHttpOk("127.0.0.1", *port, "/readyz", absl::Seconds(20), p->get());
  EXPECT_LT(absl::Now() - start, absl::Seconds(5));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("cannot bind"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("exit 1"));
}

TEST(HttpTest, ConnectRefusedIsUnavailable) {
  absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok());
  absl::StatusOr<HttpResponse> r = HttpGet("127.0.0.1", *port, "/");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
}

}  // namespace
}  // namespace meshguard::testing
