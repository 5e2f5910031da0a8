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

bool PrintHelpIfAsked(int argc, char** argv, absl::string_view usage,
                      absl::string_view flags_file) {
  bool asked = false;
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") break;
    if (arg == "--help" || arg == "-help" || arg == "-h" ||
        arg == "--helpfull" || (i == 1 && arg == "help")) {
      asked = true;
    }
  }
  if (!asked) return false;
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
    std::string name = absl::StrReplaceAll(flag->Name(), {{"_", "-"}});
    std::string def = flag->DefaultValue();
    printf("  --%s%s\n      %s\n", name.c_str(),
           def.empty() ? "" : (" (default: " + def + ")").c_str(),
           flag->Help().c_str());
  }
  return true;
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
    return absl::StrCat("--", absl::StrReplaceAll(it->first, {{"_", "-"}}),
                        " does not apply to ", command, " (it is for ",
                        absl::StrJoin(it->second, ", "), ")");
  }
  return "";
}

}  // namespace meshguard::util
