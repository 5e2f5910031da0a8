// CA issuance throughput: certificates per second, two ways.
//
//   --mode=bare: the upper bound for the CA's own work. One thread, in
//     process, in a closed loop: parse a CSR, check its signature, IssueLeaf
//     with a CaSigner over a fresh root + intermediate, PEM-encode the leaf.
//     No RPC, no authentication, no issuance log. The CSRs (and their keys)
//     are made before the clock starts: the CA never generates keys.
//     With --log-db=FILE it also does what the CA does per certificate
//     besides the RPC: the row goes to an IssuanceStore on FILE through
//     RecordIssuanceAsync (grouped commits, synchronous=FULL; up to
//     --in-flight rows per thread wait for their commit), and once it is
//     durable the response message (chain + trust bundle) is serialized
//     and the JSON "issued" line written to FILE.log (ca_bench.sh sends the
//     CA's log to a file too). This is the CA with a
//     free RPC layer: how close to the bare loop any server could get.
//   --mode=e2e: the real path. N client threads renew over mTLS against a
//     running meshguard-ca (gRPC, peer-certificate check, CSR checks,
//     signing, durable SQLite log, JSON log line), each in a closed loop
//     with a CSR built beforehand for its own SPIFFE ID.
//
// Both print one "RESULT k=v ..." line for tests/bench/ca_bench.sh, which
// starts the CA, gets the client certificates and writes the table into
// docs/BENCHMARKS.md. Not a test: never fails on speed.
//
//   ca_issue_bench --mode=bare --seconds=5
//   ca_issue_bench --mode=e2e --ca=127.0.0.1:PORT --ca-bundle=bundle.pem
//       --clients=4 --seconds=10 --certs-dir=DIR --ca-pid=PID
//
// --channel (e2e): "persistent" (default) gives each client thread one mTLS
// channel for the whole run, built as CaClient builds its renewal channels,
// and calls the generated stub on it. "per_call" goes through
// CaClient::Issue, which today makes a new channel (and so a new TCP + TLS
// handshake) for every renewal.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/barrier.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "identity/ca/issuance_store.h"
#include "identity/client/ca_client.h"
#include "identity/crypto/ca_signer.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/util/flag_names.h"
#include "identity/util/json_log.h"
#include "proto/ca.grpc.pb.h"

ABSL_FLAG(std::string, mode, "bare", "bare | e2e");
ABSL_FLAG(double, seconds, 5, "Measured duration of the run.");
ABSL_FLAG(int, csrs, 64, "bare: distinct pre-generated keys/CSRs to cycle.");
ABSL_FLAG(int, threads, 1,
          "bare: threads issuing at once in this process (OpenSSL's own "
          "in-process scaling; the upper bound stays the 1-thread run).");
ABSL_FLAG(std::string, log_db, "",
          "bare: also commit each certificate to an issuance log in this "
          "SQLite file (created), build the response and log the line.");
ABSL_FLAG(int, in_flight, 32,
          "bare with --log-db: rows per thread that may wait for their "
          "commit at once.");
ABSL_FLAG(std::string, ca, "127.0.0.1:15012", "e2e: meshguard-ca address.");
ABSL_FLAG(std::string, ca_bundle, "", "e2e: PEM roots of the CA.");
ABSL_FLAG(std::string, server_name, "meshguard-ca",
          "e2e: DNS name the CA's serving certificate must carry.");
ABSL_FLAG(int, clients, 1, "e2e: concurrent client threads.");
ABSL_FLAG(std::string, certs_dir, "",
          "e2e: DIR/<i>/{cert.pem,key.pem} for i in [0, clients).");
ABSL_FLAG(int, csrs_per_client, 4,
          "e2e: pre-built CSRs each client cycles through.");
ABSL_FLAG(int, ca_pid, 0,
          "e2e: pid of meshguard-ca, for its CPU time from /proc/<pid>/stat.");
ABSL_FLAG(std::string, channel, "persistent", "e2e: persistent | per_call");
ABSL_FLAG(std::string, driver, "threads",
          "e2e: threads (one blocking client thread per client) | async (one "
          "thread drives every client's calls on one completion queue; "
          "persistent channels only).");
ABSL_FLAG(std::string, label, "", "Copied into the RESULT line.");

namespace meshguard::bench {
namespace {

namespace v1 = ::meshguard::ca::v1;

constexpr char kTrustDomain[] = "cluster.local";

// This process's user + system CPU time.
absl::Duration SelfCpu() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return absl::DurationFromTimeval(usage.ru_utime) +
         absl::DurationFromTimeval(usage.ru_stime);
}

// utime + stime of `pid` (all its threads), from /proc/<pid>/stat.
absl::StatusOr<absl::Duration> ProcessCpu(int pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string line;
  if (!std::getline(in, line)) {
    return absl::NotFoundError(
        absl::StrCat("cannot read /proc/", pid, "/stat"));
  }
  // The command name may hold spaces; fields are counted after its ')'.
  size_t close = line.rfind(')');
  if (close == std::string::npos) {
    return absl::InternalError(absl::StrCat("/proc/", pid, "/stat: no ')'"));
  }
  std::vector<std::string> fields =
      absl::StrSplit(line.substr(close + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  if (fields.size() < 13) {
    return absl::InternalError(absl::StrCat("/proc/", pid, "/stat: short"));
  }
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double cpu =
      (std::stod(fields[11]) + std::stod(fields[12])) / ticks;  // seconds
  return absl::Seconds(cpu);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

double Percentile(const std::vector<absl::Duration>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t index = static_cast<size_t>(p * static_cast<double>(sorted.size()));
  index = std::min(index, sorted.size() - 1);
  return absl::ToDoubleMilliseconds(sorted[index]);
}

int Fail(const absl::Status& status) {
  fprintf(stderr, "ca_issue_bench: %s\n", status.ToString().c_str());
  return 1;
}

// --mode=bare ---------------------------------------------------------------

int RunBare() {
  const absl::Time now = absl::Now();
  absl::StatusOr<crypto::EvpPkeyPtr> root_key = crypto::GenerateEcP256Key();
  absl::StatusOr<crypto::EvpPkeyPtr> int_key = crypto::GenerateEcP256Key();
  if (!root_key.ok()) return Fail(root_key.status());
  if (!int_key.ok()) return Fail(int_key.status());
  absl::StatusOr<crypto::X509Ptr> root = crypto::CreateRootCertificate(
      root_key->get(), kTrustDomain, absl::Hours(24), now);
  if (!root.ok()) return Fail(root.status());
  absl::StatusOr<crypto::X509Ptr> intermediate =
      crypto::CreateIntermediateCertificate(int_key->get(), root->get(),
                                            root_key->get(), kTrustDomain,
                                            absl::Hours(12), now);
  if (!intermediate.ok()) return Fail(intermediate.status());
  absl::StatusOr<std::unique_ptr<crypto::CaSigner>> signer =
      crypto::CaSigner::Create(std::move(*intermediate), std::move(*int_key),
                               {});
  if (!signer.ok()) return Fail(signer.status());

  // Keys and CSRs first: key generation is the client's work, not the CA's.
  const int count = std::max(1, absl::GetFlag(FLAGS_csrs));
  std::vector<std::string> csrs;
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<crypto::EvpPkeyPtr> key = crypto::GenerateEcP256Key();
    if (!key.ok()) return Fail(key.status());
    absl::StatusOr<crypto::SpiffeId> id = crypto::SpiffeId::ForServiceAccount(
        kTrustDomain, "bench", absl::StrCat("client-", i));
    if (!id.ok()) return Fail(id.status());
    absl::StatusOr<std::string> csr = crypto::CreateCsrPem(key->get(), *id);
    if (!csr.ok()) return Fail(csr.status());
    csrs.push_back(std::move(*csr));
  }

  // --log-db: the issuance log, and what the CA sends once a row is durable.
  std::unique_ptr<ca::IssuanceStore> store;
  if (const std::string db = absl::GetFlag(FLAGS_log_db); !db.empty()) {
    absl::StatusOr<std::unique_ptr<ca::IssuanceStore>> opened =
        ca::IssuanceStore::Open(db);
    if (!opened.ok()) return Fail(opened.status());
    store = std::move(*opened);
    FILE* log = fopen((db + ".log").c_str(), "a");
    if (log == nullptr) {
      return Fail(
          absl::InternalError(absl::StrCat("cannot open ", db, ".log")));
    }
    util::SetLogStream(log);  // left open: the process ends after the run
  }
  absl::StatusOr<std::string> intermediate_pem =
      crypto::CertificateToPem((*signer)->certificate());
  absl::StatusOr<std::string> root_pem = crypto::CertificateToPem(root->get());
  if (!intermediate_pem.ok()) return Fail(intermediate_pem.status());
  if (!root_pem.ok()) return Fail(root_pem.status());
  v1::TrustBundle bundle;
  bundle.set_trust_domain(kTrustDomain);
  bundle.add_root_certificates_pem(*root_pem);
  // Rows waiting for their commit, over all threads, and the bound on them.
  const int max_in_flight = std::max(1, absl::GetFlag(FLAGS_in_flight)) *
                            std::max(1, absl::GetFlag(FLAGS_threads));
  absl::Mutex in_flight_mu;
  int in_flight = 0;
  std::atomic<bool> log_failed{false};

  // Hands the certificate to the log; the response and the log line follow
  // on the committer thread once its row is durable, as in the CA.
  auto record = [&](X509* cert, const crypto::SpiffeId& id,
                    std::string leaf_pem) {
    {
      absl::MutexLock lock(&in_flight_mu);
      auto below_bound = [&] { return in_flight < max_in_flight; };
      in_flight_mu.Await(absl::Condition(&below_bound));
      ++in_flight;
    }
    ca::IssuanceRecord row;
    row.serial = crypto::SerialHex(cert);
    row.spiffe_id = id.ToString();
    row.not_before = crypto::NotBefore(cert);
    row.not_after = crypto::NotAfter(cert);
    row.issued_at = absl::Now();
    row.auth_method = std::string(ca::kAuthRenewal);
    row.requester = "ipv4:127.0.0.1:40000";
    // A renewal: the commit checks the renewing certificate is not revoked.
    row.renewed_from_serial = "01";
    ca::IssuanceRecord logged = row;
    store->RecordIssuanceAsync(std::move(row), [&, logged = std::move(logged),
                                                leaf_pem = std::move(leaf_pem)](
                                                   absl::Status stored) {
      if (stored.ok()) {
        v1::IssueCertificateResponse response;
        response.add_cert_chain_pem(leaf_pem);
        response.add_cert_chain_pem(*intermediate_pem);
        *response.mutable_trust_bundle() = bundle;
        response.set_spiffe_id(logged.spiffe_id);
        response.set_serial(logged.serial);
        const std::string wire = response.SerializeAsString();
        util::LogLine("info", "issued")
            .Add("spiffe_id", logged.spiffe_id)
            .Add("serial", logged.serial)
            .Add("auth_method", logged.auth_method)
            .Add("requester", logged.requester)
            .Add("response_bytes", static_cast<int64_t>(wire.size()))  // kept
            .AddTime("not_after", logged.not_after)
            .Emit();
      } else {
        fprintf(stderr, "ca_issue_bench: log: %s\n", stored.ToString().c_str());
        log_failed = true;
      }
      absl::MutexLock lock(&in_flight_mu);
      --in_flight;
    });
  };

  // The same steps the CA takes for the certificate itself, nothing else.
  auto issue_one = [&](const std::string& csr_pem) -> absl::Status {
    absl::StatusOr<crypto::Csr> csr = crypto::Csr::ParsePem(csr_pem);
    if (!csr.ok()) return csr.status();
    if (absl::Status s = csr->CheckSignature(); !s.ok()) return s;
    std::vector<std::string> uris = csr->UriSans();
    if (uris.size() != 1) return absl::InternalError("CSR without SPIFFE ID");
    absl::StatusOr<crypto::SpiffeId> id = crypto::SpiffeId::Parse(uris[0]);
    if (!id.ok()) return id.status();
    crypto::LeafRequest request{csr->public_key(), *id, absl::Hours(1),
                                absl::Now(),       {},  {}};
    absl::StatusOr<crypto::X509Ptr> cert = (*signer)->IssueLeaf(request);
    if (!cert.ok()) return cert.status();
    absl::StatusOr<std::string> pem = crypto::CertificateToPem(cert->get());
    if (!pem.ok()) return pem.status();
    if (store != nullptr) record(cert->get(), *id, std::move(*pem));
    return absl::OkStatus();
  };
  for (int i = 0; i < std::min(count, 16); ++i) {  // warm up
    if (absl::Status s = issue_one(csrs[i]); !s.ok()) return Fail(s);
  }

  const absl::Duration run = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  const int thread_count = std::max(1, absl::GetFlag(FLAGS_threads));
  const absl::Duration cpu_start = SelfCpu();
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + run;
  std::atomic<int64_t> total{0};
  std::atomic<bool> failed{false};
  auto loop = [&](int first) {
    int64_t done = 0;
    while (absl::Now() < deadline) {
      if (absl::Status s = issue_one(csrs[(first + done) % count]); !s.ok()) {
        fprintf(stderr, "ca_issue_bench: %s\n", s.ToString().c_str());
        failed = true;
        return;
      }
      ++done;
    }
    total += done;
  };
  std::vector<std::thread> threads;
  for (int t = 1; t < thread_count; ++t) threads.emplace_back(loop, t * 7);
  loop(0);
  for (std::thread& t : threads) t.join();
  if (store != nullptr) store.reset();  // commits every queued row first
  if (failed || log_failed) return 1;
  const int64_t issued = total.load();
  const double wall = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = absl::ToDoubleSeconds(SelfCpu() - cpu_start);
  printf(
      "bare: %lld certificates in %.2f s wall, %.2f CPU-s: %.0f/s wall, "
      "%.0f per CPU-second\n",
      static_cast<long long>(issued), wall, cpu, issued / wall, issued / cpu);
  printf(
      "RESULT mode=bare label=%s certs=%lld wall_s=%.3f cpu_s=%.3f "
      "per_s=%.1f per_cpu_s=%.1f\n",
      absl::GetFlag(FLAGS_label).c_str(), static_cast<long long>(issued), wall,
      cpu, issued / wall, issued / cpu);
  return 0;
}

// --mode=e2e ----------------------------------------------------------------

struct ClientSetup {
  std::string cert_pem;  // leaf first, as `meshguardctl cert request` wrote it
  std::string key_pem;
  std::vector<v1::IssueCertificateRequest> requests;  // pre-built CSRs
};

struct ClientResult {
  int64_t ok = 0;
  std::map<int, int64_t> failures;  // by grpc status code
  std::map<int, std::string> first_message;
  std::vector<absl::Duration> latencies;  // successful calls only
};

absl::StatusOr<ClientSetup> PrepareClient(const std::string& dir, int count) {
  ClientSetup setup;
  absl::StatusOr<std::string> cert = ReadFile(absl::StrCat(dir, "/cert.pem"));
  if (!cert.ok()) return cert.status();
  absl::StatusOr<std::string> key = ReadFile(absl::StrCat(dir, "/key.pem"));
  if (!key.ok()) return key.status();
  setup.cert_pem = std::move(*cert);
  setup.key_pem = std::move(*key);
  absl::StatusOr<std::vector<crypto::X509Ptr>> chain =
      crypto::ParseCertificateChainPem(setup.cert_pem);
  if (!chain.ok()) return chain.status();
  std::vector<std::string> uris = crypto::UriSans(chain->front().get());
  if (uris.size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/cert.pem does not carry exactly one SPIFFE ID"));
  }
  // Renewal keeps the SPIFFE ID, so the CSRs name the current one.
  absl::StatusOr<crypto::SpiffeId> id = crypto::SpiffeId::Parse(uris[0]);
  if (!id.ok()) return id.status();
  for (int i = 0; i < std::max(1, count); ++i) {
    absl::StatusOr<crypto::EvpPkeyPtr> new_key = crypto::GenerateEcP256Key();
    if (!new_key.ok()) return new_key.status();
    absl::StatusOr<std::string> csr = crypto::CreateCsrPem(new_key->get(), *id);
    if (!csr.ok()) return csr.status();
    v1::IssueCertificateRequest request;
    request.set_csr_pem(*csr);
    setup.requests.push_back(std::move(request));
  }
  return setup;
}

// A renewal channel as CaClient::MakeChannel builds one, kept for the run.
std::shared_ptr<grpc::Channel> MakeRenewalChannel(const std::string& address,
                                                  const std::string& bundle,
                                                  const ClientSetup& setup) {
  grpc::SslCredentialsOptions tls;
  tls.pem_root_certs = bundle;
  tls.pem_cert_chain = setup.cert_pem;
  tls.pem_private_key = setup.key_pem;
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride(absl::GetFlag(FLAGS_server_name));
  // One connection per client thread, not one shared by all.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(tls), args);
}

// Sums the clients' results, adds the CPU used since the clock started,
// and prints the human line and the RESULT line.
int Report(const std::vector<ClientResult>& results, absl::Time start,
           absl::Duration self_cpu_start, int ca_pid,
           absl::Duration ca_cpu_start) {
  const double wall = absl::ToDoubleSeconds(absl::Now() - start);
  const double self_cpu = absl::ToDoubleSeconds(SelfCpu() - self_cpu_start);
  double ca_cpu = 0;
  if (ca_pid > 0) {
    absl::StatusOr<absl::Duration> end = ProcessCpu(ca_pid);
    if (!end.ok()) return Fail(end.status());
    ca_cpu = absl::ToDoubleSeconds(*end - ca_cpu_start);
  }
  const std::string driver = absl::GetFlag(FLAGS_driver);
  const std::string channel_mode = absl::GetFlag(FLAGS_channel);
  const int clients = static_cast<int>(results.size());

  int64_t ok = 0;
  int64_t failed = 0;
  std::map<int, int64_t> failures;
  std::map<int, std::string> messages;
  std::vector<absl::Duration> latencies;
  for (const ClientResult& r : results) {
    ok += r.ok;
    for (const auto& [code, n] : r.failures) {
      failures[code] += n;
      failed += n;
      messages.emplace(code, r.first_message.at(code));
    }
    latencies.insert(latencies.end(), r.latencies.begin(), r.latencies.end());
  }
  std::sort(latencies.begin(), latencies.end());
  const double p50 = Percentile(latencies, 0.50);
  const double p99 = Percentile(latencies, 0.99);
  const double per_ca_cpu = ca_cpu > 0 ? ok / ca_cpu : 0;
  std::string failure_text;
  for (const auto& [code, n] : failures) {
    absl::StrAppend(&failure_text, failure_text.empty() ? "" : ",", "code",
                    code, ":", n);
    fprintf(stderr, "e2e: %lld failures with status %d, first: %s\n",
            static_cast<long long>(n), code, messages[code].c_str());
  }
  if (failure_text.empty()) failure_text = "none";
  printf(
      "e2e (%s channel, %s driver, %d clients): %lld renewals in %.2f s: "
      "%.0f/s; p50 %.2f ms, p99 %.2f ms; CA CPU %.2f s (%.0f per CA "
      "CPU-second); bench client CPU %.2f s; failures %lld (%s)\n",
      channel_mode.c_str(), driver.c_str(), clients, static_cast<long long>(ok),
      wall, ok / wall, p50, p99, ca_cpu, per_ca_cpu, self_cpu,
      static_cast<long long>(failed), failure_text.c_str());
  printf(
      "RESULT mode=e2e label=%s channel=%s driver=%s clients=%d certs=%lld "
      "failures=%lld failure_codes=%s wall_s=%.3f per_s=%.1f p50_ms=%.3f "
      "p99_ms=%.3f ca_cpu_s=%.3f per_ca_cpu_s=%.1f client_cpu_s=%.3f\n",
      absl::GetFlag(FLAGS_label).c_str(), channel_mode.c_str(), driver.c_str(),
      clients, static_cast<long long>(ok), static_cast<long long>(failed),
      failure_text.c_str(), wall, ok / wall, p50, p99, ca_cpu, per_ca_cpu,
      self_cpu);
  return 0;
}

// --driver=async: one thread keeps one call in flight per client, each on
// that client's own persistent mTLS channel, all on one completion queue.
// The clock and the CA's CPU count start once every channel has made one
// call (the TLS handshake) and stop once the last call started before the
// end has finished.
int RunE2eAsync(const std::string& address, const std::string& bundle,
                const std::vector<ClientSetup>& setups, absl::Duration timeout,
                int ca_pid) {
  struct Slot {
    std::unique_ptr<v1::CertificateAuthority::Stub> stub;
    size_t next = 0;  // index of the next pre-built CSR
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<
        grpc::ClientAsyncResponseReader<v1::IssueCertificateResponse>>
        reader;
    v1::IssueCertificateResponse response;
    grpc::Status status;
    absl::Time started;
  };
  const int clients = static_cast<int>(setups.size());
  std::vector<Slot> slots(clients);
  std::vector<ClientResult> results(clients);
  for (int i = 0; i < clients; ++i) {
    slots[i].stub = v1::CertificateAuthority::NewStub(
        MakeRenewalChannel(address, bundle, setups[i]));
    // Warm-up, as in the threaded driver: connect before the clock starts.
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    context.set_wait_for_ready(true);
    v1::IssueCertificateResponse response;
    grpc::Status s = slots[i].stub->IssueCertificate(
        &context, setups[i].requests[0], &response);
    if (!s.ok() || response.cert_chain_pem_size() == 0) {
      fprintf(stderr, "client %d warm-up failed: %d %s\n", i,
              static_cast<int>(s.error_code()), s.error_message().c_str());
      return Fail(absl::UnavailableError("warm-up renewal failed"));
    }
  }

  grpc::CompletionQueue cq;
  auto start_call = [&](int i) {
    Slot& slot = slots[i];
    const ClientSetup& setup = setups[i];
    slot.context = std::make_unique<grpc::ClientContext>();
    slot.context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    slot.response.Clear();
    slot.started = absl::Now();
    slot.reader = slot.stub->PrepareAsyncIssueCertificate(
        slot.context.get(), setup.requests[slot.next++ % setup.requests.size()],
        &cq);
    slot.reader->StartCall();
    slot.reader->Finish(&slot.response, &slot.status,
                        reinterpret_cast<void*>(static_cast<intptr_t>(i)));
  };

  absl::StatusOr<absl::Duration> ca_cpu_start = absl::ZeroDuration();
  if (ca_pid > 0) ca_cpu_start = ProcessCpu(ca_pid);
  if (!ca_cpu_start.ok()) return Fail(ca_cpu_start.status());
  const absl::Duration self_cpu_start = SelfCpu();
  const absl::Time start = absl::Now();
  const absl::Time end = start + absl::Seconds(absl::GetFlag(FLAGS_seconds));
  for (int i = 0; i < clients; ++i) start_call(i);
  int in_flight = clients;
  void* tag = nullptr;
  bool ok = false;
  while (in_flight > 0 && cq.Next(&tag, &ok)) {
    const int i = static_cast<int>(reinterpret_cast<intptr_t>(tag));
    Slot& slot = slots[i];
    const absl::Time now = absl::Now();
    grpc::Status s = ok ? slot.status
                        : grpc::Status(grpc::StatusCode::INTERNAL,
                                       "completion queue reported failure");
    if (s.ok() && slot.response.cert_chain_pem_size() == 0) {
      s = grpc::Status(grpc::StatusCode::INTERNAL, "empty chain");
    }
    ClientResult& result = results[i];
    if (s.ok()) {
      ++result.ok;
      result.latencies.push_back(now - slot.started);
    } else {
      const int code = static_cast<int>(s.error_code());
      if (result.failures[code]++ == 0) {
        result.first_message[code] = s.error_message();
      }
    }
    if (now < end) {
      start_call(i);
    } else {
      --in_flight;
    }
  }
  const int status =
      Report(results, start, self_cpu_start, ca_pid, *ca_cpu_start);
  cq.Shutdown();
  while (cq.Next(&tag, &ok)) {
  }
  return status;
}

int RunE2e() {
  const std::string address = absl::GetFlag(FLAGS_ca);
  const int clients = std::max(1, absl::GetFlag(FLAGS_clients));
  const std::string certs_dir = absl::GetFlag(FLAGS_certs_dir);
  const std::string channel_mode = absl::GetFlag(FLAGS_channel);
  const int ca_pid = absl::GetFlag(FLAGS_ca_pid);
  if (channel_mode != "persistent" && channel_mode != "per_call") {
    return Fail(
        absl::InvalidArgumentError("--channel must be persistent or per_call"));
  }
  if (certs_dir.empty()) {
    return Fail(absl::InvalidArgumentError("--certs-dir is required"));
  }
  absl::StatusOr<std::string> bundle = ReadFile(absl::GetFlag(FLAGS_ca_bundle));
  if (!bundle.ok()) return Fail(bundle.status());

  std::vector<ClientSetup> setups;
  for (int i = 0; i < clients; ++i) {
    absl::StatusOr<ClientSetup> setup = PrepareClient(
        absl::StrCat(certs_dir, "/", i), absl::GetFlag(FLAGS_csrs_per_client));
    if (!setup.ok()) return Fail(setup.status());
    setups.push_back(std::move(*setup));
  }
  client::CaClientOptions options;
  options.address = address;
  if (absl::GetFlag(FLAGS_driver) == "async") {
    if (channel_mode != "persistent") {
      return Fail(absl::InvalidArgumentError(
          "--driver=async needs --channel=persistent"));
    }
    return RunE2eAsync(address, *bundle, setups, options.timeout, ca_pid);
  }
  if (absl::GetFlag(FLAGS_driver) != "threads") {
    return Fail(
        absl::InvalidArgumentError("--driver must be threads or async"));
  }
  options.ca_bundle_pem = *bundle;
  options.server_name = absl::GetFlag(FLAGS_server_name);
  absl::StatusOr<std::unique_ptr<client::CaClient>> ca_client =
      client::CaClient::Create(options);
  if (!ca_client.ok()) return Fail(ca_client.status());

  const absl::Duration run = absl::Seconds(absl::GetFlag(FLAGS_seconds));
  std::vector<ClientResult> results(clients);
  std::atomic<bool> warmup_failed{false};
  std::atomic<bool> stop{false};
  absl::Barrier* ready = new absl::Barrier(clients + 1);  // freed by last one
  absl::Mutex start_mu;
  bool started = false;  // guarded by start_mu

  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      const ClientSetup& setup = setups[i];
      ClientResult& result = results[i];
      std::shared_ptr<grpc::Channel> channel;
      std::unique_ptr<v1::CertificateAuthority::Stub> stub;
      if (channel_mode == "persistent") {
        channel = MakeRenewalChannel(address, *bundle, setup);
        stub = v1::CertificateAuthority::NewStub(channel);
      }
      // One call: the generated stub on our channel, or CaClient::Issue.
      auto call = [&](const v1::IssueCertificateRequest& request,
                      v1::IssueCertificateResponse* response,
                      bool wait_for_ready = false) -> grpc::Status {
        if (stub == nullptr) {
          absl::StatusOr<v1::IssueCertificateResponse> r =
              (*ca_client)->Issue(request, "", setup.cert_pem, setup.key_pem);
          if (!r.ok()) {
            return grpc::Status(
                static_cast<grpc::StatusCode>(r.status().code()),
                std::string(r.status().message()));
          }
          *response = std::move(*r);
          return grpc::Status::OK;
        }
        grpc::ClientContext context;
        context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
        context.set_wait_for_ready(wait_for_ready);
        return stub->IssueCertificate(&context, request, response);
      };
      // Warm-up: connects (TLS handshake) before the clock starts. It waits
      // for the channel to be ready: with 64 clients connecting at once,
      // gRPC's client (1.51) now and then reports a connect() that failed
      // with errno 2 (about one run in 15, on the client side only), and
      // a call that does not wait fails on that first attempt.
      {
        v1::IssueCertificateResponse response;
        grpc::Status s =
            call(setup.requests[0], &response, /*wait_for_ready=*/true);
        if (!s.ok() || response.cert_chain_pem_size() == 0) {
          fprintf(stderr, "client %d warm-up failed: %d %s\n", i,
                  static_cast<int>(s.error_code()), s.error_message().c_str());
          warmup_failed = true;
        }
      }
      if (ready->Block()) delete ready;
      {
        absl::MutexLock lock(&start_mu);
        start_mu.Await(absl::Condition(&started));
      }
      if (warmup_failed) return;
      size_t next = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        const v1::IssueCertificateRequest& request =
            setup.requests[next++ % setup.requests.size()];
        v1::IssueCertificateResponse response;
        const absl::Time t0 = absl::Now();
        grpc::Status s = call(request, &response);
        const absl::Duration latency = absl::Now() - t0;
        if (s.ok() && response.cert_chain_pem_size() == 0) {
          s = grpc::Status(grpc::StatusCode::INTERNAL, "empty chain");
        }
        if (s.ok()) {
          ++result.ok;
          result.latencies.push_back(latency);
        } else {
          const int code = static_cast<int>(s.error_code());
          if (result.failures[code]++ == 0) {
            result.first_message[code] = s.error_message();
          }
        }
      }
    });
  }

  if (ready->Block()) delete ready;
  if (warmup_failed) {
    {
      absl::MutexLock lock(&start_mu);
      started = true;  // the threads see warmup_failed and return
    }
    for (std::thread& t : threads) t.join();
    return Fail(absl::UnavailableError("warm-up renewal failed"));
  }

  absl::StatusOr<absl::Duration> ca_cpu_start = absl::ZeroDuration();
  if (ca_pid > 0) ca_cpu_start = ProcessCpu(ca_pid);
  if (!ca_cpu_start.ok()) return Fail(ca_cpu_start.status());
  const absl::Duration self_cpu_start = SelfCpu();
  const absl::Time start = absl::Now();
  {
    absl::MutexLock lock(&start_mu);
    started = true;
  }
  absl::SleepFor(run);
  stop = true;
  // Calls in flight when the clock stops still finish and count; with a
  // closed loop that is at most one per client, and the wall time below runs
  // until they have.
  for (std::thread& t : threads) t.join();
  return Report(results, start, self_cpu_start, ca_pid, *ca_cpu_start);
}

}  // namespace
}  // namespace meshguard::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "ca_issue_bench --mode=bare|e2e: CA issuance throughput (see the "
      "comment at the top of tests/bench/ca_issue_bench.cc).");
  meshguard::util::ParseCommandLine(argc, argv);
  const std::string mode = absl::GetFlag(FLAGS_mode);
  if (mode == "bare") return meshguard::bench::RunBare();
  if (mode == "e2e") return meshguard::bench::RunE2e();
  fprintf(stderr, "ca_issue_bench: --mode must be bare or e2e\n");
  return 2;
}
