#include "identity/util/config_origins.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace meshguard::util {
namespace {

// `field` itself, else the innermost list element it is in ("routes[1]"
// for "routes[1].upstream").
template <typename Map>
const typename Map::mapped_type* FindOrEnclosing(const Map& map,
                                                 absl::string_view field,
                                                 bool* exact) {
  *exact = true;
  if (auto it = map.find(field); it != map.end()) return &it->second;
  *exact = false;
  for (size_t end = field.rfind(']'); end != absl::string_view::npos;
       end = end == 0 ? absl::string_view::npos : field.rfind(']', end - 1)) {
    if (auto it = map.find(field.substr(0, end + 1)); it != map.end()) {
      return &it->second;
    }
  }
  return nullptr;
}

}  // namespace

void ConfigOrigins::SetFile(std::string file, FieldLines lines) {
  file_ = std::move(file);
  lines_ = std::move(lines);
}

void ConfigOrigins::SetByFlag(std::string field, std::string flag) {
  flags_[std::move(field)] = std::move(flag);
}

const std::string* ConfigOrigins::FlagFor(absl::string_view field,
                                          bool* exact) const {
  return FindOrEnclosing(flags_, field, exact);
}

const int* ConfigOrigins::LineFor(absl::string_view field) const {
  bool exact;
  return FindOrEnclosing(lines_, field, &exact);
}

std::string ConfigOrigins::Where(absl::string_view field) const {
  bool exact;
  if (const std::string* flag = FlagFor(field, &exact)) return *flag;
  if (const int* line = LineFor(field)) return absl::StrCat(file_, ":", *line);
  return "";
}

absl::Status ConfigOrigins::FieldError(absl::string_view field,
                                       absl::string_view problem) const {
  bool exact;
  if (const std::string* flag = FlagFor(field, &exact)) {
    return absl::InvalidArgumentError(
        exact ? absl::StrCat(*flag, ": ", problem)
              : absl::StrCat(*flag, ": config field ", field, ": ", problem));
  }
  if (const int* line = LineFor(field)) {
    return absl::InvalidArgumentError(absl::StrCat(
        file_, ":", *line, ": config field ", field, ": ", problem));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("config field ", field, ": ", problem));
}

absl::Status ConfigOrigins::Missing(absl::string_view field,
                                    absl::string_view flag,
                                    absl::string_view why) const {
  std::string where;
  if (auto it = lines_.find(field); it != lines_.end()) {
    where = absl::StrCat(file_, ":", it->second, ": config field ", field);
  } else if (!file_.empty()) {
    where = absl::StrCat("config field ", field, " (in ", file_, ")");
  } else {
    where = absl::StrCat("config field ", field);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      where, " or ", flag, ": required", why.empty() ? "" : ": ", why));
}

}  // namespace meshguard::util
