// What sidecar B reports about the calls it authorizes: Prometheus series
// scraped from its admin port (labels per call, decisions by rule, bounded
// principal cardinality) and the JSON access log (one line per call, denials
// always, allowed calls sampled).
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/authz_fixture.h"

namespace meshguard::integration {
namespace {

using ::google::protobuf::Struct;
using ::meshguard::testing::Echo;
using ::meshguard::testing::WaitFor;

constexpr char kThirdId[] = "spiffe://cluster.local/ns/shop/sa/third";

std::string Policy(const std::string& yaml) {
  return absl::StrReplaceAll(yaml, {{"FRONTEND", kFrontendId},
                                    {"STRANGER", kStrangerId},
                                    {"ECHO", "/meshguard.testing.Echo"}});
}

constexpr char kPolicy[] = R"(default_action: DENY
rules:
  - name: frontend-reads
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
  - name: frontend-no-delete
    action: DENY
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/ReturnStatus"]}
  - name: stranger-status
    action: ALLOW
    from: {principals: ["STRANGER"]}
    to: {methods: ["ECHO/ReturnStatus"]}
)";

using Labels = std::map<std::string, std::string>;

class AuthzTelemetryTest : public ::testing::Test {
 protected:
  void StartMesh(AuthzMesh::Options options) {
    absl::StatusOr<std::unique_ptr<AuthzMesh>> mesh = AuthzMesh::Start(options);
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = *std::move(mesh);
  }

  ::testing::AssertionResult Reaches(SidecarInstance* sidecar,
                                     const std::string& name,
                                     const Labels& labels, double want) {
    std::string text;
    if (WaitFor(
            [&] {
              text = sidecar->Metrics();
              return MetricSum(text, name, labels) == want;
            },
            absl::Seconds(5))) {
      return ::testing::AssertionSuccess();
    }
    return ::testing::AssertionFailure()
           << name << " is " << MetricSum(text, name, labels) << ", want "
           << want << "\n/metrics:\n"
           << text;
  }

  // The first `n` access log lines (waits for them).
  std::vector<Struct> AccessLog(size_t n) {
    std::vector<Struct> lines;
    WaitFor(
        [&] {
          lines = mesh_->AccessLogLines();
          return lines.size() >= n;
        },
        absl::Seconds(5));
    return lines;
  }

  std::unique_ptr<AuthzMesh> mesh_;
};

TEST_F(AuthzTelemetryTest, RequestsAndDecisionsAreCountedWithTheirLabels) {
  AuthzMesh::Options options;
  options.policy_yaml = Policy(kPolicy);
  StartMesh(options);
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  std::unique_ptr<Echo::Stub> c = mesh_->StubVia(mesh_->c());
  ASSERT_TRUE(EchoCall(*a).ok());
  ASSERT_TRUE(EchoCall(*a).ok());
  ASSERT_EQ(ReturnStatusCall(*a).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Allowed, and the app answers NOT_FOUND.
  ASSERT_EQ(ReturnStatusCall(*c, {}, grpc::StatusCode::NOT_FOUND).error_code(),
            grpc::StatusCode::NOT_FOUND);
  ASSERT_EQ(EchoCall(*c).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  SidecarInstance* b = mesh_->b();
  const std::string requests = "meshguard_requests_total";
  EXPECT_TRUE(Reaches(b, requests,
                      {{"direction", "inbound"},
                       {"source_principal", kFrontendId},
                       {"method", kEchoMethod},
                       {"grpc_status", "0"},
                       {"decision", "allow"}},
                      2));
  EXPECT_TRUE(Reaches(b, requests,
                      {{"direction", "inbound"},
                       {"source_principal", kFrontendId},
                       {"method", kReturnStatusMethod},
                       {"grpc_status", "7"},
                       {"decision", "deny"}},
                      1));
  EXPECT_TRUE(Reaches(b, requests,
                      {{"direction", "inbound"},
                       {"source_principal", kStrangerId},
                       {"method", kReturnStatusMethod},
                       {"grpc_status", "5"},
                       {"decision", "allow"}},
                      1));
  EXPECT_TRUE(Reaches(b, requests,
                      {{"direction", "inbound"},
                       {"source_principal", kStrangerId},
                       {"method", kEchoMethod},
                       {"grpc_status", "7"},
                       {"decision", "deny"}},
                      1));
  // Nothing else went through B.
  EXPECT_TRUE(Reaches(b, requests, {}, 5));

  const std::string decisions = "meshguard_authz_decisions_total";
  EXPECT_TRUE(Reaches(b, decisions,
                      {{"decision", "allow"}, {"rule", "frontend-reads"}}, 2));
  EXPECT_TRUE(Reaches(
      b, decisions, {{"decision", "deny"}, {"rule", "frontend-no-delete"}}, 1));
  EXPECT_TRUE(Reaches(b, decisions,
                      {{"decision", "allow"}, {"rule", "stranger-status"}}, 1));
  EXPECT_TRUE(
      Reaches(b, decisions, {{"decision", "deny"}, {"rule", "default"}}, 1));
  EXPECT_TRUE(Reaches(b, decisions, {}, 5));

  // The client side counts its calls as outbound, under its own identity,
  // without a decision.
  EXPECT_TRUE(Reaches(mesh_->a(), requests,
                      {{"direction", "outbound"},
                       {"source_principal", kFrontendId},
                       {"method", kEchoMethod},
                       {"grpc_status", "0"},
                       {"decision", "none"}},
                      2));
  EXPECT_EQ(MetricSeries(mesh_->a()->Metrics(), decisions), 0);
}

TEST_F(AuthzTelemetryTest, PrincipalLabelsOverflowIntoOther) {
  AuthzMesh::Options options;
  options.policy_yaml = Policy(R"(default_action: DENY
rules:
  - name: shop-echo
    action: ALLOW
    from: {namespaces: ["shop"]}
    to: {methods: ["ECHO/Echo"]}
)");
  options.b_config_yaml = "metrics: {max_principals: 2}\n";
  options.extra_client_ids = {kThirdId};
  StartMesh(options);
  // In this order: the first two principals keep their names.
  for (SidecarInstance* client :
       {mesh_->a(), mesh_->c(), mesh_->extra(0), mesh_->a()}) {
    std::unique_ptr<Echo::Stub> stub = mesh_->StubVia(client);
    grpc::Status s = EchoCall(*stub);
    ASSERT_TRUE(s.ok()) << client->options().spiffe_id << ": "
                        << s.error_message();
  }
  const std::string requests = "meshguard_requests_total";
  SidecarInstance* b = mesh_->b();
  EXPECT_TRUE(Reaches(b, requests, {{"direction", "inbound"}}, 4));
  EXPECT_TRUE(Reaches(b, requests, {{"source_principal", kFrontendId}}, 2));
  EXPECT_TRUE(Reaches(b, requests, {{"source_principal", kStrangerId}}, 1));
  EXPECT_TRUE(Reaches(b, requests, {{"source_principal", "other"}}, 1));
  std::string text = b->Metrics();
  EXPECT_EQ(MetricSeries(text, requests, {{"source_principal", kThirdId}}), 0)
      << text;
  std::set<std::string> principals;
  for (const MetricSample& s : ParseMetrics(text)) {
    if (s.name == requests) principals.insert(s.labels.at("source_principal"));
  }
  EXPECT_EQ(principals.size(), 3u);

  // The effective config shows the cap.
  absl::StatusOr<meshguard::testing::HttpResponse> dump =
      b->Admin("/config_dump");
  ASSERT_TRUE(dump.ok()) << dump.status();
  std::optional<Struct> json = ParseJsonObject(dump->body);
  ASSERT_TRUE(json.has_value()) << dump->body;
  EXPECT_EQ(json->fields()
                .at("config")
                .struct_value()
                .fields()
                .at("metrics")
                .struct_value()
                .fields()
                .at("max_principals")
                .number_value(),
            2);
}

TEST_F(AuthzTelemetryTest, AccessLogHasOneLinePerCall) {
  AuthzMesh::Options options;
  options.policy_yaml = Policy(kPolicy);
  StartMesh(options);
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  std::unique_ptr<Echo::Stub> c = mesh_->StubVia(mesh_->c());
  ASSERT_TRUE(EchoCall(*a, std::string(1000, 'x')).ok());
  ASSERT_EQ(ReturnStatusCall(*a).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_EQ(EchoCall(*c).error_code(), grpc::StatusCode::PERMISSION_DENIED);

  std::vector<Struct> lines = AccessLog(3);
  ASSERT_EQ(lines.size(), 3u);
  for (const Struct& line : lines) {
    for (const char* key :
         {"direction", "peer", "method", "grpc_status", "decision", "rule",
          "duration_ms", "request_bytes", "response_bytes"}) {
      EXPECT_TRUE(HasField(line, key))
          << key << " missing in " << line.DebugString();
    }
    EXPECT_EQ(StringField(line, "direction"), "inbound");
    EXPECT_GE(NumberField(line, "duration_ms"), 0);
  }
  // In call order.
  EXPECT_EQ(StringField(lines[0], "peer"), kFrontendId);
  EXPECT_EQ(StringField(lines[0], "method"), kEchoMethod);
  EXPECT_EQ(NumberField(lines[0], "grpc_status"), 0);
  EXPECT_EQ(StringField(lines[0], "decision"), "allow");
  EXPECT_EQ(StringField(lines[0], "rule"), "frontend-reads");
  EXPECT_GT(NumberField(lines[0], "request_bytes"), 1000);
  EXPECT_GT(NumberField(lines[0], "response_bytes"), 1000);

  EXPECT_EQ(StringField(lines[1], "peer"), kFrontendId);
  EXPECT_EQ(StringField(lines[1], "method"), kReturnStatusMethod);
  EXPECT_EQ(NumberField(lines[1], "grpc_status"), 7);
  EXPECT_EQ(StringField(lines[1], "decision"), "deny");
  EXPECT_EQ(StringField(lines[1], "rule"), "frontend-no-delete");
  EXPECT_EQ(NumberField(lines[1], "response_bytes"), 0);

  EXPECT_EQ(StringField(lines[2], "peer"), kStrangerId);
  EXPECT_EQ(NumberField(lines[2], "grpc_status"), 7);
  EXPECT_EQ(StringField(lines[2], "decision"), "deny");
  EXPECT_EQ(StringField(lines[2], "rule"), "default");
}

TEST_F(AuthzTelemetryTest, SamplingDropsOnlyAllowedCalls) {
  AuthzMesh::Options options;
  options.policy_yaml = Policy(kPolicy);
  // --access-log FILE from the fixture sets the path; the rate comes from
  // the config file.
  options.b_config_yaml = "access_log: {sample_rate: 0.5}\n";
  StartMesh(options);
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  constexpr int kAllowed = 200, kDenied = 20;
  for (int i = 0; i < kAllowed; ++i) ASSERT_TRUE(EchoCall(*a).ok());
  for (int i = 0; i < kDenied; ++i) {
    ASSERT_EQ(ReturnStatusCall(*a).error_code(),
              grpc::StatusCode::PERMISSION_DENIED);
  }
  // Every call is counted even if not logged.
  EXPECT_TRUE(Reaches(mesh_->b(), "meshguard_requests_total",
                      {{"direction", "inbound"}}, kAllowed + kDenied));
  std::vector<Struct> lines = mesh_->AccessLogLines();
  int allowed = 0, denied = 0;
  for (const Struct& line : lines) {
    (StringField(line, "decision") == "deny" ? denied : allowed)++;
  }
  EXPECT_EQ(denied, kDenied);
  // Binomial(200, 0.5): mean 100, sd ~7; 60..140 is beyond 5 sd.
  EXPECT_GE(allowed, 60);
  EXPECT_LE(allowed, 140);
}

}  // namespace
}  // namespace meshguard::integration
