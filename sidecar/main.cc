// meshguard-sidecar: parses flags and the config file, then runs the
// sidecar (sidecar/mesh/sidecar.cc).
#include <signal.h>

#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "identity/util/config_origins.h"
#include "identity/util/flag_names.h"
#include "identity/util/yaml_config.h"
#include "sidecar/config/sidecar_config.h"
#include "sidecar/mesh/sidecar.h"

ABSL_FLAG(std::string, config, "",
          "YAML config (meshguard.config.v1.SidecarConfig). Flags given "
          "explicitly override its fields.");
ABSL_FLAG(std::string, trust_domain, "", "Trust domain (cluster.local).");
ABSL_FLAG(std::string, ca, "", "CA address (127.0.0.1:15012).");
ABSL_FLAG(std::string, ca_bundle, "",
          "PEM roots that authenticate the CA (required).");
ABSL_FLAG(std::string, ca_server_name, "",
          "CA certificate name (meshguard-ca).");
ABSL_FLAG(std::string, token_file, "",
          "Projected service-account token file (bootstrap).");
ABSL_FLAG(std::string, join_token, "", "One-time join token (bootstrap).");
ABSL_FLAG(absl::Duration, ttl, absl::ZeroDuration(),
          "Requested certificate lifetime (0: the CA's default).");
ABSL_FLAG(std::string, app, "", "The local app, h2c (127.0.0.1:8080).");
ABSL_FLAG(std::string, inbound_listen, "",
          "Inbound mTLS listener (0.0.0.0:15006).");
ABSL_FLAG(std::string, outbound_listen, "",
          "Outbound h2c listener for the app's calls (127.0.0.1:15001).");
ABSL_FLAG(std::string, admin_listen, "",
          "Admin HTTP endpoint (127.0.0.1:15000).");
ABSL_FLAG(std::string, policy, "", "Authorization policy file (YAML).");
ABSL_FLAG(uint32_t, workers, 0,
          "Event-loop threads (0: one per CPU this process may use: its "
          "affinity, capped by its cgroup's CPU limit).");
ABSL_FLAG(std::vector<std::string>, route, {},
          "Outbound routes, comma-separated AUTHORITY=HOST:PORT[=SPIFFE_ID].");
ABSL_FLAG(bool, transparent, false,
          "Dial the original destination when no route matches (iptables "
          "interception).");
ABSL_FLAG(std::string, access_log, "", "Access log: stdout, off, or a file.");
ABSL_FLAG(absl::Duration, bootstrap_timeout, absl::Minutes(2),
          "How long to keep trying for the first certificate.");

namespace {

constexpr char kUsage[] =
    "meshguard-sidecar: mTLS, identity and authorization beside a gRPC "
    "service.\n\n"
    "Usage:\n"
    "  meshguard-sidecar --ca-bundle FILE (--join-token T | --token-file F)\n"
    "      [--config sidecar.yaml] [--app 127.0.0.1:8080] [--policy FILE]\n"
    "      [--route AUTHORITY=HOST:PORT[=SPIFFE_ID],...] [--transparent]\n\n"
    "Listens for the app's calls on --outbound-listen (h2c), for peers on\n"
    "--inbound-listen (mTLS), and serves /metrics, /healthz, /readyz, /certs,\n"
    "/config_dump and /policy on --admin-listen.\n";

int Fail(const std::string& message) {
  fprintf(stderr, "meshguard-sidecar: %s\n", message.c_str());
  return 1;
}

// "--inbound-listen", as the usage and the operator write it.
template <typename T>
std::string FlagName(const absl::Flag<T>& flag) {
  return meshguard::util::DashedFlag(
      absl::GetFlagReflectionHandle(flag).Name());
}

}  // namespace

int main(int argc, char** argv) {
  if (meshguard::util::PrintHelpIfAsked(argc, argv, kUsage,
                                        "sidecar/main.cc")) {
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<std::string> args =
      meshguard::util::ParseCommandLine(argc, argv);
  if (args.size() != 1) {
    return Fail(
        absl::StrCat("unexpected argument \"", args[1], "\" (try --help)"));
  }

  meshguard::config::v1::SidecarConfig config;
  // Where each field came from (file line or flag), for validation errors.
  meshguard::util::ConfigOrigins origins;
  if (const std::string path = absl::GetFlag(FLAGS_config); !path.empty()) {
    meshguard::util::FieldLines lines;
    if (absl::Status s = meshguard::util::LoadYamlFile(path, &config, &lines);
        !s.ok()) {
      return Fail(std::string(s.message()));
    }
    origins.SetFile(path, std::move(lines));
  }
  // A flag given explicitly overrides the file's `field`.
  auto set = [&](const absl::Flag<std::string>& flag, const char* field,
                 auto setter) {
    const std::string value = absl::GetFlag(flag);
    if (value.empty()) return;
    setter(value);
    origins.SetByFlag(field, FlagName(flag));
  };
  set(FLAGS_trust_domain, "trust_domain",
      [&](const std::string& v) { config.set_trust_domain(v); });
  set(FLAGS_ca, "ca.address",
      [&](const std::string& v) { config.mutable_ca()->set_address(v); });
  set(FLAGS_ca_bundle, "ca.ca_bundle_file", [&](const std::string& v) {
    config.mutable_ca()->set_ca_bundle_file(v);
  });
  set(FLAGS_ca_server_name, "ca.server_name",
      [&](const std::string& v) { config.mutable_ca()->set_server_name(v); });
  set(FLAGS_token_file, "ca.token_file",
      [&](const std::string& v) { config.mutable_ca()->set_token_file(v); });
  set(FLAGS_join_token, "ca.join_token",
      [&](const std::string& v) { config.mutable_ca()->set_join_token(v); });
  if (const absl::Duration ttl = absl::GetFlag(FLAGS_ttl);
      ttl != absl::ZeroDuration()) {
    if (ttl < absl::Seconds(1)) {
      return Fail(absl::StrCat("--ttl ", absl::FormatDuration(ttl),
                               ": must be at least 1s (or 0 for the CA's "
                               "default)"));
    }
    const int64_t seconds = absl::ToInt64Seconds(ttl);
    config.mutable_ca()->mutable_ttl()->set_seconds(seconds);
    config.mutable_ca()->mutable_ttl()->set_nanos(static_cast<int32_t>(
        absl::ToInt64Nanoseconds(ttl - absl::Seconds(seconds))));
    origins.SetByFlag("ca.ttl", FlagName(FLAGS_ttl));
  }
  set(FLAGS_app, "app_address",
      [&](const std::string& v) { config.set_app_address(v); });
  set(FLAGS_inbound_listen, "listeners.inbound", [&](const std::string& v) {
    config.mutable_listeners()->set_inbound(v);
  });
  set(FLAGS_outbound_listen, "listeners.outbound", [&](const std::string& v) {
    config.mutable_listeners()->set_outbound(v);
  });
  set(FLAGS_admin_listen, "listeners.admin",
      [&](const std::string& v) { config.mutable_listeners()->set_admin(v); });
  set(FLAGS_policy, "policy_file",
      [&](const std::string& v) { config.set_policy_file(v); });
  set(FLAGS_access_log, "access_log.path",
      [&](const std::string& v) { config.mutable_access_log()->set_path(v); });
  if (absl::GetFlag(FLAGS_workers) > 0) {
    config.set_workers(absl::GetFlag(FLAGS_workers));
    origins.SetByFlag("workers", FlagName(FLAGS_workers));
  }
  if (absl::GetFlag(FLAGS_transparent)) config.set_transparent(true);
  for (const std::string& route : absl::GetFlag(FLAGS_route)) {
    std::vector<std::string> parts = absl::StrSplit(route, '=');
    if (parts.size() < 2 || parts.size() > 3) {
      return Fail(absl::StrCat("--route \"", route,
                               "\": want AUTHORITY=HOST:PORT[=SPIFFE_ID]"));
    }
    // After the file's routes: errors name the element by its index.
    origins.SetByFlag(absl::StrCat("routes[", config.routes_size(), "]"),
                      absl::StrCat(FlagName(FLAGS_route), " \"", route, "\""));
    auto* r = config.add_routes();
    r->set_authority(parts[0]);
    r->set_upstream(parts[1]);
    if (parts.size() == 3) r->set_spiffe_id(parts[2]);
  }

  meshguard::sidecar::ApplySidecarDefaults(&config);
  if (absl::Status s =
          meshguard::sidecar::ValidateSidecarConfig(config, origins);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }

  // Block the stop signals in every thread (they inherit the mask), so the
  // main thread can wait for them synchronously.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  meshguard::sidecar::RunOptions options;
  options.bootstrap_timeout = absl::GetFlag(FLAGS_bootstrap_timeout);
  if (absl::Status s = meshguard::sidecar::RunSidecar(config, options);
      !s.ok()) {
    return Fail(std::string(s.message()));
  }
  return 0;
}
