#include "identity/util/json_log.h"

#include "absl/synchronization/mutex.h"
#include "google/protobuf/util/json_util.h"

namespace meshguard::util {
namespace {

absl::Mutex log_mu;
FILE* log_stream = nullptr;

}  // namespace

void SetLogStream(FILE* stream) {
  absl::MutexLock lock(&log_mu);
  log_stream = stream;
}

LogLine::LogLine(absl::string_view level, absl::string_view event) {
  AddTime("time", absl::Now());
  Add("level", level);
  Add("event", event);
}

LogLine& LogLine::Add(absl::string_view key, absl::string_view value) {
  (*fields_.mutable_fields())[std::string(key)].set_string_value(
      std::string(value));
  return *this;
}

LogLine& LogLine::Add(absl::string_view key, double value) {
  (*fields_.mutable_fields())[std::string(key)].set_number_value(value);
  return *this;
}

LogLine& LogLine::Add(absl::string_view key, bool value) {
  (*fields_.mutable_fields())[std::string(key)].set_bool_value(value);
  return *this;
}

LogLine& LogLine::AddTime(absl::string_view key, absl::Time value) {
  return Add(key, absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", value,
                                   absl::UTCTimeZone()));
}

std::string LogLine::ToJson() const {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(fields_, &out, options)
           .ok()) {
    out = R"({"level":"error","event":"log_encoding_failed"})";
  }
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
