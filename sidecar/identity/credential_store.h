// The seam between identity and the data plane (linkerd2-proxy's creds
// store): the identity agent publishes immutable snapshots of this
// workload's TLS identity; listeners read the current one for each new
// connection and keep it for the connection's life.
//
// Thread-safety: Publish and Current may be called from any thread. Current
// is a mutex-guarded shared_ptr copy, taken once per new connection, never
// per call.
#ifndef MESHGUARD_SIDECAR_IDENTITY_CREDENTIAL_STORE_H_
#define MESHGUARD_SIDECAR_IDENTITY_CREDENTIAL_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"
#include "identity/crypto/verifier.h"

namespace meshguard::sidecar {

// One workload identity, ready to handshake with. Immutable.
struct TlsCredentials {
  crypto::SslCtxPtr server_ctx;  // inbound: client certificate required
  crypto::SslCtxPtr client_ctx;  // outbound
  std::string spiffe_id;
  std::string serial;
  absl::Time not_before;
  absl::Time not_after;
  std::vector<std::string> chain_pem;  // leaf first
  std::shared_ptr<const crypto::TrustBundle> bundle;
  uint64_t bundle_sequence = 0;
  // Increases with every publish; connections remember it.
  uint64_t version = 0;
};

class CredentialStore {
 public:
  virtual ~CredentialStore() = default;
  // nullptr means "no valid identity": new handshakes must fail closed.
  virtual std::shared_ptr<const TlsCredentials> Current() const = 0;
};

class MutableCredentialStore final : public CredentialStore {
 public:
  std::shared_ptr<const TlsCredentials> Current() const override
      ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return current_;
  }

  // Publishes `credentials` (nullptr withdraws the identity). Assigns the
  // version. Validation is the publisher's job, done before this call.
  void Publish(std::shared_ptr<TlsCredentials> credentials)
      ABSL_LOCKS_EXCLUDED(mu_) {
    std::function<void()> on_publish;
    {
      absl::MutexLock lock(&mu_);
      if (credentials != nullptr) credentials->version = ++last_version_;
      current_ = std::move(credentials);
      on_publish = on_publish_;
    }
    if (on_publish) on_publish();
  }

  // Runs after every Publish, on the publishing thread, without the lock:
  // for whoever must act on new credentials at once (the sidecar checks
  // open connections against a new trust bundle). Set before publishing.
  void SetOnPublish(std::function<void()> on_publish) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    on_publish_ = std::move(on_publish);
  }

 private:
  mutable absl::Mutex mu_;
  std::shared_ptr<const TlsCredentials> current_ ABSL_GUARDED_BY(mu_);
  uint64_t last_version_ ABSL_GUARDED_BY(mu_) = 0;
  std::function<void()> on_publish_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_IDENTITY_CREDENTIAL_STORE_H_
