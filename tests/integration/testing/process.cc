#include "tests/integration/testing/process.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"

extern char** environ;

namespace meshguard::testing {
namespace {

std::atomic<int> g_sequence{0};

std::string ErrnoString(int err) { return std::string(strerror(err)); }

std::string BaseName(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

std::string Tail(const std::string& text, size_t max_bytes) {
  if (text.size() <= max_bytes) return text;
  return absl::StrCat("[...", text.size() - max_bytes, " bytes cut...]",
                      text.substr(text.size() - max_bytes));
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { Reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void Reset(int fd = -1) {
    if (fd_ >= 0) close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

absl::Time Deadline(absl::Duration timeout) { return absl::Now() + timeout; }

int PollTimeoutMs(absl::Time deadline) {
  absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

// Connects a TCP socket to host (an IPv4 or IPv6 literal) within `deadline`.
absl::StatusOr<int> Connect(const std::string& host, int port,
                            absl::Time deadline) {
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  int family = AF_INET;
  std::string literal = host == "localhost" ? "127.0.0.1" : host;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET, literal.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(static_cast<uint16_t>(port));
    addr_len = sizeof(*v4);
  } else if (inet_pton(AF_INET6, literal.c_str(), &v6->sin6_addr) == 1) {
    family = AF_INET6;
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(static_cast<uint16_t>(port));
    addr_len = sizeof(*v6);
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("host \"", host, "\" is not an IP literal"));
  }
  Fd fd(socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) {
    return absl::InternalError(absl::StrCat("socket: ", ErrnoString(errno)));
  }
  const std::string where = absl::StrCat(host, ":", port);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    if (errno != EINPROGRESS) {
      return absl::UnavailableError(
          absl::StrCat("connect to ", where, ": ", ErrnoString(errno)));
    }
    pollfd p{fd.get(), POLLOUT, 0};
    int n = poll(&p, 1, PollTimeoutMs(deadline));
    if (n == 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("connect to ", where, ": timed out"));
    }
    int err = 0;
    socklen_t len = sizeof(err);
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (n < 0 || err != 0) {
      return absl::UnavailableError(absl::StrCat(
          "connect to ", where, ": ", ErrnoString(n < 0 ? errno : err)));
    }
  }
  return fd.Release();
}

absl::Status CheckWatch(Process* watch) {
  if (watch != nullptr && !watch->Running()) {
    return absl::FailedPreconditionError(absl::StrCat(
        watch->binary(), " exited (", watch->exit_status()->ToString(),
        ") before it was ready\n", watch->DescribeOutput()));
  }
  return absl::OkStatus();
}

// Decodes a chunked body; nullopt if it is incomplete or malformed.
std::optional<std::string> Dechunk(absl::string_view in) {
  std::string out;
  while (true) {
    size_t eol = in.find("\r\n");
    if (eol == absl::string_view::npos) return std::nullopt;
    absl::string_view size_text = in.substr(0, eol);
    size_t semi = size_text.find(';');
    if (semi != absl::string_view::npos) size_text = size_text.substr(0, semi);
    uint64_t size = 0;
    if (!absl::SimpleHexAtoi(absl::StripAsciiWhitespace(size_text), &size)) {
      return std::nullopt;
    }
    in.remove_prefix(eol + 2);
    if (size == 0) return out;
    if (in.size() < size + 2) return std::nullopt;
    out.append(in.data(), size);
    in.remove_prefix(size + 2);
  }
}

}  // namespace

std::string TestTmpDir() {
  const char* dir = getenv("TEST_TMPDIR");
  return dir != nullptr && dir[0] != '\0' ? dir : "/tmp";
}

absl::StatusOr<std::string> MakeTempDir(const std::string& prefix) {
  std::string pattern = absl::StrCat(TestTmpDir(), "/", prefix, ".XXXXXX");
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", pattern, ": ", ErrnoString(errno)));
  }
  return std::string(buffer.data());
}

absl::StatusOr<std::string> MakeShortTempDir(const std::string& prefix) {
  std::string pattern = absl::StrCat("/tmp/", prefix, ".XXXXXX");
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (mkdtemp(buffer.data()) == nullptr) {
    return absl::InternalError(
        absl::StrCat("mkdtemp ", pattern, ": ", ErrnoString(errno)));
  }
  return std::string(buffer.data());
}

void RemoveTree(const std::string& path) {
  if (path.empty() || path == "/") return;
  nftw(
      path.c_str(),
      [](const char* file, const struct stat*, int, struct FTW*) {
        remove(file);
        return 0;
      },
      16, FTW_DEPTH | FTW_PHYS);
}

std::string RunfilePath(const std::string& workspace_relative_path) {
  for (const char* var : {"TEST_SRCDIR", "RUNFILES_DIR"}) {
    const char* root = getenv(var);
    if (root != nullptr && root[0] != '\0') {
      return absl::StrCat(root, "/meshguard/", workspace_relative_path);
    }
  }
  char exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  std::string self = n > 0 ? std::string(exe, static_cast<size_t>(n)) : "";
  return absl::StrCat(self, ".runfiles/meshguard/", workspace_relative_path);
}

absl::Status WriteFile(const std::string& path, const std::string& contents,
                       int mode) {
  Fd fd(open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (fd.get() < 0) {
    return absl::InternalError(
        absl::StrCat("open ", path, ": ", ErrnoString(errno)));
  }
  size_t done = 0;
  while (done < contents.size()) {
    ssize_t n = write(fd.get(), contents.data() + done, contents.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      return absl::InternalError(
          absl::StrCat("write ", path, ": ", ErrnoString(errno)));
    }
    done += static_cast<size_t>(n);
  }
  fchmod(fd.get(), static_cast<mode_t>(mode));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

absl::StatusOr<int> PickFreePort() {
  // Ports handed out here stay reserved for this process, so that two
  // servers of one test never get the same one.
  static absl::Mutex mu(absl::kConstInit);
  static std::set<int>* given = new std::set<int>();
  for (int attempt = 0; attempt < 100; ++attempt) {
    Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      return absl::InternalError(absl::StrCat("socket: ", ErrnoString(errno)));
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      return absl::InternalError(
          absl::StrCat("bind 127.0.0.1:0: ", ErrnoString(errno)));
    }
    socklen_t len = sizeof(addr);
    if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return absl::InternalError(
          absl::StrCat("getsockname: ", ErrnoString(errno)));
    }
    int port = ntohs(addr.sin_port);
    absl::MutexLock lock(&mu);
    if (given->insert(port).second) return port;
  }
  return absl::ResourceExhaustedError("no free loopback port found");
}

std::string ExitStatus::ToString() const {
  if (exited) return absl::StrCat("exit ", code);
  if (signal != 0) {
    return absl::StrCat("signal ", signal, " (", strsignal(signal), ")");
  }
  return "running";
}

absl::StatusOr<std::unique_ptr<Process>> Process::Start(
    const ProcessOptions& options) {
  if (options.binary.empty() || options.binary[0] != '/') {
    return absl::InvalidArgumentError(absl::StrCat(
        "binary must be an absolute path, got \"", options.binary, "\""));
  }
  if (access(options.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("cannot execute ", options.binary,
                                            ": ", ErrnoString(errno)));
  }

  // Everything the child needs is built before fork: after it, the child of
  // a multi-threaded parent may only make async-signal-safe calls.
  const std::string log_name =
      options.log_name.empty() ? BaseName(options.binary) : options.log_name;
  const int sequence = g_sequence.fetch_add(1);
  const std::string base =
      absl::StrCat(TestTmpDir(), "/", log_name, ".", getpid(), ".", sequence);
  const std::string stdout_path = base + ".stdout";
  const std::string stderr_path = base + ".stderr";

  std::vector<std::string> argv_storage;
  argv_storage.push_back(options.binary);
  argv_storage.insert(argv_storage.end(), options.args.begin(),
                      options.args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_storage) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::map<std::string, std::string> env_map;
  if (options.inherit_env) {
    for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
      absl::string_view entry(*e);
      size_t eq = entry.find('=');
      if (eq == absl::string_view::npos) continue;
      env_map[std::string(entry.substr(0, eq))] =
          std::string(entry.substr(eq + 1));
    }
  }
  for (const auto& [key, value] : options.env) env_map[key] = value;
  std::vector<std::string> env_storage;
  for (const auto& [key, value] : env_map) {
    env_storage.push_back(absl::StrCat(key, "=", value));
  }
  std::vector<char*> envp;
  for (std::string& e : env_storage) envp.push_back(e.data());
  envp.push_back(nullptr);

  Fd out(open(stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
              0644));
  Fd err(open(stderr_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
              0644));
  if (out.get() < 0 || err.get() < 0) {
    return absl::InternalError(absl::StrCat(
        "cannot create ", base, ".std{out,err}: ", ErrnoString(errno)));
  }
  // Stdin comes from a file, not a pipe: nothing to feed (or to get SIGPIPE
  // from) while the child runs.
  Fd in;
  if (options.stdin_data.has_value()) {
    const std::string stdin_path = base + ".stdin";
    if (absl::Status s = WriteFile(stdin_path, *options.stdin_data, 0600);
        !s.ok()) {
      return s;
    }
    in.Reset(open(stdin_path.c_str(), O_RDONLY | O_CLOEXEC));
  } else {
    in.Reset(open("/dev/null", O_RDONLY | O_CLOEXEC));
  }
  if (in.get() < 0) {
    return absl::InternalError(
        absl::StrCat("cannot open the child's stdin: ", ErrnoString(errno)));
  }
  // The child reports a failed exec through this pipe; a successful exec
  // closes it (O_CLOEXEC) and the parent reads EOF.
  int exec_pipe[2];
  if (pipe2(exec_pipe, O_CLOEXEC) != 0) {
    return absl::InternalError(absl::StrCat("pipe: ", ErrnoString(errno)));
  }
  Fd exec_read(exec_pipe[0]);
  Fd exec_write(exec_pipe[1]);
  const pid_t parent = getpid();
  const char* working_dir =
      options.working_dir.empty() ? nullptr : options.working_dir.c_str();

  pid_t pid = fork();
  if (pid < 0) {
    return absl::InternalError(absl::StrCat("fork: ", ErrnoString(errno)));
  }
  if (pid == 0) {
    // Child: async-signal-safe calls only.
    setpgid(0, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(127);  // the parent died already
    // The test may have blocked or ignored signals; the server must not
    // inherit that.
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    signal(SIGPIPE, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    int child_error = 0;
    if (dup2(in.get(), 0) < 0 || dup2(out.get(), 1) < 0 ||
        dup2(err.get(), 2) < 0) {
      child_error = errno;
    } else if (working_dir != nullptr && chdir(working_dir) != 0) {
      child_error = errno;
    } else {
      execve(argv[0], argv.data(), envp.data());
      child_error = errno;
    }
    ssize_t ignored =
        write(exec_write.get(), &child_error, sizeof(child_error));
    (void)ignored;
    _exit(127);
  }

  // Parent. Also set the group from this side, so that a signal sent right
  // after Start returns reaches the group even if the child has not run yet.
  setpgid(pid, pid);
  exec_write.Reset();
  int child_error = 0;
  ssize_t n;
  do {
    n = read(exec_read.get(), &child_error, sizeof(child_error));
  } while (n < 0 && errno == EINTR);
  std::unique_ptr<Process> process(
      new Process(pid, options.binary, stdout_path, stderr_path));
  if (n == static_cast<ssize_t>(sizeof(child_error))) {
    process->Reap(/*block=*/true);
    return absl::InternalError(absl::StrCat("cannot execute ", options.binary,
                                            ": ", ErrnoString(child_error)));
  }
  return process;
}

Process::~Process() {
  if (!exit_status_.has_value()) Kill();
}

bool Process::Reap(bool block) {
  if (exit_status_.has_value()) return true;
  int status = 0;
  pid_t r;
  do {
    r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return false;
  ExitStatus s;
  if (r < 0) {
    // Reaped elsewhere (should not happen); report it as gone.
    s.exited = false;
    s.signal = 0;
  } else if (WIFEXITED(status)) {
    s.exited = true;
    s.code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    s.signal = WTERMSIG(status);
  }
  exit_status_ = s;
  return true;
}

bool Process::Running() { return !Reap(/*block=*/false); }

absl::StatusOr<ExitStatus> Process::Wait(absl::Duration timeout) {
  const absl::Time deadline = Deadline(timeout);
  while (!Reap(/*block=*/false)) {
    if (absl::Now() >= deadline) {
      return absl::DeadlineExceededError(
          absl::StrCat(binary_, " (pid ", pid_, ") still running after ",
                       absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return *exit_status_;
}

void Process::Signal(int signal) {
  if (exit_status_.has_value()) return;
  // The group first; fall back to the pid if the group is gone already.
  if (kill(-pid_, signal) != 0) kill(pid_, signal);
}

ExitStatus Process::Stop(absl::Duration grace) {
  if (exit_status_.has_value()) return *exit_status_;
  Signal(SIGTERM);
  absl::StatusOr<ExitStatus> status = Wait(grace);
  if (status.ok()) {
    // Leftover grandchildren of a group that ignored the leader's exit.
    kill(-pid_, SIGKILL);
    return *status;
  }
  return Kill();
}

ExitStatus Process::Kill() {
  if (exit_status_.has_value()) return *exit_status_;
  Signal(SIGKILL);
  Reap(/*block=*/true);
  kill(-pid_, SIGKILL);  // grandchildren, if any
  return *exit_status_;
}

std::vector<std::string> LogLinesWithEvent(absl::string_view output,
                                           absl::string_view event) {
  const std::string needle = absl::StrCat("\"event\":\"", event, "\"");
  std::vector<std::string> lines;
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    if (absl::StrContains(line, needle)) lines.emplace_back(line);
  }
  return lines;
}

std::string Process::ReadStdout() const {
  absl::StatusOr<std::string> s = ReadFile(stdout_path_);
  return s.ok() ? *s : "";
}

std::string Process::ReadStderr() const {
  absl::StatusOr<std::string> s = ReadFile(stderr_path_);
  return s.ok() ? *s : "";
}

std::string Process::DescribeOutput(size_t max_bytes) const {
  return absl::StrCat(BaseName(binary_), " stdout (", stdout_path_, "):\n",
                      Tail(ReadStdout(), max_bytes), "\n", BaseName(binary_),
                      " stderr (", stderr_path_, "):\n",
                      Tail(ReadStderr(), max_bytes));
}

std::string RunResult::ToString() const {
  return absl::StrCat(status.ToString(), timed_out ? " (timed out)" : "",
                      "\nstdout:\n", Tail(out, 4000), "\nstderr:\n",
                      Tail(err, 4000));
}

absl::StatusOr<RunResult> RunToCompletion(const ProcessOptions& options,
                                          absl::Duration timeout) {
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  if (!process.ok()) return process.status();
  RunResult result;
  absl::StatusOr<ExitStatus> status = (*process)->Wait(timeout);
  if (status.ok()) {
    result.status = *status;
  } else {
    result.timed_out = true;
    result.status = (*process)->Kill();
  }
  result.out = (*process)->ReadStdout();
  result.err = (*process)->ReadStderr();
  return result;
}

absl::Status WaitForTcpPort(const std::string& host, int port,
                            absl::Duration timeout, Process* watch) {
  const absl::Time deadline = Deadline(timeout);
  absl::Status last = absl::DeadlineExceededError("never tried");
  while (true) {
    if (absl::Status s = CheckWatch(watch); !s.ok()) return s;
    absl::Time attempt_deadline =
        std::min(deadline, absl::Now() + absl::Milliseconds(500));
    absl::StatusOr<int> fd = Connect(host, port, attempt_deadline);
    if (fd.ok()) {
      close(*fd);
      return absl::OkStatus();
    }
    last = fd.status();
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(
      absl::StrCat(host, ":", port, " did not accept within ",
                   absl::FormatDuration(timeout), "; last: ", last.message()));
}

absl::StatusOr<int> ConnectTcp(const std::string& host, int port,
                               absl::Duration timeout) {
  absl::StatusOr<int> fd = Connect(host, port, absl::Now() + timeout);
  if (!fd.ok()) return fd.status();
  fcntl(*fd, F_SETFL, fcntl(*fd, F_GETFL) & ~O_NONBLOCK);
  timeval tv = absl::ToTimeval(timeout);
  setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(*fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  return *fd;
}

absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path,
                                     absl::Duration timeout) {
  const absl::Time deadline = Deadline(timeout);
  absl::StatusOr<int> connected = Connect(host, port, deadline);
  if (!connected.ok()) return connected.status();
  Fd fd(*connected);
  const std::string request =
      absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: ", host, ":", port,
                   "\r\nUser-Agent: meshguard-integration-test\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n");
  size_t sent = 0;
  while (sent < request.size()) {
    pollfd p{fd.get(), POLLOUT, 0};
    if (poll(&p, 1, PollTimeoutMs(deadline)) <= 0) {
      return absl::DeadlineExceededError(
          absl::StrCat("GET ", path, ": send timed out"));
    }
    ssize_t n = send(fd.get(), request.data() + sent, request.size() - sent,
                     MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      return absl::UnavailableError(
          absl::StrCat("GET ", path, ": send: ", ErrnoString(errno)));
    }
    sent += static_cast<size_t>(n);
  }

  std::string raw;
  HttpResponse response;
  std::optional<size_t> header_end;
  std::optional<size_t> content_length;
  bool chunked = false;
  char buffer[16384];
  while (true) {
    if (!header_end.has_value()) {
      size_t end = raw.find("\r\n\r\n");
      if (end != std::string::npos) {
        header_end = end + 4;
        std::vector<absl::string_view> lines =
            absl::StrSplit(absl::string_view(raw).substr(0, end), "\r\n");
        // "HTTP/1.1 200 OK"
        std::vector<absl::string_view> status_parts =
            absl::StrSplit(lines[0], absl::MaxSplits(' ', 2));
        if (status_parts.size() < 2 ||
            !absl::StartsWith(status_parts[0], "HTTP/") ||
            !absl::SimpleAtoi(status_parts[1], &response.status)) {
          return absl::DataLossError(absl::StrCat(
              "GET ", path, ": bad status line \"", lines[0], "\""));
        }
        for (size_t i = 1; i < lines.size(); ++i) {
          size_t colon = lines[i].find(':');
          if (colon == absl::string_view::npos) continue;
          std::string name = absl::AsciiStrToLower(lines[i].substr(0, colon));
          std::string value(
              absl::StripAsciiWhitespace(lines[i].substr(colon + 1)));
          response.headers[name] = value;
        }
        auto te = response.headers.find("transfer-encoding");
        chunked =
            te != response.headers.end() &&
            absl::StrContains(absl::AsciiStrToLower(te->second), "chunked");
        auto cl = response.headers.find("content-length");
        size_t length = 0;
        if (!chunked && cl != response.headers.end() &&
            absl::SimpleAtoi(cl->second, &length)) {
          content_length = length;
        }
      }
    }
    if (header_end.has_value()) {
      absl::string_view body = absl::string_view(raw).substr(*header_end);
      if (content_length.has_value() && body.size() >= *content_length) {
        response.body = std::string(body.substr(0, *content_length));
        return response;
      }
      if (chunked) {
        std::optional<std::string> decoded = Dechunk(body);
        if (decoded.has_value()) {
          response.body = *std::move(decoded);
          return response;
        }
      }
    }
    pollfd p{fd.get(), POLLIN, 0};
    int ready = poll(&p, 1, PollTimeoutMs(deadline));
    if (ready == 0) {
      return absl::DeadlineExceededError(absl::StrCat(
          "GET ", path, ": no complete response within ",
          absl::FormatDuration(timeout), " (got ", raw.size(), " bytes)"));
    }
    ssize_t n = recv(fd.get(), buffer, sizeof(buffer), 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      return absl::UnavailableError(
          absl::StrCat("GET ", path, ": recv: ", ErrnoString(errno)));
    }
    if (n == 0) {  // EOF
      if (!header_end.has_value()) {
        return absl::UnavailableError(absl::StrCat(
            "GET ", path, ": connection closed before the headers"));
      }
      if (content_length.has_value() || chunked) {
        return absl::DataLossError(
            absl::StrCat("GET ", path, ": connection closed mid-body"));
      }
      response.body = raw.substr(*header_end);
      return response;
    }
    raw.append(buffer, static_cast<size_t>(n));
  }
}

double SumMetric(const std::string& text, const std::string& name,
                 const std::vector<std::string>& label_parts) {
  double sum = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    if (!absl::ConsumePrefix(&line, name)) continue;
    // Exactly this metric: next comes the label set or the value.
    if (line.empty() || (line[0] != '{' && line[0] != ' ')) continue;
    size_t space = line.rfind(' ');
    if (space == absl::string_view::npos) continue;
    absl::string_view labels = line.substr(0, space);
    bool match = true;
    for (const std::string& part : label_parts) {
      if (!absl::StrContains(labels, part)) match = false;
    }
    double value = 0;
    if (match && absl::SimpleAtod(line.substr(space + 1), &value)) {
      sum += value;
    }
  }
  return sum;
}

absl::Status WaitForHttpOk(const std::string& host, int port,
                           const std::string& path, absl::Duration timeout,
                           Process* watch) {
  const absl::Time deadline = Deadline(timeout);
  std::string last = "never tried";
  while (true) {
    if (absl::Status s = CheckWatch(watch); !s.ok()) return s;
    absl::Duration left = deadline - absl::Now();
    absl::StatusOr<HttpResponse> response =
        HttpGet(host, port, path, std::min(left, absl::Seconds(2)));
    if (response.ok() && response->status == 200) return absl::OkStatus();
    last = response.ok()
               ? absl::StrCat("HTTP ", response->status, ": ", response->body)
               : std::string(response.status().message());
    if (absl::Now() >= deadline) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "http://", host, ":", port, path, " did not answer 200 within ",
      absl::FormatDuration(timeout), "; last: ", last));
}

bool WaitFor(const std::function<bool()>& condition, absl::Duration timeout,
             absl::Duration interval) {
  const absl::Time deadline = Deadline(timeout);
  while (true) {
    if (condition()) return true;
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(interval);
  }
}

}  // namespace meshguard::testing
