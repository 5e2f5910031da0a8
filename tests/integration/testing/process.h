// Test-only helpers for integration tests that start real binaries: spawn a
// child process with arguments and environment, capture its stdout/stderr to
// files, wait for it to listen, talk plain HTTP to it, and stop it.
//
// Every Process kills and reaps its child in its destructor, so a test that
// fails half-way (ASSERT, exception, early return) leaves nothing running.
// Children also get PR_SET_PDEATHSIG(SIGKILL): if the test binary itself dies
// (crash, Bazel timeout), the kernel kills them. That signal fires when the
// *thread* that forked exits, so start long-lived children from the test's
// main thread (or a thread that outlives them).
//
// Each child runs in its own process group; Signal/Stop/Kill address the
// whole group, so grandchildren a binary spawns go with it.
//
//   ProcessOptions options;
//   options.binary = RunfilePath("identity/ca/meshguard-ca");
//   options.args = {"serve", "--data_dir", dir};
//   absl::StatusOr<std::unique_ptr<Process>> ca = Process::Start(options);
//   ASSERT_TRUE(ca.ok()) << ca.status();
//   ASSERT_TRUE(WaitForHttpOk("127.0.0.1", port, "/readyz", absl::Seconds(10),
//                             ca->get()).ok());
//   ...
//   ExitStatus status = (*ca)->Stop();  // SIGTERM, then SIGKILL after 5 s
//
// Thread-compatibility: a Process is used from one thread at a time. The free
// functions are thread-safe. Nothing here uses gtest, so non-test binaries
// (benchmarks, demos) may link it too.
#ifndef MESHGUARD_TESTS_INTEGRATION_TESTING_PROCESS_H_
#define MESHGUARD_TESTS_INTEGRATION_TESTING_PROCESS_H_

#include <sys/types.h>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshguard::testing {

// $TEST_TMPDIR (Bazel gives each test its own), else "/tmp".
std::string TestTmpDir();

// A fresh, empty directory under TestTmpDir() whose name starts with
// `prefix` (mkdtemp). Mode 0700.
absl::StatusOr<std::string> MakeTempDir(const std::string& prefix);

// The same under /tmp, for directories that will hold Unix sockets: a
// socket path must fit in 107 bytes, and Bazel's TEST_TMPDIR is often longer
// than that alone. The caller removes it (RemoveTree) when done.
absl::StatusOr<std::string> MakeShortTempDir(const std::string& prefix);

// rm -rf `path` (no symlinks followed). Best effort.
void RemoveTree(const std::string& path);

// The absolute path of a data dependency, given its workspace-relative path
// ("identity/ca/meshguard-ca"): $TEST_SRCDIR/meshguard/<path>. Falls back to
// $RUNFILES_DIR, then to "<argv0>.runfiles" resolved from /proc/self/exe.
std::string RunfilePath(const std::string& workspace_relative_path);

// Writes `contents` to `path` (truncating) with `mode`.
absl::Status WriteFile(const std::string& path, const std::string& contents,
                       int mode = 0644);
// The whole file; NotFound naming the path if it is missing.
absl::StatusOr<std::string> ReadFile(const std::string& path);

// The lines of `output` (JSON log lines, as util::LogLine writes them) whose
// "event" is `event`, in order.
std::vector<std::string> LogLinesWithEvent(absl::string_view output,
                                           absl::string_view event);

// A loopback TCP port that was free a moment ago: binds 127.0.0.1:0, reads
// the port and closes. Another process may take it before the caller binds;
// ports come from the kernel's ephemeral range, and each call in this process
// returns a different one, which keeps that window small in practice.
absl::StatusOr<int> PickFreePort();

// How a child ended.
struct ExitStatus {
  bool exited = false;  // exit() / return from main
  int code = -1;        // exit code when `exited`
  int signal = 0;       // terminating signal otherwise
  // "exit 0", "exit 1", "signal 9 (Killed)".
  std::string ToString() const;
  bool Success() const { return exited && code == 0; }
};

struct ProcessOptions {
  // Absolute path of the executable (no PATH search).
  std::string binary;
  // argv[1..]; argv[0] is the binary's path.
  std::vector<std::string> args;
  // Variables added to (or replacing those of) the environment.
  std::map<std::string, std::string> env;
  // Start from the test's environment (true) or from `env` alone (false).
  bool inherit_env = true;
  // Working directory; empty: the test's.
  std::string working_dir;
  // Prefix of the stdout/stderr files in TestTmpDir(); default: the binary's
  // base name. A sequence number keeps files of several runs apart.
  std::string log_name;
  // The child's stdin (served from a file in TestTmpDir()). Without it,
  // stdin is /dev/null.
  std::optional<std::string> stdin_data;
};

class Process final {
 public:
  // Forks and execs. Fails (and leaves no child) if the binary cannot be
  // executed; the error names the binary and errno.
  static absl::StatusOr<std::unique_ptr<Process>> Start(
      const ProcessOptions& options);

  // Kills (SIGKILL) and reaps the child if it still runs.
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::string& binary() const { return binary_; }

  // True until the child has exited (reaps it if it has).
  bool Running();
  // The exit status once the child has been reaped; nullopt while running.
  std::optional<ExitStatus> exit_status() const { return exit_status_; }

  // Waits for the child to exit on its own. DeadlineExceeded (the child
  // keeps running) when `timeout` passes first.
  absl::StatusOr<ExitStatus> Wait(absl::Duration timeout);

  // Sends `signal` to the child's process group. No-op once reaped.
  void Signal(int signal);

  // Graceful stop: SIGTERM, wait up to `grace`, then SIGKILL. Returns how it
  // ended (signal 9 if it had to be killed).
  ExitStatus Stop(absl::Duration grace = absl::Seconds(5));

  // SIGKILL now, and reap. For crash tests.
  ExitStatus Kill();

  // Captured output so far (the files are flushed by the child as it writes;
  // buffered output of a running child may be missing).
  const std::string& stdout_path() const { return stdout_path_; }
  const std::string& stderr_path() const { return stderr_path_; }
  std::string ReadStdout() const;
  std::string ReadStderr() const;
  // "<binary> stdout:\n...\nstderr:\n..." trimmed to the last `max_bytes` of
  // each, for failure messages.
  std::string DescribeOutput(size_t max_bytes = 4000) const;

 private:
  Process(pid_t pid, std::string binary, std::string stdout_path,
          std::string stderr_path)
      : pid_(pid),
        binary_(std::move(binary)),
        stdout_path_(std::move(stdout_path)),
        stderr_path_(std::move(stderr_path)) {}

  // waitpid; true when reaped (exit_status_ set).
  bool Reap(bool block);

  const pid_t pid_;
  const std::string binary_;
  const std::string stdout_path_;
  const std::string stderr_path_;
  std::optional<ExitStatus> exit_status_;
};

// Runs a command to completion: its exit status and everything it printed.
struct RunResult {
  ExitStatus status;
  std::string out;
  std::string err;
  bool timed_out = false;  // killed after `timeout`
  // "exit 1\nstdout: ...\nstderr: ..." for failure messages.
  std::string ToString() const;
};
absl::StatusOr<RunResult> RunToCompletion(
    const ProcessOptions& options, absl::Duration timeout = absl::Seconds(30));

// Waits until host:port accepts a TCP connection. If `watch` is given and the
// child exits first, fails at once with its status and output (so a server
// that failed to start does not cost the whole timeout).
absl::Status WaitForTcpPort(const std::string& host, int port,
                            absl::Duration timeout, Process* watch = nullptr);

// A blocking TCP connection to host:port (an IP literal or "localhost"),
// made within `timeout`; reads and writes on it then time out after
// `timeout` too (SO_RCVTIMEO/SO_SNDTIMEO), so a probe never hangs. The
// caller closes the descriptor.
absl::StatusOr<int> ConnectTcp(const std::string& host, int port,
                               absl::Duration timeout);

struct HttpResponse {
  int status = 0;
  // Header names lowercased; a repeated header keeps the last value.
  std::map<std::string, std::string> headers;
  std::string body;  // de-chunked
};

// One blocking HTTP/1.1 GET (Connection: close) over a plain TCP socket;
// handles Content-Length, chunked and read-to-EOF bodies. `timeout` bounds
// the whole exchange. Errors are Unavailable (connect) or DeadlineExceeded.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path,
                                     absl::Duration timeout = absl::Seconds(5));

// The sum of every sample of the Prometheus metric `name` (exactly that
// name) in `text` whose label set contains each of `label_parts` (e.g.
// {"side=\"inbound\""}); 0 when none does.
double SumMetric(const std::string& text, const std::string& name,
                 const std::vector<std::string>& label_parts = {});

// Polls `path` until it answers 200. `watch` as in WaitForTcpPort. The error
// says what the last attempt got.
absl::Status WaitForHttpOk(const std::string& host, int port,
                           const std::string& path, absl::Duration timeout,
                           Process* watch = nullptr);

// Polls `condition` every `interval` until it is true or `timeout` passes.
bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout,
             absl::Duration interval = absl::Milliseconds(20));

}  // namespace meshguard::testing

#endif  // MESHGUARD_TESTS_INTEGRATION_TESTING_PROCESS_H_
