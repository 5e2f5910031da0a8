// A real meshguard-ca for integration tests: its own data dir (init), its
// own config and loopback ports (serve), and the ways a user reaches it: the
// C++ client library, the admin socket, meshguardctl, /metrics and its log.
//
//   absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("ca");
//   ASSERT_TRUE(ca.ok()) << ca.status();
//   ASSERT_TRUE((*ca)->Serve("max_ttl: 86400s\n").ok());
//   std::unique_ptr<client::CaClient> client = (*ca)->Client();
//   RunResult r = (*ca)->Ctl({"token", "create", "--spiffe_id", id});
//
// Also test-made credentials the CA must refuse: JWTs signed with libjwt
// (good, forged, expired, ...) and CSRs that product code would never build.
//
// Thread-compatible: one test thread drives a CaInstance; the clients it
// hands out are thread-safe.
#ifndef MESHGUARD_TESTS_INTEGRATION_CA_FIXTURE_H_
#define MESHGUARD_TESTS_INTEGRATION_CA_FIXTURE_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "identity/client/ca_client.h"
#include "identity/crypto/ssl_ptr.h"
#include "proto/ca.pb.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {

using ::meshguard::testing::ExitStatus;
using ::meshguard::testing::Process;
using ::meshguard::testing::RunResult;

inline constexpr char kTrustDomain[] = "cluster.local";
inline constexpr char kK8sIssuer[] =
    "https://kubernetes.default.svc.cluster.local";

std::string CaBinary();   // runfiles path of meshguard-ca
std::string CtlBinary();  // runfiles path of meshguardctl

// "spiffe://cluster.local/ns/<ns>/sa/<sa>"
std::string SpiffeIdFor(const std::string& ns, const std::string& sa);

// Runs a binary to completion (30 s cap).
RunResult RunBinary(const std::string& binary,
                    const std::vector<std::string>& args);

class CaInstance {
 public:
  // Makes a data dir under TEST_TMPDIR and runs `meshguard-ca init` in it.
  static absl::StatusOr<std::unique_ptr<CaInstance>> Init(
      const std::string& name);

  ~CaInstance();

  // Writes `config_yaml` next to the data dir, picks two free loopback
  // ports, runs `meshguard-ca serve` and waits for /readyz = 200 and the
  // gRPC port. Each call (after Stop/Kill) uses the same config unless a new
  // one is given, and new ports.
  absl::Status Serve(std::optional<std::string> config_yaml = std::nullopt);
  // Environment variables for the next Serve() (added to the test's), e.g.
  // KUBERNETES_SERVICE_HOST as a pod has it.
  void SetServeEnv(std::map<std::string, std::string> env) {
    serve_env_ = std::move(env);
  }
  ExitStatus Stop();
  ExitStatus Kill();
  Process* process() { return process_.get(); }

  const std::string& data_dir() const { return data_dir_; }
  std::string bundle_path() const { return data_dir_ + "/bundle.pem"; }
  std::string admin_socket() const { return data_dir_ + "/admin.sock"; }
  const std::string& config_path() const { return config_path_; }
  std::string address() const;  // 127.0.0.1:<grpc port>
  int grpc_port() const { return grpc_port_; }
  int http_port() const { return http_port_; }
  std::string bundle_pem() const;

  std::unique_ptr<client::CaClient> Client() const;
  // The CA's gRPC service without the client library, over TLS trusting
  // bundle_pem(), for requests the library would not send.
  std::unique_ptr<ca::v1::CertificateAuthority::Stub> RawStub() const;
  std::unique_ptr<client::CaAdminClient> Admin() const;  // admin socket
  client::CaClientOptions ClientOptions() const;

  // Creates a join token over the admin socket.
  absl::StatusOr<std::string> JoinToken(const std::string& spiffe_id,
                                        absl::Duration ttl = absl::Minutes(10));
  // A certificate for spiffe_id, bootstrapped with a fresh join token.
  absl::StatusOr<client::IssuedCertificate> IssueFor(
      const std::string& spiffe_id, absl::Duration ttl = absl::ZeroDuration());
  // The whole issuance log, newest first (admin socket).
  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> Records();
  // Its size; -1 if it cannot be read.
  int CountCertificates();

  // meshguardctl with --ca, --ca_bundle and --admin_socket of this CA
  // before `args`.
  RunResult Ctl(const std::vector<std::string>& args) const;

  // The CA's stdout JSON lines whose "event" is `event`.
  std::vector<std::string> LogLines(const std::string& event) const;

 private:
  explicit CaInstance(std::string data_dir, std::string work_dir)
      : data_dir_(std::move(data_dir)), work_dir_(std::move(work_dir)) {}

  const std::string data_dir_;
  const std::string work_dir_;
  std::string config_path_;
  int serve_count_ = 0;
  int grpc_port_ = 0;
  int http_port_ = 0;
  std::map<std::string, std::string> serve_env_;
  std::unique_ptr<Process> process_;
  // stdout of earlier runs (before a restart), for LogLines.
  std::string earlier_stdout_;
};

// --- Credentials the tests make themselves ---------------------------------

// A service-account signing key as a cluster would have it.
struct SigningKey {
  std::string kid;
  std::string private_pem;
  std::string jwk_json;  // one JWKS entry, with kid and alg
  static SigningKey Rsa(const std::string& kid);
  static SigningKey Ec(const std::string& kid);
};

// {"keys":[...]} for `keys`.
std::string JwksJson(const std::vector<SigningKey>& keys);

struct TokenClaims {
  std::string ns = "shop";
  std::string sa = "frontend";
  std::string iss = kK8sIssuer;
  std::string aud = "meshguard-ca";
  absl::Duration expires_in = absl::Hours(1);  // exp = now + this
};

// A projected service-account token signed (RS256 for an RSA key, ES256 for
// EC) by `key`, with `kid` in the header (key.kid unless overridden).
std::string MintToken(const SigningKey& key, const TokenClaims& claims,
                      std::optional<std::string> kid = std::nullopt);
// The same claims with {"alg":"none"} and an empty signature.
std::string MintUnsignedToken(const std::string& kid,
                              const TokenClaims& claims);

// A P-256 key and its PKCS#8 PEM.
crypto::EvpPkeyPtr NewKey();
// A CSR for `key` whose only URI SAN is `uri` (any string, SPIFFE or not),
// signed over `md` (SHA-256 unless given).
std::string CsrWithUri(EVP_PKEY* key, const std::string& uri,
                       const EVP_MD* md = nullptr);
// `csr_pem` with one bit of its signature flipped.
std::string BreakCsrSignature(const std::string& csr_pem);

// Serial and URI SANs of the first certificate in `pem`.
struct LeafInfo {
  std::string serial;
  std::vector<std::string> uri_sans;
  absl::Time not_after;
  bool is_ca = false;
  std::string public_key_pem;
};
absl::StatusOr<LeafInfo> DescribeLeaf(const std::string& pem);
// The value of a "key: value" line in a command's output ("" if none).
std::string OutputField(const std::string& out, const std::string& key);
// How many PEM certificates `pem` holds.
int CountPemCertificates(const std::string& pem);

}  // namespace meshguard::integration

#endif  // MESHGUARD_TESTS_INTEGRATION_CA_FIXTURE_H_
