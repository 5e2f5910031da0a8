#include "sidecar/config/sidecar_config.h"

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "identity/crypto/spiffe_id.h"
#include "sidecar/config/cpu_budget.h"

namespace meshguard::sidecar {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::meshguard::config::v1::SidecarConfig;

void DefaultDuration(google::protobuf::Duration* d, absl::Duration value) {
  if (d->seconds() == 0 && d->nanos() == 0) {
    *d = TimeUtil::NanosecondsToDuration(absl::ToInt64Nanoseconds(value));
  }
}

// host:port with a numeric port in 0..65535 (0 only where allowed).
absl::Status CheckAddress(const util::ConfigOrigins& origins,
                          absl::string_view field, const std::string& address,
                          bool allow_port_zero) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return origins.FieldError(
        field, absl::StrCat("\"", address, "\" is not host:port"));
  }
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 0 ||
      port > 65535 || (port == 0 && !allow_port_zero)) {
    return origins.FieldError(
        field, absl::StrCat("\"", address, "\" has no valid port"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Duration ToAbsl(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

void ApplySidecarDefaults(SidecarConfig* config) {
  if (config->trust_domain().empty()) {
    config->set_trust_domain(std::string(crypto::kDefaultTrustDomain));
  }
  auto* ca = config->mutable_ca();
  if (ca->address().empty()) ca->set_address("127.0.0.1:15012");
  if (ca->server_name().empty()) ca->set_server_name("meshguard-ca");
  auto* listeners = config->mutable_listeners();
  if (listeners->outbound().empty()) listeners->set_outbound("127.0.0.1:15001");
  if (listeners->inbound().empty()) listeners->set_inbound("0.0.0.0:15006");
  if (listeners->admin().empty()) listeners->set_admin("127.0.0.1:15000");
  if (config->app_address().empty()) config->set_app_address("127.0.0.1:8080");
  if (config->workers() == 0) {
    config->set_workers(static_cast<uint32_t>(CurrentCpuBudget().Workers()));
  }
  auto* timeouts = config->mutable_timeouts();
  DefaultDuration(timeouts->mutable_connect(), absl::Seconds(5));
  DefaultDuration(timeouts->mutable_idle(), absl::Seconds(300));
  DefaultDuration(timeouts->mutable_drain(), absl::Seconds(15));
  auto* rotation = config->mutable_rotation();
  if (rotation->renew_fraction() == 0) rotation->set_renew_fraction(0.5);
  if (rotation->jitter_fraction() == 0) rotation->set_jitter_fraction(0.1);
  DefaultDuration(rotation->mutable_initial_backoff(), absl::Seconds(1));
  DefaultDuration(rotation->mutable_max_backoff(), absl::Seconds(60));
  auto* log = config->mutable_access_log();
  if (log->path().empty()) log->set_path("stdout");
  if (log->sample_rate() == 0) log->set_sample_rate(1.0);
  auto* metrics = config->mutable_metrics();
  if (metrics->max_principals() == 0) metrics->set_max_principals(100);
  if (metrics->max_methods() == 0) metrics->set_max_methods(100);
}

absl::Status ValidateSidecarConfig(const SidecarConfig& config,
                                   const util::ConfigOrigins& origins) {
  if (absl::Status s =
          crypto::SpiffeId::ValidateTrustDomain(config.trust_domain());
      !s.ok()) {
    return origins.FieldError("trust_domain", s.message());
  }
  if (config.ca().ca_bundle_file().empty()) {
    return origins.Missing("ca.ca_bundle_file", "--ca-bundle",
                           "the roots that authenticate the CA");
  }
  if (config.ca().token_file().empty() && config.ca().join_token().empty()) {
    return origins.Missing("ca.token_file / ca.join_token",
                           "--token-file / --join-token",
                           "exactly one bootstrap credential");
  }
  if (!config.ca().token_file().empty() && !config.ca().join_token().empty()) {
    const std::string other = origins.Where("ca.token_file");
    return origins.FieldError(
        "ca.join_token",
        absl::StrCat("only one bootstrap credential may be given; "
                     "ca.token_file is set too",
                     other.empty() ? "" : absl::StrCat(" (", other, ")")));
  }
  if (absl::Status s =
          CheckAddress(origins, "ca.address", config.ca().address(), false);
      !s.ok()) {
    return s;
  }
  for (const auto& [field, address] :
       {std::pair<const char*, const std::string&>{
            "listeners.outbound", config.listeners().outbound()},
        {"listeners.inbound", config.listeners().inbound()},
        {"listeners.admin", config.listeners().admin()}}) {
    if (absl::Status s = CheckAddress(origins, field, address, true); !s.ok()) {
      return s;
    }
  }
  if (absl::Status s =
          CheckAddress(origins, "app_address", config.app_address(), false);
      !s.ok()) {
    return s;
  }
  if (config.workers() > 256)
    return origins.FieldError("workers", "at most 256");
  absl::flat_hash_set<std::string> authorities;
  for (int i = 0; i < config.routes_size(); ++i) {
    const auto& route = config.routes(i);
    std::string field = absl::StrCat("routes[", i, "]");
    if (route.authority().empty()) {
      return origins.FieldError(absl::StrCat(field, ".authority"), "required");
    }
    if (!authorities.insert(route.authority()).second) {
      return origins.FieldError(
          absl::StrCat(field, ".authority"),
          absl::StrCat("\"", route.authority(), "\" appears twice"));
    }
    if (absl::Status s = CheckAddress(origins, absl::StrCat(field, ".upstream"),
                                      route.upstream(), false);
        !s.ok()) {
      return s;
    }
    if (!route.spiffe_id().empty()) {
      absl::StatusOr<crypto::SpiffeId> id =
          crypto::SpiffeId::Parse(route.spiffe_id());
      if (!id.ok()) {
        return origins.FieldError(absl::StrCat(field, ".spiffe_id"),
                                  id.status().message());
      }
      // Peers are verified against our own trust domain's bundle: an ID of
      // another one could never be presented, and every call would fail.
      if (!id->MemberOf(config.trust_domain())) {
        return origins.FieldError(
            absl::StrCat(field, ".spiffe_id"),
            absl::StrCat("\"", route.spiffe_id(),
                         "\" is not in the trust domain \"",
                         config.trust_domain(), "\""));
      }
    }
  }
  const auto& rotation = config.rotation();
  if (rotation.renew_fraction() <= 0 || rotation.renew_fraction() >= 1) {
    return origins.FieldError("rotation.renew_fraction", "must be in (0, 1)");
  }
  if (rotation.jitter_fraction() < 0 || rotation.jitter_fraction() >= 0.5) {
    return origins.FieldError("rotation.jitter_fraction",
                              "must be in [0, 0.5)");
  }
  // Durations a file may set that a zero would replace with the default:
  // negative is a mistake, not a default.
  for (const auto& [field, d] :
       {std::pair<const char*, const google::protobuf::Duration&>{
            "ca.ttl", config.ca().ttl()},
        {"rotation.initial_backoff", rotation.initial_backoff()},
        {"rotation.max_backoff", rotation.max_backoff()}}) {
    if (ToAbsl(d) < absl::ZeroDuration()) {
      return origins.FieldError(field, "must not be negative");
    }
  }
  if (const absl::Duration ttl = ToAbsl(config.ca().ttl());
      ttl > absl::ZeroDuration() && ttl < absl::Seconds(1)) {
    return origins.FieldError(
        "ca.ttl", "must be at least 1s (or unset for the CA's default)");
  }
  if (ToAbsl(rotation.max_backoff()) < ToAbsl(rotation.initial_backoff())) {
    // Blame the one that was set: a file that sets only initial_backoff
    // above the default max_backoff has its mistake in initial_backoff.
    if (origins.Where("rotation.max_backoff").empty() &&
        !origins.Where("rotation.initial_backoff").empty()) {
      return origins.FieldError(
          "rotation.initial_backoff",
          absl::StrCat("must not exceed max_backoff (",
                       absl::FormatDuration(ToAbsl(rotation.max_backoff())),
                       ")"));
    }
    return origins.FieldError("rotation.max_backoff",
                              "must be at least initial_backoff");
  }
  if (config.access_log().sample_rate() < 0 ||
      config.access_log().sample_rate() > 1) {
    return origins.FieldError("access_log.sample_rate", "must be in [0, 1]");
  }
  for (const auto& [field, d] :
       {std::pair<const char*, const google::protobuf::Duration&>{
            "timeouts.connect", config.timeouts().connect()},
        {"timeouts.idle", config.timeouts().idle()},
        {"timeouts.drain", config.timeouts().drain()}}) {
    if (ToAbsl(d) <= absl::ZeroDuration()) {
      return origins.FieldError(field, "must be positive");
    }
  }
  return absl::OkStatus();
}

}  // namespace meshguard::sidecar
