#include "identity/util/flag_names.h"

#include <algorithm>
#include <cstdio>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"

namespace meshguard::util {

std::vector<char*> NormalizeFlagNames(int argc, char** argv,
                                      std::vector<std::string>* storage) {
  storage->assign(argv, argv + argc);
  bool flags_done = false;
  for (size_t i = 1; i < storage->size(); ++i) {
    std::string& arg = (*storage)[i];
    if (arg == "--") flags_done = true;
    if (flags_done || arg.size() < 3 || arg[0] != '-') continue;
    size_t start = arg[1] == '-' ? 2 : 1;
    size_t end = arg.find('=');
    if (end == std::string::npos) end = arg.size();
    for (size_t j = start; j < end; ++j) {
      if (arg[j] == '-') arg[j] = '_';
    }
  }
  std::vector<char*> out;
  for (std::string& s : *storage) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> ParseCommandLine(int argc, char** argv) {
  std::vector<std::string> storage;
  std::vector<char*> normalized = NormalizeFlagNames(argc, argv, &storage);
  std::vector<char*> positional = absl::ParseCommandLine(
      static_cast<int>(normalized.size() - 1), normalized.data());
  // Copies: the pointers point into `storage`.
  return std::vector<std::string>(positional.begin(), positional.end());
}

std::string DashedFlag(absl::string_view name) {
  return absl::StrCat("--", absl::StrReplaceAll(name, {{"_", "-"}}));
}

namespace {

bool IsHelpFlag(absl::string_view arg) {
  return arg == "--help" || arg == "-help" || arg == "-h" ||
         arg == "--helpfull" || arg == "-helpfull";
}

// Whether `arg`, a flag without "=VALUE", takes the next argument as its
// value. An unknown flag (or --noBOOL) does not: parsing will refuse it.
bool TakesValue(absl::string_view arg) {
  absl::string_view name = absl::StripPrefix(absl::StripPrefix(arg, "-"), "-");
  const absl::CommandLineFlag* flag =
      absl::FindCommandLineFlag(absl::StrReplaceAll(name, {{"-", "_"}}));
  return flag != nullptr && !flag->IsOfType<bool>();
}

}  // namespace

std::optional<std::vector<std::string>> HelpRequest(int argc, char** argv) {
  bool asked = false;
  bool full = false;
  bool help_word = false;
  bool flags_done = false;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (flags_done || arg.size() < 2 || arg[0] != '-') {
      if (words.empty() && !flags_done && arg == "help") {
        help_word = true;
      } else {
        words.emplace_back(arg);
      }
      continue;
    }
    if (arg == "--") {
      flags_done = true;
    } else if (IsHelpFlag(arg)) {
      asked = true;
      full = full || absl::EndsWith(arg, "helpfull");
    } else if (!absl::StrContains(arg, '=') && TakesValue(arg) &&
               i + 1 < argc && !IsHelpFlag(argv[i + 1])) {
      ++i;  // the flag's value
    }
  }
  // "help" is a word only as the first one; after another it is an
  // argument (`cert inspect help` inspects a file called help).
  if (!asked && !help_word) return std::nullopt;
  if (full) words.clear();
  return words;
}

std::string FlagHelp(absl::string_view name) {
  const std::string dashed = DashedFlag(name);
  const absl::CommandLineFlag* flag =
      absl::FindCommandLineFlag(absl::StrReplaceAll(name, {{"-", "_"}}));
  if (flag == nullptr) return absl::StrCat("  ", dashed, "\n");
  const std::string def = flag->DefaultValue();
  return absl::StrCat("  ", dashed,
                      def.empty() ? "" : absl::StrCat(" (default: ", def, ")"),
                      "\n      ", flag->Help(), "\n");
}

void PrintFullHelp(absl::string_view usage, absl::string_view flags_file) {
  fputs(std::string(usage).c_str(), stdout);
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (absl::EndsWith(flag->Filename(), flags_file)) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const absl::CommandLineFlag* a, const absl::CommandLineFlag* b) {
              return a->Name() < b->Name();
            });
  if (!flags.empty()) fputs("\nFlags:\n", stdout);
  for (const absl::CommandLineFlag* flag : flags) {
    fputs(FlagHelp(flag->Name()).c_str(), stdout);
  }
}

bool PrintHelpIfAsked(int argc, char** argv, absl::string_view usage,
                      absl::string_view flags_file) {
  if (!HelpRequest(argc, argv).has_value()) return false;
  PrintFullHelp(usage, flags_file);
  return true;
}

std::string FormatCommandHelp(absl::string_view program,
                              absl::string_view command,
                              const std::vector<CommandHelp>& commands,
                              const CommandFlags& command_flags) {
  std::string out;
  for (const CommandHelp& help : commands) {
    if (help.name != command &&
        !absl::StartsWith(help.name, absl::StrCat(command, " "))) {
      continue;
    }
    if (!out.empty()) out += "\n";
    absl::StrAppend(&out, "Usage: ", program, " ", help.usage, "\n");
    if (!help.description.empty()) {
      absl::StrAppend(&out, "\n", help.description);
      if (!absl::EndsWith(help.description, "\n")) out += "\n";
    }
    std::string own;
    for (const auto& [flag, flag_commands] : command_flags) {
      if (flag_commands.count(help.name)) own += FlagHelp(flag);
    }
    if (!own.empty()) absl::StrAppend(&out, "\nFlags:\n", own);
    std::string global;
    for (const std::string& flag : help.global_flags) global += FlagHelp(flag);
    if (!global.empty()) absl::StrAppend(&out, "\nGlobal flags:\n", global);
  }
  return out;
}

std::string MisplacedFlag(int argc, char** argv, absl::string_view command,
                          const CommandFlags& command_flags) {
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg.size() < 3 || !absl::StartsWith(arg, "--")) continue;
    absl::string_view given = arg.substr(2);
    std::string name =
        absl::StrReplaceAll(given.substr(0, given.find('=')), {{"-", "_"}});
    auto it = command_flags.find(name);
    if (it == command_flags.end() && absl::StartsWith(name, "no")) {
      it = command_flags.find(name.substr(2));  // --nolive, --nopath-only
    }
    if (it == command_flags.end() || it->second.count(std::string(command))) {
      continue;
    }
    return absl::StrCat(DashedFlag(it->first), " does not apply to ", command,
                        " (it is for ", absl::StrJoin(it->second, ", "), ")");
  }
  return "";
}

}  // namespace meshguard::util
