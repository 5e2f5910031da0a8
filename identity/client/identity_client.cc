#include "identity/client/identity_client.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"

namespace meshguard::client {
namespace {

namespace v1 = ::meshguard::ca::v1;
using ::google::protobuf::util::TimeUtil;

absl::Time FromProto(const google::protobuf::Timestamp& t) {
  return absl::FromUnixNanos(TimeUtil::TimestampToNanoseconds(t));
}

google::protobuf::Duration ToProto(absl::Duration d) {
  return TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(d));
}

}  // namespace

absl::StatusOr<std::unique_ptr<IdentityClient>> IdentityClient::Create(
    std::unique_ptr<CaTransport> transport) {
  if (transport == nullptr) {
    return absl::InvalidArgumentError("no CA transport");
  }
  return std::unique_ptr<IdentityClient>(
      new IdentityClient(std::move(transport)));
}

absl::StatusOr<v1::IssueCertificateResponse> IdentityClient::Issue(
    const v1::IssueCertificateRequest& request,
    const CallCredentials& credentials) {
  return transport_->IssueCertificate(request, credentials);
}

absl::StatusOr<IssuedCertificate> IdentityClient::IssueNew(
    const std::string& join_token, CallCredentials credentials,
    const std::string& spiffe_id, absl::Duration ttl) {
  if (ttl < absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("ttl ", absl::FormatDuration(ttl),
                     " is negative (zero asks for the CA's default)"));
  }
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
      Issue(request, credentials);
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

absl::StatusOr<IssuedCertificate> IdentityClient::IssueWithToken(
    const std::string& token, absl::Duration ttl) {
  if (token.empty()) return absl::InvalidArgumentError("token is empty");
  CallCredentials credentials;
  credentials.bearer_token = token;
  return IssueNew("", std::move(credentials), "", ttl);
}

absl::StatusOr<IssuedCertificate> IdentityClient::IssueWithJoinToken(
    const std::string& join_token, absl::Duration ttl) {
  if (join_token.empty()) {
    return absl::InvalidArgumentError("join token is empty");
  }
  return IssueNew(join_token, CallCredentials(), "", ttl);
}

absl::StatusOr<IssuedCertificate> IdentityClient::Renew(
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
  CallCredentials credentials;
  credentials.client_cert_chain_pem = cert_chain_pem;
  credentials.client_key_pem = key_pem;
  return IssueNew("", std::move(credentials), uris[0], ttl);
}

absl::StatusOr<v1::TrustBundle> IdentityClient::GetTrustBundle() {
  return transport_->GetTrustBundle();
}

std::unique_ptr<BundleWatch> IdentityClient::WatchTrustBundle(
    std::function<void(const v1::TrustBundle&)> on_bundle) {
  return transport_->WatchTrustBundle(std::move(on_bundle));
}

}  // namespace meshguard::client
