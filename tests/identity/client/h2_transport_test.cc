// H2CaTransport, the sidecar's gRPC-free way to the CA. Refusals first:
// a hostile or broken server (FakeCaServer: garbage, oversized and
// malformed responses, resets, wrong ALPN, wrong name, silence), then the
// real meshguard-ca refusing (wrong bundle, CA down, CA stopped, spent join
// token) with the same status codes as the gRPC C++ client, then the real
// thing working: join token, mTLS renewal, GetTrustBundle, and the watch
// delivering the CRL of a revocation.
#include "identity/client/h2_transport.h"

#include <nghttp2/nghttp2.h>
#include <signal.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/client/ca_client.h"
#include "identity/client/grpc_wire.h"
#include "identity/client/identity_client.h"
#include "identity/crypto/certificate.h"
#include "tests/identity/client/fake_ca_server.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::client {
namespace {

namespace v1 = ::meshguard::ca::v1;
using ::meshguard::client::testing::Data;
using ::meshguard::client::testing::FakeCaServer;
using ::meshguard::client::testing::Goaway;
using ::meshguard::client::testing::Headers;
using ::meshguard::client::testing::OkResponseHeaders;
using ::meshguard::client::testing::RstStream;
using ::meshguard::client::testing::ServerPreface;
using ::meshguard::client::testing::TestPki;
using ::meshguard::client::testing::Trailers;
using ::meshguard::integration::CaInstance;
using ::meshguard::integration::SpiffeIdFor;
using ::meshguard::testing::PickFreePort;
using ::meshguard::testing::WaitFor;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A message prefix announcing `length` bytes (none of which follow).
std::string PrefixOnly(uint32_t length) {
  return wire::FrameMessage("").substr(0, 1) +
         std::string{static_cast<char>(length >> 24),
                     static_cast<char>((length >> 16) & 0xff),
                     static_cast<char>((length >> 8) & 0xff),
                     static_cast<char>(length & 0xff)};
}

std::string BundleMessage(uint64_t sequence) {
  v1::TrustBundle bundle;
  bundle.set_trust_domain("cluster.local");
  bundle.set_sequence_number(sequence);
  return wire::FrameMessage(bundle.SerializeAsString());
}

// A complete, well-formed GetTrustBundle answer: where a test uses it, the
// failure comes from the connection (TLS, ALPN, names), not the response.
std::string GoodBundleResponse() {
  return ServerPreface() + OkResponseHeaders() + Data(BundleMessage(1), false) +
         Trailers(0);
}

// --- Against a broken or hostile server --------------------------------

class H2AgainstFakeServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<TestPki> pki = TestPki::Create();
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *std::move(pki);
  }

  // Starts a fake CA answering `response` and returns GetTrustBundle's
  // result against it.
  absl::StatusOr<v1::TrustBundle> FetchFrom(
      std::string response, CaClientOptions options = CaClientOptions(),
      bool alpn_h2 = true) {
    FakeCaServer::Options server_options;
    server_options.response = std::move(response);
    server_options.alpn_h2 = alpn_h2;
    absl::StatusOr<std::unique_ptr<FakeCaServer>> server =
        FakeCaServer::Start(pki_, server_options);
    if (!server.ok()) return server.status();
    server_ = *std::move(server);
    options.address = server_->address();
    options.ca_bundle_pem = pki_.root_pem;
    if (options.timeout == CaClientOptions().timeout) {
      options.timeout = absl::Seconds(5);
    }
    absl::StatusOr<std::unique_ptr<H2CaTransport>> transport =
        H2CaTransport::Create(options);
    if (!transport.ok()) return transport.status();
    return (*transport)->GetTrustBundle();
  }

  std::string Prefix() const {
    return absl::StrCat("CA ", server_->address(), ": ");
  }

  TestPki pki_;
  std::unique_ptr<FakeCaServer> server_;
};

TEST_F(H2AgainstFakeServerTest, GarbageInsteadOfHttp2IsUnavailable) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), StartsWith(Prefix()));
}

TEST_F(H2AgainstFakeServerTest, HugeAnnouncedMessageIsRefusedFromItsPrefix) {
  // 2 GiB announced, nothing sent: refused at once, nothing buffered.
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() +
                Data(PrefixOnly(0x7fffffff), false));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), StartsWith(Prefix()));
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("2147483647 bytes"));
}

TEST_F(H2AgainstFakeServerTest, MessageOverTheConfiguredLimitIsRefused) {
  CaClientOptions options;
  options.max_response_bytes = 1024;
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(
      ServerPreface() + OkResponseHeaders() +
          Data(wire::FrameMessage(std::string(1025, 'x')), false) + Trailers(0),
      options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted)
      << r.status();
}

TEST_F(H2AgainstFakeServerTest, UnparsableMessageIsInternal) {
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(
      ServerPreface() + OkResponseHeaders() +
      Data(wire::FrameMessage("\xff\xff\xff\xff"), false) + Trailers(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("cannot parse"));
}

TEST_F(H2AgainstFakeServerTest, CompressedMessageIsInternal) {
  std::string compressed = BundleMessage(1);
  compressed[0] = 1;
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() +
                Data(compressed, false) + Trailers(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
}

TEST_F(H2AgainstFakeServerTest, TwoMessagesForAUnaryCallAreInternal) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() +
                Data(BundleMessage(1) + BundleMessage(2), false) + Trailers(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
}

TEST_F(H2AgainstFakeServerTest, OkStatusWithoutAMessageIsInternal) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() + Trailers(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
}

TEST_F(H2AgainstFakeServerTest, ResponseEndingInsideAMessageIsInternal) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() +
                Data(BundleMessage(1).substr(0, 7), false) + Trailers(0));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInternal) << r.status();
}

TEST_F(H2AgainstFakeServerTest, EndWithoutGrpcStatusIsUnknown) {
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(
      ServerPreface() + OkResponseHeaders() + Data(BundleMessage(1), true));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnknown) << r.status();
}

TEST_F(H2AgainstFakeServerTest, Non200IsUnavailable) {
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(
      ServerPreface() +
      Headers({{":status", "503"}, {"content-type", "text/plain"}}, true));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("HTTP status 503"));
}

TEST_F(H2AgainstFakeServerTest, NonGrpcContentTypeIsUnavailable) {
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(
      ServerPreface() +
      Headers({{":status", "200"}, {"content-type", "text/html"}}, false) +
      Data("<html>", true));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("text/html"));
}

TEST_F(H2AgainstFakeServerTest, RstStreamIsUnavailable) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + RstStream(NGHTTP2_REFUSED_STREAM));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("REFUSED_STREAM"));
}

TEST_F(H2AgainstFakeServerTest, GoawayBeforeTheCallIsUnavailable) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + Goaway(0, NGHTTP2_NO_ERROR));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("GOAWAY"));
}

TEST_F(H2AgainstFakeServerTest, ConnectionClosedMidResponseIsUnavailable) {
  FakeCaServer::Options server_options;
  server_options.response = ServerPreface() + OkResponseHeaders() +
                            Data(BundleMessage(1).substr(0, 3), false);
  server_options.close_after_response = true;
  absl::StatusOr<std::unique_ptr<FakeCaServer>> server =
      FakeCaServer::Start(pki_, server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  CaClientOptions options;
  options.address = (*server)->address();
  options.ca_bundle_pem = pki_.root_pem;
  absl::StatusOr<std::unique_ptr<H2CaTransport>> transport =
      H2CaTransport::Create(options);
  ASSERT_TRUE(transport.ok()) << transport.status();
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::TrustBundle> r = (*transport)->GetTrustBundle();
  EXPECT_LT(absl::Now() - start, absl::Seconds(3)) << "not by the deadline";
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("connection closed"));
}

TEST_F(H2AgainstFakeServerTest, NoAlpnIsUnavailable) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(GoodBundleResponse(), CaClientOptions(), /*alpn_h2=*/false);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("ALPN"));
}

TEST_F(H2AgainstFakeServerTest, CertificateForAnotherNameIsUnavailable) {
  CaClientOptions options;
  options.server_name = "not-the-ca";
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(GoodBundleResponse(), options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("certificate verify failed: hostname mismatch"));
  EXPECT_TRUE(server_->requests().empty()) << "nothing sent to an impostor";
}

TEST_F(H2AgainstFakeServerTest, CertificateForAnotherIpIsUnavailable) {
  CaClientOptions options;
  options.server_name = "127.0.0.2";
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(GoodBundleResponse(), options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("IP address mismatch"));
}

TEST_F(H2AgainstFakeServerTest, SilentServerIsDeadlineExceededOnTime) {
  CaClientOptions options;
  options.timeout = absl::Milliseconds(700);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::TrustBundle> r = FetchFrom("", options);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded)
      << r.status();
  EXPECT_THAT(std::string(r.status().message()), StartsWith(Prefix()));
  EXPECT_GE(took, absl::Milliseconds(650));
  EXPECT_LT(took, absl::Seconds(3));
}

TEST_F(H2AgainstFakeServerTest, TrailersOnlyStatusIsDecoded) {
  absl::StatusOr<v1::TrustBundle> r = FetchFrom(
      ServerPreface() + Headers({{":status", "200"},
                                 {"content-type", "application/grpc"},
                                 {"grpc-status", "16"},
                                 {"grpc-message", "join token %22abc%22 used"}},
                                true));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated)
      << r.status();
  EXPECT_EQ(r.status().message(),
            absl::StrCat(Prefix(), "join token \"abc\" used"));
}

TEST_F(H2AgainstFakeServerTest, StatusInTrailersAfterHeaders) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() +
                Trailers(8, "rate limited%2C retry in 1s"));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(r.status().message(),
            absl::StrCat(Prefix(), "rate limited, retry in 1s"));
}

TEST_F(H2AgainstFakeServerTest, ValidResponseIsReturned) {
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() +
                Data(BundleMessage(42), false) + Trailers(0));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->sequence_number(), 42u);
}

TEST_F(H2AgainstFakeServerTest, IpServerNameIsCheckedAgainstIpSans) {
  CaClientOptions options;
  options.server_name = "127.0.0.1";
  absl::StatusOr<v1::TrustBundle> r =
      FetchFrom(ServerPreface() + OkResponseHeaders() +
                    Data(BundleMessage(7), false) + Trailers(0),
                options);
  ASSERT_TRUE(r.ok()) << r.status();
}

TEST_F(H2AgainstFakeServerTest, RequestFollowsTheGrpcProtocol) {
  FakeCaServer::Options server_options;
  server_options.response =
      ServerPreface() + Headers({{":status", "200"},
                                 {"content-type", "application/grpc"},
                                 {"grpc-status", "16"}},
                                true);
  absl::StatusOr<std::unique_ptr<FakeCaServer>> server =
      FakeCaServer::Start(pki_, server_options);
  ASSERT_TRUE(server.ok()) << server.status();
  CaClientOptions options;
  options.address = (*server)->address();
  options.ca_bundle_pem = pki_.root_pem;
  options.timeout = absl::Seconds(7);
  absl::StatusOr<std::unique_ptr<IdentityClient>> client =
      NewH2IdentityClient(options);
  ASSERT_TRUE(client.ok()) << client.status();
  EXPECT_EQ((*client)->IssueWithToken("k8s-token").status().code(),
            absl::StatusCode::kUnauthenticated);

  std::vector<std::map<std::string, std::string>> requests =
      (*server)->requests();
  ASSERT_EQ(requests.size(), 1u);
  std::map<std::string, std::string>& h = requests[0];
  EXPECT_EQ(h[":method"], "POST");
  EXPECT_EQ(h[":scheme"], "https");
  EXPECT_EQ(h[":path"],
            "/meshguard.ca.v1.CertificateAuthority/IssueCertificate");
  EXPECT_EQ(h[":authority"], options.address);
  EXPECT_EQ(h["content-type"], "application/grpc");
  EXPECT_EQ(h["te"], "trailers");
  EXPECT_EQ(h["authorization"], "Bearer k8s-token");
  // grpc-timeout: at most the 7 s deadline, and not much less.
  const std::string timeout = h["grpc-timeout"];
  ASSERT_FALSE(timeout.empty());
  EXPECT_EQ(timeout.back(), 'u') << timeout;
  int64_t micros = 0;
  ASSERT_TRUE(absl::SimpleAtoi(timeout.substr(0, timeout.size() - 1), &micros));
  EXPECT_LE(micros, 7000000);
  EXPECT_GT(micros, 5000000);
}

TEST_F(H2AgainstFakeServerTest, CreateRefusesOptionsThatCannotWork) {
  struct Case {
    std::string address;
    std::string bundle;
  } cases[] = {
      {"", pki_.root_pem},
      {"127.0.0.1:15012", ""},
      {"127.0.0.1:15012", "not a PEM"},
      {"127.0.0.1:notaport", pki_.root_pem},
      {"127.0.0.1:70000", pki_.root_pem},
      {"[::1:15012", pki_.root_pem},
      {":15012", pki_.root_pem},
  };
  for (const Case& c : cases) {
    CaClientOptions options;
    options.address = c.address;
    options.ca_bundle_pem = c.bundle;
    EXPECT_EQ(H2CaTransport::Create(options).status().code(),
              absl::StatusCode::kInvalidArgument)
        << c.address << " / " << c.bundle.size();
  }
}

// --- Against the real meshguard-ca -------------------------------------

class H2AgainstRealCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init("h2");
    ASSERT_TRUE(ca.ok()) << ca.status();
    ca_ = *std::move(ca);
    absl::Status served = ca_->Serve("");
    ASSERT_TRUE(served.ok()) << served;
  }

  std::unique_ptr<IdentityClient> H2Client(
      CaClientOptions options = CaClientOptions()) {
    CaClientOptions defaults = ca_->ClientOptions();
    if (options.ca_bundle_pem.empty()) {
      options.ca_bundle_pem = defaults.ca_bundle_pem;
    }
    if (options.address == CaClientOptions().address) {
      options.address = defaults.address;
    }
    absl::StatusOr<std::unique_ptr<IdentityClient>> client =
        NewH2IdentityClient(options);
    EXPECT_TRUE(client.ok()) << client.status();
    return client.ok() ? *std::move(client) : nullptr;
  }

  std::unique_ptr<CaInstance> ca_;
};

TEST_F(H2AgainstRealCaTest, WrongCaBundleIsUnavailableNamingVerification) {
  absl::StatusOr<TestPki> other = TestPki::Create();
  ASSERT_TRUE(other.ok());
  CaClientOptions options;
  options.ca_bundle_pem = other->root_pem;
  std::unique_ptr<IdentityClient> client = H2Client(options);
  ASSERT_NE(client, nullptr);
  absl::StatusOr<v1::TrustBundle> r = client->GetTrustBundle();
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              StartsWith(absl::StrCat("CA ", ca_->address(), ": ")));
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("certificate verify failed"));
  // The join token never reached the CA, so it still works afterwards.
  absl::StatusOr<std::string> token =
      ca_->JoinToken(SpiffeIdFor("shop", "wrongbundle"));
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(client->IssueWithJoinToken(*token).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_TRUE(H2Client()->IssueWithJoinToken(*token).ok());
}

TEST_F(H2AgainstRealCaTest, CaDownIsUnavailableQuickly) {
  absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok());
  CaClientOptions options;
  options.address = absl::StrCat("127.0.0.1:", *port);
  std::unique_ptr<IdentityClient> client = H2Client(options);
  ASSERT_NE(client, nullptr);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::TrustBundle> r = client->GetTrustBundle();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable) << r.status();
  EXPECT_THAT(std::string(r.status().message()),
              HasSubstr("Connection refused"));
  EXPECT_THAT(std::string(r.status().message()),
              StartsWith(absl::StrCat("CA ", options.address, ": ")));
}

TEST_F(H2AgainstRealCaTest, StoppedCaIsDeadlineExceeded) {
  CaClientOptions options;
  options.timeout = absl::Seconds(1);
  std::unique_ptr<IdentityClient> client = H2Client(options);
  ASSERT_NE(client, nullptr);
  ca_->process()->Signal(SIGSTOP);
  const absl::Time start = absl::Now();
  absl::StatusOr<v1::TrustBundle> r = client->GetTrustBundle();
  const absl::Duration took = absl::Now() - start;
  ca_->process()->Signal(SIGCONT);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDeadlineExceeded)
      << r.status();
  EXPECT_GE(took, absl::Milliseconds(950));
  EXPECT_LT(took, absl::Seconds(3));
  EXPECT_TRUE(client->GetTrustBundle().ok()) << "and fine once it runs again";
}

TEST_F(H2AgainstRealCaTest, RefusalsCarryTheSameCodesAsTheGrpcClient) {
  std::unique_ptr<IdentityClient> h2 = H2Client();
  std::unique_ptr<CaClient> grpc = ca_->Client();
  ASSERT_NE(h2, nullptr);
  ASSERT_NE(grpc, nullptr);

  // A spent join token.
  absl::StatusOr<std::string> token = ca_->JoinToken(SpiffeIdFor("shop", "a"));
  ASSERT_TRUE(token.ok());
  ASSERT_TRUE(h2->IssueWithJoinToken(*token).ok());
  absl::Status h2_used = h2->IssueWithJoinToken(*token).status();
  absl::Status grpc_used = grpc->IssueWithJoinToken(*token).status();
  EXPECT_EQ(h2_used.code(), absl::StatusCode::kUnauthenticated) << h2_used;
  EXPECT_EQ(h2_used, grpc_used) << "same code and message";

  // A join token that never existed.
  EXPECT_EQ(h2->IssueWithJoinToken("no-such-token").status(),
            grpc->IssueWithJoinToken("no-such-token").status());

  // A bearer token the CA cannot check (no Kubernetes keys configured).
  absl::Status h2_bearer = h2->IssueWithToken("not-a-jwt").status();
  EXPECT_FALSE(h2_bearer.ok());
  EXPECT_EQ(h2_bearer, grpc->IssueWithToken("not-a-jwt").status());

  // A CSR naming another identity than the join token's.
  absl::StatusOr<std::string> token_b =
      ca_->JoinToken(SpiffeIdFor("shop", "b"));
  ASSERT_TRUE(token_b.ok());
  crypto::EvpPkeyPtr key = integration::NewKey();
  v1::IssueCertificateRequest request;
  request.set_csr_pem(
      integration::CsrWithUri(key.get(), SpiffeIdFor("shop", "someone-else")));
  request.set_join_token(*token_b);
  absl::Status h2_csr = h2->Issue(request, CallCredentials()).status();
  EXPECT_EQ(h2_csr.code(), absl::StatusCode::kPermissionDenied) << h2_csr;
}

TEST_F(H2AgainstRealCaTest, IssuesWithAJoinTokenAndRenewsOverMtls) {
  std::unique_ptr<IdentityClient> client = H2Client();
  ASSERT_NE(client, nullptr);
  const std::string id = SpiffeIdFor("shop", "orders");
  absl::StatusOr<std::string> token = ca_->JoinToken(id);
  ASSERT_TRUE(token.ok());
  absl::StatusOr<IssuedCertificate> first =
      client->IssueWithJoinToken(*token, absl::Minutes(10));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->spiffe_id, id);
  EXPECT_FALSE(first->bundle.root_certificates_pem().empty());
  EXPECT_GT(first->not_after, absl::Now());

  absl::StatusOr<IssuedCertificate> renewed =
      client->Renew(first->ChainPem(), first->key_pem, absl::Minutes(10));
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(renewed->spiffe_id, id);
  EXPECT_NE(renewed->serial, first->serial);
  EXPECT_NE(renewed->key_pem, first->key_pem);

  // The CA saw a renewal, authenticated by the client certificate.
  absl::StatusOr<std::vector<v1::CertificateRecord>> records = ca_->Records();
  ASSERT_TRUE(records.ok()) << records.status();
  bool found = false;
  for (const v1::CertificateRecord& r : *records) {
    if (r.serial() == renewed->serial) {
      found = true;
      EXPECT_EQ(r.auth_method(), "renewal");
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(H2AgainstRealCaTest, RenewalWithARevokedCertificateIsRefusedLikeGrpc) {
  std::unique_ptr<IdentityClient> h2 = H2Client();
  absl::StatusOr<IssuedCertificate> mine =
      ca_->IssueFor(SpiffeIdFor("shop", "revoked"));
  ASSERT_TRUE(mine.ok()) << mine.status();
  v1::RevokeCertificateRequest revoke;
  revoke.set_serial(mine->serial);
  ASSERT_TRUE(ca_->Admin()->Revoke(revoke).ok());
  absl::Status h2_status = h2->Renew(mine->ChainPem(), mine->key_pem).status();
  EXPECT_FALSE(h2_status.ok());
  EXPECT_EQ(
      h2_status.code(),
      ca_->Client()->Renew(mine->ChainPem(), mine->key_pem).status().code())
      << h2_status;
}

TEST_F(H2AgainstRealCaTest, GetTrustBundleMatchesTheGrpcClient) {
  absl::StatusOr<v1::TrustBundle> h2 = H2Client()->GetTrustBundle();
  ASSERT_TRUE(h2.ok()) << h2.status();
  absl::StatusOr<v1::TrustBundle> grpc = ca_->Client()->GetTrustBundle();
  ASSERT_TRUE(grpc.ok()) << grpc.status();
  EXPECT_EQ(h2->SerializeAsString(), grpc->SerializeAsString());
  EXPECT_EQ(h2->trust_domain(), "cluster.local");
  EXPECT_FALSE(h2->root_certificates_pem().empty());
}

TEST_F(H2AgainstRealCaTest, WatchDeliversTheBundleOfARevocation) {
  absl::StatusOr<IssuedCertificate> victim =
      ca_->IssueFor(SpiffeIdFor("shop", "victim"));
  ASSERT_TRUE(victim.ok()) << victim.status();

  absl::Mutex mu;
  std::vector<v1::TrustBundle> seen;  // guarded by mu
  std::unique_ptr<IdentityClient> client = H2Client();
  std::unique_ptr<BundleWatch> watch =
      client->WatchTrustBundle([&](const v1::TrustBundle& bundle) {
        absl::MutexLock lock(&mu);
        seen.push_back(bundle);
      });
  ASSERT_NE(watch, nullptr);
  auto latest = [&]() -> v1::TrustBundle {
    absl::MutexLock lock(&mu);
    return seen.empty() ? v1::TrustBundle() : seen.back();
  };
  ASSERT_TRUE(
      WaitFor([&] { return latest().sequence_number() > 0; }, absl::Seconds(5)))
      << "the current bundle comes at once";
  const uint64_t before = latest().sequence_number();

  v1::RevokeCertificateRequest revoke;
  revoke.set_serial(victim->serial);
  absl::StatusOr<v1::RevokeCertificateResponse> revoked =
      ca_->Admin()->Revoke(revoke);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  ASSERT_TRUE(WaitFor(
      [&] {
        return latest().sequence_number() >= revoked->bundle_sequence_number();
      },
      absl::Seconds(5)));
  v1::TrustBundle after = latest();
  EXPECT_GT(after.sequence_number(), before);
  absl::StatusOr<crypto::X509CrlPtr> crl = crypto::ParseCrlPem(after.crl_pem());
  ASSERT_TRUE(crl.ok()) << crl.status();
  absl::StatusOr<crypto::X509Ptr> leaf =
      crypto::ParseCertificatePem(victim->chain_pem[0]);
  ASSERT_TRUE(leaf.ok());
  X509_REVOKED* entry = nullptr;
  EXPECT_EQ(X509_CRL_get0_by_cert(crl->get(), &entry, leaf->get()), 1)
      << "the pushed CRL lists the revoked certificate";

  // Stop() interrupts the open stream at once.
  const absl::Time start = absl::Now();
  watch->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

TEST_F(H2AgainstRealCaTest, WatchOnADownCaStopsPromptly) {
  // A watch on a CA that is down keeps retrying with backoff; Stop() must
  // not wait for the backoff or a connection attempt to end.
  absl::StatusOr<int> port = PickFreePort();
  ASSERT_TRUE(port.ok());
  CaClientOptions options;
  options.address = absl::StrCat("127.0.0.1:", *port);
  std::unique_ptr<IdentityClient> client = H2Client(options);
  std::unique_ptr<BundleWatch> watch =
      client->WatchTrustBundle([](const v1::TrustBundle&) {});
  ASSERT_NE(watch, nullptr);
  absl::SleepFor(absl::Milliseconds(500));
  const absl::Time start = absl::Now();
  watch->Stop();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

}  // namespace
}  // namespace meshguard::client
