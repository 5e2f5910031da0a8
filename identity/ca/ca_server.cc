#include "identity/ca/ca_server.h"

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <deque>
#include <functional>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "google/protobuf/util/time_util.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"
#include "identity/ca/bundle_publisher.h"
#include "identity/ca/ca_material.h"
#include "identity/ca/issuance_store.h"
#include "identity/ca/jwt_authenticator.h"
#include "identity/ca/token_reviewer.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/random.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/verifier.h"
#include "identity/util/admin_http.h"
#include "identity/util/clock.h"
#include "identity/util/file_util.h"
#include "identity/util/json_log.h"
#include "identity/util/listener_pause.h"
#include "identity/util/metrics.h"
#include "identity/util/proto_duration.h"
#include "identity/util/rate_limiter.h"
#include "proto/ca.grpc.pb.h"

namespace meshguard::ca {
namespace {

namespace v1 = ::meshguard::ca::v1;
using ::google::protobuf::util::TimeUtil;
using ::meshguard::config::v1::CaConfig;

constexpr absl::Duration kMaxJoinTokenTtl = absl::Hours(24);
constexpr absl::Duration kDefaultJoinTokenTtl = absl::Minutes(10);
// The CA's serving certificate and key, in <data_dir>/kServingDir: written
// at start and at half of each certificate's life; gRPC's file watcher
// serves the newest pair to new connections.
constexpr char kServingDir[] = "serving";
constexpr char kServingNamespace[] = "meshguard-system";
constexpr char kServingServiceAccount[] = "meshguard-ca";
constexpr char kServingKeyFile[] = "key.pem";
constexpr char kServingCertFile[] = "cert.pem";

using ::meshguard::util::ToAbsl;

google::protobuf::Timestamp ToProto(absl::Time t) {
  return TimeUtil::NanosecondsToTimestamp(absl::ToUnixNanos(t));
}

grpc::Status ToGrpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()),
                      std::string(s.message()));
}

// Splits "host:port" ("[::1]:15012" too).
bool SplitHostPort(const std::string& address, std::string* host,
                   std::string* port) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  *host = address.substr(0, colon);
  *port = address.substr(colon + 1);
  if (host->size() >= 2 && host->front() == '[' && host->back() == ']') {
    *host = host->substr(1, host->size() - 2);
  }
  return true;
}

bool LooksLikeIp(const std::string& host) {
  if (host.empty()) return false;
  if (host.find(':') != std::string::npos) return true;  // IPv6
  return std::all_of(host.begin(), host.end(),
                     [](char c) { return (c >= '0' && c <= '9') || c == '.'; });
}

// How a caller proved who it is.
struct Caller {
  std::string spiffe_id;
  std::string auth_method;  // k8s_token | join_token | renewal | admin_socket
  std::string join_token_hash;      // join_token: consumed just before signing
  std::string renewed_from_serial;  // renewal: the client certificate's serial
  // A refusal that says nothing about the caller (its token could not be
  // reviewed): not charged to its address's failed-auth throttle.
  bool not_callers_fault = false;
  // k8s_token with kubernetes.token_review on: the token passed the offline
  // checks; the caller is authenticated once the API server agrees.
  struct PendingReview {
    std::string token;
    KubernetesIdentity identity;
  };
  std::optional<PendingReview> review;
};

// "ipv4:127.0.0.1:5000" -> "ipv4:127.0.0.1": the peer without its port.
std::string PeerHost(const std::string& peer) {
  size_t colon = peer.rfind(':');
  return colon == std::string::npos ? peer : peer.substr(0, colon);
}

// Everything the services share. Thread-safe.
class CaState final {
 public:
  CaState(CaConfig config, CaMaterial material,
          std::unique_ptr<IssuanceStore> store,
          std::unique_ptr<JwtAuthenticator> jwt,
          std::unique_ptr<TokenReviewer> token_reviewer)
      : config_(std::move(config)),
        material_(std::move(material)),
        store_(std::move(store)),
        jwt_(std::move(jwt)),
        token_reviewer_(std::move(token_reviewer)),
        // The trust domain was validated with the config.
        serving_identity_(crypto::SpiffeId::ForServiceAccount(
                              config_.trust_domain(), kServingNamespace,
                              kServingServiceAccount)
                              .value()),
        publisher_(config_.trust_domain()),
        limiter_(config_.rate_limit().requests_per_second(),
                 config_.rate_limit().burst(), /*max_keys=*/100000,
                 util::RealClock()),
        failure_limiter_(config_.rate_limit().requests_per_second(),
                         config_.rate_limit().burst(), /*max_keys=*/100000,
                         util::RealClock()) {
    std::vector<X509*> issuers = {material_.signer->certificate()};
    for (X509* above : material_.signer->ChainAbove()) issuers.push_back(above);
    for (X509* cert : issuers) {
      // Checked at load (LoadCaMaterial parsed and re-encoded these).
      issuer_chain_pems_.push_back(crypto::CertificateToPem(cert).value());
    }
    issuances_ = metrics_.AddCounter(
        "meshguard_ca_issuances_total",
        "Certificates issued and refused, by how the caller authenticated.",
        {"auth_method", "result"});
    failures_ = metrics_.AddCounter(
        "meshguard_ca_issuance_failures_total",
        "Refused or failed IssueCertificate calls, by reason.", {"reason"});
    latency_ =
        metrics_.AddHistogram("meshguard_ca_request_duration_seconds",
                              "Latency of CA RPCs, by method.", {"method"},
                              {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                               0.1, 0.25, 0.5, 1, 2.5});
    revocations_ = metrics_.AddCounter("meshguard_ca_revocations_total",
                                       "Certificates revoked.", {});
    token_reviews_ = metrics_.AddCounter(
        "meshguard_ca_token_reviews_total",
        "Kubernetes TokenReviews of bootstrap tokens, by result: "
        "authenticated, refused (not authenticated, other identity or "
        "audience), failed (no usable answer), cached (a recent positive "
        "review reused), joined (shared a review in flight for the same "
        "token).",
        {"result"});
    token_review_latency_ = metrics_.AddHistogram(
        "meshguard_ca_token_review_duration_seconds",
        "Latency of TokenReview requests to the Kubernetes API server "
        "(cached results not included).",
        {}, {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
    const absl::Time root_expiry = material_.earliest_root_expiry;
    const absl::Time int_expiry = material_.intermediate_not_after;
    metrics_
        .AddGauge("meshguard_ca_root_expiry_timestamp_seconds",
                  "Earliest notAfter among the trusted roots (Unix seconds).")
        ->WithLabels({})
        ->Set(static_cast<double>(absl::ToUnixSeconds(root_expiry)));
    metrics_
        .AddGauge("meshguard_ca_intermediate_expiry_timestamp_seconds",
                  "notAfter of the signing intermediate (Unix seconds).")
        ->WithLabels({})
        ->Set(static_cast<double>(absl::ToUnixSeconds(int_expiry)));
    // Issuance log commits and the rows they carried: rows / commits is the
    // mean group size of the store's group commit (one fsync per commit).
    metrics_
        .AddGauge("meshguard_ca_issuance_log_commits",
                  "Issuance log transactions committed since start.")
        ->WithLabels({})
        ->SetCallback([this] {
          return static_cast<double>(store_->commit_stats().commits);
        });
    metrics_
        .AddGauge("meshguard_ca_issuance_log_rows",
                  "Issuance records committed since start.")
        ->WithLabels({})
        ->SetCallback([this] {
          return static_cast<double>(store_->commit_stats().rows);
        });
    metrics_
        .AddGauge("meshguard_ca_bundle_watchers",
                  "Open WatchTrustBundle streams.")
        ->WithLabels({})
        ->SetCallback(
            [this] { return static_cast<double>(publisher_.watcher_count()); });
  }

  const CaConfig& config() const { return config_; }
  // The SPIFFE ID on the CA's own serving certificate.
  const crypto::SpiffeId& serving_identity() const { return serving_identity_; }
  BundlePublisher& publisher() { return publisher_; }
  // The token reviewer goes first: a review it finishes meanwhile goes on
  // to sign and store. Then the store: its destructor commits any row still
  // queued and runs that call's completion, which counts and logs through
  // this object.
  ~CaState() {
    token_reviewer_.reset();
    store_.reset();
  }

  IssuanceStore& store() { return *store_; }
  util::MetricsRegistry& metrics() { return metrics_; }
  const CaMaterial& material() const { return material_; }
  // The signing certificate and those above it, PEM, made once.
  const std::vector<std::string>& issuer_chain_pems() const {
    return issuer_chain_pems_;
  }

  // Signs a new CRL from the store's revocations and publishes it with the
  // roots. Serialized so CRL numbers and bundle sequence numbers agree.
  absl::StatusOr<uint64_t> RefreshCrl() ABSL_LOCKS_EXCLUDED(crl_mu_) {
    absl::MutexLock lock(&crl_mu_);
    absl::Time now = absl::Now();
    absl::StatusOr<std::vector<IssuanceRecord>> revoked =
        store_->ListRevokedUnexpired(now);
    if (!revoked.ok()) return revoked.status();
    std::vector<crypto::RevokedCertificate> entries;
    for (const IssuanceRecord& r : *revoked) {
      entries.push_back({r.serial, r.revoked_at.value_or(now)});
    }
    absl::StatusOr<int64_t> number = store_->NextCrlNumber();
    if (!number.ok()) return number.status();
    absl::StatusOr<crypto::X509CrlPtr> crl = material_.signer->CreateCrl(
        entries, *number, now, ToAbsl(config_.crl_validity()));
    if (!crl.ok()) return crl.status();
    absl::StatusOr<std::string> crl_pem = crypto::CrlToPem(crl->get());
    if (!crl_pem.ok()) return crl_pem.status();
    absl::StatusOr<std::shared_ptr<const crypto::TrustBundle>> bundle =
        crypto::TrustBundle::Create(config_.trust_domain(), material_.root_pems,
                                    {*crl_pem});
    if (!bundle.ok()) return bundle.status();
    {
      absl::MutexLock cache_lock(&peer_cache_mu_);
      revoked_serials_.clear();
      for (const IssuanceRecord& r : *revoked)
        revoked_serials_.insert(r.serial);
      peer_cache_.clear();
    }
    {
      absl::MutexLock vlock(&verifier_mu_);
      verifier_bundle_ = *bundle;
    }
    // The bundle's sequence number is the CRL's: both only go up, and the
    // CRL number is kept in the issuance log, so a restarted CA does not
    // publish numbers its watchers have already seen (they would ignore
    // every bundle until the count caught up).
    const auto sequence = static_cast<uint64_t>(*number);
    if (absl::Status published =
            publisher_.Publish(material_.root_pems, *crl_pem, sequence);
        !published.ok()) {
      return published;
    }
    return sequence;
  }

  std::shared_ptr<const crypto::TrustBundle> verifier_bundle() const
      ABSL_LOCKS_EXCLUDED(verifier_mu_) {
    absl::MutexLock lock(&verifier_mu_);
    return verifier_bundle_;
  }

  // The SPIFFE ID of an mTLS peer holding a valid, unrevoked certificate of
  // this CA; NOT_FOUND if the peer presented no certificate.
  //
  // A full verification parses and checks the chain; a renewing peer
  // presents the same leaf on every call of its connection, so verified
  // leaves are cached per trust bundle (a new CRL or root set starts a new
  // cache). Expiry and revocation are checked on every call regardless.
  absl::StatusOr<crypto::SpiffeId> PeerIdentity(
      const grpc::ServerContextBase& context,
      std::string* serial_out = nullptr) const {
    std::shared_ptr<const grpc::AuthContext> auth = context.auth_context();
    if (auth == nullptr) return absl::NotFoundError("no TLS peer");
    std::vector<grpc::string_ref> leaf =
        auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (leaf.empty()) {
      return absl::NotFoundError("peer presented no client certificate");
    }
    const std::string leaf_pem(leaf.front().data(), leaf.front().size());
    const absl::Time now = absl::Now();
    std::shared_ptr<const crypto::TrustBundle> bundle = verifier_bundle();
    {
      absl::MutexLock lock(&peer_cache_mu_);
      auto it = peer_cache_.find(leaf_pem);
      if (it != peer_cache_.end() && it->second.bundle == bundle.get() &&
          now < it->second.not_after) {
        if (revoked_serials_.contains(it->second.serial)) {
          return absl::UnauthenticatedError(
              "client certificate refused: revoked");
        }
        if (serial_out != nullptr) *serial_out = it->second.serial;
        return it->second.id;
      }
    }

    absl::StatusOr<crypto::X509Ptr> cert =
        crypto::ParseCertificatePem(leaf_pem);
    if (!cert.ok()) {
      return absl::UnauthenticatedError(absl::StrCat(
          "client certificate refused: parse: ", cert.status().message()));
    }
    // On a server, OpenSSL's peer chain omits the leaf; our own intermediate
    // completes chains from peers that send only the leaf.
    std::vector<crypto::X509Ptr> sent;
    std::vector<grpc::string_ref> chain =
        auth->FindPropertyValues(GRPC_X509_PEM_CERT_CHAIN_PROPERTY_NAME);
    if (!chain.empty()) {
      absl::StatusOr<std::vector<crypto::X509Ptr>> parsed =
          crypto::ParseCertificateChainPem(
              absl::string_view(chain.front().data(), chain.front().size()));
      if (parsed.ok()) sent = std::move(*parsed);
    }
    std::vector<X509*> intermediates;
    for (const crypto::X509Ptr& c : sent) intermediates.push_back(c.get());
    intermediates.push_back(material_.signer->certificate());
    crypto::VerifyOptions options;
    options.at = now;
    options.trust_domain = config_.trust_domain();
    absl::StatusOr<crypto::SpiffeId> id =
        crypto::VerifyX509Svid(cert->get(), intermediates, *bundle, options);
    if (!id.ok()) {
      return absl::UnauthenticatedError(
          absl::StrCat("client certificate refused: ", id.status().message()));
    }
    const std::string serial = crypto::SerialHex(cert->get());
    absl::MutexLock lock(&peer_cache_mu_);
    // The store knows of revocations before peers' CRLs do.
    if (revoked_serials_.contains(serial)) {
      return absl::UnauthenticatedError("client certificate refused: revoked");
    }
    if (peer_cache_.size() >= kPeerCacheSize) peer_cache_.clear();
    peer_cache_.insert_or_assign(
        leaf_pem,
        VerifiedPeer{*id, serial, crypto::NotAfter(cert->get()), bundle.get()});
    if (serial_out != nullptr) *serial_out = serial;
    return id;
  }

  void CountRefusal(const std::string& method, const std::string& reason) {
    issuances_->WithLabels({method, "refused"})->Inc();
    failures_->WithLabels({reason})->Inc();
  }
  void CountIssued(const std::string& method) {
    issuances_->WithLabels({method, "issued"})->Inc();
  }
  void ObserveLatency(const std::string& rpc, absl::Duration d) {
    latency_->WithLabels({rpc})->Observe(absl::ToDoubleSeconds(d));
  }
  void CountRevocations(size_t n) { revocations_->WithLabels({})->Inc(n); }
  void CountTokenReview(const std::string& result) {
    token_reviews_->WithLabels({result})->Inc();
  }
  void ObserveTokenReview(absl::Duration d) {
    token_review_latency_->WithLabels({})->Observe(absl::ToDoubleSeconds(d));
  }
  bool AllowRate(const std::string& key) { return limiter_.Allow(key); }
  bool PeerMayTry(const std::string& key) {
    return failure_limiter_.WouldAllow(key);
  }
  void ChargeFailure(const std::string& key) { failure_limiter_.Allow(key); }

  // A place for one more WatchTrustBundle stream from `host` (PeerHost),
  // or false at max_bundle_watchers_per_address. Each true is matched by
  // one ReleaseWatchSlot.
  bool TakeWatchSlot(const std::string& host) {
    absl::MutexLock lock(&watch_mu_);
    auto it = watchers_by_host_.find(host);
    const int open = it == watchers_by_host_.end() ? 0 : it->second;
    if (open >= static_cast<int>(config_.max_bundle_watchers_per_address())) {
      return false;
    }
    watchers_by_host_[host] = open + 1;
    return true;
  }
  void ReleaseWatchSlot(const std::string& host) {
    absl::MutexLock lock(&watch_mu_);
    auto it = watchers_by_host_.find(host);
    if (it != watchers_by_host_.end() && --it->second <= 0) {
      watchers_by_host_.erase(it);
    }
  }

  bool IsAdmin(const std::string& spiffe_id) const {
    for (const std::string& admin : config_.admin_ids()) {
      if (admin == spiffe_id) return true;
    }
    return false;
  }

  JwtAuthenticator* jwt() const { return jwt_.get(); }
  // Null unless kubernetes.token_review.enabled.
  TokenReviewer* token_reviewer() const { return token_reviewer_.get(); }
  // Before the gRPC server shuts down: no call is left waiting for a
  // review (one still in line is answered UNAVAILABLE), so no reviewer
  // thread carries a call on once the services are gone.
  void StopTokenReviews() {
    if (token_reviewer_ != nullptr) token_reviewer_->Stop();
  }

 private:
  const CaConfig config_;
  const CaMaterial material_;
  std::vector<std::string> issuer_chain_pems_;
  std::unique_ptr<IssuanceStore> store_;
  std::unique_ptr<JwtAuthenticator> jwt_;
  absl::Mutex watch_mu_;
  absl::flat_hash_map<std::string, int> watchers_by_host_
      ABSL_GUARDED_BY(watch_mu_);
  std::unique_ptr<TokenReviewer> token_reviewer_;
  const crypto::SpiffeId serving_identity_;
  BundlePublisher publisher_;
  util::RateLimiter limiter_;
  util::RateLimiter failure_limiter_;
  util::MetricsRegistry metrics_;
  util::CounterFamily* issuances_;
  util::CounterFamily* failures_;
  util::HistogramFamily* latency_;
  util::CounterFamily* revocations_;
  util::CounterFamily* token_reviews_;
  util::HistogramFamily* token_review_latency_;

  struct VerifiedPeer {
    crypto::SpiffeId id;
    std::string serial;
    absl::Time not_after;
    const crypto::TrustBundle* bundle;  // identity only; never dereferenced
  };
  static constexpr size_t kPeerCacheSize = 10000;
  mutable absl::Mutex peer_cache_mu_;
  mutable absl::flat_hash_map<std::string, VerifiedPeer> peer_cache_
      ABSL_GUARDED_BY(peer_cache_mu_);
  // Serials revoked and not yet expired, as of the last RefreshCrl (which
  // every revocation runs before it returns).
  absl::flat_hash_set<std::string> revoked_serials_
      ABSL_GUARDED_BY(peer_cache_mu_);

  absl::Mutex crl_mu_;
  mutable absl::Mutex verifier_mu_;
  std::shared_ptr<const crypto::TrustBundle> verifier_bundle_
      ABSL_GUARDED_BY(verifier_mu_);
};

// A refusal: the status to return, the reason label, and the log line.
// `detail`, when given, goes to the log only (it may name things the
// caller has not proven it may know).
grpc::Status Refuse(CaState* state, const std::string& method,
                    const std::string& reason, const std::string& requester,
                    grpc::StatusCode code, const std::string& message,
                    const std::string& detail = "") {
  state->CountRefusal(method.empty() ? "unknown" : method, reason);
  util::LogLine("warn", "issuance_refused")
      .Add("reason", reason)
      .Add("auth_method", method)
      .Add("requester", requester)
      .Add("message", detail.empty() ? message : detail)
      .Emit();
  return grpc::Status(code, message);
}

class CertificateAuthorityImpl final
    : public v1::CertificateAuthority::CallbackService {
 public:
  explicit CertificateAuthorityImpl(CaState* state) : state_(state) {}

 private:
  // One IssueCertificate call: what gRPC gave the handler (valid until the
  // reactor finishes) and what the checks need of it.
  struct IssueCall {
    IssueCall(grpc::CallbackServerContext* context,
              const v1::IssueCertificateRequest* request,
              v1::IssueCertificateResponse* response)
        : context(context),
          request(request),
          response(response),
          reactor(context->DefaultReactor()),
          start(absl::Now()),
          requester(context->peer()),
          peer_key(absl::StrCat("peer:", PeerHost(requester))),
          brings_token(!request->join_token().empty() ||
                       context->client_metadata().find("authorization") !=
                           context->client_metadata().end()) {}

    grpc::CallbackServerContext* context;
    const v1::IssueCertificateRequest* request;
    v1::IssueCertificateResponse* response;
    grpc::ServerUnaryReactor* reactor;
    absl::Time start;
    std::string requester;
    std::string peer_key;
    bool brings_token;
  };

 public:
  // A callback handler: the checks and the signing run on gRPC's thread
  // (on the token reviewer's, after a TokenReview), then the record goes to
  // the issuance log's committer thread, which answers the call once the
  // row (grouped with every other row queued meanwhile) is durable. No
  // server thread sleeps through an fsync or waits for the API server, and
  // the CPU-bound part runs on as many threads as gRPC polls with rather
  // than one per call in flight (docs/BENCHMARKS.md, "CA issuance").
  grpc::ServerUnaryReactor* IssueCertificate(
      grpc::CallbackServerContext* context,
      const v1::IssueCertificateRequest* request,
      v1::IssueCertificateResponse* response) override {
    IssueCall call(context, request, response);
    // Callers that keep failing to authenticate with a token are throttled
    // by address, so guessing tokens is slow; good callers are never
    // charged here. A caller with no token (a renewal, which a certificate
    // authenticates) is neither held back nor charged: a certificate cannot
    // be guessed, and a sidecar renewing from the same address as a bad
    // caller (SNAT, host network) must not wait for it.
    if (call.brings_token && !state_->PeerMayTry(call.peer_key)) {
      Answer(state_, call,
             Refuse(state_, "none", "rate_limited", call.requester,
                    grpc::StatusCode::RESOURCE_EXHAUSTED,
                    "too many failed authentications from this address"));
      return call.reactor;
    }
    Caller caller;
    grpc::Status admitted =
        Authenticate(*context, *request, call.requester, &caller);
    if (admitted.ok() && caller.review.has_value()) {
      // The API server's answer may take up to the review timeout: the
      // reviewer's thread carries the call on from there, and this gRPC
      // thread goes back to serving other calls.
      Caller::PendingReview review = *std::move(caller.review);
      caller.review.reset();
      state_->token_reviewer()->ReviewAsync(
          review.token, review.identity,
          [this, call,
           caller = std::move(caller)](TokenReviewResult result) mutable {
            grpc::Status reviewed = ReviewOutcome(result, call, &caller);
            Continue(call, caller, reviewed);
          });
      return call.reactor;
    }
    Continue(call, caller, admitted);
    return call.reactor;
  }

  grpc::ServerUnaryReactor* GetTrustBundle(
      grpc::CallbackServerContext* context,
      const v1::GetTrustBundleRequest* request,
      v1::TrustBundle* response) override {
    *response = state_->publisher().Current();
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerWriteReactor<v1::TrustBundle>* WatchTrustBundle(
      grpc::CallbackServerContext* context,
      const v1::WatchTrustBundleRequest* request) override {
    // The bundle is public (roots and a CRL), so a watch needs no
    // credential; what bounds its cost is this cap (approximate: checked
    // before subscribing), and one per address, so that one client cannot
    // take all of its places.
    if (state_->publisher().watcher_count() >=
        state_->config().max_bundle_watchers()) {
      return new RefusedWatch(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("too many trust bundle watchers (max_bundle_watchers ",
                       state_->config().max_bundle_watchers(),
                       "); retry later")));
    }
    std::string host = PeerHost(context->peer());
    if (!state_->TakeWatchSlot(host)) {
      return new RefusedWatch(grpc::Status(
          grpc::StatusCode::RESOURCE_EXHAUSTED,
          absl::StrCat("too many trust bundle watchers from ", host,
                       " (max_bundle_watchers_per_address ",
                       state_->config().max_bundle_watchers_per_address(),
                       "); retry later")));
    }
    return new BundleWatcher(&state_->publisher(),
                             [state = state_, host = std::move(host)] {
                               state->ReleaseWatchSlot(host);
                             });
  }

 private:
  // Streams the current bundle, then each newer one. Only the newest
  // pending bundle is kept: a slow watcher skips intermediate versions
  // rather than growing a queue.
  // A watch refused at once.
  class RefusedWatch final : public grpc::ServerWriteReactor<v1::TrustBundle> {
   public:
    explicit RefusedWatch(grpc::Status status) { Finish(std::move(status)); }
    void OnDone() override { delete this; }
  };

  class BundleWatcher final : public grpc::ServerWriteReactor<v1::TrustBundle> {
   public:
    // `on_done` runs once the stream is over.
    BundleWatcher(BundlePublisher* publisher, std::function<void()> on_done)
        : publisher_(publisher), on_done_(std::move(on_done)) {
      handle_ = publisher_->Subscribe(
          [this](const v1::TrustBundle& bundle) { Offer(bundle); });
      Offer(publisher_->Current());
    }

    void OnWriteDone(bool ok) override {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) return;  // OnDone follows.
      MaybeWriteLocked();
    }

    void OnCancel() override {
      absl::MutexLock lock(&mu_);
      if (!finished_) {
        finished_ = true;
        Finish(grpc::Status::CANCELLED);
      }
    }

    void OnDone() override {
      publisher_->Unsubscribe(handle_);
      on_done_();
      delete this;
    }

   private:
    void Offer(const v1::TrustBundle& bundle) {
      absl::MutexLock lock(&mu_);
      if (bundle.sequence_number() <= sent_sequence_) return;
      if (pending_.has_value() &&
          pending_->sequence_number() >= bundle.sequence_number()) {
        return;
      }
      pending_ = bundle;
      MaybeWriteLocked();
    }

    void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      if (writing_ || finished_ || !pending_.has_value()) return;
      in_flight_ = std::move(*pending_);
      pending_.reset();
      sent_sequence_ = in_flight_.sequence_number();
      writing_ = true;
      StartWrite(&in_flight_);
    }

    BundlePublisher* const publisher_;
    const std::function<void()> on_done_;
    uint64_t handle_ = 0;
    absl::Mutex mu_;
    bool writing_ ABSL_GUARDED_BY(mu_) = false;
    bool finished_ ABSL_GUARDED_BY(mu_) = false;
    uint64_t sent_sequence_ ABSL_GUARDED_BY(mu_) = 0;
    std::optional<v1::TrustBundle> pending_ ABSL_GUARDED_BY(mu_);
    v1::TrustBundle in_flight_ ABSL_GUARDED_BY(mu_);
  };

  // The store's answer on a join token: a verdict (unknown, used, expired:
  // UNAUTHENTICATED, "bad_join_token"), or none because the store failed
  // (disk full, I/O error): UNAVAILABLE, "storage_failed", not the caller's
  // fault, and the token is not spent, so it works once the store does.
  // The store's message names the token's identity or the database path;
  // an unauthenticated caller gets only the reason, the log gets all.
  grpc::Status JoinTokenRefused(const absl::Status& store,
                                const std::string& method,
                                const std::string& requester,
                                bool* not_callers_fault) {
    const std::string full(store.message());
    if (absl::IsUnauthenticated(store)) {
      return Refuse(state_, method, "bad_join_token", requester,
                    grpc::StatusCode::UNAUTHENTICATED,
                    full.substr(0, full.find(" (")), full);
    }
    if (not_callers_fault != nullptr) *not_callers_fault = true;
    return Refuse(state_, method, "storage_failed", requester,
                  grpc::StatusCode::UNAVAILABLE,
                  "the CA cannot use its issuance log; retry later", full);
  }

  // Decides who the caller is: join token, then bearer token, then a client
  // certificate. Exactly one credential is used.
  grpc::Status Authenticate(const grpc::ServerContextBase& context,
                            const v1::IssueCertificateRequest& request,
                            const std::string& requester, Caller* caller) {
    const absl::Time now = absl::Now();
    if (!request.join_token().empty()) {
      caller->auth_method = "join_token";
      if (request.join_token().size() > 256) {
        return Refuse(state_, caller->auth_method, "bad_join_token", requester,
                      grpc::StatusCode::UNAUTHENTICATED,
                      "join token is malformed");
      }
      // Only looked up here: it is consumed after every other check, so a
      // request refused for another reason does not burn it.
      caller->join_token_hash = crypto::Sha256Hex(request.join_token());
      absl::StatusOr<std::string> id =
          state_->store().LookupJoinToken(caller->join_token_hash, now);
      if (!id.ok()) {
        return JoinTokenRefused(id.status(), caller->auth_method, requester,
                                &caller->not_callers_fault);
      }
      caller->spiffe_id = *id;
      return grpc::Status::OK;
    }
    auto auth_header = context.client_metadata().find("authorization");
    if (auth_header != context.client_metadata().end()) {
      caller->auth_method = "k8s_token";
      std::string value(auth_header->second.data(), auth_header->second.size());
      // The scheme is case-insensitive (RFC 7235).
      if (!absl::StartsWithIgnoreCase(value, "Bearer ")) {
        return Refuse(state_, caller->auth_method, "bad_token", requester,
                      grpc::StatusCode::UNAUTHENTICATED,
                      "authorization metadata is not a Bearer token");
      }
      if (state_->jwt() == nullptr) {
        return Refuse(state_, caller->auth_method, "k8s_auth_disabled",
                      requester, grpc::StatusCode::UNAUTHENTICATED,
                      "Kubernetes token authentication is not configured on "
                      "this CA (kubernetes.jwks_file / public_key_files)");
      }
      const absl::string_view token = absl::string_view(value).substr(7);
      absl::StatusOr<KubernetesIdentity> identity =
          state_->jwt()->Authenticate(token, now);
      if (!identity.ok()) {
        return Refuse(state_, caller->auth_method, "bad_token", requester,
                      grpc::StatusCode::UNAUTHENTICATED,
                      std::string(identity.status().message()));
      }
      absl::StatusOr<crypto::SpiffeId> id = crypto::SpiffeId::ForServiceAccount(
          state_->config().trust_domain(), identity->namespace_name,
          identity->service_account);
      if (!id.ok()) {
        return Refuse(state_, caller->auth_method, "bad_token", requester,
                      grpc::StatusCode::UNAUTHENTICATED,
                      std::string(id.status().message()));
      }
      if (state_->token_reviewer() != nullptr) {
        caller->review =
            Caller::PendingReview{std::string(token), *std::move(identity)};
      }
      caller->spiffe_id = id->ToString();
      return grpc::Status::OK;
    }
    caller->auth_method = "renewal";
    absl::StatusOr<crypto::SpiffeId> peer =
        state_->PeerIdentity(context, &caller->renewed_from_serial);
    if (!peer.ok()) {
      if (absl::IsNotFound(peer.status())) {
        return Refuse(state_, "none", "no_credential", requester,
                      grpc::StatusCode::UNAUTHENTICATED,
                      "no credential: send a join token, a Bearer "
                      "service-account token, or a client certificate of "
                      "this CA");
      }
      return Refuse(state_, caller->auth_method, "bad_client_certificate",
                    requester, grpc::StatusCode::UNAUTHENTICATED,
                    std::string(peer.status().message()));
    }
    // The CA's own serving certificates are not in the issuance log (they
    // cannot be listed or revoked) and a restart leaves the old one valid:
    // they serve TLS, and never renew anything.
    if (*peer == state_->serving_identity()) {
      return Refuse(state_, caller->auth_method, "bad_client_certificate",
                    requester, grpc::StatusCode::PERMISSION_DENIED,
                    absl::StrCat(peer->ToString(),
                                 " is the CA's serving identity; it cannot "
                                 "renew"));
    }
    caller->spiffe_id = peer->ToString();
    return grpc::Status::OK;
  }

  // What the API server's review of a token that passed the offline checks
  // means for the call. A refusal is the caller's (UNAUTHENTICATED,
  // bad_token, the API server's reason in the log only); a review that
  // could not be done is not (UNAVAILABLE, token_review_failed: the caller
  // retries, and Continue does not charge it to the caller's failed-auth
  // throttle).
  grpc::Status ReviewOutcome(const TokenReviewResult& result,
                             const IssueCall& call, Caller* caller) {
    if (result.request_time > absl::ZeroDuration()) {
      state_->ObserveTokenReview(result.request_time);
    }
    const absl::Status& status = result.verdict.status;
    state_->CountTokenReview(
        result.joined ? "joined"
        : status.ok() ? (result.from_cache ? "cached" : "authenticated")
        : absl::IsUnauthenticated(status) ? "refused"
                                          : "failed");
    if (status.ok()) return grpc::Status::OK;
    std::string detail;
    if (!result.verdict.log_detail.empty()) {
      detail =
          absl::StrCat(status.message(), " (", result.verdict.log_detail, ")");
    }
    if (absl::IsUnauthenticated(status)) {
      return Refuse(state_, caller->auth_method, "bad_token", call.requester,
                    grpc::StatusCode::UNAUTHENTICATED,
                    std::string(status.message()), detail);
    }
    caller->not_callers_fault = true;
    return Refuse(state_, caller->auth_method, "token_review_failed",
                  call.requester, grpc::StatusCode::UNAVAILABLE,
                  std::string(status.message()), detail);
  }

  // After authentication (and its review, if any): a failure is charged to
  // the caller's address and answered; otherwise the call is checked and
  // signed, and its record queued for the issuance log's committer thread,
  // which answers the call once the row (grouped with every other row
  // queued meanwhile) is durable.
  void Continue(const IssueCall& call, const Caller& caller,
                const grpc::Status& authenticated) {
    if (!authenticated.ok()) {
      if (call.brings_token && !caller.not_callers_fault) {
        state_->ChargeFailure(call.peer_key);
      }
      Answer(state_, call, authenticated);
      return;
    }
    IssuanceRecord record;
    if (grpc::Status s = Issue(call, caller, &record); !s.ok()) {
      Answer(state_, call, s);
      return;
    }
    IssuanceRecord to_store = record;
    state_->store().RecordIssuanceAsync(
        std::move(to_store),
        [state = state_, reactor = call.reactor, response = call.response,
         start = call.start, record = std::move(record)](absl::Status stored) {
          grpc::Status status = grpc::Status::OK;
          if (stored.ok()) {
            Acknowledge(state, record);
          } else if (absl::IsPermissionDenied(stored)) {
            // The renewing certificate was revoked before this row could
            // commit: the new certificate is discarded, never returned.
            response->Clear();
            status =
                Refuse(state, record.auth_method, "revoked_in_flight",
                       record.requester, grpc::StatusCode::PERMISSION_DENIED,
                       std::string(stored.message()));
          } else {
            response->Clear();
            status = Refuse(state, record.auth_method, "storage_failed",
                            record.requester, grpc::StatusCode::UNAVAILABLE,
                            absl::StrCat("issuance log: ", stored.message()));
          }
          Answer(state, reactor, start, status);
        });
  }

  static void Answer(CaState* state, grpc::ServerUnaryReactor* reactor,
                     absl::Time start, const grpc::Status& status) {
    state->ObserveLatency("IssueCertificate", absl::Now() - start);
    reactor->Finish(status);
  }
  static void Answer(CaState* state, const IssueCall& call,
                     const grpc::Status& status) {
    Answer(state, call.reactor, call.start, status);
  }

  // Checks and signs for an authenticated caller, fills the response, and
  // describes the issuance in `record`. The call is not to be answered OK
  // before that record is durable.
  grpc::Status Issue(const IssueCall& call, const Caller& caller,
                     IssuanceRecord* record) {
    const v1::IssueCertificateRequest& request = *call.request;
    v1::IssueCertificateResponse* response = call.response;
    const std::string& requester = call.requester;
    if (!state_->AllowRate(caller.spiffe_id)) {
      return Refuse(state_, caller.auth_method, "rate_limited", requester,
                    grpc::StatusCode::RESOURCE_EXHAUSTED,
                    absl::StrCat("rate limit exceeded for ", caller.spiffe_id));
    }

    // The CSR: well formed, self-signed correctly, an acceptable key, and
    // naming no identity other than the authenticated one.
    absl::StatusOr<crypto::Csr> csr = crypto::Csr::ParsePem(request.csr_pem());
    if (!csr.ok()) {
      return Refuse(state_, caller.auth_method, "bad_csr", requester,
                    grpc::StatusCode::INVALID_ARGUMENT,
                    absl::StrCat("CSR: ", csr.status().message()));
    }
    // The key first: it is cheaper than a signature check and, for a key
    // the CA never certifies, the more useful refusal.
    if (absl::Status s = crypto::CheckIssuableKey(csr->public_key()); !s.ok()) {
      return Refuse(state_, caller.auth_method, "bad_csr_key", requester,
                    grpc::StatusCode::INVALID_ARGUMENT,
                    absl::StrCat("CSR key: ", s.message()));
    }
    if (absl::Status s = csr->CheckSignature(); !s.ok()) {
      return Refuse(state_, caller.auth_method, "bad_csr_signature", requester,
                    grpc::StatusCode::INVALID_ARGUMENT,
                    absl::StrCat("CSR signature: ", s.message()));
    }
    std::vector<std::string> uris = csr->UriSans();
    if (uris.size() > 1) {
      return Refuse(state_, caller.auth_method, "bad_csr_san", requester,
                    grpc::StatusCode::INVALID_ARGUMENT,
                    absl::StrCat("CSR has ", uris.size(),
                                 " URI SANs; at most one (the SPIFFE ID)"));
    }
    if (uris.size() == 1) {
      absl::StatusOr<crypto::SpiffeId> asked = crypto::SpiffeId::Parse(uris[0]);
      if (!asked.ok()) {
        return Refuse(state_, caller.auth_method, "bad_csr_san", requester,
                      grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat("CSR URI SAN: ", asked.status().message()));
      }
      if (asked->ToString() != caller.spiffe_id) {
        return Refuse(state_, caller.auth_method, "identity_mismatch",
                      requester, grpc::StatusCode::PERMISSION_DENIED,
                      absl::StrCat("CSR asks for ", asked->ToString(),
                                   " but the caller authenticated as ",
                                   caller.spiffe_id));
      }
    }
    absl::StatusOr<crypto::SpiffeId> id =
        crypto::SpiffeId::Parse(caller.spiffe_id);
    if (!id.ok() || !id->MemberOf(state_->config().trust_domain())) {
      return Refuse(
          state_, caller.auth_method, "wrong_trust_domain", requester,
          grpc::StatusCode::PERMISSION_DENIED,
          absl::StrCat(caller.spiffe_id, " is not in this CA's trust domain ",
                       state_->config().trust_domain()));
    }

    absl::Duration ttl = ToAbsl(state_->config().default_ttl());
    if (request.has_ttl()) {
      absl::Duration asked = ToAbsl(request.ttl());
      // A Duration's nanos carry its seconds' sign and stay below 1 s.
      const bool well_formed =
          request.ttl().nanos() > -1000000000 &&
          request.ttl().nanos() < 1000000000 &&
          !(request.ttl().seconds() > 0 && request.ttl().nanos() < 0) &&
          !(request.ttl().seconds() < 0 && request.ttl().nanos() > 0);
      if (!well_formed || asked < absl::ZeroDuration()) {
        return Refuse(state_, caller.auth_method, "bad_ttl", requester,
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "ttl must be a valid, non-negative duration");
      }
      // Below a second the certificate would be expired on arrival
      // (validity is in whole seconds).
      if (asked > absl::ZeroDuration() && asked < absl::Seconds(1)) {
        return Refuse(state_, caller.auth_method, "bad_ttl", requester,
                      grpc::StatusCode::INVALID_ARGUMENT,
                      "ttl must be at least 1s (or unset for the default)");
      }
      if (asked > absl::ZeroDuration()) ttl = asked;
    }
    ttl = std::min(ttl, ToAbsl(state_->config().max_ttl()));

    if (!caller.join_token_hash.empty()) {
      absl::StatusOr<std::string> consumed =
          state_->store().ConsumeJoinToken(caller.join_token_hash, absl::Now());
      if (!consumed.ok()) {
        return JoinTokenRefused(consumed.status(), caller.auth_method,
                                requester, nullptr);
      }
      if (*consumed != caller.spiffe_id) {
        return JoinTokenRefused(
            absl::UnauthenticatedError("join token changed identity"),
            caller.auth_method, requester, nullptr);
      }
    }

    crypto::LeafRequest leaf{csr->public_key(), *id, ttl, absl::Now(), {}, {}};
    absl::StatusOr<crypto::X509Ptr> cert =
        state_->material().signer->IssueLeaf(leaf);
    if (!cert.ok()) {
      return Refuse(state_, caller.auth_method, "signing_failed", requester,
                    grpc::StatusCode::INTERNAL,
                    absl::StrCat("signing failed: ", cert.status().message()));
    }

    record->serial = crypto::SerialHex(cert->get());
    record->spiffe_id = caller.spiffe_id;
    record->not_before = crypto::NotBefore(cert->get());
    record->not_after = crypto::NotAfter(cert->get());
    record->issued_at = leaf.now;
    record->auth_method = caller.auth_method;
    record->requester = requester;
    record->renewed_from_serial = caller.renewed_from_serial;

    absl::StatusOr<std::string> leaf_pem =
        crypto::CertificateToPem(cert->get());
    if (!leaf_pem.ok()) return ToGrpc(leaf_pem.status());
    response->add_cert_chain_pem(*leaf_pem);
    // Leaf first, then the signing intermediate and any above it: peers
    // have only the roots.
    for (const std::string& pem : state_->issuer_chain_pems()) {
      response->add_cert_chain_pem(pem);
    }
    *response->mutable_trust_bundle() = state_->publisher().Current();
    response->set_spiffe_id(caller.spiffe_id);
    response->set_serial(record->serial);
    *response->mutable_not_before() = ToProto(record->not_before);
    *response->mutable_not_after() = ToProto(record->not_after);
    return grpc::Status::OK;
  }

  // Counts and logs an issuance whose record is durable.
  static void Acknowledge(CaState* state, const IssuanceRecord& record) {
    state->CountIssued(record.auth_method);
    util::LogLine("info", "issued")
        .Add("spiffe_id", record.spiffe_id)
        .Add("serial", record.serial)
        .Add("auth_method", record.auth_method)
        .Add("requester", record.requester)
        .AddTime("not_after", record.not_after)
        .Emit();
  }

  CaState* const state_;
};

class CertificateAuthorityAdminImpl final
    : public v1::CertificateAuthorityAdmin::Service {
 public:
  // over_unix_socket: callers are trusted by the socket's file permissions;
  // otherwise they must present an admin identity over mTLS.
  CertificateAuthorityAdminImpl(CaState* state, bool over_unix_socket)
      : state_(state), over_unix_socket_(over_unix_socket) {}

  grpc::Status CreateJoinToken(grpc::ServerContext* context,
                               const v1::CreateJoinTokenRequest* request,
                               v1::CreateJoinTokenResponse* response) override {
    std::string admin;
    if (grpc::Status s = Authorize(*context, &admin); !s.ok()) return s;
    absl::StatusOr<crypto::SpiffeId> id = ParseMemberId(request->spiffe_id());
    if (!id.ok()) return ToGrpc(id.status());
    absl::Duration ttl = kDefaultJoinTokenTtl;
    if (request->has_ttl()) ttl = ToAbsl(request->ttl());
    if (ttl <= absl::ZeroDuration() || ttl > kMaxJoinTokenTtl) {
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "ttl must be positive and at most 24h");
    }
    const absl::Time now = absl::Now();
    std::string token = crypto::NewJoinToken();
    if (absl::Status s = state_->store().CreateJoinToken(
            crypto::Sha256Hex(token), id->ToString(), now + ttl, now);
        !s.ok()) {
      return ToGrpc(s);
    }
    response->set_token(token);
    *response->mutable_expires_at() = ToProto(now + ttl);
    util::LogLine("info", "join_token_created")
        .Add("spiffe_id", id->ToString())
        .Add("admin", admin)
        .AddTime("expires_at", now + ttl)
        .Emit();
    return grpc::Status::OK;
  }

  grpc::Status RevokeCertificate(
      grpc::ServerContext* context, const v1::RevokeCertificateRequest* request,
      v1::RevokeCertificateResponse* response) override {
    std::string admin;
    if (grpc::Status s = Authorize(*context, &admin); !s.ok()) return s;
    const absl::Time now = absl::Now();
    absl::StatusOr<std::vector<std::string>> revoked;
    switch (request->target_case()) {
      case v1::RevokeCertificateRequest::kSerial: {
        absl::StatusOr<std::string> serial =
            crypto::NormalizeSerialHex(request->serial());
        if (!serial.ok()) return ToGrpc(serial.status());
        revoked = state_->store().RevokeSerial(*serial, request->reason(), now);
        break;
      }
      case v1::RevokeCertificateRequest::kSpiffeId: {
        absl::StatusOr<crypto::SpiffeId> id =
            ParseMemberId(request->spiffe_id());
        if (!id.ok()) return ToGrpc(id.status());
        revoked = state_->store().RevokeSpiffeId(id->ToString(),
                                                 request->reason(), now);
        break;
      }
      default:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "set serial or spiffe_id");
    }
    if (!revoked.ok()) return ToGrpc(revoked.status());
    if (revoked->empty()) {
      // Nothing changed, so no new CRL and no new bundle: every new bundle
      // makes each sidecar drain its connections.
      response->set_bundle_sequence_number(
          state_->publisher().Current().sequence_number());
      util::LogLine("info", "revoke_nothing_new")
          .Add("target",
               request->target_case() == v1::RevokeCertificateRequest::kSerial
                   ? request->serial()
                   : request->spiffe_id())
          .Add("admin", admin)
          .Emit();
      return grpc::Status::OK;
    }
    absl::StatusOr<uint64_t> sequence = state_->RefreshCrl();
    if (!sequence.ok()) {
      return ToGrpc(absl::Status(
          sequence.status().code(),
          absl::StrCat("revocation recorded but the new CRL failed: ",
                       sequence.status().message())));
    }
    for (const std::string& serial : *revoked) {
      response->add_revoked_serials(serial);
    }
    response->set_bundle_sequence_number(*sequence);
    state_->CountRevocations(revoked->size());
    util::LogLine("info", "revoked")
        .Add("serials", absl::StrJoin(*revoked, ","))
        .Add("reason", request->reason())
        .Add("admin", admin)
        .Add("bundle_sequence", static_cast<int64_t>(*sequence))
        .Emit();
    return grpc::Status::OK;
  }

  grpc::Status ListCertificates(
      grpc::ServerContext* context, const v1::ListCertificatesRequest* request,
      v1::ListCertificatesResponse* response) override {
    std::string admin;
    if (grpc::Status s = Authorize(*context, &admin); !s.ok()) return s;
    IssuanceStore::ListFilter filter;
    if (!request->spiffe_id().empty()) {
      absl::StatusOr<crypto::SpiffeId> id = ParseMemberId(request->spiffe_id());
      if (!id.ok()) return ToGrpc(id.status());
      filter.spiffe_id = id->ToString();
    }
    filter.live_only = request->live_only();
    filter.now = absl::Now();
    filter.limit = request->limit() == 0 ? 1000 : request->limit();
    absl::StatusOr<std::vector<IssuanceRecord>> records =
        state_->store().List(filter);
    if (!records.ok()) return ToGrpc(records.status());
    for (const IssuanceRecord& r : *records) {
      v1::CertificateRecord* out = response->add_certificates();
      out->set_serial(r.serial);
      out->set_spiffe_id(r.spiffe_id);
      *out->mutable_not_before() = ToProto(r.not_before);
      *out->mutable_not_after() = ToProto(r.not_after);
      out->set_auth_method(r.auth_method);
      out->set_requester(r.requester);
      *out->mutable_issued_at() = ToProto(r.issued_at);
      if (r.revoked_at.has_value()) {
        *out->mutable_revoked_at() = ToProto(*r.revoked_at);
        out->set_revocation_reason(r.revocation_reason);
      }
    }
    return grpc::Status::OK;
  }

 private:
  // A SPIFFE ID an admin call names: well-formed and in this CA's trust
  // domain, or INVALID_ARGUMENT saying which.
  absl::StatusOr<crypto::SpiffeId> ParseMemberId(absl::string_view text) const {
    absl::StatusOr<crypto::SpiffeId> id = crypto::SpiffeId::Parse(text);
    if (!id.ok()) return id.status();
    if (!id->MemberOf(state_->config().trust_domain())) {
      return absl::InvalidArgumentError(
          absl::StrCat(id->ToString(), " is not in this CA's trust domain ",
                       state_->config().trust_domain()));
    }
    return id;
  }

  grpc::Status Authorize(const grpc::ServerContext& context,
                         std::string* admin) {
    if (over_unix_socket_) {
      *admin = "admin-socket";
      return grpc::Status::OK;
    }
    absl::StatusOr<crypto::SpiffeId> peer = state_->PeerIdentity(context);
    if (!peer.ok()) {
      return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                          absl::StrCat("admin API needs an admin identity: ",
                                       peer.status().message()));
    }
    if (!state_->IsAdmin(peer->ToString())) {
      return grpc::Status(
          grpc::StatusCode::PERMISSION_DENIED,
          absl::StrCat(peer->ToString(), " is not in the CA's admin_ids"));
    }
    *admin = peer->ToString();
    return grpc::Status::OK;
  }

  CaState* const state_;
  const bool over_unix_socket_;
};

class CaServerImpl final : public CaServer {
 public:
  CaServerImpl(std::unique_ptr<CaState> state, util::ExclusiveLock lock)
      : lock_(std::move(lock)),
        state_(std::move(state)),
        ca_service_(state_.get()),
        admin_over_tls_(state_.get(), /*over_unix_socket=*/false),
        admin_over_socket_(state_.get(), /*over_unix_socket=*/true) {}

  ~CaServerImpl() override { Shutdown(); }

  absl::Status Start() override {
    // Each peer holds a connection (and a bundle watch): not the 1024 of a
    // shell's default when the container allows more. gRPC 1.51 stops
    // accepting for good once accept() fails with EMFILE
    // (docs/operations.md).
    const uint64_t max_open_files = util::RaiseOpenFileLimit();
    const CaConfig& config = state_->config();
    absl::StatusOr<uint64_t> first = state_->RefreshCrl();
    if (!first.ok()) {
      return absl::Status(first.status().code(),
                          absl::StrCat("cannot sign the initial CRL: ",
                                       first.status().message()));
    }

    // The CA's own serving certificate, from its own intermediate, through
    // files gRPC watches: a long-running CA replaces it (ServingCertLoop)
    // without a restart, and open connections (bundle watchers) stay up.
    const std::string serving_dir =
        util::JoinPath(config.data_dir(), kServingDir);
    if (absl::Status s = util::MakeDirectories(serving_dir, 0700); !s.ok()) {
      return s;
    }
    serving_key_path_ = util::JoinPath(serving_dir, kServingKeyFile);
    serving_cert_path_ = util::JoinPath(serving_dir, kServingCertFile);
    if (absl::Status s = RenewServingCertificate(); !s.ok()) {
      return absl::Status(s.code(),
                          absl::StrCat("cannot issue the CA's serving "
                                       "certificate: ",
                                       s.message()));
    }
    // Polled: a tenth of the lifetime, between 1 s and 60 s, so a renewed
    // pair (written at half-life) is served long before the old expires.
    const int64_t poll_seconds = std::clamp<int64_t>(
        absl::ToInt64Seconds(ToAbsl(config.serving_certificate_ttl()) / 10), 1,
        60);
    auto provider =
        std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
            serving_key_path_, serving_cert_path_,
            static_cast<unsigned int>(poll_seconds));
    grpc::experimental::TlsServerCredentialsOptions tls_options(provider);
    tls_options.watch_identity_key_cert_pairs();
    // Client certificates are optional here: renewals present one, token
    // callers none; PeerIdentity verifies it against the bundle and CRL.
    tls_options.set_cert_request_type(
        GRPC_SSL_REQUEST_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);

    grpc::ServerBuilder builder;
    // gRPC sets SO_REUSEPORT by default, which lets a second CA bind the
    // same port and take half the connections; a busy port must be an
    // error.
    builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
    builder.AddListeningPort(
        config.listen(), grpc::experimental::TlsServerCredentials(tls_options),
        &grpc_port_);
    builder.SetMaxReceiveMessageSize(
        static_cast<int>(config.max_request_bytes()));
    // The CA service is callback-based (no thread per call in flight);
    // only the admin service over mTLS, rarely called, uses gRPC's sync
    // thread pool, at its defaults.
    builder.RegisterService(&ca_service_);
    builder.RegisterService(&admin_over_tls_);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || grpc_port_ == 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on ", config.listen(),
                       " (address in use or not local?)"));
    }

    // The admin socket: guarded by the data directory (0700) and the
    // socket's own mode (0600).
    socket_path_ = util::JoinPath(config.data_dir(), kAdminSocketFile);
    unlink(socket_path_.c_str());
    grpc::ServerBuilder admin_builder;
    admin_builder.AddListeningPort(absl::StrCat("unix:", socket_path_),
                                   grpc::InsecureServerCredentials());
    admin_builder.RegisterService(&admin_over_socket_);
    admin_server_ = admin_builder.BuildAndStart();
    if (admin_server_ == nullptr) {
      return absl::UnavailableError(
          absl::StrCat("cannot listen on admin socket ", socket_path_));
    }
    chmod(socket_path_.c_str(), 0600);

    absl::StatusOr<std::unique_ptr<util::AdminHttpServer>> http =
        util::AdminHttpServer::Create(config.admin_http_listen(), nullptr);
    if (!http.ok()) return http.status();
    http_ = std::move(*http);
    util::RegisterStandardHandlers(http_.get(), &state_->metrics(),
                                   [this] { return ready_.load(); });
    if (absl::Status s = http_->Start(); !s.ok()) return s;

    state_->metrics()
        .AddGauge("meshguard_ca_serving_certificate_expiry_timestamp_seconds",
                  "notAfter of the CA's current serving certificate (Unix "
                  "seconds); renewed at half its life.")
        ->WithLabels({})
        ->SetCallback([this] {
          return static_cast<double>(serving_not_after_unix_.load());
        });
    crl_thread_ = std::thread([this] { RefreshCrlLoop(); });
    serving_thread_ = std::thread([this] { ServingCertLoop(); });
    ready_ = true;
    util::LogLine("info", "ca_started")
        .Add("listen", config.listen())
        .Add("grpc_port", grpc_port_)
        .Add("admin_socket", socket_path_)
        .Add("http_listen", config.admin_http_listen())
        .Add("http_port", http_->port())
        .Add("trust_domain", config.trust_domain())
        .Add("max_open_files", static_cast<int64_t>(max_open_files))
        .Emit();
    return absl::OkStatus();
  }

  void Shutdown() override {
    {
      absl::MutexLock lock(&mu_);
      if (shut_down_) return;
      shut_down_ = true;
    }
    ready_ = false;
    stop_.Notify();
    if (crl_thread_.joinable()) crl_thread_.join();
    if (serving_thread_.joinable()) serving_thread_.join();
    state_->StopTokenReviews();
    const auto deadline =
        std::chrono::system_clock::now() + std::chrono::seconds(5);
    if (server_ != nullptr) server_->Shutdown(deadline);
    if (admin_server_ != nullptr) admin_server_->Shutdown(deadline);
    if (http_ != nullptr) http_->Stop();
    if (!socket_path_.empty()) unlink(socket_path_.c_str());
  }

  int grpc_port() const override { return grpc_port_; }
  int http_port() const override { return http_ ? http_->port() : 0; }
  std::string admin_socket_path() const override { return socket_path_; }

 private:
  // Issues a new serving certificate with a new key and writes both
  // (key first, each replaced atomically). Until both are written the file
  // watcher sees a key that does not match the certificate and keeps
  // serving the previous pair.
  absl::Status RenewServingCertificate() {
    const CaConfig& config = state_->config();
    absl::StatusOr<crypto::EvpPkeyPtr> key = crypto::GenerateEcP256Key();
    if (!key.ok()) return key.status();
    crypto::LeafRequest request{key->get(),
                                state_->serving_identity(),
                                ToAbsl(config.serving_certificate_ttl()),
                                absl::Now(),
                                {},
                                {}};
    request.dns_names.assign(config.server_dns_names().begin(),
                             config.server_dns_names().end());
    request.dns_names.push_back("localhost");
    std::string host, port;
    if (SplitHostPort(config.listen(), &host, &port) && LooksLikeIp(host) &&
        host != "0.0.0.0" && host != "::" && host != "127.0.0.1") {
      request.ip_addresses.push_back(host);
    }
    request.ip_addresses.push_back("127.0.0.1");
    absl::StatusOr<crypto::X509Ptr> cert =
        state_->material().signer->IssueLeaf(request);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> cert_pem =
        crypto::CertificateToPem(cert->get());
    if (!cert_pem.ok()) return cert_pem.status();
    absl::StatusOr<std::string> key_pem = crypto::PrivateKeyToPem(key->get());
    if (!key_pem.ok()) return key_pem.status();
    if (absl::Status s =
            util::WriteFileAtomically(serving_key_path_, *key_pem, 0600);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = util::WriteFileAtomically(
            serving_cert_path_,
            absl::StrCat(*cert_pem, state_->material().intermediate_pem), 0644);
        !s.ok()) {
      return s;
    }
    const absl::Time not_after = crypto::NotAfter(cert->get());
    serving_not_after_unix_ = absl::ToUnixSeconds(not_after);
    // Half of the life it actually got from now (IssueLeaf backdates
    // notBefore for clock skew and clamps notAfter to the intermediate's),
    // and never sooner than a second from now.
    next_serving_renewal_ =
        request.now + std::max((not_after - request.now) / 2, absl::Seconds(1));
    util::LogLine("info", "serving_certificate_issued")
        .Add("serial", crypto::SerialHex(cert->get()))
        .AddTime("not_after", not_after)
        .AddTime("renew_at", next_serving_renewal_)
        .Emit();
    return absl::OkStatus();
  }

  // Renews the serving certificate at half its life; on failure retries
  // every tenth of what is left (at least every second, at most every
  // minute) while the current one still serves.
  void ServingCertLoop() {
    absl::Duration wait = next_serving_renewal_ - absl::Now();
    while (!stop_.WaitForNotificationWithTimeout(
        std::max(wait, absl::ZeroDuration()))) {
      absl::Status s = RenewServingCertificate();
      if (s.ok()) {
        wait = next_serving_renewal_ - absl::Now();
        continue;
      }
      const absl::Time current_not_after =
          absl::FromUnixSeconds(serving_not_after_unix_.load());
      wait = std::clamp((current_not_after - absl::Now()) / 10,
                        absl::Seconds(1), absl::Minutes(1));
      util::LogLine("error", "serving_certificate_renewal_failed")
          .Add("message", s.ToString())
          .AddTime("current_not_after", current_not_after)
          .Emit();
    }
  }

  // Re-signs the CRL at half its validity, so peers never hold a stale one.
  void RefreshCrlLoop() {
    const absl::Duration period = ToAbsl(state_->config().crl_validity()) / 2;
    while (!stop_.WaitForNotificationWithTimeout(period)) {
      absl::StatusOr<uint64_t> sequence = state_->RefreshCrl();
      if (!sequence.ok()) {
        util::LogLine("error", "crl_refresh_failed")
            .Add("message", sequence.status().ToString())
            .Emit();
      }
    }
  }

  util::ExclusiveLock lock_;  // on the data dir; released last
  std::unique_ptr<CaState> state_;
  CertificateAuthorityImpl ca_service_;
  CertificateAuthorityAdminImpl admin_over_tls_;
  CertificateAuthorityAdminImpl admin_over_socket_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<grpc::Server> admin_server_;
  std::unique_ptr<util::AdminHttpServer> http_;
  std::string socket_path_;
  int grpc_port_ = 0;
  std::atomic<bool> ready_{false};
  absl::Notification stop_;
  std::thread crl_thread_;
  std::thread serving_thread_;
  std::string serving_key_path_;
  std::string serving_cert_path_;
  // Written by Start() before serving_thread_ exists, then only by it.
  absl::Time next_serving_renewal_;
  // notAfter of the pair being served (Unix seconds); read by /metrics.
  std::atomic<int64_t> serving_not_after_unix_{0};
  absl::Mutex mu_;
  bool shut_down_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CaServer>> CaServer::Create(
    CaConfig config, const util::ConfigOrigins& origins) {
  const std::string configured_trust_domain = config.trust_domain();
  ApplyCaDefaults(&config);
  // The data dir's CA says which trust domain it signs for; a config or
  // flag naming another one is a mistake to stop at, not to serve with.
  if (const std::string certified = SigningCertificateTrustDomain(config);
      !certified.empty()) {
    if (configured_trust_domain.empty()) {
      config.set_trust_domain(certified);
    } else if (configured_trust_domain != certified) {
      return origins.FieldError(
          "trust_domain",
          absl::StrCat("\"", configured_trust_domain,
                       "\", but the signing certificate ",
                       config.signing_cert_file(), " is for trust domain \"",
                       certified, "\""));
    }
  }
  if (absl::Status s = ValidateCaConfig(config, origins); !s.ok()) return s;
  absl::StatusOr<CaMaterial> material = LoadCaMaterial(config);
  if (!material.ok()) return material.status();
  // One CA per data dir: a second one would take over admin.sock and the
  // serving certificate and write to the same log. Held until exit.
  absl::StatusOr<util::ExclusiveLock> lock = util::ExclusiveLock::Acquire(
      util::JoinPath(config.data_dir(), kLockFile),
      absl::StrCat("data dir ", config.data_dir()));
  if (!lock.ok()) return lock.status();
  absl::StatusOr<std::unique_ptr<IssuanceStore>> store =
      IssuanceStore::Open(config.storage().dsn());
  if (!store.ok()) return store.status();
  std::unique_ptr<JwtAuthenticator> jwt;
  if (config.kubernetes().enabled()) {
    absl::StatusOr<std::unique_ptr<JwtAuthenticator>> created =
        JwtAuthenticator::Create(config.kubernetes());
    if (!created.ok()) {
      return absl::Status(
          created.status().code(),
          origins.FieldError("kubernetes", created.status().message())
              .message());
    }
    jwt = std::move(*created);
  }
  std::unique_ptr<TokenReviewer> token_reviewer;
  if (config.kubernetes().token_review().enabled()) {
    absl::StatusOr<std::unique_ptr<TokenReviewer>> created =
        TokenReviewer::Create(
            config.kubernetes(),
            [](const char* name) -> const char* { return std::getenv(name); },
            util::RealClock());
    if (!created.ok()) return created.status();
    token_reviewer = std::move(*created);
  }
  auto state = std::make_unique<CaState>(
      std::move(config), std::move(*material), std::move(*store),
      std::move(jwt), std::move(token_reviewer));
  return std::unique_ptr<CaServer>(
      new CaServerImpl(std::move(state), std::move(*lock)));
}

}  // namespace meshguard::ca
