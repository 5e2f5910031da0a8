#include "sidecar/authz/policy_lint.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "sidecar/authz/policy.h"

namespace meshguard::sidecar::authz {
namespace {

namespace pb = ::meshguard::policy::v1;
using List = google::protobuf::RepeatedPtrField<std::string>;

bool IsPrefix(const std::string& e) { return !e.empty() && e.back() == '*'; }
absl::string_view PrefixOf(const std::string& e) {
  return absl::string_view(e).substr(0, e.size() - 1);
}

// An empty list and a list holding "*" both match everything.
bool MatchesAll(const List& list) {
  return list.empty() || std::find(list.begin(), list.end(), "*") != list.end();
}

// Every value `b` matches, `a` matches too.
bool EntryCovers(const std::string& a, const std::string& b) {
  if (a == "*") return true;
  if (b == "*") return false;
  if (IsPrefix(a)) {
    return absl::StartsWith(IsPrefix(b) ? PrefixOf(b) : b, PrefixOf(a));
  }
  return !IsPrefix(b) && a == b;
}

// Some value matches both.
bool EntriesOverlap(const std::string& a, const std::string& b) {
  if (a == "*" || b == "*") return true;
  if (IsPrefix(a) && IsPrefix(b)) {
    return absl::StartsWith(PrefixOf(a), PrefixOf(b)) ||
           absl::StartsWith(PrefixOf(b), PrefixOf(a));
  }
  if (IsPrefix(a)) return absl::StartsWith(b, PrefixOf(a));
  if (IsPrefix(b)) return absl::StartsWith(a, PrefixOf(b));
  return a == b;
}

// Whatever satisfies `inner` (a positive list) satisfies `outer`.
bool ListCovers(const List& outer, const List& inner) {
  if (MatchesAll(outer)) return true;
  if (MatchesAll(inner)) return false;
  return std::all_of(inner.begin(), inner.end(), [&](const std::string& b) {
    return std::any_of(outer.begin(), outer.end(),
                       [&](const std::string& a) { return EntryCovers(a, b); });
  });
}

// Nothing that satisfies `inner` is excluded by `outer_not`.
bool NotListSpares(const List& outer_not, const List& inner) {
  if (outer_not.empty()) return true;
  if (MatchesAll(inner)) return false;
  return std::none_of(inner.begin(), inner.end(), [&](const std::string& b) {
    return std::any_of(
        outer_not.begin(), outer_not.end(),
        [&](const std::string& a) { return EntriesOverlap(a, b); });
  });
}

bool DimensionCovers(const List& outer, const List& outer_not,
                     const List& inner) {
  return ListCovers(outer, inner) && NotListSpares(outer_not, inner);
}

// Every condition of `outer` is implied by a condition of `inner`.
bool ConditionsCover(const pb::Rule& outer, const pb::Rule& inner) {
  for (const pb::HeaderCondition& o : outer.when()) {
    bool implied = false;
    for (const pb::HeaderCondition& i : inner.when()) {
      if (i.header() != o.header()) continue;
      if (o.values().empty() ||
          (!i.values().empty() &&
           std::all_of(
               i.values().begin(), i.values().end(), [&](const std::string& v) {
                 return std::find(o.values().begin(), o.values().end(), v) !=
                        o.values().end();
               }))) {
        implied = true;
        break;
      }
    }
    if (!implied) return false;
  }
  return true;
}

// Every call `inner` matches, `outer` matches too.
bool RuleCovers(const pb::Rule& outer, const pb::Rule& inner) {
  const pb::Source& o = outer.from();
  const pb::Source& i = inner.from();
  return DimensionCovers(o.principals(), o.not_principals(), i.principals()) &&
         DimensionCovers(o.namespaces(), o.not_namespaces(), i.namespaces()) &&
         DimensionCovers(o.trust_domains(), o.not_trust_domains(),
                         i.trust_domains()) &&
         DimensionCovers(outer.to().methods(), outer.to().not_methods(),
                         inner.to().methods()) &&
         ConditionsCover(outer, inner);
}

bool MatchesEveryCall(const pb::Rule& r) {
  const pb::Source& f = r.from();
  return MatchesAll(f.principals()) && MatchesAll(f.namespaces()) &&
         MatchesAll(f.trust_domains()) && f.not_principals().empty() &&
         f.not_namespaces().empty() && f.not_trust_domains().empty() &&
         MatchesAll(r.to().methods()) && r.to().not_methods().empty() &&
         r.when().empty();
}

bool Enforcing(const pb::Rule& r, pb::Action action) {
  return !r.dry_run() && r.action() == action;
}

std::string RuleRef(int index, const pb::Rule& r) {
  return absl::StrCat("rules[", index, "] \"", r.name(), "\"");
}

}  // namespace

std::vector<LintFinding> Lint(const AuthorizationPolicy& policy) {
  std::vector<LintFinding> out;
  absl::flat_hash_set<int> invalid_rules;
  for (PolicyError& e : FindPolicyErrors(policy)) {
    out.push_back(LintFinding{LintSeverity::kError, "invalid", e.rule_index,
                              std::string(e.status.message())});
    invalid_rules.insert(e.rule_index);
  }
  auto warn = [&](const char* code, int index, std::string message) {
    out.push_back(
        LintFinding{LintSeverity::kWarning, code, index, std::move(message)});
  };

  const auto& rules = policy.rules();
  const bool default_allow = policy.default_action() == pb::ALLOW;
  bool any_deny = false;
  for (int j = 0; j < rules.size(); ++j) {
    const pb::Rule& r = rules[j];
    if (Enforcing(r, pb::DENY)) any_deny = true;
    if (r.action() == pb::AUDIT && r.dry_run()) {
      warn("audit-dry-run", j,
           absl::StrCat(RuleRef(j, r),
                        ": dry_run has no effect on an AUDIT rule"));
    }
    if (invalid_rules.contains(j)) continue;
    if (Enforcing(r, pb::DENY) && MatchesEveryCall(r)) {
      warn("deny-all", j,
           absl::StrCat(RuleRef(j, r),
                        ": denies every call; no ALLOW rule and no default "
                        "can take effect"));
    }
    if (default_allow && Enforcing(r, pb::ALLOW)) {
      warn("redundant-allow", j,
           absl::StrCat(RuleRef(j, r),
                        ": has no effect, default_action is already ALLOW"));
    }

    if (!Enforcing(r, pb::ALLOW) && !Enforcing(r, pb::DENY)) continue;
    bool reported = false;
    // DENY rules are tried before every ALLOW rule, wherever they sit.
    if (Enforcing(r, pb::ALLOW)) {
      for (int i = 0; i < rules.size() && !reported; ++i) {
        if (invalid_rules.contains(i) || !Enforcing(rules[i], pb::DENY)) {
          continue;
        }
        if (RuleCovers(rules[i], r)) {
          warn("unreachable-allow", j,
               absl::StrCat(RuleRef(j, r), ": can never allow: DENY rule ",
                            RuleRef(i, rules[i]),
                            " matches every call it matches"));
          reported = true;
        }
      }
    }
    for (int i = 0; i < j && !reported; ++i) {
      if (invalid_rules.contains(i) || !Enforcing(rules[i], r.action())) {
        continue;
      }
      if (RuleCovers(rules[i], r)) {
        warn("shadowed-rule", j,
             absl::StrCat(RuleRef(j, r), ": never decides: earlier ",
                          pb::Action_Name(r.action()), " rule ",
                          RuleRef(i, rules[i]),
                          " matches every call it matches"));
        reported = true;
      }
    }
    if (!reported && !default_allow && Enforcing(r, pb::ALLOW) &&
        MatchesEveryCall(r)) {
      warn("allow-all", j,
           absl::StrCat(RuleRef(j, r),
                        ": allows every call from every peer (no from, to or "
                        "when); only DENY rules still refuse anything"));
    }
  }
  if (default_allow && !any_deny) {
    warn("allow-all", -1,
         "allows every call: default_action is ALLOW and no DENY rule is "
         "enforced");
  }
  std::stable_sort(out.begin(), out.end(),
                   [](const LintFinding& a, const LintFinding& b) {
                     return a.rule_index < b.rule_index;
                   });
  return out;
}

bool HasErrors(const std::vector<LintFinding>& findings) {
  return std::any_of(
      findings.begin(), findings.end(),
      [](const LintFinding& f) { return f.severity == LintSeverity::kError; });
}

std::ostream& operator<<(std::ostream& out, const LintFinding& f) {
  return out << (f.severity == LintSeverity::kError ? "error" : "warning")
             << " [" << f.code << "]: " << f.message;
}

}  // namespace meshguard::sidecar::authz
