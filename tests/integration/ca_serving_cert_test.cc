// The CA's own serving certificate: a CA that runs longer than that
// certificate's lifetime must stay reachable. meshguard-ca re-issues it at
// half its life and gRPC serves the new pair to new connections, with no
// restart. Checked the way a client sees it: the certificate presented on
// each new TLS connection (its serial, its validity, its chain to the
// bundle), and a real client call after the first certificate expired.
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/client/ca_client.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/ssl_ptr.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::WriteFile;
using ::testing::AllOf;
using ::testing::HasSubstr;

struct ServingCert {
  std::string serial;
  absl::Time not_after;
  bool chain_verifies = false;  // to the CA's bundle, at the current time
  std::string verify_error;
};

// One TLS 1.3 handshake with ALPN h2 to 127.0.0.1:port, as a gRPC client
// makes it; returns what the server presented.
absl::StatusOr<ServingCert> Probe(int port, const std::string& bundle_pem) {
  absl::StatusOr<int> connected =
      meshguard::testing::ConnectTcp("127.0.0.1", port, absl::Seconds(5));
  if (!connected.ok()) return connected.status();
  const int fd = *connected;
  crypto::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  static const unsigned char kAlpn[] = {2, 'h', '2'};
  SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn));
  crypto::SslPtr ssl(SSL_new(ctx.get()));
  SSL_set_fd(ssl.get(), fd);
  SSL_set_tlsext_host_name(ssl.get(), "meshguard-ca");
  const int rc = SSL_connect(ssl.get());
  X509* leaf = rc == 1 ? SSL_get0_peer_certificate(ssl.get()) : nullptr;
  if (leaf == nullptr) {
    close(fd);
    return absl::UnavailableError("TLS handshake failed or no certificate");
  }
  ServingCert out;
  out.serial = crypto::SerialHex(leaf);
  out.not_after = crypto::NotAfter(leaf);

  // Verify the presented chain against the bundle now, as clients do.
  absl::StatusOr<std::vector<crypto::X509Ptr>> roots =
      crypto::ParseCertificateChainPem(bundle_pem);
  crypto::X509StorePtr store(X509_STORE_new());
  if (roots.ok()) {
    for (const crypto::X509Ptr& root : *roots) {
      X509_STORE_add_cert(store.get(), root.get());
    }
  }
  crypto::X509StoreCtxPtr vctx(X509_STORE_CTX_new());
  X509_STORE_CTX_init(vctx.get(), store.get(), leaf,
                      SSL_get_peer_cert_chain(ssl.get()));
  out.chain_verifies = X509_verify_cert(vctx.get()) == 1;
  if (!out.chain_verifies) {
    out.verify_error =
        X509_verify_cert_error_string(X509_STORE_CTX_get_error(vctx.get()));
  }
  SSL_shutdown(ssl.get());
  close(fd);
  return out;
}

TEST(CaServingCertTest, RenewedAtHalfLifeAndServedWithoutRestart) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("srv");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE((*ca)->Serve("serving_certificate_ttl: 10s\n").ok());
  const std::string bundle = (*ca)->bundle_pem();

  absl::StatusOr<ServingCert> first = Probe((*ca)->grpc_port(), bundle);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_TRUE(first->chain_verifies) << first->verify_error;
  EXPECT_LE(first->not_after, absl::Now() + absl::Seconds(11))
      << "the configured 10 s lifetime";

  // The key lives only in the data dir, readable by the CA's user alone.
  struct stat st {};
  ASSERT_EQ(stat(((*ca)->data_dir() + "/serving/key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(stat(((*ca)->data_dir() + "/serving").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);

  // Renewed at about half its life; new connections get the new one well
  // before the first expires.
  absl::StatusOr<ServingCert> next = first;
  const absl::Time deadline = absl::Now() + absl::Seconds(15);
  while (absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(250));
    next = Probe((*ca)->grpc_port(), bundle);
    ASSERT_TRUE(next.ok()) << next.status();
    if (next->serial != first->serial) break;
  }
  ASSERT_NE(next->serial, first->serial) << "never renewed";
  EXPECT_LT(absl::Now(), first->not_after)
      << "served only after the first one expired";
  EXPECT_TRUE(next->chain_verifies) << next->verify_error;
  EXPECT_GT(next->not_after, first->not_after);

  // Past the first certificate's expiry, a client that verifies the CA
  // against the bundle still gets certificates.
  absl::SleepFor(
      std::max(first->not_after - absl::Now(), absl::ZeroDuration()) +
      absl::Seconds(1));
  absl::StatusOr<client::IssuedCertificate> issued =
      (*ca)->IssueFor(SpiffeIdFor("default", "after-expiry"));
  EXPECT_TRUE(issued.ok()) << issued.status();
  absl::StatusOr<ServingCert> later = Probe((*ca)->grpc_port(), bundle);
  ASSERT_TRUE(later.ok()) << later.status();
  EXPECT_TRUE(later->chain_verifies) << later->verify_error;
  EXPECT_GT(later->not_after, absl::Now());

  EXPECT_GE((*ca)->LogLines("serving_certificate_issued").size(), 2u);
  EXPECT_TRUE((*ca)->LogLines("serving_certificate_renewal_failed").empty());
}

TEST(CaServingCertTest, TooShortLifetimeIsRefusedNamingTheField) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("srvcfg");
  ASSERT_TRUE(ca.ok()) << ca.status();
  const std::string config = (*ca)->data_dir() + "/../short.yaml";
  ASSERT_TRUE(WriteFile(config, "serving_certificate_ttl: 5s\n").ok());
  absl::StatusOr<int> port = PickFreePort();
  absl::StatusOr<int> http = PickFreePort();
  ASSERT_TRUE(port.ok() && http.ok());
  RunResult r = RunBinary(
      CaBinary(), {"serve", "--data_dir", (*ca)->data_dir(), "--config", config,
                   "--listen", absl::StrCat("127.0.0.1:", *port),
                   "--admin_listen", absl::StrCat("127.0.0.1:", *http)});
  EXPECT_NE(r.status.code, 0) << r.ToString();
  EXPECT_FALSE(r.timed_out);
  EXPECT_THAT(r.err, AllOf(HasSubstr("serving_certificate_ttl"),
                           HasSubstr("at least 10s")))
      << r.ToString();
}

// The serving certificate is not in the issuance log (it cannot be listed
// or revoked) and each restart leaves the previous one valid: it must not
// work as a renewal credential.
TEST(CaServingCertTest, ServingCertificateCannotRenew) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("srvrn");
  ASSERT_TRUE(ca.ok()) << ca.status();
  ASSERT_TRUE((*ca)->Serve("").ok());
  const std::string serving = (*ca)->data_dir() + "/serving";
  const int before = (*ca)->CountCertificates();
  RunResult r = (*ca)->Ctl({"cert", "renew", "--cert", serving + "/cert.pem",
                            "--key", serving + "/key.pem", "--out_dir",
                            (*ca)->data_dir() + "/../stolen"});
  EXPECT_NE(r.status.code, 0) << r.ToString();
  EXPECT_THAT(r.err, HasSubstr("is the CA's serving identity; it cannot renew"))
      << r.ToString();
  EXPECT_EQ((*ca)->CountCertificates(), before);
}

}  // namespace
}  // namespace meshguard::integration
