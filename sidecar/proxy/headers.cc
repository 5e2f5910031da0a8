#include "sidecar/proxy/headers.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace meshguard::sidecar::proxy {

bool IsHopByHop(const Header& header) {
  // Runs for every header of every call: the length picks the candidates.
  const std::string_view n = header.name;
  switch (n.size()) {
    case 2:
      return n == "te" && !absl::EqualsIgnoreCase(header.value, "trailers");
    case 7:
      return n == "upgrade";
    case 10:
      return n == "connection" || n == "keep-alive";
    case 16:
      return n == "proxy-connection";
    case 17:
      return n == "transfer-encoding";
    default:
      return false;
  }
}

void RemoveHopByHop(HeaderList& headers) {
  headers.erase(std::remove_if(headers.begin(), headers.end(), IsHopByHop),
                headers.end());
}

std::string_view FindHeader(const HeaderList& headers, std::string_view name) {
  for (const Header& h : headers) {
    if (h.name == name) return h.value;
  }
  return {};
}

void RemoveHeader(HeaderList& headers, std::string_view name) {
  headers.erase(
      std::remove_if(headers.begin(), headers.end(),
                     [name](const Header& h) { return h.name == name; }),
      headers.end());
}

void SetHeader(HeaderList& headers, std::string_view name,
               std::string_view value) {
  RemoveHeader(headers, name);
  headers.push_back({std::string(name), std::string(value)});
}

std::string PercentEncodeGrpcMessage(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c >= 0x20 && c <= 0x7E && c != '%') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xF]);
    }
  }
  return out;
}

HeaderList GrpcStatusTrailers(absl::StatusCode code, std::string_view message) {
  HeaderList h = {{"grpc-status", absl::StrCat(static_cast<int>(code))}};
  if (!message.empty()) {
    h.push_back({"grpc-message", PercentEncodeGrpcMessage(message)});
  }
  return h;
}

HeaderList GrpcTrailersOnly(absl::StatusCode code, std::string_view message) {
  HeaderList h = {{":status", "200"}, {"content-type", "application/grpc"}};
  for (Header& t : GrpcStatusTrailers(code, message)) h.push_back(std::move(t));
  return h;
}

}  // namespace meshguard::sidecar::proxy
