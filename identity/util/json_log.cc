#include "identity/util/json_log.h"

#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace meshguard::util {
namespace {

absl::Mutex log_mu;
FILE* log_stream = nullptr;

constexpr char kHex[] = "0123456789abcdef";

// The length of the well-formed UTF-8 sequence at the start of `s`
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or 0.
size_t Utf8SequenceLength(absl::string_view s) {
  const unsigned char lead = static_cast<unsigned char>(s[0]);
  size_t length;
  unsigned char min_second = 0x80;
  unsigned char max_second = 0xbf;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    if (lead == 0xe0) min_second = 0xa0;  // overlong
    if (lead == 0xed) max_second = 0x9f;  // surrogates
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    if (lead == 0xf0) min_second = 0x90;  // overlong
    if (lead == 0xf4) max_second = 0x8f;  // above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < length) return 0;
  const unsigned char second = static_cast<unsigned char>(s[1]);
  if (second < min_second || second > max_second) return 0;
  for (size_t i = 2; i < length; ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c < 0x80 || c > 0xbf) return 0;
  }
  return length;
}

void AppendQuoted(absl::string_view text, std::string* out) {
  out->push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= 0x80) {
      const size_t length = Utf8SequenceLength(text.substr(i));
      if (length == 0) {
        out->append("\\ufffd");
        ++i;
      } else {
        out->append(text.data() + i, length);
        i += length;
      }
      continue;
    }
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
    ++i;
  }
  out->push_back('"');
}

// The shortest of %.15g and %.17g that reads back as `value`, as protobuf's
// SimpleDtoa does.
std::string FormatDouble(double value) {
  char buffer[32];
  snprintf(buffer, sizeof(buffer), "%.15g", value);
  if (std::strtod(buffer, nullptr) != value) {
    snprintf(buffer, sizeof(buffer), "%.17g", value);
  }
  return buffer;
}

}  // namespace

void SetLogStream(FILE* stream) {
  absl::MutexLock lock(&log_mu);
  log_stream = stream;
}

std::string JsonQuote(absl::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  AppendQuoted(text, &out);
  return out;
}

LogLine::LogLine(absl::string_view level, absl::string_view event) {
  fields_.reserve(8);
  AddTime("time", absl::Now());
  Add("level", level);
  Add("event", event);
}

LogLine& LogLine::Set(absl::string_view key, std::string json) {
  for (auto& [k, v] : fields_) {
    if (k == key) {
      v = std::move(json);
      return *this;
    }
  }
  fields_.emplace_back(std::string(key), std::move(json));
  return *this;
}

LogLine& LogLine::Add(absl::string_view key, absl::string_view value) {
  return Set(key, JsonQuote(value));
}

LogLine& LogLine::Add(absl::string_view key, double value) {
  if (std::isnan(value)) return Set(key, "\"NaN\"");
  if (std::isinf(value)) {
    return Set(key, value > 0 ? "\"Infinity\"" : "\"-Infinity\"");
  }
  return Set(key, FormatDouble(value));
}

LogLine& LogLine::Add(absl::string_view key, int64_t value) {
  return Set(key, absl::StrCat(value));
}

LogLine& LogLine::Add(absl::string_view key, bool value) {
  return Set(key, value ? "true" : "false");
}

LogLine& LogLine::AddTime(absl::string_view key, absl::Time value) {
  return Add(key, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", value,
                                   absl::UTCTimeZone()));
}

std::string LogLine::ToJson() const {
  size_t size = 2;
  for (const auto& [key, value] : fields_)
    size += key.size() + value.size() + 4;
  std::string out;
  out.reserve(size);
  out.push_back('{');
  for (size_t i = 0; i < fields_.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendQuoted(fields_[i].first, &out);
    out.push_back(':');
    out.append(fields_[i].second);
  }
  out.push_back('}');
  return out;
}

void LogLine::Emit() const {
  std::string line = ToJson();
  line.push_back('\n');
  absl::MutexLock lock(&log_mu);
  FILE* out = log_stream != nullptr ? log_stream : stdout;
  fwrite(line.data(), 1, line.size(), out);
  fflush(out);
}

}  // namespace meshguard::util
