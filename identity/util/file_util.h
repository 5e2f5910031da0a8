// Small file helpers with errors that name the path. Writes are atomic
// (temporary file, fsync, rename, fsync of the directory), so a crash never
// leaves a half-written key, certificate or bundle behind.
#ifndef MESHGUARD_IDENTITY_UTIL_FILE_UTIL_H_
#define MESHGUARD_IDENTITY_UTIL_FILE_UTIL_H_

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshguard::util {

// Reads a whole file, refusing files larger than max_bytes.
absl::StatusOr<std::string> ReadFile(const std::string& path,
                                     size_t max_bytes = 16 << 20);

// Atomically replaces `path` with `contents`, created with `mode`.
absl::Status WriteFileAtomically(const std::string& path,
                                 absl::string_view contents, mode_t mode);

// Writes `contents` to a new file; fails with ALREADY_EXISTS if `path`
// exists (never overwrites). Durable when it returns.
absl::Status WriteNewFile(const std::string& path, absl::string_view contents,
                          mode_t mode);

// One file of a set written by ReplaceFiles.
struct FileToWrite {
  std::string name;  // within the directory
  std::string contents;
  mode_t mode;
};

// Replaces several files in `dir` as a set, for files that only make sense
// together (a key and its certificate): every new file is written and
// synced under a temporary name first, then each is renamed over its
// target. If anything fails, every target that was already replaced is put
// back, so the directory holds either all the new files or all the old
// ones; the error names the file. (A crash of the machine between two
// renames can still leave a mix; that window is a few system calls.)
absl::Status ReplaceFiles(const std::string& dir,
                          const std::vector<FileToWrite>& files);

bool FileExists(const std::string& path);

// One version of a file, to notice that it was replaced or rewritten: the
// identity (device, inode), size and modification time of what `path`
// resolves to now (stat follows symlinks, so a Kubernetes volume's
// atomically swapped `..data` link counts as a new version).
struct FileVersion {
  dev_t device = 0;
  ino_t inode = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileVersion& o) const {
    return device == o.device && inode == o.inode && size == o.size &&
           mtime_ns == o.mtime_ns;
  }
  bool operator!=(const FileVersion& o) const { return !(*this == o); }
};
// NOT_FOUND (or another errno's code) naming the path if stat fails.
absl::StatusOr<FileVersion> StatFileVersion(const std::string& path);

// An exclusive advisory lock (flock) on `path`, created if missing, held
// until the object is destroyed, and released by the kernel if the process
// dies. The holder's pid is written into the file. If another process holds
// it: FAILED_PRECONDITION naming `what`, the file and that process's pid.
class ExclusiveLock {
 public:
  static absl::StatusOr<ExclusiveLock> Acquire(const std::string& path,
                                               absl::string_view what);
  ExclusiveLock(ExclusiveLock&& other) noexcept : fd_(other.fd_) {
    other.fd_ = -1;
  }
  ExclusiveLock& operator=(ExclusiveLock&& other) noexcept;
  ExclusiveLock(const ExclusiveLock&) = delete;
  ExclusiveLock& operator=(const ExclusiveLock&) = delete;
  ~ExclusiveLock();

 private:
  explicit ExclusiveLock(int fd) : fd_(fd) {}
  int fd_;
};

// Creates `path` (and parents) with `mode` if missing.
absl::Status MakeDirectories(const std::string& path, mode_t mode);

std::string JoinPath(absl::string_view dir, absl::string_view name);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_FILE_UTIL_H_
