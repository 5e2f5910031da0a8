#include "sidecar/authz/policy_cli.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "identity/util/file_util.h"
#include "identity/util/yaml_config.h"
#include "sidecar/authz/policy.h"
#include "sidecar/authz/policy_lint.h"
#include "sidecar/authz/policy_source.h"

namespace meshguard::sidecar::authz {

int RunPolicyCheck(const std::string& policy_file,
                   const std::string& from_spiffe_id, const std::string& method,
                   const std::vector<std::string>& headers, std::ostream& out) {
  // A key given twice is a header sent twice, as the sidecar sees it.
  StaticHeaderMap header_map;
  for (const std::string& kv : headers) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      out << "error: header \"" << kv << "\" is not key=value\n";
      return kCheckError;
    }
    header_map.Add(absl::AsciiStrToLower(kv.substr(0, eq)), kv.substr(eq + 1));
  }
  if (policy_file.empty()) {
    out << "error: no policy file given\n";
    return kCheckError;
  }
  if (!IsCanonicalGrpcMethodPath(method)) {
    out << "error: --method \"" << method
        << "\" is not a gRPC method (/package.Service/Method); the sidecar "
           "refuses such a :path before the policy\n";
    return kCheckError;
  }
  absl::StatusOr<std::shared_ptr<const CompiledPolicy>> policy =
      LoadPolicyFile(policy_file);
  if (!policy.ok()) {
    out << "error: " << policy.status().message() << "\n";
    return kCheckError;
  }
  Decision d =
      (*policy)->Evaluate(Request{from_spiffe_id, method, &header_map});
  out << (d.allowed ? "ALLOW" : "DENY");
  if (d.rule_index < 0) {
    out << " by default\n";
  } else {
    out << " by rule \"" << d.rule << "\"\n";
  }
  for (const AuditMatch& m : d.audit_matches) {
    if (m.dry_run) {
      out << "dry-run: rule \"" << m.rule << "\" would "
          << ::meshguard::policy::v1::Action_Name(m.action) << "\n";
    } else {
      out << "audit: rule \"" << m.rule << "\" (AUDIT) matched\n";
    }
  }
  return d.allowed ? kCheckAllowed : kCheckDenied;
}

int RunPolicyLint(const std::string& policy_file, std::ostream& out) {
  // Unknown fields, malformed YAML and an empty file are errors of the
  // loader (the sidecar refuses them the same way), with line.
  absl::StatusOr<std::string> contents =
      util::ReadFile(policy_file, util::kMaxYamlConfigBytes);
  absl::StatusOr<AuthorizationPolicy> policy =
      contents.ok() ? ParsePolicyYaml(*contents, policy_file)
                    : absl::StatusOr<AuthorizationPolicy>(contents.status());
  if (!policy.ok()) {
    out << "error [invalid]: " << policy.status().message()
        << "\n1 error, 0 warnings\n";
    return 1;
  }
  std::vector<LintFinding> findings = Lint(*policy);
  int errors = 0, warnings = 0;
  for (const LintFinding& f : findings) {
    out << policy_file << ": " << f << "\n";
    ++(f.severity == LintSeverity::kError ? errors : warnings);
  }
  out << errors << (errors == 1 ? " error, " : " errors, ") << warnings
      << (warnings == 1 ? " warning\n" : " warnings\n");
  return errors == 0 ? 0 : 1;
}

}  // namespace meshguard::sidecar::authz
