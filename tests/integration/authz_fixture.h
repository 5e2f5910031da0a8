// A small mesh for the authorization and admin-endpoint integration tests:
// a real meshguard-ca, one app (echo_server) behind sidecar B
// (spiffe://cluster.local/ns/shop/sa/orders) that enforces a policy file the
// test writes, and client sidecars A (ns/shop/sa/frontend) and
// C (ns/shop/sa/stranger) that route the authority "orders" to B's inbound
// listener over mTLS.
//
//   AuthzMesh::Options options;
//   options.policy_yaml = "default_action: DENY\nrules: [...]";
//   absl::StatusOr<std::unique_ptr<AuthzMesh>> mesh =
//   AuthzMesh::Start(options); ASSERT_TRUE(mesh.ok()) << mesh.status(); auto
//   stub = (*mesh)->StubVia((*mesh)->a());  // A's app calling "orders"
//   grpc::Status s = EchoCall(*stub);
//   std::string metrics = (*mesh)->b()->Metrics();
//
// Every process is owned by a Process (killed and reaped in its destructor),
// so a failing test leaves nothing running. Start the mesh from the test's
// main thread (see process.h on PR_SET_PDEATHSIG).
//
// Thread-compatible: one test thread drives an AuthzMesh; the stubs it hands
// out are thread-safe gRPC stubs.
#ifndef MESHGUARD_TESTS_INTEGRATION_AUTHZ_FIXTURE_H_
#define MESHGUARD_TESTS_INTEGRATION_AUTHZ_FIXTURE_H_

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"
#include "tests/testing/echo.grpc.pb.h"

namespace meshguard::integration {

inline constexpr char kOrdersId[] = "spiffe://cluster.local/ns/shop/sa/orders";
inline constexpr char kFrontendId[] =
    "spiffe://cluster.local/ns/shop/sa/frontend";
inline constexpr char kStrangerId[] =
    "spiffe://cluster.local/ns/shop/sa/stranger";

// The authority client sidecars route to B.
inline constexpr char kOrdersAuthority[] = "orders";

inline constexpr char kEchoMethod[] = "/meshguard.testing.Echo/Echo";
inline constexpr char kSleepMethod[] = "/meshguard.testing.Echo/Sleep";
inline constexpr char kCancelStateMethod[] =
    "/meshguard.testing.Echo/GetCancelState";
inline constexpr char kReturnStatusMethod[] =
    "/meshguard.testing.Echo/ReturnStatus";
inline constexpr char kServerStreamMethod[] =
    "/meshguard.testing.Echo/ServerStream";

std::string SidecarBinary();
std::string EchoServerBinary();

struct SidecarOptions {
  // Names the log files ("sidecar-a") and the work files.
  std::string name;
  std::string spiffe_id;
  // --app; empty: a closed loopback port (a client-only sidecar).
  std::string app;
  // --policy; empty: none (the built-in trust-domain policy).
  std::string policy_file;
  // --route entries, AUTHORITY=HOST:PORT[=SPIFFE_ID].
  std::vector<std::string> routes;
  // --access-log; empty: not given (the config's, else stdout).
  std::string access_log;
  // Written to <work>/<name>.yaml and passed as --config when non-empty.
  std::string config_yaml;
};

// One running meshguard-sidecar with its own loopback ports and a fresh join
// token from `ca`.
class SidecarInstance {
 public:
  static absl::StatusOr<std::unique_ptr<SidecarInstance>> Launch(
      CaInstance* ca, const std::string& work_dir,
      const SidecarOptions& options);
  // Waits for /readyz = 200 and the data-plane ports.
  absl::Status WaitReady(absl::Duration timeout = absl::Seconds(30));

  ~SidecarInstance();

  const SidecarOptions& options() const { return options_; }
  const std::string& join_token() const { return join_token_; }
  int inbound_port() const { return inbound_port_; }
  int outbound_port() const { return outbound_port_; }
  int admin_port() const { return admin_port_; }
  std::string inbound_address() const;
  Process* process() { return process_.get(); }

  // GET on the admin port.
  absl::StatusOr<meshguard::testing::HttpResponse> Admin(
      const std::string& path) const;
  // The /metrics body ("" if the scrape failed).
  std::string Metrics() const;
  // /policy as a JSON object (empty on failure).
  google::protobuf::Struct PolicyStatus() const;

  // The sidecar's stdout JSON lines whose "event" is `event`, parsed.
  std::vector<google::protobuf::Struct> LogEvents(
      const std::string& event) const;

 private:
  SidecarInstance() = default;

  SidecarOptions options_;
  std::string join_token_;
  int inbound_port_ = 0;
  int outbound_port_ = 0;
  int admin_port_ = 0;
  std::unique_ptr<Process> process_;
};

class AuthzMesh {
 public:
  struct Options {
    // B's policy file contents.
    std::string policy_yaml;
    // B's --config contents (empty: no --config).
    std::string b_config_yaml;
    // B's --access-log: "" for stdout (the default), "file" for
    // access_log_path(), or anything else verbatim.
    std::string b_access_log = "file";
    // Start C as well.
    bool with_stranger = true;
    // Extra client sidecars, each named "extra<i>" with these SPIFFE IDs,
    // routing "orders" to B like A and C.
    std::vector<std::string> extra_client_ids;
  };

  static absl::StatusOr<std::unique_ptr<AuthzMesh>> Start(
      const Options& options);
  ~AuthzMesh();

  CaInstance* ca() { return ca_.get(); }
  SidecarInstance* a() { return a_.get(); }
  SidecarInstance* b() { return b_.get(); }
  SidecarInstance* c() { return c_.get(); }
  SidecarInstance* extra(int i) { return extras_[i].get(); }
  Process* app() { return app_.get(); }
  int app_port() const { return app_port_; }
  const std::string& work_dir() const { return work_dir_; }
  const std::string& policy_path() const { return policy_path_; }
  const std::string& access_log_path() const { return access_log_path_; }

  // Replaces B's policy file by writing a temporary file beside it and
  // renaming it over (what editors and config management do).
  absl::Status ReplacePolicy(const std::string& yaml);
  // Rewrites B's policy file in place (open with O_TRUNC, one write).
  absl::Status RewritePolicyInPlace(const std::string& yaml);

  // A stub for `client`'s app: h2c to its outbound listener with :authority
  // "orders", i.e. through the client sidecar and B to the echo app.
  std::unique_ptr<meshguard::testing::Echo::Stub> StubVia(
      SidecarInstance* client) const;
  // The channel under StubVia, for calls by method name (grpc::GenericStub).
  std::shared_ptr<grpc::Channel> ChannelVia(SidecarInstance* client) const;
  // A stub straight to the echo app (no sidecar), for looking behind B.
  std::unique_ptr<meshguard::testing::Echo::Stub> DirectStub() const;

  // The access log's JSON lines ("event": "call"), parsed.
  std::vector<google::protobuf::Struct> AccessLogLines() const;

 private:
  AuthzMesh() = default;

  std::string work_dir_;
  std::string policy_path_;
  std::string access_log_path_;
  int app_port_ = 0;
  std::unique_ptr<CaInstance> ca_;
  std::unique_ptr<Process> app_;
  std::unique_ptr<SidecarInstance> b_;
  std::unique_ptr<SidecarInstance> a_;
  std::unique_ptr<SidecarInstance> c_;
  std::vector<std::unique_ptr<SidecarInstance>> extras_;
};

// --- Calls -------------------------------------------------------------------

// Unary calls with a deadline (default 10 s) and optional metadata.
using Metadata = std::vector<std::pair<std::string, std::string>>;
grpc::Status EchoCall(meshguard::testing::Echo::Stub& stub,
                      const std::string& payload = "hello",
                      const Metadata& metadata = {},
                      meshguard::testing::EchoResponse* response = nullptr,
                      absl::Duration timeout = absl::Seconds(10));
// ReturnStatus asking the app for `code` (a grpc::StatusCode).
grpc::Status ReturnStatusCall(meshguard::testing::Echo::Stub& stub,
                              const Metadata& metadata = {}, int code = 0,
                              absl::Duration timeout = absl::Seconds(10));
grpc::Status SleepCall(meshguard::testing::Echo::Stub& stub,
                       const std::string& token, int64_t sleep_ms,
                       absl::Duration timeout = absl::Seconds(10));
// GetCancelState for `token` (straight to the app is the usual way).
absl::StatusOr<meshguard::testing::CancelStateResponse> CancelState(
    meshguard::testing::Echo::Stub& stub, const std::string& token);

// --- Prometheus text
// ----------------------------------------------------------

struct MetricSample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};
std::vector<MetricSample> ParseMetrics(const std::string& text);
// The sum of every sample of `name` whose labels include all of `labels`
// (0 when none matches).
double MetricSum(const std::string& text, const std::string& name,
                 const std::map<std::string, std::string>& labels = {});
// How many series of `name` include all of `labels`.
int MetricSeries(const std::string& text, const std::string& name,
                 const std::map<std::string, std::string>& labels = {});

// --- JSON
// ----------------------------------------------------------------------

// One JSON object; nullopt if `json` is not one.
std::optional<google::protobuf::Struct> ParseJsonObject(
    const std::string& json);
// The field as a string ("" if absent or not a string), or as a number.
std::string StringField(const google::protobuf::Struct& s,
                        const std::string& key);
double NumberField(const google::protobuf::Struct& s, const std::string& key);
bool HasField(const google::protobuf::Struct& s, const std::string& key);
// Every line of `text` that is a JSON object with "event" == `event`.
std::vector<google::protobuf::Struct> JsonLinesWithEvent(
    const std::string& text, const std::string& event);

}  // namespace meshguard::integration

#endif  // MESHGUARD_TESTS_INTEGRATION_AUTHZ_FIXTURE_H_
