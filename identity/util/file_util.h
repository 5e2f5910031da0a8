// Small file helpers with errors that name the path. Writes are atomic
// (temporary file, fsync, rename, fsync of the directory), so a crash never
// leaves a half-written key, certificate or bundle behind.
#ifndef MESHGUARD_IDENTITY_UTIL_FILE_UTIL_H_
#define MESHGUARD_IDENTITY_UTIL_FILE_UTIL_H_

#include <sys/types.h>

#include <string>

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

bool FileExists(const std::string& path);

// Creates `path` (and parents) with `mode` if missing.
absl::Status MakeDirectories(const std::string& path, mode_t mode);

std::string JoinPath(absl::string_view dir, absl::string_view name);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_FILE_UTIL_H_
