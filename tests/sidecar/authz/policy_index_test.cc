// Property test: the indexed Evaluate() and the rule-by-rule
// EvaluateUnindexed() give the same decision, deciding rule and audit
// matches for random policies and random requests. The pools are small so
// that rules overlap and most requests match something.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "sidecar/authz/policy.h"

namespace meshguard::sidecar::authz {
namespace {

namespace pb = ::meshguard::policy::v1;

const std::vector<std::string> kTrustDomains = {"cluster.local", "other.org"};
const std::vector<std::string> kNamespaces = {"shop", "billing", "ops"};
const std::vector<std::string> kAccounts = {"frontend", "orders", "api"};
const std::vector<std::string> kServices = {
    "/shop.v1.Orders/", "/shop.v1.OrdersAdmin/", "/billing.v1.Pay/"};
const std::vector<std::string> kMethodNames = {"Get", "List", "Put"};

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  int Below(int n) {
    return std::uniform_int_distribution<int>(0, n - 1)(rng_);
  }
  bool OneIn(int n) { return Below(n) == 0; }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(static_cast<int>(v.size()))];
  }

  std::string Id() {
    return absl::StrCat("spiffe://", Pick(kTrustDomains), "/ns/",
                        Pick(kNamespaces), "/sa/", Pick(kAccounts));
  }
  std::string Method() {
    return absl::StrCat(Pick(kServices), Pick(kMethodNames));
  }

  std::string PeerForRequest() {
    switch (Below(10)) {
      case 0:
        return "";
      case 1:
        return "garbage";
      case 2:
        return absl::StrCat("spiffe://", Pick(kTrustDomains), "/job/x");
      default:
        return Id();
    }
  }

  std::string PrincipalEntry() {
    switch (Below(6)) {
      case 0:
        return "*";
      case 1:
        return absl::StrCat("spiffe://", Pick(kTrustDomains), "/ns/",
                            Pick(kNamespaces), "/*");
      case 2:
        return absl::StrCat("spiffe://", Pick(kTrustDomains), "/*");
      default:
        return Id();
    }
  }
  std::string NamespaceEntry() {
    switch (Below(5)) {
      case 0:
        return "*";
      case 1:
        return absl::StrCat(Pick(kNamespaces).substr(0, 2), "*");
      default:
        return Pick(kNamespaces);
    }
  }
  std::string TrustDomainEntry() {
    switch (Below(4)) {
      case 0:
        return "*";
      case 1:
        return "cluster*";
      default:
        return Pick(kTrustDomains);
    }
  }
  std::string MethodEntry() {
    switch (Below(6)) {
      case 0:
        return "*";
      case 1:
      case 2:
        return absl::StrCat(Pick(kServices), "*");
      default:
        return Method();
    }
  }

  template <typename Add, typename Entry>
  void MaybeList(int one_in, Add add, Entry entry) {
    if (!OneIn(one_in)) return;
    int n = 1 + Below(3);
    for (int i = 0; i < n; ++i) add(entry());
  }

  AuthorizationPolicy Policy(int max_rules) {
    AuthorizationPolicy p;
    if (OneIn(3)) p.set_default_action(pb::ALLOW);
    int n = Below(max_rules + 1);
    for (int i = 0; i < n; ++i) {
      pb::Rule* r = p.add_rules();
      r->set_name(absl::StrCat("r", i));
      int a = Below(10);
      r->set_action(a < 4 ? pb::ALLOW : a < 8 ? pb::DENY : pb::AUDIT);
      r->set_dry_run(OneIn(6));
      pb::Source* f = r->mutable_from();
      auto self = this;
      MaybeList(
          2, [f](std::string s) { f->add_principals(s); },
          [self] { return self->PrincipalEntry(); });
      MaybeList(
          4, [f](std::string s) { f->add_namespaces(s); },
          [self] { return self->NamespaceEntry(); });
      MaybeList(
          5, [f](std::string s) { f->add_trust_domains(s); },
          [self] { return self->TrustDomainEntry(); });
      MaybeList(
          8, [f](std::string s) { f->add_not_principals(s); },
          [self] { return self->PrincipalEntry(); });
      MaybeList(
          8, [f](std::string s) { f->add_not_namespaces(s); },
          [self] { return self->NamespaceEntry(); });
      MaybeList(
          10, [f](std::string s) { f->add_not_trust_domains(s); },
          [self] { return self->TrustDomainEntry(); });
      pb::Destination* t = r->mutable_to();
      MaybeList(
          2, [t](std::string s) { t->add_methods(s); },
          [self] { return self->MethodEntry(); });
      MaybeList(
          8, [t](std::string s) { t->add_not_methods(s); },
          [self] { return self->MethodEntry(); });
      if (OneIn(6)) {
        pb::HeaderCondition* c = r->add_when();
        c->set_header(OneIn(2) ? "x-tenant" : "x-debug");
        if (OneIn(2)) c->add_values(OneIn(2) ? "acme" : "umbrella");
      }
    }
    return p;
  }

 private:
  std::mt19937 rng_;
};

void ExpectSameDecision(const Decision& indexed, const Decision& naive,
                        const std::string& context) {
  EXPECT_EQ(indexed.allowed, naive.allowed) << context;
  EXPECT_EQ(indexed.rule, naive.rule) << context;
  EXPECT_EQ(indexed.rule_index, naive.rule_index) << context;
  EXPECT_EQ(indexed.audit_matches, naive.audit_matches) << context;
}

TEST(PolicyIndexTest, IndexedMatchesNaiveOnRandomPolicies) {
  Generator gen(20240611);
  int decided_by_rule = 0, total = 0;
  for (int p = 0; p < 400; ++p) {
    AuthorizationPolicy proto = gen.Policy(p < 300 ? 12 : 200);
    absl::StatusOr<std::shared_ptr<const CompiledPolicy>> policy =
        CompiledPolicy::Compile(proto);
    ASSERT_TRUE(policy.ok()) << policy.status() << proto.DebugString();
    for (int q = 0; q < 100; ++q) {
      StaticHeaderMap headers;
      if (gen.OneIn(2)) headers.Set("x-tenant", gen.OneIn(2) ? "acme" : "x");
      if (gen.OneIn(3)) headers.Set("x-debug", "1");
      std::string peer = gen.PeerForRequest();
      std::string method = gen.OneIn(20) ? "/nonsense" : gen.Method();
      Request request{peer, method, &headers};
      Decision indexed = (*policy)->Evaluate(request);
      Decision naive = (*policy)->EvaluateUnindexed(request);
      ExpectSameDecision(
          indexed, naive,
          absl::StrCat("policy ", p, " peer=", peer, " method=", method));
      if (HasFailure()) {
        FAIL() << proto.DebugString();
      }
      ++total;
      if (naive.rule_index >= 0) ++decided_by_rule;
    }
  }
  // The generator is only useful if rules actually decide often.
  EXPECT_GT(decided_by_rule, total / 3);
}

}  // namespace
}  // namespace meshguard::sidecar::authz
