#include "identity/util/yaml_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/struct.pb.h"
#include "proto/config.pb.h"
#include "proto/policy.pb.h"

namespace meshguard::util {
namespace {

using ::meshguard::config::v1::CaConfig;
using ::meshguard::config::v1::SidecarConfig;
using ::meshguard::policy::v1::AuthorizationPolicy;
using ::testing::HasSubstr;

// The example in DESIGN.md, "Authorization policy".
constexpr char kDesignPolicy[] =
    R"(default_action: DENY            # when no rule matches
rules:
  - name: frontend-reads-orders
    action: ALLOW                # ALLOW | DENY | AUDIT
    from:
      principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]  # exact, "prefix*", "*"
      namespaces: ["shop"]
    to:
      methods: ["/shop.v1.Orders/Get", "/shop.v1.Orders/*"]
    when:
      - header: x-tenant
        values: ["acme"]
    dry_run: false               # true: log and count what it would do, change nothing
)";

std::string TempPath(const std::string& name) {
  const char* dir = std::getenv("TEST_TMPDIR");
  return absl::StrCat(dir != nullptr ? dir : "/tmp", "/", name);
}

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << contents;
}

TEST(YamlConfigTest, DesignPolicyExample) {
  AuthorizationPolicy policy;
  absl::Status s = ParseYamlToMessage(kDesignPolicy, "policy.yaml", &policy);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(policy.default_action(), meshguard::policy::v1::DENY);
  ASSERT_EQ(policy.rules_size(), 1);
  const auto& rule = policy.rules(0);
  EXPECT_EQ(rule.name(), "frontend-reads-orders");
  EXPECT_EQ(rule.action(), meshguard::policy::v1::ALLOW);
  ASSERT_EQ(rule.from().principals_size(), 1);
  EXPECT_EQ(rule.from().principals(0),
            "spiffe://cluster.local/ns/shop/sa/frontend");
  ASSERT_EQ(rule.from().namespaces_size(), 1);
  EXPECT_EQ(rule.from().namespaces(0), "shop");
  ASSERT_EQ(rule.to().methods_size(), 2);
  EXPECT_EQ(rule.to().methods(0), "/shop.v1.Orders/Get");
  EXPECT_EQ(rule.to().methods(1), "/shop.v1.Orders/*");
  ASSERT_EQ(rule.when_size(), 1);
  EXPECT_EQ(rule.when(0).header(), "x-tenant");
  ASSERT_EQ(rule.when(0).values_size(), 1);
  EXPECT_EQ(rule.when(0).values(0), "acme");
  EXPECT_FALSE(rule.dry_run());
}

TEST(YamlConfigTest, FullSidecarConfig) {
  constexpr char kYaml[] = R"(
trust_domain: example.org
ca:
  address: meshguard-ca.meshguard-system.svc:15012
  ca_bundle_file: /etc/meshguard/ca.pem
  server_name: meshguard-ca
  token_file: /var/run/secrets/tokens/meshguard
  ttl: 1800s
listeners:
  outbound: 127.0.0.1:15001
  inbound: 0.0.0.0:15006
  admin: 127.0.0.1:15000
app_address: 8080            # an int into a string field
routes:
  - authority: orders.shop.svc:50051
    upstream: 10.0.0.7:15006
    spiffe_id: spiffe://example.org/ns/shop/sa/orders
  - authority: users
    upstream: 10.0.0.8:15006
transparent: yes
policy_file: /etc/meshguard/policy.yaml
workers: 4
timeouts:
  connect: 2.5s
  idle: 300s
  drain:                       # null: unset
rotation:
  renewFraction: 0.5           # JSON (lowerCamel) names work too
  jitter_fraction: .1e0
  initial_backoff: 1s
  max_backoff: 60s
access_log:
  path: stdout
  sample_rate: 1
metrics:
  max_principals: 100
  max_methods: 50
)";
  SidecarConfig c;
  absl::Status s = ParseYamlToMessage(kYaml, "sidecar.yaml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.trust_domain(), "example.org");
  EXPECT_EQ(c.ca().address(), "meshguard-ca.meshguard-system.svc:15012");
  EXPECT_EQ(c.ca().ca_bundle_file(), "/etc/meshguard/ca.pem");
  EXPECT_EQ(c.ca().server_name(), "meshguard-ca");
  EXPECT_EQ(c.ca().token_file(), "/var/run/secrets/tokens/meshguard");
  EXPECT_EQ(c.ca().ttl().seconds(), 1800);
  EXPECT_EQ(c.listeners().outbound(), "127.0.0.1:15001");
  EXPECT_EQ(c.listeners().inbound(), "0.0.0.0:15006");
  EXPECT_EQ(c.listeners().admin(), "127.0.0.1:15000");
  EXPECT_EQ(c.app_address(), "8080");
  ASSERT_EQ(c.routes_size(), 2);
  EXPECT_EQ(c.routes(0).authority(), "orders.shop.svc:50051");
  EXPECT_EQ(c.routes(0).upstream(), "10.0.0.7:15006");
  EXPECT_EQ(c.routes(0).spiffe_id(), "spiffe://example.org/ns/shop/sa/orders");
  EXPECT_EQ(c.routes(1).authority(), "users");
  EXPECT_EQ(c.routes(1).spiffe_id(), "");
  EXPECT_TRUE(c.transparent());
  EXPECT_EQ(c.policy_file(), "/etc/meshguard/policy.yaml");
  EXPECT_EQ(c.workers(), 4u);
  EXPECT_EQ(c.timeouts().connect().seconds(), 2);
  EXPECT_EQ(c.timeouts().connect().nanos(), 500000000);
  EXPECT_EQ(c.timeouts().idle().seconds(), 300);
  EXPECT_FALSE(c.timeouts().has_drain());
  EXPECT_DOUBLE_EQ(c.rotation().renew_fraction(), 0.5);
  EXPECT_DOUBLE_EQ(c.rotation().jitter_fraction(), 0.1);
  EXPECT_EQ(c.rotation().initial_backoff().seconds(), 1);
  EXPECT_EQ(c.rotation().max_backoff().seconds(), 60);
  EXPECT_EQ(c.access_log().path(), "stdout");
  EXPECT_DOUBLE_EQ(c.access_log().sample_rate(), 1.0);
  EXPECT_EQ(c.metrics().max_principals(), 100u);
  EXPECT_EQ(c.metrics().max_methods(), 50u);
}

TEST(YamlConfigTest, CaConfigWithDurations) {
  constexpr char kYaml[] = R"(trust_domain: cluster.local
data_dir: /var/lib/meshguard-ca
listen: 0.0.0.0:15012
admin_http_listen: 127.0.0.1:15014
server_dns_names:
  - meshguard-ca
  - meshguard-ca.meshguard-system.svc
default_ttl: 3600s
max_ttl: 86400s
admin_ids: ["spiffe://cluster.local/ns/meshguard-system/sa/admin"]
kubernetes:
  enabled: true
  jwks_file: /etc/meshguard/jwks.json
  issuer: https://kubernetes.default.svc.cluster.local
  audience: meshguard-ca
  clock_skew: 30s
rate_limit:
  requests_per_second: 5
  burst: 20
max_request_bytes: 65536
storage:
  kind: postgres
  dsn: "host=db dbname=meshguard"
)";
  CaConfig c;
  absl::Status s = ParseYamlToMessage(kYaml, "ca.yaml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.trust_domain(), "cluster.local");
  EXPECT_EQ(c.data_dir(), "/var/lib/meshguard-ca");
  EXPECT_EQ(c.listen(), "0.0.0.0:15012");
  EXPECT_EQ(c.admin_http_listen(), "127.0.0.1:15014");
  ASSERT_EQ(c.server_dns_names_size(), 2);
  EXPECT_EQ(c.server_dns_names(1), "meshguard-ca.meshguard-system.svc");
  EXPECT_EQ(c.default_ttl().seconds(), 3600);
  EXPECT_EQ(c.max_ttl().seconds(), 86400);
  ASSERT_EQ(c.admin_ids_size(), 1);
  EXPECT_EQ(c.admin_ids(0),
            "spiffe://cluster.local/ns/meshguard-system/sa/admin");
  EXPECT_TRUE(c.kubernetes().enabled());
  EXPECT_EQ(c.kubernetes().jwks_file(), "/etc/meshguard/jwks.json");
  EXPECT_EQ(c.kubernetes().issuer(),
            "https://kubernetes.default.svc.cluster.local");
  EXPECT_EQ(c.kubernetes().audience(), "meshguard-ca");
  EXPECT_EQ(c.kubernetes().clock_skew().seconds(), 30);
  EXPECT_DOUBLE_EQ(c.rate_limit().requests_per_second(), 5.0);
  EXPECT_EQ(c.rate_limit().burst(), 20u);
  EXPECT_EQ(c.max_request_bytes(), 65536u);
  EXPECT_EQ(c.storage().kind(), "postgres");
  EXPECT_EQ(c.storage().dsn(), "host=db dbname=meshguard");
}

struct OkCase {
  std::string name;
  std::string yaml;
};

class YamlConfigEmptyTest : public ::testing::TestWithParam<OkCase> {};

TEST_P(YamlConfigEmptyTest, IsEmptyMessage) {
  SidecarConfig c;
  c.set_trust_domain("stale");  // Must be replaced, not merged into.
  absl::Status s = ParseYamlToMessage(GetParam().yaml, "sidecar.yaml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.ByteSizeLong(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, YamlConfigEmptyTest,
    ::testing::Values(OkCase{"empty", ""}, OkCase{"newlines", "\n\n"},
                      OkCase{"comments", "# nothing here\n   # or here\n"},
                      OkCase{"document_marker", "---\n# empty\n"},
                      OkCase{"null", "~\n"}, OkCase{"empty_map", "{}\n"}),
    [](const ::testing::TestParamInfo<OkCase>& info) {
      return info.param.name;
    });

struct ErrorCase {
  std::string name;
  std::string source;
  std::string yaml;
  bool policy;  // AuthorizationPolicy, else SidecarConfig.
  // Expected in the message: "<source>:<line>" and, when set, the field
  // path and the reason.
  std::string location;
  std::string field;
  std::string reason;
};

class YamlConfigErrorTest : public ::testing::TestWithParam<ErrorCase> {};

TEST_P(YamlConfigErrorTest, NamesFileLineAndField) {
  const ErrorCase& c = GetParam();
  SidecarConfig sidecar;
  sidecar.set_trust_domain("kept");
  AuthorizationPolicy policy;
  policy.set_default_action(meshguard::policy::v1::ALLOW);
  google::protobuf::Message* out =
      c.policy ? static_cast<google::protobuf::Message*>(&policy) : &sidecar;
  absl::Status s = ParseYamlToMessage(c.yaml, c.source, out);
  ASSERT_FALSE(s.ok()) << c.name;
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  std::string message(s.message());
  EXPECT_THAT(message, HasSubstr(c.location + ": ")) << message;
  if (!c.field.empty()) {
    EXPECT_THAT(message, HasSubstr("field \"" + c.field + "\": ")) << message;
  }
  EXPECT_THAT(message, HasSubstr(c.reason)) << message;
  // A failed parse leaves the output alone.
  EXPECT_EQ(sidecar.trust_domain(), "kept");
  EXPECT_EQ(policy.default_action(), meshguard::policy::v1::ALLOW);
}

constexpr char kBadEnumPolicy[] = R"(# Shop policy.
default_action: DENY
rules:
  - name: frontend-reads-orders
    action: ALLOW
    from:
      principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
    to:
      methods: ["/shop.v1.Orders/*"]

  - name: block-legacy
    action: PERMIT
    from:
      namespaces: ["legacy"]
)";

INSTANTIATE_TEST_SUITE_P(
    Cases, YamlConfigErrorTest,
    ::testing::Values(
        ErrorCase{"unknown_top_level_field", "sidecar.yaml",
                  "trust_domain: cluster.local\n"
                  "listners:\n"
                  "  outbound: 127.0.0.1:15001\n",
                  false, "sidecar.yaml:2", "listners", "unknown field"},
        ErrorCase{"unknown_nested_field", "sidecar.yaml",
                  "trust_domain: example.org\n"
                  "app_address: 127.0.0.1:8080\n"
                  "listeners:\n"
                  "  outbound: 127.0.0.1:15001\n"
                  "  inbound: 0.0.0.0:15006\n"
                  "  admin: 127.0.0.1:15000\n"
                  "  inbnd: 0.0.0.0:15007\n",
                  false, "sidecar.yaml:7", "listeners.inbnd", "unknown field"},
        ErrorCase{"unknown_field_in_list_element", "policy.yaml",
                  "rules:\n"
                  "  - name: a\n"
                  "    action: ALLOW\n"
                  "  - name: b\n"
                  "    acton: DENY\n",
                  true, "policy.yaml:5", "rules[1].acton", "unknown field"},
        ErrorCase{"bad_enum", "policy.yaml", kBadEnumPolicy, true,
                  "policy.yaml:12", "rules[1].action",
                  "invalid value \"PERMIT\" for enum "
                  "meshguard.policy.v1.Action"},
        ErrorCase{"lowercase_enum", "policy.yaml", "default_action: deny\n",
                  true, "policy.yaml:1", "default_action",
                  "invalid value \"deny\" for enum meshguard.policy.v1.Action"},
        ErrorCase{"string_where_list_belongs", "policy.yaml",
                  "rules:\n"
                  "  - name: a\n"
                  "    action: ALLOW\n"
                  "    from:\n"
                  "      principals: spiffe://cluster.local/ns/shop/sa/a\n",
                  true, "policy.yaml:5", "rules[0].from.principals",
                  "expected a list, got a scalar"},
        ErrorCase{"list_where_message_belongs", "policy.yaml",
                  "rules:\n"
                  "  - name: a\n"
                  "    action: ALLOW\n"
                  "    from:\n"
                  "      - principals: [\"*\"]\n",
                  true, "policy.yaml:4", "rules[0].from",
                  "expected a mapping for meshguard.policy.v1.Source, got a "
                  "list"},
        ErrorCase{"mapping_where_list_belongs", "policy.yaml",
                  "rules:\n"
                  "  name: a\n",
                  true, "policy.yaml:1", "rules",
                  "expected a list, got a mapping"},
        ErrorCase{"list_where_string_belongs", "sidecar.yaml",
                  "\n"
                  "app_address: [a, b]\n",
                  false, "sidecar.yaml:2", "app_address",
                  "expected string, got a list"},
        ErrorCase{"bad_bool", "sidecar.yaml", "transparent: maybe\n", false,
                  "sidecar.yaml:1", "transparent",
                  "invalid value \"maybe\" for bool"},
        ErrorCase{"negative_uint", "sidecar.yaml", "workers: -1\n", false,
                  "sidecar.yaml:1", "workers",
                  "invalid value \"-1\" for uint32"},
        ErrorCase{"uint_overflow", "sidecar.yaml", "workers: 4294967296\n",
                  false, "sidecar.yaml:1", "workers",
                  "invalid value \"4294967296\" for uint32"},
        ErrorCase{"bad_double", "sidecar.yaml",
                  "rotation:\n  renew_fraction: half\n", false,
                  "sidecar.yaml:2", "rotation.renew_fraction",
                  "invalid value \"half\" for double"},
        ErrorCase{"bad_duration", "sidecar.yaml", "ca:\n  ttl: 1h\n", false,
                  "sidecar.yaml:2", "ca.ttl",
                  "invalid value \"1h\" for google.protobuf.Duration"},
        ErrorCase{"field_set_twice_via_json_name", "sidecar.yaml",
                  "trust_domain: a\ntrustDomain: b\n", false, "sidecar.yaml:2",
                  "trustDomain", "set twice"},
        ErrorCase{"top_level_scalar", "sidecar.yaml", "just a string\n", false,
                  "sidecar.yaml:1", "",
                  "expected a mapping for meshguard.config.v1.SidecarConfig, "
                  "got a scalar"},
        ErrorCase{"syntax_error_unclosed_flow", "policy.yaml",
                  "default_action: DENY\n"
                  "rules:\n"
                  "  - name: a\n"
                  "    to: {methods: [\"/a.B/C\"]\n",
                  true, "policy.yaml:5:1", "", "invalid YAML: "},
        ErrorCase{"syntax_error_bad_indent", "sidecar.yaml",
                  "listeners:\n"
                  "  outbound: a\n"
                  " inbound: b\n",
                  false, "sidecar.yaml:3:2", "", "invalid YAML: "},
        ErrorCase{"two_documents", "sidecar.yaml",
                  "trust_domain: a\n"
                  "---\n"
                  "trust_domain: b\n",
                  false, "sidecar.yaml:3", "", "more than one YAML document"},
        // yaml-cpp 0.7 reports a null document for a stray ',' without
        // consuming it, so its LoadAll never returned and allocated without
        // bound (jbeder/yaml-cpp#1040; found by //tests/fuzz:config_fuzz).
        ErrorCase{"lone_comma", "sidecar.yaml", ",", false, "sidecar.yaml:1:1",
                  "", "invalid YAML: unexpected ','"},
        ErrorCase{"comma_after_a_field", "sidecar.yaml", "trust_domain: a\n,\n",
                  false, "sidecar.yaml:2:1", "", "invalid YAML: "},
        ErrorCase{"comma_in_policy", "policy.yaml",
                  "default_action: DENY\nrules: []\n,\n", true,
                  "policy.yaml:3:1", "", "invalid YAML: "},
        ErrorCase{"comma_after_a_document", "sidecar.yaml",
                  "trust_domain: a\n...\n,\n", false, "sidecar.yaml:3:1", "",
                  "invalid YAML: unexpected ','"}),
    [](const ::testing::TestParamInfo<ErrorCase>& info) {
      return info.param.name;
    });

TEST(YamlConfigTest, LoadsFile) {
  std::string path = TempPath("policy.yaml");
  WriteFile(path, kDesignPolicy);
  AuthorizationPolicy policy;
  absl::Status s = LoadYamlFile(path, &policy);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(policy.rules(0).name(), "frontend-reads-orders");
}

TEST(YamlConfigTest, FileErrorsNameThePath) {
  std::string path = TempPath("bad-sidecar.yaml");
  WriteFile(path, "listeners:\n  inbnd: x\n");
  SidecarConfig c;
  absl::Status s = LoadYamlFile(path, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr(path + ":2: field \"listeners.inbnd\": unknown field"));
}

TEST(YamlConfigTest, EmptyFileIsEmptyMessage) {
  std::string path = TempPath("empty.yaml");
  WriteFile(path, "");
  CaConfig c;
  absl::Status s = LoadYamlFile(path, &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.ByteSizeLong(), 0u);
}

TEST(YamlConfigTest, MissingFileIsNotFoundNamingPath) {
  std::string path = TempPath("does-not-exist.yaml");
  CaConfig c;
  absl::Status s = LoadYamlFile(path, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("No such file"));
}

TEST(YamlConfigTest, RefusesFilesOverOneMiB) {
  std::string path = TempPath("huge.yaml");
  std::string yaml = "trust_domain: a\n";
  yaml += std::string(kMaxYamlConfigBytes, '#');
  WriteFile(path, yaml);
  CaConfig c;
  absl::Status s = LoadYamlFile(path, &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(path));
  EXPECT_THAT(std::string(s.message()), HasSubstr("larger than"));

  s = ParseYamlToMessage(yaml, "huge.yaml", &c);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("huge.yaml: "));
}

TEST(YamlConfigTest, AliasExpansionIsBounded) {
  // 20000 references to a list of 20000 strings: under 1 MiB of YAML,
  // gigabytes once expanded.
  std::string yaml = "rules:\n  - name: a\n    when:\n";
  absl::StrAppend(&yaml, "      - header: h\n        values: &v [");
  for (int i = 0; i < 20000; ++i) absl::StrAppend(&yaml, i > 0 ? "," : "", "x");
  absl::StrAppend(&yaml, "]\n");
  for (int i = 0; i < 20000; ++i) {
    absl::StrAppend(&yaml, "      - {header: h, values: *v}\n");
  }
  ASSERT_LT(yaml.size(), kMaxYamlConfigBytes);
  AuthorizationPolicy policy;
  absl::Status s = ParseYamlToMessage(yaml, "policy.yaml", &policy);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("expands to more than"));
}

TEST(YamlConfigTest, QuotedScalarsAndNumbersIntoStrings) {
  constexpr char kYaml[] =
      "trust_domain: 'true'\n"
      "app_address: 1.50\n"
      "policy_file: \"15001\"\n"
      "workers: \"8\"\n";
  SidecarConfig c;
  absl::Status s = ParseYamlToMessage(kYaml, "sidecar.yaml", &c);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(c.trust_domain(), "true");
  EXPECT_EQ(c.app_address(), "1.50");  // The text as written.
  EXPECT_EQ(c.policy_file(), "15001");
  EXPECT_EQ(c.workers(), 8u);
}

TEST(YamlConfigTest, ParserOnlyErrorsStillGetALine) {
  // Bad base64 is only caught by protobuf's JSON parser.
  google::protobuf::UninterpretedOption bytes;
  absl::Status s =
      ParseYamlToMessage("identifier_value: x\nstring_value: \"not base64!\"\n",
                         "bytes.yaml", &bytes);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("bytes.yaml:2: field \"string_value\": "))
      << s;
}

TEST(YamlConfigTest, LinesOfFieldsByProtoName) {
  constexpr char kYaml[] =
      "ca:\n"
      "  caBundleFile: /etc/bundle.pem\n"  // JSON name
      "  join_token:\n"                    // null: unset, still located
      "listeners: {inbound: nope}\n"
      "routes:\n"
      "  - authority: a\n"
      "    upstream: 127.0.0.1:1\n"
      "  - authority: b\n";
  SidecarConfig c;
  FieldLines lines = {{"stale", 1}};
  absl::Status s = ParseYamlToMessage(kYaml, "sidecar.yaml", &c, &lines);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(lines, (FieldLines{{"ca", 1},
                               {"ca.ca_bundle_file", 2},
                               {"ca.join_token", 3},
                               {"listeners", 4},
                               {"listeners.inbound", 4},
                               {"routes", 5},
                               {"routes[0]", 6},
                               {"routes[0].authority", 6},
                               {"routes[0].upstream", 7},
                               {"routes[1]", 8},
                               {"routes[1].authority", 8}}));
}

TEST(YamlConfigTest, LinesOfFieldsNotOfScalarsInLists) {
  CaConfig c;
  FieldLines lines;
  absl::Status s = ParseYamlToMessage(
      "admin_ids:\n  - spiffe://a/b\n  - not-an-id\n", "ca.yaml", &c, &lines);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(lines, (FieldLines{{"admin_ids", 1}}));

  google::protobuf::Struct st;  // Struct's contents are not fields.
  s = ParseYamlToMessage("a: {b: 1}\n", "struct.yaml", &st, &lines);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(lines.empty());

  s = ParseYamlToMessage("# nothing\n", "empty.yaml", &c, &lines);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(lines.empty());
}

TEST(YamlConfigTest, StructTakesYamlTypes) {
  google::protobuf::Struct st;
  absl::Status s = ParseYamlToMessage("a: 1\nb: [true, 'x', ~]\nc: {d: 2.5}\n",
                                      "struct.yaml", &st);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(st.fields().at("a").number_value(), 1.0);
  EXPECT_TRUE(st.fields().at("b").list_value().values(0).bool_value());
  EXPECT_EQ(st.fields().at("b").list_value().values(1).string_value(), "x");
  EXPECT_EQ(st.fields().at("c").struct_value().fields().at("d").number_value(),
            2.5);
}

}  // namespace
}  // namespace meshguard::util
