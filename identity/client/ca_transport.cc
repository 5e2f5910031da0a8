#include "identity/client/ca_transport.h"

#include "absl/strings/str_cat.h"
#include "identity/crypto/certificate.h"
#include "identity/util/file_util.h"

namespace meshguard::client {

absl::Status ValidateCaClientOptions(const CaClientOptions& options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("CA address is empty");
  }
  if (options.ca_bundle_pem.empty()) {
    return absl::InvalidArgumentError(
        "CA bundle is empty: the roots that authenticate the CA are required");
  }
  absl::StatusOr<std::vector<crypto::X509Ptr>> roots =
      crypto::ParseCertificateChainPem(options.ca_bundle_pem);
  if (!roots.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CA bundle: ", roots.status().message()));
  }
  return absl::OkStatus();
}

std::string IssuedCertificate::ChainPem() const {
  std::string out;
  for (const std::string& pem : chain_pem) absl::StrAppend(&out, pem);
  return out;
}

absl::Status IssuedCertificate::WriteFiles(const std::string& dir) const {
  return util::ReplaceFiles(dir, {{"key.pem", key_pem, 0600},
                                  {"cert.pem", ChainPem(), 0644},
                                  {"bundle.pem", BundlePem(), 0644}});
}

std::string IssuedCertificate::BundlePem() const {
  std::string out;
  for (const std::string& pem : bundle.root_certificates_pem()) {
    absl::StrAppend(&out, pem);
  }
  return out;
}

}  // namespace meshguard::client
