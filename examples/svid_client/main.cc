// svid_client: how a program uses meshguard's C++ client library
// (//identity/client:ca_client) to hold its own X.509-SVID without a
// sidecar: get one with a bootstrap credential, keep key, chain and trust
// bundle current in a directory (for a server that reloads them), renew at
// half-life over mTLS with a new key, and follow the trust bundle.
//
//   svid_client --ca 127.0.0.1:15012 --ca-bundle bundle.pem \
//       (--join-token T | --token-file F) --out-dir DIR [--ttl 1h]
//       [--renewals N]
//
// Writes DIR/key.pem (0600), DIR/cert.pem (leaf first), DIR/bundle.pem as a
// set, and prints one line per certificate. Runs until SIGTERM/SIGINT, or
// until it has renewed N times when --renewals is given.
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "identity/client/ca_client.h"
#include "identity/util/file_util.h"
#include "identity/util/flag_names.h"

ABSL_FLAG(std::string, ca, "127.0.0.1:15012", "meshguard-ca address.");
ABSL_FLAG(std::string, ca_bundle, "", "PEM roots that authenticate the CA.");
ABSL_FLAG(std::string, ca_server_name, "meshguard-ca",
          "Name on the CA's serving certificate.");
ABSL_FLAG(std::string, join_token, "", "One-time join token.");
ABSL_FLAG(std::string, token_file, "",
          "Projected service-account token file (re-read at each bootstrap).");
ABSL_FLAG(std::string, out_dir, "", "Where key.pem, cert.pem, bundle.pem go.");
ABSL_FLAG(absl::Duration, ttl, absl::ZeroDuration(),
          "Requested lifetime (0: the CA's default).");
ABSL_FLAG(int, renewals, -1, "Stop after this many renewals (-1: never).");

namespace {

namespace client = ::meshguard::client;
namespace util = ::meshguard::util;

constexpr char kUsage[] =
    "svid_client: keep this program's X.509-SVID from meshguard-ca in a "
    "directory.\n\n"
    "Usage: svid_client --ca ADDR --ca-bundle FILE (--join-token T | "
    "--token-file F)\n"
    "                   --out-dir DIR [--ttl D] [--renewals N]\n";

absl::Notification g_stop;
void OnSignal(int) {
  if (!g_stop.HasBeenNotified()) g_stop.Notify();
}

int Fail(const absl::Status& status) {
  fprintf(stderr, "svid_client: %s\n", std::string(status.message()).c_str());
  return 1;
}

void Print(const char* what, const client::IssuedCertificate& issued) {
  printf("%s spiffe_id=%s serial=%s not_after=%s\n", what,
         issued.spiffe_id.c_str(), issued.serial.c_str(),
         absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", issued.not_after,
                          absl::UTCTimeZone())
             .c_str());
  fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  if (util::PrintHelpIfAsked(argc, argv, kUsage,
                             "examples/svid_client/main.cc")) {
    return 0;
  }
  util::ParseCommandLine(argc, argv);
  const std::string out_dir = absl::GetFlag(FLAGS_out_dir);
  if (out_dir.empty() || absl::GetFlag(FLAGS_ca_bundle).empty() ||
      absl::GetFlag(FLAGS_join_token).empty() ==
          absl::GetFlag(FLAGS_token_file).empty()) {
    fputs(kUsage, stderr);
    return 2;
  }
  if (absl::Status s = util::MakeDirectories(out_dir, 0700); !s.ok()) {
    return Fail(s);
  }

  // 1. The client: the CA's address and the roots that authenticate it.
  client::CaClientOptions options;
  options.address = absl::GetFlag(FLAGS_ca);
  options.server_name = absl::GetFlag(FLAGS_ca_server_name);
  absl::StatusOr<std::string> roots =
      util::ReadFile(absl::GetFlag(FLAGS_ca_bundle));
  if (!roots.ok()) return Fail(roots.status());
  options.ca_bundle_pem = *roots;
  absl::StatusOr<std::unique_ptr<client::CaClient>> ca =
      client::CaClient::Create(options);
  if (!ca.ok()) return Fail(ca.status());

  // 2. The first certificate, with the bootstrap credential. The key is
  //    made in this process; only its CSR goes to the CA.
  const absl::Duration ttl = absl::GetFlag(FLAGS_ttl);
  absl::StatusOr<client::IssuedCertificate> current;
  if (!absl::GetFlag(FLAGS_join_token).empty()) {
    current = (*ca)->IssueWithJoinToken(absl::GetFlag(FLAGS_join_token), ttl);
  } else {
    absl::StatusOr<std::string> token =
        util::ReadFile(absl::GetFlag(FLAGS_token_file), 65536);
    if (!token.ok()) return Fail(token.status());
    current = (*ca)->IssueWithToken(
        std::string(absl::StripAsciiWhitespace(*token)), ttl);
  }
  if (!current.ok()) return Fail(current.status());
  if (absl::Status s = current->WriteFiles(out_dir); !s.ok()) return Fail(s);
  Print("issued", *current);

  // 3. New roots and CRLs as the CA publishes them (a server using
  //    bundle.pem to verify its peers picks them up from the file).
  std::unique_ptr<client::BundleWatch> watch = (*ca)->WatchTrustBundle(
      [&](const meshguard::ca::v1::TrustBundle& bundle) {
        const std::string pem =
            absl::StrJoin(bundle.root_certificates_pem(), "");
        if (util::WriteFileAtomically(util::JoinPath(out_dir, "bundle.pem"),
                                      pem, 0644)
                .ok()) {
          printf("bundle sequence=%llu roots=%d\n",
                 static_cast<unsigned long long>(bundle.sequence_number()),
                 bundle.root_certificates_pem_size());
          fflush(stdout);
        }
      });

  // 4. Renew at half the remaining life, over mTLS with the current
  //    certificate; on failure retry every tenth of what is left (at least
  //    every second) while the current one is still valid.
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  int renewals = 0;
  const int max_renewals = absl::GetFlag(FLAGS_renewals);
  absl::Time renew_at = absl::Now() + (current->not_after - absl::Now()) / 2;
  while (max_renewals < 0 || renewals < max_renewals) {
    if (g_stop.WaitForNotificationWithTimeout(renew_at - absl::Now())) break;
    absl::StatusOr<client::IssuedCertificate> next =
        (*ca)->Renew(current->ChainPem(), current->key_pem, ttl);
    absl::Status written =
        next.ok() ? next->WriteFiles(out_dir) : next.status();
    if (!written.ok()) {
      fprintf(stderr, "svid_client: renewal failed: %s\n",
              std::string(written.message()).c_str());
      if (absl::Now() >= current->not_after) return 1;
      renew_at =
          absl::Now() +
          std::max(absl::Seconds(1), (current->not_after - absl::Now()) / 10);
      continue;
    }
    current = std::move(next);
    ++renewals;
    Print("renewed", *current);
    renew_at = absl::Now() + (current->not_after - absl::Now()) / 2;
  }
  watch->Stop();
  return 0;
}
