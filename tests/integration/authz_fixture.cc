#include "tests/integration/authz_fixture.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "google/protobuf/util/json_util.h"
#include "tests/testing/echo_service.h"

namespace meshguard::integration {
namespace {

using ::google::protobuf::Struct;
using ::meshguard::testing::HttpGet;
using ::meshguard::testing::HttpResponse;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::ProcessOptions;
using ::meshguard::testing::ReadFile;
using ::meshguard::testing::RunfilePath;
using ::meshguard::testing::WaitFor;
using ::meshguard::testing::WaitForHttpOk;
using ::meshguard::testing::WaitForTcpPort;
using ::meshguard::testing::WriteFile;

std::string Loopback(int port) { return absl::StrCat("127.0.0.1:", port); }

void SetDeadline(grpc::ClientContext& context, absl::Duration timeout) {
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
}

void AddMetadata(grpc::ClientContext& context, const Metadata& metadata) {
  for (const auto& [key, value] : metadata) context.AddMetadata(key, value);
}

// Parses one `k="v",k2="v2"` label block (without braces).
std::map<std::string, std::string> ParseLabels(absl::string_view block) {
  std::map<std::string, std::string> labels;
  size_t i = 0;
  while (i < block.size()) {
    size_t eq = block.find('=', i);
    if (eq == absl::string_view::npos || eq + 1 >= block.size() ||
        block[eq + 1] != '"') {
      break;
    }
    std::string key(absl::StripAsciiWhitespace(block.substr(i, eq - i)));
    std::string value;
    size_t j = eq + 2;
    for (; j < block.size() && block[j] != '"'; ++j) {
      if (block[j] == '\\' && j + 1 < block.size()) {
        ++j;
        value.push_back(block[j] == 'n' ? '\n' : block[j]);
      } else {
        value.push_back(block[j]);
      }
    }
    labels[key] = value;
    i = j + 1;
    if (i < block.size() && block[i] == ',') ++i;
  }
  return labels;
}

bool Includes(const std::map<std::string, std::string>& have,
              const std::map<std::string, std::string>& want) {
  for (const auto& [k, v] : want) {
    auto it = have.find(k);
    if (it == have.end() || it->second != v) return false;
  }
  return true;
}

}  // namespace

std::string SidecarBinary() { return RunfilePath("sidecar/meshguard-sidecar"); }
std::string EchoServerBinary() {
  return RunfilePath("tests/testing/echo_server");
}

// --- SidecarInstance ---------------------------------------------------------

absl::StatusOr<std::unique_ptr<SidecarInstance>> SidecarInstance::Launch(
    CaInstance* ca, const std::string& work_dir,
    const SidecarOptions& options) {
  std::unique_ptr<SidecarInstance> s(new SidecarInstance());
  s->options_ = options;
  absl::StatusOr<std::string> token = ca->JoinToken(options.spiffe_id);
  if (!token.ok()) return token.status();
  s->join_token_ = *token;
  for (int* port : {&s->inbound_port_, &s->outbound_port_, &s->admin_port_}) {
    absl::StatusOr<int> p = PickFreePort();
    if (!p.ok()) return p.status();
    *port = *p;
  }
  ProcessOptions process;
  process.binary = SidecarBinary();
  process.log_name = options.name;
  process.args = {"--ca",
                  ca->address(),
                  "--ca-bundle",
                  ca->bundle_path(),
                  "--join-token",
                  s->join_token_,
                  "--app",
                  options.app.empty() ? "127.0.0.1:9" : options.app,
                  "--inbound-listen",
                  Loopback(s->inbound_port_),
                  "--outbound-listen",
                  Loopback(s->outbound_port_),
                  "--admin-listen",
                  Loopback(s->admin_port_),
                  "--workers",
                  "1"};
  if (!options.policy_file.empty()) {
    process.args.insert(process.args.end(), {"--policy", options.policy_file});
  }
  for (const std::string& route : options.routes) {
    process.args.insert(process.args.end(), {"--route", route});
  }
  if (!options.access_log.empty()) {
    process.args.insert(process.args.end(),
                        {"--access-log", options.access_log});
  }
  if (!options.config_yaml.empty()) {
    std::string path = absl::StrCat(work_dir, "/", options.name, ".yaml");
    if (absl::Status st = WriteFile(path, options.config_yaml); !st.ok()) {
      return st;
    }
    process.args.insert(process.args.end(), {"--config", path});
  }
  absl::StatusOr<std::unique_ptr<Process>> started = Process::Start(process);
  if (!started.ok()) return started.status();
  s->process_ = *std::move(started);
  return s;
}

absl::Status SidecarInstance::WaitReady(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Status s = WaitForHttpOk("127.0.0.1", admin_port_, "/readyz", timeout,
                                 process_.get());
  for (int port : {inbound_port_, outbound_port_}) {
    if (!s.ok()) break;
    s = WaitForTcpPort("127.0.0.1", port, deadline - absl::Now(),
                       process_.get());
  }
  if (!s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat(options_.name, " (", options_.spiffe_id, "): ",
                               s.message(), "\n", process_->DescribeOutput()));
  }
  return absl::OkStatus();
}

SidecarInstance::~SidecarInstance() {
  // No graceful drain: it would wait for the clients' idle connections, and
  // these tests read nothing a SIGKILL could lose (logs are flushed by line).
  if (process_ != nullptr) process_->Kill();
}

std::string SidecarInstance::inbound_address() const {
  return Loopback(inbound_port_);
}

absl::StatusOr<HttpResponse> SidecarInstance::Admin(
    const std::string& path) const {
  return HttpGet("127.0.0.1", admin_port_, path);
}

std::string SidecarInstance::Metrics() const {
  absl::StatusOr<HttpResponse> r = Admin("/metrics");
  if (!r.ok() || r->status != 200) return "";
  return r->body;
}

Struct SidecarInstance::PolicyStatus() const {
  absl::StatusOr<HttpResponse> r = Admin("/policy");
  if (!r.ok() || r->status != 200) return Struct();
  return ParseJsonObject(r->body).value_or(Struct());
}

std::vector<Struct> SidecarInstance::LogEvents(const std::string& event) const {
  return JsonLinesWithEvent(process_->ReadStdout(), event);
}

// --- AuthzMesh ---------------------------------------------------------------

absl::StatusOr<std::unique_ptr<AuthzMesh>> AuthzMesh::Start(
    const Options& options) {
  std::unique_ptr<AuthzMesh> mesh(new AuthzMesh());
  absl::StatusOr<std::string> work =
      meshguard::testing::MakeTempDir("authz-mesh");
  if (!work.ok()) return work.status();
  mesh->work_dir_ = *work;
  mesh->policy_path_ = mesh->work_dir_ + "/policy.yaml";
  mesh->access_log_path_ = mesh->work_dir_ + "/access.log";
  if (absl::Status s = WriteFile(mesh->policy_path_, options.policy_yaml);
      !s.ok()) {
    return s;
  }

  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("authz");
  if (!ca.ok()) return ca.status();
  mesh->ca_ = *std::move(ca);
  if (absl::Status s = mesh->ca_->Serve(""); !s.ok()) return s;

  // The app: echo_server on a port of its own choosing.
  ProcessOptions app;
  app.binary = EchoServerBinary();
  app.log_name = "echo_server";
  app.args = {"--listen=127.0.0.1:0"};
  absl::StatusOr<std::unique_ptr<Process>> app_process = Process::Start(app);
  if (!app_process.ok()) return app_process.status();
  mesh->app_ = *std::move(app_process);
  Process* echo = mesh->app_.get();
  int app_port = 0;
  WaitFor(
      [&] {
        std::string out = echo->ReadStdout();
        size_t at = out.find("listening on ");
        if (at == std::string::npos) return !echo->Running();
        size_t end = out.find('\n', at);
        if (end == std::string::npos) return false;
        return absl::SimpleAtoi(out.substr(at + 13, end - at - 13), &app_port);
      },
      absl::Seconds(15));
  if (app_port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("echo_server did not start\n", echo->DescribeOutput()));
  }
  mesh->app_port_ = app_port;

  SidecarOptions b;
  b.name = "sidecar-b";
  b.spiffe_id = kOrdersId;
  b.app = Loopback(app_port);
  b.policy_file = mesh->policy_path_;
  b.access_log = options.b_access_log == "file" ? mesh->access_log_path_
                                                : options.b_access_log;
  b.config_yaml = options.b_config_yaml;
  absl::StatusOr<std::unique_ptr<SidecarInstance>> sb =
      SidecarInstance::Launch(mesh->ca_.get(), mesh->work_dir_, b);
  if (!sb.ok()) return sb.status();
  mesh->b_ = *std::move(sb);

  const std::string route = absl::StrCat(
      kOrdersAuthority, "=", mesh->b_->inbound_address(), "=", kOrdersId);
  auto client = [&](const std::string& name, const std::string& id)
      -> absl::StatusOr<std::unique_ptr<SidecarInstance>> {
    SidecarOptions o;
    o.name = name;
    o.spiffe_id = id;
    o.routes = {route};
    o.access_log = "off";
    return SidecarInstance::Launch(mesh->ca_.get(), mesh->work_dir_, o);
  };
  absl::StatusOr<std::unique_ptr<SidecarInstance>> sa =
      client("sidecar-a", kFrontendId);
  if (!sa.ok()) return sa.status();
  mesh->a_ = *std::move(sa);
  if (options.with_stranger) {
    absl::StatusOr<std::unique_ptr<SidecarInstance>> sc =
        client("sidecar-c", kStrangerId);
    if (!sc.ok()) return sc.status();
    mesh->c_ = *std::move(sc);
  }
  for (size_t i = 0; i < options.extra_client_ids.size(); ++i) {
    absl::StatusOr<std::unique_ptr<SidecarInstance>> extra =
        client(absl::StrCat("sidecar-extra", i), options.extra_client_ids[i]);
    if (!extra.ok()) return extra.status();
    mesh->extras_.push_back(*std::move(extra));
  }

  // All of them bootstrap at once; then wait for each.
  std::vector<SidecarInstance*> all = {mesh->b_.get(), mesh->a_.get()};
  if (mesh->c_ != nullptr) all.push_back(mesh->c_.get());
  for (auto& e : mesh->extras_) all.push_back(e.get());
  for (SidecarInstance* s : all) {
    if (absl::Status st = s->WaitReady(); !st.ok()) return st;
  }
  return mesh;
}

AuthzMesh::~AuthzMesh() {
  // Clients first, then B, the app and the CA.
  extras_.clear();
  c_.reset();
  a_.reset();
  b_.reset();
  if (app_ != nullptr) app_->Kill();
  app_.reset();
  ca_.reset();
}

absl::Status AuthzMesh::ReplacePolicy(const std::string& yaml) {
  const std::string tmp = policy_path_ + ".tmp";
  if (absl::Status s = WriteFile(tmp, yaml); !s.ok()) return s;
  if (rename(tmp.c_str(), policy_path_.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("rename ", tmp, " -> ", policy_path_, " failed"));
  }
  return absl::OkStatus();
}

absl::Status AuthzMesh::RewritePolicyInPlace(const std::string& yaml) {
  int fd = open(policy_path_.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot open ", policy_path_));
  }
  ssize_t n = write(fd, yaml.data(), yaml.size());
  close(fd);
  if (n != static_cast<ssize_t>(yaml.size())) {
    return absl::InternalError(absl::StrCat("short write to ", policy_path_));
  }
  return absl::OkStatus();
}

std::shared_ptr<grpc::Channel> AuthzMesh::ChannelVia(
    SidecarInstance* client) const {
  grpc::ChannelArguments args = meshguard::testing::TestChannelArguments();
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, kOrdersAuthority);
  return grpc::CreateCustomChannel(Loopback(client->outbound_port()),
                                   grpc::InsecureChannelCredentials(), args);
}

std::unique_ptr<meshguard::testing::Echo::Stub> AuthzMesh::StubVia(
    SidecarInstance* client) const {
  return meshguard::testing::Echo::NewStub(ChannelVia(client));
}

std::unique_ptr<meshguard::testing::Echo::Stub> AuthzMesh::DirectStub() const {
  return meshguard::testing::Echo::NewStub(grpc::CreateCustomChannel(
      Loopback(app_port_), grpc::InsecureChannelCredentials(),
      meshguard::testing::TestChannelArguments()));
}

std::vector<Struct> AuthzMesh::AccessLogLines() const {
  absl::StatusOr<std::string> text = ReadFile(access_log_path_);
  if (!text.ok()) return {};
  return JsonLinesWithEvent(*text, "call");
}

// --- Calls -------------------------------------------------------------------

grpc::Status EchoCall(meshguard::testing::Echo::Stub& stub,
                      const std::string& payload, const Metadata& metadata,
                      meshguard::testing::EchoResponse* response,
                      absl::Duration timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  AddMetadata(context, metadata);
  meshguard::testing::EchoRequest request;
  request.set_payload(payload);
  meshguard::testing::EchoResponse ignored;
  return stub.Echo(&context, request,
                   response != nullptr ? response : &ignored);
}

grpc::Status ReturnStatusCall(meshguard::testing::Echo::Stub& stub,
                              const Metadata& metadata, int code,
                              absl::Duration timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  AddMetadata(context, metadata);
  meshguard::testing::StatusRequest request;
  request.set_code(code);
  request.set_message(code == 0 ? "" : "asked for it");
  meshguard::testing::EchoResponse response;
  return stub.ReturnStatus(&context, request, &response);
}

grpc::Status SleepCall(meshguard::testing::Echo::Stub& stub,
                       const std::string& token, int64_t sleep_ms,
                       absl::Duration timeout) {
  grpc::ClientContext context;
  SetDeadline(context, timeout);
  meshguard::testing::SleepRequest request;
  request.set_token(token);
  request.set_sleep_ms(sleep_ms);
  meshguard::testing::SleepResponse response;
  return stub.Sleep(&context, request, &response);
}

absl::StatusOr<meshguard::testing::CancelStateResponse> CancelState(
    meshguard::testing::Echo::Stub& stub, const std::string& token) {
  grpc::ClientContext context;
  SetDeadline(context, absl::Seconds(5));
  meshguard::testing::CancelStateRequest request;
  request.set_token(token);
  meshguard::testing::CancelStateResponse response;
  grpc::Status s = stub.GetCancelState(&context, request, &response);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()),
                        s.error_message());
  }
  return response;
}

// --- Prometheus text ---------------------------------------------------------

std::vector<MetricSample> ParseMetrics(const std::string& text) {
  std::vector<MetricSample> samples;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    MetricSample sample;
    size_t value_at = line.rfind(' ');
    if (value_at == absl::string_view::npos) continue;
    if (!absl::SimpleAtod(line.substr(value_at + 1), &sample.value)) continue;
    absl::string_view head = line.substr(0, value_at);
    size_t brace = head.find('{');
    if (brace == absl::string_view::npos) {
      sample.name = std::string(head);
    } else {
      sample.name = std::string(head.substr(0, brace));
      size_t close = head.rfind('}');
      if (close == absl::string_view::npos || close < brace) continue;
      sample.labels = ParseLabels(head.substr(brace + 1, close - brace - 1));
    }
    samples.push_back(std::move(sample));
  }
  return samples;
}

double MetricSum(const std::string& text, const std::string& name,
                 const std::map<std::string, std::string>& labels) {
  double sum = 0;
  for (const MetricSample& s : ParseMetrics(text)) {
    if (s.name == name && Includes(s.labels, labels)) sum += s.value;
  }
  return sum;
}

int MetricSeries(const std::string& text, const std::string& name,
                 const std::map<std::string, std::string>& labels) {
  int n = 0;
  for (const MetricSample& s : ParseMetrics(text)) {
    if (s.name == name && Includes(s.labels, labels)) ++n;
  }
  return n;
}

// --- JSON --------------------------------------------------------------------

std::optional<Struct> ParseJsonObject(const std::string& json) {
  Struct out;
  if (!google::protobuf::util::JsonStringToMessage(json, &out).ok()) {
    return std::nullopt;
  }
  return out;
}

std::string StringField(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_string_value()) return "";
  return it->second.string_value();
}

double NumberField(const Struct& s, const std::string& key) {
  auto it = s.fields().find(key);
  if (it == s.fields().end() || !it->second.has_number_value()) return -1;
  return it->second.number_value();
}

bool HasField(const Struct& s, const std::string& key) {
  return s.fields().contains(key);
}

std::vector<Struct> JsonLinesWithEvent(const std::string& text,
                                       const std::string& event) {
  std::vector<Struct> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::StartsWith(absl::StripLeadingAsciiWhitespace(line), "{")) {
      continue;
    }
    std::optional<Struct> parsed = ParseJsonObject(std::string(line));
    if (parsed.has_value() && StringField(*parsed, "event") == event) {
      out.push_back(*std::move(parsed));
    }
  }
  return out;
}

}  // namespace meshguard::integration
