#include "tests/integration/sidecar_fixture.h"

#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/json_util.h"
#include "tests/testing/echo_service.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::HttpGet;
using ::meshguard::testing::HttpResponse;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::ProcessOptions;
using ::meshguard::testing::RunfilePath;
using ::meshguard::testing::WaitForHttpOk;
using ::meshguard::testing::WaitForTcpPort;
using ::meshguard::testing::WriteFile;

constexpr absl::Duration kStartTimeout = absl::Seconds(30);

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

absl::Status WithOutput(const absl::Status& s, const Process* process) {
  if (s.ok() || process == nullptr) return s;
  return absl::Status(
      s.code(), absl::StrCat(s.message(), "\n", process->DescribeOutput()));
}

}  // namespace

std::string SidecarBinary() { return RunfilePath("sidecar/meshguard-sidecar"); }
std::string EchoServerBinary() {
  return RunfilePath("tests/testing/echo_server");
}

std::string MeshSpiffeId(const std::string& name) {
  return SpiffeIdFor("mesh", name);
}

std::string EchoApp::address() const { return Loopback(port_); }

std::string Sidecar::outbound_address() const {
  return Loopback(outbound_port_);
}
std::string Sidecar::inbound_address() const { return Loopback(inbound_port_); }

std::shared_ptr<grpc::Channel> Sidecar::Channel(
    const std::string& authority) const {
  grpc::ChannelArguments args = meshguard::testing::TestChannelArguments();
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  return grpc::CreateCustomChannel(outbound_address(),
                                   grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<meshguard::testing::Echo::Stub> Sidecar::Stub(
    const std::string& authority) const {
  return meshguard::testing::Echo::NewStub(Channel(authority));
}

absl::StatusOr<google::protobuf::Struct> Sidecar::Certs() const {
  absl::StatusOr<HttpResponse> r = HttpGet("127.0.0.1", admin_port_, "/certs");
  if (!r.ok()) return r.status();
  if (r->status != 200) {
    return absl::UnavailableError(absl::StrCat("/certs: HTTP ", r->status));
  }
  google::protobuf::Struct out;
  auto parsed = google::protobuf::util::JsonStringToMessage(r->body, &out);
  if (!parsed.ok()) {
    return absl::InternalError(absl::StrCat("/certs is not JSON: ", r->body));
  }
  return out;
}

std::string Sidecar::Serial() const {
  absl::StatusOr<google::protobuf::Struct> certs = Certs();
  if (!certs.ok()) return "";
  auto it = certs->fields().find("serial");
  return it == certs->fields().end() ? "" : it->second.string_value();
}

int64_t Sidecar::BundleSequence() const {
  absl::StatusOr<google::protobuf::Struct> certs = Certs();
  if (!certs.ok()) return -1;
  auto bundle = certs->fields().find("bundle");
  if (bundle == certs->fields().end()) return -1;
  const auto& fields = bundle->second.struct_value().fields();
  auto seq = fields.find("sequence_number");
  if (seq == fields.end()) return -1;
  return static_cast<int64_t>(seq->second.number_value());
}

absl::StatusOr<std::string> Sidecar::Metrics() const {
  absl::StatusOr<HttpResponse> r =
      HttpGet("127.0.0.1", admin_port_, "/metrics");
  if (!r.ok()) return r.status();
  if (r->status != 200) {
    return absl::UnavailableError(absl::StrCat("/metrics: HTTP ", r->status));
  }
  return r->body;
}

double Sidecar::MetricSum(const std::string& name,
                          const std::vector<std::string>& label_parts) const {
  absl::StatusOr<std::string> text = Metrics();
  if (!text.ok()) return -1;
  return meshguard::testing::SumMetric(*text, name, label_parts);
}

std::vector<std::string> Sidecar::LogLines(const std::string& event) const {
  return meshguard::testing::LogLinesWithEvent(process_->ReadStdout(), event);
}

int64_t Sidecar::RssBytes() const {
  std::ifstream in(absl::StrCat("/proc/", process_->pid(), "/status"));
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "VmRSS:")) {
      rest = absl::StripAsciiWhitespace(rest);
      absl::ConsumeSuffix(&rest, "kB");
      int64_t kb = 0;
      if (absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &kb)) {
        return kb * 1024;
      }
    }
  }
  return -1;
}

grpc::Status EchoOnce(meshguard::testing::Echo::Stub* stub,
                      const std::string& payload, absl::Duration within,
                      bool wait_for_ready) {
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + within));
  context.set_wait_for_ready(wait_for_ready);
  meshguard::testing::EchoRequest request;
  request.set_payload(payload);
  meshguard::testing::EchoResponse response;
  return stub->Echo(&context, request, &response);
}

std::string RouteTo(const std::string& authority, const Sidecar& target,
                    std::optional<std::string> expected_id) {
  const std::string id = expected_id.value_or(target.spiffe_id());
  std::string route = absl::StrCat(authority, "=", target.inbound_address());
  if (!id.empty()) absl::StrAppend(&route, "=", id);
  return route;
}

absl::StatusOr<std::unique_ptr<Mesh>> Mesh::Create(
    const std::string& name, const std::string& ca_config_yaml) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init(name);
  if (!ca.ok()) return ca.status();
  if (absl::Status s = (*ca)->Serve(ca_config_yaml); !s.ok()) return s;
  std::unique_ptr<Mesh> mesh(new Mesh(*std::move(ca)));
  absl::StatusOr<std::string> work =
      meshguard::testing::MakeTempDir(absl::StrCat("mesh-", name));
  if (!work.ok()) return work.status();
  mesh->work_dir_ = *work;
  return mesh;
}

Mesh::~Mesh() {
  // Sidecars first, gracefully, so their logs are complete; Process'
  // destructor kills whatever is left.
  for (auto& sidecar : sidecars_) {
    if (sidecar->process_ != nullptr) sidecar->process_->Stop(absl::Seconds(2));
  }
  sidecars_.clear();
  apps_.clear();
  if (restarted_ca_ != nullptr) restarted_ca_->Stop(absl::Seconds(3));
}

absl::StatusOr<EchoApp*> Mesh::StartEchoServer() {
  auto app = std::make_unique<EchoApp>();
  absl::StatusOr<int> port = PickFreePort();
  if (!port.ok()) return port.status();
  app->port_ = *port;
  ProcessOptions options;
  options.binary = EchoServerBinary();
  options.args = {absl::StrCat("--listen=", app->address())};
  options.log_name = absl::StrCat("echo_server", apps_.size());
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  if (!process.ok()) return process.status();
  app->process_ = *std::move(process);
  if (absl::Status s = WaitForTcpPort("127.0.0.1", app->port_, kStartTimeout,
                                      app->process_.get());
      !s.ok()) {
    return s;
  }
  apps_.push_back(std::move(app));
  return apps_.back().get();
}

absl::StatusOr<Sidecar*> Mesh::StartSidecar(const SidecarSpec& spec) {
  auto sidecar = std::make_unique<Sidecar>();
  sidecar->spec_ = spec;
  sidecar->spiffe_id_ = MeshSpiffeId(spec.name);
  absl::StatusOr<std::string> token = ca_->JoinToken(sidecar->spiffe_id_);
  if (!token.ok()) return token.status();
  for (int* port : {&sidecar->inbound_port_, &sidecar->outbound_port_,
                    &sidecar->admin_port_}) {
    absl::StatusOr<int> p = PickFreePort();
    if (!p.ok()) return p.status();
    *port = *p;
  }
  std::string app = spec.app;
  if (app.empty()) {
    absl::StatusOr<int> closed = PickFreePort();
    if (!closed.ok()) return closed.status();
    app = Loopback(*closed);
  }
  ProcessOptions options;
  options.binary = SidecarBinary();
  options.log_name = absl::StrCat("sidecar-", spec.name);
  options.args = {"--ca",
                  ca_->address(),
                  "--ca-bundle",
                  ca_->bundle_path(),
                  "--join-token",
                  *token,
                  "--app",
                  app,
                  "--inbound-listen",
                  sidecar->inbound_address(),
                  "--outbound-listen",
                  sidecar->outbound_address(),
                  "--admin-listen",
                  Loopback(sidecar->admin_port_),
                  "--workers",
                  absl::StrCat(spec.workers)};
  if (spec.ttl > absl::ZeroDuration()) {
    options.args.push_back("--ttl");
    options.args.push_back(absl::FormatDuration(spec.ttl));
  }
  if (!spec.routes.empty()) {
    options.args.push_back("--route");
    std::string joined;
    for (const std::string& r : spec.routes) {
      if (!joined.empty()) joined += ",";
      joined += r;
    }
    options.args.push_back(joined);
  }
  if (spec.policy_yaml.has_value()) {
    const std::string path =
        absl::StrCat(work_dir_, "/policy-", spec.name, ".yaml");
    if (absl::Status s = WriteFile(path, *spec.policy_yaml); !s.ok()) return s;
    options.args.push_back("--policy");
    options.args.push_back(path);
  }
  options.args.insert(options.args.end(), spec.extra_args.begin(),
                      spec.extra_args.end());
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  if (!process.ok()) return process.status();
  sidecar->process_ = *std::move(process);
  Process* p = sidecar->process_.get();
  if (absl::Status s = WaitForHttpOk("127.0.0.1", sidecar->admin_port_,
                                     "/readyz", kStartTimeout, p);
      !s.ok()) {
    return WithOutput(s, p);
  }
  for (int port : {sidecar->inbound_port_, sidecar->outbound_port_}) {
    if (absl::Status s = WaitForTcpPort("127.0.0.1", port, kStartTimeout, p);
        !s.ok()) {
      return WithOutput(s, p);
    }
  }
  sidecars_.push_back(std::move(sidecar));
  return sidecars_.back().get();
}

ExitStatus Mesh::StopCa() {
  if (restarted_ca_ != nullptr) return restarted_ca_->Stop(absl::Seconds(10));
  return ca_->Stop();
}

Process* Mesh::ca_process() {
  return restarted_ca_ != nullptr ? restarted_ca_.get() : ca_->process();
}

absl::Status Mesh::RestartCaOnSamePorts() {
  if (Process* running = ca_process();
      running != nullptr && running->Running()) {
    return absl::FailedPreconditionError("the CA is still running");
  }
  ++ca_restarts_;
  ProcessOptions options;
  options.binary = CaBinary();
  options.log_name = absl::StrCat("meshguard-ca.restart", ca_restarts_);
  options.args = {
      "serve",        "--data_dir",       ca_->data_dir(),
      "--config",     ca_->config_path(), "--listen",
      ca_->address(), "--admin_listen",   Loopback(ca_->http_port())};
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  if (!process.ok()) return process.status();
  restarted_ca_ = *std::move(process);
  if (absl::Status s = WaitForHttpOk("127.0.0.1", ca_->http_port(), "/readyz",
                                     kStartTimeout, restarted_ca_.get());
      !s.ok()) {
    return WithOutput(s, restarted_ca_.get());
  }
  return WaitForTcpPort("127.0.0.1", ca_->grpc_port(), kStartTimeout,
                        restarted_ca_.get());
}

std::string Mesh::DescribeAll(size_t max_bytes_each) const {
  std::string out;
  if (const Process* ca = ca_->process(); ca != nullptr) {
    absl::StrAppend(&out, ca->DescribeOutput(max_bytes_each), "\n");
  }
  if (restarted_ca_ != nullptr) {
    absl::StrAppend(&out, restarted_ca_->DescribeOutput(max_bytes_each), "\n");
  }
  for (const auto& s : sidecars_) {
    absl::StrAppend(&out, "== sidecar ", s->name(), " ==\n",
                    s->process_->DescribeOutput(max_bytes_each), "\n");
  }
  return out;
}

}  // namespace meshguard::integration
