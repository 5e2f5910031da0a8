#include "sidecar/authz/policy_cli.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"

namespace meshguard::sidecar::authz {
namespace {

using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(default_action: DENY
rules:
  - name: frontend-reads-orders
    action: ALLOW
    from:
      principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
      namespaces: ["shop"]
    to:
      methods: ["/shop.v1.Orders/Get", "/shop.v1.Orders/*"]
    when:
      - header: x-tenant
        values: ["acme"]
  - name: block-delete
    action: DENY
    to:
      methods: ["/shop.v1.Orders/Delete"]
  - name: log-orders
    action: AUDIT
    to:
      methods: ["/shop.v1.Orders/*"]
  - name: new-deny
    action: DENY
    dry_run: true
    from:
      namespaces: ["shop"]
)";

constexpr char kFrontend[] = "spiffe://cluster.local/ns/shop/sa/frontend";

std::string WriteTemp(const std::string& name, const std::string& contents) {
  const char* dir = std::getenv("TEST_TMPDIR");
  std::string path = absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << contents;
  return path;
}

TEST(PolicyCheckTest, AllowByRuleWithAuditAndDryRun) {
  std::string path = WriteTemp("check.yaml", kPolicy);
  std::ostringstream out;
  EXPECT_EQ(RunPolicyCheck(path, kFrontend, "/shop.v1.Orders/Get",
                           {"X-Tenant=acme"}, out),
            kCheckAllowed);
  EXPECT_EQ(out.str(),
            "ALLOW by rule \"frontend-reads-orders\"\n"
            "audit: rule \"log-orders\" (AUDIT) matched\n"
            "dry-run: rule \"new-deny\" would DENY\n");
}

TEST(PolicyCheckTest, DenyByRuleAndByDefault) {
  std::string path = WriteTemp("check2.yaml", kPolicy);
  std::ostringstream out;
  EXPECT_EQ(RunPolicyCheck(path, kFrontend, "/shop.v1.Orders/Delete",
                           {"x-tenant=acme"}, out),
            kCheckDenied);
  EXPECT_THAT(out.str(), HasSubstr("DENY by rule \"block-delete\"\n"));
  out.str("");
  EXPECT_EQ(RunPolicyCheck(path, kFrontend, "/shop.v1.Orders/Get",
                           {"x-tenant=other=x"}, out),
            kCheckDenied);
  EXPECT_THAT(out.str(), HasSubstr("DENY by default\n"));
}

TEST(PolicyCheckTest, Errors) {
  std::ostringstream out;
  EXPECT_EQ(
      RunPolicyCheck("/nonexistent/policy.yaml", kFrontend, "/a.B/C", {}, out),
      kCheckError);
  EXPECT_THAT(out.str(), HasSubstr("/nonexistent/policy.yaml"));
  std::string path = WriteTemp("check3.yaml", kPolicy);
  out.str("");
  EXPECT_EQ(RunPolicyCheck(path, kFrontend, "/a.B/C", {"novalue"}, out),
            kCheckError);
  // A key given twice is the header sent twice (not an error): the DENY
  // rule on x-tenant=evil holds if any value is evil.
  std::string deny_path = WriteTemp(
      "check_twice.yaml",
      "default_action: ALLOW\nrules:\n  - name: no-evil\n    action: DENY\n"
      "    when:\n      - header: x-tenant\n        values: [evil]\n");
  out.str("");
  EXPECT_EQ(RunPolicyCheck(deny_path, kFrontend, "/a.B/C",
                           {"x-tenant=acme", "X-Tenant=evil"}, out),
            kCheckDenied)
      << out.str();
  EXPECT_THAT(out.str(), HasSubstr("DENY by rule \"no-evil\""));
  // A method the sidecar would refuse before the policy is not "checked".
  for (const std::string& method :
       {"/shop.v1.Orders/Delete/", "//shop.v1.Orders/Delete",
        "/shop.v1.Orders//Delete", "/shop.v1.Orders/%44elete",
        "/shop.v1.Orders/Delete?x=1", "shop.v1.Orders/Delete"}) {
    out.str("");
    EXPECT_EQ(RunPolicyCheck(path, kFrontend, method, {}, out), kCheckError)
        << method;
    EXPECT_THAT(out.str(), HasSubstr("is not a gRPC method")) << method;
  }
}

TEST(PolicyLintCliTest, EmptyFileIsAnErrorAsInTheSidecar) {
  for (const std::string& contents : {std::string(""), std::string(" \n\n")}) {
    std::string path = WriteTemp("lint_empty.yaml", contents);
    std::ostringstream out;
    EXPECT_EQ(RunPolicyLint(path, out), 1) << out.str();
    EXPECT_THAT(out.str(), HasSubstr("policy file is empty"));
    out.str("");
    EXPECT_EQ(RunPolicyCheck(path, kFrontend, "/a.B/C", {}, out), kCheckError);
    EXPECT_THAT(out.str(), HasSubstr("policy file is empty"));
  }
}

TEST(PolicyLintCliTest, CleanFileExitsZero) {
  std::string path = WriteTemp("lint_ok.yaml", kPolicy);
  std::ostringstream out;
  EXPECT_EQ(RunPolicyLint(path, out), 0) << out.str();
  EXPECT_THAT(out.str(), HasSubstr("0 errors, 0 warnings"));
}

TEST(PolicyLintCliTest, WarningsStillExitZero) {
  std::string path = WriteTemp("lint_warn.yaml", "default_action: ALLOW\n");
  std::ostringstream out;
  EXPECT_EQ(RunPolicyLint(path, out), 0);
  EXPECT_THAT(out.str(), HasSubstr("warning [allow-all]"));
  EXPECT_THAT(out.str(), HasSubstr("0 errors, 1 warning"));
}

TEST(PolicyLintCliTest, UnknownFieldIsAnErrorWithLine) {
  std::string path = WriteTemp("lint_unknown.yaml",
                               "rules:\n  - name: a\n    action: ALLOW\n"
                               "    form:\n      namespaces: [shop]\n");
  std::ostringstream out;
  EXPECT_EQ(RunPolicyLint(path, out), 1);
  EXPECT_THAT(out.str(), HasSubstr(path + ":4:"));
  EXPECT_THAT(out.str(), HasSubstr("form"));
}

TEST(PolicyLintCliTest, SemanticErrorsExitOne) {
  std::string path = WriteTemp("lint_bad.yaml",
                               "rules:\n  - name: a\n    action: ALLOW\n"
                               "  - name: a\n    action: DENY\n");
  std::ostringstream out;
  EXPECT_EQ(RunPolicyLint(path, out), 1);
  EXPECT_THAT(out.str(),
              HasSubstr("rules[1] \"a\": field \"name\": duplicate"));
  EXPECT_THAT(out.str(), HasSubstr("1 error,"));
}

}  // namespace
}  // namespace meshguard::sidecar::authz
