// A per-key token bucket: each key (a caller's SPIFFE ID, peer address, ...)
// may make `burst` calls at once and then `rate_per_second` calls per second
// on average.
//
// Memory is bounded by `max_keys` buckets. When a new key arrives at the bound,
// the least recently used bucket is evicted. If that bucket had refilled (a
// full bucket carries no information: a new bucket for the key would be
// identical) eviction is free; otherwise its key starts over with a full
// burst when it returns. So a flood of more than max_keys distinct keys can
// win each of them one extra burst, but can never grow memory; size max_keys
// well above the number of callers expected within one refill period
// (burst / rate seconds).
//
// Thread-safe: Allow() may be called from any thread; one mutex guards all
// buckets (the critical section is a hash lookup and a few arithmetic ops).
#ifndef MESHGUARD_IDENTITY_UTIL_RATE_LIMITER_H_
#define MESHGUARD_IDENTITY_UTIL_RATE_LIMITER_H_

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "identity/util/clock.h"

namespace meshguard::util {

class RateLimiter final {
 public:
  // rate_per_second <= 0 means unlimited: Allow() always returns true and no
  // state is kept. burst and max_keys below 1 are treated as 1. `clock` must
  // outlive the limiter.
  RateLimiter(double rate_per_second, uint32_t burst, size_t max_keys,
              const Clock* clock);

  RateLimiter(const RateLimiter&) = delete;
  RateLimiter& operator=(const RateLimiter&) = delete;

  // Takes one token from `key`'s bucket; false if it is empty.
  bool Allow(absl::string_view key);

  // Whether Allow(key) would succeed now, without taking a token. For
  // buckets charged only on failure (e.g. failed authentications per peer).
  bool WouldAllow(absl::string_view key);

  // Number of buckets currently held (for tests and metrics).
  size_t NumKeys() const;

 private:
  struct Bucket {
    double tokens;
    absl::Time last_refill;
    // Position in lru_ (front = most recently used).
    std::list<std::string>::iterator lru_position;
  };

  // Drops the least recently used bucket.
  void EvictOne() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const double rate_per_second_;
  const double burst_;
  const size_t max_keys_;
  const Clock* const clock_;

  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
  std::list<std::string> lru_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_RATE_LIMITER_H_
