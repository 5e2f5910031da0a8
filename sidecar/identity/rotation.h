// When to renew a certificate and how long to wait after a failure: pure
// functions (SPIRE's rotationutil), so the policy is tested with tables and
// no clocks.
#ifndef MESHGUARD_SIDECAR_IDENTITY_ROTATION_H_
#define MESHGUARD_SIDECAR_IDENTITY_ROTATION_H_

#include "absl/time/time.h"

namespace meshguard::sidecar {

struct RotationPolicy {
  // Renew at this fraction of the lifetime...
  double renew_fraction = 0.5;
  // ...plus or minus this fraction of the lifetime, uniformly.
  double jitter_fraction = 0.1;
  absl::Duration initial_backoff = absl::Seconds(1);
  absl::Duration max_backoff = absl::Seconds(60);
};

// The moment to renew a certificate valid [not_before, not_after).
// `random01` in [0, 1) picks the jitter. The result is clamped to
// [not_before, not_after - 1/10 of the lifetime] so a renewal is never
// scheduled so late that a retry cannot happen before expiry.
absl::Time RenewalTime(absl::Time not_before, absl::Time not_after,
                       const RotationPolicy& policy, double random01);

// Delay before retry number `attempt` (1 = first retry): initial * 2^(n-1),
// capped at max_backoff, with "equal jitter" (half fixed, half random) so
// that many sidecars failing together do not retry in lockstep. Never past
// `time_left` / 2 when the certificate still has time left, so retries
// speed up as expiry nears.
absl::Duration RetryBackoff(int attempt, const RotationPolicy& policy,
                            double random01, absl::Duration time_left);

// Whether a certificate should be replaced now.
inline bool ShouldRenew(absl::Time now, absl::Time renew_at) {
  return now >= renew_at;
}

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_IDENTITY_ROTATION_H_
