// The identity agent: gets this workload its X.509-SVID, keeps it fresh, and
// publishes TLS credentials into the credential store. The data plane never
// talks to the CA; only this agent does (DESIGN.md, "floors").
//
// Lifecycle: Bootstrap() until it holds a valid identity (the sidecar binds
// no listener before that), then Start() runs renewal and the bundle watch
// on the agent's own thread. A failed renewal keeps the current certificate
// until it expires (gRPC's OnError contract); at expiry the agent withdraws
// the credentials, so new handshakes fail closed, and readiness drops.
//
// Thread-safety: public methods may be called from any thread.
#ifndef MESHGUARD_SIDECAR_IDENTITY_AGENT_H_
#define MESHGUARD_SIDECAR_IDENTITY_AGENT_H_

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "identity/client/ca_transport.h"
#include "identity/util/clock.h"
#include "proto/ca.pb.h"
#include "sidecar/identity/credential_store.h"
#include "sidecar/identity/rotation.h"

namespace meshguard::sidecar {

// Where certificates come from. The real one wraps an IdentityClient over
// H2CaTransport (the CA API without gRPC's C core); tests use one backed by
// an in-process CaSigner.
class IdentitySource {
 public:
  virtual ~IdentitySource() = default;
  // First certificate, with the bootstrap credential.
  virtual absl::StatusOr<client::IssuedCertificate> Bootstrap() = 0;
  // Renewal over mTLS with the current certificate (new key inside).
  virtual absl::StatusOr<client::IssuedCertificate> Renew(
      const client::IssuedCertificate& current) = 0;
  // Bundle updates, delivered on any thread until the returned watch is
  // destroyed. May return nullptr if the source has no watch.
  virtual std::unique_ptr<client::BundleWatch> Watch(
      std::function<void(const meshguard::ca::v1::TrustBundle&)> on_bundle) = 0;
  // Also trust `root_pems` (from a newer trust bundle) when authenticating
  // the CA, so that a root rotation reaches the CA connection too. Returns
  // true when the set of trusted roots changed (the watch should then be
  // re-opened). Any thread.
  virtual bool TrustRoots(const std::vector<std::string>& root_pems) {
    return false;
  }
};

struct CaIdentitySourceOptions {
  client::CaClientOptions ca;
  std::string token_file;  // re-read at every bootstrap
  std::string join_token;  // usable once
  absl::Duration ttl = absl::ZeroDuration();
};

absl::StatusOr<std::unique_ptr<IdentitySource>> NewCaIdentitySource(
    CaIdentitySourceOptions options);

struct AgentStats {
  uint64_t renewals_ok = 0;
  uint64_t renewals_failed = 0;
  uint64_t bundle_updates = 0;
  std::string last_error;
  std::string spiffe_id;
  std::string serial;
  absl::Time not_before = absl::InfinitePast();
  absl::Time not_after = absl::InfinitePast();
  absl::Time next_renewal = absl::InfinitePast();
};

class IdentityAgent final {
 public:
  IdentityAgent(std::unique_ptr<IdentitySource> source,
                std::string trust_domain, RotationPolicy policy,
                MutableCredentialStore* store, const util::Clock* clock,
                std::function<double()> random01);
  ~IdentityAgent();

  // Tries to obtain the first identity, retrying with backoff, until it
  // succeeds or `deadline` passes (then the last error).
  absl::Status Bootstrap(absl::Time deadline);

  // Starts the renewal thread and the bundle watch. Call after Bootstrap.
  void Start();
  void Stop();
  // Ends a Bootstrap() waiting between attempts (it returns its last error)
  // and the renewal loop; thread-safe, for a signal while bootstrapping.
  // Stop() is still needed to join what Start() started.
  void RequestStop();

  // Holds an unexpired identity.
  bool Ready() const;
  AgentStats Stats() const;

  // One step of the renewal loop at time `now`: renew, re-bootstrap or
  // withdraw as due. Returns when to step next. Public for tests.
  absl::Time Step(absl::Time now);

 private:
  // Validates `issued` (its leaf verifies against its own bundle for our
  // trust domain) and publishes credentials made from it.
  absl::Status Install(client::IssuedCertificate issued)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status Publish(const meshguard::ca::v1::TrustBundle& bundle)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void OnBundle(const meshguard::ca::v1::TrustBundle& bundle);
  void Run();

  const std::unique_ptr<IdentitySource> source_;
  const std::string trust_domain_;
  const RotationPolicy policy_;
  MutableCredentialStore* const store_;
  const util::Clock* const clock_;
  const std::function<double()> random01_;

  mutable absl::Mutex mu_;
  std::unique_ptr<client::IssuedCertificate> current_ ABSL_GUARDED_BY(mu_);
  meshguard::ca::v1::TrustBundle bundle_ ABSL_GUARDED_BY(mu_);
  bool published_ ABSL_GUARDED_BY(mu_) = false;
  int failed_attempts_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time renew_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  absl::Time retry_at_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  AgentStats stats_ ABSL_GUARDED_BY(mu_);

  std::unique_ptr<client::BundleWatch> watch_;  // only the Run thread swaps it
  std::atomic<bool> reopen_watch_{false};
  absl::Notification stop_;
  std::atomic<bool> stop_requested_{false};  // stop_ notified exactly once
  std::thread thread_;
};

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_IDENTITY_AGENT_H_
