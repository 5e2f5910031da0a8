// Lets every binary accept --flag-name as well as absl's --flag_name, so the
// documented interface (--data-dir, --ca-bundle, ...) works as written.
#ifndef MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
#define MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace meshguard::util {

// Rewrites dashes in flag names (the part of "--a-b=c" before '=') to
// underscores, stopping at a bare "--". `storage` owns the strings the
// returned argv points into; keep it alive while the argv is used.
std::vector<char*> NormalizeFlagNames(int argc, char** argv,
                                      std::vector<std::string>* storage);

// NormalizeFlagNames, then absl::ParseCommandLine (which exits on an
// unknown or malformed flag): the positional arguments, argv[0] first.
std::vector<std::string> ParseCommandLine(int argc, char** argv);

// If argv asks for help (--help, -h, --helpfull or a bare "help"), prints
// `usage` and every flag defined in a file whose path ends with
// `flags_file` (name with dashes, default, help) to stdout and returns true.
// absl's own --help exits 1 and lists flags by file; ours exits 0.
bool PrintHelpIfAsked(int argc, char** argv, absl::string_view usage,
                      absl::string_view flags_file);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
