#include "identity/util/rate_limiter.h"

#include <gtest/gtest.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "identity/util/clock.h"

namespace meshguard::util {
namespace {

constexpr absl::string_view kAlice = "spiffe://cluster.local/ns/a/sa/alice";
constexpr absl::string_view kBob = "spiffe://cluster.local/ns/a/sa/bob";

// Counts how many of `n` calls are allowed.
int AllowedOf(RateLimiter& limiter, absl::string_view key, int n) {
  int allowed = 0;
  for (int i = 0; i < n; ++i) allowed += limiter.Allow(key) ? 1 : 0;
  return allowed;
}

TEST(RateLimiterTest, BurstThenRefuse) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/1, /*burst=*/5, /*max_keys=*/100,
                      &clock);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(limiter.Allow(kAlice)) << i;
  EXPECT_FALSE(limiter.Allow(kAlice));
  EXPECT_FALSE(limiter.Allow(kAlice));
}

TEST(RateLimiterTest, RefillsOverTime) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/2, /*burst=*/4, /*max_keys=*/100,
                      &clock);
  EXPECT_EQ(AllowedOf(limiter, kAlice, 10), 4);

  // Half a token: still refused.
  clock.Advance(absl::Milliseconds(250));
  EXPECT_FALSE(limiter.Allow(kAlice));
  // The half token accrued above is kept: another 250 ms makes one token.
  clock.Advance(absl::Milliseconds(250));
  EXPECT_TRUE(limiter.Allow(kAlice));
  EXPECT_FALSE(limiter.Allow(kAlice));

  // 1.5 s at 2/s = 3 tokens.
  clock.Advance(absl::Milliseconds(1500));
  EXPECT_EQ(AllowedOf(limiter, kAlice, 10), 3);

  // A long idle period refills only up to the burst.
  clock.Advance(absl::Hours(1));
  EXPECT_EQ(AllowedOf(limiter, kAlice, 10), 4);
}

TEST(RateLimiterTest, ClockSteppingBackwardsDoesNotRefillOrBreak) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/1, /*burst=*/2, /*max_keys=*/100,
                      &clock);
  EXPECT_EQ(AllowedOf(limiter, kAlice, 5), 2);
  clock.Advance(-absl::Hours(1));
  EXPECT_FALSE(limiter.Allow(kAlice));
  clock.Advance(absl::Seconds(1));
  EXPECT_TRUE(limiter.Allow(kAlice));
}

TEST(RateLimiterTest, KeysAreIndependent) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/1, /*burst=*/3, /*max_keys=*/100,
                      &clock);
  EXPECT_EQ(AllowedOf(limiter, kAlice, 10), 3);
  // Alice's exhaustion does not touch Bob.
  EXPECT_EQ(AllowedOf(limiter, kBob, 10), 3);
  clock.Advance(absl::Seconds(1));
  EXPECT_EQ(AllowedOf(limiter, kAlice, 10), 1);
  EXPECT_EQ(AllowedOf(limiter, kBob, 10), 1);
}

TEST(RateLimiterTest, KeysAreBounded) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/1, /*burst=*/2, /*max_keys=*/10,
                      &clock);
  for (int i = 0; i < 1000; ++i) {
    limiter.Allow(absl::StrCat("spiffe://cluster.local/ns/flood/sa/", i));
    ASSERT_LE(limiter.NumKeys(), 10u);
  }
  EXPECT_EQ(limiter.NumKeys(), 10u);
}

TEST(RateLimiterTest, EvictsLeastRecentlyUsed) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/1, /*burst=*/2, /*max_keys=*/2,
                      &clock);
  EXPECT_EQ(AllowedOf(limiter, kAlice, 5), 2);
  EXPECT_EQ(AllowedOf(limiter, kBob, 5), 2);
  // Alice is used again (refused, but used), so Bob is now the LRU.
  EXPECT_FALSE(limiter.Allow(kAlice));
  // A third key evicts Bob, not Alice: Alice stays empty ...
  EXPECT_TRUE(limiter.Allow("spiffe://cluster.local/ns/a/sa/carol"));
  EXPECT_FALSE(limiter.Allow(kAlice));
  // ... while Bob, evicted, starts over with a full bucket (the documented
  // price of bounded memory).
  EXPECT_TRUE(limiter.Allow(kBob));
  EXPECT_EQ(limiter.NumKeys(), 2u);
}

TEST(RateLimiterTest, EvictingARefilledBucketLosesNothing) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/1, /*burst=*/2, /*max_keys=*/1,
                      &clock);
  EXPECT_EQ(AllowedOf(limiter, kAlice, 5), 2);
  clock.Advance(absl::Seconds(10));  // Alice's bucket is full again.
  EXPECT_TRUE(limiter.Allow(kBob));  // Evicts Alice.
  // Alice gets exactly what she would have had without eviction.
  EXPECT_EQ(AllowedOf(limiter, kAlice, 5), 2);
}

TEST(RateLimiterTest, ZeroRateIsUnlimited) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/0, /*burst=*/1, /*max_keys=*/1,
                      &clock);
  EXPECT_EQ(AllowedOf(limiter, kAlice, 10000), 10000);
  EXPECT_EQ(AllowedOf(limiter, kBob, 10000), 10000);
  EXPECT_EQ(limiter.NumKeys(), 0u);
}

TEST(RateLimiterTest, ZeroBurstIsTreatedAsOne) {
  FakeClock clock;
  RateLimiter limiter(/*rate_per_second=*/1, /*burst=*/0, /*max_keys=*/10,
                      &clock);
  EXPECT_EQ(AllowedOf(limiter, kAlice, 5), 1);
}

TEST(RateLimiterTest, ConcurrentCallersNeverExceedTheBurst) {
  FakeClock clock;
  constexpr int kBurst = 100;
  RateLimiter limiter(/*rate_per_second=*/1, kBurst, /*max_keys=*/10, &clock);
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 1000; ++i) {
        if (limiter.Allow(kAlice)) allowed.fetch_add(1);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(allowed.load(), kBurst);
}

TEST(FakeClockTest, AdvanceAndSet) {
  FakeClock clock(absl::FromUnixSeconds(100));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(100));
  clock.Advance(absl::Seconds(5));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(105));
  clock.Set(absl::FromUnixSeconds(7));
  EXPECT_EQ(clock.Now(), absl::FromUnixSeconds(7));
}

TEST(RealClockTest, IsASingletonNearNow) {
  EXPECT_EQ(RealClock(), RealClock());
  EXPECT_LT(absl::AbsDuration(RealClock()->Now() - absl::Now()),
            absl::Seconds(5));
}

}  // namespace
}  // namespace meshguard::util
