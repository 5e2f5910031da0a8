#include "sidecar/authz/policy_lint.h"

#include <gmock/gmock.h>
#include <google/protobuf/text_format.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace meshguard::sidecar::authz {
namespace {

using ::meshguard::policy::v1::AuthorizationPolicy;
using ::testing::UnorderedElementsAreArray;

AuthorizationPolicy ParsePolicy(const std::string& text) {
  AuthorizationPolicy p;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &p)) << text;
  return p;
}

struct LintCase {
  std::string name;
  std::string policy;
  // "code@rule_index" of every finding.
  std::vector<std::string> findings;
};

class LintTest : public ::testing::TestWithParam<LintCase> {};

TEST_P(LintTest, Finds) {
  const LintCase& c = GetParam();
  std::vector<LintFinding> findings = Lint(ParsePolicy(c.policy));
  std::vector<std::string> got;
  for (const LintFinding& f : findings) {
    got.push_back(absl::StrCat(f.code, "@", f.rule_index));
  }
  EXPECT_THAT(got, UnorderedElementsAreArray(c.findings));
}

// clang-format off
INSTANTIATE_TEST_SUITE_P(Cases, LintTest, ::testing::Values(
  LintCase{"clean",
           "rules { name: 'a' action: ALLOW from { namespaces: 'shop' } } "
           "rules { name: 'd' action: DENY from { namespaces: 'shop' } to { methods: '/a.B/Del' } }",
           {}},
  LintCase{"empty_default_allow", "default_action: ALLOW", {"allow-all@-1"}},
  LintCase{"audit_only_default_allow",
           "default_action: ALLOW rules { name: 'log' action: AUDIT }", {"allow-all@-1"}},
  LintCase{"dry_run_deny_does_not_count",
           "default_action: ALLOW rules { name: 'd' action: DENY dry_run: true }",
           {"allow-all@-1"}},
  LintCase{"empty_default_deny", "", {}},
  LintCase{"catch_all_deny_before",
           "rules { name: 'd' action: DENY } rules { name: 'a' action: ALLOW }",
           {"deny-all@0", "unreachable-allow@1"}},
  LintCase{"catch_all_deny_star_lists_after",
           "rules { name: 'a' action: ALLOW from { namespaces: 'shop' } } "
           "rules { name: 'd' action: DENY from { principals: '*' } to { methods: '*' } }",
           {"deny-all@1", "unreachable-allow@0"}},
  LintCase{"deny_superset_principals_and_methods",
           "rules { name: 'd' action: DENY from { principals: 'spiffe://td/ns/shop/*' } "
           "  to { methods: '/shop.v1.Orders/*' } } "
           "rules { name: 'a' action: ALLOW from { principals: 'spiffe://td/ns/shop/sa/x' "
           "  principals: 'spiffe://td/ns/shop/sa/y' } to { methods: '/shop.v1.Orders/Get' } "
           "  when { header: 'x-tenant' } }",
           {"unreachable-allow@1"}},
  LintCase{"deny_narrower_is_fine",
           "rules { name: 'd' action: DENY from { principals: 'spiffe://td/ns/shop/sa/x' } } "
           "rules { name: 'a' action: ALLOW from { principals: 'spiffe://td/ns/shop/*' } }",
           {}},
  LintCase{"deny_methods_only_vs_allow_any_method",
           "rules { name: 'd' action: DENY to { methods: '/a.B/*' } } "
           "rules { name: 'a' action: ALLOW from { namespaces: 'shop' } }",
           {}},
  LintCase{"deny_not_namespaces_excludes_allow",
           "rules { name: 'd' action: DENY from { not_namespaces: 'shop' } } "
           "rules { name: 'a' action: ALLOW from { namespaces: 'billing' } } "
           "rules { name: 'b' action: ALLOW from { namespaces: 'shop' } }",
           {"unreachable-allow@1"}},
  LintCase{"deny_when_weaker_than_allow_when",
           "rules { name: 'd' action: DENY when { header: 'x-debug' } } "
           "rules { name: 'a' action: ALLOW when { header: 'x-debug' values: '1' } } "
           "rules { name: 'b' action: ALLOW when { header: 'x-other' } }",
           {"unreachable-allow@1"}},
  LintCase{"deny_values_must_include_allow_values",
           "rules { name: 'd' action: DENY when { header: 'x-t' values: 'a' } } "
           "rules { name: 'a' action: ALLOW when { header: 'x-t' values: 'a' values: 'b' } }",
           {}},
  LintCase{"dry_run_deny_makes_nothing_unreachable",
           "rules { name: 'd' action: DENY dry_run: true } rules { name: 'a' action: ALLOW }",
           {"allow-all@1"}},
  LintCase{"allow_every_call_under_default_deny",
           "rules { name: 'everyone' action: ALLOW from { principals: '*' } to { methods: '*' } }",
           {"allow-all@0"}},
  LintCase{"allow_with_a_condition_is_not_everything",
           "rules { name: 'tenant' action: ALLOW when { header: 'x-tenant' values: 'acme' } }",
           {}},
  LintCase{"shadowed_allow",
           "rules { name: 'wide' action: ALLOW from { namespaces: 'shop' } } "
           "rules { name: 'narrow' action: ALLOW from { namespaces: 'shop' } to { methods: '/a.B/C' } }",
           {"shadowed-rule@1"}},
  LintCase{"narrow_before_wide_is_fine",
           "rules { name: 'narrow' action: ALLOW from { namespaces: 'shop' } to { methods: '/a.B/C' } } "
           "rules { name: 'wide' action: ALLOW from { namespaces: 'shop' } }",
           {}},
  LintCase{"shadowed_deny",
           "rules { name: 'd1' action: DENY from { trust_domains: 'evil.org' } } "
           "rules { name: 'd2' action: DENY from { principals: 'spiffe://evil.org/ns/a/sa/b' "
           "  trust_domains: 'evil.org' } }",
           {"shadowed-rule@1"}},
  LintCase{"redundant_allow",
           "default_action: ALLOW rules { name: 'd' action: DENY from { namespaces: 'x' } } "
           "rules { name: 'a' action: ALLOW }",
           {"redundant-allow@1"}},
  LintCase{"audit_dry_run", "rules { name: 'log' action: AUDIT dry_run: true }",
           {"audit-dry-run@0"}},
  LintCase{"errors_all_reported",
           "default_action: AUDIT rules { name: 'a' action: ALLOW } "
           "rules { name: 'a' action: DENY to { methods: 'x' } }",
           {"invalid@-1", "allow-all@0", "invalid@1", "invalid@1"}}),
  [](const ::testing::TestParamInfo<LintCase>& info) { return info.param.name; });
// clang-format on

TEST(LintTest, MessagesNameRules) {
  std::vector<LintFinding> f = Lint(ParsePolicy(
      "rules { name: 'block' action: DENY } rules { name: 'ok' action: ALLOW "
      "}"));
  ASSERT_EQ(f.size(), 2u);
  std::ostringstream out;
  out << f[1];
  EXPECT_EQ(out.str(),
            "warning [unreachable-allow]: rules[1] \"ok\": can never allow: "
            "DENY rule rules[0] \"block\" matches every call it matches");
  EXPECT_FALSE(HasErrors(f));
  EXPECT_TRUE(HasErrors(Lint(ParsePolicy("rules { name: 'x' }"))));
}

}  // namespace
}  // namespace meshguard::sidecar::authz
