#include "tests/integration/ca_fixture.h"

#include <jwt.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdlib>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::LogLinesWithEvent;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::ProcessOptions;
using ::meshguard::testing::ReadFile;
using ::meshguard::testing::RunfilePath;
using ::meshguard::testing::WaitForHttpOk;
using ::meshguard::testing::WaitForTcpPort;
using ::meshguard::testing::WriteFile;

constexpr absl::Duration kStartTimeout = absl::Seconds(20);

struct JwtFree {
  void operator()(jwt_t* p) const { jwt_free(p); }
};

std::string B64(const std::string& bytes) {
  return absl::WebSafeBase64Escape(bytes);
}

std::string BnParam(EVP_PKEY* pkey, const char* name, size_t pad_to = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1) return "";
  std::string bytes(std::max<size_t>(BN_num_bytes(bn), pad_to), '\0');
  BN_bn2binpad(bn, reinterpret_cast<unsigned char*>(bytes.data()),
               static_cast<int>(bytes.size()));
  BN_free(bn);
  return B64(bytes);
}

std::string PrivatePem(EVP_PKEY* pkey) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), pkey, nullptr, nullptr, 0, nullptr,
                           nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string ClaimsJson(const TokenClaims& c) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  const int64_t exp = absl::ToUnixSeconds(absl::Now() + c.expires_in);
  return absl::StrCat(
      R"({"iss":")", c.iss, R"(","aud":[")", c.aud, R"("],)",
      R"("sub":"system:serviceaccount:)", c.ns, ":", c.sa, R"(",)", R"("iat":)",
      now - 600, R"(,"nbf":)", now - 600, R"(,"exp":)", exp,
      R"(,"kubernetes.io":{"namespace":")", c.ns,
      R"(","serviceaccount":{"name":")", c.sa,
      R"(","uid":"6a3b7d9e-0000-4000-8000-000000000001"},)",
      R"("pod":{"name":")", c.sa,
      R"(-7c9d","uid":"6a3b7d9e-0000-4000-8000-000000000002"}}})");
}

}  // namespace

std::string CaBinary() { return RunfilePath("identity/ca/meshguard-ca"); }
std::string CtlBinary() { return RunfilePath("cli/meshguardctl"); }

std::string SpiffeIdFor(const std::string& ns, const std::string& sa) {
  return absl::StrCat("spiffe://", kTrustDomain, "/ns/", ns, "/sa/", sa);
}

RunResult RunBinary(const std::string& binary,
                    const std::vector<std::string>& args) {
  ProcessOptions options;
  options.binary = binary;
  options.args = args;
  absl::StatusOr<RunResult> result =
      meshguard::testing::RunToCompletion(options, absl::Seconds(30));
  if (!result.ok()) {
    RunResult failed;
    failed.err = std::string(result.status().message());
    return failed;
  }
  return *std::move(result);
}

absl::StatusOr<std::unique_ptr<CaInstance>> CaInstance::Init(
    const std::string& name) {
  // Short: the data dir holds admin.sock.
  absl::StatusOr<std::string> work =
      meshguard::testing::MakeShortTempDir(absl::StrCat("mg-", name));
  if (!work.ok()) return work.status();
  const std::string data_dir = *work + "/data";
  RunResult init = RunBinary(CaBinary(), {"init", "--data_dir", data_dir});
  if (!init.status.Success()) {
    meshguard::testing::RemoveTree(*work);
    return absl::InternalError(absl::StrCat("meshguard-ca init --data_dir ",
                                            data_dir, ": ", init.ToString()));
  }
  return std::unique_ptr<CaInstance>(new CaInstance(data_dir, *work));
}

CaInstance::~CaInstance() {
  if (process_ != nullptr) process_->Stop(absl::Seconds(3));
  meshguard::testing::RemoveTree(work_dir_);
}

absl::Status CaInstance::Serve(std::optional<std::string> config_yaml) {
  if (process_ != nullptr && process_->Running()) {
    return absl::FailedPreconditionError("the CA is already running");
  }
  if (process_ != nullptr) {
    absl::StrAppend(&earlier_stdout_, process_->ReadStdout());
    process_.reset();
  }
  if (config_yaml.has_value() || config_path_.empty()) {
    config_path_ = absl::StrCat(work_dir_, "/ca-", serve_count_, ".yaml");
    if (absl::Status s = WriteFile(config_path_, config_yaml.value_or(""));
        !s.ok()) {
      return s;
    }
  }
  ++serve_count_;
  absl::StatusOr<int> grpc_port = PickFreePort();
  absl::StatusOr<int> http_port = PickFreePort();
  if (!grpc_port.ok()) return grpc_port.status();
  if (!http_port.ok()) return http_port.status();
  grpc_port_ = *grpc_port;
  http_port_ = *http_port;
  ProcessOptions options;
  options.binary = CaBinary();
  options.log_name = absl::StrCat("meshguard-ca.serve", serve_count_);
  options.env = serve_env_;
  options.args = {"serve",
                  "--data_dir",
                  data_dir_,
                  "--config",
                  config_path_,
                  "--listen",
                  absl::StrCat("127.0.0.1:", grpc_port_),
                  "--admin_listen",
                  absl::StrCat("127.0.0.1:", http_port_)};
  absl::StatusOr<std::unique_ptr<Process>> process = Process::Start(options);
  if (!process.ok()) return process.status();
  process_ = *std::move(process);
  if (absl::Status s = WaitForHttpOk("127.0.0.1", http_port_, "/readyz",
                                     kStartTimeout, process_.get());
      !s.ok()) {
    return absl::Status(
        s.code(), absl::StrCat(s.message(), "\n", process_->DescribeOutput()));
  }
  return WaitForTcpPort("127.0.0.1", grpc_port_, kStartTimeout, process_.get());
}

ExitStatus CaInstance::Stop() {
  if (process_ == nullptr) return ExitStatus();
  return process_->Stop(absl::Seconds(10));
}

ExitStatus CaInstance::Kill() {
  if (process_ == nullptr) return ExitStatus();
  return process_->Kill();
}

std::string CaInstance::address() const {
  return absl::StrCat("127.0.0.1:", grpc_port_);
}

std::string CaInstance::bundle_pem() const {
  absl::StatusOr<std::string> pem = ReadFile(bundle_path());
  return pem.ok() ? *pem : "";
}

client::CaClientOptions CaInstance::ClientOptions() const {
  client::CaClientOptions options;
  options.address = address();
  options.ca_bundle_pem = bundle_pem();
  options.timeout = absl::Seconds(10);
  return options;
}

std::unique_ptr<client::CaClient> CaInstance::Client() const {
  absl::StatusOr<std::unique_ptr<client::CaClient>> c =
      client::CaClient::Create(ClientOptions());
  return c.ok() ? *std::move(c) : nullptr;
}

std::unique_ptr<ca::v1::CertificateAuthority::Stub> CaInstance::RawStub()
    const {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = bundle_pem();
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(ClientOptions().server_name);
  return ca::v1::CertificateAuthority::NewStub(
      grpc::CreateCustomChannel(address(), grpc::SslCredentials(ssl), args));
}

std::unique_ptr<client::CaAdminClient> CaInstance::Admin() const {
  absl::StatusOr<std::unique_ptr<client::CaAdminClient>> c =
      client::CaAdminClient::ForSocket(admin_socket());
  return c.ok() ? *std::move(c) : nullptr;
}

absl::StatusOr<std::string> CaInstance::JoinToken(const std::string& spiffe_id,
                                                  absl::Duration ttl) {
  std::unique_ptr<client::CaAdminClient> admin = Admin();
  if (admin == nullptr) return absl::InternalError("no admin client");
  absl::StatusOr<ca::v1::CreateJoinTokenResponse> response =
      admin->CreateJoinToken(spiffe_id, ttl);
  if (!response.ok()) return response.status();
  return response->token();
}

absl::StatusOr<client::IssuedCertificate> CaInstance::IssueFor(
    const std::string& spiffe_id, absl::Duration ttl) {
  absl::StatusOr<std::string> token = JoinToken(spiffe_id);
  if (!token.ok()) return token.status();
  std::unique_ptr<client::CaClient> client = Client();
  if (client == nullptr) return absl::InternalError("no CA client");
  return client->IssueWithJoinToken(*token, ttl);
}

absl::StatusOr<std::vector<ca::v1::CertificateRecord>> CaInstance::Records() {
  std::unique_ptr<client::CaAdminClient> admin = Admin();
  if (admin == nullptr) return absl::InternalError("no admin client");
  absl::StatusOr<ca::v1::ListCertificatesResponse> list =
      admin->List(ca::v1::ListCertificatesRequest());
  if (!list.ok()) return list.status();
  return std::vector<ca::v1::CertificateRecord>(list->certificates().begin(),
                                                list->certificates().end());
}

int CaInstance::CountCertificates() {
  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> records = Records();
  return records.ok() ? static_cast<int>(records->size()) : -1;
}

RunResult CaInstance::Ctl(const std::vector<std::string>& args) const {
  std::vector<std::string> all = {"--ca",           address(),
                                  "--ca_bundle",    bundle_path(),
                                  "--admin_socket", admin_socket()};
  all.insert(all.end(), args.begin(), args.end());
  return RunBinary(CtlBinary(), all);
}

std::vector<std::string> CaInstance::LogLines(const std::string& event) const {
  std::string all = earlier_stdout_;
  if (process_ != nullptr) absl::StrAppend(&all, process_->ReadStdout());
  return LogLinesWithEvent(all, event);
}

SigningKey SigningKey::Rsa(const std::string& kid) {
  crypto::EvpPkeyPtr pkey(EVP_RSA_gen(2048));
  SigningKey key;
  key.kid = kid;
  key.private_pem = PrivatePem(pkey.get());
  key.jwk_json = absl::StrCat(
      R"({"kid":")", kid, R"(","kty":"RSA","alg":"RS256","use":"sig","n":")",
      BnParam(pkey.get(), OSSL_PKEY_PARAM_RSA_N), R"(","e":")",
      BnParam(pkey.get(), OSSL_PKEY_PARAM_RSA_E), R"("})");
  return key;
}

SigningKey SigningKey::Ec(const std::string& kid) {
  crypto::EvpPkeyPtr pkey(EVP_EC_gen("P-256"));
  SigningKey key;
  key.kid = kid;
  key.private_pem = PrivatePem(pkey.get());
  key.jwk_json = absl::StrCat(
      R"({"kid":")", kid, R"(","kty":"EC","crv":"P-256","use":"sig","x":")",
      BnParam(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X, 32), R"(","y":")",
      BnParam(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y, 32), R"("})");
  return key;
}

std::string JwksJson(const std::vector<SigningKey>& keys) {
  std::vector<std::string> entries;
  for (const SigningKey& k : keys) entries.push_back(k.jwk_json);
  return absl::StrCat(R"({"keys":[)", absl::StrJoin(entries, ","), "]}");
}

std::string MintToken(const SigningKey& key, const TokenClaims& claims,
                      std::optional<std::string> kid) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return "";
  std::unique_ptr<jwt_t, JwtFree> jwt(raw);
  const std::string header_kid = kid.value_or(key.kid);
  if (!header_kid.empty()) jwt_add_header(jwt.get(), "kid", header_kid.c_str());
  jwt_add_grants_json(jwt.get(), ClaimsJson(claims).c_str());
  const jwt_alg_t alg = absl::StrContains(key.jwk_json, R"("kty":"RSA")")
                            ? JWT_ALG_RS256
                            : JWT_ALG_ES256;
  jwt_set_alg(jwt.get(), alg,
              reinterpret_cast<const unsigned char*>(key.private_pem.data()),
              static_cast<int>(key.private_pem.size()));
  char* encoded = jwt_encode_str(jwt.get());
  std::string token = encoded == nullptr ? "" : encoded;
  std::free(encoded);
  return token;
}

std::string MintUnsignedToken(const std::string& kid,
                              const TokenClaims& claims) {
  return absl::StrCat(
      B64(absl::StrCat(R"({"alg":"none","kid":")", kid, R"(","typ":"JWT"})")),
      ".", B64(ClaimsJson(claims)), ".");
}

crypto::EvpPkeyPtr NewKey() { return crypto::EvpPkeyPtr(EVP_EC_gen("P-256")); }

std::string CsrWithUri(EVP_PKEY* key, const std::string& uri,
                       const EVP_MD* md) {
  crypto::X509ReqPtr req(X509_REQ_new());
  X509_REQ_set_version(req.get(), 0);
  X509_REQ_set_pubkey(req.get(), key);
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  GENERAL_NAME* name = GENERAL_NAME_new();
  ASN1_IA5STRING* ia5 = ASN1_IA5STRING_new();
  ASN1_STRING_set(ia5, uri.data(), static_cast<int>(uri.size()));
  GENERAL_NAME_set0_value(name, GEN_URI, ia5);
  sk_GENERAL_NAME_push(names, name);
  X509_EXTENSION* san = X509V3_EXT_i2d(NID_subject_alt_name, 0, names);
  GENERAL_NAMES_free(names);
  STACK_OF(X509_EXTENSION)* extensions = sk_X509_EXTENSION_new_null();
  sk_X509_EXTENSION_push(extensions, san);
  X509_REQ_add_extensions(req.get(), extensions);
  sk_X509_EXTENSION_pop_free(extensions, X509_EXTENSION_free);
  X509_REQ_sign(req.get(), key, md != nullptr ? md : EVP_sha256());
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(bio.get(), req.get());
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

std::string BreakCsrSignature(const std::string& csr_pem) {
  absl::StatusOr<std::vector<crypto::PemBlock>> blocks =
      crypto::ReadPemBlocks(csr_pem, "CSR");
  if (!blocks.ok() || blocks->empty()) return "";
  std::string der = (*blocks)[0].der;
  der.back() ^= 0x01;  // the last byte of the signature's s value
  absl::StatusOr<std::string> pem =
      crypto::WritePemBlock("CERTIFICATE REQUEST", der);
  return pem.ok() ? *pem : "";
}

absl::StatusOr<LeafInfo> DescribeLeaf(const std::string& pem) {
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(pem);
  if (!chain.ok()) return chain.status();
  if (chain->empty()) return absl::InvalidArgumentError("no certificate");
  X509* leaf = chain->front().get();
  LeafInfo info;
  info.serial = crypto::SerialHex(leaf);
  info.uri_sans = crypto::UriSans(leaf);
  info.not_after = crypto::NotAfter(leaf);
  info.is_ca = crypto::IsCa(leaf);
  absl::StatusOr<std::string> key =
      crypto::PublicKeyToPem(X509_get0_pubkey(leaf));
  if (key.ok()) info.public_key_pem = *key;
  return info;
}

std::string OutputField(const std::string& out, const std::string& key) {
  for (absl::string_view line : absl::StrSplit(out, '\n')) {
    if (absl::ConsumePrefix(&line, key + ": ")) return std::string(line);
  }
  return "";
}

int CountPemCertificates(const std::string& pem) {
  int count = 0;
  size_t pos = 0;
  const std::string begin = "-----BEGIN CERTIFICATE-----";
  while ((pos = pem.find(begin, pos)) != std::string::npos) {
    ++count;
    pos += begin.size();
  }
  return count;
}

}  // namespace meshguard::integration
