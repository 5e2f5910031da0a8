#include "identity/ca/ca_material.h"

#include <sys/stat.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "google/protobuf/util/time_util.h"
#include "identity/ca/token_review.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/verifier.h"
#include "identity/util/file_util.h"
#include "identity/util/proto_duration.h"

namespace meshguard::ca {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::meshguard::config::v1::CaConfig;
using ::meshguard::util::JoinPath;

using ::meshguard::util::ToAbsl;
using ::meshguard::util::ToProtoDuration;

void DefaultDuration(google::protobuf::Duration* d, absl::Duration value) {
  if (d->seconds() == 0 && d->nanos() == 0) *d = ToProtoDuration(value);
}

// A duration as the config file writes it: "5s", "0.100s".
std::string YamlDuration(absl::Duration d) {
  return TimeUtil::ToString(ToProtoDuration(d));
}

// kubernetes.token_review: what can be checked without the environment or
// the files (TokenReviewer::Create checks those at start).
absl::Status ValidateTokenReview(const CaConfig& config,
                                 const util::ConfigOrigins& origins) {
  const auto& review = config.kubernetes().token_review();
  auto field = [&origins](absl::string_view name, absl::string_view why) {
    return origins.FieldError(absl::StrCat("kubernetes.token_review.", name),
                              why);
  };
  const absl::Duration timeout = ToAbsl(review.timeout());
  if (timeout < kMinTokenReviewTimeout || timeout > kMaxTokenReviewTimeout) {
    return field("timeout",
                 absl::StrCat(YamlDuration(timeout), " is outside [",
                              YamlDuration(kMinTokenReviewTimeout), ", ",
                              YamlDuration(kMaxTokenReviewTimeout), "]"));
  }
  const absl::Duration cache_ttl = ToAbsl(review.cache_ttl());
  if (cache_ttl < absl::ZeroDuration() || cache_ttl > kMaxTokenReviewCacheTtl) {
    return field("cache_ttl",
                 absl::StrCat(YamlDuration(cache_ttl), " is outside [0s, ",
                              YamlDuration(kMaxTokenReviewCacheTtl),
                              "] (\"0s\" turns the cache off)"));
  }
  if (!review.api_server().empty()) {
    if (absl::StatusOr<ApiServerUrl> url =
            ParseApiServerUrl(review.api_server());
        !url.ok()) {
      return field("api_server", url.status().message());
    }
  }
  if (review.enabled()) {
    if (!config.kubernetes().enabled()) {
      return field("enabled",
                   "reviews follow the offline token checks, which are off: "
                   "set kubernetes.jwks_file or kubernetes.public_key_files");
    }
    if (review.ca_file().empty()) return field("ca_file", "required");
    if (review.token_file().empty()) return field("token_file", "required");
  }
  return absl::OkStatus();
}

absl::Status WithFile(const std::string& path, const absl::Status& status) {
  return absl::Status(status.code(),
                      absl::StrCat(path, ": ", status.message()));
}

}  // namespace

absl::StatusOr<InitResult> InitDataDir(const InitOptions& options) {
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("--data-dir is required");
  }
  if (absl::Status s =
          crypto::SpiffeId::ValidateTrustDomain(options.trust_domain);
      !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--trust-domain: ", s.message()));
  }
  for (const auto& [flag, ttl] :
       {std::pair<const char*, absl::Duration>{"--root-ttl", options.root_ttl},
        {"--intermediate-ttl", options.intermediate_ttl}}) {
    if (ttl <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat(
          flag, " ", absl::FormatDuration(ttl), ": must be positive"));
    }
  }
  for (const char* name : {kRootCertFile, kRootKeyFile, kIntermediateCertFile,
                           kIntermediateKeyFile, kBundleFile}) {
    std::string path = JoinPath(options.data_dir, name);
    if (util::FileExists(path)) {
      return absl::AlreadyExistsError(absl::StrCat(
          path, " already exists; refusing to overwrite CA material"));
    }
  }

  // Build everything in memory first, so a failure writes nothing (not
  // even the directory).
  absl::StatusOr<crypto::EvpPkeyPtr> root_key = crypto::GenerateEcP256Key();
  if (!root_key.ok()) return root_key.status();
  absl::StatusOr<crypto::X509Ptr> root = crypto::CreateRootCertificate(
      root_key->get(), options.trust_domain, options.root_ttl, options.now);
  if (!root.ok()) return root.status();
  absl::StatusOr<crypto::EvpPkeyPtr> int_key = crypto::GenerateEcP256Key();
  if (!int_key.ok()) return int_key.status();
  absl::StatusOr<crypto::X509Ptr> intermediate =
      crypto::CreateIntermediateCertificate(
          int_key->get(), root->get(), root_key->get(), options.trust_domain,
          options.intermediate_ttl, options.now);
  if (!intermediate.ok()) return intermediate.status();

  absl::StatusOr<std::string> root_pem = crypto::CertificateToPem(root->get());
  absl::StatusOr<std::string> root_key_pem =
      crypto::PrivateKeyToPem(root_key->get());
  absl::StatusOr<std::string> int_pem =
      crypto::CertificateToPem(intermediate->get());
  absl::StatusOr<std::string> int_key_pem =
      crypto::PrivateKeyToPem(int_key->get());
  for (const absl::Status& s : {root_pem.status(), root_key_pem.status(),
                                int_pem.status(), int_key_pem.status()}) {
    if (!s.ok()) return s;
  }

  if (absl::Status s = util::MakeDirectories(options.data_dir, 0700); !s.ok()) {
    return s;
  }
  // Keys first: if a crash interrupts, the next init refuses instead of
  // pairing a new certificate with a lost key.
  const std::pair<const char*, std::pair<const std::string*, mode_t>> files[] =
      {{kRootKeyFile, {&*root_key_pem, 0600}},
       {kIntermediateKeyFile, {&*int_key_pem, 0600}},
       {kRootCertFile, {&*root_pem, 0644}},
       {kIntermediateCertFile, {&*int_pem, 0644}},
       {kBundleFile, {&*root_pem, 0644}}};
  for (const auto& [name, content] : files) {
    if (absl::Status s = util::WriteNewFile(JoinPath(options.data_dir, name),
                                            *content.first, content.second);
        !s.ok()) {
      return s;
    }
  }
  return InitResult{crypto::NotAfter(root->get()),
                    crypto::NotAfter(intermediate->get())};
}

void ApplyCaDefaults(CaConfig* config) {
  if (config->trust_domain().empty()) {
    config->set_trust_domain(std::string(crypto::kDefaultTrustDomain));
  }
  if (config->listen().empty()) config->set_listen("127.0.0.1:15012");
  if (config->admin_http_listen().empty()) {
    config->set_admin_http_listen("127.0.0.1:15014");
  }
  if (config->server_dns_names().empty()) {
    config->add_server_dns_names("meshguard-ca");
    config->add_server_dns_names("meshguard-ca.meshguard-system.svc");
    config->add_server_dns_names(
        "meshguard-ca.meshguard-system.svc.cluster.local");
  }
  DefaultDuration(config->mutable_default_ttl(), absl::Hours(1));
  DefaultDuration(config->mutable_max_ttl(), absl::Hours(24));
  DefaultDuration(config->mutable_crl_validity(), absl::Hours(24));
  DefaultDuration(config->mutable_serving_certificate_ttl(),
                  absl::Hours(24 * 90));
  if (!config->has_rate_limit()) {
    config->mutable_rate_limit()->set_requests_per_second(5);
    config->mutable_rate_limit()->set_burst(20);
  }
  if (config->max_request_bytes() == 0) config->set_max_request_bytes(65536);
  if (config->max_bundle_watchers() == 0) {
    config->set_max_bundle_watchers(10000);
  }
  if (config->max_bundle_watchers_per_address() == 0) {
    config->set_max_bundle_watchers_per_address(256);
  }
  if (config->storage().kind().empty()) {
    config->mutable_storage()->set_kind("sqlite");
  }
  if (config->storage().dsn().empty()) {
    config->mutable_storage()->set_dsn(
        JoinPath(config->data_dir(), kDatabaseFile));
  }
  if (config->signing_cert_file().empty()) {
    config->set_signing_cert_file(
        JoinPath(config->data_dir(), kIntermediateCertFile));
  }
  if (config->signing_key_file().empty()) {
    config->set_signing_key_file(
        JoinPath(config->data_dir(), kIntermediateKeyFile));
  }
  if (config->trust_bundle_file().empty()) {
    config->set_trust_bundle_file(JoinPath(config->data_dir(), kBundleFile));
  }
  auto* k8s = config->mutable_kubernetes();
  if (!k8s->jwks_file().empty() || !k8s->public_key_files().empty()) {
    k8s->set_enabled(true);
  }
  if (k8s->issuer().empty()) {
    k8s->set_issuer("https://kubernetes.default.svc.cluster.local");
  }
  if (k8s->audience().empty()) k8s->set_audience("meshguard-ca");
  DefaultDuration(k8s->mutable_clock_skew(), absl::Seconds(30));
  // max_token_lifetime is left unset: JwtAuthenticator applies its default
  // (kDefaultMaxTokenLifetime), and an explicit "0s" means no limit.
  // token_review.api_server stays empty: its default comes from the
  // environment, when the reviewer is made (TokenReviewer::Create).
  auto* review = k8s->mutable_token_review();
  if (review->ca_file().empty()) {
    review->set_ca_file(std::string(kDefaultTokenReviewCaFile));
  }
  if (review->token_file().empty()) {
    review->set_token_file(std::string(kDefaultTokenReviewTokenFile));
  }
  // Presence, not zero: an explicit "0s" timeout is an error and an
  // explicit "0s" cache_ttl turns the cache off.
  if (!review->has_timeout()) {
    *review->mutable_timeout() = ToProtoDuration(kDefaultTokenReviewTimeout);
  }
  if (!review->has_cache_ttl()) {
    *review->mutable_cache_ttl() = ToProtoDuration(kDefaultTokenReviewCacheTtl);
  }
}

absl::Status ValidateCaConfig(const CaConfig& config,
                              const util::ConfigOrigins& origins) {
  if (absl::Status s =
          crypto::SpiffeId::ValidateTrustDomain(config.trust_domain());
      !s.ok()) {
    return origins.FieldError("trust_domain", s.message());
  }
  if (config.data_dir().empty()) {
    return origins.Missing("data_dir", "--data-dir", "");
  }
  if (ToAbsl(config.default_ttl()) <= absl::ZeroDuration()) {
    return origins.FieldError("default_ttl", "must be positive");
  }
  if (ToAbsl(config.max_ttl()) < ToAbsl(config.default_ttl())) {
    // Blame the one that was set: a file that sets only default_ttl above
    // the default max_ttl has its mistake in default_ttl.
    if (origins.Where("max_ttl").empty() &&
        !origins.Where("default_ttl").empty()) {
      return origins.FieldError(
          "default_ttl",
          absl::StrCat("must not exceed max_ttl (",
                       absl::FormatDuration(ToAbsl(config.max_ttl())), ")"));
    }
    return origins.FieldError("max_ttl", "must be at least default_ttl");
  }
  if (ToAbsl(config.serving_certificate_ttl()) < absl::Seconds(10)) {
    return origins.FieldError(
        "serving_certificate_ttl",
        "must be at least 10s (it is renewed at half of it, and servers "
        "reload it within a second or more)");
  }
  if (config.rate_limit().requests_per_second() < 0) {
    return origins.FieldError("rate_limit.requests_per_second",
                              "must not be negative");
  }
  if (config.storage().kind() != "sqlite") {
    return origins.FieldError(
        "storage.kind",
        absl::StrCat("\"", config.storage().kind(),
                     "\" is not supported by this build (only \"sqlite\")"));
  }
  for (const std::string& id : config.admin_ids()) {
    if (absl::StatusOr<crypto::SpiffeId> parsed = crypto::SpiffeId::Parse(id);
        !parsed.ok()) {
      return origins.FieldError("admin_ids", parsed.status().message());
    }
  }
  return ValidateTokenReview(config, origins);
}

std::string SigningCertificateTrustDomain(const CaConfig& config) {
  absl::StatusOr<std::string> pem = util::ReadFile(config.signing_cert_file());
  if (!pem.ok()) return "";
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(*pem);
  if (!chain.ok() || chain->empty()) return "";
  for (const std::string& uri : crypto::UriSans(chain->front().get())) {
    absl::string_view rest = uri;
    if (!absl::ConsumePrefix(&rest, "spiffe://")) continue;
    if (crypto::SpiffeId::ValidateTrustDomain(rest).ok()) {
      return std::string(rest);
    }
  }
  return "";
}

absl::Status CheckDataDirAndKeyModes(const CaConfig& config) {
  // Group bits are allowed: Kubernetes gives a PVC and a Secret volume the
  // pod's fsGroup (a data dir 2770, keys 0440 in deploy/k8s/ca).
  struct stat st;
  if (!config.data_dir().empty() && stat(config.data_dir().c_str(), &st) == 0 &&
      (st.st_mode & S_IWOTH)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "data dir %s is writable by every user (mode %04o): another user "
        "could replace the issuance log, the serving key or the admin "
        "socket; chmod o-w %s (meshguard-ca init makes it 0700)",
        config.data_dir(), st.st_mode & 07777, config.data_dir()));
  }
  // stat, not lstat: a Secret's files are symlinks into its ..data dir.
  const std::string& key = config.signing_key_file();
  if (stat(key.c_str(), &st) == 0 && (st.st_mode & S_IRWXO)) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "signing key %s is open to every user (mode %04o); chmod o-rwx %s "
        "(0600, or 0440 with a group as a Kubernetes Secret's defaultMode)",
        key, st.st_mode & 07777, key));
  }
  return absl::OkStatus();
}

absl::StatusOr<CaMaterial> LoadCaMaterial(const CaConfig& config) {
  if (absl::Status s = CheckDataDirAndKeyModes(config); !s.ok()) return s;
  CaMaterial material;
  absl::StatusOr<std::string> cert_pem =
      util::ReadFile(config.signing_cert_file());
  if (!cert_pem.ok()) return cert_pem.status();
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(*cert_pem);
  if (!chain.ok()) return WithFile(config.signing_cert_file(), chain.status());
  absl::StatusOr<std::string> key_pem =
      util::ReadFile(config.signing_key_file(), 1 << 20);
  if (!key_pem.ok()) return key_pem.status();
  absl::StatusOr<crypto::EvpPkeyPtr> key = crypto::PrivateKeyFromPem(*key_pem);
  if (!key.ok()) return WithFile(config.signing_key_file(), key.status());

  // Roots: the bundle file plus any extra bundle files (root rotation).
  std::vector<std::string> bundle_files = {config.trust_bundle_file()};
  for (const std::string& f : config.extra_trust_bundle_files()) {
    bundle_files.push_back(f);
  }
  material.earliest_root_expiry = absl::InfiniteFuture();
  for (const std::string& file : bundle_files) {
    absl::StatusOr<std::string> pem = util::ReadFile(file);
    if (!pem.ok()) return pem.status();
    absl::StatusOr<std::vector<crypto::X509Ptr>> roots =
        crypto::ParseCertificateChainPem(*pem);
    if (!roots.ok()) return WithFile(file, roots.status());
    for (const crypto::X509Ptr& root : *roots) {
      absl::StatusOr<std::string> one = crypto::CertificateToPem(root.get());
      if (!one.ok()) return WithFile(file, one.status());
      bool seen = false;
      for (const std::string& existing : material.root_pems) {
        seen = seen || existing == *one;
      }
      if (seen) continue;
      material.root_pems.push_back(*one);
      material.earliest_root_expiry =
          std::min(material.earliest_root_expiry, crypto::NotAfter(root.get()));
    }
  }

  // The signing certificate must chain to the bundle, or every certificate
  // it signs would be refused by every peer.
  absl::StatusOr<std::shared_ptr<const crypto::TrustBundle>> bundle =
      crypto::TrustBundle::Create(config.trust_domain(), material.root_pems,
                                  {});
  if (!bundle.ok()) {
    return WithFile(config.trust_bundle_file(), bundle.status());
  }
  absl::StatusOr<std::string> signing_pem =
      crypto::CertificateToPem(chain->front().get());
  if (!signing_pem.ok()) return signing_pem.status();
  material.intermediate_pem = *cert_pem;
  material.intermediate_not_after = crypto::NotAfter(chain->front().get());

  crypto::X509Ptr signing_cert = std::move(chain->front());
  std::vector<crypto::X509Ptr> above;
  for (size_t i = 1; i < chain->size(); ++i) {
    above.push_back(std::move((*chain)[i]));
  }
  std::vector<X509*> above_raw;
  for (const crypto::X509Ptr& c : above) above_raw.push_back(c.get());
  crypto::VerifyOptions options;
  options.at = absl::Now();
  if (absl::Status s =
          crypto::VerifyPath(signing_cert.get(), above_raw, **bundle, options);
      !s.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("signing certificate ", config.signing_cert_file(),
                     " does not chain to a root in ",
                     config.trust_bundle_file(), ": ", s.message()));
  }

  absl::StatusOr<std::unique_ptr<crypto::CaSigner>> signer =
      crypto::CaSigner::Create(std::move(signing_cert), std::move(*key),
                               std::move(above));
  if (!signer.ok()) {
    return WithFile(config.signing_cert_file(), signer.status());
  }
  material.signer = std::move(*signer);
  return material;
}

}  // namespace meshguard::ca
