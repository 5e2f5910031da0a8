// Structured logs: one JSON object per line, keys in the order first added
// (a key added again keeps its place and takes the new value). Strings are
// escaped here (RFC 8259: quote, backslash and control characters; bytes
// that are not UTF-8 become U+FFFD), so every line parses as JSON whatever
// the values hold. Thread-safe: each line is written with one fwrite under
// a lock, so lines from different threads never interleave.
//
// Written directly rather than through protobuf's Struct and JSON printer:
// the CA writes a line per certificate, and building a Struct map and
// printing it cost ~4 % of the CA's CPU per issuance.
#ifndef MESHGUARD_IDENTITY_UTIL_JSON_LOG_H_
#define MESHGUARD_IDENTITY_UTIL_JSON_LOG_H_

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"

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
  // A JSON number, shortest form that reads back as the same double;
  // NaN and infinities, which JSON cannot hold, as the strings "NaN",
  // "Infinity" and "-Infinity" (as protobuf's JSON printer writes them).
  LogLine& Add(absl::string_view key, double value);
  // Exact, however large.
  LogLine& Add(absl::string_view key, int64_t value);
  LogLine& Add(absl::string_view key, int value) {
    return Add(key, static_cast<int64_t>(value));
  }
  LogLine& Add(absl::string_view key, bool value);
  // RFC 3339 UTC with milliseconds: "2024-01-01T00:00:00.000Z".
  LogLine& AddTime(absl::string_view key, absl::Time value);

  std::string ToJson() const;
  // Writes the line to the process's log stream (stdout by default).
  void Emit() const;

 private:
  // `json` is the value already encoded.
  LogLine& Set(absl::string_view key, std::string json);

  // (key, encoded value), in the order keys were first added.
  std::vector<std::pair<std::string, std::string>> fields_;
};

// Where Emit() writes; default stdout. Not owned. Call before threads start.
void SetLogStream(FILE* stream);

// `text` as a JSON string literal, quotes included.
std::string JsonQuote(absl::string_view text);

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_JSON_LOG_H_
