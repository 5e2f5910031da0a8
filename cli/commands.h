// meshguardctl's commands. Each returns the process exit code and writes
// results to stdout, errors to stderr.
#ifndef MESHGUARD_CLI_COMMANDS_H_
#define MESHGUARD_CLI_COMMANDS_H_

#include <string>
#include <vector>

#include "absl/time/time.h"

namespace meshguard::cli {

struct GlobalOptions {
  std::string ca_address;
  std::string ca_bundle_file;
  std::string ca_server_name;
  std::string admin_socket;
  // mTLS identity for admin calls over the network (instead of the socket).
  std::string cert_file;
  std::string key_file;
};

int CertRequest(const GlobalOptions& g, const std::string& token,
                const std::string& token_file, const std::string& join_token,
                const std::string& out_dir, absl::Duration ttl);
int CertRenew(const GlobalOptions& g, const std::string& cert_file,
              const std::string& key_file, const std::string& out_dir,
              absl::Duration ttl);
int CertInspect(const std::string& file);
int BundleFetch(const GlobalOptions& g, const std::string& out_dir);

struct VerifyArgs {
  std::string bundle_file;
  std::string chain_file;
  std::string crl_file;
  std::string at;  // RFC 3339; empty = now
  std::string trust_domain;
  bool path_only = false;
};
int Verify(const VerifyArgs& args);

int TokenCreate(const GlobalOptions& g, const std::string& spiffe_id,
                absl::Duration ttl);
int Revoke(const GlobalOptions& g, const std::string& serial,
           const std::string& spiffe_id, const std::string& reason);
int List(const GlobalOptions& g, const std::string& spiffe_id, bool live_only);

}  // namespace meshguard::cli

#endif  // MESHGUARD_CLI_COMMANDS_H_
