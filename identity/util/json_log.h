// Structured logs: one JSON object per line, built with protobuf's JSON
// printer (no hand-written escaping). Thread-safe: each line is written with
// one fwrite under a lock, so lines from different threads never interleave.
#ifndef MESHGUARD_IDENTITY_UTIL_JSON_LOG_H_
#define MESHGUARD_IDENTITY_UTIL_JSON_LOG_H_

#include <cstdio>
#include <string>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"

namespace meshguard::util {

class LogLine final {
 public:
  // `event` names what happened ("issued", "refused", ...).
  LogLine(absl::string_view level, absl::string_view event);

  LogLine& Add(absl::string_view key, absl::string_view value);
  LogLine& Add(absl::string_view key, const char* value) {
    return Add(key, absl::string_view(value));
  }
  LogLine& Add(absl::string_view key, const std::string& value) {
    return Add(key, absl::string_view(value));
  }
  LogLine& Add(absl::string_view key, double value);
  LogLine& Add(absl::string_view key, int64_t value) {
    return Add(key, static_cast<double>(value));
  }
  LogLine& Add(absl::string_view key, int value) {
    return Add(key, static_cast<double>(value));
  }
  LogLine& Add(absl::string_view key, bool value);
  LogLine& AddTime(absl::string_view key, absl::Time value);

  std::string ToJson() const;
  // Writes the line to the process's log stream (stdout by default).
  void Emit() const;

 private:
  google::protobuf::Struct fields_;
};

// Where Emit() writes; default stdout. Not owned. Call before threads start.
void SetLogStream(FILE* stream);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_JSON_LOG_H_
