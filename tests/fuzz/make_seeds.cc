// Writes the seed inputs of every fuzz target in tests/fuzz into
// corpus/<target>/seed-*, from the fixtures (tests/fuzz/fixtures.h) and
// real sessions, so that the seeds reach past the first checks:
//
//   bazel run //tests/fuzz:make_seeds -- "$PWD/tests/fuzz/corpus"
//
// Existing seed-* files are overwritten; other files (crash reproducers,
// inputs a fuzzing run kept) are left alone. Keys, serials and signatures
// are random, so every run writes different bytes with the same coverage.
#include <jwt.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "tests/fuzz/fixtures.h"
#include "tests/fuzz/h2_harness.h"
#include "tests/identity/crypto/testing/cert_factory.h"

namespace meshguard::fuzz {
namespace {

namespace ct = crypto::testing;

std::filesystem::path root_dir;

void Write(const std::string& target, const std::string& name,
           const std::string& bytes) {
  const std::filesystem::path dir = root_dir / target;
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / ("seed-" + name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
  if (!out) {
    std::fprintf(stderr, "make_seeds: cannot write %s\n", path.c_str());
    std::exit(1);
  }
}

std::string PemToDer(const std::string& pem) {
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  if (!PEM_read_bio(bio.get(), &name, &header, &data, &len)) std::exit(1);
  std::string der(reinterpret_cast<char*>(data), static_cast<size_t>(len));
  OPENSSL_free(name);
  OPENSSL_free(header);
  OPENSSL_free(data);
  return der;
}

std::string Prefixed(const std::vector<std::string>& ders) {
  std::string out;
  for (const std::string& d : ders) {
    out.push_back(static_cast<char>(d.size() >> 8));
    out.push_back(static_cast<char>(d.size() & 0xff));
    out += d;
  }
  return out;
}

void SpiffeIdSeeds() {
  const char* ids[] = {"spiffe://cluster.local/ns/shop/sa/frontend",
                       "spiffe://fuzz.example/workload/a.b-c_d",
                       "spiffe://td/ns/x/sa/y/extra",
                       "SPIFFE://td/ns/x/sa/y",
                       "spiffe://td:443/a",
                       "spiffe://td/a//b",
                       "spiffe://td/a/../b"};
  int n = 0;
  for (const char* id : ids) Write("spiffe_id_fuzz", std::to_string(n++), id);
}

void CsrSeeds() {
  const std::string td = kTrustDomain;
  crypto::EvpPkeyPtr ec = Must(crypto::GenerateEcP256Key(), "EC key");
  crypto::EvpPkeyPtr rsa = Must(ct::GenerateKey(ct::KeyType::kRsa2048), "RSA");
  crypto::EvpPkeyPtr p384 = Must(ct::GenerateKey(ct::KeyType::kP384), "P-384");
  const crypto::SpiffeId id =
      Must(crypto::SpiffeId::Parse(absl::StrCat("spiffe://", td, "/ns/a/sa/b")),
           "id");
  struct Seed {
    const char* name;
    std::string pem;
  };
  const Seed seeds[] = {
      {"ec", Must(crypto::CreateCsrPem(ec.get(), id), "CSR")},
      {"rsa", Must(crypto::CreateCsrPem(rsa.get(), id), "CSR")},
      {"p384", Must(crypto::CreateCsrPem(p384.get(), id), "CSR")},
      {"no-san", Must(crypto::CreateCsrPemWithoutIdentity(ec.get()), "CSR")},
  };
  for (const Seed& s : seeds) {
    Write("csr_fuzz", absl::StrCat(s.name, "-pem"),
          std::string(1, '\0') + s.pem);
    Write("csr_fuzz", absl::StrCat(s.name, "-der"),
          std::string(1, '\1') + PemToDer(s.pem));
  }
}

void SvidSeeds() {
  const Fixtures& f = GetFixtures();
  const ct::TestCert intermediate(
      crypto::X509Ptr(X509_dup(f.intermediate.get())), crypto::EvpPkeyPtr([&] {
        EVP_PKEY_up_ref(f.intermediate_key.get());
        return f.intermediate_key.get();
      }()));
  const std::string inter_der = PemToDer(f.intermediate_pem);
  auto leaf = [&](const std::string& name, auto edit) {
    ct::CertSpec spec = ct::LeafSpec(
        absl::StrCat("spiffe://", kTrustDomain, "/ns/a/sa/b"), intermediate);
    spec.serial = 1000;
    edit(spec);
    ct::TestCert cert = Must(ct::MakeCert(spec), "leaf");
    Write("x509_svid_fuzz", name,
          std::string(1, '\0') + Prefixed({cert.Der(), inter_der}));
  };
  leaf("chain-good", [](ct::CertSpec&) {});
  leaf("chain-revoked", [](ct::CertSpec& s) { s.serial = kRevokedSerial; });
  leaf("chain-ca-leaf", [](ct::CertSpec& s) {
    s.basic_constraints = ct::BasicConstraints::kCaTrue;
  });
  leaf("chain-two-sans", [](ct::CertSpec& s) {
    s.uri_sans.push_back("spiffe://fuzz.example/ns/c/sa/d");
  });
  leaf("chain-other-domain",
       [](ct::CertSpec& s) { s.uri_sans = {"spiffe://other.example/x"}; });
  leaf("chain-expired", [&](ct::CertSpec& s) {
    s.not_before = f.now - absl::Hours(2);
    s.not_after = f.now - absl::Hours(1);
  });
  Write("x509_svid_fuzz", "root", "\1" + PemToDer(f.root_pem));
  Write("x509_svid_fuzz", "crl", "\2" + PemToDer(f.crl_pem));
}

std::string MintJwt(jwt_alg_t alg, const std::string& key,
                    const std::string& kid, const std::string& claims) {
  jwt_t* jwt = nullptr;
  if (jwt_new(&jwt) != 0) std::exit(1);
  if (!kid.empty()) jwt_add_header(jwt, "kid", kid.c_str());
  jwt_add_grants_json(jwt, claims.c_str());
  jwt_set_alg(jwt, alg, reinterpret_cast<const unsigned char*>(key.data()),
              static_cast<int>(key.size()));
  char* encoded = jwt_encode_str(jwt);
  std::string token = encoded == nullptr ? "" : encoded;
  std::free(encoded);
  jwt_free(jwt);
  return token;
}

void JwtSeeds() {
  const Fixtures& f = GetFixtures();
  const int64_t now = absl::ToUnixSeconds(f.now);
  auto claims = [&](int64_t exp) {
    return absl::StrCat(
        R"({"iss":")", kJwtIssuer, R"(","aud":["meshguard-ca"],)",
        R"("sub":"system:serviceaccount:shop:frontend","iat":)", now - 60,
        R"(,"nbf":)", now - 60, R"(,"exp":)", exp,
        R"(,"kubernetes.io":{"namespace":"shop","serviceaccount":)",
        R"({"name":"frontend","uid":"u"},"pod":{"name":"p","uid":"v"}}})");
  };
  Write(
      "jwt_fuzz", "es256",
      MintJwt(JWT_ALG_ES256, f.jwt_ec_private_pem, "ec-1", claims(now + 600)));
  Write("jwt_fuzz", "rs256",
        MintJwt(JWT_ALG_RS256, f.jwt_rsa_private_pem, "rsa-1",
                claims(now + 600)));
  Write(
      "jwt_fuzz", "expired",
      MintJwt(JWT_ALG_ES256, f.jwt_ec_private_pem, "ec-1", claims(now - 600)));
  Write(
      "jwt_fuzz", "wrong-kid",
      MintJwt(JWT_ALG_ES256, f.jwt_ec_private_pem, "rsa-1", claims(now + 600)));
  Write("jwt_fuzz", "none",
        MintJwt(JWT_ALG_NONE, "", "ec-1", claims(now + 600)));
}

void PolicySeeds() {
  Write("policy_fuzz", "shop", R"(default_action: DENY
rules:
  - name: frontend-must-go-through-orders
    action: DENY
    from:
      principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
    to:
      methods: ["/shop.v1.Inventory/*"]
  - name: frontend-calls-orders
    action: ALLOW
    from:
      principals: ["spiffe://cluster.local/ns/shop/sa/frontend"]
    to:
      methods: ["/shop.v1.Orders/*"]
%%
spiffe://cluster.local/ns/shop/sa/frontend /shop.v1.Inventory/Get
%%
spiffe://cluster.local/ns/shop/sa/frontend /shop.v1.Orders/Put x-env=prod
)");
  Write("policy_fuzz", "every-field", R"(default_action: ALLOW
rules:
  - name: audit-all
    action: AUDIT
    to: {methods: ["*"]}
  - name: no-staging
    action: DENY
    dry_run: true
    from:
      namespaces: ["staging", "dev*"]
      not_principals: ["spiffe://cluster.local/ns/staging/sa/ops"]
      trust_domains: ["cluster.local"]
    to:
      methods: ["/pkg.Admin/*"]
      not_methods: ["/pkg.Admin/Health"]
    when:
      - header: x-env
        values: ["prod", "staging"]
  - name: others
    action: DENY
    from:
      not_trust_domains: ["cluster.local"]
      not_namespaces: ["kube-system"]
      principals: ["spiffe://*"]
%%
spiffe://cluster.local/ns/staging/sa/web /pkg.Admin/Drop x-env=prod
%%
spiffe://evil.example/ns/a/sa/b /pkg.Svc/M
)");
}

void ConfigSeeds() {
  Write("config_fuzz", "sidecar",
        std::string(1, '\0') + R"(trust_domain: cluster.local
ca:
  address: 127.0.0.1:15012
  server_name: meshguard-ca
  ca_bundle_file: /etc/meshguard/bundle.pem
  token_file: /var/run/secrets/meshguard/token
app_address: 127.0.0.1:8080
transparent: true
listeners:
  outbound: 127.0.0.1:15001
  inbound: 0.0.0.0:15006
  admin: 0.0.0.0:15000
policy_file: /etc/meshguard/policy.yaml
access_log:
  path: stdout
timeouts:
  drain: 15s
)");
  Write("config_fuzz", "ca",
        std::string(1, '\1') + R"(trust_domain: cluster.local
data_dir: /var/lib/meshguard-ca
listen: 0.0.0.0:15012
admin_http_listen: 0.0.0.0:15014
server_dns_names: [meshguard-ca, meshguard-ca.meshguard-system.svc]
default_ttl: 3600s
max_ttl: 86400s
kubernetes:
  jwks_file: /etc/meshguard-ca/jwks/jwks.json
  issuer: https://kubernetes.default.svc.cluster.local
  audience: meshguard-ca
  clock_skew: 30s
rate_limit:
  requests_per_second: 5
  burst: 20
crl_validity: 86400s
storage:
  kind: sqlite
  dsn: /var/lib/meshguard-ca/meshguard-ca.db
)");
}

void GrpcWireSeeds() {
  auto frame = [](const std::string& m) {
    std::string f(5, '\0');
    f[4] = static_cast<char>(m.size());
    return f + m;
  };
  Write("grpc_wire_fuzz", "two-messages",
        "\3" + frame("hello") + frame(std::string(40, 'x')));
  Write("grpc_wire_fuzz", "status",
        "\5" + std::string("14\nCA%20unavailable%"));
  Write("grpc_wire_fuzz", "compressed", "\2" + std::string("\1\0\0\0\1z", 6));
}

std::string Chunk(const std::string& bytes) {
  std::string c{static_cast<char>(kChunkPump),
                static_cast<char>(bytes.size() >> 8),
                static_cast<char>(bytes.size() & 0xff)};
  return c + bytes;
}

void StructuredH2Seeds() {
  const std::string message = std::string("\0\0\0\0\4", 5) + "ping";
  const std::vector<std::pair<std::string, std::string>> request = {
      {":method", "POST"},
      {":scheme", "http"},
      {":path", "/pkg.Svc/Unary"},
      {":authority", "svc"},
      {"content-type", "application/grpc"},
      {"te", "trailers"}};
  std::string client(1, static_cast<char>(kModeStructured));
  for (uint8_t stream : {1, 3}) {
    auto headers = request;
    if (stream == 3)
      headers.push_back({"x-forwarded-client-cert", "By=forged"});
    client += Chunk(H2Harness::StructuredHeaders(
        NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, stream, headers));
    client += Chunk(H2Harness::StructuredFrame(
        NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, stream, message));
  }
  Write("h2_forwarder_fuzz", "structured-client", client);

  std::string upstream(
      1, static_cast<char>(kModeStructured | kModeUpstreamHostile));
  upstream += Chunk(
      H2Harness::StructuredFrame(NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, ""));
  for (uint8_t stream : {1, 3}) {
    upstream += Chunk(H2Harness::StructuredHeaders(
        NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, stream,
        {{":status", "200"}, {"content-type", "application/grpc"}}));
    upstream += Chunk(H2Harness::StructuredFrame(
        NGHTTP2_DATA, NGHTTP2_FLAG_NONE, stream, message));
    upstream += Chunk(H2Harness::StructuredHeaders(
        NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM,
        stream, {{"grpc-status", "0"}}));
  }
  Write("h2_forwarder_fuzz", "structured-upstream", upstream);
}

void H2Seeds() {
  StructuredH2Seeds();
  {
    H2Harness client(Hostile::kClient, /*record=*/true);
    client.Pump();
    Write("h2_forwarder_fuzz", "hostile-client", client.recording());
  }
  {
    H2Harness upstream(Hostile::kUpstream, /*record=*/true);
    upstream.Pump();
    Write("h2_forwarder_fuzz", "hostile-upstream", upstream.recording());
  }
}

}  // namespace
}  // namespace meshguard::fuzz

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr,
                 "usage: make_seeds CORPUS_DIR\n"
                 "  bazel run //tests/fuzz:make_seeds -- "
                 "\"$PWD/tests/fuzz/corpus\"\n");
    return 2;
  }
  meshguard::fuzz::root_dir = argv[1];
  meshguard::fuzz::SpiffeIdSeeds();
  meshguard::fuzz::CsrSeeds();
  meshguard::fuzz::SvidSeeds();
  meshguard::fuzz::JwtSeeds();
  meshguard::fuzz::PolicySeeds();
  meshguard::fuzz::ConfigSeeds();
  meshguard::fuzz::GrpcWireSeeds();
  meshguard::fuzz::H2Seeds();
  std::printf("seeds written under %s\n", argv[1]);
  return 0;
}
