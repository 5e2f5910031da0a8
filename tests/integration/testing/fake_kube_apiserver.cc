#include "tests/integration/testing/fake_kube_apiserver.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <openssl/pem.h>

#include <cstdio>
#include <tuple>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "tests/identity/crypto/testing/cert_factory.h"

namespace meshguard::testing {
namespace {

namespace ct = ::meshguard::crypto::testing;
using ::google::protobuf::Struct;
using ::google::protobuf::Value;

constexpr absl::Duration kStartTimeout = absl::Seconds(15);

std::string KeyPem(EVP_PKEY* key) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr,
                           nullptr);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string StringField(const Struct& s, const std::string& name) {
  auto it = s.fields().find(name);
  return it == s.fields().end() ? "" : it->second.string_value();
}

}  // namespace

absl::StatusOr<FakeApiServerTls> FakeApiServerTls::Make(
    const std::string& name, std::vector<std::string> ip_sans,
    std::vector<std::string> dns_sans) {
  const absl::Time now = absl::Now();
  ct::CertSpec ca_spec = ct::RootSpec(absl::StrCat(name, " test CA"));
  ca_spec.not_before = now - absl::Hours(1);
  ca_spec.not_after = now + absl::Hours(24);
  absl::StatusOr<ct::TestCert> ca = ct::MakeCert(ca_spec);
  if (!ca.ok()) return ca.status();
  ct::CertSpec server_spec;
  server_spec.subject_cn = absl::StrCat(name, " server");
  server_spec.issuer = &*ca;
  server_spec.serial = 2;
  server_spec.not_before = now - absl::Hours(1);
  server_spec.not_after = now + absl::Hours(24);
  server_spec.ext_key_usage = {"serverAuth"};
  server_spec.ip_sans = std::move(ip_sans);
  server_spec.dns_sans = std::move(dns_sans);
  absl::StatusOr<ct::TestCert> server = ct::MakeCert(server_spec);
  if (!server.ok()) return server.status();
  return FakeApiServerTls{ca->Pem(), server->Pem(), KeyPem(server->key())};
}

absl::StatusOr<std::unique_ptr<FakeKubeApiServer>> FakeKubeApiServer::Start(
    const FakeApiServerTls& tls) {
  absl::StatusOr<std::string> dir = MakeTempDir("kube-api");
  if (!dir.ok()) return dir.status();
  const std::string cert = *dir + "/server.pem";
  const std::string key = *dir + "/server-key.pem";
  const std::string port_file = *dir + "/port";
  for (const auto& [path, contents, mode] :
       {std::tuple<std::string, std::string, int>{cert, tls.server_cert_pem,
                                                  0644},
        {key, tls.server_key_pem, 0600},
        {*dir + "/behaviour.json", "{}", 0644},
        {*dir + "/requests.jsonl", "", 0644}}) {
    if (absl::Status s = WriteFile(path, contents, mode); !s.ok()) return s;
  }
  ProcessOptions options;
  options.binary = "/usr/bin/python3";
  options.log_name = "fake-kube-apiserver";
  options.args = {
      RunfilePath("tests/integration/testing/fake_kube_apiserver.py"),
      "--cert",
      cert,
      "--key",
      key,
      "--port-file",
      port_file,
      "--log",
      *dir + "/requests.jsonl",
      "--behaviour",
      *dir + "/behaviour.json"};
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  if (!process.ok()) return process.status();
  int port = 0;
  const bool listening = WaitFor(
      [&] {
        absl::StatusOr<std::string> text = ReadFile(port_file);
        return text.ok() &&
               absl::SimpleAtoi(absl::StripAsciiWhitespace(*text), &port) &&
               port > 0;
      },
      kStartTimeout);
  if (!listening) {
    return absl::DeadlineExceededError(
        absl::StrCat("fake API server did not listen within ",
                     absl::FormatDuration(kStartTimeout), "\n",
                     (*process)->DescribeOutput()));
  }
  return std::unique_ptr<FakeKubeApiServer>(
      new FakeKubeApiServer(*dir, *std::move(process), port));
}

FakeKubeApiServer::~FakeKubeApiServer() { Stop(); }

std::string FakeKubeApiServer::url() const {
  return absl::StrCat("https://127.0.0.1:", port_);
}

absl::Status FakeKubeApiServer::SetBehaviour(const std::string& json) {
  // Written whole and renamed, so that a request never reads half of it.
  const std::string path = dir_ + "/behaviour.json";
  if (absl::Status s = WriteFile(path + ".tmp", json); !s.ok()) return s;
  if (rename((path + ".tmp").c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("rename ", path));
  }
  return absl::OkStatus();
}

std::vector<FakeKubeApiServer::Request> FakeKubeApiServer::Requests() const {
  std::vector<Request> out;
  absl::StatusOr<std::string> log = ReadFile(dir_ + "/requests.jsonl");
  if (!log.ok()) return out;
  for (absl::string_view line : absl::StrSplit(*log, '\n')) {
    if (line.empty()) continue;
    Struct record;
    if (!google::protobuf::util::JsonStringToMessage(std::string(line), &record)
             .ok()) {
      continue;  // a line being written
    }
    Request r;
    r.method = StringField(record, "method");
    r.path = StringField(record, "path");
    r.body = StringField(record, "body_raw");
    auto headers = record.fields().find("headers");
    if (headers != record.fields().end()) {
      for (const auto& [name, value] :
           headers->second.struct_value().fields()) {
        r.headers[name] = value.string_value();
      }
    }
    out.push_back(std::move(r));
  }
  return out;
}

void FakeKubeApiServer::Stop() {
  if (process_ != nullptr) process_->Stop(absl::Seconds(3));
}

}  // namespace meshguard::testing
