// A small mesh for the sidecar's multi-process integration tests: a real
// meshguard-ca (CaInstance from ca_fixture), echo_server processes as apps,
// and real meshguard-sidecar processes on free loopback ports, each
// bootstrapped with its own join token and waited for on /readyz.
//
//   absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("traffic");
//   ASSERT_TRUE(mesh.ok()) << mesh.status();
//   absl::StatusOr<EchoApp*> app = (*mesh)->StartEchoServer();
//   SidecarSpec b_spec;
//   b_spec.name = "b";
//   b_spec.app = (*app)->address();
//   absl::StatusOr<Sidecar*> b = (*mesh)->StartSidecar(b_spec);
//   SidecarSpec a_spec;
//   a_spec.name = "a";
//   a_spec.routes = {RouteTo("b.svc", **b)};
//   absl::StatusOr<Sidecar*> a = (*mesh)->StartSidecar(a_spec);
//   auto stub = (*a)->Stub("b.svc");   // h2c to a's outbound listener
//
// Every process is owned by the Mesh (or the CaInstance) and is killed and
// reaped when the Mesh goes away, also when a test fails half-way. Start
// processes from the test's main thread (see process.h, PDEATHSIG).
//
// Thread-compatible: one test thread drives a Mesh. Stubs and the read-only
// accessors of a running Sidecar (Certs, Metrics, RssBytes) may be used from
// several threads.
#ifndef MESHGUARD_TESTS_INTEGRATION_SIDECAR_FIXTURE_H_
#define MESHGUARD_TESTS_INTEGRATION_SIDECAR_FIXTURE_H_

#include <grpcpp/grpcpp.h>

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

std::string SidecarBinary();     // runfiles path of meshguard-sidecar
std::string EchoServerBinary();  // runfiles path of echo_server

// "spiffe://cluster.local/ns/mesh/sa/<name>": the identity a sidecar of the
// given name gets.
std::string MeshSpiffeId(const std::string& name);

// An echo_server process (the app behind a sidecar).
class EchoApp {
 public:
  int port() const { return port_; }
  std::string address() const;  // 127.0.0.1:<port>
  Process* process() { return process_.get(); }

 private:
  friend class Mesh;
  int port_ = 0;
  std::unique_ptr<Process> process_;
};

struct SidecarSpec {
  // Names the process' log files and the SPIFFE ID (MeshSpiffeId(name)).
  std::string name;
  // --app; empty: a closed loopback port (for a pure client sidecar).
  std::string app;
  // --route values, AUTHORITY=HOST:PORT[=SPIFFE_ID] (see RouteTo).
  std::vector<std::string> routes;
  // --ttl; zero: the CA's default.
  absl::Duration ttl = absl::ZeroDuration();
  // Written to a file and passed as --policy when set.
  std::optional<std::string> policy_yaml;
  int workers = 1;
  // Appended to the command line as they are.
  std::vector<std::string> extra_args;
};

// One running meshguard-sidecar.
class Sidecar {
 public:
  const std::string& name() const { return spec_.name; }
  const std::string& spiffe_id() const { return spiffe_id_; }
  int inbound_port() const { return inbound_port_; }
  int outbound_port() const { return outbound_port_; }
  int admin_port() const { return admin_port_; }
  std::string outbound_address() const;
  std::string inbound_address() const;
  Process* process() { return process_.get(); }

  // A channel to the outbound listener (h2c) that sends `authority` as
  // :authority, with TestChannelArguments() (64 MiB messages, its own
  // connection).
  std::shared_ptr<grpc::Channel> Channel(const std::string& authority) const;
  std::unique_ptr<meshguard::testing::Echo::Stub> Stub(
      const std::string& authority) const;

  // GET /certs, parsed.
  absl::StatusOr<google::protobuf::Struct> Certs() const;
  // /certs "serial" ("" if unavailable).
  std::string Serial() const;
  // /certs bundle.sequence_number (-1 if unavailable).
  int64_t BundleSequence() const;
  // GET /metrics.
  absl::StatusOr<std::string> Metrics() const;
  // The sum of every series of `name` whose label text contains each of
  // `label_parts` (e.g. {"side=\"inbound\""}); -1 if /metrics fails.
  double MetricSum(const std::string& name,
                   const std::vector<std::string>& label_parts = {}) const;
  // VmRSS of the process, in bytes (-1 if unreadable).
  int64_t RssBytes() const;
  // Its JSON log lines (stdout) whose "event" is `event`, oldest first.
  std::vector<std::string> LogLines(const std::string& event) const;

 private:
  friend class Mesh;
  SidecarSpec spec_;
  std::string spiffe_id_;
  int inbound_port_ = 0;
  int outbound_port_ = 0;
  int admin_port_ = 0;
  std::unique_ptr<Process> process_;
};

// One unary Echo of `payload` on `stub`, with a deadline `within` from now.
grpc::Status EchoOnce(meshguard::testing::Echo::Stub* stub,
                      const std::string& payload,
                      absl::Duration within = absl::Seconds(5),
                      bool wait_for_ready = false);

// "AUTHORITY=127.0.0.1:<target's inbound port>[=expected_id]". With
// expected_id nullopt the target's own ID is expected; "" expects none.
std::string RouteTo(const std::string& authority, const Sidecar& target,
                    std::optional<std::string> expected_id = std::nullopt);

class Mesh {
 public:
  // Inits a CA and serves it with `ca_config_yaml`.
  static absl::StatusOr<std::unique_ptr<Mesh>> Create(
      const std::string& name, const std::string& ca_config_yaml = "");
  ~Mesh();

  CaInstance& ca() { return *ca_; }

  absl::StatusOr<EchoApp*> StartEchoServer();
  // Mints a join token for MeshSpiffeId(spec.name), starts the sidecar and
  // waits (up to 30 s) for /readyz = 200 and both listeners.
  absl::StatusOr<Sidecar*> StartSidecar(const SidecarSpec& spec);

  // Stops the CA (SIGTERM), keeping its data dir and ports.
  ExitStatus StopCa();
  // Starts the CA again with the same data dir, config and ports, and waits
  // for /readyz. (CaInstance::Serve would pick new ports; sidecars keep the
  // address they were started with.)
  absl::Status RestartCaOnSamePorts();
  Process* ca_process();

  // Output of every process, for failure messages.
  std::string DescribeAll(size_t max_bytes_each = 3000) const;

 private:
  explicit Mesh(std::unique_ptr<CaInstance> ca) : ca_(std::move(ca)) {}

  // Declaration order is destruction order reversed: sidecars go first,
  // then apps, then the CA (whose data dir goes with it).
  std::unique_ptr<CaInstance> ca_;
  std::unique_ptr<Process> restarted_ca_;
  int ca_restarts_ = 0;
  std::string work_dir_;
  std::vector<std::unique_ptr<EchoApp>> apps_;
  std::vector<std::unique_ptr<Sidecar>> sidecars_;
};

}  // namespace meshguard::integration

#endif  // MESHGUARD_TESTS_INTEGRATION_SIDECAR_FIXTURE_H_
