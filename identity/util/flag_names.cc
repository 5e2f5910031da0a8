#include "identity/util/flag_names.h"

namespace meshguard::util {

std::vector<char*> NormalizeFlagNames(int argc, char** argv,
                                      std::vector<std::string>* storage) {
  storage->assign(argv, argv + argc);
  bool flags_done = false;
  for (size_t i = 1; i < storage->size(); ++i) {
    std::string& arg = (*storage)[i];
    if (flags_done || arg.size() < 3 || arg[0] != '-') continue;
    if (arg == "--") {
      flags_done = true;
      continue;
    }
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

}  // namespace meshguard::util
