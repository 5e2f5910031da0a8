#include "identity/client/ca_client.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/util/time_util.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"

namespace meshguard::client {
namespace {

namespace v1 = ::meshguard::ca::v1;
using ::google::protobuf::util::TimeUtil;

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

google::protobuf::Duration ToProto(absl::Duration d) {
  return TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(d));
}

}  // namespace

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

std::string IssuedCertificate::ChainPem() const {
  std::string out;
  for (const std::string& pem : chain_pem) absl::StrAppend(&out, pem);
  return out;
}

std::string IssuedCertificate::BundlePem() const {
  std::string out;
  for (const std::string& pem : bundle.root_certificates_pem()) {
    absl::StrAppend(&out, pem);
  }
  return out;
}

absl::StatusOr<std::unique_ptr<CaClient>> CaClient::Create(
    CaClientOptions options) {
  if (options.address.empty()) {
    return absl::InvalidArgumentError("CA address is empty");
  }
  if (options.ca_bundle_pem.empty()) {
    return absl::InvalidArgumentError(
        "CA bundle is empty: the roots that authenticate the CA are required");
  }
  absl::StatusOr<std::vector<crypto::X509Ptr>> roots =
      crypto::ParseCertificateChainPem(options.ca_bundle_pem);
  if (!roots.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("CA bundle: ", roots.status().message()));
  }
  return std::unique_ptr<CaClient>(new CaClient(std::move(options)));
}

CaClient::CaClient(CaClientOptions options) : options_(std::move(options)) {
  channel_ = MakeChannel("", "");
}

std::shared_ptr<grpc::Channel> CaClient::MakeChannel(
    const std::string& client_cert_chain_pem,
    const std::string& client_key_pem) const {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = options_.ca_bundle_pem;
  tls.pem_cert_chain = client_cert_chain_pem;
  tls.pem_private_key = client_key_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(options_.server_name);
  // Renewal channels are per call; keep them out of the shared subchannel
  // pool so each really presents its own certificate.
  if (!client_cert_chain_pem.empty())
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(options_.address, grpc::SslCredentials(tls),
                                   args);
}

absl::StatusOr<v1::IssueCertificateResponse> CaClient::Issue(
    const v1::IssueCertificateRequest& request, const std::string& bearer_token,
    const std::string& client_cert_chain_pem,
    const std::string& client_key_pem) {
  std::shared_ptr<grpc::Channel> channel =
      client_cert_chain_pem.empty()
          ? channel_
          : MakeChannel(client_cert_chain_pem, client_key_pem);
  auto stub = v1::CertificateAuthority::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(Deadline(options_.timeout));
  if (!bearer_token.empty()) {
    context.AddMetadata("authorization", absl::StrCat("Bearer ", bearer_token));
  }
  v1::IssueCertificateResponse response;
  grpc::Status status = stub->IssueCertificate(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(
        static_cast<absl::StatusCode>(status.error_code()),
        absl::StrCat("CA ", options_.address, ": ", status.error_message()));
  }
  return response;
}

absl::StatusOr<IssuedCertificate> CaClient::IssueNew(
    const std::string& bearer_token, const std::string& join_token,
    const std::string& renew_chain, const std::string& renew_key,
    const std::string& spiffe_id, absl::Duration ttl) {
  IssuedCertificate out;
  absl::StatusOr<crypto::EvpPkeyPtr> key = crypto::GenerateEcP256Key();
  if (!key.ok()) return key.status();
  absl::StatusOr<std::string> key_pem = crypto::PrivateKeyToPem(key->get());
  if (!key_pem.ok()) return key_pem.status();

  // Bootstrap CSRs name no identity (the CA derives it from the token);
  // renewal CSRs name the current one.
  absl::StatusOr<std::string> csr;
  if (spiffe_id.empty()) {
    csr = crypto::CreateCsrPemWithoutIdentity(key->get());
  } else {
    absl::StatusOr<crypto::SpiffeId> parsed =
        crypto::SpiffeId::Parse(spiffe_id);
    if (!parsed.ok()) return parsed.status();
    csr = crypto::CreateCsrPem(key->get(), *parsed);
  }
  if (!csr.ok()) return csr.status();

  v1::IssueCertificateRequest request;
  request.set_csr_pem(*csr);
  request.set_join_token(join_token);
  if (ttl > absl::ZeroDuration()) *request.mutable_ttl() = ToProto(ttl);
  absl::StatusOr<v1::IssueCertificateResponse> response =
      Issue(request, bearer_token, renew_chain, renew_key);
  if (!response.ok()) return response.status();
  if (response->cert_chain_pem().empty()) {
    return absl::InternalError("CA returned an empty certificate chain");
  }

  // Trust, but check: the leaf must carry our key and the ID we expect.
  absl::StatusOr<crypto::X509Ptr> leaf =
      crypto::ParseCertificatePem(response->cert_chain_pem(0));
  if (!leaf.ok()) return leaf.status();
  crypto::EvpPkeyPtr leaf_key(X509_get_pubkey(leaf->get()));
  if (leaf_key == nullptr ||
      !crypto::PublicKeysEqual(leaf_key.get(), key->get())) {
    return absl::InternalError("CA returned a certificate for another key");
  }
  if (!spiffe_id.empty() && response->spiffe_id() != spiffe_id) {
    return absl::InternalError(absl::StrCat("CA returned a certificate for ",
                                            response->spiffe_id(),
                                            ", expected ", spiffe_id));
  }

  out.key = std::move(*key);
  out.key_pem = std::move(*key_pem);
  out.chain_pem.assign(response->cert_chain_pem().begin(),
                       response->cert_chain_pem().end());
  out.bundle = response->trust_bundle();
  out.spiffe_id = response->spiffe_id();
  out.serial = response->serial();
  out.not_before = FromProto(response->not_before());
  out.not_after = FromProto(response->not_after());
  return out;
}

absl::StatusOr<IssuedCertificate> CaClient::IssueWithToken(
    const std::string& token, absl::Duration ttl) {
  if (token.empty()) return absl::InvalidArgumentError("token is empty");
  return IssueNew(token, "", "", "", "", ttl);
}

absl::StatusOr<IssuedCertificate> CaClient::IssueWithJoinToken(
    const std::string& join_token, absl::Duration ttl) {
  if (join_token.empty()) {
    return absl::InvalidArgumentError("join token is empty");
  }
  return IssueNew("", join_token, "", "", "", ttl);
}

absl::StatusOr<IssuedCertificate> CaClient::Renew(
    const std::string& cert_chain_pem, const std::string& key_pem,
    absl::Duration ttl) {
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(cert_chain_pem);
  if (!chain.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("current certificate: ", chain.status().message()));
  }
  std::vector<std::string> uris = crypto::UriSans(chain->front().get());
  if (uris.size() != 1) {
    return absl::InvalidArgumentError(
        "current certificate does not carry exactly one SPIFFE ID");
  }
  absl::StatusOr<crypto::EvpPkeyPtr> key = crypto::PrivateKeyFromPem(key_pem);
  if (!key.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("current key: ", key.status().message()));
  }
  crypto::EvpPkeyPtr cert_key(X509_get_pubkey(chain->front().get()));
  if (cert_key == nullptr ||
      !crypto::PublicKeysEqual(cert_key.get(), key->get())) {
    return absl::InvalidArgumentError(
        "current key does not match the current certificate");
  }
  return IssueNew("", "", cert_chain_pem, key_pem, uris[0], ttl);
}

absl::StatusOr<v1::TrustBundle> CaClient::GetTrustBundle() {
  auto stub = v1::CertificateAuthority::NewStub(channel_);
  grpc::ClientContext context;
  context.set_deadline(Deadline(options_.timeout));
  v1::TrustBundle bundle;
  grpc::Status status =
      stub->GetTrustBundle(&context, v1::GetTrustBundleRequest(), &bundle);
  if (!status.ok()) {
    return absl::Status(
        static_cast<absl::StatusCode>(status.error_code()),
        absl::StrCat("CA ", options_.address, ": ", status.error_message()));
  }
  return bundle;
}

namespace {

class BundleWatchImpl final : public BundleWatch {
 public:
  BundleWatchImpl(std::shared_ptr<grpc::Channel> channel,
                  std::function<void(const v1::TrustBundle&)> on_bundle)
      : stub_(v1::CertificateAuthority::NewStub(channel)),
        on_bundle_(std::move(on_bundle)) {
    thread_ = std::thread([this] { Run(); });
  }
  ~BundleWatchImpl() override { Stop(); }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
      if (context_ != nullptr) context_->TryCancel();
    }
    stop_.Notify();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    absl::Duration backoff = absl::Milliseconds(200);
    while (!stop_.HasBeenNotified()) {
      grpc::ClientContext context;
      {
        absl::MutexLock lock(&mu_);
        if (stopped_) return;
        context_ = &context;
      }
      auto reader =
          stub_->WatchTrustBundle(&context, v1::WatchTrustBundleRequest());
      v1::TrustBundle bundle;
      while (reader->Read(&bundle)) {
        backoff = absl::Milliseconds(200);
        on_bundle_(bundle);
      }
      reader->Finish();
      {
        absl::MutexLock lock(&mu_);
        context_ = nullptr;
      }
      if (stop_.WaitForNotificationWithTimeout(backoff)) return;
      backoff = std::min(backoff * 2, absl::Seconds(30));
    }
  }

  std::unique_ptr<v1::CertificateAuthority::Stub> stub_;
  std::function<void(const v1::TrustBundle&)> on_bundle_;
  absl::Notification stop_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  std::thread thread_;
};

}  // namespace

std::unique_ptr<BundleWatch> CaClient::WatchTrustBundle(
    std::function<void(const v1::TrustBundle&)> on_bundle) {
  return std::make_unique<BundleWatchImpl>(channel_, std::move(on_bundle));
}

absl::StatusOr<std::unique_ptr<CaAdminClient>> CaAdminClient::ForSocket(
    const std::string& socket_path) {
  if (socket_path.empty()) {
    return absl::InvalidArgumentError("admin socket path is empty");
  }
  auto channel = grpc::CreateChannel(absl::StrCat("unix:", socket_path),
                                     grpc::InsecureChannelCredentials());
  return std::unique_ptr<CaAdminClient>(
      new CaAdminClient(channel, absl::Seconds(10)));
}

absl::StatusOr<std::unique_ptr<CaAdminClient>> CaAdminClient::ForMtls(
    const CaClientOptions& options, const std::string& cert_chain_pem,
    const std::string& key_pem) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = options.ca_bundle_pem;
  tls.pem_cert_chain = cert_chain_pem;
  tls.pem_private_key = key_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(options.server_name);
  auto channel = grpc::CreateCustomChannel(options.address,
                                           grpc::SslCredentials(tls), args);
  return std::unique_ptr<CaAdminClient>(
      new CaAdminClient(channel, options.timeout));
}

absl::StatusOr<v1::CreateJoinTokenResponse> CaAdminClient::CreateJoinToken(
    const std::string& spiffe_id, absl::Duration ttl) {
  v1::CreateJoinTokenRequest request;
  request.set_spiffe_id(spiffe_id);
  if (ttl > absl::ZeroDuration()) *request.mutable_ttl() = ToProto(ttl);
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout_));
  v1::CreateJoinTokenResponse response;
  if (grpc::Status s = stub_->CreateJoinToken(&context, request, &response);
      !s.ok()) {
    return FromGrpc(s);
  }
  return response;
}

absl::StatusOr<v1::RevokeCertificateResponse> CaAdminClient::Revoke(
    const v1::RevokeCertificateRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout_));
  v1::RevokeCertificateResponse response;
  if (grpc::Status s = stub_->RevokeCertificate(&context, request, &response);
      !s.ok()) {
    return FromGrpc(s);
  }
  return response;
}

absl::StatusOr<v1::ListCertificatesResponse> CaAdminClient::List(
    const v1::ListCertificatesRequest& request) {
  grpc::ClientContext context;
  context.set_deadline(Deadline(timeout_));
  v1::ListCertificatesResponse response;
  if (grpc::Status s = stub_->ListCertificates(&context, request, &response);
      !s.ok()) {
    return FromGrpc(s);
  }
  return response;
}

}  // namespace meshguard::client
