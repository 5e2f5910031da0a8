// The CA's current trust bundle (roots + CRL + sequence number), and the
// watchers that must hear of every change.
//
// Thread-safe. Publish() may be called from any thread (an admin RPC after a
// revocation, the CRL refresher); watchers' callbacks run on the publishing
// thread and must not block.
#ifndef MESHGUARD_IDENTITY_CA_BUNDLE_PUBLISHER_H_
#define MESHGUARD_IDENTITY_CA_BUNDLE_PUBLISHER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "proto/ca.pb.h"

namespace meshguard::ca {

class BundlePublisher final {
 public:
  using Listener = std::function<void(const meshguard::ca::v1::TrustBundle&)>;

  explicit BundlePublisher(std::string trust_domain)
      : trust_domain_(std::move(trust_domain)) {}

  // Replaces roots and CRL under `sequence_number` and tells every listener.
  // The caller's number must survive a restart of the CA (the CA uses the
  // CRL number, kept in the issuance log): watchers ignore a bundle whose
  // number is not above the last one they saw. A number that does not
  // increase is refused with FAILED_PRECONDITION and nothing is published.
  absl::Status Publish(const std::vector<std::string>& root_pems,
                       const std::string& crl_pem, uint64_t sequence_number)
      ABSL_LOCKS_EXCLUDED(mu_);

  meshguard::ca::v1::TrustBundle Current() const ABSL_LOCKS_EXCLUDED(mu_);

  // Registers a listener; returns a handle for Unsubscribe. The listener is
  // not called with the current bundle; read Current() after subscribing.
  uint64_t Subscribe(Listener listener) ABSL_LOCKS_EXCLUDED(mu_);
  void Unsubscribe(uint64_t handle) ABSL_LOCKS_EXCLUDED(mu_);
  size_t watcher_count() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const std::string trust_domain_;
  mutable absl::Mutex mu_;
  meshguard::ca::v1::TrustBundle current_ ABSL_GUARDED_BY(mu_);
  uint64_t next_handle_ ABSL_GUARDED_BY(mu_) = 1;
  std::map<uint64_t, Listener> listeners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_BUNDLE_PUBLISHER_H_
