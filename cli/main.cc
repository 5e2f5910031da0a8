// meshguardctl: the operator and workload CLI. main() parses flags and
// dispatches; commands.cc does the work.
#include <grpc/support/log.h>

#include <cstdio>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "identity/util/flag_names.h"
#include "sidecar/authz/policy_cli.h"

// Global.
ABSL_FLAG(std::string, ca, "127.0.0.1:15012", "CA address (host:port).");
ABSL_FLAG(std::string, ca_bundle, "",
          "PEM roots that authenticate the CA (its bundle.pem).");
ABSL_FLAG(std::string, ca_server_name, "meshguard-ca",
          "Name the CA's serving certificate must carry.");
ABSL_FLAG(std::string, admin_socket, "",
          "The CA's admin Unix socket (DATA_DIR/admin.sock) for token, "
          "revoke and list.");
// Per command.
ABSL_FLAG(std::string, token, "", "cert request: service-account token.");
ABSL_FLAG(std::string, token_file, "",
          "cert request: file holding the service-account token.");
ABSL_FLAG(std::string, join_token, "", "cert request: one-time join token.");
ABSL_FLAG(std::string, out_dir, "",
          "cert request/renew, bundle fetch: output directory.");
ABSL_FLAG(absl::Duration, ttl, absl::ZeroDuration(),
          "cert request/renew: requested lifetime (0 = CA default); token "
          "create: token lifetime (0 = 10m).");
ABSL_FLAG(std::string, cert, "",
          "cert renew: current certificate chain (PEM); admin commands over "
          "mTLS: an admin identity's chain.");
ABSL_FLAG(std::string, key, "", "The private key (PEM) matching --cert.");
ABSL_FLAG(std::string, bundle, "", "verify: PEM roots to verify against.");
ABSL_FLAG(std::string, chain, "", "verify: PEM chain, leaf first.");
ABSL_FLAG(std::string, crl, "", "verify: PEM CRL to check revocation with.");
ABSL_FLAG(std::string, at, "", "verify: time to verify at (RFC 3339).");
ABSL_FLAG(std::string, trust_domain, "",
          "verify: expected trust domain (default cluster.local).");
ABSL_FLAG(bool, path_only, false,
          "verify: stop after the path checks (chain, validity, CA "
          "constraints, key usage, CRL).");
ABSL_FLAG(std::string, spiffe_id, "",
          "token create, revoke, list: the SPIFFE ID.");
ABSL_FLAG(std::string, serial, "", "revoke: serial (hex).");
ABSL_FLAG(std::string, reason, "", "revoke: reason recorded with it.");
ABSL_FLAG(bool, live, false, "list: only unexpired, unrevoked certificates.");
ABSL_FLAG(std::string, policy, "", "policy check: the policy file (YAML).");
ABSL_FLAG(std::string, from, "", "policy check: the caller's SPIFFE ID.");
ABSL_FLAG(std::string, method, "",
          "policy check: the gRPC method, /pkg.Service/Method.");
// --header k=v may repeat; it is collected before flag parsing (absl keeps
// only the last value of a repeated flag), so this flag is never set. It is
// defined for its help text, and so that help tells its value from a word.
ABSL_FLAG(std::string, header, "",
          "policy check: a request header, k=v; may repeat.");

namespace {

using ::meshguard::util::CommandHelp;

const char kAdminNote[] =
    "Admin commands go over --admin-socket (the CA's DATA_DIR/admin.sock),\n"
    "or over mTLS to --ca with --cert and --key of an identity in the CA's\n"
    "admin_ids (and --ca-bundle to authenticate the CA).\n";

// Every command: its usage (as the full help lists it too), what it does,
// and the global flags it uses. Its own flags come from CtlCommandFlags().
const std::vector<CommandHelp>& CtlCommands() {
  static const std::vector<std::string> ca = {"ca", "ca_bundle",
                                              "ca_server_name"};
  static const std::vector<std::string> admin = {
      "admin_socket", "cert", "key", "ca", "ca_bundle", "ca_server_name"};
  static const auto* commands = new std::vector<CommandHelp>{
      {"cert request",
       "cert request (--token T | --token-file F | --join-token J) "
       "--out-dir O [--ttl D]",
       "Gets an X.509-SVID from the CA at --ca, which must present a\n"
       "certificate for --ca-server-name that chains to --ca-bundle. Give\n"
       "exactly one credential: a service-account token (--token, or\n"
       "--token-file, its contents trimmed) or a one-time join token. The CA\n"
       "decides the SPIFFE ID from it. The key is made here; only a CSR\n"
       "leaves. O is created (0700) if missing and must be writable before a\n"
       "join token is spent. Writes O/key.pem (0600), O/cert.pem (the chain,\n"
       "leaf first) and O/bundle.pem (the trust bundle's roots) as a set: if\n"
       "one cannot be written, none is replaced. Prints the SPIFFE ID,\n"
       "serial and validity.\n",
       ca},
      {"cert renew",
       "cert renew --cert C --key K --out-dir O [--ttl D]",
       "Renews over mTLS with the current chain C (leaf first) and its key K,\n"
       "which must still be valid and not revoked: the new certificate has\n"
       "the same SPIFFE ID, a new key and a new serial. Writes O/key.pem\n"
       "(0600), O/cert.pem and O/bundle.pem as a set, as cert request does.\n",
       {"cert", "key", "ca", "ca_bundle", "ca_server_name"}},
      {"cert inspect",
       "cert inspect FILE",
       "Prints each certificate in the PEM FILE: SPIFFE ID, serial, subject,\n"
       "issuer, validity, key type, whether it is a CA, and its SANs. Needs\n"
       "no CA.\n",
       {}},
      {"bundle fetch", "bundle fetch --out-dir O",
       "Fetches the CA's current trust bundle and writes O/bundle.pem (every\n"
       "root) and O/crl.pem as a set; prints the trust domain, the number of\n"
       "roots and the bundle's sequence number.\n",
       ca},
      {"verify",
       "verify --bundle B --chain C [--crl FILE] [--at RFC3339] "
       "[--trust-domain TD] [--path-only]",
       "Verifies the PEM chain C (leaf first) against the roots in B, with no\n"
       "CA: the path (chain, validity, CA constraints, key usage), the CRL if\n"
       "given, then the X.509-SVID rules and the trust domain. Prints\n"
       "\"OK <spiffe-id>\" and exits 0, or \"FAILED <step>: <reason>\" and\n"
       "exits 1; exits 2 when it cannot verify at all (a missing flag, an\n"
       "unreadable file, an unusable bundle or CRL, a bad --at).\n",
       {}},
      {"token create", "token create --spiffe-id ID [--ttl D]",
       absl::StrCat(
           "Creates a join token for ID, usable once (cert request\n"
           "--join-token), and prints it; its expiry goes to stderr.\n",
           kAdminNote),
       admin},
      {"revoke", "revoke (--serial S | --spiffe-id ID) [--reason R]",
       absl::StrCat(
           "Revokes the certificate with serial S (as meshguard prints it, or\n"
           "as openssl does) or every certificate issued to ID. The CA\n"
           "re-signs its CRL and publishes a new trust bundle. Prints the\n"
           "serials newly revoked and the bundle's sequence number.\n",
           kAdminNote),
       admin},
      {"list", "list [--spiffe-id ID] [--live]",
       absl::StrCat("Lists the certificates in the CA's issuance log (serial,\n"
                    "validity, how the caller authenticated, whether revoked, "
                    "SPIFFE ID).\n",
                    kAdminNote),
       admin},
      {"policy check",
       "policy check --policy FILE --from SPIFFE_ID --method /pkg.Svc/M "
       "[--header k=v]...",
       "Loads the authorization policy FILE as the sidecar does and decides\n"
       "one call from SPIFFE_ID to the method: prints the outcome (e.g. ALLOW\n"
       "by default) and the audit and dry-run rules it matched. Exits 0\n"
       "(allowed), 1 (denied) or 2 (an unusable policy or arguments). Needs\n"
       "no CA.\n",
       {}},
      {"policy lint",
       "policy lint FILE",
       "Loads the authorization policy FILE as the sidecar does and prints\n"
       "every finding (errors with file, line and field; warnings) and their\n"
       "count. Exits 0 when there is no error, 1 otherwise.\n",
       {}},
  };
  return *commands;
}

// The full help's text, before the flags.
const std::string& CtlUsage() {
  static const std::string* usage = [] {
    auto* out = new std::string(
        "meshguardctl: request, inspect and verify meshguard certificates; "
        "administer the CA.\n\n"
        "Usage: meshguardctl [--ca ADDR --ca-bundle FILE [--ca-server-name "
        "N]]\n"
        "                    [--admin-socket PATH | --cert C --key K] COMMAND "
        "...\n\n"
        "Commands:\n");
    for (const CommandHelp& command : CtlCommands()) {
      absl::StrAppend(out, "  ", command.usage, "\n");
    }
    absl::StrAppend(out,
                    "\nmeshguardctl COMMAND --help (or help COMMAND): what "
                    "the command does, and its flags.\n");
    return out;
  }();
  return *usage;
}

int Usage(const std::string& error) {
  if (!error.empty()) fprintf(stderr, "meshguardctl: %s\n\n", error.c_str());
  fputs(CtlUsage().c_str(), stderr);
  return 2;
}

// "cert request" from {"cert", "request", ...}; "verify" from {"verify"}.
std::string CommandName(const std::vector<std::string>& words) {
  if (words.empty()) return "";
  const std::string& first = words[0];
  const bool two_words = first == "cert" || first == "bundle" ||
                         first == "token" || first == "policy";
  return two_words && words.size() > 1 ? absl::StrCat(first, " ", words[1])
                                       : first;
}

// The flags that belong to commands, and the commands each belongs to.
// The others (--ca, --ca-bundle, --ca-server-name, --admin-socket, --cert,
// --key) are global. A flag given to a command it does not belong to is
// an error: `cert request --spiffe-id ...` must not look as if it asked
// for that identity.
const meshguard::util::CommandFlags& CtlCommandFlags() {
  static const auto* flags = new meshguard::util::CommandFlags{
      {"token", {"cert request"}},
      {"token_file", {"cert request"}},
      {"join_token", {"cert request"}},
      {"out_dir", {"cert request", "cert renew", "bundle fetch"}},
      {"ttl", {"cert request", "cert renew", "token create"}},
      {"bundle", {"verify"}},
      {"chain", {"verify"}},
      {"crl", {"verify"}},
      {"at", {"verify"}},
      {"trust_domain", {"verify"}},
      {"path_only", {"verify"}},
      {"spiffe_id", {"token create", "revoke", "list"}},
      {"serial", {"revoke"}},
      {"reason", {"revoke"}},
      {"live", {"list"}},
      {"policy", {"policy check"}},
      {"from", {"policy check"}},
      {"method", {"policy check"}},
      {"header", {"policy check"}},
  };
  return *flags;
}

// Help for the command `words` name, or the full help if none: exit 0.
// Help for a command there is not is an error, as the command would be.
int Help(const std::vector<std::string>& words) {
  if (words.empty()) {
    meshguard::util::PrintFullHelp(CtlUsage(), "cli/main.cc");
    return 0;
  }
  const std::string help = meshguard::util::FormatCommandHelp(
      "meshguardctl", CommandName(words), CtlCommands(), CtlCommandFlags());
  if (help.empty()) {
    return Usage("unknown command: " + absl::StrJoin(words, " "));
  }
  fputs(help.c_str(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // gRPC's own log lines ("E1127 ... ssl_transport_security.cc:1501]
  // Handshake failed ...") say again, ahead of it and in gRPC's words, what
  // the tool's error says; GRPC_VERBOSITY brings them back for debugging.
  if (getenv("GRPC_VERBOSITY") == nullptr) {
    gpr_set_log_function([](gpr_log_func_args*) {});
  }
  absl::SetProgramUsageMessage(CtlUsage());
  if (std::optional<std::vector<std::string>> help =
          meshguard::util::HelpRequest(argc, argv)) {
    return Help(*help);
  }
  std::vector<std::string> storage;
  std::vector<char*> normalized =
      meshguard::util::NormalizeFlagNames(argc, argv, &storage);
  // Pull out every --header (repeatable) before absl sees the rest.
  std::vector<std::string> headers;
  {
    std::vector<char*> kept;
    for (size_t i = 0; i + 1 < normalized.size(); ++i) {
      std::string arg = normalized[i];
      if (arg == "--header" && i + 2 < normalized.size()) {
        headers.push_back(normalized[++i]);
      } else if (arg.rfind("--header=", 0) == 0) {
        headers.push_back(arg.substr(9));
      } else {
        kept.push_back(normalized[i]);
      }
    }
    kept.push_back(nullptr);
    normalized = kept;
  }
  std::vector<char*> raw = absl::ParseCommandLine(
      static_cast<int>(normalized.size() - 1), normalized.data());
  std::vector<std::string> args(raw.begin() + 1, raw.end());
  if (args.empty()) return Usage("");

  meshguard::cli::GlobalOptions g;
  g.ca_address = absl::GetFlag(FLAGS_ca);
  g.ca_bundle_file = absl::GetFlag(FLAGS_ca_bundle);
  g.ca_server_name = absl::GetFlag(FLAGS_ca_server_name);
  g.admin_socket = absl::GetFlag(FLAGS_admin_socket);
  g.cert_file = absl::GetFlag(FLAGS_cert);
  g.key_file = absl::GetFlag(FLAGS_key);

  if (absl::GetFlag(FLAGS_ttl) < absl::ZeroDuration()) {
    return Usage(
        "--ttl must not be negative (e.g. 1h; 0 or none for the "
        "default)");
  }

  const std::string& cmd = args[0];
  const std::string sub = args.size() > 1 ? args[1] : "";
  const std::string command = CommandName(args);
  if (std::string misplaced = meshguard::util::MisplacedFlag(
          argc, argv, command, CtlCommandFlags());
      !misplaced.empty()) {
    return Usage(misplaced);
  }
  if (cmd == "cert" && sub == "request" && args.size() == 2) {
    return meshguard::cli::CertRequest(
        g, absl::GetFlag(FLAGS_token), absl::GetFlag(FLAGS_token_file),
        absl::GetFlag(FLAGS_join_token), absl::GetFlag(FLAGS_out_dir),
        absl::GetFlag(FLAGS_ttl));
  }
  if (cmd == "cert" && sub == "renew" && args.size() == 2) {
    return meshguard::cli::CertRenew(
        g, absl::GetFlag(FLAGS_cert), absl::GetFlag(FLAGS_key),
        absl::GetFlag(FLAGS_out_dir), absl::GetFlag(FLAGS_ttl));
  }
  if (cmd == "cert" && sub == "inspect") {
    if (args.size() != 3) return Usage("cert inspect takes one FILE");
    return meshguard::cli::CertInspect(args[2]);
  }
  if (cmd == "bundle" && sub == "fetch" && args.size() == 2) {
    return meshguard::cli::BundleFetch(g, absl::GetFlag(FLAGS_out_dir));
  }
  if (cmd == "verify" && args.size() == 1) {
    meshguard::cli::VerifyArgs v;
    v.bundle_file = absl::GetFlag(FLAGS_bundle);
    v.chain_file = absl::GetFlag(FLAGS_chain);
    v.crl_file = absl::GetFlag(FLAGS_crl);
    v.at = absl::GetFlag(FLAGS_at);
    v.trust_domain = absl::GetFlag(FLAGS_trust_domain);
    v.path_only = absl::GetFlag(FLAGS_path_only);
    return meshguard::cli::Verify(v);
  }
  if (cmd == "token" && sub == "create" && args.size() == 2) {
    return meshguard::cli::TokenCreate(g, absl::GetFlag(FLAGS_spiffe_id),
                                       absl::GetFlag(FLAGS_ttl));
  }
  if (cmd == "revoke" && args.size() == 1) {
    return meshguard::cli::Revoke(g, absl::GetFlag(FLAGS_serial),
                                  absl::GetFlag(FLAGS_spiffe_id),
                                  absl::GetFlag(FLAGS_reason));
  }
  if (cmd == "list" && args.size() == 1) {
    return meshguard::cli::List(g, absl::GetFlag(FLAGS_spiffe_id),
                                absl::GetFlag(FLAGS_live));
  }
  if (cmd == "policy" && sub == "check" && args.size() == 2) {
    return meshguard::sidecar::authz::RunPolicyCheck(
        absl::GetFlag(FLAGS_policy), absl::GetFlag(FLAGS_from),
        absl::GetFlag(FLAGS_method), headers, std::cout);
  }
  if (cmd == "policy" && sub == "lint") {
    if (args.size() != 3) return Usage("policy lint takes one FILE");
    return meshguard::sidecar::authz::RunPolicyLint(args[2], std::cout);
  }
  return Usage("unknown command: " + absl::StrJoin(args, " "));
}
