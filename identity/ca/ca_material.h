// The CA's key material on disk: creating it (`meshguard-ca init`) and
// loading it to serve (`meshguard-ca serve`).
//
// Data directory layout (keys 0600, everything else 0644):
//   root.pem, root-key.pem                 the self-signed root
//   intermediate.pem, intermediate-key.pem the signing CA (signs leaves, CRLs)
//   bundle.pem                             trusted roots handed to workloads
//   meshguard-ca.db                        the issuance log (SQLite)
//   admin.sock                             the admin API's Unix socket
// Serving needs only the intermediate and bundle.pem; the root key can stay
// offline after init.
#ifndef MESHGUARD_IDENTITY_CA_CA_MATERIAL_H_
#define MESHGUARD_IDENTITY_CA_CA_MATERIAL_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "identity/crypto/ca_signer.h"
#include "identity/util/config_origins.h"
#include "proto/config.pb.h"

namespace meshguard::ca {

inline constexpr char kRootCertFile[] = "root.pem";
inline constexpr char kRootKeyFile[] = "root-key.pem";
inline constexpr char kIntermediateCertFile[] = "intermediate.pem";
inline constexpr char kIntermediateKeyFile[] = "intermediate-key.pem";
inline constexpr char kBundleFile[] = "bundle.pem";
inline constexpr char kDatabaseFile[] = "meshguard-ca.db";
inline constexpr char kAdminSocketFile[] = "admin.sock";
// Held (flock) by the serving meshguard-ca; its pid inside.
inline constexpr char kLockFile[] = "ca.lock";

struct InitOptions {
  std::string data_dir;
  std::string trust_domain = "cluster.local";
  absl::Duration root_ttl = absl::Hours(24 * 365 * 10);
  absl::Duration intermediate_ttl = absl::Hours(24 * 365);
  absl::Time now = absl::Now();
};

// The certificates InitDataDir issued: their expiry as signed (an
// intermediate never outlives its root, so a longer intermediate_ttl is
// cut to the root's).
struct InitResult {
  absl::Time root_not_after;
  absl::Time intermediate_not_after;
};

// Creates a root and an intermediate (ECDSA P-256) and bundle.pem in
// data_dir. Refuses (ALREADY_EXISTS, naming the file) if any key or
// certificate is already there; never overwrites.
absl::StatusOr<InitResult> InitDataDir(const InitOptions& options);

// Fills every unset field of `config` with its documented default.
void ApplyCaDefaults(meshguard::config::v1::CaConfig* config);

// Checks a defaulted config; errors name the field and, from `origins`,
// where its value came from: the config file and line, or the flag.
absl::Status ValidateCaConfig(
    const meshguard::config::v1::CaConfig& config,
    const util::ConfigOrigins& origins = util::ConfigOrigins());

struct CaMaterial {
  std::unique_ptr<crypto::CaSigner> signer;
  // PEM of every trusted root (bundle file + extra bundle files), one
  // certificate per entry, de-duplicated.
  std::vector<std::string> root_pems;
  std::string intermediate_pem;
  absl::Time earliest_root_expiry;
  absl::Time intermediate_not_after;
};

// The trust domain the signing certificate certifies (its URI SAN
// "spiffe://TD", as `meshguard-ca init` writes it), or "" if the file cannot
// be read or names none (LoadCaMaterial reports an unreadable file).
std::string SigningCertificateTrustDomain(
    const meshguard::config::v1::CaConfig& config);

// Refuses a data dir that every user may write to, and a signing key that
// every user may read (FAILED_PRECONDITION naming the path and its mode).
// Group access is allowed (Kubernetes fsGroup). LoadCaMaterial calls it.
absl::Status CheckDataDirAndKeyModes(
    const meshguard::config::v1::CaConfig& config);

// Loads the signing certificate and key and the trust bundle named by a
// defaulted config. Checks that the signing certificate chains to a root of
// the bundle and that the key matches it; errors name the file.
absl::StatusOr<CaMaterial> LoadCaMaterial(
    const meshguard::config::v1::CaConfig& config);

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_CA_MATERIAL_H_
