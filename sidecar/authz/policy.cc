#include "sidecar/authz/policy.h"

#include <algorithm>
#include <limits>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/spiffe_id.h"

namespace meshguard::sidecar::authz {

bool IsCanonicalGrpcMethodPath(absl::string_view path) {
  if (path.size() < 4 || path[0] != '/') return false;
  const size_t slash = path.find('/', 1);
  if (slash == absl::string_view::npos) return false;
  const absl::string_view service = path.substr(1, slash - 1);
  const absl::string_view method = path.substr(slash + 1);
  if (service.empty() || method.empty()) return false;
  auto word_char = [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '_';
  };
  for (size_t i = 0; i < service.size(); ++i) {
    const char c = service[i];
    if (c == '.') {
      if (i == 0 || i + 1 == service.size() || service[i - 1] == '.') {
        return false;
      }
    } else if (!word_char(c)) {
      return false;
    }
  }
  return std::all_of(method.begin(), method.end(), word_char);
}
namespace {

using ::meshguard::crypto::SpiffeId;
namespace pb = ::meshguard::policy::v1;

constexpr absl::string_view kSpiffeScheme = "spiffe://";
// Lists longer than this are matched through a hash set.
constexpr size_t kLinearScanMax = 8;

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }
// Characters of a SPIFFE path segment (identity/crypto/spiffe_id.cc).
bool IsSegmentChar(char c) {
  return IsAlnum(c) || c == '.' || c == '-' || c == '_';
}
bool IsTrustDomainChar(char c) {
  return IsLowerAlnum(c) || c == '.' || c == '-' || c == '_';
}
bool IsServiceChar(char c) { return IsAlnum(c) || c == '.' || c == '_'; }
bool IsMethodNameChar(char c) { return IsAlnum(c) || c == '_'; }
// gRPC metadata keys: [0-9a-z_.-].
bool IsHeaderChar(char c) {
  return IsLowerAlnum(c) || c == '.' || c == '-' || c == '_';
}

template <typename Pred>
bool AllOf(absl::string_view s, Pred pred) {
  return std::all_of(s.begin(), s.end(), pred);
}

// "/pkg.Service/" for "/pkg.Service/Method"; empty if there is no second
// '/'. Keys the service index; matches the "/pkg.Service/*" form exactly
// because a service name never contains '/'.
absl::string_view ServiceKey(absl::string_view method) {
  if (method.empty() || method[0] != '/') return {};
  size_t slash = method.find('/', 1);
  if (slash == absl::string_view::npos) return {};
  return method.substr(0, slash + 1);
}

// One list of entries: exact strings, prefixes (the entry without its '*')
// and "*".
struct Matcher {
  bool any = false;
  std::vector<std::string> exact;
  absl::flat_hash_set<std::string> exact_set;  // used when exact is long
  std::vector<std::string> prefixes;

  bool empty() const { return !any && exact.empty() && prefixes.empty(); }

  void Add(const std::string& entry) {
    if (entry == "*") {
      any = true;
    } else if (entry.back() == '*') {
      prefixes.push_back(entry.substr(0, entry.size() - 1));
    } else {
      exact.push_back(entry);
    }
  }

  void Finish() {
    std::sort(exact.begin(), exact.end());
    exact.erase(std::unique(exact.begin(), exact.end()), exact.end());
    // Deduplicated so that a rule sits in an index list at most once.
    std::sort(prefixes.begin(), prefixes.end());
    prefixes.erase(std::unique(prefixes.begin(), prefixes.end()),
                   prefixes.end());
    if (exact.size() > kLinearScanMax) {
      exact_set.insert(exact.begin(), exact.end());
    }
  }

  // Whether `value` matches an entry. `known` false means the value could
  // not be determined (unparseable peer): only "*" matches then.
  bool Matches(absl::string_view value, bool known = true) const {
    if (any) return true;
    if (!known) return false;
    if (!exact_set.empty()) {
      if (exact_set.contains(value)) return true;
    } else {
      for (const std::string& e : exact) {
        if (e == value) return true;
      }
    }
    for (const std::string& p : prefixes) {
      if (absl::StartsWith(value, p)) return true;
    }
    return false;
  }
};

struct Condition {
  std::string header;
  std::vector<std::string> values;
};

// Builds error messages that name the source, rule and field.
class ErrorSink {
 public:
  ErrorSink(absl::string_view source, std::vector<PolicyError>* out)
      : source_(source), out_(out) {}

  void SetRule(int index, absl::string_view name) {
    rule_index_ = index;
    rule_prefix_ = absl::StrCat("rules[", index, "] \"", name, "\": ");
  }
  void ClearRule() {
    rule_index_ = -1;
    rule_prefix_.clear();
  }

  void Add(absl::string_view field, absl::string_view why) {
    out_->push_back(PolicyError{
        rule_index_, absl::InvalidArgumentError(absl::StrCat(
                         source_.empty() ? "" : absl::StrCat(source_, ": "),
                         rule_prefix_, "field \"", field, "\": ", why))});
  }

 private:
  absl::string_view source_;
  std::vector<PolicyError>* out_;
  int rule_index_ = -1;
  std::string rule_prefix_;
};

std::string Quoted(absl::string_view s) {
  return absl::StrCat("\"", s.substr(0, 256), "\"");
}

// Checks the shape shared by every list: non-empty entries, '*' only last.
// Returns the entry's kind: 0 invalid, 1 exact, 2 prefix, 3 any.
int EntryKind(absl::string_view field, const std::string& entry,
              ErrorSink& errors) {
  if (entry.empty()) {
    errors.Add(field, "empty entry (use \"*\" for any)");
    return 0;
  }
  if (entry == "*") return 3;
  size_t star = entry.find('*');
  if (star != std::string::npos && star != entry.size() - 1) {
    errors.Add(field,
               absl::StrCat(Quoted(entry), ": '*' is allowed only at the end"));
    return 0;
  }
  return star == std::string::npos ? 1 : 2;
}

void ValidatePrincipal(absl::string_view field, const std::string& entry,
                       ErrorSink& errors) {
  switch (EntryKind(field, entry, errors)) {
    case 1:
      if (absl::StatusOr<SpiffeId> id = SpiffeId::Parse(entry); !id.ok()) {
        errors.Add(field, id.status().message());
      }
      break;
    case 2: {
      absl::string_view prefix(entry.data(), entry.size() - 1);
      if (!absl::StartsWith(prefix, kSpiffeScheme)) {
        errors.Add(field, absl::StrCat(Quoted(entry),
                                       ": a principal prefix must start with "
                                       "\"spiffe://\""));
      }
      break;
    }
    default:
      break;
  }
}

void ValidateNamespace(absl::string_view field, const std::string& entry,
                       ErrorSink& errors) {
  int kind = EntryKind(field, entry, errors);
  if (kind != 1 && kind != 2) return;
  absl::string_view body(entry.data(), entry.size() - (kind == 2 ? 1 : 0));
  if (!AllOf(body, IsSegmentChar)) {
    errors.Add(field, absl::StrCat(
                          Quoted(entry),
                          ": a namespace has only [a-zA-Z0-9.-_] characters"));
  }
}

void ValidateTrustDomain(absl::string_view field, const std::string& entry,
                         ErrorSink& errors) {
  switch (EntryKind(field, entry, errors)) {
    case 1:
      if (absl::Status s = SpiffeId::ValidateTrustDomain(entry); !s.ok()) {
        errors.Add(field, s.message());
      }
      break;
    case 2:
      if (!AllOf(absl::string_view(entry.data(), entry.size() - 1),
                 IsTrustDomainChar)) {
        errors.Add(field, absl::StrCat(Quoted(entry),
                                       ": a trust domain has only [a-z0-9.-_] "
                                       "characters"));
      }
      break;
    default:
      break;
  }
}

void ValidateMethod(absl::string_view field, const std::string& entry,
                    ErrorSink& errors) {
  if (entry == "*") return;
  bool ok = false;
  if (!entry.empty() && entry[0] == '/') {
    size_t slash = entry.find('/', 1);
    if (slash != std::string::npos) {
      absl::string_view service(entry.data() + 1, slash - 1);
      absl::string_view method(entry.data() + slash + 1,
                               entry.size() - slash - 1);
      ok = !service.empty() && AllOf(service, IsServiceChar) &&
           !method.empty() &&
           (method == "*" || AllOf(method, IsMethodNameChar));
    }
  }
  if (!ok) {
    errors.Add(field, absl::StrCat(Quoted(entry),
                                   ": a method is \"/pkg.Service/Method\", "
                                   "\"/pkg.Service/*\" or \"*\""));
  }
}

template <typename List, typename Validate>
void ValidateList(absl::string_view field, const List& list, Validate validate,
                  ErrorSink& errors) {
  for (int i = 0; i < list.size(); ++i) {
    validate(absl::StrCat(field, "[", i, "]"), list.Get(i), errors);
  }
}

bool IsDecision(int action) {
  return action == pb::ALLOW || action == pb::DENY;
}

void ValidateRule(const pb::Rule& rule, ErrorSink& errors) {
  if (rule.name().empty()) errors.Add("name", "must not be empty");
  if (rule.name() == kDefaultRuleName) {
    errors.Add("name", "\"default\" is reserved for the default action");
  }
  if (rule.action() == pb::ACTION_UNSPECIFIED) {
    errors.Add("action", "must be set (ALLOW, DENY or AUDIT)");
  } else if (!IsDecision(rule.action()) && rule.action() != pb::AUDIT) {
    errors.Add("action", absl::StrCat("unknown action ",
                                      static_cast<int>(rule.action())));
  }
  const pb::Source& from = rule.from();
  ValidateList("from.principals", from.principals(), ValidatePrincipal, errors);
  ValidateList("from.not_principals", from.not_principals(), ValidatePrincipal,
               errors);
  ValidateList("from.namespaces", from.namespaces(), ValidateNamespace, errors);
  ValidateList("from.not_namespaces", from.not_namespaces(), ValidateNamespace,
               errors);
  ValidateList("from.trust_domains", from.trust_domains(), ValidateTrustDomain,
               errors);
  ValidateList("from.not_trust_domains", from.not_trust_domains(),
               ValidateTrustDomain, errors);
  ValidateList("to.methods", rule.to().methods(), ValidateMethod, errors);
  ValidateList("to.not_methods", rule.to().not_methods(), ValidateMethod,
               errors);
  for (int i = 0; i < rule.when_size(); ++i) {
    const std::string& h = rule.when(i).header();
    std::string field = absl::StrCat("when[", i, "].header");
    if (h.empty()) {
      errors.Add(field, "must not be empty");
    } else if (!AllOf(h, IsHeaderChar)) {
      bool upper = std::any_of(h.begin(), h.end(),
                               [](char c) { return c >= 'A' && c <= 'Z'; });
      errors.Add(field,
                 absl::StrCat(Quoted(h), upper ? ": must be lowercase"
                                               : ": a header name has only "
                                                 "[a-z0-9.-_] characters"));
    }
  }
}

}  // namespace

std::vector<PolicyError> FindPolicyErrors(const AuthorizationPolicy& policy) {
  std::vector<PolicyError> out;
  ErrorSink errors("", &out);
  int d = policy.default_action();
  if (d == pb::AUDIT) {
    errors.Add("default_action",
               "must be ALLOW or DENY (AUDIT decides nothing)");
  } else if (d != pb::ACTION_UNSPECIFIED && !IsDecision(d)) {
    errors.Add("default_action", absl::StrCat("unknown action ", d));
  }
  absl::flat_hash_map<absl::string_view, int> names;
  for (int i = 0; i < policy.rules_size(); ++i) {
    const pb::Rule& rule = policy.rules(i);
    errors.SetRule(i, rule.name());
    ValidateRule(rule, errors);
    if (!rule.name().empty()) {
      auto [it, inserted] = names.emplace(rule.name(), i);
      if (!inserted) {
        errors.Add("name",
                   absl::StrCat("duplicate name, already used by rules[",
                                it->second, "]"));
      }
    }
  }
  return out;
}

AuthorizationPolicy BuiltinTrustDomainPolicy(absl::string_view trust_domain) {
  AuthorizationPolicy policy;
  policy.set_default_action(pb::DENY);
  pb::Rule* rule = policy.add_rules();
  rule->set_name("builtin-allow-trust-domain");
  rule->set_action(pb::ALLOW);
  rule->mutable_from()->add_trust_domains(std::string(trust_domain));
  return policy;
}

// ---------------------------------------------------------------------------

StaticHeaderMap::StaticHeaderMap(
    std::vector<std::pair<std::string, std::string>> headers)
    : headers_(std::move(headers)) {}

void StaticHeaderMap::Set(std::string name, std::string value) {
  headers_.erase(std::remove_if(headers_.begin(), headers_.end(),
                                [&](const auto& h) { return h.first == name; }),
                 headers_.end());
  headers_.emplace_back(std::move(name), std::move(value));
}

void StaticHeaderMap::Add(std::string name, std::string value) {
  headers_.emplace_back(std::move(name), std::move(value));
}

void StaticHeaderMap::ForEachValue(
    absl::string_view lowercase_name,
    absl::FunctionRef<bool(absl::string_view)> fn) const {
  for (const auto& [name, value] : headers_) {
    if (name == lowercase_name && !fn(value)) return;
  }
}

// ---------------------------------------------------------------------------

struct CompiledPolicy::Rule {
  std::string name;
  Action action;
  bool dry_run;
  Matcher principals, not_principals;
  Matcher namespaces, not_namespaces;
  Matcher trust_domains, not_trust_domains;
  Matcher methods, not_methods;
  std::vector<Condition> when;
};

// The caller, parsed on first need: most rules only compare the raw ID.
struct CompiledPolicy::PeerInfo {
  explicit PeerInfo(absl::string_view id) : raw(id) {}

  void Parse() {
    if (parsed) return;
    parsed = true;
    absl::StatusOr<SpiffeId> id = SpiffeId::Parse(raw);
    if (!id.ok()) return;
    valid = true;
    trust_domain = id->trust_domain();
    ns = id->Namespace();
  }

  absl::string_view raw;
  bool parsed = false;
  bool valid = false;
  std::string trust_domain;
  std::string ns;  // empty when the ID has no /ns/<ns>/sa/<sa> shape
};

// Candidate lists per group of rules. Each rule sits in exactly one of:
// the method/service maps (every `to.methods` entry exact or
// "/pkg.Service/*"), the principal map (every `from.principals` entry
// exact), or `rest`. A matching rule is therefore always among the lists
// looked up for the request. Lists hold rule indexes in ascending order.
struct CompiledPolicy::Index {
  struct Group {
    absl::flat_hash_map<std::string, std::vector<int>> by_method;
    absl::flat_hash_map<std::string, std::vector<int>> by_service;
    absl::flat_hash_map<std::string, std::vector<int>> by_principal;
    std::vector<int> rest;
  };
  Group deny, allow, observe;
};

namespace {

using IndexList = std::vector<int>;

const IndexList* Lookup(
    const absl::flat_hash_map<std::string, std::vector<int>>& map,
    absl::string_view key) {
  if (map.empty() || key.empty()) return nullptr;
  auto it = map.find(key);
  return it == map.end() ? nullptr : &it->second;
}

// Walks up to four ascending lists as one ascending, duplicate-free
// sequence (a rule with both "/a.B/C" and "/a.B/*" is in two lists).
class CandidateMerger {
 public:
  void AddList(const IndexList* list) {
    if (list == nullptr || list->empty()) return;
    cur_[n_] = list->data();
    end_[n_] = list->data() + list->size();
    ++n_;
  }

  // Next rule index, or -1 when done.
  int Next() {
    int best = std::numeric_limits<int>::max();
    for (int i = 0; i < n_; ++i) {
      if (cur_[i] != end_[i] && *cur_[i] < best) best = *cur_[i];
    }
    if (best == std::numeric_limits<int>::max()) return -1;
    for (int i = 0; i < n_; ++i) {
      if (cur_[i] != end_[i] && *cur_[i] == best) ++cur_[i];
    }
    return best;
  }

 private:
  int n_ = 0;
  const int* cur_[4];
  const int* end_[4];
};

}  // namespace

CompiledPolicy::CompiledPolicy() = default;
CompiledPolicy::~CompiledPolicy() = default;

size_t CompiledPolicy::rule_count() const { return rules_.size(); }

absl::StatusOr<std::shared_ptr<const CompiledPolicy>> CompiledPolicy::Compile(
    const AuthorizationPolicy& policy, absl::string_view source) {
  std::vector<PolicyError> errors = FindPolicyErrors(policy);
  if (!errors.empty()) {
    const absl::Status& first = errors.front().status;
    std::string more =
        errors.size() > 1
            ? absl::StrCat(" (and ", errors.size() - 1, " more error",
                           errors.size() > 2 ? "s" : "", ")")
            : "";
    return absl::InvalidArgumentError(
        absl::StrCat(source.empty() ? "" : absl::StrCat(source, ": "),
                     first.message(), more));
  }

  std::shared_ptr<CompiledPolicy> compiled(new CompiledPolicy());
  compiled->default_action_ =
      policy.default_action() == pb::ALLOW ? pb::ALLOW : pb::DENY;
  compiled->rules_.reserve(policy.rules_size());
  for (const pb::Rule& in : policy.rules()) {
    Rule r;
    r.name = in.name();
    r.action = in.action();
    r.dry_run = in.dry_run();
    auto fill = [](Matcher& m, const auto& list) {
      for (const std::string& e : list) m.Add(e);
      m.Finish();
    };
    fill(r.principals, in.from().principals());
    fill(r.not_principals, in.from().not_principals());
    fill(r.namespaces, in.from().namespaces());
    fill(r.not_namespaces, in.from().not_namespaces());
    fill(r.trust_domains, in.from().trust_domains());
    fill(r.not_trust_domains, in.from().not_trust_domains());
    fill(r.methods, in.to().methods());
    fill(r.not_methods, in.to().not_methods());
    for (const pb::HeaderCondition& c : in.when()) {
      r.when.push_back(Condition{
          c.header(),
          std::vector<std::string>(c.values().begin(), c.values().end())});
    }
    compiled->rules_.push_back(std::move(r));
  }

  // Which rules can be keyed by method (exact or service) or by principal.
  const std::vector<Rule>& rules = compiled->rules_;
  auto method_indexable = [](const Rule& r) {
    return !r.methods.any && !r.methods.empty();
  };
  auto principal_indexable = [](const Rule& r) {
    return !r.principals.any && !r.principals.empty() &&
           r.principals.prefixes.empty();
  };
  // How crowded each key would be, to put a rule that could go either way
  // under the more selective one.
  absl::flat_hash_map<std::string, int> method_load, principal_load;
  for (const Rule& r : rules) {
    if (method_indexable(r)) {
      for (const std::string& m : r.methods.exact) ++method_load[m];
      for (const std::string& s : r.methods.prefixes) ++method_load[s];
    }
    if (principal_indexable(r)) {
      for (const std::string& p : r.principals.exact) ++principal_load[p];
    }
  }

  auto index = std::make_unique<Index>();
  for (int i = 0; i < static_cast<int>(rules.size()); ++i) {
    const Rule& r = rules[i];
    Index::Group& g = (r.action == pb::AUDIT || r.dry_run) ? index->observe
                      : r.action == pb::DENY               ? index->deny
                                                           : index->allow;
    bool by_method = method_indexable(r);
    bool by_principal = principal_indexable(r);
    if (by_method && by_principal) {
      long method_cost = 0, principal_cost = 0;
      for (const std::string& m : r.methods.exact)
        method_cost += method_load[m];
      for (const std::string& s : r.methods.prefixes) {
        method_cost += method_load[s];
      }
      for (const std::string& p : r.principals.exact) {
        principal_cost += principal_load[p];
      }
      if (principal_cost < method_cost) by_method = false;
    }
    if (by_method) {
      for (const std::string& m : r.methods.exact) g.by_method[m].push_back(i);
      for (const std::string& s : r.methods.prefixes) {
        g.by_service[s].push_back(i);
      }
    } else if (by_principal) {
      for (const std::string& p : r.principals.exact) {
        g.by_principal[p].push_back(i);
      }
    } else {
      g.rest.push_back(i);
    }
  }
  compiled->index_ = std::move(index);
  return std::shared_ptr<const CompiledPolicy>(std::move(compiled));
}

bool CompiledPolicy::RuleMatches(const Rule& rule, const Request& request,
                                 PeerInfo& peer) const {
  // Cheapest checks first.
  if (!rule.methods.empty() && !rule.methods.Matches(request.method)) {
    return false;
  }
  if (!rule.not_methods.empty() && rule.not_methods.Matches(request.method)) {
    return false;
  }
  // Exact principal entries are valid SPIFFE IDs, so comparing the raw ID
  // is only a question when prefixes are involved.
  auto principal_matches = [&](const Matcher& m) {
    if (m.any) return true;
    if (m.prefixes.empty()) return m.Matches(request.peer_spiffe_id);
    peer.Parse();
    return m.Matches(request.peer_spiffe_id, peer.valid);
  };
  if (!rule.principals.empty() && !principal_matches(rule.principals)) {
    return false;
  }
  if (!rule.not_principals.empty() && principal_matches(rule.not_principals)) {
    return false;
  }
  // Repeated headers, to the caller's disadvantage (semantics 6): one
  // matching value makes a DENY (or AUDIT) condition hold; an ALLOW
  // condition needs every value to match.
  const bool any_value_suffices = rule.action != pb::ALLOW;
  for (const Condition& c : rule.when) {
    if (request.headers == nullptr) return false;
    bool present = false, any = false, all = true;
    request.headers->ForEachValue(c.header, [&](absl::string_view v) {
      present = true;
      const bool in =
          c.values.empty() ||
          std::find(c.values.begin(), c.values.end(), v) != c.values.end();
      any = any || in;
      all = all && in;
      // The answer is known: a match for "any", a miss for "all".
      return any_value_suffices ? !in : in;
    });
    if (!present || !(any_value_suffices ? any : all)) return false;
  }
  auto attr_matches = [&](const Matcher& m, bool ns) {
    if (m.any) return true;
    peer.Parse();
    const std::string& value = ns ? peer.ns : peer.trust_domain;
    return m.Matches(value, peer.valid && !value.empty());
  };
  if (!rule.namespaces.empty() && !attr_matches(rule.namespaces, true)) {
    return false;
  }
  if (!rule.not_namespaces.empty() && attr_matches(rule.not_namespaces, true)) {
    return false;
  }
  if (!rule.trust_domains.empty() && !attr_matches(rule.trust_domains, false)) {
    return false;
  }
  if (!rule.not_trust_domains.empty() &&
      attr_matches(rule.not_trust_domains, false)) {
    return false;
  }
  return true;
}

void CompiledPolicy::Decide(const Rule& rule, int index, Decision& d) const {
  d.allowed = rule.action == pb::ALLOW;
  d.rule = rule.name;
  d.rule_index = index;
}

Decision CompiledPolicy::Evaluate(const Request& request) const {
  Decision d;
  PeerInfo peer(request.peer_spiffe_id);
  absl::string_view service = ServiceKey(request.method);

  auto candidates = [&](const Index::Group& g) {
    CandidateMerger merger;
    merger.AddList(Lookup(g.by_method, request.method));
    merger.AddList(Lookup(g.by_service, service));
    merger.AddList(Lookup(g.by_principal, request.peer_spiffe_id));
    merger.AddList(&g.rest);
    return merger;
  };

  bool decided = false;
  for (const Index::Group* g : {&index_->deny, &index_->allow}) {
    CandidateMerger merger = candidates(*g);
    for (int i = merger.Next(); i >= 0; i = merger.Next()) {
      if (RuleMatches(rules_[i], request, peer)) {
        Decide(rules_[i], i, d);
        decided = true;
        break;
      }
    }
    if (decided) break;
  }
  if (!decided) d.allowed = default_action_ == pb::ALLOW;

  CandidateMerger observe = candidates(index_->observe);
  for (int i = observe.Next(); i >= 0; i = observe.Next()) {
    const Rule& r = rules_[i];
    if (RuleMatches(r, request, peer)) {
      d.audit_matches.push_back(AuditMatch{r.name, r.action, r.dry_run});
    }
  }
  return d;
}

Decision CompiledPolicy::EvaluateUnindexed(const Request& request) const {
  Decision d;
  PeerInfo peer(request.peer_spiffe_id);
  bool decided = false;
  for (Action phase : {pb::DENY, pb::ALLOW}) {
    for (int i = 0; i < static_cast<int>(rules_.size()) && !decided; ++i) {
      const Rule& r = rules_[i];
      if (r.dry_run || r.action != phase) continue;
      if (RuleMatches(r, request, peer)) {
        Decide(r, i, d);
        decided = true;
      }
    }
  }
  if (!decided) d.allowed = default_action_ == pb::ALLOW;
  for (const Rule& r : rules_) {
    if ((r.action == pb::AUDIT || r.dry_run) && RuleMatches(r, request, peer)) {
      d.audit_matches.push_back(AuditMatch{r.name, r.action, r.dry_run});
    }
  }
  return d;
}

}  // namespace meshguard::sidecar::authz
