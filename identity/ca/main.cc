// meshguard-ca: the CA issuance service. main() parses flags and wires the
// parts; the work is in ca_material and ca_server.
#include <grpc/support/log.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "identity/ca/ca_material.h"
#include "identity/ca/ca_server.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/util/config_origins.h"
#include "identity/util/flag_names.h"
#include "identity/util/json_log.h"
#include "identity/util/yaml_config.h"

ABSL_FLAG(std::string, data_dir, "",
          "CA data directory (keys, bundle.pem, issuance log, admin.sock).");
ABSL_FLAG(std::string, trust_domain, "",
          "init: trust domain of the new CA (default cluster.local). serve: "
          "optional; must be the one the data dir's CA certifies, which is "
          "used when neither this flag nor the config sets one.");
ABSL_FLAG(absl::Duration, root_ttl, absl::Hours(24 * 365 * 10),
          "init: lifetime of the root certificate.");
ABSL_FLAG(absl::Duration, intermediate_ttl, absl::Hours(24 * 365),
          "init: lifetime of the intermediate (signing) certificate.");
ABSL_FLAG(std::string, config, "",
          "serve: YAML config (meshguard.config.v1.CaConfig). Flags given "
          "explicitly override it.");
ABSL_FLAG(std::string, listen, "",
          "serve: gRPC listen address (default 127.0.0.1:15012).");
ABSL_FLAG(std::string, admin_listen, "",
          "serve: HTTP listen address for /metrics, /healthz, /readyz "
          "(default 127.0.0.1:15014).");

namespace {

using ::meshguard::util::CommandHelp;

// Both commands: their usage, what they do, and the flags of both that
// they use. Their own flags come from CaCommandFlags().
const std::vector<CommandHelp>& CaCommands() {
  static const auto* commands = new std::vector<CommandHelp>{
      {"init",
       "init --data-dir D [--trust-domain cluster.local]\n"
       "      [--root-ttl 87600h] [--intermediate-ttl 8760h]",
       "Creates a new CA in D (made 0700 if missing): a root and an\n"
       "intermediate (signing) CA, ECDSA P-256: D/root.pem,\n"
       "D/root-key.pem, D/intermediate.pem, D/intermediate-key.pem (keys\n"
       "0600), and D/bundle.pem, the roots that workloads and meshguardctl\n"
       "--ca-bundle trust. Refuses to overwrite existing keys or\n"
       "certificates. Prints when the root and the intermediate expire (the\n"
       "intermediate never outlives the root).\n",
       {"data_dir", "trust_domain"}},
      {"serve",
       "serve --data-dir D [--config ca.yaml]\n"
       "      [--listen 127.0.0.1:15012] [--admin-listen 127.0.0.1:15014]\n"
       "      [--trust-domain TD]",
       "Serves meshguard.ca.v1 over TLS, with a serving certificate from D's\n"
       "intermediate; the admin API on D/admin.sock (0600); /metrics,\n"
       "/healthz and /readyz over HTTP. Issuances go to the log in D. The\n"
       "trust domain is the one D's CA certificate certifies. One\n"
       "meshguard-ca at a time per data dir (D/ca.lock). Stops on SIGTERM or\n"
       "SIGINT after answering the calls in flight.\n",
       {"data_dir", "trust_domain"}},
  };
  return *commands;
}

// The flags that go with one command only; --data-dir and --trust-domain
// go with both.
const meshguard::util::CommandFlags& CaCommandFlags() {
  static const auto* flags = new meshguard::util::CommandFlags{
      {"root_ttl", {"init"}},      {"intermediate_ttl", {"init"}},
      {"config", {"serve"}},       {"listen", {"serve"}},
      {"admin_listen", {"serve"}},
  };
  return *flags;
}

// The full help's text, before the flags.
const std::string& CaUsage() {
  static const std::string* usage = [] {
    auto* out = new std::string(
        "meshguard-ca: the meshguard certificate authority.\n\nUsage:\n");
    for (const CommandHelp& command : CaCommands()) {
      absl::StrAppend(
          out, "  meshguard-ca ", command.usage, "\n      ",
          absl::StrReplaceAll(absl::StripSuffix(command.description, "\n"),
                              {{"\n", "\n      "}}),
          "\n");
    }
    absl::StrAppend(out,
                    "\nmeshguard-ca COMMAND --help: what the command does, and "
                    "its flags.\n");
    return out;
  }();
  return *usage;
}

// Help for the command `words` name, or the full help if none: exit 0.
// Help for a command there is not is an error, as the command would be.
int Help(const std::vector<std::string>& words) {
  if (words.empty()) {
    meshguard::util::PrintFullHelp(CaUsage(), "identity/ca/main.cc");
    return 0;
  }
  const std::string help = meshguard::util::FormatCommandHelp(
      "meshguard-ca", words[0], CaCommands(), CaCommandFlags());
  if (help.empty()) {
    fprintf(stderr, "meshguard-ca: unknown command \"%s\"\n\n%s",
            words[0].c_str(), CaUsage().c_str());
    return 2;
  }
  fputs(help.c_str(), stdout);
  return 0;
}

absl::Notification* g_stop = nullptr;
std::atomic<bool> g_stopping{false};
// Set when gRPC stopped accepting on one of the CA's ports.
std::atomic<bool> g_listener_failed{false};

// Once only: absl::Notification aborts on a second Notify (Debian builds
// Abseil without NDEBUG).
void RequestStop() {
  if (g_stop != nullptr && !g_stopping.exchange(true)) g_stop->Notify();
}

void HandleSignal(int) {
  // Notify is async-signal-unsafe in general; a dedicated waiter thread
  // would be purer, but absl::Notification::Notify only takes a futex-based
  // mutex that no other code holds at signal time.
  RequestStop();
}

// gRPC's log, with one message acted on. gRPC 1.51 gives up a listening
// port for good when accept4() fails with anything but EINTR, EAGAIN or
// ECONNABORTED (out of descriptors: EMFILE, ENFILE; out of memory), and
// only logs "Failed accept4" (grpc/grpc#16058, #20418). A CA that can no
// longer be reached is worse than one that restarts: it stops as on
// SIGTERM, letting the calls it has finish, and exits 1, so that
// Kubernetes (or systemd) starts it again on the same durable log.
void OnGrpcLog(gpr_log_func_args* args) {
  fprintf(stderr, "%s %s:%d] %s\n", gpr_log_severity_string(args->severity),
          args->file, args->line, args->message);
  if (absl::StartsWith(args->message, "Failed accept4") &&
      absl::EndsWith(args->file, "tcp_server_posix.cc")) {
    if (!g_listener_failed.exchange(true)) {
      meshguard::util::LogLine("error", "grpc_listener_failed")
          .Add("error", args->message)
          .Add("action", "stopping; exit status 1")
          .Emit();
    }
    RequestStop();
  }
}

int Fail(const std::string& message) {
  fprintf(stderr, "meshguard-ca: %s\n", message.c_str());
  return 1;
}

int RunInit() {
  meshguard::ca::InitOptions options;
  options.data_dir = absl::GetFlag(FLAGS_data_dir);
  options.trust_domain = absl::GetFlag(FLAGS_trust_domain);
  if (options.trust_domain.empty()) {
    options.trust_domain = std::string(meshguard::crypto::kDefaultTrustDomain);
  }
  options.root_ttl = absl::GetFlag(FLAGS_root_ttl);
  options.intermediate_ttl = absl::GetFlag(FLAGS_intermediate_ttl);
  if (options.data_dir.empty()) return Fail("init: --data-dir is required");
  absl::StatusOr<meshguard::ca::InitResult> issued =
      meshguard::ca::InitDataDir(options);
  if (!issued.ok()) {
    return Fail(absl::StrCat("init: ", issued.status().message()));
  }
  printf("initialized CA for trust domain %s in %s\n",
         options.trust_domain.c_str(), options.data_dir.c_str());
  // The lifetimes as issued: the intermediate never outlives the root, so a
  // longer --intermediate-ttl is cut to the root's expiry.
  for (const auto& [label, not_after] :
       {std::pair<const char*, absl::Time>{"root_not_after",
                                           issued->root_not_after},
        {"intermediate_not_after", issued->intermediate_not_after}}) {
    printf(
        "%s: %s\n", label,
        absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", not_after, absl::UTCTimeZone())
            .c_str());
  }
  return 0;
}

int RunServe() {
  meshguard::config::v1::CaConfig config;
  // Where each field came from (file line or flag), for validation errors.
  meshguard::util::ConfigOrigins origins;
  const std::string config_path = absl::GetFlag(FLAGS_config);
  if (!config_path.empty()) {
    meshguard::util::FieldLines lines;
    if (absl::Status s =
            meshguard::util::LoadYamlFile(config_path, &config, &lines);
        !s.ok()) {
      return Fail(absl::StrCat("serve: ", s.message()));
    }
    origins.SetFile(config_path, std::move(lines));
  }
  if (!absl::GetFlag(FLAGS_data_dir).empty()) {
    config.set_data_dir(absl::GetFlag(FLAGS_data_dir));
    origins.SetByFlag("data_dir", "--data-dir");
  }
  if (!absl::GetFlag(FLAGS_trust_domain).empty()) {
    config.set_trust_domain(absl::GetFlag(FLAGS_trust_domain));
    origins.SetByFlag("trust_domain", "--trust-domain");
  }
  if (!absl::GetFlag(FLAGS_listen).empty()) {
    config.set_listen(absl::GetFlag(FLAGS_listen));
    origins.SetByFlag("listen", "--listen");
  }
  if (!absl::GetFlag(FLAGS_admin_listen).empty()) {
    config.set_admin_http_listen(absl::GetFlag(FLAGS_admin_listen));
    origins.SetByFlag("admin_http_listen", "--admin-listen");
  }
  absl::StatusOr<std::unique_ptr<meshguard::ca::CaServer>> server =
      meshguard::ca::CaServer::Create(config, origins);
  if (!server.ok())
    return Fail(absl::StrCat("serve: ", server.status().message()));
  absl::Notification stop;
  g_stop = &stop;
  signal(SIGTERM, HandleSignal);
  signal(SIGINT, HandleSignal);
  gpr_set_log_function(&OnGrpcLog);
  if (absl::Status s = (*server)->Start(); !s.ok()) {
    return Fail(absl::StrCat("serve: ", s.message()));
  }
  stop.WaitForNotification();
  (*server)->Shutdown();
  if (g_listener_failed) {
    return Fail(
        "serve: gRPC stopped accepting connections (see the "
        "grpc_listener_failed line); exiting so that the CA is restarted");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian builds Abseil without NDEBUG, which leaves absl::Mutex's
  // deadlock detector on: every lock and unlock of every Mutex (gRPC's
  // included) updates one process-wide lock-order graph under a global
  // lock. It is a debugging aid; production servers run without it.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  absl::SetProgramUsageMessage(CaUsage());
  if (std::optional<std::vector<std::string>> help =
          meshguard::util::HelpRequest(argc, argv)) {
    return Help(*help);
  }
  const std::vector<std::string> args =
      meshguard::util::ParseCommandLine(argc, argv);
  if (args.size() != 2) {
    fputs(CaUsage().c_str(), stderr);
    return 2;
  }
  const std::string command = args[1];
  if (command == "init" || command == "serve") {
    if (std::string misplaced = meshguard::util::MisplacedFlag(
            argc, argv, command, CaCommandFlags());
        !misplaced.empty()) {
      fprintf(stderr, "meshguard-ca: %s\n\n%s", misplaced.c_str(),
              CaUsage().c_str());
      return 2;
    }
  }
  if (command == "init") return RunInit();
  if (command == "serve") return RunServe();
  fprintf(stderr, "meshguard-ca: unknown command \"%s\"\n\n%s", command.c_str(),
          CaUsage().c_str());
  return 2;
}
