#include "identity/client/ca_client.h"

#include <atomic>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/util/time_util.h"

namespace meshguard::client {
namespace {

namespace v1 = ::meshguard::ca::v1;
using ::google::protobuf::util::TimeUtil;

std::chrono::system_clock::time_point Deadline(absl::Duration timeout) {
  return absl::ToChronoTime(absl::Now() + timeout);
}

google::protobuf::Duration ToProto(absl::Duration d) {
  return TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(d));
}

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

// The CA API over gRPC C++ channels: one shared channel for calls without a
// client certificate, a channel per renewal for those with one.
class GrpcCaTransport final : public CaTransport {
 public:
  explicit GrpcCaTransport(CaClientOptions options)
      : options_(std::move(options)), channel_(MakeChannel("", "")) {}

  absl::StatusOr<v1::IssueCertificateResponse> IssueCertificate(
      const v1::IssueCertificateRequest& request,
      const CallCredentials& credentials) override {
    std::shared_ptr<grpc::Channel> channel =
        credentials.client_cert_chain_pem.empty()
            ? channel_
            : MakeChannel(credentials.client_cert_chain_pem,
                          credentials.client_key_pem);
    auto stub = v1::CertificateAuthority::NewStub(channel);
    grpc::ClientContext context;
    context.set_deadline(Deadline(options_.timeout));
    if (!credentials.bearer_token.empty()) {
      context.AddMetadata("authorization",
                          absl::StrCat("Bearer ", credentials.bearer_token));
    }
    v1::IssueCertificateResponse response;
    grpc::Status status = stub->IssueCertificate(&context, request, &response);
    if (!status.ok()) return WithAddress(status);
    return response;
  }

  absl::StatusOr<v1::TrustBundle> GetTrustBundle() override {
    auto stub = v1::CertificateAuthority::NewStub(channel_);
    grpc::ClientContext context;
    context.set_deadline(Deadline(options_.timeout));
    v1::TrustBundle bundle;
    grpc::Status status =
        stub->GetTrustBundle(&context, v1::GetTrustBundleRequest(), &bundle);
    if (!status.ok()) return WithAddress(status);
    return bundle;
  }

  std::unique_ptr<BundleWatch> WatchTrustBundle(
      std::function<void(const v1::TrustBundle&)> on_bundle) override {
    return std::make_unique<BundleWatchImpl>(channel_, std::move(on_bundle));
  }

 private:
  std::shared_ptr<grpc::Channel> MakeChannel(
      const std::string& client_cert_chain_pem,
      const std::string& client_key_pem) const {
    grpc::SslCredentialsOptions tls;
    tls.pem_root_certs = options_.ca_bundle_pem;
    tls.pem_cert_chain = client_cert_chain_pem;
    tls.pem_private_key = client_key_pem;
    grpc::ChannelArguments args;
    if (!options_.server_name.empty()) {
      args.SetSslTargetNameOverride(options_.server_name);
    }
    args.SetMaxReceiveMessageSize(
        static_cast<int>(options_.max_response_bytes));
    // Renewal channels are per call; keep them out of the shared subchannel
    // pool so each really presents its own certificate.
    if (!client_cert_chain_pem.empty())
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    return grpc::CreateCustomChannel(options_.address,
                                     grpc::SslCredentials(tls), args);
  }

  absl::Status WithAddress(const grpc::Status& status) const {
    return absl::Status(
        static_cast<absl::StatusCode>(status.error_code()),
        absl::StrCat("CA ", options_.address, ": ", status.error_message()));
  }

  const CaClientOptions options_;
  // Channel for calls without a client certificate (token bootstrap,
  // bundle), shared.
  const std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace

absl::Status FromGrpc(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

absl::StatusOr<std::unique_ptr<CaTransport>> NewGrpcCaTransport(
    CaClientOptions options) {
  if (absl::Status s = ValidateCaClientOptions(options); !s.ok()) return s;
  return std::unique_ptr<CaTransport>(
      std::make_unique<GrpcCaTransport>(std::move(options)));
}

absl::StatusOr<std::unique_ptr<CaClient>> CaClient::Create(
    CaClientOptions options) {
  absl::StatusOr<std::unique_ptr<CaTransport>> transport =
      NewGrpcCaTransport(std::move(options));
  if (!transport.ok()) return transport.status();
  return std::unique_ptr<CaClient>(new CaClient(std::move(*transport)));
}

absl::StatusOr<v1::IssueCertificateResponse> CaClient::Issue(
    const v1::IssueCertificateRequest& request, const std::string& bearer_token,
    const std::string& client_cert_chain_pem,
    const std::string& client_key_pem) {
  CallCredentials credentials;
  credentials.bearer_token = bearer_token;
  credentials.client_cert_chain_pem = client_cert_chain_pem;
  credentials.client_key_pem = client_key_pem;
  return IdentityClient::Issue(request, credentials);
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
  if (!options.server_name.empty()) {
    args.SetSslTargetNameOverride(options.server_name);
  }
  auto channel = grpc::CreateCustomChannel(options.address,
                                           grpc::SslCredentials(tls), args);
  return std::unique_ptr<CaAdminClient>(
      new CaAdminClient(channel, options.timeout));
}

absl::StatusOr<v1::CreateJoinTokenResponse> CaAdminClient::CreateJoinToken(
    const std::string& spiffe_id, absl::Duration ttl) {
  if (ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttl ", absl::FormatDuration(ttl),
                     " is negative (zero asks for the default, 10m)"));
  }
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
