// Authorization end to end: real meshguard-ca, echo app, sidecar B enforcing
// a policy file, client sidecars A (frontend) and C (stranger). What a caller
// gets (status and message), what the app sees (nothing, when denied), and
// what B logs and counts for dry-run and AUDIT rules; `meshguardctl policy
// check` agrees with the sidecar; `meshguardctl policy lint` on real files.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "grpcpp/generic/generic_stub.h"
#include "gtest/gtest.h"
#include "tests/integration/authz_fixture.h"

namespace meshguard::integration {
namespace {

using ::google::protobuf::Struct;
using ::meshguard::testing::Echo;
using ::meshguard::testing::EchoResponse;
using ::meshguard::testing::WaitFor;
using ::testing::HasSubstr;

// Policies name callers and methods by placeholders: FRONTEND, STRANGER,
// ECHO (the service prefix "/meshguard.testing.Echo").
std::string Policy(const std::string& yaml) {
  return absl::StrReplaceAll(yaml, {{"FRONTEND", kFrontendId},
                                    {"STRANGER", kStrangerId},
                                    {"ECHO", "/meshguard.testing.Echo"}});
}

std::string DeniedByRule(const std::string& peer, const std::string& method,
                         const std::string& rule) {
  return absl::StrCat("meshguard: ", peer, " may not call ", method,
                      ": denied by rule \"", rule, "\"");
}

std::string DeniedByDefault(const std::string& peer,
                            const std::string& method) {
  return absl::StrCat("meshguard: ", peer, " may not call ", method,
                      ": denied by the default policy (no rule allows it)");
}

class AuthzPolicyTest : public ::testing::Test {
 protected:
  void StartMesh(const std::string& policy_yaml) {
    AuthzMesh::Options options;
    options.policy_yaml = Policy(policy_yaml);
    absl::StatusOr<std::unique_ptr<AuthzMesh>> mesh = AuthzMesh::Start(options);
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = *std::move(mesh);
  }

  // Polls B's /metrics until `name{labels}` sums to `want` (counters are
  // updated when a call ends, which may be just after the client returns).
  ::testing::AssertionResult MetricReaches(
      const std::string& name, const std::map<std::string, std::string>& labels,
      double want) {
    std::string text;
    bool ok = WaitFor(
        [&] {
          text = mesh_->b()->Metrics();
          return MetricSum(text, name, labels) == want;
        },
        absl::Seconds(5));
    if (ok) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << " with the given labels is "
                                         << MetricSum(text, name, labels)
                                         << ", want " << want << "\n/metrics:\n"
                                         << text;
  }

  std::unique_ptr<AuthzMesh> mesh_;
};

constexpr char kGetNotDeletePolicy[] = R"(default_action: DENY
rules:
  - name: frontend-reads-orders
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/*"]}
  - name: no-deletes-from-frontend
    action: DENY
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/ReturnStatus", "ECHO/Sleep"]}
)";

TEST_F(AuthzPolicyTest, AllowsGetDeniesDeleteByRuleAndStrangerByDefault) {
  StartMesh(kGetNotDeletePolicy);
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  std::unique_ptr<Echo::Stub> c = mesh_->StubVia(mesh_->c());
  std::unique_ptr<Echo::Stub> app = mesh_->DirectStub();

  // A's "Get" reaches the app, which sees who called.
  EchoResponse response;
  grpc::Status s = EchoCall(*a, "get order 7", {}, &response);
  ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message() << "\n"
                      << mesh_->b()->process()->DescribeOutput();
  EXPECT_EQ(response.payload(), "get order 7");
  EXPECT_THAT(response.forwarded_client_cert(),
              HasSubstr(absl::StrCat("URI=", kFrontendId)));

  // A's "Delete": denied by the DENY rule, named in the message.
  s = ReturnStatusCall(*a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), DeniedByRule(kFrontendId, kReturnStatusMethod,
                                            "no-deletes-from-frontend"));

  // A denied Sleep never reaches the app: the app has no record of its
  // token. The same call straight to the app does leave one.
  s = SleepCall(*a, "denied-sleep", 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), DeniedByRule(kFrontendId, kSleepMethod,
                                            "no-deletes-from-frontend"));
  absl::StatusOr<meshguard::testing::CancelStateResponse> state =
      CancelState(*app, "denied-sleep");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_FALSE(state->started()) << "the app saw a denied call";
  ASSERT_TRUE(SleepCall(*app, "direct-sleep", 1).ok());
  state = CancelState(*app, "direct-sleep");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_TRUE(state->started()) << "GetCancelState does not see Sleep calls";

  // C: no rule names it; the default denies.
  s = EchoCall(*c);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), DeniedByDefault(kStrangerId, kEchoMethod));
}

// Rules match the :path byte for byte; an app's router may read another
// spelling of a denied method as that method. So only the canonical
// spelling gets to the policy (or the app).
TEST_F(AuthzPolicyTest,
       OtherSpellingsOfADeniedMethodAreRefusedBeforeThePolicy) {
  StartMesh(R"(default_action: ALLOW
rules:
  - name: no-echo
    action: DENY
    to: {methods: ["ECHO/Echo"]}
)");
  std::shared_ptr<grpc::Channel> channel = mesh_->ChannelVia(mesh_->c());
  grpc::GenericStub stub(channel);
  meshguard::testing::EchoRequest request;
  request.set_payload("x");
  grpc::ByteBuffer request_bytes;
  bool own = false;
  const grpc::Status serialized =
      grpc::GenericSerialize<grpc::ProtoBufferWriter,
                             meshguard::testing::EchoRequest>(
          request, &request_bytes, &own);
  ASSERT_TRUE(serialized.ok());
  auto call = [&](const std::string& method) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(5));
    grpc::ByteBuffer response;
    grpc::Status status;
    absl::Notification done;
    stub.UnaryCall(&context, method, grpc::StubOptions(), &request_bytes,
                   &response, [&](grpc::Status s) {
                     status = std::move(s);
                     done.Notify();
                   });
    done.WaitForNotification();
    return status;
  };

  grpc::Status canonical = call(kEchoMethod);
  EXPECT_EQ(canonical.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(canonical.error_message(),
            DeniedByRule(kStrangerId, kEchoMethod, "no-echo"));
  for (const std::string& spelling :
       {std::string(kEchoMethod) + "/", std::string(kEchoMethod) + "?x=1",
        std::string("/meshguard.testing.Echo/%45cho"),
        std::string("//meshguard.testing.Echo/Echo"),
        std::string("/meshguard.testing.Echo//Echo"),
        std::string("/meshguard.testing.Echo/./Echo")}) {
    SCOPED_TRACE(spelling);
    grpc::Status s = call(spelling);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << s.error_message();
    EXPECT_THAT(s.error_message(),
                AllOf(HasSubstr("is not a gRPC method in its canonical form"),
                      HasSubstr("refused before authorization")));
  }
  // Allowed methods still pass, and the refusals are counted as denials.
  EXPECT_TRUE(ReturnStatusCall(*mesh_->StubVia(mesh_->c())).error_code() !=
              grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(MetricReaches("meshguard_authz_decisions_total",
                            {{"decision", "deny"}, {"rule", "malformed_path"}},
                            6));
}

TEST_F(AuthzPolicyTest, DenyRuleBeatsAllowRuleWhereverItIsInTheFile) {
  // The DENY for Sleep comes before the broad ALLOW, the DENY for
  // ReturnStatus after it; both must win.
  StartMesh(R"(default_action: ALLOW
rules:
  - name: deny-sleep-first
    action: DENY
    to: {methods: ["ECHO/Sleep"]}
  - name: allow-shop
    action: ALLOW
    from: {namespaces: ["shop"]}
  - name: deny-status-last
    action: DENY
    from: {principals: ["spiffe://cluster.local/ns/shop/*"]}
    to: {methods: ["ECHO/ReturnStatus"]}
)");
  for (SidecarInstance* client : {mesh_->a(), mesh_->c()}) {
    const std::string& id = client->options().spiffe_id;
    SCOPED_TRACE(id);
    std::unique_ptr<Echo::Stub> stub = mesh_->StubVia(client);
    grpc::Status s = EchoCall(*stub);
    EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
    s = SleepCall(*stub, absl::StrCat("sleep-", id), 1);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(s.error_message(),
              DeniedByRule(id, kSleepMethod, "deny-sleep-first"));
    s = ReturnStatusCall(*stub);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
    EXPECT_EQ(s.error_message(),
              DeniedByRule(id, kReturnStatusMethod, "deny-status-last"));
  }
  EXPECT_TRUE(
      MetricReaches("meshguard_authz_decisions_total",
                    {{"decision", "deny"}, {"rule", "deny-sleep-first"}}, 2));
  EXPECT_TRUE(
      MetricReaches("meshguard_authz_decisions_total",
                    {{"decision", "deny"}, {"rule", "deny-status-last"}}, 2));
  EXPECT_TRUE(MetricReaches("meshguard_authz_decisions_total",
                            {{"decision", "allow"}, {"rule", "allow-shop"}},
                            2));
}

TEST_F(AuthzPolicyTest, DryRunAndAuditRulesLogAndCountWithoutDeciding) {
  StartMesh(R"(default_action: DENY
rules:
  - name: frontend-echo
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
  - name: try-deny-frontend
    action: DENY
    dry_run: true
    from: {principals: ["FRONTEND"]}
  - name: audit-echo
    action: AUDIT
    to: {methods: ["ECHO/Echo"]}
  - name: try-allow-stranger
    action: ALLOW
    dry_run: true
    from: {principals: ["STRANGER"]}
)");
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  std::unique_ptr<Echo::Stub> c = mesh_->StubVia(mesh_->c());
  for (int i = 0; i < 3; ++i) {
    grpc::Status s = EchoCall(*a);
    EXPECT_TRUE(s.ok()) << "a dry-run DENY denied: " << s.error_message();
  }
  for (int i = 0; i < 2; ++i) {
    grpc::Status s = EchoCall(*c);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << "a dry-run ALLOW allowed";
    EXPECT_EQ(s.error_message(), DeniedByDefault(kStrangerId, kEchoMethod));
  }

  // Counted, with what each rule would have done.
  EXPECT_TRUE(MetricReaches("meshguard_authz_audit_matches_total",
                            {{"rule", "try-deny-frontend"}, {"would", "deny"}},
                            3));
  EXPECT_TRUE(
      MetricReaches("meshguard_authz_audit_matches_total",
                    {{"rule", "try-allow-stranger"}, {"would", "allow"}}, 2));
  EXPECT_TRUE(MetricReaches("meshguard_authz_audit_matches_total",
                            {{"rule", "audit-echo"}, {"would", "audit"}}, 5));
  // The decisions themselves are those of the enforced rules.
  EXPECT_TRUE(MetricReaches("meshguard_authz_decisions_total",
                            {{"decision", "allow"}, {"rule", "frontend-echo"}},
                            3));
  EXPECT_TRUE(MetricReaches("meshguard_authz_decisions_total",
                            {{"decision", "deny"}, {"rule", "default"}}, 2));
  std::string metrics = mesh_->b()->Metrics();
  EXPECT_EQ(MetricSum(metrics, "meshguard_authz_decisions_total",
                      {{"rule", "try-deny-frontend"}}),
            0);
  EXPECT_EQ(MetricSum(metrics, "meshguard_authz_decisions_total",
                      {{"rule", "try-allow-stranger"}}),
            0);

  // Logged on B's stdout, one line per match, naming rule, peer and method.
  std::vector<Struct> dry = mesh_->b()->LogEvents("authz_dry_run");
  int frontend_lines = 0, stranger_lines = 0;
  for (const Struct& line : dry) {
    EXPECT_EQ(StringField(line, "method"), kEchoMethod);
    if (StringField(line, "rule") == "try-deny-frontend") {
      ++frontend_lines;
      EXPECT_EQ(StringField(line, "would"), "deny");
      EXPECT_EQ(StringField(line, "peer"), kFrontendId);
    } else if (StringField(line, "rule") == "try-allow-stranger") {
      ++stranger_lines;
      EXPECT_EQ(StringField(line, "would"), "allow");
      EXPECT_EQ(StringField(line, "peer"), kStrangerId);
    } else {
      ADD_FAILURE() << "unexpected dry-run rule " << StringField(line, "rule");
    }
  }
  EXPECT_EQ(frontend_lines, 3);
  EXPECT_EQ(stranger_lines, 2);
  std::vector<Struct> audit = mesh_->b()->LogEvents("authz_audit");
  EXPECT_EQ(audit.size(), 5u) << mesh_->b()->process()->ReadStdout();
  for (const Struct& line : audit) {
    EXPECT_EQ(StringField(line, "rule"), "audit-echo");
    EXPECT_EQ(StringField(line, "would"), "audit");
  }
}

TEST_F(AuthzPolicyTest, WhenHeaderConditionAllowsOnlyCallsCarryingIt) {
  StartMesh(R"(default_action: DENY
rules:
  - name: acme-frontend
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
    when:
      - header: x-tenant
        values: ["acme"]
)");
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  std::unique_ptr<Echo::Stub> c = mesh_->StubVia(mesh_->c());

  grpc::Status s = EchoCall(*a);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(s.error_message(), DeniedByDefault(kFrontendId, kEchoMethod));

  EchoResponse response;
  s = EchoCall(*a, "hello", {{"x-tenant", "acme"}}, &response);
  ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  bool forwarded = false;
  for (const auto& m : response.request_metadata()) {
    if (m.key() == "x-tenant" && m.value() == "acme") forwarded = true;
  }
  EXPECT_TRUE(forwarded) << "the app did not get x-tenant";

  // Exact match only; a repeated key is joined with "," before the check.
  for (const char* other : {"globex", "ACME", "acme,globex"}) {
    s = EchoCall(*a, "hello", {{"x-tenant", other}});
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << other;
  }
  // The header does not stand in for the caller.
  s = EchoCall(*c, "hello", {{"x-tenant", "acme"}});
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_TRUE(MetricReaches("meshguard_authz_decisions_total",
                            {{"decision", "allow"}, {"rule", "acme-frontend"}},
                            1));
}

// A header sent twice must not carry over into the next condition (an
// earlier adapter cached the joined value of one key and returned it for
// the next key asked).
TEST_F(AuthzPolicyTest, RepeatedHeaderDoesNotLeakIntoTheNextCondition) {
  StartMesh(R"(default_action: DENY
rules:
  - name: tenant-and-prod
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
    when:
      - header: x-tenant
      - header: x-env
        values: ["prod"]
)");
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  // Control: one x-tenant value.
  grpc::Status s = EchoCall(*a, "x", {{"x-tenant", "acme"}, {"x-env", "prod"}});
  ASSERT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  // x-tenant twice (present: the first condition holds), x-env once.
  EchoResponse response;
  s = EchoCall(
      *a, "x",
      {{"x-tenant", "acme"}, {"x-tenant", "initech"}, {"x-env", "prod"}},
      &response);
  EXPECT_TRUE(s.ok()) << s.error_code() << ": " << s.error_message();
  // What meshguardctl says for the same call: a repeated --header is the
  // header sent twice.
  RunResult check = RunBinary(
      CtlBinary(),
      {"policy", "check", "--policy", mesh_->policy_path(), "--from",
       kFrontendId, "--method", kEchoMethod, "--header", "x-tenant=acme",
       "--header", "x-tenant=initech", "--header", "x-env=prod"});
  EXPECT_THAT(check.out,
              ::testing::StartsWith("ALLOW by rule \"tenant-and-prod\""))
      << check.ToString();
}

// A header sent twice counts against the caller: a second copy does not
// get a call past a DENY condition (joining the values would have made it
// "evil,evil", which is not "evil", while the app still saw "evil"), and
// an ALLOW condition needs every copy to be allowed.
TEST_F(AuthzPolicyTest, HeaderSentTwiceDoesNotEscapeADenyRule) {
  StartMesh(R"(default_action: DENY
rules:
  - name: no-evil-tenant
    action: DENY
    when:
      - header: x-tenant
        values: ["evil"]
  - name: frontend-for-acme
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    when:
      - header: x-tenant
        values: ["acme"]
)");
  std::unique_ptr<Echo::Stub> a = mesh_->StubVia(mesh_->a());
  EXPECT_TRUE(EchoCall(*a, "x", {{"x-tenant", "acme"}}).ok());
  for (const Metadata& headers :
       {Metadata{{"x-tenant", "evil"}},
        Metadata{{"x-tenant", "evil"}, {"x-tenant", "evil"}},
        Metadata{{"x-tenant", "acme"}, {"x-tenant", "evil"}}}) {
    grpc::Status s = EchoCall(*a, "x", headers);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
        << headers.size() << " values: " << s.error_message();
    EXPECT_EQ(s.error_message(),
              DeniedByRule(kFrontendId, kEchoMethod, "no-evil-tenant"));
  }
  // Twice acme: every copy is allowed.
  EXPECT_TRUE(
      EchoCall(*a, "x", {{"x-tenant", "acme"}, {"x-tenant", "acme"}}).ok());
}

// --- meshguardctl policy check / lint ----------------------------------------

struct Case {
  std::string name;
  SidecarInstance* (AuthzMesh::*client)();
  std::string method;
  Metadata headers;
};

grpc::Status CallMethod(Echo::Stub& stub, const std::string& method,
                        const Metadata& headers) {
  if (method == kEchoMethod) return EchoCall(stub, "x", headers);
  if (method == kReturnStatusMethod) return ReturnStatusCall(stub, headers);
  ADD_FAILURE() << "no call for " << method;
  return grpc::Status::CANCELLED;
}

TEST_F(AuthzPolicyTest, PolicyCheckPrintsWhatTheSidecarDecided) {
  StartMesh(R"(default_action: DENY
rules:
  - name: shop-reads
    action: ALLOW
    from: {namespaces: ["shop"]}
    to: {methods: ["ECHO/Echo"]}
    when: [{header: x-tenant, values: ["acme", "initech"]}]
  - name: frontend-status
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/ReturnStatus"]}
  - name: no-initech-stranger
    action: DENY
    from: {principals: ["STRANGER"]}
    when: [{header: x-tenant, values: ["initech"]}]
  - name: try-deny-status
    action: DENY
    dry_run: true
    to: {methods: ["ECHO/ReturnStatus"]}
)");
  const std::vector<Case> cases = {
      {"a-echo-acme", &AuthzMesh::a, kEchoMethod, {{"x-tenant", "acme"}}},
      {"a-echo-bare", &AuthzMesh::a, kEchoMethod, {}},
      {"a-status", &AuthzMesh::a, kReturnStatusMethod, {}},
      {"c-echo-acme", &AuthzMesh::c, kEchoMethod, {{"x-tenant", "acme"}}},
      {"c-echo-initech", &AuthzMesh::c, kEchoMethod, {{"x-tenant", "initech"}}},
      {"c-status", &AuthzMesh::c, kReturnStatusMethod, {}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    SidecarInstance* client = (mesh_.get()->*c.client)();
    const std::string& from = client->options().spiffe_id;
    std::unique_ptr<Echo::Stub> stub = mesh_->StubVia(client);
    const size_t lines_before = mesh_->AccessLogLines().size();
    grpc::Status s = CallMethod(*stub, c.method, c.headers);

    // What the sidecar applied: its access log line for this call.
    std::vector<Struct> lines;
    ASSERT_TRUE(WaitFor(
        [&] {
          lines = mesh_->AccessLogLines();
          return lines.size() > lines_before;
        },
        absl::Seconds(5)))
        << "no access log line";
    const Struct& line = lines.back();
    EXPECT_EQ(StringField(line, "method"), c.method);
    EXPECT_EQ(StringField(line, "peer"), from);
    const std::string decision = StringField(line, "decision");
    const std::string rule = StringField(line, "rule");
    EXPECT_EQ(s.ok(), decision == "allow") << s.error_message();

    std::vector<std::string> args = {
        "policy", "check", "--policy", mesh_->policy_path(),
        "--from", from,    "--method", c.method};
    for (const auto& [k, v] : c.headers) {
      args.insert(args.end(), {"--header", absl::StrCat(k, "=", v)});
    }
    RunResult check = RunBinary(CtlBinary(), args);
    std::string want = absl::StrCat(
        decision == "allow" ? "ALLOW" : "DENY",
        rule == "default" ? " by default"
                          : absl::StrCat(" by rule \"", rule, "\""));
    EXPECT_THAT(check.out, ::testing::StartsWith(want + "\n"))
        << check.ToString();
    EXPECT_TRUE(check.status.exited) << check.ToString();
    EXPECT_EQ(check.status.code, decision == "allow" ? 0 : 1)
        << check.ToString();
    if (c.method == kReturnStatusMethod) {
      EXPECT_THAT(check.out,
                  HasSubstr("dry-run: rule \"try-deny-status\" would DENY"));
    }
  }
  // The sidecar reported the same dry-run matches the CLI printed.
  EXPECT_EQ(mesh_->b()->LogEvents("authz_dry_run").size(), 2u);
}

class AuthzLintTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::string> dir =
        meshguard::testing::MakeTempDir("authz-lint");
    ASSERT_TRUE(dir.ok()) << dir.status();
    dir_ = *dir;
  }
  RunResult Lint(const std::string& name, const std::string& yaml) {
    const std::string path = absl::StrCat(dir_, "/", name);
    EXPECT_TRUE(meshguard::testing::WriteFile(path, Policy(yaml)).ok());
    return RunBinary(CtlBinary(), {"policy", "lint", path});
  }
  std::string dir_;
};

TEST_F(AuthzLintTest, ShadowedRulesAreWarningsAndExitZero) {
  RunResult r = Lint("shadowed.yaml", R"(default_action: DENY
rules:
  - name: no-status-for-anyone
    action: DENY
    to: {methods: ["ECHO/ReturnStatus"]}
  - name: frontend-status
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/ReturnStatus"]}
  - name: no-status-for-frontend
    action: DENY
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/ReturnStatus"]}
  - name: frontend-echo
    action: ALLOW
    from: {principals: ["FRONTEND"]}
    to: {methods: ["ECHO/Echo"]}
)");
  EXPECT_TRUE(r.status.Success()) << r.ToString();
  EXPECT_THAT(r.out, HasSubstr("warning [unreachable-allow]"));
  EXPECT_THAT(r.out, HasSubstr("\"frontend-status\""));
  EXPECT_THAT(r.out, HasSubstr("warning [shadowed-rule]"));
  EXPECT_THAT(r.out, HasSubstr("\"no-status-for-frontend\""));
  EXPECT_THAT(r.out, HasSubstr("\"no-status-for-anyone\""));
  EXPECT_THAT(r.out, HasSubstr("0 errors, 2 warnings")) << r.out;
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("\"frontend-echo\"")));
}

TEST_F(AuthzLintTest, ErrorsExitNonZeroAndNameTheLine) {
  RunResult unknown = Lint("unknown.yaml", R"(default_action: DENY
rules:
  - name: frontend-echo
    actoin: ALLOW
    from: {principals: ["FRONTEND"]}
)");
  EXPECT_TRUE(unknown.status.exited && unknown.status.code != 0)
      << unknown.ToString();
  EXPECT_THAT(unknown.out, HasSubstr("error [invalid]"));
  EXPECT_THAT(unknown.out, HasSubstr("unknown.yaml:4:")) << unknown.out;
  EXPECT_THAT(unknown.out, HasSubstr("actoin"));

  RunResult bad_method = Lint("method.yaml", R"(default_action: DENY
rules:
  - name: frontend-echo
    action: ALLOW
    to: {methods: ["meshguard.testing.Echo/Echo"]}
)");
  EXPECT_TRUE(bad_method.status.exited && bad_method.status.code != 0)
      << bad_method.ToString();
  EXPECT_THAT(bad_method.out, HasSubstr("error [invalid]"));
  EXPECT_THAT(bad_method.out, HasSubstr("\"frontend-echo\""));
  EXPECT_THAT(bad_method.out, HasSubstr("to.methods[0]"));
}

}  // namespace
}  // namespace meshguard::integration
