// SpiffeId::Parse on arbitrary bytes (IDs arrive in certificates' URI SANs,
// CSRs, tokens' claims and config). Invariants: whatever parses prints back
// to the same bytes and parses again to an equal ID; the parts obey the
// SPIFFE rules the parser claims to enforce.
#include <cstddef>
#include <cstdint>
#include <string>

#include "identity/crypto/spiffe_id.h"
#include "tests/fuzz/fuzz_check.h"

using meshguard::crypto::SpiffeId;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse(input);
  if (!id.ok()) {
    FUZZ_CHECK(!id.status().message().empty());
    return 0;
  }
  FUZZ_CHECK(id->ToString() == input);
  FUZZ_CHECK(input.size() <= meshguard::crypto::kMaxSpiffeIdLength);
  FUZZ_CHECK(SpiffeId::ValidateTrustDomain(id->trust_domain()).ok());
  FUZZ_CHECK(!id->path().empty() && id->path()[0] == '/');
  FUZZ_CHECK(id->path().back() != '/');
  FUZZ_CHECK(id->path().find("//") == std::string::npos);
  absl::StatusOr<SpiffeId> again = SpiffeId::Parse(id->ToString());
  FUZZ_CHECK(again.ok() && *again == *id);
  FUZZ_CHECK(id->MemberOf(id->trust_domain()));

  // Namespace and service account exist together, for /ns/<ns>/sa/<sa>
  // only, and rebuild the same ID.
  const std::string ns = id->Namespace();
  const std::string sa = id->ServiceAccount();
  FUZZ_CHECK(ns.empty() == sa.empty());
  if (!ns.empty()) {
    absl::StatusOr<SpiffeId> rebuilt =
        SpiffeId::ForServiceAccount(id->trust_domain(), ns, sa);
    FUZZ_CHECK(rebuilt.ok() && *rebuilt == *id);
  }
  return 0;
}
