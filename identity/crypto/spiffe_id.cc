#include "identity/crypto/spiffe_id.h"

#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace meshguard::crypto {
namespace {

constexpr absl::string_view kScheme = "spiffe://";

bool IsTrustDomainChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool IsPathChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

absl::Status Invalid(absl::string_view id, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid SPIFFE ID \"", id.substr(0, 256), "\": ", why));
}

absl::Status ValidatePathSegment(absl::string_view id,
                                 absl::string_view segment) {
  if (segment.empty()) return Invalid(id, "path has an empty segment");
  if (segment == "." || segment == "..") {
    return Invalid(id, "path segment is '.' or '..'");
  }
  for (char c : segment) {
    if (!IsPathChar(c)) {
      return Invalid(id, absl::StrCat("path has a character outside "
                                      "[a-zA-Z0-9.-_]: '",
                                      std::string(1, c), "'"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SpiffeId::ValidateTrustDomain(absl::string_view td) {
  if (td.empty()) {
    return absl::InvalidArgumentError("trust domain is empty");
  }
  if (td.size() > 255) {
    return absl::InvalidArgumentError("trust domain is longer than 255 bytes");
  }
  for (char c : td) {
    if (c == ':') {
      return absl::InvalidArgumentError(
          absl::StrCat("trust domain \"", td, "\" has a port"));
    }
    if (c == '@') {
      return absl::InvalidArgumentError(
          absl::StrCat("trust domain \"", td, "\" has userinfo"));
    }
    if (c == '%') {
      return absl::InvalidArgumentError(
          absl::StrCat("trust domain \"", td, "\" is percent-encoded"));
    }
    if (c >= 'A' && c <= 'Z') {
      return absl::InvalidArgumentError(
          absl::StrCat("trust domain \"", td, "\" has uppercase letters"));
    }
    if (!IsTrustDomainChar(c)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "trust domain \"", td, "\" has a character outside [a-z0-9.-_]"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<SpiffeId> SpiffeId::Parse(absl::string_view id) {
  if (id.empty()) return Invalid(id, "empty");
  if (id.size() > kMaxSpiffeIdLength) {
    return Invalid(id,
                   absl::StrCat("longer than ", kMaxSpiffeIdLength, " bytes"));
  }
  if (id.substr(0, kScheme.size()) != kScheme) {
    // Distinguish a wrong-case scheme from another scheme for the message.
    std::string prefix(id.substr(0, kScheme.size()));
    for (char& c : prefix) c = static_cast<char>(std::tolower(c));
    if (prefix == kScheme) return Invalid(id, "scheme must be lowercase");
    return Invalid(id, "scheme is not spiffe://");
  }
  absl::string_view rest = id.substr(kScheme.size());
  size_t slash = rest.find('/');
  absl::string_view td = rest.substr(0, slash);
  if (td.empty()) return Invalid(id, "trust domain is empty");
  if (absl::Status s = ValidateTrustDomain(td); !s.ok()) {
    return Invalid(id, s.message());
  }
  if (slash == absl::string_view::npos || slash == rest.size() - 1) {
    if (slash == rest.size() - 1) {
      return Invalid(id, "path has a trailing '/'");
    }
    return Invalid(id, "path is empty (a workload ID needs one)");
  }
  absl::string_view path = rest.substr(slash);
  if (path.find_first_of("?#") != absl::string_view::npos) {
    return Invalid(id, "has a query or fragment");
  }
  if (path.back() == '/') return Invalid(id, "path has a trailing '/'");
  for (absl::string_view segment : absl::StrSplit(path.substr(1), '/')) {
    if (absl::Status s = ValidatePathSegment(id, segment); !s.ok()) return s;
  }
  return SpiffeId(std::string(td), std::string(path));
}

absl::StatusOr<SpiffeId> SpiffeId::ForServiceAccount(
    absl::string_view trust_domain, absl::string_view ns,
    absl::string_view sa) {
  if (ns.empty()) return absl::InvalidArgumentError("namespace is empty");
  if (sa.empty()) {
    return absl::InvalidArgumentError("service account is empty");
  }
  if (ns.find('/') != absl::string_view::npos ||
      sa.find('/') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        "namespace and service account must not contain '/'");
  }
  return Parse(absl::StrCat(kScheme, trust_domain, "/ns/", ns, "/sa/", sa));
}

std::string SpiffeId::ToString() const {
  return absl::StrCat(kScheme, trust_domain_, path_);
}

std::string SpiffeId::Namespace() const {
  std::vector<absl::string_view> parts = absl::StrSplit(path_, '/');
  // "/ns/x/sa/y" splits into "", "ns", "x", "sa", "y".
  if (parts.size() == 5 && parts[1] == "ns" && parts[3] == "sa") {
    return std::string(parts[2]);
  }
  return "";
}

std::string SpiffeId::ServiceAccount() const {
  std::vector<absl::string_view> parts = absl::StrSplit(path_, '/');
  if (parts.size() == 5 && parts[1] == "ns" && parts[3] == "sa") {
    return std::string(parts[4]);
  }
  return "";
}

}  // namespace meshguard::crypto
