#include "identity/client/grpc_wire.h"

#include <algorithm>

#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace meshguard::client::wire {
namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string FrameMessage(absl::string_view message) {
  const uint32_t n = static_cast<uint32_t>(message.size());
  std::string out;
  out.reserve(kMessagePrefixBytes + message.size());
  out.push_back('\0');
  out.push_back(static_cast<char>((n >> 24) & 0xff));
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  out.append(message.data(), message.size());
  return out;
}

std::string EncodeGrpcTimeout(absl::Duration timeout) {
  constexpr int64_t kMaxValue = 99999999;  // 8 digits
  if (timeout <= absl::ZeroDuration()) return "1n";
  struct Unit {
    absl::Duration size;
    char name;
  };
  const Unit units[] = {
      {absl::Nanoseconds(1), 'n'},  {absl::Microseconds(1), 'u'},
      {absl::Milliseconds(1), 'm'}, {absl::Seconds(1), 'S'},
      {absl::Minutes(1), 'M'},      {absl::Hours(1), 'H'},
  };
  const int64_t ns = absl::ToInt64Nanoseconds(timeout);  // saturates
  for (const Unit& unit : units) {
    const int64_t size = absl::ToInt64Nanoseconds(unit.size);
    const int64_t value = ns / size + (ns % size != 0 ? 1 : 0);
    if (value <= kMaxValue)
      return absl::StrCat(value, std::string(1, unit.name));
  }
  return absl::StrCat(kMaxValue, "H");
}

std::string PercentDecode(absl::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      const int hi = HexValue(in[i + 1]);
      const int lo = HexValue(in[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
        continue;
      }
    }
    out.push_back(in[i]);
  }
  return out;
}

absl::Status StatusFromTrailers(std::optional<absl::string_view> grpc_status,
                                absl::string_view grpc_message) {
  const std::string message = PercentDecode(grpc_message);
  if (!grpc_status.has_value()) {
    return absl::UnknownError(
        message.empty()
            ? "response ended without grpc-status"
            : absl::StrCat("response ended without grpc-status: ", message));
  }
  int code = 0;
  if (grpc_status->empty() || grpc_status->size() > 3 ||
      !std::all_of(grpc_status->begin(), grpc_status->end(),
                   [](char c) { return c >= '0' && c <= '9'; }) ||
      !absl::SimpleAtoi(*grpc_status, &code) || code > 16) {
    return absl::UnknownError(absl::StrCat("invalid grpc-status \"",
                                           absl::CEscape(*grpc_status),
                                           "\": ", message));
  }
  if (code == 0) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(code), message);
}

absl::Status MessageDeframer::Append(absl::string_view data,
                                     const OnMessage& on_message) {
  while (!data.empty()) {
    if (!expected_.has_value()) {
      const size_t want = kMessagePrefixBytes - buffer_.size();
      const size_t take = std::min(want, data.size());
      buffer_.append(data.data(), take);
      data.remove_prefix(take);
      if (buffer_.size() < kMessagePrefixBytes) return absl::OkStatus();
      const auto* p = reinterpret_cast<const unsigned char*>(buffer_.data());
      if (p[0] == 1) {
        return absl::InternalError(
            "compressed message, but no compression was negotiated");
      }
      if (p[0] != 0) {
        return absl::InternalError(
            absl::StrCat("invalid message flag byte ", p[0]));
      }
      const size_t length = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) |
                            (size_t{p[3]} << 8) | size_t{p[4]};
      if (length > max_message_bytes_) {
        return absl::ResourceExhaustedError(absl::StrCat(
            "response message of ", length,
            " bytes is larger than the limit of ", max_message_bytes_));
      }
      expected_ = length;
      buffer_.clear();
      buffer_.reserve(length);
    }
    const size_t take = std::min(*expected_ - buffer_.size(), data.size());
    buffer_.append(data.data(), take);
    data.remove_prefix(take);
    if (buffer_.size() < *expected_) return absl::OkStatus();
    std::string message;
    message.swap(buffer_);
    expected_.reset();
    if (absl::Status s = on_message(message); !s.ok()) return s;
  }
  return absl::OkStatus();
}

}  // namespace meshguard::client::wire
