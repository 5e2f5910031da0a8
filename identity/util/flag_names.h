// Lets every binary accept --flag-name as well as absl's --flag_name, so the
// documented interface (--data-dir, --ca-bundle, ...) works as written.
#ifndef MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
#define MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_

#include <string>
#include <vector>

namespace meshguard::util {

// Rewrites dashes in flag names (the part of "--a-b=c" before '=') to
// underscores, stopping at a bare "--". `storage` owns the strings the
// returned argv points into; keep it alive while the argv is used.
std::vector<char*> NormalizeFlagNames(int argc, char** argv,
                                      std::vector<std::string>* storage);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_FLAG_NAMES_H_
