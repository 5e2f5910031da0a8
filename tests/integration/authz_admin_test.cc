// Sidecar B's admin endpoint over HTTP: /healthz, /readyz (also before an
// identity exists), /certs against the CA's own bundle, /config_dump (the
// effective config, join token redacted) and /policy.
#include <memory>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/integration/authz_fixture.h"

namespace meshguard::integration {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::meshguard::testing::HttpResponse;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::ProcessOptions;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(default_action: DENY
rules:
  - name: frontend-reads
    action: ALLOW
    from: {principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]}
    to: {methods: ["/meshguard.testing.Echo/Echo"]}
  - name: audit-all
    action: AUDIT
)";

// 64-bit FNV-1a, as the README documents for content_hash.
std::string Fnv1a(const std::string& s) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  char buf[17];
  snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(h));
  return buf;
}

absl::Time ParseUtc(const std::string& s) {
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) {
    return absl::InfinitePast();
  }
  return t;
}

const Value* Field(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  return it == s.fields().end() ? nullptr : &it->second;
}

std::string Hex(std::string s) {
  s = absl::AsciiStrToLower(s);
  absl::StrReplaceAll({{":", ""}}, &s);
  while (s.size() > 1 && s[0] == '0') s.erase(0, 1);
  return s;
}

class AuthzAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AuthzMesh::Options options;
    options.policy_yaml = kPolicy;
    options.with_stranger = false;
    absl::StatusOr<std::unique_ptr<AuthzMesh>> mesh = AuthzMesh::Start(options);
    ASSERT_TRUE(mesh.ok()) << mesh.status();
    mesh_ = *std::move(mesh);
  }

  HttpResponse Get(const std::string& path) {
    absl::StatusOr<HttpResponse> r = mesh_->b()->Admin(path);
    EXPECT_TRUE(r.ok()) << path << ": " << r.status();
    return r.ok() ? *r : HttpResponse();
  }

  std::unique_ptr<AuthzMesh> mesh_;
};

TEST_F(AuthzAdminTest, HealthzAndReadyzAnswer200OnceReady) {
  HttpResponse healthz = Get("/healthz");
  EXPECT_EQ(healthz.status, 200);
  HttpResponse readyz = Get("/readyz");
  EXPECT_EQ(readyz.status, 200) << readyz.body;
  EXPECT_EQ(MetricSum(mesh_->b()->Metrics(), "meshguard_ready"), 1);
  EXPECT_EQ(Get("/no-such-page").status, 404);
}

TEST_F(AuthzAdminTest, CertsShowsTheIdentityChainAndBundle) {
  HttpResponse r = Get("/certs");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.headers["content-type"], HasSubstr("application/json"));
  std::optional<Struct> certs = ParseJsonObject(r.body);
  ASSERT_TRUE(certs.has_value()) << r.body;
  EXPECT_EQ(StringField(*certs, "spiffe_id"), kOrdersId);

  const std::string serial = StringField(*certs, "serial");
  EXPECT_FALSE(serial.empty());
  const absl::Time not_before = ParseUtc(StringField(*certs, "not_before"));
  const absl::Time not_after = ParseUtc(StringField(*certs, "not_after"));
  const absl::Time now = absl::Now();
  EXPECT_LE(not_before, now + absl::Seconds(1)) << r.body;
  EXPECT_GT(not_after, now) << r.body;
  EXPECT_LE(not_after - not_before, absl::Hours(25)) << r.body;

  const Value* chain = Field(*certs, "chain");
  ASSERT_NE(chain, nullptr) << r.body;
  ASSERT_TRUE(chain->has_list_value());
  ASSERT_GE(chain->list_value().values_size(), 1);
  for (const Value& pem : chain->list_value().values()) {
    EXPECT_TRUE(
        absl::StartsWith(pem.string_value(), "-----BEGIN CERTIFICATE-----"))
        << pem.string_value();
  }
  // The leaf is this workload's SVID, and its serial is the one shown.
  absl::StatusOr<LeafInfo> leaf =
      DescribeLeaf(chain->list_value().values(0).string_value());
  ASSERT_TRUE(leaf.ok()) << leaf.status();
  EXPECT_EQ(leaf->uri_sans, std::vector<std::string>{kOrdersId});
  EXPECT_FALSE(leaf->is_ca);
  EXPECT_EQ(Hex(leaf->serial), Hex(serial));
  EXPECT_EQ(absl::ToUnixSeconds(leaf->not_after),
            absl::ToUnixSeconds(not_after));
  // The CA's log has that certificate for B's identity.
  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> records =
      mesh_->ca()->Records();
  ASSERT_TRUE(records.ok()) << records.status();
  bool logged = false;
  for (const auto& rec : *records) {
    if (Hex(rec.serial()) == Hex(serial) && rec.spiffe_id() == kOrdersId) {
      logged = true;
    }
  }
  EXPECT_TRUE(logged) << "serial " << serial << " not in the CA's log";

  // The bundle: the CA's root(s).
  const Value* bundle = Field(*certs, "bundle");
  ASSERT_NE(bundle, nullptr) << r.body;
  ASSERT_TRUE(bundle->has_struct_value());
  EXPECT_EQ(StringField(bundle->struct_value(), "trust_domain"),
            "cluster.local");
  const Value* roots = Field(bundle->struct_value(), "roots");
  ASSERT_NE(roots, nullptr) << r.body;
  ASSERT_TRUE(roots->has_list_value());
  ASSERT_EQ(roots->list_value().values_size(),
            CountPemCertificates(mesh_->ca()->bundle_pem()));
  absl::StatusOr<LeafInfo> ca_root = DescribeLeaf(mesh_->ca()->bundle_pem());
  ASSERT_TRUE(ca_root.ok()) << ca_root.status();
  const Struct& root = roots->list_value().values(0).struct_value();
  EXPECT_EQ(Hex(StringField(root, "serial")), Hex(ca_root->serial));
  EXPECT_FALSE(StringField(root, "subject").empty());
  EXPECT_NE(ParseUtc(StringField(root, "not_after")), absl::InfinitePast());
}

TEST_F(AuthzAdminTest, ConfigDumpShowsEffectiveConfigWithoutTheJoinToken) {
  const std::string token = mesh_->b()->join_token();
  ASSERT_GE(token.size(), 16u);
  HttpResponse r = Get("/config_dump");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_THAT(r.body, ::testing::Not(HasSubstr(token)));
  std::optional<Struct> dump = ParseJsonObject(r.body);
  ASSERT_TRUE(dump.has_value()) << r.body;
  const Value* config = Field(*dump, "config");
  ASSERT_NE(config, nullptr) << r.body;
  const Struct& c = config->struct_value();
  EXPECT_EQ(StringField(c, "policy_file"), mesh_->policy_path());
  EXPECT_EQ(StringField(c, "app_address"),
            absl::StrCat("127.0.0.1:", mesh_->app_port()));
  EXPECT_EQ(StringField(c, "trust_domain"), "cluster.local");
  const Struct& ca = Field(c, "ca")->struct_value();
  EXPECT_EQ(StringField(ca, "address"), mesh_->ca()->address());
  EXPECT_EQ(StringField(ca, "join_token"), "<redacted>");
  const Struct& listeners = Field(c, "listeners")->struct_value();
  EXPECT_EQ(StringField(listeners, "inbound"), mesh_->b()->inbound_address());
  EXPECT_EQ(StringField(listeners, "admin"),
            absl::StrCat("127.0.0.1:", mesh_->b()->admin_port()));
  // Defaults are filled in: the effective config, not the flags.
  const Struct& metrics = Field(c, "metrics")->struct_value();
  EXPECT_EQ(NumberField(metrics, "max_principals"), 100);
  const Struct& log = Field(c, "access_log")->struct_value();
  EXPECT_EQ(StringField(log, "path"), mesh_->access_log_path());
  EXPECT_EQ(NumberField(log, "sample_rate"), 1);
  EXPECT_EQ(NumberField(c, "workers"), 1);
  const Value* policy = Field(*dump, "policy");
  ASSERT_NE(policy, nullptr) << r.body;
  EXPECT_EQ(NumberField(policy->struct_value(), "version"), 1);

  // Nor anywhere else the admin port or the logs show.
  for (const char* path : {"/certs", "/metrics", "/policy"}) {
    EXPECT_THAT(Get(path).body, ::testing::Not(HasSubstr(token))) << path;
  }
  EXPECT_THAT(mesh_->b()->process()->ReadStdout(),
              ::testing::Not(HasSubstr(token)));
  EXPECT_THAT(mesh_->b()->process()->ReadStderr(),
              ::testing::Not(HasSubstr(token)));
}

TEST_F(AuthzAdminTest, PolicyShowsSourceVersionAndContentHash) {
  HttpResponse r = Get("/policy");
  ASSERT_EQ(r.status, 200) << r.body;
  std::optional<Struct> policy = ParseJsonObject(r.body);
  ASSERT_TRUE(policy.has_value()) << r.body;
  EXPECT_EQ(StringField(*policy, "source"), mesh_->policy_path());
  EXPECT_EQ(NumberField(*policy, "version"), 1);
  EXPECT_EQ(StringField(*policy, "content_hash"), Fnv1a(kPolicy));
  EXPECT_EQ(NumberField(*policy, "rules"), 2);
  EXPECT_EQ(StringField(*policy, "last_reload_result"), "ok");
  // /config_dump names the same policy.
  std::optional<Struct> dump = ParseJsonObject(Get("/config_dump").body);
  ASSERT_TRUE(dump.has_value());
  EXPECT_EQ(StringField(Field(*dump, "policy")->struct_value(), "content_hash"),
            Fnv1a(kPolicy));
}

// Not ready without an identity: a sidecar whose CA does not answer serves
// /healthz at once but /readyz 503.
TEST(AuthzAdminNoIdentityTest, ReadyzIs503UntilTheSidecarHasAnIdentity) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("noid");
  ASSERT_TRUE(ca.ok()) << ca.status();
  absl::StatusOr<int> dead_ca = PickFreePort();
  absl::StatusOr<int> admin = PickFreePort();
  absl::StatusOr<int> inbound = PickFreePort();
  absl::StatusOr<int> outbound = PickFreePort();
  ASSERT_TRUE(dead_ca.ok() && admin.ok() && inbound.ok() && outbound.ok());
  ProcessOptions options;
  options.binary = SidecarBinary();
  options.log_name = "sidecar-noid";
  options.args = {"--ca",
                  absl::StrCat("127.0.0.1:", *dead_ca),
                  "--ca-bundle",
                  (*ca)->bundle_path(),
                  "--join-token",
                  "never-used-token",
                  "--app",
                  "127.0.0.1:9",
                  "--inbound-listen",
                  absl::StrCat("127.0.0.1:", *inbound),
                  "--outbound-listen",
                  absl::StrCat("127.0.0.1:", *outbound),
                  "--admin-listen",
                  absl::StrCat("127.0.0.1:", *admin),
                  "--workers",
                  "1",
                  "--bootstrap-timeout",
                  "60s"};
  absl::StatusOr<std::unique_ptr<Process>> sidecar = Process::Start(options);
  ASSERT_TRUE(sidecar.ok()) << sidecar.status();
  ASSERT_TRUE(meshguard::testing::WaitForHttpOk("127.0.0.1", *admin, "/healthz",
                                                absl::Seconds(10),
                                                sidecar->get())
                  .ok())
      << (*sidecar)->DescribeOutput();
  absl::StatusOr<HttpResponse> readyz =
      meshguard::testing::HttpGet("127.0.0.1", *admin, "/readyz");
  ASSERT_TRUE(readyz.ok()) << readyz.status();
  EXPECT_EQ(readyz->status, 503) << readyz->body;
  absl::StatusOr<HttpResponse> certs =
      meshguard::testing::HttpGet("127.0.0.1", *admin, "/certs");
  ASSERT_TRUE(certs.ok()) << certs.status();
  std::optional<Struct> json = ParseJsonObject(certs->body);
  ASSERT_TRUE(json.has_value()) << certs->body;
  EXPECT_EQ(StringField(*json, "spiffe_id"), "");
  // No data-plane listener before an identity.
  EXPECT_FALSE(meshguard::testing::WaitForTcpPort("127.0.0.1", *inbound,
                                                  absl::Milliseconds(200))
                   .ok());
  (*sidecar)->Kill();
}

}  // namespace
}  // namespace meshguard::integration
