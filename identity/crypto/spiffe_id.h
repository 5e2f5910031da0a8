// SPIFFE IDs: parsing and validation per the SPIFFE-ID specification, and
// construction from Kubernetes namespace + service account.
//
// Pure string code: no OpenSSL. Thread-compatible value type.
#ifndef MESHGUARD_IDENTITY_CRYPTO_SPIFFE_ID_H_
#define MESHGUARD_IDENTITY_CRYPTO_SPIFFE_ID_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace meshguard::crypto {

inline constexpr absl::string_view kDefaultTrustDomain = "cluster.local";
// Implementations must accept IDs of at least this many bytes; we accept
// exactly up to it and refuse longer ones.
inline constexpr size_t kMaxSpiffeIdLength = 2048;

class SpiffeId final {
 public:
  // Parses "spiffe://<trust-domain>/<path>". The path must be non-empty
  // (a workload ID). Errors name the rule that failed.
  static absl::StatusOr<SpiffeId> Parse(absl::string_view id);

  // Validates a bare trust domain name ("cluster.local").
  static absl::Status ValidateTrustDomain(absl::string_view trust_domain);

  // spiffe://<trust_domain>/ns/<ns>/sa/<sa>, validating every part.
  static absl::StatusOr<SpiffeId> ForServiceAccount(
      absl::string_view trust_domain, absl::string_view ns,
      absl::string_view sa);

  const std::string& trust_domain() const { return trust_domain_; }
  // The path including its leading '/'.
  const std::string& path() const { return path_; }
  std::string ToString() const;

  // For IDs of the form /ns/<ns>/sa/<sa>; empty otherwise.
  std::string Namespace() const;
  std::string ServiceAccount() const;

  bool MemberOf(absl::string_view trust_domain) const {
    return trust_domain_ == trust_domain;
  }

  friend bool operator==(const SpiffeId& a, const SpiffeId& b) {
    return a.trust_domain_ == b.trust_domain_ && a.path_ == b.path_;
  }
  friend bool operator!=(const SpiffeId& a, const SpiffeId& b) {
    return !(a == b);
  }

 private:
  SpiffeId(std::string trust_domain, std::string path)
      : trust_domain_(std::move(trust_domain)), path_(std::move(path)) {}

  std::string trust_domain_;
  std::string path_;
};

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_SPIFFE_ID_H_
