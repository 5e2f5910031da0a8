// Authorization decisions per second for policies of 1, 100 and 10,000
// rules shaped like real ones: one ALLOW per (caller, method set), some
// namespace-wide and service-wide rules, a few DENY and AUDIT rules with
// prefixes and wildcards, some header conditions.
//
//   bazel run -c opt //tests/bench:authz_bench
#include <benchmark/benchmark.h>

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sidecar/authz/policy.h"

namespace meshguard::sidecar::authz {
namespace {

namespace pb = ::meshguard::policy::v1;

std::string Principal(int i) {
  return absl::StrCat("spiffe://cluster.local/ns/ns", i % 50, "/sa/sa", i);
}
std::string Service(int i) { return absl::StrCat("/svc", i, ".v1.Api"); }
std::string Method(int svc, int m) {
  return absl::StrCat(Service(svc), "/Method", m);
}

struct Workload {
  std::shared_ptr<const CompiledPolicy> policy;
  std::vector<std::pair<std::string, std::string>> requests;  // peer, method
};

const Workload& GetWorkload(int rules) {
  static auto* cache = new std::map<int, Workload>();
  auto it = cache->find(rules);
  if (it != cache->end()) return it->second;

  std::mt19937 rng(42);
  auto below = [&](int n) {
    return std::uniform_int_distribution<int>(0, n - 1)(rng);
  };
  const int services = std::max(1, rules / 20);
  AuthorizationPolicy p;
  p.set_default_action(pb::DENY);
  std::vector<std::pair<std::string, std::string>> granted;
  for (int i = 0; i < rules; ++i) {
    pb::Rule* r = p.add_rules();
    r->set_name(absl::StrCat("rule-", i));
    int kind = below(100);
    // A few wide rules (every request looks at these), not a percentage.
    if (rules >= 100 && i >= 1 && i <= 3) kind = 100;
    if (kind < 70) {  // caller X may call two methods of a service
      r->set_action(pb::ALLOW);
      r->mutable_from()->add_principals(Principal(i));
      int svc = below(services);
      r->mutable_to()->add_methods(Method(svc, below(5)));
      r->mutable_to()->add_methods(Method(svc, below(5)));
      granted.emplace_back(Principal(i), r->to().methods(0));
    } else if (kind < 80) {  // a namespace may use a whole service
      r->set_action(pb::ALLOW);
      r->mutable_from()->add_namespaces(absl::StrCat("ns", below(50)));
      r->mutable_to()->add_methods(
          absl::StrCat(Service(below(services)), "/*"));
    } else if (kind < 88) {  // block a namespace prefix from a method
      r->set_action(pb::DENY);
      r->mutable_from()->add_principals(
          absl::StrCat("spiffe://cluster.local/ns/ns", below(50), "/*"));
      r->mutable_to()->add_methods(Method(below(services), below(5)));
    } else if (kind < 93) {  // tenant-gated access
      r->set_action(pb::ALLOW);
      r->mutable_from()->add_principals(Principal(i));
      r->mutable_to()->add_methods(
          absl::StrCat(Service(below(services)), "/*"));
      pb::HeaderCondition* c = r->add_when();
      c->set_header("x-tenant");
      c->add_values("acme");
    } else if (kind < 100) {  // audit a service
      r->set_action(pb::AUDIT);
      r->mutable_to()->add_methods(
          absl::StrCat(Service(below(services)), "/*"));
    } else {  // partner trust domains: deny, dry-run deny, audit
      r->set_action(below(2) == 0 ? pb::DENY : pb::AUDIT);
      r->set_dry_run(below(2) == 0);
      r->mutable_from()->add_trust_domains("partner.*");
      r->mutable_to()->add_methods("*");
    }
  }
  Workload w;
  absl::StatusOr<std::shared_ptr<const CompiledPolicy>> c =
      CompiledPolicy::Compile(p);
  if (!c.ok()) abort();
  w.policy = *c;
  // Half the calls are ones some ALLOW rule grants (unless a DENY wins),
  // half are random caller/method pairs, mostly denied by default.
  for (int i = 0; i < 1024; ++i) {
    if (i % 2 == 0 && !granted.empty()) {
      w.requests.push_back(granted[below(static_cast<int>(granted.size()))]);
    } else {
      w.requests.emplace_back(Principal(below(std::max(rules, 1))),
                              Method(below(services), below(5)));
    }
  }
  return cache->emplace(rules, std::move(w)).first->second;
}

template <bool kIndexed>
void BM_Evaluate(benchmark::State& state) {
  const Workload& w = GetWorkload(static_cast<int>(state.range(0)));
  StaticHeaderMap headers;
  headers.Set("x-tenant", "acme");
  size_t i = 0, allowed = 0;
  for (auto _ : state) {
    const auto& [peer, method] = w.requests[i++ & 1023];
    Request r{peer, method, &headers};
    Decision d =
        kIndexed ? w.policy->Evaluate(r) : w.policy->EvaluateUnindexed(r);
    allowed += d.allowed;
    benchmark::DoNotOptimize(d);
  }
  state.counters["allowed_fraction"] =
      static_cast<double>(allowed) / static_cast<double>(state.iterations());
}

BENCHMARK_TEMPLATE(BM_Evaluate, true)->Arg(1)->Arg(100)->Arg(10000);
BENCHMARK_TEMPLATE(BM_Evaluate, false)->Arg(1)->Arg(100)->Arg(10000);

void BM_Compile(benchmark::State& state) {
  GetWorkload(static_cast<int>(state.range(0)));  // warm the generator
  for (auto _ : state) {
    // Recompiling the cached policy measures validation + indexing only.
    state.PauseTiming();
    AuthorizationPolicy p;
    std::mt19937 rng(7);
    for (int i = 0; i < state.range(0); ++i) {
      pb::Rule* r = p.add_rules();
      r->set_name(absl::StrCat("rule-", i));
      r->set_action(pb::ALLOW);
      r->mutable_from()->add_principals(Principal(i));
      r->mutable_to()->add_methods(Method(i % 500, i % 5));
    }
    state.ResumeTiming();
    benchmark::DoNotOptimize(CompiledPolicy::Compile(p));
  }
}
BENCHMARK(BM_Compile)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace meshguard::sidecar::authz

BENCHMARK_MAIN();
