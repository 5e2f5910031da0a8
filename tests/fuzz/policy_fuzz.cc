// Authorization policies (sidecar/authz): the YAML an operator writes, the
// compiler that validates and indexes it, and the evaluator on the request
// path.
//
// Input: a policy in YAML, optionally followed by requests, each after a
// line "%%" as "<peer SPIFFE ID> <method> [header=value ...]" (fields split
// on single spaces). A few fixed requests are always evaluated too.
// Invariants: compiling either succeeds or fails with INVALID_ARGUMENT and
// a message; FindPolicyErrors is empty exactly when Compile succeeds; the
// indexed Evaluate decides every request as the rule-by-rule
// EvaluateUnindexed does (the same verdict, rule and audit matches).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "identity/util/yaml_config.h"
#include "sidecar/authz/policy.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace authz = ::meshguard::sidecar::authz;

struct FuzzRequest {
  std::string peer, method;
  authz::StaticHeaderMap headers;
};

void CheckSame(const authz::CompiledPolicy& policy, const FuzzRequest& r) {
  const authz::Request request{r.peer, r.method, &r.headers};
  const authz::Decision indexed = policy.Evaluate(request);
  const authz::Decision reference = policy.EvaluateUnindexed(request);
  FUZZ_CHECK(indexed.allowed == reference.allowed);
  FUZZ_CHECK(indexed.rule == reference.rule);
  FUZZ_CHECK(indexed.rule_index == reference.rule_index);
  FUZZ_CHECK(indexed.audit_matches == reference.audit_matches);
  FUZZ_CHECK(indexed.rule_index < static_cast<int>(policy.rule_count()));
  if (indexed.rule_index >= 0) FUZZ_REACHED("decided_by_rule");
  if (!indexed.audit_matches.empty()) FUZZ_REACHED("audited");
  // Without metadata every `when` condition fails; still no crash.
  policy.Evaluate(authz::Request{r.peer, r.method, nullptr});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts = absl::StrSplit(input, "\n%%\n");
  authz::AuthorizationPolicy proto;
  if (!meshguard::util::ParseYamlToMessage(parts[0], "fuzz.yaml", &proto)
           .ok()) {
    return 0;
  }
  absl::StatusOr<std::shared_ptr<const authz::CompiledPolicy>> policy =
      authz::CompiledPolicy::Compile(proto, "fuzz.yaml");
  const std::vector<authz::PolicyError> errors = authz::FindPolicyErrors(proto);
  FUZZ_CHECK(policy.ok() == errors.empty());
  if (!policy.ok()) {
    FUZZ_CHECK(absl::IsInvalidArgument(policy.status()));
    FUZZ_CHECK(!policy.status().message().empty());
    return 0;
  }

  std::vector<FuzzRequest> requests(4);
  requests[0] = {
      "spiffe://cluster.local/ns/shop/sa/frontend", "/shop.v1.Orders/Get", {}};
  requests[1] = {"spiffe://other.domain/ns/a/sa/b", "/pkg.Svc/M", {}};
  requests[2] = {"", "", {}};
  requests[3] = {"not a spiffe id", "/x/y", {}};
  requests[3].headers.Set("x-env", "prod");
  for (size_t i = 1; i < parts.size(); ++i) {
    std::vector<std::string> fields = absl::StrSplit(parts[i], ' ');
    FuzzRequest r;
    r.peer = fields[0];
    if (fields.size() > 1) r.method = fields[1];
    for (size_t k = 2; k < fields.size(); ++k) {
      std::vector<std::string> kv =
          absl::StrSplit(fields[k], absl::MaxSplits('=', 1));
      r.headers.Set(kv[0], kv.size() > 1 ? kv[1] : "");
    }
    requests.push_back(std::move(r));
  }
  FUZZ_REACHED("compiled");
  for (const FuzzRequest& r : requests) CheckSame(**policy, r);
  return 0;
}
