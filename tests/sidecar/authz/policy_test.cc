#include "sidecar/authz/policy.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"

namespace meshguard::sidecar::authz {
namespace {

namespace pb = ::meshguard::policy::v1;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kFrontend[] = "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr char kOrders[] = "spiffe://cluster.local/ns/shop/sa/orders";
constexpr char kBilling[] = "spiffe://cluster.local/ns/billing/sa/api";
constexpr char kForeign[] = "spiffe://partner.example/ns/shop/sa/frontend";
constexpr char kNoNamespace[] = "spiffe://cluster.local/workload/7";
constexpr char kGarbage[] = "not a spiffe id";
constexpr char kGet[] = "/shop.v1.Orders/Get";
constexpr char kList[] = "/shop.v1.Orders/List";
constexpr char kAdminGet[] = "/shop.v1.OrdersAdmin/Get";

AuthorizationPolicy ParsePolicy(const std::string& text) {
  AuthorizationPolicy p;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &p)) << text;
  return p;
}

std::shared_ptr<const CompiledPolicy> MustCompile(const std::string& text) {
  absl::StatusOr<std::shared_ptr<const CompiledPolicy>> c =
      CompiledPolicy::Compile(ParsePolicy(text));
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : nullptr;
}

// One allow rule named "r" with the given body, default DENY: "r" decides
// exactly when the body matches.
std::string AllowOnly(const std::string& body) {
  return absl::StrCat("rules { name: 'r' action: ALLOW ", body, " }");
}

struct Case {
  std::string name;
  std::string policy;  // text proto of an AuthorizationPolicy
  std::string peer;
  std::string method;
  std::vector<std::pair<std::string, std::string>> headers;
  bool allowed;
  std::string rule;                // deciding rule or "default"
  std::vector<std::string> audit;  // "name:ACTION" or "name:dry_run:ACTION"
  bool no_headers = false;         // Request::headers = nullptr
};

std::string PrintCase(const ::testing::TestParamInfo<Case>& info) {
  return info.param.name;
}

class EvaluateTest : public ::testing::TestWithParam<Case> {};

TEST_P(EvaluateTest, Decides) {
  const Case& c = GetParam();
  std::shared_ptr<const CompiledPolicy> policy = MustCompile(c.policy);
  ASSERT_NE(policy, nullptr);
  StaticHeaderMap headers(c.headers);
  Request request{c.peer, c.method, c.no_headers ? nullptr : &headers};

  for (const Decision& d :
       {policy->Evaluate(request), policy->EvaluateUnindexed(request)}) {
    EXPECT_EQ(d.allowed, c.allowed);
    EXPECT_EQ(d.rule, c.rule);
    EXPECT_EQ(d.rule_index < 0, c.rule == "default");
    std::vector<std::string> audit;
    for (const AuditMatch& m : d.audit_matches) {
      audit.push_back(absl::StrCat(m.rule, ":", m.dry_run ? "dry_run:" : "",
                                   pb::Action_Name(m.action)));
    }
    EXPECT_THAT(audit, ElementsAreArray(c.audit));
  }
}

// clang-format off
INSTANTIATE_TEST_SUITE_P(Principals, EvaluateTest, ::testing::Values(
  Case{"exact_match", AllowOnly(absl::StrCat("from { principals: '", kFrontend, "' }")),
       kFrontend, kGet, {}, true, "r"},
  Case{"exact_other", AllowOnly(absl::StrCat("from { principals: '", kFrontend, "' }")),
       kOrders, kGet, {}, false, "default"},
  Case{"exact_one_of_several",
       AllowOnly(absl::StrCat("from { principals: '", kBilling, "' principals: '", kOrders, "' }")),
       kOrders, kGet, {}, true, "r"},
  Case{"prefix_match", AllowOnly("from { principals: 'spiffe://cluster.local/ns/shop/*' }"),
       kOrders, kGet, {}, true, "r"},
  Case{"prefix_other", AllowOnly("from { principals: 'spiffe://cluster.local/ns/shop/*' }"),
       kBilling, kGet, {}, false, "default"},
  Case{"prefix_needs_valid_id", AllowOnly("from { principals: 'spiffe://*' }"),
       "spiffe://Cluster.local/x", kGet, {}, false, "default"},
  Case{"star_matches_valid", AllowOnly("from { principals: '*' }"),
       kForeign, kGet, {}, true, "r"},
  Case{"star_matches_garbage", AllowOnly("from { principals: '*' }"),
       kGarbage, kGet, {}, true, "r"},
  Case{"star_matches_empty", AllowOnly("from { principals: '*' }"),
       "", kGet, {}, true, "r"},
  Case{"garbage_matches_no_exact", AllowOnly("from { principals: 'spiffe://cluster.local/x' }"),
       "spiffe://cluster.local/x/", kGet, {}, false, "default"},
  Case{"not_exact_excludes",
       AllowOnly(absl::StrCat("from { principals: '*' not_principals: '", kFrontend, "' }")),
       kFrontend, kGet, {}, false, "default"},
  Case{"not_exact_spares_others",
       AllowOnly(absl::StrCat("from { principals: '*' not_principals: '", kFrontend, "' }")),
       kOrders, kGet, {}, true, "r"},
  Case{"not_prefix_excludes",
       AllowOnly("from { not_principals: 'spiffe://cluster.local/ns/shop/*' }"),
       kOrders, kGet, {}, false, "default"},
  Case{"not_prefix_spares_garbage",
       AllowOnly("from { not_principals: 'spiffe://cluster.local/ns/shop/*' }"),
       kGarbage, kGet, {}, true, "r"},
  Case{"not_star_excludes_all", AllowOnly("from { not_principals: '*' }"),
       kGarbage, kGet, {}, false, "default"}),
  PrintCase);

INSTANTIATE_TEST_SUITE_P(Namespaces, EvaluateTest, ::testing::Values(
  Case{"exact_match", AllowOnly("from { namespaces: 'shop' }"),
       kFrontend, kGet, {}, true, "r"},
  Case{"exact_other", AllowOnly("from { namespaces: 'shop' }"),
       kBilling, kGet, {}, false, "default"},
  Case{"prefix_match", AllowOnly("from { namespaces: 'bill*' }"),
       kBilling, kGet, {}, true, "r"},
  Case{"prefix_other", AllowOnly("from { namespaces: 'bill*' }"),
       kFrontend, kGet, {}, false, "default"},
  Case{"star_without_ns_shape", AllowOnly("from { namespaces: '*' }"),
       kNoNamespace, kGet, {}, true, "r"},
  Case{"exact_without_ns_shape", AllowOnly("from { namespaces: 'workload' }"),
       kNoNamespace, kGet, {}, false, "default"},
  Case{"exact_on_garbage", AllowOnly("from { namespaces: 'shop' }"),
       "spiffe://cluster.local/ns/shop/sa/a b", kGet, {}, false, "default"},
  Case{"not_excludes", AllowOnly("from { not_namespaces: 'shop' }"),
       kOrders, kGet, {}, false, "default"},
  Case{"not_spares_others", AllowOnly("from { not_namespaces: 'shop' }"),
       kBilling, kGet, {}, true, "r"},
  Case{"not_spares_garbage", AllowOnly("from { principals: '*' not_namespaces: 'shop' }"),
       kGarbage, kGet, {}, true, "r"},
  Case{"same_ns_other_domain", AllowOnly("from { namespaces: 'shop' }"),
       kForeign, kGet, {}, true, "r"}),
  PrintCase);

INSTANTIATE_TEST_SUITE_P(TrustDomains, EvaluateTest, ::testing::Values(
  Case{"exact_match", AllowOnly("from { trust_domains: 'cluster.local' }"),
       kNoNamespace, kGet, {}, true, "r"},
  Case{"exact_other", AllowOnly("from { trust_domains: 'cluster.local' }"),
       kForeign, kGet, {}, false, "default"},
  Case{"prefix_match", AllowOnly("from { trust_domains: 'partner.*' }"),
       kForeign, kGet, {}, true, "r"},
  Case{"prefix_other", AllowOnly("from { trust_domains: 'partner.*' }"),
       kFrontend, kGet, {}, false, "default"},
  Case{"star_on_garbage", AllowOnly("from { trust_domains: '*' }"),
       kGarbage, kGet, {}, true, "r"},
  Case{"exact_on_garbage", AllowOnly("from { trust_domains: 'cluster.local' }"),
       "spiffe://cluster.local", kGet, {}, false, "default"},
  Case{"not_excludes", AllowOnly("from { not_trust_domains: 'partner.example' }"),
       kForeign, kGet, {}, false, "default"},
  Case{"not_spares_others", AllowOnly("from { not_trust_domains: 'partner.example' }"),
       kFrontend, kGet, {}, true, "r"},
  Case{"all_lists_must_match",
       AllowOnly(absl::StrCat("from { principals: '", kForeign,
                              "' namespaces: 'shop' trust_domains: 'cluster.local' }")),
       kForeign, kGet, {}, false, "default"}),
  PrintCase);

INSTANTIATE_TEST_SUITE_P(Methods, EvaluateTest, ::testing::Values(
  Case{"exact_match", AllowOnly("to { methods: '/shop.v1.Orders/Get' }"),
       kFrontend, kGet, {}, true, "r"},
  Case{"exact_other", AllowOnly("to { methods: '/shop.v1.Orders/Get' }"),
       kFrontend, kList, {}, false, "default"},
  Case{"service_match", AllowOnly("to { methods: '/shop.v1.Orders/*' }"),
       kFrontend, kList, {}, true, "r"},
  Case{"service_is_not_a_string_prefix", AllowOnly("to { methods: '/shop.v1.Orders/*' }"),
       kFrontend, kAdminGet, {}, false, "default"},
  Case{"star", AllowOnly("to { methods: '*' }"),
       kFrontend, "/anything/At", {}, true, "r"},
  Case{"not_exact", AllowOnly("to { methods: '/shop.v1.Orders/*' not_methods: '/shop.v1.Orders/Get' }"),
       kFrontend, kGet, {}, false, "default"},
  Case{"not_exact_spares", AllowOnly("to { methods: '/shop.v1.Orders/*' not_methods: '/shop.v1.Orders/Get' }"),
       kFrontend, kList, {}, true, "r"},
  Case{"not_service", AllowOnly("to { not_methods: '/shop.v1.OrdersAdmin/*' }"),
       kFrontend, kAdminGet, {}, false, "default"},
  Case{"both_sides", AllowOnly(absl::StrCat("from { principals: '", kFrontend,
                                            "' } to { methods: '", kGet, "' }")),
       kOrders, kGet, {}, false, "default"}),
  PrintCase);

INSTANTIATE_TEST_SUITE_P(When, EvaluateTest, ::testing::Values(
  Case{"equals", AllowOnly("when { header: 'x-tenant' values: 'acme' values: 'umbrella' }"),
       kFrontend, kGet, {{"x-tenant", "umbrella"}}, true, "r"},
  Case{"equals_other_value", AllowOnly("when { header: 'x-tenant' values: 'acme' }"),
       kFrontend, kGet, {{"x-tenant", "acme2"}}, false, "default"},
  Case{"equals_absent", AllowOnly("when { header: 'x-tenant' values: 'acme' }"),
       kFrontend, kGet, {{"x-other", "acme"}}, false, "default"},
  Case{"present", AllowOnly("when { header: 'x-debug' }"),
       kFrontend, kGet, {{"x-debug", ""}}, true, "r"},
  Case{"present_absent", AllowOnly("when { header: 'x-debug' }"),
       kFrontend, kGet, {}, false, "default"},
  Case{"no_header_map", AllowOnly("when { header: 'x-debug' }"),
       kFrontend, kGet, {}, false, "default", {}, /*no_headers=*/true},
  Case{"all_must_hold", AllowOnly("when { header: 'a' } when { header: 'b' values: '1' }"),
       kFrontend, kGet, {{"a", "x"}, {"b", "2"}}, false, "default"},
  Case{"all_hold", AllowOnly("when { header: 'a' } when { header: 'b' values: '1' }"),
       kFrontend, kGet, {{"a", "x"}, {"b", "1"}}, true, "r"}),
  PrintCase);

// A header sent more than once counts against the caller: one matching
// value is enough for a DENY (or AUDIT) condition, an ALLOW condition needs
// every value to match.
constexpr char kDenyEvilTenant[] =
    "default_action: ALLOW "
    "rules { name: 'no-evil' action: DENY when { header: 'x-tenant' values: 'evil' } }";
constexpr char kAuditEvilTenant[] =
    "default_action: ALLOW "
    "rules { name: 'log-evil' action: AUDIT when { header: 'x-tenant' values: 'evil' } }";
INSTANTIATE_TEST_SUITE_P(RepeatedHeaders, EvaluateTest, ::testing::Values(
  Case{"deny_one_value", kDenyEvilTenant, kFrontend, kGet,
       {{"x-tenant", "evil"}}, false, "no-evil"},
  Case{"deny_sent_twice", kDenyEvilTenant, kFrontend, kGet,
       {{"x-tenant", "evil"}, {"x-tenant", "evil"}}, false, "no-evil"},
  Case{"deny_hidden_behind_another_value", kDenyEvilTenant, kFrontend, kGet,
       {{"x-tenant", "acme"}, {"x-tenant", "evil"}}, false, "no-evil"},
  Case{"deny_not_matched_by_other_values", kDenyEvilTenant, kFrontend, kGet,
       {{"x-tenant", "acme"}, {"x-tenant", "initech"}}, true, "default"},
  Case{"deny_joined_value_is_not_a_value", kDenyEvilTenant, kFrontend, kGet,
       {{"x-tenant", "acme,evil"}}, true, "default"},
  Case{"allow_every_value_matches", AllowOnly("when { header: 'x-tenant' values: 'acme' }"),
       kFrontend, kGet, {{"x-tenant", "acme"}, {"x-tenant", "acme"}}, true, "r"},
  Case{"allow_needs_every_value", AllowOnly("when { header: 'x-tenant' values: 'acme' }"),
       kFrontend, kGet, {{"x-tenant", "acme"}, {"x-tenant", "evil"}}, false, "default"},
  Case{"allow_presence_with_two_values", AllowOnly("when { header: 'x-tenant' }"),
       kFrontend, kGet, {{"x-tenant", "a"}, {"x-tenant", "b"}}, true, "r"},
  Case{"audit_any_value", kAuditEvilTenant, kFrontend, kGet,
       {{"x-tenant", "acme"}, {"x-tenant", "evil"}}, true, "default", {"log-evil:AUDIT"}}),
  PrintCase);

INSTANTIATE_TEST_SUITE_P(Order, EvaluateTest, ::testing::Values(
  Case{"no_rules_default_unset_denies", "", kFrontend, kGet, {}, false, "default"},
  Case{"no_rules_default_allow", "default_action: ALLOW", kFrontend, kGet, {}, true, "default"},
  Case{"no_rules_default_deny", "default_action: DENY", kFrontend, kGet, {}, false, "default"},
  Case{"empty_from_and_to_match_all", "rules { name: 'all' action: ALLOW }",
       kGarbage, "/x.Y/Z", {}, true, "all"},
  Case{"deny_after_allow_still_wins",
       "rules { name: 'allow' action: ALLOW } rules { name: 'deny' action: DENY }",
       kFrontend, kGet, {}, false, "deny"},
  Case{"deny_before_allow",
       "rules { name: 'deny' action: DENY } rules { name: 'allow' action: ALLOW }",
       kFrontend, kGet, {}, false, "deny"},
  Case{"first_matching_deny_named",
       "rules { name: 'a' action: ALLOW } "
       "rules { name: 'd1' action: DENY to { methods: '/x.Y/Z' } } "
       "rules { name: 'd2' action: DENY to { methods: '/shop.v1.Orders/*' } } "
       "rules { name: 'd3' action: DENY }",
       kFrontend, kGet, {}, false, "d2"},
  Case{"first_matching_allow_named",
       "rules { name: 'a1' action: ALLOW from { namespaces: 'billing' } } "
       "rules { name: 'a2' action: ALLOW from { namespaces: 'shop' } } "
       "rules { name: 'a3' action: ALLOW }",
       kFrontend, kGet, {}, true, "a2"},
  Case{"deny_beats_default_allow",
       "default_action: ALLOW rules { name: 'd' action: DENY from { namespaces: 'shop' } }",
       kFrontend, kGet, {}, false, "d"},
  Case{"audit_reported_outcome_unchanged",
       "rules { name: 'log' action: AUDIT to { methods: '/shop.v1.Orders/*' } } "
       "rules { name: 'log-billing' action: AUDIT from { namespaces: 'billing' } }",
       kFrontend, kGet, {}, false, "default", {"log:AUDIT"}},
  Case{"dry_run_deny_does_not_deny",
       "rules { name: 'new-deny' action: DENY dry_run: true } "
       "rules { name: 'allow' action: ALLOW }",
       kFrontend, kGet, {}, true, "allow", {"new-deny:dry_run:DENY"}},
  Case{"dry_run_allow_does_not_allow",
       "rules { name: 'new-allow' action: ALLOW dry_run: true }",
       kFrontend, kGet, {}, false, "default", {"new-allow:dry_run:ALLOW"}},
  Case{"audits_in_policy_order_whatever_decides",
       "rules { name: 'z' action: AUDIT } "
       "rules { name: 'deny' action: DENY } "
       "rules { name: 'a' action: AUDIT dry_run: true } "
       "rules { name: 'dry' action: ALLOW dry_run: true to { methods: '/other.S/M' } }",
       kFrontend, kGet, {}, false, "deny", {"z:AUDIT", "a:dry_run:AUDIT"}}),
  PrintCase);
// clang-format on

TEST(BuiltinPolicyTest, AllowsOnlyTheTrustDomain) {
  absl::StatusOr<std::shared_ptr<const CompiledPolicy>> p =
      CompiledPolicy::Compile(BuiltinTrustDomainPolicy("cluster.local"));
  ASSERT_TRUE(p.ok()) << p.status();
  Decision in = (*p)->Evaluate(Request{kFrontend, kGet});
  EXPECT_TRUE(in.allowed);
  EXPECT_EQ(in.rule, "builtin-allow-trust-domain");
  EXPECT_FALSE((*p)->Evaluate(Request{kForeign, kGet}).allowed);
  EXPECT_FALSE((*p)->Evaluate(Request{kGarbage, kGet}).allowed);
  EXPECT_FALSE((*p)->Evaluate(Request{"", kGet}).allowed);
  EXPECT_FALSE(CompiledPolicy::Compile(BuiltinTrustDomainPolicy("")).ok());
}

struct ErrorCase {
  std::string name;
  std::string policy;
  std::string error;  // substring of the message
};

class CompileErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(CompileErrorTest, RefusedNamingRuleAndField) {
  const ErrorCase& c = GetParam();
  absl::StatusOr<std::shared_ptr<const CompiledPolicy>> p =
      CompiledPolicy::Compile(ParsePolicy(c.policy), "policy.yaml");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), StartsWith("policy.yaml: "));
  EXPECT_THAT(std::string(p.status().message()), HasSubstr(c.error));
}

// clang-format off
INSTANTIATE_TEST_SUITE_P(Validation, CompileErrorTest, ::testing::Values(
  ErrorCase{"empty_name", "rules { action: ALLOW }",
            "rules[0] \"\": field \"name\": must not be empty"},
  ErrorCase{"duplicate_name",
            "rules { name: 'a' action: ALLOW } rules { name: 'a' action: DENY }",
            "rules[1] \"a\": field \"name\": duplicate name, already used by rules[0]"},
  ErrorCase{"reserved_name", "rules { name: 'default' action: ALLOW }",
            "rules[0] \"default\": field \"name\": \"default\" is reserved"},
  ErrorCase{"action_unset", "rules { name: 'a' }",
            "rules[0] \"a\": field \"action\": must be set"},
  ErrorCase{"action_unknown", "rules { name: 'a' action: 9 }",
            "rules[0] \"a\": field \"action\": unknown action 9"},
  ErrorCase{"default_audit", "default_action: AUDIT",
            "field \"default_action\": must be ALLOW or DENY"},
  ErrorCase{"empty_entry", "rules { name: 'a' action: ALLOW from { namespaces: '' } }",
            "rules[0] \"a\": field \"from.namespaces[0]\": empty entry"},
  ErrorCase{"principal_invalid",
            "rules { name: 'a' action: ALLOW from { principals: '*' principals: 'spiffe://Cluster/x' } }",
            "rules[0] \"a\": field \"from.principals[1]\": invalid SPIFFE ID"},
  ErrorCase{"principal_star_inside",
            "rules { name: 'a' action: ALLOW from { principals: 'spiffe://td/*/sa/x' } }",
            "field \"from.principals[0]\": \"spiffe://td/*/sa/x\": '*' is allowed only at the end"},
  ErrorCase{"principal_prefix_scheme",
            "rules { name: 'a' action: ALLOW from { principals: 'cluster.local/*' } }",
            "field \"from.principals[0]\": \"cluster.local/*\": a principal prefix must start with"},
  ErrorCase{"not_principal_invalid",
            "rules { name: 'a' action: DENY from { not_principals: 'frontend' } }",
            "field \"from.not_principals[0]\": invalid SPIFFE ID"},
  ErrorCase{"namespace_chars",
            "rules { name: 'a' action: ALLOW from { namespaces: 'shop/x' } }",
            "field \"from.namespaces[0]\": \"shop/x\": a namespace has only"},
  ErrorCase{"not_namespace_chars",
            "rules { name: 'a' action: ALLOW from { not_namespaces: 'a b*' } }",
            "field \"from.not_namespaces[0]\""},
  ErrorCase{"trust_domain_uppercase",
            "rules { name: 'a' action: ALLOW from { trust_domains: 'Cluster.local' } }",
            "field \"from.trust_domains[0]\": trust domain \"Cluster.local\" has uppercase"},
  ErrorCase{"trust_domain_prefix_chars",
            "rules { name: 'a' action: ALLOW from { not_trust_domains: 'a:b*' } }",
            "field \"from.not_trust_domains[0]\": \"a:b*\": a trust domain has only"},
  ErrorCase{"method_no_slash", "rules { name: 'a' action: ALLOW to { methods: 'Orders/Get' } }",
            "field \"to.methods[0]\": \"Orders/Get\": a method is"},
  ErrorCase{"method_three_parts", "rules { name: 'a' action: ALLOW to { methods: '/a/b/c' } }",
            "field \"to.methods[0]\""},
  ErrorCase{"method_partial_star", "rules { name: 'a' action: ALLOW to { methods: '/a.B/Get*' } }",
            "field \"to.methods[0]\""},
  ErrorCase{"method_service_star", "rules { name: 'a' action: ALLOW to { methods: '/a.*' } }",
            "field \"to.methods[0]\""},
  ErrorCase{"not_method", "rules { name: 'a' action: ALLOW to { not_methods: '/a.B/' } }",
            "field \"to.not_methods[0]\""},
  ErrorCase{"header_uppercase",
            "rules { name: 'a' action: ALLOW when { header: 'X-Tenant' } }",
            "rules[0] \"a\": field \"when[0].header\": \"X-Tenant\": must be lowercase"},
  ErrorCase{"header_empty",
            "rules { name: 'a' action: ALLOW when { header: 'a' } when { values: 'x' } }",
            "field \"when[1].header\": must not be empty"},
  ErrorCase{"header_chars",
            "rules { name: 'a' action: ALLOW when { header: 'x tenant' } }",
            "field \"when[0].header\": \"x tenant\": a header name has only"},
  ErrorCase{"counts_more_errors",
            "rules { name: 'a' } rules { name: 'b' } rules { name: 'c' }",
            "(and 2 more errors)"}),
  [](const ::testing::TestParamInfo<ErrorCase>& info) { return info.param.name; });
// clang-format on

TEST(FindPolicyErrorsTest, ReportsEveryErrorWithRuleIndex) {
  std::vector<PolicyError> errors = FindPolicyErrors(ParsePolicy(
      "default_action: AUDIT rules { name: 'ok' action: ALLOW } "
      "rules { name: 'bad' action: ALLOW to { methods: 'x' methods: 'y' } }"));
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].rule_index, -1);
  EXPECT_EQ(errors[1].rule_index, 1);
  EXPECT_THAT(std::string(errors[2].status.message()),
              HasSubstr("to.methods[1]"));
}

TEST(CompiledPolicyTest, DefaultActionAndRuleCount) {
  std::shared_ptr<const CompiledPolicy> p =
      MustCompile("rules { name: 'a' action: AUDIT }");
  EXPECT_EQ(p->default_action(), pb::DENY);
  EXPECT_EQ(p->rule_count(), 1u);
}

TEST(CompiledPolicyTest, LargeExactListsUseTheSetPath) {
  std::string principals;
  for (int i = 0; i < 50; ++i) {
    absl::StrAppend(&principals, " principals: 'spiffe://td/ns/n", i, "/sa/s'");
  }
  std::shared_ptr<const CompiledPolicy> p =
      MustCompile(AllowOnly(absl::StrCat("from {", principals, " }")));
  EXPECT_TRUE(p->Evaluate(Request{"spiffe://td/ns/n37/sa/s", kGet}).allowed);
  EXPECT_FALSE(p->Evaluate(Request{"spiffe://td/ns/n50/sa/s", kGet}).allowed);
}

TEST(CanonicalGrpcMethodPathTest, AcceptsOnlyTheOneSpelling) {
  for (const char* good : {"/shop.v1.Orders/Delete", "/Echo/Echo", "/a.B/C",
                           "/grpc.health.v1.Health/Check", "/x_y.Z9/_m1"}) {
    EXPECT_TRUE(IsCanonicalGrpcMethodPath(good)) << good;
  }
  for (const char* bad :
       {"",         "/",        "//",           "/a",        "/a/",
        "a.B/C",    "/a.B/C/",  "//a.B/C",      "/a.B//C",   "/a.B/C?x=1",
        "/a.B/%43", "/a.B/C#f", "/./a.B/C",     "/a.B/../C", "/.a.B/C",
        "/a.B./C",  "/a..B/C",  "/a.B/C.D",     "/a-b/C",    "/a.B/C D",
        "/a.B/C\n", "/a/b/c",   "/a.B/\xc3\xa9"}) {
    EXPECT_FALSE(IsCanonicalGrpcMethodPath(bad)) << bad;
  }
}

}  // namespace
}  // namespace meshguard::sidecar::authz
