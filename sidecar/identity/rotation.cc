#include "sidecar/identity/rotation.h"

#include <algorithm>
#include <cmath>

namespace meshguard::sidecar {

absl::Time RenewalTime(absl::Time not_before, absl::Time not_after,
                       const RotationPolicy& policy, double random01) {
  if (not_after <= not_before) return not_before;
  const absl::Duration lifetime = not_after - not_before;
  const double jitter = (random01 * 2.0 - 1.0) * policy.jitter_fraction;
  double fraction = std::clamp(policy.renew_fraction + jitter, 0.0, 1.0);
  absl::Time at = not_before + lifetime * fraction;
  const absl::Time latest = not_after - lifetime / 10;
  return std::clamp(at, not_before, latest);
}

absl::Duration RetryBackoff(int attempt, const RotationPolicy& policy,
                            double random01, absl::Duration time_left) {
  attempt = std::max(attempt, 1);
  absl::Duration base = policy.initial_backoff;
  for (int i = 1; i < attempt && base < policy.max_backoff; ++i) base *= 2;
  base = std::min(base, policy.max_backoff);
  absl::Duration delay = base / 2 + (base / 2) * random01;
  if (time_left > absl::ZeroDuration()) {
    delay = std::min(delay, time_left / 2);
  }
  return std::max(delay, absl::Milliseconds(10));
}

}  // namespace meshguard::sidecar
