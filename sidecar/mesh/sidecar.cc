#include "sidecar/mesh/sidecar.h"

#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <map>
#include <random>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "identity/crypto/certificate.h"
#include "identity/util/admin_http.h"
#include "identity/util/clock.h"
#include "identity/util/file_util.h"
#include "identity/util/json_log.h"
#include "identity/util/listener_pause.h"
#include "identity/util/metrics.h"
#include "sidecar/authz/policy_source.h"
#include "sidecar/config/sidecar_config.h"
#include "sidecar/identity/agent.h"
#include "sidecar/identity/credential_store.h"
#include "sidecar/mesh/filters.h"
#include "sidecar/mesh/telemetry.h"
#include "sidecar/proxy/proxy.h"
#include "sidecar/tls/mesh_security.h"

namespace meshguard::sidecar {
namespace {

using ::google::protobuf::Struct;
using ::google::protobuf::Value;
using ::meshguard::config::v1::SidecarConfig;

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

std::string ToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options)
           .ok()) {
    return "{}";
  }
  return out;
}

void Set(Struct* s, const std::string& key, const std::string& value) {
  (*s->mutable_fields())[key].set_string_value(value);
}
void Set(Struct* s, const std::string& key, double value) {
  (*s->mutable_fields())[key].set_number_value(value);
}

// Prometheus counters fed from totals kept elsewhere (proxy counters, agent
// and policy statistics): at each scrape, the difference since the last one
// is added, so the exported series stay monotonic counters.
class CounterSync {
 public:
  void Add(util::Counter* counter, std::function<uint64_t()> source)
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    entries_.push_back({counter, std::move(source), 0});
  }
  void Sync() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    for (Entry& e : entries_) {
      uint64_t now = e.source();
      if (now > e.last) e.counter->Inc(now - e.last);
      e.last = now;
    }
  }

 private:
  struct Entry {
    util::Counter* counter;
    std::function<uint64_t()> source;
    uint64_t last;
  };
  absl::Mutex mu_;
  std::vector<Entry> entries_ ABSL_GUARDED_BY(mu_);
};

// SIGTERM and SIGINT, blocked in every thread (main.cc) and waited for.
sigset_t StopSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

absl::Status BlockingWaitForSignal(absl::Duration timeout, bool* got) {
  const sigset_t set = StopSignals();
  timespec ts;
  ts.tv_sec = absl::ToInt64Seconds(timeout);
  ts.tv_nsec = absl::ToInt64Nanoseconds(timeout - absl::Seconds(ts.tv_sec));
  int sig = sigtimedwait(&set, nullptr, &ts);
  *got = sig == SIGTERM || sig == SIGINT;
  return absl::OkStatus();
}

}  // namespace

absl::Status RunSidecar(const SidecarConfig& config,
                        const RunOptions& options) {
  // Every call in flight holds a descriptor on each side: not the 1024 of a
  // shell's default when the container allows more.
  const uint64_t max_open_files = util::RaiseOpenFileLimit();
  std::atomic<bool> ready{false};
  util::MetricsRegistry metrics;
  MutableCredentialStore store;

  // 1. Admin endpoint first: liveness from the start, readiness later.
  absl::StatusOr<std::unique_ptr<util::AdminHttpServer>> admin =
      util::AdminHttpServer::Create(config.listeners().admin(), nullptr);
  if (!admin.ok()) return admin.status();

  // 2. The policy: a configured file that does not load stops the start.
  authz::PolicyWatcher::Options policy_options;
  policy_options.path = config.policy_file();
  policy_options.trust_domain = config.trust_domain();
  util::CounterFamily* reloads = metrics.AddCounter(
      "meshguard_policy_reloads_total",
      "Policy file reloads by result (ok, error).", {"result"});
  policy_options.on_reload = [](const absl::Status& result,
                                const authz::PolicySnapshot& now) {
    util::LogLine(result.ok() ? "info" : "error",
                  result.ok() ? "policy_reloaded" : "policy_refused")
        .Add("source", now.source)
        .Add("version", static_cast<int64_t>(now.version))
        .Add("message", result.ok() ? "" : result.ToString())
        .Emit();
  };
  absl::StatusOr<std::unique_ptr<authz::PolicyWatcher>> policy =
      authz::PolicyWatcher::Create(policy_options);
  if (!policy.ok()) return policy.status();

  // 3. Identity.
  CaIdentitySourceOptions source_options;
  source_options.ca.address = config.ca().address();
  source_options.ca.server_name = config.ca().server_name();
  absl::StatusOr<std::string> ca_bundle =
      util::ReadFile(config.ca().ca_bundle_file());
  if (!ca_bundle.ok()) return ca_bundle.status();
  source_options.ca.ca_bundle_pem = *ca_bundle;
  source_options.token_file = config.ca().token_file();
  source_options.join_token = config.ca().join_token();
  if (config.ca().has_ttl()) source_options.ttl = ToAbsl(config.ca().ttl());
  absl::StatusOr<std::unique_ptr<IdentitySource>> source =
      NewCaIdentitySource(source_options);
  if (!source.ok()) return source.status();
  RotationPolicy rotation;
  rotation.renew_fraction = config.rotation().renew_fraction();
  rotation.jitter_fraction = config.rotation().jitter_fraction();
  rotation.initial_backoff = ToAbsl(config.rotation().initial_backoff());
  rotation.max_backoff = ToAbsl(config.rotation().max_backoff());
  auto rng = std::make_shared<std::mt19937_64>(std::random_device{}());
  auto rng_mu = std::make_shared<absl::Mutex>();
  IdentityAgent agent(std::move(*source), config.trust_domain(), rotation,
                      &store, util::RealClock(), [rng, rng_mu] {
                        absl::MutexLock lock(rng_mu.get());
                        return std::uniform_real_distribution<double>(0,
                                                                      1)(*rng);
                      });

  // Metrics fed at scrape time.
  CounterSync sync;
  util::CounterFamily* renewals = metrics.AddCounter(
      "meshguard_certificate_renewals_total",
      "Certificate renewals by result (ok, error).", {"result"});
  sync.Add(renewals->WithLabels({"ok"}),
           [&agent] { return agent.Stats().renewals_ok; });
  sync.Add(renewals->WithLabels({"error"}),
           [&agent] { return agent.Stats().renewals_failed; });
  sync.Add(reloads->WithLabels({"ok"}),
           [&p = **policy] { return p.reload_stats().ok; });
  sync.Add(reloads->WithLabels({"error"}),
           [&p = **policy] { return p.reload_stats().error; });
  metrics
      .AddGauge("meshguard_certificate_expiry_timestamp_seconds",
                "notAfter of the certificate in use (Unix seconds); 0 without "
                "one.")
      ->WithLabels({})
      ->SetCallback([&store] {
        auto creds = store.Current();
        return creds == nullptr
                   ? 0.0
                   : static_cast<double>(absl::ToUnixSeconds(creds->not_after));
      });
  metrics
      .AddGauge("meshguard_trust_bundle_root_expiry_timestamp_seconds",
                "Earliest notAfter among the trust bundle's roots.")
      ->WithLabels({})
      ->SetCallback([&store] {
        auto creds = store.Current();
        return creds == nullptr ? 0.0
                                : static_cast<double>(absl::ToUnixSeconds(
                                      creds->bundle->earliest_root_expiry()));
      });
  metrics.AddGauge("meshguard_ready", "1 when the sidecar serves traffic.")
      ->WithLabels({})
      ->SetCallback([&ready, &agent] {
        // As /readyz: serving, and on an unexpired identity.
        return ready.load() && agent.Ready() ? 1.0 : 0.0;
      });

  util::AdminHttpServer* http = admin->get();
  http->Handle("/healthz", {"GET"}, [](const util::HttpRequest&) {
    return util::HttpResponse{200, "text/plain; charset=utf-8", "ok\n"};
  });
  http->Handle("/readyz", {"GET"}, [&](const util::HttpRequest&) {
    bool ok = ready.load() && agent.Ready();
    return util::HttpResponse{ok ? 200 : 503, "text/plain; charset=utf-8",
                              ok ? "ready\n" : "not ready\n"};
  });
  http->Handle("/metrics", {"GET"}, [&](const util::HttpRequest&) {
    sync.Sync();
    return util::HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8",
                              metrics.RenderPrometheusText()};
  });
  http->Handle("/certs", {"GET"}, [&](const util::HttpRequest&) {
    Struct out;
    auto creds = store.Current();
    AgentStats stats = agent.Stats();
    if (creds != nullptr) {
      Set(&out, "spiffe_id", creds->spiffe_id);
      Set(&out, "serial", creds->serial);
      Set(&out, "not_before", FormatUtc(creds->not_before));
      Set(&out, "not_after", FormatUtc(creds->not_after));
      Set(&out, "next_renewal", FormatUtc(stats.next_renewal));
      auto* chain = (*out.mutable_fields())["chain"].mutable_list_value();
      for (const std::string& pem : creds->chain_pem) {
        chain->add_values()->set_string_value(pem);
      }
      Struct bundle;
      Set(&bundle, "trust_domain", creds->bundle->trust_domain());
      Set(&bundle, "sequence_number",
          static_cast<double>(creds->bundle_sequence));
      Set(&bundle, "crls", static_cast<double>(creds->bundle->crl_count()));
      auto* roots = (*bundle.mutable_fields())["roots"].mutable_list_value();
      for (X509* root : creds->bundle->roots()) {
        crypto::CertificateInfo info = crypto::DescribeCertificate(root);
        Struct r;
        Set(&r, "subject", info.subject);
        Set(&r, "serial", info.serial);
        Set(&r, "not_after", FormatUtc(info.not_after));
        *roots->add_values()->mutable_struct_value() = r;
      }
      *(*out.mutable_fields())["bundle"].mutable_struct_value() = bundle;
    } else {
      Set(&out, "spiffe_id", "");
      Set(&out, "status", "no valid identity");
    }
    Set(&out, "renewals_ok", static_cast<double>(stats.renewals_ok));
    Set(&out, "renewals_failed", static_cast<double>(stats.renewals_failed));
    Set(&out, "last_error", stats.last_error);
    return util::HttpResponse{200, "application/json", ToJson(out)};
  });
  http->Handle("/policy", {"GET"}, [&](const util::HttpRequest&) {
    Struct out;
    auto snapshot = (*policy)->Current();
    authz::ReloadStats stats = (*policy)->reload_stats();
    Set(&out, "source", snapshot->source);
    Set(&out, "version", static_cast<double>(snapshot->version));
    Set(&out, "content_hash", snapshot->content_hash);
    Set(&out, "rules", static_cast<double>(snapshot->policy->rule_count()));
    Set(&out, "reloads_ok", static_cast<double>(stats.ok));
    Set(&out, "reloads_error", static_cast<double>(stats.error));
    Set(&out, "last_reload_result",
        stats.last_result.ok() ? "ok" : stats.last_result.ToString());
    return util::HttpResponse{200, "application/json", ToJson(out)};
  });
  http->Handle("/config_dump", {"GET"}, [&](const util::HttpRequest&) {
    SidecarConfig shown = config;
    // Secrets never leave the process; keys are not in the config at all.
    if (!shown.ca().join_token().empty()) {
      shown.mutable_ca()->set_join_token("<redacted>");
    }
    auto snapshot = (*policy)->Current();
    return util::HttpResponse{
        200, "application/json",
        absl::StrCat(
            "{\n\"config\": ", ToJson(shown), ",\n\"policy\": {\"source\": \"",
            snapshot->source, "\", \"version\": ", snapshot->version,
            ", \"content_hash\": \"", snapshot->content_hash, "\"}\n}\n")};
  });
  if (absl::Status s = http->Start(); !s.ok()) {
    return absl::Status(s.code(),
                        absl::StrCat("listeners.admin: ", s.message()));
  }
  // The handlers use what is declared above; stop serving before any of it
  // goes away, on every return path.
  auto stop_http = absl::MakeCleanup([http] { http->Stop(); });
  util::LogLine("info", "sidecar_starting")
      .Add("admin", config.listeners().admin())
      .Add("ca", config.ca().address())
      .Add("max_open_files", static_cast<int64_t>(max_open_files))
      .Emit();

  // 4. What can still be wrong with the config, checked before the
  // bootstrap: a join token is spent by it, so a config error found later
  // would leave the operator with a config fixed and a token gone.
  absl::StatusOr<std::unique_ptr<AccessLog>> access_log = AccessLog::Open(
      config.access_log().path(), config.access_log().sample_rate());
  if (!access_log.ok()) return access_log.status();
  absl::StatusOr<std::unique_ptr<OutboundRouter>> outbound_router =
      OutboundRouter::Create(config, config.listeners().outbound());
  if (!outbound_router.ok()) return outbound_router.status();
  // The listeners are bound once an identity is held; a port someone else
  // listens on is found now (AddListener checks again).
  for (const auto& [field, address] :
       {std::pair<const char*, std::string>{"listeners.outbound",
                                            config.listeners().outbound()},
        {"listeners.inbound", config.listeners().inbound()}}) {
    if (absl::Status s = proxy::CheckNobodyListensOn(address); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(field, ": ", s.message()));
    }
  }
  if (!config.ca().token_file().empty()) {
    // Read again at every bootstrap and renewal attempt (the kubelet
    // rotates it); missing at start is a mistake, not a wait.
    if (absl::StatusOr<std::string> token =
            util::ReadFile(config.ca().token_file(), 65536);
        !token.ok()) {
      return absl::Status(
          token.status().code(),
          absl::StrCat("ca.token_file: ", token.status().message()));
    }
  }

  // 5. A valid identity before any listener. SIGTERM or SIGINT while the
  // CA is being waited for (it is down, the pod is being deleted) ends the
  // wait: the stop signals are blocked in every thread, so one thread
  // waits for them for the length of the bootstrap.
  std::atomic<bool> bootstrapping{true};
  std::atomic<bool> signalled{false};
  std::thread signal_watch([&] {
    while (bootstrapping.load()) {
      bool got = false;
      BlockingWaitForSignal(absl::Milliseconds(200), &got).IgnoreError();
      if (got) {
        signalled = true;
        agent.RequestStop();
        return;
      }
    }
  });
  absl::Status bootstrapped =
      agent.Bootstrap(absl::Now() + options.bootstrap_timeout);
  bootstrapping = false;
  signal_watch.join();
  if (signalled.load()) {
    agent.Stop();
    util::LogLine("info", "sidecar_stopped").Add("during", "bootstrap").Emit();
    return absl::OkStatus();
  }
  if (!bootstrapped.ok()) {
    return absl::Status(bootstrapped.code(),
                        absl::StrCat("cannot get an identity from the CA: ",
                                     bootstrapped.message()));
  }
  agent.Start();
  std::shared_ptr<const TlsCredentials> creds = store.Current();

  // 6. The data plane.
  CallTelemetry telemetry(&metrics, access_log->get(),
                          config.metrics().max_principals(),
                          config.metrics().max_methods());
  InboundFilter inbound_filter(policy->get(), &telemetry);
  OutboundObserver outbound_observer(creds->spiffe_id, &telemetry);
  AppRouter app_router(config.app_address());
  MeshConnectionSecurity security(&store);

  proxy::ProxyOptions proxy_options;
  proxy_options.num_workers = static_cast<int>(config.workers());
  proxy_options.connect_timeout = ToAbsl(config.timeouts().connect());
  proxy_options.idle_timeout = ToAbsl(config.timeouts().idle());
  // Drain a connection well before its certificates expire, but not so
  // early that short-lived certificates drain every connection at once.
  // (Lifetime from now: notBefore is backdated for clock skew.)
  const absl::Duration lifetime =
      creds->not_after - std::max(creds->not_before, absl::Now());
  proxy_options.credential_expiry_margin =
      std::min(absl::Seconds(30), lifetime / 5);
  proxy_options.on_accept_failure = [](const proxy::AcceptFailureReport& r) {
    util::AcceptFailure failure;
    failure.error = r.error;
    failure.failures = r.failures;
    util::LogAcceptFailure(
        r.role == proxy::ListenerRole::kInboundTls ? "inbound" : "outbound",
        r.address, failure);
  };
  absl::StatusOr<std::unique_ptr<proxy::Proxy>> created =
      proxy::Proxy::Create(proxy_options, &security);
  if (!created.ok()) return created.status();
  std::unique_ptr<proxy::Proxy> proxy = std::move(*created);

  proxy::ListenerConfig outbound;
  outbound.address = config.listeners().outbound();
  outbound.role = proxy::ListenerRole::kOutboundH2c;
  outbound.router = outbound_router->get();
  outbound.filter = &outbound_observer;
  if (absl::StatusOr<int> port = proxy->AddListener(outbound); !port.ok()) {
    return absl::Status(
        port.status().code(),
        absl::StrCat("listeners.outbound: ", port.status().message()));
  }
  proxy::ListenerConfig inbound;
  inbound.address = config.listeners().inbound();
  inbound.role = proxy::ListenerRole::kInboundTls;
  inbound.router = &app_router;
  inbound.filter = &inbound_filter;
  inbound.local_identity = creds->spiffe_id;
  if (absl::StatusOr<int> port = proxy->AddListener(inbound); !port.ok()) {
    return absl::Status(
        port.status().code(),
        absl::StrCat("listeners.inbound: ", port.status().message()));
  }

  // Proxy counters, exported as Prometheus series.
  util::GaugeFamily* active = metrics.AddGauge(
      "meshguard_active", "Open connections and streams.", {"kind"});
  proxy::Proxy* p = proxy.get();
  active->WithLabels({"downstream_connections"})->SetCallback([p] {
    return static_cast<double>(
        p->TotalCounters().downstream_connections_active);
  });
  active->WithLabels({"upstream_connections"})->SetCallback([p] {
    return static_cast<double>(p->TotalCounters().upstream_connections_active);
  });
  active->WithLabels({"streams"})->SetCallback([p] {
    return static_cast<double>(p->TotalCounters().streams_active);
  });
  util::CounterFamily* handshakes = metrics.AddCounter(
      "meshguard_tls_handshake_failures_total",
      "TLS handshake failures by side and reason.", {"side", "reason"});
  using CV = proxy::CounterValues;
  const std::vector<std::tuple<const char*, const char*, uint64_t CV::*>>
      handshake_sources = {
          {"inbound", "tls_error", &CV::downstream_handshake_tls_error},
          {"inbound", "identity_rejected",
           &CV::downstream_handshake_identity_rejected},
          {"inbound", "alpn_mismatch", &CV::downstream_handshake_alpn_mismatch},
          {"inbound", "timeout", &CV::downstream_handshake_timeout},
          {"outbound", "connect_error", &CV::upstream_connect_error},
          {"outbound", "connect_timeout", &CV::upstream_connect_timeout},
          {"outbound", "tls_error", &CV::upstream_handshake_tls_error},
          {"outbound", "identity_rejected",
           &CV::upstream_handshake_identity_rejected},
          {"outbound", "alpn_mismatch", &CV::upstream_handshake_alpn_mismatch},
      };
  for (const auto& [side, reason, field] : handshake_sources) {
    sync.Add(handshakes->WithLabels({side, reason}),
             [p, f = field] { return p->TotalCounters().*f; });
  }
  util::CounterFamily* accept_failures = metrics.AddCounter(
      "meshguard_accept_failures_total",
      "accept() failures on a listener for want of file descriptors or "
      "memory; the listener pauses 100 ms (or until a connection closes) "
      "instead of spinning. See the accept_failed log line.",
      {"listener"});
  sync.Add(accept_failures->WithLabels({"inbound"}),
           [p] { return p->TotalCounters().inbound_accept_failures; });
  sync.Add(accept_failures->WithLabels({"outbound"}),
           [p] { return p->TotalCounters().outbound_accept_failures; });
  util::CounterFamily* drained = metrics.AddCounter(
      "meshguard_connections_drained_for_credentials_total",
      "Connections drained (GOAWAY, then closed once idle) because a "
      "certificate on them was about to expire or a new trust bundle "
      "(roots, CRL) no longer accepts the peer's.",
      {});
  sync.Add(drained->WithLabels({}), [p] {
    return p->TotalCounters().connections_drained_for_credentials;
  });
  util::CounterFamily* rechecks = metrics.AddCounter(
      "meshguard_bundle_rechecks_total",
      "Connections whose peer was checked again because a new trust bundle "
      "arrived, by outcome: kept (still accepted), drained (refused: GOAWAY), "
      "in_handshake (checked once its handshake completes).",
      {"result"});
  for (const auto& [result, field] :
       std::vector<std::pair<const char*, uint64_t CV::*>>{
           {"kept", &CV::rechecks_kept},
           {"drained", &CV::rechecks_drained},
           {"in_handshake", &CV::rechecks_in_handshake}}) {
    sync.Add(rechecks->WithLabels({result}),
             [p, f = field] { return p->TotalCounters().*f; });
  }
  util::CounterFamily* bytes = metrics.AddCounter(
      "meshguard_bytes_total", "Bytes through the data plane.", {"direction"});
  sync.Add(bytes->WithLabels({"in"}),
           [p] { return p->TotalCounters().bytes_in; });
  sync.Add(bytes->WithLabels({"out"}),
           [p] { return p->TotalCounters().bytes_out; });

  if (absl::Status s = proxy->Start(); !s.ok()) return s;
  ready = true;
  util::LogLine("info", "sidecar_ready")
      .Add("spiffe_id", creds->spiffe_id)
      .Add("outbound", config.listeners().outbound())
      .Add("inbound", config.listeners().inbound())
      .Add("app", config.app_address())
      .Add("workers", static_cast<int64_t>(config.workers()))
      .Emit();

  // 7. Until a signal: on a new trust bundle (a new CRL, a root change),
  // the peers of connections authenticated under the old one are checked
  // again, and those the new one refuses are drained, so a revoked peer's
  // connection does not live on; the others carry on. The store wakes this
  // loop as soon as the agent publishes (eventfd), and the stop signals
  // arrive on a signalfd (they are blocked in every thread: main.cc).
  const sigset_t stop_signals = StopSignals();
  const int wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  const int signal_fd = signalfd(-1, &stop_signals, SFD_CLOEXEC | SFD_NONBLOCK);
  auto close_loop_fds = absl::MakeCleanup([&store, wake_fd, signal_fd] {
    store.SetOnPublish(nullptr);
    if (wake_fd >= 0) close(wake_fd);
    if (signal_fd >= 0) close(signal_fd);
  });
  if (wake_fd < 0 || signal_fd < 0) {
    return absl::InternalError(absl::StrCat(
        "cannot wait for signals and credentials: ", strerror(errno)));
  }
  store.SetOnPublish([wake_fd] {
    const uint64_t one = 1;
    // Only fails when the counter would overflow: a wake-up is pending.
    (void)!write(wake_fd, &one, sizeof(one));
  });
  uint64_t bundle_sequence = creds->bundle_sequence;
  auto recheck_on_new_bundle = [&] {
    std::shared_ptr<const TlsCredentials> now = store.Current();
    if (now == nullptr || now->bundle_sequence == bundle_sequence) return;
    bundle_sequence = now->bundle_sequence;
    const proxy::RecheckCounts counts =
        proxy->RecheckPeersOlderThan(now->version);
    util::LogLine("info", "bundle_changed")
        .Add("sequence", static_cast<int64_t>(bundle_sequence))
        .Add("connections_kept", static_cast<int64_t>(counts.kept))
        .Add("connections_drained", static_cast<int64_t>(counts.drained))
        .Add("connections_in_handshake",
             static_cast<int64_t>(counts.in_handshake))
        .Add("chains_verified", static_cast<int64_t>(counts.chains_verified))
        .Emit();
  };
  recheck_on_new_bundle();  // one may have come while the proxy started
  while (true) {
    pollfd fds[2] = {{signal_fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("poll: ", strerror(errno)));
    }
    if (fds[0].revents & POLLIN) break;  // SIGTERM or SIGINT
    if (fds[1].revents & POLLIN) {
      uint64_t publishes = 0;
      (void)!read(wake_fd, &publishes, sizeof(publishes));
      recheck_on_new_bundle();
    }
  }

  // 8. Drain.
  ready = false;
  util::LogLine("info", "sidecar_draining")
      .Add("deadline_s",
           absl::ToDoubleSeconds(ToAbsl(config.timeouts().drain())))
      .Emit();
  proxy->Drain(absl::Now() + ToAbsl(config.timeouts().drain()));
  agent.Stop();
  util::LogLine("info", "sidecar_stopped").Emit();
  return absl::OkStatus();
}

}  // namespace meshguard::sidecar
