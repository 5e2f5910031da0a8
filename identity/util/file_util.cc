#include "identity/util/file_util.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>

#include "absl/strings/str_cat.h"

namespace meshguard::util {
namespace {

absl::Status ErrnoError(absl::string_view what, const std::string& path,
                        int err) {
  std::string message = absl::StrCat(what, " ", path, ": ", strerror(err));
  switch (err) {
    case ENOENT:
      return absl::NotFoundError(message);
    case EEXIST:
      return absl::AlreadyExistsError(message);
    case EACCES:
    case EPERM:
      return absl::PermissionDeniedError(message);
    default:
      return absl::InternalError(message);
  }
}

absl::Status WriteAll(int fd, absl::string_view contents,
                      const std::string& path) {
  while (!contents.empty()) {
    ssize_t n = write(fd, contents.data(), contents.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", path, errno);
    }
    contents.remove_prefix(static_cast<size_t>(n));
  }
  if (fsync(fd) != 0) return ErrnoError("cannot fsync", path, errno);
  return absl::OkStatus();
}

// Creates `path` with open(2) `flags` (O_TRUNC to replace a temporary,
// O_EXCL for a new file), sets `mode` exactly (whatever the umask), writes
// and fsyncs `contents`. On a failure the file is removed.
absl::Status WriteSyncedFile(const std::string& path,
                             absl::string_view contents, mode_t mode,
                             int flags) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | flags, mode);
  if (fd < 0) return ErrnoError("cannot create", path, errno);
  absl::Status s = fchmod(fd, mode) == 0
                       ? WriteAll(fd, contents, path)
                       : ErrnoError("cannot chmod", path, errno);
  close(fd);
  if (!s.ok()) unlink(path.c_str());
  return s;
}

absl::Status SyncDirectoryOf(const std::string& path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (dir.empty()) dir = "/";
  int fd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open directory", dir, errno);
  int rc = fsync(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return ErrnoError("cannot fsync directory", dir, err);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     size_t max_bytes) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError("cannot open", path, errno);
  std::string out;
  char buf[16384];
  while (true) {
    ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close(fd);
      return ErrnoError("cannot read", path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {
      close(fd);
      return absl::InvalidArgumentError(
          absl::StrCat("file ", path, " is larger than ", max_bytes, " bytes"));
    }
  }
  close(fd);
  return out;
}

absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents, mode_t mode) {
  std::string tmp = absl::StrCat(path, ".tmp.", getpid());
  if (absl::Status s = WriteSyncedFile(tmp, contents, mode, O_TRUNC); !s.ok()) {
    return s;
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    unlink(tmp.c_str());
    return ErrnoError("cannot rename into", path, err);
  }
  return SyncDirectoryOf(path);
}

absl::Status WriteNewFile(const std::string& path, absl::string_view contents,
                          mode_t mode) {
  if (absl::Status s = WriteSyncedFile(path, contents, mode, O_EXCL); !s.ok()) {
    return s;
  }
  return SyncDirectoryOf(path);
}

absl::Status ReplaceFiles(const std::string& dir,
                          const std::vector<FileToWrite>& files) {
  // Unique per call, so that two threads replacing files in one directory
  // never share a temporary name.
  static std::atomic<uint64_t> calls{0};
  const std::string suffix = absl::StrCat(".", getpid(), ".", calls++);
  auto temp_of = [&](const FileToWrite& f) {
    return JoinPath(dir, absl::StrCat(".", f.name, ".new", suffix));
  };
  auto backup_of = [&](const FileToWrite& f) {
    return JoinPath(dir, absl::StrCat(".", f.name, ".old", suffix));
  };
  auto remove_temps = [&] {
    for (const FileToWrite& f : files) unlink(temp_of(f).c_str());
  };
  // 1. Every new file, complete and synced, beside its target.
  for (const FileToWrite& f : files) {
    if (absl::Status s =
            WriteSyncedFile(temp_of(f), f.contents, f.mode, O_TRUNC);
        !s.ok()) {
      remove_temps();
      return s;
    }
  }
  // 2. A hard link to each old target, to put it back if a later rename
  //    fails (a target that cannot be linked, e.g. immutable, would not be
  //    replaceable either: stop before anything changed).
  std::vector<bool> had_old(files.size(), false);
  auto remove_backups = [&] {
    for (size_t i = 0; i < files.size(); ++i) {
      if (had_old[i]) unlink(backup_of(files[i]).c_str());
    }
  };
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string target = JoinPath(dir, files[i].name);
    struct stat st;
    if (lstat(target.c_str(), &st) != 0) {
      if (errno == ENOENT) continue;
      absl::Status s = ErrnoError("cannot stat", target, errno);
      remove_backups();
      remove_temps();
      return s;
    }
    if (S_ISDIR(st.st_mode)) {
      remove_backups();
      remove_temps();
      return absl::FailedPreconditionError(
          absl::StrCat("cannot replace ", target, ": it is a directory"));
    }
    const std::string backup = backup_of(files[i]);
    unlink(backup.c_str());
    if (link(target.c_str(), backup.c_str()) != 0) {
      absl::Status s = ErrnoError("cannot replace", target, errno);
      remove_backups();
      remove_temps();
      return s;
    }
    had_old[i] = true;
  }
  // 3. The renames; on a failure, the ones done are undone.
  for (size_t i = 0; i < files.size(); ++i) {
    const std::string target = JoinPath(dir, files[i].name);
    if (rename(temp_of(files[i]).c_str(), target.c_str()) == 0) continue;
    absl::Status s = ErrnoError("cannot replace", target, errno);
    for (size_t j = 0; j < i; ++j) {
      const std::string done = JoinPath(dir, files[j].name);
      if (had_old[j]) {
        rename(backup_of(files[j]).c_str(), done.c_str());
        had_old[j] = false;
      } else {
        unlink(done.c_str());
      }
    }
    remove_backups();
    remove_temps();
    SyncDirectoryOf(target).IgnoreError();
    return s;
  }
  remove_backups();
  return SyncDirectoryOf(JoinPath(dir, files.empty() ? "" : files[0].name));
}

ExclusiveLock& ExclusiveLock::operator=(ExclusiveLock&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

ExclusiveLock::~ExclusiveLock() {
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<ExclusiveLock> ExclusiveLock::Acquire(const std::string& path,
                                                     absl::string_view what) {
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return ErrnoError("cannot open lock file", path, errno);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err != EWOULDBLOCK) {
      close(fd);
      return ErrnoError("cannot lock", path, err);
    }
    char pid[32] = {0};
    ssize_t n = pread(fd, pid, sizeof(pid) - 1, 0);
    close(fd);
    std::string holder(pid, n > 0 ? static_cast<size_t>(n) : 0);
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) {
      holder.pop_back();
    }
    return absl::FailedPreconditionError(
        absl::StrCat(what, " is in use by another process",
                     holder.empty() ? "" : absl::StrCat(" (pid ", holder, ")"),
                     ": it holds the lock on ", path));
  }
  const std::string mine = absl::StrCat(getpid(), "\n");
  if (ftruncate(fd, 0) != 0 || pwrite(fd, mine.data(), mine.size(), 0) !=
                                   static_cast<ssize_t>(mine.size())) {
    // The lock is what matters; the pid is only for the message.
  }
  return ExclusiveLock(fd);
}

bool FileExists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

absl::StatusOr<FileVersion> StatFileVersion(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    return absl::Status(
        err == ENOENT ? absl::StatusCode::kNotFound
                      : absl::StatusCode::kFailedPrecondition,
        absl::StrCat("cannot stat ", path, ": ", strerror(err)));
  }
  FileVersion v;
  v.device = st.st_dev;
  v.inode = st.st_ino;
  v.size = st.st_size;
  v.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  return v;
}

absl::Status MakeDirectories(const std::string& path, mode_t mode) {
  if (path.empty()) return absl::InvalidArgumentError("empty directory path");
  std::string current;
  size_t pos = 0;
  while (pos != std::string::npos) {
    pos = path.find('/', pos + 1);
    current = path.substr(0, pos);
    if (current.empty()) continue;
    if (mkdir(current.c_str(), mode) != 0 && errno != EEXIST) {
      return ErrnoError("cannot create directory", current, errno);
    }
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " exists and is not a directory"));
  }
  return absl::OkStatus();
}

std::string JoinPath(absl::string_view dir, absl::string_view name) {
  if (dir.empty()) return std::string(name);
  if (dir.back() == '/') return absl::StrCat(dir, name);
  return absl::StrCat(dir, "/", name);
}

}  // namespace meshguard::util
