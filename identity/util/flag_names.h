// Lets every binary accept --flag-name as well as absl's --flag_name, so the
// documented interface (--data-dir, --ca-bundle, ...) works as written;
// keeps each command to its own flags; and prints help, the whole
// program's or one command's, from absl's flag registry.
#ifndef MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
#define MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_

#include <map>
#include <optional>
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

// "--data-dir" for absl's flag name "data_dir": as the usage and the
// operator write it.
std::string DashedFlag(absl::string_view name);

// What argv asks help for: nullopt if it does not ask (no --help, -help,
// -h or --helpfull before a bare "--", and "help" is not the first word);
// else the words naming a command, e.g. {"cert", "request"} for
// `cert request --help`, `help cert request` or `--ca A cert request -h`,
// and none for the program as a whole or --helpfull. Words are told from
// flag values with absl's registry: a flag that is not a boolean and has
// no "=VALUE" takes the next argument (unless that asks for help).
std::optional<std::vector<std::string>> HelpRequest(int argc, char** argv);

// Prints `usage` and every flag defined in a file whose path ends with
// `flags_file`, as FlagHelp formats it and sorted by name, to stdout.
void PrintFullHelp(absl::string_view usage, absl::string_view flags_file);

// If HelpRequest(argc, argv) asks for help, PrintFullHelp and returns true:
// for programs without commands. absl's own --help exits 1 and lists flags
// by file; ours exits 0.
bool PrintHelpIfAsked(int argc, char** argv, absl::string_view usage,
                      absl::string_view flags_file);

// One flag as help lists it, its text and default from absl's registry:
//   "  --out-dir (default: x)\n      <help text>\n"
// (no "(default: ...)" when the default is empty). `name` with dashes or
// underscores; a flag absl does not know is listed by name alone.
std::string FlagHelp(absl::string_view name);

// Flags that belong to some commands only: flag name (underscores) -> the
// commands that take it. Flags not listed go with every command.
using CommandFlags = std::map<std::string, std::set<std::string>>;

// One command of a program that has several, for its help.
struct CommandHelp {
  std::string name;  // "cert request"
  // What follows the program name in the usage; may span lines.
  std::string usage;
  // What it does, needs and writes: lines of text, ending in a newline.
  std::string description;
  // The flags of every command (not in CommandFlags) that it uses.
  std::vector<std::string> global_flags;
};

// The help of `command` in `commands`: "Usage: PROGRAM USAGE", the
// description, "Flags:" with those that `command_flags` gives the command
// and "Global flags:" with its global_flags, each as FlagHelp formats it.
// A command named only by its first word (`cert`) gets the help of every
// command under it (`cert request`, `cert renew`, ...). "" if `commands` has
// no such command.
std::string FormatCommandHelp(absl::string_view program,
                              absl::string_view command,
                              const std::vector<CommandHelp>& commands,
                              const CommandFlags& command_flags);

// The error for the first flag in argv (before a bare "--"; dashes or
// underscores, "--name", "--name=v" or "--noname") that `command` does not
// take, e.g. "--spiffe-id does not apply to cert request (it is for list,
// revoke)", or "" if every flag fits. A flag given to the wrong command
// would otherwise be ignored, as if it had done something.
std::string MisplacedFlag(int argc, char** argv, absl::string_view command,
                          const CommandFlags& command_flags);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
