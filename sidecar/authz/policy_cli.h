// Entry points for `meshguardctl policy check` and `meshguardctl policy
// lint`. They load the file exactly as the sidecar does (LoadPolicyFile:
// YAML -> AuthorizationPolicy -> CompiledPolicy::Compile) and decide with
// the same Evaluate(), so what the CLI prints is what the sidecar does.
//
// Thread-compatible: they only write to `out`.
#ifndef MESHGUARD_SIDECAR_AUTHZ_POLICY_CLI_H_
#define MESHGUARD_SIDECAR_AUTHZ_POLICY_CLI_H_

#include <ostream>
#include <string>
#include <vector>

namespace meshguard::sidecar::authz {

// Exit codes of RunPolicyCheck.
inline constexpr int kCheckAllowed = 0;
inline constexpr int kCheckDenied = 1;
inline constexpr int kCheckError = 2;  // unreadable/invalid policy, bad args

// Decides one call and prints, e.g.
//   DENY by rule "block-legacy"
//   audit: rule "log-orders" (AUDIT) matched
//   dry-run: rule "new-deny" would DENY
// or `ALLOW by default`. `headers` are "key=value" (key lowercased, the value
// may contain '='; a key given twice is an error). Returns kCheckAllowed,
// kCheckDenied or kCheckError (the message then says why).
int RunPolicyCheck(const std::string& policy_file,
                   const std::string& from_spiffe_id, const std::string& method,
                   const std::vector<std::string>& headers, std::ostream& out);

// Prints every finding (YAML errors, including unknown fields, name file,
// line and field) and "N errors, M warnings". Returns 0 when there is no
// error (warnings allowed), 1 otherwise.
int RunPolicyLint(const std::string& policy_file, std::ostream& out);

}  // namespace meshguard::sidecar::authz

#endif  // MESHGUARD_SIDECAR_AUTHZ_POLICY_CLI_H_
