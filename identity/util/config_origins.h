// Where each field of a loaded config came from (a line of the --config
// file, or a flag that overrides it), so that a validation error points at
// what to edit rather than only naming the field:
//   sidecar.yaml:3: config field listeners.inbound: "nope" is not host:port
//   --inbound-listen: "nope" is not host:port
// main() fills it while it loads the file and applies the flags; the
// config's validator reads it. Fill it from one thread; the const methods
// are thread-safe.
#ifndef MESHGUARD_IDENTITY_UTIL_CONFIG_ORIGINS_H_
#define MESHGUARD_IDENTITY_UTIL_CONFIG_ORIGINS_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace meshguard::util {

// Field path, with proto field names ("listeners.inbound", "routes[1]",
// "routes[1].upstream"), -> 1-based line in the file that set it.
using FieldLines = absl::flat_hash_map<std::string, int>;

class ConfigOrigins final {
 public:
  // The config was read from `file`; `lines` says where each field it set
  // is (LoadYamlFile fills them).
  void SetFile(std::string file, FieldLines lines);

  // `field` (or a list element, "routes[2]") was set by `flag`, written as
  // the operator would: "--inbound-listen", or "--route \"a=b:1\"" for one
  // of several values. A flag overrides the file.
  void SetByFlag(std::string field, std::string flag);

  // Where the value of `field` came from: its flag, "FILE:LINE", or "" (a
  // default, or nothing recorded). A field inside a list element that has
  // no origin of its own takes the element's.
  std::string Where(absl::string_view field) const;

  // InvalidArgument "FILE:LINE: config field FIELD: PROBLEM"; for a field a
  // flag set "FLAG: PROBLEM" ("FLAG: config field FIELD: PROBLEM" when the
  // flag set the enclosing list element); with no origin
  // "config field FIELD: PROBLEM".
  absl::Status FieldError(absl::string_view field,
                          absl::string_view problem) const;

  // InvalidArgument for a required field that neither the file nor `flag`
  // set: "config field FIELD (in FILE) or FLAG: required[: WHY]", without
  // "(in FILE)" when no file was read, or "FILE:LINE: config field FIELD or
  // FLAG: required[: WHY]" when the file has the field, empty.
  absl::Status Missing(absl::string_view field, absl::string_view flag,
                       absl::string_view why) const;

 private:
  // The flag or the file line that set `field`, itself or the list
  // element it is in; `*exact` says which.
  const std::string* FlagFor(absl::string_view field, bool* exact) const;
  const int* LineFor(absl::string_view field) const;

  std::string file_;
  FieldLines lines_;
  absl::flat_hash_map<std::string, std::string> flags_;
};

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_CONFIG_ORIGINS_H_
