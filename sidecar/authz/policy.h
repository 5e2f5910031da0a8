// The authorization engine: an AuthorizationPolicy (proto/policy.proto),
// validated once into an immutable CompiledPolicy, and a pure Evaluate()
// that decides one inbound call from the caller's SPIFFE ID, the gRPC method
// and the request metadata.
//
// Semantics (also in sidecar/authz/README.md):
//   1. Enforcing rules are those with action ALLOW or DENY and dry_run false.
//      DENY rules are tried first, in policy order: the first DENY rule that
//      matches decides (denied). Then ALLOW rules, in policy order: the first
//      one that matches decides (allowed). Otherwise default_action decides
//      (unset means DENY) and Decision::rule is "default". So a DENY beats an
//      ALLOW wherever each of them sits in the file.
//   2. AUDIT rules and rules with dry_run never change the outcome. Every one
//      of them that matches is reported in Decision::audit_matches (policy
//      order) with what it would have done, for the caller to log and count.
//   3. A rule matches when its `from`, its `to` and all its `when` conditions
//      match. An unset or empty `from` / `to` matches every caller / method.
//   4. Source: every non-empty positive list (principals, namespaces,
//      trust_domains) has a matching entry, and no not_ list has one.
//      Entries are exact strings, "prefix*" or "*". The namespace is the <ns>
//      of spiffe://<td>/ns/<ns>/sa/<sa>; the trust domain is <td>.
//      A peer ID that is not a valid SPIFFE ID (including the empty string)
//      matches no principal / namespace / trust-domain entry except "*"; a
//      valid ID without the /ns/<ns>/sa/<sa> shape has no namespace and
//      matches no namespace entry except "*". "*" matches any peer: the
//      engine assumes the listener has already authenticated it (mTLS).
//   5. Destination: methods are "/pkg.Service/Method" (exact),
//      "/pkg.Service/*" (every method of the service) or "*".
//   6. HeaderCondition: the header (lowercase name) is present and, when
//      `values` is non-empty, its value equals one of them exactly. An
//      absent header fails the condition. A header sent more than once is
//      read value by value, to the caller's disadvantage: in a DENY or
//      AUDIT rule (or a dry-run DENY) the condition holds if any value
//      matches, in an ALLOW rule only if every value does. (Joining the
//      values with "," would let a second copy escape a DENY condition
//      while the app still saw the value it names.)
//
// Validation (Compile) refuses, naming the rule index, the rule name and the
// field: an empty or duplicate rule name, the reserved name "default", an
// unset action, an empty list entry, a '*' anywhere but at the end, an exact
// principal that is not a valid SPIFFE ID, a principal prefix not starting
// with "spiffe://", malformed methods, invalid trust domains or namespaces,
// header names that are not lowercase gRPC metadata keys, and an AUDIT
// default_action.
//
// Speed: rules are indexed by exact method, by service ("/pkg.Service/*")
// and by exact principal; only the candidate lists for the request and the
// rules with other entries are examined, in policy order, so the result is
// identical to trying every rule (EvaluateUnindexed, kept for tests).
//
// Threading: a CompiledPolicy is immutable after Compile; Evaluate() is
// const, allocation-light and safe from any number of threads. Decision
// holds string_views into the CompiledPolicy: keep the policy (its
// shared_ptr) alive while the decision is used.
//
// No gRPC, no OpenSSL here: the adapter from a gRPC call to a Request lives
// with the listener.
#ifndef MESHGUARD_SIDECAR_AUTHZ_POLICY_H_
#define MESHGUARD_SIDECAR_AUTHZ_POLICY_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/policy.pb.h"

namespace meshguard::sidecar::authz {

using ::meshguard::policy::v1::Action;
using ::meshguard::policy::v1::AuthorizationPolicy;

// The name Decision::rule carries when default_action decided; reserved,
// so no rule may use it.
inline constexpr absl::string_view kDefaultRuleName = "default";

// Request metadata by lowercase key, every value of a key that was sent
// more than once (see semantics 6 above for how conditions read them).
// Implementations must be safe to call from the evaluating thread for the
// duration of Evaluate().
class HeaderMap {
 public:
  virtual ~HeaderMap() = default;
  // Calls `fn` with each value of `lowercase_name`, in order, until it
  // returns false. No call when the key is absent.
  virtual void ForEachValue(
      absl::string_view lowercase_name,
      absl::FunctionRef<bool(absl::string_view)> fn) const = 0;
};

// A HeaderMap over owned strings, for tests, the CLI and simple adapters.
class StaticHeaderMap final : public HeaderMap {
 public:
  StaticHeaderMap() = default;
  // Each pair is one value; a name may repeat.
  explicit StaticHeaderMap(
      std::vector<std::pair<std::string, std::string>> headers);
  // Replaces every previous value of `name` (stored as given; pass
  // lowercase).
  void Set(std::string name, std::string value);
  // One more value of `name`.
  void Add(std::string name, std::string value);
  void ForEachValue(
      absl::string_view lowercase_name,
      absl::FunctionRef<bool(absl::string_view)> fn) const override;

 private:
  std::vector<std::pair<std::string, std::string>> headers_;
};

// Whether `path` is a gRPC method path in its one canonical spelling,
// "/pkg.Service/Method": a leading '/', a service name of letters, digits,
// '_' and '.' (not leading, trailing or doubled), one '/', and a method name
// of letters, digits and '_'. Rules match the path byte for byte, while an
// application's router may decode %xx, drop a query or a trailing '/',
// collapse "//" or resolve "..": a path in any other spelling could be
// refused under one name by the policy and run under another by the app.
// The inbound listener refuses such calls before evaluating the policy.
bool IsCanonicalGrpcMethodPath(absl::string_view path);

struct Request {
  // The caller's authenticated SPIFFE ID (URI SAN of its certificate).
  absl::string_view peer_spiffe_id;
  // The gRPC method, "/pkg.Service/Method".
  absl::string_view method;
  // Null means "no metadata": every `when` condition fails.
  const HeaderMap* headers = nullptr;
};

// An AUDIT or dry_run rule that matched.
struct AuditMatch {
  absl::string_view rule;
  // What the rule would have done: AUDIT, or the dry_run rule's ALLOW/DENY.
  Action action;
  bool dry_run;

  friend bool operator==(const AuditMatch& a, const AuditMatch& b) {
    return a.rule == b.rule && a.action == b.action && a.dry_run == b.dry_run;
  }
  // For test failure messages.
  friend std::ostream& operator<<(std::ostream& out, const AuditMatch& m) {
    return out << m.rule << ":" << (m.dry_run ? "dry_run:" : "")
               << ::meshguard::policy::v1::Action_Name(m.action);
  }
};

struct Decision {
  bool allowed = false;
  // The deciding rule's name, or kDefaultRuleName.
  absl::string_view rule = kDefaultRuleName;
  // Index of the deciding rule in the policy; -1 for the default.
  int rule_index = -1;
  // AUDIT and dry_run rules that matched, in policy order.
  std::vector<AuditMatch> audit_matches;
};

// A validation problem; rule_index is -1 for policy-level fields.
struct PolicyError {
  int rule_index;
  absl::Status status;
};

// Every problem Compile() would refuse, in policy order (Compile reports
// the first). Messages look like
//   rules[2] "orders-read": field "from.principals[0]": ...
std::vector<PolicyError> FindPolicyErrors(const AuthorizationPolicy& policy);

// The policy in force when no policy file is configured: every peer whose
// SPIFFE ID is in `trust_domain` is allowed, everyone else denied (rule
// "builtin-allow-trust-domain", default DENY).
AuthorizationPolicy BuiltinTrustDomainPolicy(absl::string_view trust_domain);

class CompiledPolicy final {
 public:
  // Validates and indexes `policy`. `source` (usually the file path)
  // prefixes error messages when non-empty. Errors are InvalidArgument.
  static absl::StatusOr<std::shared_ptr<const CompiledPolicy>> Compile(
      const AuthorizationPolicy& policy, absl::string_view source = "");

  CompiledPolicy(const CompiledPolicy&) = delete;
  CompiledPolicy& operator=(const CompiledPolicy&) = delete;
  ~CompiledPolicy();

  // The decision for `request`, using the indexes.
  Decision Evaluate(const Request& request) const;

  // The same decision by trying every rule in order. Reference
  // implementation for tests; O(rules).
  Decision EvaluateUnindexed(const Request& request) const;

  // ALLOW or DENY (an unset default_action is DENY).
  Action default_action() const { return default_action_; }
  size_t rule_count() const;

 private:
  struct Rule;
  struct PeerInfo;
  struct Index;

  CompiledPolicy();

  bool RuleMatches(const Rule& rule, const Request& request,
                   PeerInfo& peer) const;
  void Decide(const Rule& rule, int index, Decision& d) const;

  Action default_action_;
  std::vector<Rule> rules_;
  std::unique_ptr<Index> index_;
};

}  // namespace meshguard::sidecar::authz

#endif  // MESHGUARD_SIDECAR_AUTHZ_POLICY_H_
