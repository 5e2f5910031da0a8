// Workload identity at the data plane, against real processes:
//  - what the app learns of its caller (x-forwarded-client-cert), and that
//    a caller cannot forge it;
//  - who the inbound mTLS port refuses, probed with a raw OpenSSL TLS 1.3
//    client (ALPN h2) built here, presenting certificates made by
//    cert_factory: from foreign CAs, and forged with the real CA's own
//    intermediate key (read from its data dir) so that they chain to the
//    sidecar's trust bundle and only the broken property is to blame;
//  - that the outbound side refuses an upstream with an unexpected ID.
//
// "Refused" means: the handshake fails, or the connection is closed before
// a single byte of HTTP/2 arrives; and the sidecar's
// meshguard_tls_handshake_failures_total{side="inbound"} grows. A positive
// control (a good certificate gets the server's SETTINGS frame) shows the
// probe itself works.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/crypto/ssl_ptr.h"
#include "tests/identity/crypto/testing/cert_factory.h"
#include "tests/integration/sidecar_fixture.h"
#include "tests/integration/testing/process.h"
#include "tests/testing/echo.grpc.pb.h"
#include "tests/testing/held_handshake.h"

namespace meshguard::integration {
namespace {

using ::meshguard::crypto::testing::BasicConstraints;
using ::meshguard::crypto::testing::CertSpec;
using ::meshguard::crypto::testing::ChainPem;
using ::meshguard::crypto::testing::IntermediateSpec;
using ::meshguard::crypto::testing::LeafSpec;
using ::meshguard::crypto::testing::MakeCert;
using ::meshguard::crypto::testing::RootSpec;
using ::meshguard::crypto::testing::TestCert;
using ::meshguard::testing::EchoRequest;
using ::meshguard::testing::EchoResponse;
using ::meshguard::testing::SleepRequest;
using ::meshguard::testing::SleepResponse;

constexpr char kEchoAuthority[] = "echo.svc";
constexpr char kWrongIdAuthority[] = "wrong-id.svc";
constexpr char kInboundFailures[] = "meshguard_tls_handshake_failures_total";
constexpr absl::Duration kProbeReadTimeout = absl::Seconds(8);

std::chrono::system_clock::time_point DeadlineIn(absl::Duration d) {
  return std::chrono::system_clock::now() +
         std::chrono::milliseconds(absl::ToInt64Milliseconds(d));
}

std::string OpensslErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

// ---- Raw clients -----------------------------------------------------------

// What a raw client saw of the inbound port.
struct Probe {
  bool handshake_ok = false;
  // The server closed the connection (EOF, reset or a TLS alert).
  bool closed = false;
  // Bytes of application data (TLS) or raw bytes (plain TCP) received.
  std::string received;
  std::string detail;

  // An HTTP/2 server speaks first with a SETTINGS frame (9-byte header,
  // type 0x4).
  bool GotHttp2() const {
    return received.size() >= 9 && received[3] == '\x04';
  }
  bool Refused() const { return !GotHttp2() && (!handshake_ok || closed); }
  std::string ToString() const {
    return absl::StrCat("handshake_ok=", handshake_ok, " closed=", closed,
                        " received=", received.size(), " bytes [",
                        absl::BytesToHexString(received.substr(0, 16)),
                        "] detail=", detail);
  }
};

// HTTP/2 client connection preface and an empty SETTINGS frame.
std::string Http2Preface() {
  return std::string("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24) +
         std::string("\x00\x00\x00\x04\x00\x00\x00\x00\x00", 9);
}

// A TLS 1.3 client with ALPN h2 that presents `chain_pem` (leaf first) and
// `key` (both may be empty/null: no client certificate), sends the HTTP/2
// preface and reads until the server says something or closes. The server's
// certificate is not checked: only the server's verdict on ours matters.
// With `mid_handshake`, the client stops once the server has answered its
// ClientHello (the server then waits for our certificate), runs it, and
// goes on.
Probe TlsProbe(int port, const std::string& chain_pem, EVP_PKEY* key,
               const std::function<void()>& mid_handshake = nullptr) {
  Probe probe;
  ERR_clear_error();
  crypto::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));
  if (!chain_pem.empty()) {
    crypto::BioPtr bio(
        BIO_new_mem_buf(chain_pem.data(), static_cast<int>(chain_pem.size())));
    bool first = true;
    while (X509* cert =
               PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
      crypto::X509Ptr owned(cert);
      if (first) {
        SSL_CTX_use_certificate(ctx.get(), cert);
        first = false;
      } else {
        SSL_CTX_add1_chain_cert(ctx.get(), cert);
      }
    }
    ERR_clear_error();  // PEM end of input
    if (key == nullptr || SSL_CTX_use_PrivateKey(ctx.get(), key) != 1) {
      probe.detail = "bad test credentials: " + OpensslErrors();
      return probe;
    }
  }
  absl::StatusOr<int> connected =
      meshguard::testing::ConnectTcp("127.0.0.1", port, kProbeReadTimeout);
  if (!connected.ok()) {
    probe.detail = "tcp connect failed";
    return probe;
  }
  const int fd = *connected;
  crypto::SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd);
  if (mid_handshake != nullptr) {
    meshguard::testing::HeldClientHello held;
    if (!held.Start(ssl.get(), fd, absl::Seconds(5))) {
      probe.detail = "no answer to the ClientHello within 5 s";
      close(fd);
      return probe;
    }
    mid_handshake();
    held.Resume();
  }
  if (SSL_connect(ssl.get()) != 1) {
    probe.closed = true;
    probe.detail = absl::StrCat("handshake: ", OpensslErrors());
    close(fd);
    return probe;
  }
  probe.handshake_ok = true;
  // TLS 1.3: the client finishes first; the server judges our certificate
  // after that, so its verdict shows up on the first read.
  const std::string preface = Http2Preface();
  if (SSL_write(ssl.get(), preface.data(), static_cast<int>(preface.size())) <=
      0) {
    probe.closed = true;
    probe.detail = absl::StrCat("write: ", OpensslErrors());
  }
  char buf[4096];
  while (!probe.closed && probe.received.size() < 9) {
    int n = SSL_read(ssl.get(), buf, sizeof(buf));
    if (n > 0) {
      probe.received.append(buf, static_cast<size_t>(n));
      continue;
    }
    int err = SSL_get_error(ssl.get(), n);
    if (err == SSL_ERROR_SYSCALL && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      probe.detail = "read timed out: the server neither spoke nor closed";
      break;
    }
    probe.closed = true;
    probe.detail = absl::StrCat("read: ssl error ", err, " ", OpensslErrors());
  }
  close(fd);
  return probe;
}

// Plain TCP: sends `bytes`, reads until EOF or timeout.
Probe RawProbe(int port, const std::string& bytes) {
  Probe probe;
  absl::StatusOr<int> connected =
      meshguard::testing::ConnectTcp("127.0.0.1", port, kProbeReadTimeout);
  if (!connected.ok()) {
    probe.detail = "tcp connect failed";
    return probe;
  }
  const int fd = *connected;
  probe.handshake_ok = false;  // no TLS at all
  if (send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) {
    probe.closed = true;
  }
  char buf[4096];
  while (!probe.closed) {
    ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n > 0) {
      probe.received.append(buf, static_cast<size_t>(n));
    } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
      probe.closed = true;
    } else {
      probe.detail = "read timed out: the server neither spoke nor closed";
      break;
    }
  }
  close(fd);
  return probe;
}

// ---- Certificates ----------------------------------------------------------

uint64_t RandomSerial() {
  static std::mt19937_64 rng{std::random_device{}()};
  return (rng() >> 2) | 1;
}

// Valid now (cert_factory's defaults are around a fixed 2026 date).
CertSpec ValidNow(CertSpec spec) {
  spec.not_before = absl::Now() - absl::Hours(1);
  spec.not_after = absl::Now() + absl::Hours(1);
  spec.serial = RandomSerial();
  return spec;
}

// A root and intermediate that have nothing to do with the mesh's CA.
struct ForeignCa {
  TestCert root;
  TestCert intermediate;
};
ForeignCa MakeForeignCa() {
  TestCert root = *MakeCert(ValidNow(RootSpec("foreign root")));
  TestCert inter =
      *MakeCert(ValidNow(IntermediateSpec("foreign intermediate", root)));
  return {root, inter};
}

// The mesh CA's own intermediate, from its data dir (intermediate.pem and
// intermediate-key.pem, as meshguard-ca init writes them): leaves signed by
// it chain to the bundle the sidecars trust.
absl::StatusOr<TestCert> LoadRealIntermediate(const CaInstance& ca) {
  absl::StatusOr<std::string> cert_pem =
      meshguard::testing::ReadFile(ca.data_dir() + "/intermediate.pem");
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::string> key_pem =
      meshguard::testing::ReadFile(ca.data_dir() + "/intermediate-key.pem");
  if (!key_pem.ok()) return key_pem.status();
  crypto::BioPtr cert_bio(
      BIO_new_mem_buf(cert_pem->data(), static_cast<int>(cert_pem->size())));
  crypto::X509Ptr cert(
      PEM_read_bio_X509(cert_bio.get(), nullptr, nullptr, nullptr));
  crypto::BioPtr key_bio(
      BIO_new_mem_buf(key_pem->data(), static_cast<int>(key_pem->size())));
  crypto::EvpPkeyPtr key(
      PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr || key == nullptr) {
    return absl::InternalError("cannot parse the CA's intermediate: " +
                               OpensslErrors());
  }
  return TestCert(std::move(cert), std::move(key));
}

// ---- The fixture -----------------------------------------------------------

// The count a "bundle_changed" line gives for `field`, or -1.
int BundleChangedCount(const std::string& line, const std::string& field) {
  const std::string key = absl::StrCat("\"", field, "\":");
  const size_t at = line.find(key);
  if (at == std::string::npos) return -1;
  return std::atoi(line.c_str() + at + key.size());
}

// Revokes `serial`; the sequence number of the bundle that carries the new
// CRL (meshguardctl prints it), or -1 after a failure.
int64_t Revoke(Mesh* mesh, const std::string& serial) {
  RunResult revoke = mesh->ca().Ctl(
      {"revoke", "--serial", serial, "--reason", "mid-handshake test"});
  EXPECT_TRUE(revoke.status.Success()) << revoke.ToString();
  const std::string key = "bundle_sequence_number: ";
  const size_t at = revoke.out.find(key);
  EXPECT_NE(at, std::string::npos) << revoke.ToString();
  if (!revoke.status.Success() || at == std::string::npos) return -1;
  return std::atoll(revoke.out.c_str() + at + key.size());
}

// Waits until `sidecar` has checked its connections against the bundle
// `sequence` or a later one. Its check runs up to half a second after the
// bundle arrives, so a "bundle_changed" line of an earlier bundle can still
// be on its way: the line's sequence says which bundle it was.
bool AwaitRecheck(const Sidecar& sidecar, int64_t sequence) {
  return meshguard::testing::WaitFor(
      [&] {
        const std::vector<std::string> lines =
            sidecar.LogLines("bundle_changed");
        return !lines.empty() &&
               BundleChangedCount(lines.back(), "sequence") >= sequence;
      },
      absl::Seconds(4), absl::Milliseconds(50));
}

class SidecarIdentityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // A probed server that closes on us must fail the probe's write, not
    // kill the test.
    signal(SIGPIPE, SIG_IGN);
    absl::Status s = StartMesh();
    if (!s.ok()) {
      setup_error_ = new std::string(s.ToString());
      if (mesh_ != nullptr) {
        absl::StrAppend(setup_error_, "\n", mesh_->DescribeAll());
      }
    }
  }
  static absl::Status StartMesh() {
    absl::StatusOr<std::unique_ptr<Mesh>> mesh = Mesh::Create("identity");
    if (!mesh.ok()) return mesh.status();
    mesh_ = mesh->release();
    absl::StatusOr<EchoApp*> app = mesh_->StartEchoServer();
    if (!app.ok()) return app.status();
    SidecarSpec b_spec;
    b_spec.name = "server";
    b_spec.app = (*app)->address();
    absl::StatusOr<Sidecar*> b = mesh_->StartSidecar(b_spec);
    if (!b.ok()) return b.status();
    SidecarSpec a_spec;
    a_spec.name = "client";
    a_spec.routes = {
        RouteTo(kEchoAuthority, **b),
        RouteTo(kWrongIdAuthority, **b, MeshSpiffeId("impostor")),
    };
    absl::StatusOr<Sidecar*> a = mesh_->StartSidecar(a_spec);
    if (!a.ok()) return a.status();
    client_ = *a;
    server_ = *b;
    return absl::OkStatus();
  }
  static void TearDownTestSuite() {
    delete mesh_;
    mesh_ = nullptr;
    delete setup_error_;
    setup_error_ = nullptr;
  }

  void SetUp() override { ASSERT_EQ(setup_error_, nullptr) << *setup_error_; }
  void TearDown() override {
    if (HasFailure()) {
      fprintf(stderr, "%s\n", mesh_->DescribeAll(2000).c_str());
    }
  }

  double InboundFailures() const {
    return server_->MetricSum(kInboundFailures, {"side=\"inbound\""});
  }

  // Revokes `serial` and waits until the server sidecar has checked its
  // connections against the new bundle (the one in its handshake marked to
  // be checked when the handshake completes).
  void RevokeAndAwaitRecheck(const std::string& serial) {
    const int64_t sequence = Revoke(mesh_, serial);
    ASSERT_GE(sequence, 0);
    ASSERT_TRUE(AwaitRecheck(*server_, sequence))
        << "the server sidecar did not check its connections against bundle "
        << sequence << " in time (its handshake timeout is 5 s)";
  }

  double InboundChainFailures() const {
    return server_->MetricSum(kInboundFailures,
                              {"side=\"inbound\"", "reason=\"tls_error\""});
  }

  // Runs `probe`, expects it refused and counted as a handshake failure.
  void ExpectRefused(const std::function<Probe()>& probe) {
    const double before = InboundFailures();
    ASSERT_GE(before, 0) << "no /metrics";
    Probe p = probe();
    EXPECT_TRUE(p.Refused()) << p.ToString();
    EXPECT_FALSE(p.GotHttp2()) << p.ToString();
    const bool counted =
        meshguard::testing::WaitFor([&] { return InboundFailures() > before; },
                                    absl::Seconds(3), absl::Milliseconds(50));
    EXPECT_TRUE(counted) << kInboundFailures << "{side=\"inbound\"} stayed at "
                         << before << "; " << p.ToString();
  }

  void ExpectAccepted(const std::string& chain_pem, EVP_PKEY* key) {
    Probe p = TlsProbe(server_->inbound_port(), chain_pem, key);
    EXPECT_TRUE(p.handshake_ok) << p.ToString();
    EXPECT_TRUE(p.GotHttp2()) << p.ToString();
  }

  EchoResponse EchoVia(
      const std::string& authority,
      const std::vector<std::pair<std::string, std::string>>& metadata,
      grpc::Status* status) {
    auto stub = client_->Stub(authority);
    grpc::ClientContext context;
    context.set_deadline(DeadlineIn(absl::Seconds(10)));
    for (const auto& [k, v] : metadata) context.AddMetadata(k, v);
    EchoRequest request;
    request.set_payload("who am i");
    EchoResponse response;
    *status = stub->Echo(&context, request, &response);
    return response;
  }

  static Mesh* mesh_;
  static Sidecar* client_;
  static Sidecar* server_;
  static std::string* setup_error_;
};

Mesh* SidecarIdentityTest::mesh_ = nullptr;
Sidecar* SidecarIdentityTest::client_ = nullptr;
Sidecar* SidecarIdentityTest::server_ = nullptr;
std::string* SidecarIdentityTest::setup_error_ = nullptr;

// SHA-256 of the DER of the first certificate in `pem`, lowercase hex.
std::string LeafSha256(const std::string& pem) {
  crypto::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  crypto::X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (cert == nullptr) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  X509_digest(cert.get(), EVP_sha256(), md, &len);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(md), len));
}

// ---- What the app sees -----------------------------------------------------

TEST_F(SidecarIdentityTest, AppSeesCallerSpiffeIdInForwardedClientCert) {
  grpc::Status status;
  EchoResponse response = EchoVia(kEchoAuthority, {}, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const std::string xfcc = response.forwarded_client_cert();
  EXPECT_TRUE(absl::StartsWith(xfcc, "By=" + server_->spiffe_id() + ";Hash="))
      << xfcc;
  EXPECT_TRUE(absl::EndsWith(xfcc, ";URI=" + client_->spiffe_id())) << xfcc;

  // The Hash is the SHA-256 of the certificate the caller's sidecar holds
  // (unless it rotated in between: compare with /certs before and after).
  absl::StatusOr<google::protobuf::Struct> certs = client_->Certs();
  ASSERT_TRUE(certs.ok()) << certs.status();
  const auto& chain = certs->fields().at("chain").list_value();
  ASSERT_GT(chain.values_size(), 0);
  const std::string hash = LeafSha256(chain.values(0).string_value());
  EXPECT_TRUE(absl::StrContains(xfcc, ";Hash=" + hash + ";"))
      << xfcc << " vs sha256 " << hash;
}

TEST_F(SidecarIdentityTest, SpoofedForwardedClientCertNeverReachesTheApp) {
  const std::string spoof =
      "By=spiffe://cluster.local/ns/mesh/sa/server;Hash=00;"
      "URI=spiffe://cluster.local/ns/kube-system/sa/admin";
  grpc::Status status;
  EchoResponse response =
      EchoVia(kEchoAuthority,
              {{"x-forwarded-client-cert", spoof},
               {"x-forwarded-client-cert", "URI=spiffe://evil.org/ns/x/sa/y"}},
              &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  int count = 0;
  for (const auto& m : response.request_metadata()) {
    if (m.key() != "x-forwarded-client-cert") continue;
    ++count;
    EXPECT_FALSE(absl::StrContains(m.value(), "kube-system")) << m.value();
    EXPECT_FALSE(absl::StrContains(m.value(), "evil.org")) << m.value();
    EXPECT_TRUE(absl::EndsWith(m.value(), ";URI=" + client_->spiffe_id()))
        << m.value();
  }
  EXPECT_EQ(count, 1) << "the app must see exactly the sidecar's value";
}

TEST_F(SidecarIdentityTest, UpstreamWithUnexpectedSpiffeIdIsRefused) {
  const double before = client_->MetricSum(
      kInboundFailures, {"side=\"outbound\"", "reason=\"identity_rejected\""});
  grpc::Status status;
  EchoVia(kWrongIdAuthority, {}, &status);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "handshake failure"))
      << status.error_message();
  // The caller learns whom it reached and whom it expected.
  EXPECT_TRUE(absl::StrContains(status.error_message(), "peer is spiffe://") &&
              absl::StrContains(status.error_message(), ", expected spiffe://"))
      << status.error_message();
  EXPECT_GT(
      client_->MetricSum(kInboundFailures,
                         {"side=\"outbound\"", "reason=\"identity_rejected\""}),
      before);
  // The right ID over the same upstream still works.
  EchoVia(kEchoAuthority, {}, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

// ---- The raw probe's positive controls -------------------------------------

TEST_F(SidecarIdentityTest, ProbeWithACertificateFromTheRealCaIsAccepted) {
  absl::StatusOr<client::IssuedCertificate> issued =
      mesh_->ca().IssueFor(MeshSpiffeId("probe"));
  ASSERT_TRUE(issued.ok()) << issued.status();
  ExpectAccepted(issued->ChainPem(), issued->key.get());
}

TEST_F(SidecarIdentityTest,
       ProbeWithALeafForgedByTheRealIntermediateIsAccepted) {
  absl::StatusOr<TestCert> inter = LoadRealIntermediate(mesh_->ca());
  ASSERT_TRUE(inter.ok()) << inter.status();
  TestCert leaf = *MakeCert(ValidNow(LeafSpec(MeshSpiffeId("forged"), *inter)));
  ExpectAccepted(ChainPem({&leaf, &*inter}), leaf.key());
}

// ---- Refused at the inbound port -------------------------------------------

TEST_F(SidecarIdentityTest, NoClientCertificateIsRefused) {
  ExpectRefused([&] { return TlsProbe(server_->inbound_port(), "", nullptr); });
}

TEST_F(SidecarIdentityTest, CertificateFromAnotherCaIsRefused) {
  ForeignCa foreign = MakeForeignCa();
  TestCert leaf = *MakeCert(
      ValidNow(LeafSpec(MeshSpiffeId("client"), foreign.intermediate)));
  const std::string chain = ChainPem({&leaf, &foreign.intermediate});
  ExpectRefused(
      [&] { return TlsProbe(server_->inbound_port(), chain, leaf.key()); });
}

TEST_F(SidecarIdentityTest, WrongTrustDomainFromAnotherCaIsRefused) {
  ForeignCa foreign = MakeForeignCa();
  TestCert leaf = *MakeCert(ValidNow(
      LeafSpec("spiffe://other.org/ns/mesh/sa/client", foreign.intermediate)));
  const std::string chain = ChainPem({&leaf, &foreign.intermediate});
  ExpectRefused(
      [&] { return TlsProbe(server_->inbound_port(), chain, leaf.key()); });
}

TEST_F(SidecarIdentityTest, WrongTrustDomainChainingToTheBundleIsRefused) {
  absl::StatusOr<TestCert> inter = LoadRealIntermediate(mesh_->ca());
  ASSERT_TRUE(inter.ok()) << inter.status();
  TestCert leaf = *MakeCert(
      ValidNow(LeafSpec("spiffe://other.org/ns/mesh/sa/client", *inter)));
  const std::string chain = ChainPem({&leaf, &*inter});
  ExpectRefused(
      [&] { return TlsProbe(server_->inbound_port(), chain, leaf.key()); });
}

TEST_F(SidecarIdentityTest, ExpiredCertificateFromTheRealCaIsRefused) {
  absl::StatusOr<client::IssuedCertificate> issued =
      mesh_->ca().IssueFor(MeshSpiffeId("short-lived"), absl::Seconds(2));
  ASSERT_TRUE(issued.ok()) << issued.status();
  ASSERT_LT(issued->not_after, absl::Now() + absl::Seconds(10))
      << "the CA did not honour a 2s TTL";
  // Accepted while valid (the control), refused once expired.
  ExpectAccepted(issued->ChainPem(), issued->key.get());
  absl::SleepFor(issued->not_after - absl::Now() + absl::Seconds(1.5));
  ExpectRefused([&] {
    return TlsProbe(server_->inbound_port(), issued->ChainPem(),
                    issued->key.get());
  });
}

TEST_F(SidecarIdentityTest, ExpiredLeafChainingToTheBundleIsRefused) {
  absl::StatusOr<TestCert> inter = LoadRealIntermediate(mesh_->ca());
  ASSERT_TRUE(inter.ok()) << inter.status();
  CertSpec spec = ValidNow(LeafSpec(MeshSpiffeId("client"), *inter));
  spec.not_before = absl::Now() - absl::Hours(2);
  spec.not_after = absl::Now() - absl::Hours(1);
  TestCert leaf = *MakeCert(spec);
  const std::string chain = ChainPem({&leaf, &*inter});
  ExpectRefused(
      [&] { return TlsProbe(server_->inbound_port(), chain, leaf.key()); });
}

TEST_F(SidecarIdentityTest, RevokedCertificateIsRefusedOnceTheBundleArrives) {
  absl::StatusOr<client::IssuedCertificate> issued =
      mesh_->ca().IssueFor(MeshSpiffeId("to-revoke"));
  ASSERT_TRUE(issued.ok()) << issued.status();
  ExpectAccepted(issued->ChainPem(), issued->key.get());

  const int64_t sequence = server_->BundleSequence();
  ASSERT_GE(sequence, 0);
  RunResult revoke = mesh_->ca().Ctl(
      {"revoke", "--serial", issued->serial, "--reason", "test"});
  ASSERT_TRUE(revoke.status.Success()) << revoke.ToString();
  ASSERT_TRUE(meshguard::testing::WaitFor(
      [&] { return server_->BundleSequence() > sequence; }, absl::Seconds(15),
      absl::Milliseconds(100)))
      << "the sidecar never got the bundle with the new CRL (sequence stays "
      << server_->BundleSequence() << ")";
  ExpectRefused([&] {
    return TlsProbe(server_->inbound_port(), issued->ChainPem(),
                    issued->key.get());
  });
}

// A handshake under way when a new bundle arrives is not cut off: it
// completes, the client is checked again under the new bundle and, when it
// passes, gets HTTP/2. Without the check again, its handshake would have
// used the old CRL.
TEST_F(SidecarIdentityTest, AnotherPeersRevocationLetsTheHandshakeFinish) {
  absl::StatusOr<client::IssuedCertificate> bystander =
      mesh_->ca().IssueFor(MeshSpiffeId("mid-handshake-bystander"));
  ASSERT_TRUE(bystander.ok()) << bystander.status();
  absl::StatusOr<client::IssuedCertificate> other =
      mesh_->ca().IssueFor(MeshSpiffeId("mid-handshake-other"));
  ASSERT_TRUE(other.ok()) << other.status();
  const double failures = InboundFailures();
  Probe p = TlsProbe(server_->inbound_port(), bystander->ChainPem(),
                     bystander->key.get(),
                     [&] { RevokeAndAwaitRecheck(other->serial); });
  EXPECT_TRUE(p.handshake_ok) << p.ToString();
  EXPECT_TRUE(p.GotHttp2()) << p.ToString();
  EXPECT_EQ(InboundFailures(), failures);
}

TEST_F(SidecarIdentityTest, ThePeersOwnRevocationRefusesIt) {
  absl::StatusOr<client::IssuedCertificate> issued =
      mesh_->ca().IssueFor(MeshSpiffeId("mid-handshake-revoked"));
  ASSERT_TRUE(issued.ok()) << issued.status();
  const double chain_failures = InboundChainFailures();
  Probe p =
      TlsProbe(server_->inbound_port(), issued->ChainPem(), issued->key.get(),
               [&] { RevokeAndAwaitRecheck(issued->serial); });
  EXPECT_TRUE(p.Refused()) << p.ToString();
  EXPECT_FALSE(p.GotHttp2()) << p.ToString();
  EXPECT_TRUE(meshguard::testing::WaitFor(
      [&] { return InboundChainFailures() > chain_failures; }, absl::Seconds(3),
      absl::Milliseconds(50)))
      << "counted as " << kInboundFailures
      << "{side=\"inbound\",reason=\"tls_error\"}";
}

// A revocation (or any new bundle) does not reconnect the whole mesh: a
// connection whose peer the new bundle still accepts stays open.
TEST_F(SidecarIdentityTest, ARevocationOfSomeoneElseKeepsOpenConnections) {
  grpc::Status status;
  EchoVia(kEchoAuthority, {}, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  const double client_drained = client_->MetricSum(
      "meshguard_connections_drained_for_credentials_total", {});
  const double server_drained = server_->MetricSum(
      "meshguard_connections_drained_for_credentials_total", {});
  const double connections =
      client_->MetricSum("meshguard_active", {"kind=\"upstream_connections\""});
  ASSERT_GE(connections, 1);
  absl::StatusOr<client::IssuedCertificate> other =
      mesh_->ca().IssueFor(MeshSpiffeId("revoked-elsewhere"));
  ASSERT_TRUE(other.ok()) << other.status();

  ASSERT_NO_FATAL_FAILURE(RevokeAndAwaitRecheck(other->serial));
  const std::vector<std::string> changes = server_->LogLines("bundle_changed");
  ASSERT_FALSE(changes.empty());
  EXPECT_THAT(changes.back(),
              ::testing::HasSubstr(R"("connections_drained":0)"));

  EchoVia(kEchoAuthority, {}, &status);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(client_->MetricSum(
                "meshguard_connections_drained_for_credentials_total", {}),
            client_drained);
  EXPECT_EQ(server_->MetricSum(
                "meshguard_connections_drained_for_credentials_total", {}),
            server_drained);
  EXPECT_EQ(
      client_->MetricSum("meshguard_active", {"kind=\"upstream_connections\""}),
      connections);
  EXPECT_GE(server_->MetricSum("meshguard_bundle_rechecks_total",
                               {"result=\"kept\""}),
            1);
}

// A new bundle costs each sidecar one chain verification per peer, not one
// per connection: the connections one client sidecar pools to one server
// sidecar carry the same chain each way, and share one verdict.
TEST_F(SidecarIdentityTest, ABundleChangeVerifiesEachPeersChainOnce) {
  absl::StatusOr<EchoApp*> app = mesh_->StartEchoServer();
  ASSERT_TRUE(app.ok()) << app.status();
  SidecarSpec b_spec;
  b_spec.name = "pooled-server";
  b_spec.app = (*app)->address();
  absl::StatusOr<Sidecar*> b = mesh_->StartSidecar(b_spec);
  ASSERT_TRUE(b.ok()) << b.status();
  SidecarSpec a_spec;
  a_spec.name = "pooled-client";
  a_spec.routes = {RouteTo(kEchoAuthority, **b)};
  absl::StatusOr<Sidecar*> a = mesh_->StartSidecar(a_spec);
  ASSERT_TRUE(a.ok()) << a.status();

  // Overlapping calls: while every connection carries one, the client's
  // pool opens a sibling (sidecar/proxy/upstream_pool.cc).
  auto stub = (*a)->Stub(kEchoAuthority);
  std::vector<grpc::Status> statuses(6);
  std::vector<std::thread> calls;
  for (size_t i = 0; i < statuses.size(); ++i) {
    calls.emplace_back([&, i] {
      grpc::ClientContext context;
      context.set_deadline(DeadlineIn(absl::Seconds(10)));
      SleepRequest request;
      request.set_sleep_ms(1000);
      SleepResponse response;
      statuses[i] = stub->Sleep(&context, request, &response);
    });
    absl::SleepFor(absl::Milliseconds(100));
  }
  for (std::thread& t : calls) t.join();
  for (const grpc::Status& s : statuses) {
    ASSERT_TRUE(s.ok()) << s.error_message();
  }
  const double connections =
      (*a)->MetricSum("meshguard_active", {"kind=\"upstream_connections\""});
  ASSERT_GE(connections, 2) << "the pool opened no sibling connection";

  absl::StatusOr<client::IssuedCertificate> other =
      mesh_->ca().IssueFor(MeshSpiffeId("revoked-for-the-pool"));
  ASSERT_TRUE(other.ok()) << other.status();
  const int64_t sequence = Revoke(mesh_, other->serial);
  ASSERT_GE(sequence, 0);
  ASSERT_TRUE(AwaitRecheck(**a, sequence) && AwaitRecheck(**b, sequence))
      << "no bundle_changed line for bundle " << sequence
      << " from both sidecars";
  for (Sidecar* side : {*a, *b}) {
    const std::string line = side->LogLines("bundle_changed").back();
    EXPECT_EQ(BundleChangedCount(line, "connections_kept"), connections)
        << line;
    EXPECT_EQ(BundleChangedCount(line, "connections_drained"), 0) << line;
    EXPECT_EQ(BundleChangedCount(line, "chains_verified"), 1) << line;
  }
  grpc::Status status = EchoOnce(stub.get(), "still pooled");
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(
      (*a)->MetricSum("meshguard_active", {"kind=\"upstream_connections\""}),
      connections);
}

// A connection does not outlive its peer's revocation: once the CRL naming
// the client sidecar's certificate reaches the server sidecar, the open
// connection is drained, and the reconnect is refused at the handshake.
TEST_F(SidecarIdentityTest, RevokedPeersOpenConnectionIsDrainedAndNotReopened) {
  SidecarSpec spec;
  spec.name = "doomed";
  spec.routes = {RouteTo(kEchoAuthority, *server_)};
  absl::StatusOr<Sidecar*> started = mesh_->StartSidecar(spec);
  ASSERT_TRUE(started.ok()) << started.status();
  Sidecar* doomed = *started;
  auto stub = doomed->Stub(kEchoAuthority);
  auto echo = [&] { return EchoOnce(stub.get(), "still me?"); };
  grpc::Status first = echo();
  ASSERT_TRUE(first.ok()) << first.error_message();
  const double drained_before = server_->MetricSum(
      "meshguard_connections_drained_for_credentials_total", {});
  ASSERT_GE(drained_before, 0) << "no /metrics";
  const std::string serial = doomed->Serial();
  ASSERT_FALSE(serial.empty());

  RunResult revoke = mesh_->ca().Ctl(
      {"revoke", "--serial", serial, "--reason", "key compromise drill"});
  ASSERT_TRUE(revoke.status.Success()) << revoke.ToString();

  // The open connection is drained by the server side...
  EXPECT_TRUE(meshguard::testing::WaitFor(
      [&] {
        return server_->MetricSum(
                   "meshguard_connections_drained_for_credentials_total", {}) >
               drained_before;
      },
      absl::Seconds(15), absl::Milliseconds(100)))
      << "the server sidecar never drained a connection after the revocation";
  // ...and the revoked identity cannot get back in.
  grpc::Status last;
  const bool refused = meshguard::testing::WaitFor(
      [&] {
        last = echo();
        return last.error_code() == grpc::StatusCode::UNAVAILABLE;
      },
      absl::Seconds(15), absl::Milliseconds(200));
  EXPECT_TRUE(refused) << "calls from the revoked sidecar still get through: "
                       << last.error_code() << " " << last.error_message();
  // The caller learns that the peer refused it at the handshake (its TLS
  // alert), not merely that a connection closed, and its sidecar counts it.
  EXPECT_TRUE(absl::StrContains(last.error_message(), "handshake failure") &&
              absl::StrContains(last.error_message(), "refused"))
      << last.error_message();
  EXPECT_GT(doomed->MetricSum(kInboundFailures,
                              {"side=\"outbound\"", "reason=\"tls_error\""}),
            0);
}

TEST_F(SidecarIdentityTest, CaTrueLeafFromAForeignRootIsRefused) {
  ForeignCa foreign = MakeForeignCa();
  CertSpec spec =
      ValidNow(LeafSpec(MeshSpiffeId("client"), foreign.intermediate));
  spec.basic_constraints = BasicConstraints::kCaTrue;
  TestCert leaf = *MakeCert(spec);
  const std::string chain = ChainPem({&leaf, &foreign.intermediate});
  ExpectRefused(
      [&] { return TlsProbe(server_->inbound_port(), chain, leaf.key()); });
}

TEST_F(SidecarIdentityTest, CaTrueLeafChainingToTheBundleIsRefused) {
  absl::StatusOr<TestCert> inter = LoadRealIntermediate(mesh_->ca());
  ASSERT_TRUE(inter.ok()) << inter.status();
  CertSpec spec = ValidNow(LeafSpec(MeshSpiffeId("client"), *inter));
  spec.basic_constraints = BasicConstraints::kCaTrue;
  spec.key_usage =
      crypto::testing::kDigitalSignature | crypto::testing::kKeyCertSign;
  TestCert leaf = *MakeCert(spec);
  const std::string chain = ChainPem({&leaf, &*inter});
  ExpectRefused(
      [&] { return TlsProbe(server_->inbound_port(), chain, leaf.key()); });
}

TEST_F(SidecarIdentityTest, TwoUriSansChainingToTheBundleAreRefused) {
  absl::StatusOr<TestCert> inter = LoadRealIntermediate(mesh_->ca());
  ASSERT_TRUE(inter.ok()) << inter.status();
  CertSpec spec = ValidNow(LeafSpec(MeshSpiffeId("client"), *inter));
  spec.uri_sans.push_back(MeshSpiffeId("admin"));
  TestCert leaf = *MakeCert(spec);
  const std::string chain = ChainPem({&leaf, &*inter});
  ExpectRefused(
      [&] { return TlsProbe(server_->inbound_port(), chain, leaf.key()); });
}

TEST_F(SidecarIdentityTest, PlaintextHttp2PrefaceIsRefused) {
  ExpectRefused(
      [&] { return RawProbe(server_->inbound_port(), Http2Preface()); });
}

TEST_F(SidecarIdentityTest, GarbageBytesAreRefused) {
  std::string garbage(2048, '\0');
  std::mt19937 rng(42);
  for (char& c : garbage) c = static_cast<char>(rng());
  // A TLS handshake record header with a short length, then noise, so the
  // server has a whole record to judge instead of waiting for more bytes.
  garbage[0] = '\x16';
  garbage[1] = '\x03';
  garbage[2] = '\x01';
  garbage[3] = '\x00';
  garbage[4] = '\x40';
  ExpectRefused([&] { return RawProbe(server_->inbound_port(), garbage); });
  // And the listener still serves good peers afterwards.
  grpc::Status status;
  EchoVia(kEchoAuthority, {}, &status);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace meshguard::integration
