#include "identity/util/rate_limiter.h"

#include <algorithm>

namespace meshguard::util {

RateLimiter::RateLimiter(double rate_per_second, uint32_t burst,
                         size_t max_keys, const Clock* clock)
    : rate_per_second_(rate_per_second),
      burst_(std::max<uint32_t>(burst, 1)),
      max_keys_(std::max<size_t>(max_keys, 1)),
      clock_(clock) {}

bool RateLimiter::Allow(absl::string_view key) {
  if (!(rate_per_second_ > 0)) return true;  // Also catches NaN.
  const absl::Time now = clock_->Now();

  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    while (buckets_.size() >= max_keys_) EvictOne();
    lru_.emplace_front(key);
    it = buckets_.emplace(std::string(key), Bucket{burst_, now, lru_.begin()})
             .first;
  } else {
    Bucket& b = it->second;
    // A clock stepped backwards refills nothing, rather than draining.
    const double elapsed =
        std::max(0.0, absl::ToDoubleSeconds(now - b.last_refill));
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_per_second_);
    b.last_refill = now;
    lru_.splice(lru_.begin(), lru_, b.lru_position);
  }

  Bucket& b = it->second;
  if (b.tokens < 1.0) return false;
  b.tokens -= 1.0;
  return true;
}

bool RateLimiter::WouldAllow(absl::string_view key) {
  if (!(rate_per_second_ > 0)) return true;
  const absl::Time now = clock_->Now();
  absl::MutexLock lock(&mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) return burst_ >= 1.0;
  const Bucket& b = it->second;
  const double elapsed =
      std::max(0.0, absl::ToDoubleSeconds(now - b.last_refill));
  return std::min(burst_, b.tokens + elapsed * rate_per_second_) >= 1.0;
}

size_t RateLimiter::NumKeys() const {
  absl::MutexLock lock(&mu_);
  return buckets_.size();
}

void RateLimiter::EvictOne() {
  // The least recently used bucket has had the longest to refill, so it is
  // the one most likely to be full, whose eviction loses nothing.
  buckets_.erase(lru_.back());
  lru_.pop_back();
}

}  // namespace meshguard::util
