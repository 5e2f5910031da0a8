// Lets every binary accept --flag-name as well as absl's --flag_name, so the
// documented interface (--data-dir, --ca-bundle, ...) works as written.
#ifndef MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
#define MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_

#include <map>
#include <set>
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

// Flags that belong to some commands only: flag name (underscores) -> the
// commands that take it. Flags not listed go with every command.
using CommandFlags = std::map<std::string, std::set<std::string>>;

// The error for the first flag in argv (before a bare "--"; dashes or
// underscores, "--name", "--name=v" or "--noname") that `command` does not
// take, e.g. "--spiffe-id does not apply to cert request (it is for list,
// revoke)", or "" if every flag fits. A flag given to the wrong command
// would otherwise be ignored, as if it had done something.
std::string MisplacedFlag(int argc, char** argv, absl::string_view command,
                          const CommandFlags& command_flags);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
