#include "sidecar/identity/rotation.h"

#include <gtest/gtest.h>

namespace meshguard::sidecar {
namespace {

const absl::Time kStart = absl::FromUnixSeconds(1800000000);

struct RenewalCase {
  const char* name;
  absl::Duration lifetime;
  double fraction, jitter, random01;
  absl::Duration expected_after_start;
};

class RenewalTimeTest : public ::testing::TestWithParam<RenewalCase> {};

TEST_P(RenewalTimeTest, Table) {
  const RenewalCase& c = GetParam();
  RotationPolicy policy;
  policy.renew_fraction = c.fraction;
  policy.jitter_fraction = c.jitter;
  EXPECT_EQ(RenewalTime(kStart, kStart + c.lifetime, policy, c.random01),
            kStart + c.expected_after_start);
}

INSTANTIATE_TEST_SUITE_P(
    Policy, RenewalTimeTest,
    ::testing::Values(
        RenewalCase{"half_no_jitter", absl::Hours(1), 0.5, 0.0, 0.3,
                    absl::Minutes(30)},
        RenewalCase{"jitter_low_end", absl::Hours(1), 0.5, 0.1, 0.0,
                    absl::Minutes(24)},
        RenewalCase{"jitter_high_end", absl::Hours(1), 0.5, 0.1, 1.0,
                    absl::Minutes(36)},
        RenewalCase{"jitter_middle", absl::Hours(1), 0.5, 0.1, 0.5,
                    absl::Minutes(30)},
        // Never later than 90% of the lifetime, so a retry still fits.
        RenewalCase{"clamped_late", absl::Hours(1), 0.99, 0.0, 0.5,
                    absl::Minutes(54)},
        RenewalCase{"clamped_early", absl::Hours(1), 0.0, 0.5, 0.0,
                    absl::ZeroDuration()},
        RenewalCase{"short_ttl", absl::Seconds(4), 0.5, 0.0, 0.0,
                    absl::Seconds(2)}),
    [](const auto& info) { return info.param.name; });

TEST(RenewalTimeTest, InvertedValidityRenewsAtOnce) {
  RotationPolicy policy;
  EXPECT_EQ(RenewalTime(kStart, kStart - absl::Seconds(1), policy, 0.5),
            kStart);
}

struct BackoffCase {
  const char* name;
  int attempt;
  double random01;
  absl::Duration time_left;
  absl::Duration expected;
};

class RetryBackoffTest : public ::testing::TestWithParam<BackoffCase> {};

TEST_P(RetryBackoffTest, Table) {
  const BackoffCase& c = GetParam();
  RotationPolicy policy;  // 1s initial, 60s max
  EXPECT_EQ(RetryBackoff(c.attempt, policy, c.random01, c.time_left),
            c.expected);
}

INSTANTIATE_TEST_SUITE_P(
    Policy, RetryBackoffTest,
    ::testing::Values(
        BackoffCase{"first_min", 1, 0.0, absl::ZeroDuration(),
                    absl::Milliseconds(500)},
        BackoffCase{"first_max", 1, 1.0, absl::ZeroDuration(),
                    absl::Seconds(1)},
        BackoffCase{"third", 3, 0.0, absl::ZeroDuration(), absl::Seconds(2)},
        BackoffCase{"capped", 30, 1.0, absl::ZeroDuration(), absl::Seconds(60)},
        BackoffCase{"capped_min", 30, 0.0, absl::ZeroDuration(),
                    absl::Seconds(30)},
        // Close to expiry, retries come faster than the backoff would say.
        BackoffCase{"near_expiry", 10, 1.0, absl::Seconds(8), absl::Seconds(4)},
        BackoffCase{"floor", 1, 0.0, absl::Milliseconds(4),
                    absl::Milliseconds(10)},
        BackoffCase{"zero_attempt_is_first", 0, 1.0, absl::ZeroDuration(),
                    absl::Seconds(1)}),
    [](const auto& info) { return info.param.name; });

TEST(ShouldRenewTest, Boundary) {
  EXPECT_FALSE(ShouldRenew(kStart - absl::Nanoseconds(1), kStart));
  EXPECT_TRUE(ShouldRenew(kStart, kStart));
}

}  // namespace
}  // namespace meshguard::sidecar
