// Static checks on an AuthorizationPolicy, for `meshguardctl policy lint`
// and CI: everything Compile() refuses (errors), plus rules that can never
// take effect and policies that allow everything (warnings).
//
// The coverage analysis is conservative: a warning means the rule really is
// unreachable or redundant; some unreachable rules (e.g. covered only by a
// combination of DENY rules) are not reported.
//
// Pure functions, thread-safe.
#ifndef MESHGUARD_SIDECAR_AUTHZ_POLICY_LINT_H_
#define MESHGUARD_SIDECAR_AUTHZ_POLICY_LINT_H_

#include <ostream>
#include <string>
#include <vector>

#include "proto/policy.pb.h"

namespace meshguard::sidecar::authz {

enum class LintSeverity { kWarning, kError };

struct LintFinding {
  LintSeverity severity;
  // A stable identifier for the check:
  //   invalid            Compile() refuses the policy (error)
  //   unreachable-allow  an ALLOW rule whose every match a DENY rule denies
  //   shadowed-rule      a rule an earlier rule of the same action covers:
  //                      it never decides
  //   deny-all           a DENY rule matching every call
  //   allow-all          no enforcing rule and default_action ALLOW
  //   redundant-allow    an ALLOW rule under default_action ALLOW
  //   audit-dry-run      dry_run on an AUDIT rule (no effect)
  std::string code;
  // Index of the rule concerned, -1 for the policy as a whole.
  int rule_index;
  std::string message;
};

std::vector<LintFinding> Lint(
    const ::meshguard::policy::v1::AuthorizationPolicy& policy);

bool HasErrors(const std::vector<LintFinding>& findings);

// "error: rules[2] ...: message" / "warning: ...".
std::ostream& operator<<(std::ostream& out, const LintFinding& finding);

}  // namespace meshguard::sidecar::authz

#endif  // MESHGUARD_SIDECAR_AUTHZ_POLICY_LINT_H_
