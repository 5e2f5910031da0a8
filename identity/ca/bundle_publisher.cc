#include "identity/ca/bundle_publisher.h"

#include "absl/strings/str_cat.h"

namespace meshguard::ca {

absl::Status BundlePublisher::Publish(const std::vector<std::string>& root_pems,
                                      const std::string& crl_pem,
                                      uint64_t sequence_number) {
  absl::MutexLock lock(&mu_);
  if (sequence_number <= current_.sequence_number()) {
    return absl::FailedPreconditionError(
        absl::StrCat("trust bundle sequence number ", sequence_number,
                     " is not above the current ", current_.sequence_number()));
  }
  current_.set_trust_domain(trust_domain_);
  current_.clear_root_certificates_pem();
  for (const std::string& pem : root_pems) {
    current_.add_root_certificates_pem(pem);
  }
  current_.set_crl_pem(crl_pem);
  current_.set_sequence_number(sequence_number);
  // Listeners only queue a write; calling them under the lock keeps every
  // watcher's view in sequence order.
  for (auto& [handle, listener] : listeners_) listener(current_);
  return absl::OkStatus();
}

meshguard::ca::v1::TrustBundle BundlePublisher::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

uint64_t BundlePublisher::Subscribe(Listener listener) {
  absl::MutexLock lock(&mu_);
  uint64_t handle = next_handle_++;
  listeners_.emplace(handle, std::move(listener));
  return handle;
}

void BundlePublisher::Unsubscribe(uint64_t handle) {
  absl::MutexLock lock(&mu_);
  listeners_.erase(handle);
}

size_t BundlePublisher::watcher_count() const {
  absl::MutexLock lock(&mu_);
  return listeners_.size();
}

}  // namespace meshguard::ca
