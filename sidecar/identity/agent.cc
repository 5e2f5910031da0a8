#include "sidecar/identity/agent.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "identity/client/h2_transport.h"
#include "identity/client/identity_client.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/tls_context.h"
#include "identity/crypto/verifier.h"
#include "identity/util/file_util.h"
#include "identity/util/json_log.h"

namespace meshguard::sidecar {
namespace {

namespace v1 = ::meshguard::ca::v1;

class CaIdentitySource final : public IdentitySource {
 public:
  CaIdentitySource(CaIdentitySourceOptions options,
                   std::unique_ptr<client::IdentityClient> client)
      : options_(std::move(options)), client_(std::move(client)) {}

  bool TrustRoots(const std::vector<std::string>& root_pems) override {
    // The configured roots stay; the bundle's are added (de-duplicated).
    std::string pem = options_.ca.ca_bundle_pem;
    for (const std::string& root : root_pems) {
      if (pem.find(root) == std::string::npos) absl::StrAppend(&pem, root);
    }
    absl::MutexLock lock(&mu_);
    if (pem == trusted_pem_) return false;
    client::CaClientOptions ca = options_.ca;
    ca.ca_bundle_pem = pem;
    absl::StatusOr<std::unique_ptr<client::IdentityClient>> next =
        client::NewH2IdentityClient(ca);
    if (!next.ok()) return false;  // keep what works
    const bool first = trusted_pem_.empty();
    trusted_pem_ = pem;
    if (first && pem == options_.ca.ca_bundle_pem) return false;
    client_ = std::shared_ptr<client::IdentityClient>(std::move(*next));
    return true;
  }

  absl::StatusOr<client::IssuedCertificate> Bootstrap() override {
    if (!options_.token_file.empty()) {
      // Projected tokens are rotated by the kubelet: read it fresh.
      absl::StatusOr<std::string> token =
          util::ReadFile(options_.token_file, 65536);
      if (!token.ok()) return token.status();
      return client()->IssueWithToken(
          std::string(absl::StripAsciiWhitespace(*token)), options_.ttl);
    }
    if (join_token_used_) {
      return absl::FailedPreconditionError(
          "the join token was already used and no token file is configured; "
          "an expired identity cannot be recovered without a new credential");
    }
    absl::StatusOr<client::IssuedCertificate> issued =
        client()->IssueWithJoinToken(options_.join_token, options_.ttl);
    // A refused token is spent or bad; an unreachable CA never saw it.
    if (issued.ok() || absl::IsUnauthenticated(issued.status())) {
      join_token_used_ = true;
    }
    return issued;
  }

  absl::StatusOr<client::IssuedCertificate> Renew(
      const client::IssuedCertificate& current) override {
    return client()->Renew(current.ChainPem(), current.key_pem, options_.ttl);
  }

  std::unique_ptr<client::BundleWatch> Watch(
      std::function<void(const v1::TrustBundle&)> on_bundle) override {
    return client()->WatchTrustBundle(std::move(on_bundle));
  }

 private:
  std::shared_ptr<client::IdentityClient> client() {
    absl::MutexLock lock(&mu_);
    return client_;
  }

  const CaIdentitySourceOptions options_;
  absl::Mutex mu_;
  std::shared_ptr<client::IdentityClient> client_ ABSL_GUARDED_BY(mu_);
  std::string trusted_pem_ ABSL_GUARDED_BY(mu_);
  bool join_token_used_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IdentitySource>> NewCaIdentitySource(
    CaIdentitySourceOptions options) {
  if (options.token_file.empty() == options.join_token.empty()) {
    return absl::InvalidArgumentError(
        "exactly one bootstrap credential is needed: a token file or a join "
        "token");
  }
  absl::StatusOr<std::unique_ptr<client::IdentityClient>> c =
      client::NewH2IdentityClient(options.ca);
  if (!c.ok()) return c.status();
  return std::unique_ptr<IdentitySource>(
      new CaIdentitySource(std::move(options), std::move(*c)));
}

IdentityAgent::IdentityAgent(std::unique_ptr<IdentitySource> source,
                             std::string trust_domain, RotationPolicy policy,
                             MutableCredentialStore* store,
                             const util::Clock* clock,
                             std::function<double()> random01)
    : source_(std::move(source)),
      trust_domain_(std::move(trust_domain)),
      policy_(policy),
      store_(store),
      clock_(clock),
      random01_(std::move(random01)) {}

IdentityAgent::~IdentityAgent() { Stop(); }

absl::Status IdentityAgent::Publish(const v1::TrustBundle& bundle) {
  const client::IssuedCertificate& cert = *current_;
  std::vector<std::string> roots(bundle.root_certificates_pem().begin(),
                                 bundle.root_certificates_pem().end());
  std::vector<std::string> crls;
  if (!bundle.crl_pem().empty()) crls.push_back(bundle.crl_pem());
  absl::StatusOr<std::shared_ptr<const crypto::TrustBundle>> trust =
      crypto::TrustBundle::Create(trust_domain_, roots, crls);
  if (!trust.ok()) {
    return absl::Status(trust.status().code(),
                        absl::StrCat("trust bundle ", bundle.sequence_number(),
                                     ": ", trust.status().message()));
  }
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(cert.ChainPem());
  if (!chain.ok()) return chain.status();
  std::vector<X509*> raw;
  for (const crypto::X509Ptr& c : *chain) raw.push_back(c.get());

  // Our own certificate must pass the checks peers will apply, or we would
  // publish credentials every peer refuses.
  crypto::VerifyOptions options;
  options.at = clock_->Now();
  options.trust_domain = trust_domain_;
  std::vector<X509*> intermediates(raw.begin() + 1, raw.end());
  absl::StatusOr<crypto::SpiffeId> own =
      crypto::VerifyX509Svid(raw[0], intermediates, **trust, options);
  if (!own.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("new certificate does not verify against the bundle: ",
                     own.status().message()));
  }
  absl::StatusOr<crypto::SslCtxPtr> server = crypto::NewMeshTlsContext(
      crypto::TlsRole::kServer, cert.key.get(), raw, *trust);
  if (!server.ok()) return server.status();
  absl::StatusOr<crypto::SslCtxPtr> client = crypto::NewMeshTlsContext(
      crypto::TlsRole::kClient, cert.key.get(), raw, *trust);
  if (!client.ok()) return client.status();

  auto creds = std::make_shared<TlsCredentials>();
  creds->server_ctx = std::move(*server);
  creds->client_ctx = std::move(*client);
  creds->spiffe_id = cert.spiffe_id;
  creds->serial = cert.serial;
  creds->not_before = cert.not_before;
  creds->not_after = cert.not_after;
  creds->chain_pem = cert.chain_pem;
  creds->bundle = *trust;
  creds->bundle_sequence = bundle.sequence_number();
  store_->Publish(std::move(creds));
  published_ = true;
  return absl::OkStatus();
}

absl::Status IdentityAgent::Install(client::IssuedCertificate issued) {
  auto next = std::make_unique<client::IssuedCertificate>(std::move(issued));
  std::swap(current_, next);
  // A newer bundle from the watch wins over the one in the response.
  v1::TrustBundle bundle =
      current_->bundle.sequence_number() >= bundle_.sequence_number()
          ? current_->bundle
          : bundle_;
  if (absl::Status s = Publish(bundle); !s.ok()) {
    std::swap(current_, next);  // keep the certificate we had
    return s;
  }
  bundle_ = bundle;
  std::vector<std::string> roots(bundle.root_certificates_pem().begin(),
                                 bundle.root_certificates_pem().end());
  if (source_->TrustRoots(roots)) reopen_watch_ = true;
  const absl::Time now = clock_->Now();
  // The CA backdates notBefore for clock skew; the usable lifetime starts
  // when we received the certificate, or "half-life" could already be past
  // for short TTLs and every step would renew.
  renew_at_ = RenewalTime(std::max(current_->not_before, now),
                          current_->not_after, policy_, random01_());
  // Never before now (a CA clamping to a short TTL must not cause a spin).
  renew_at_ = std::max(renew_at_, now + absl::Milliseconds(100));
  failed_attempts_ = 0;
  retry_at_ = absl::InfinitePast();
  stats_.spiffe_id = current_->spiffe_id;
  stats_.serial = current_->serial;
  stats_.not_before = current_->not_before;
  stats_.not_after = current_->not_after;
  stats_.next_renewal = renew_at_;
  util::LogLine("info", "identity_installed")
      .Add("spiffe_id", current_->spiffe_id)
      .Add("serial", current_->serial)
      .AddTime("not_after", current_->not_after)
      .AddTime("renew_at", renew_at_)
      .Emit();
  return absl::OkStatus();
}

absl::Status IdentityAgent::Bootstrap(absl::Time deadline) {
  int attempt = 0;
  bool last_try = false;
  while (true) {
    absl::StatusOr<client::IssuedCertificate> issued = source_->Bootstrap();
    absl::Status status = issued.status();
    if (issued.ok()) {
      absl::MutexLock lock(&mu_);
      status = Install(std::move(*issued));
      if (status.ok()) return status;
    }
    {
      absl::MutexLock lock(&mu_);
      stats_.last_error = status.ToString();
    }
    util::LogLine("warn", "bootstrap_failed")
        .Add("message", status.ToString())
        .Emit();
    // A refused credential will not work on retry.
    if (absl::IsUnauthenticated(status) || absl::IsPermissionDenied(status) ||
        absl::IsInvalidArgument(status) || absl::IsFailedPrecondition(status)) {
      return status;
    }
    // Retries until the deadline, the last one at the deadline itself
    // (not one backoff early).
    const absl::Duration left = deadline - clock_->Now();
    if (last_try || left <= absl::ZeroDuration()) return status;
    absl::Duration wait =
        RetryBackoff(++attempt, policy_, random01_(), absl::ZeroDuration());
    if (wait >= left) {
      wait = left;
      last_try = true;
    }
    if (stop_.WaitForNotificationWithTimeout(wait)) return status;
  }
}

void IdentityAgent::OnBundle(const v1::TrustBundle& bundle) {
  absl::MutexLock lock(&mu_);
  // A bundle from the CA (the watch sends the current one whenever it
  // reconnects) means the CA answers again: a renewal waiting out its
  // backoff (up to max_backoff, a minute by default) is tried at once.
  if (failed_attempts_ > 0) retry_at_ = absl::InfinitePast();
  if (bundle.sequence_number() <= bundle_.sequence_number() &&
      !bundle_.root_certificates_pem().empty()) {
    return;
  }
  if (current_ == nullptr) {
    bundle_ = bundle;
    return;
  }
  if (absl::Status s = Publish(bundle); !s.ok()) {
    // Keep the old bundle: a bad update must not take the identity away.
    stats_.last_error = s.ToString();
    util::LogLine("error", "bundle_refused")
        .Add("sequence", static_cast<int64_t>(bundle.sequence_number()))
        .Add("message", s.ToString())
        .Emit();
    return;
  }
  bundle_ = bundle;
  ++stats_.bundle_updates;
  std::vector<std::string> roots(bundle.root_certificates_pem().begin(),
                                 bundle.root_certificates_pem().end());
  if (source_->TrustRoots(roots)) reopen_watch_ = true;
}

absl::Time IdentityAgent::Step(absl::Time now) {
  absl::MutexLock lock(&mu_);
  const bool expired = current_ == nullptr || now >= current_->not_after;
  if (expired && published_) {
    store_->Publish(nullptr);  // fail closed: no handshakes on a dead identity
    published_ = false;
    util::LogLine("error", "identity_expired")
        .Add("spiffe_id", stats_.spiffe_id)
        .Emit();
  }
  if (!expired && now < renew_at_) return renew_at_;
  if (now < retry_at_) return retry_at_;

  absl::StatusOr<client::IssuedCertificate> issued;
  {
    // The RPC runs without the lock so readers (Ready, Stats, the bundle
    // watch) never wait on the CA. Only this thread installs certificates.
    std::unique_ptr<client::IssuedCertificate> current =
        current_ == nullptr
            ? nullptr
            : std::make_unique<client::IssuedCertificate>(
                  client::IssuedCertificate{
                      nullptr, current_->key_pem, current_->chain_pem,
                      current_->bundle, current_->spiffe_id, current_->serial,
                      current_->not_before, current_->not_after});
    mu_.Unlock();
    issued = expired ? source_->Bootstrap() : source_->Renew(*current);
    mu_.Lock();
  }
  absl::Status status = issued.status();
  if (issued.ok()) status = Install(std::move(*issued));
  if (status.ok()) {
    ++stats_.renewals_ok;
    stats_.last_error.clear();  // /certs shows the current trouble, if any
    return renew_at_;
  }
  ++stats_.renewals_failed;
  stats_.last_error = status.ToString();
  absl::Duration left = current_ == nullptr || expired
                            ? absl::ZeroDuration()
                            : current_->not_after - now;
  retry_at_ =
      now + RetryBackoff(++failed_attempts_, policy_, random01_(), left);
  stats_.next_renewal = retry_at_;
  util::LogLine("warn", "renewal_failed")
      .Add("attempt", failed_attempts_)
      .Add("message", status.ToString())
      .AddTime("retry_at", retry_at_)
      .Emit();
  // An expiry between now and the retry must still be noticed on time.
  if (!expired && current_ != nullptr) {
    return std::min(retry_at_, current_->not_after);
  }
  return retry_at_;
}

void IdentityAgent::Start() {
  watch_ = source_->Watch(
      [this](const v1::TrustBundle& bundle) { OnBundle(bundle); });
  thread_ = std::thread([this] { Run(); });
}

void IdentityAgent::Run() {
  while (!stop_.HasBeenNotified()) {
    if (reopen_watch_.exchange(false) && watch_ != nullptr) {
      // The CA's roots changed: reconnect the watch trusting the new set.
      watch_->Stop();
      watch_ = source_->Watch(
          [this](const v1::TrustBundle& bundle) { OnBundle(bundle); });
    }
    absl::Time next = Step(clock_->Now());
    absl::Duration wait = next - clock_->Now();
    // Wake at least once a second, so clock jumps and expiry are noticed.
    wait = std::clamp(wait, absl::Milliseconds(10), absl::Seconds(1));
    stop_.WaitForNotificationWithTimeout(wait);
  }
}

void IdentityAgent::RequestStop() {
  if (!stop_requested_.exchange(true)) stop_.Notify();
}

void IdentityAgent::Stop() {
  RequestStop();
  if (thread_.joinable()) thread_.join();
  if (watch_ != nullptr) {
    watch_->Stop();
    watch_.reset();
  }
}

bool IdentityAgent::Ready() const {
  absl::MutexLock lock(&mu_);
  return published_ && current_ != nullptr &&
         clock_->Now() < current_->not_after;
}

AgentStats IdentityAgent::Stats() const {
  absl::MutexLock lock(&mu_);
  return stats_;
}

}  // namespace meshguard::sidecar
