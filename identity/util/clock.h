// An injectable source of wall-clock time, so that expiry, rotation, backoff
// and rate limiting are tested in milliseconds without sleeping (SPIRE's
// rotator and LevelDB's Env do the same).
//
// Production code takes a `const Clock*` and is handed RealClock(); tests hand
// it a FakeClock and move time by hand.
#ifndef MESHGUARD_IDENTITY_UTIL_CLOCK_H_
#define MESHGUARD_IDENTITY_UTIL_CLOCK_H_

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace meshguard::util {

// Thread-safe: implementations must allow Now() from any thread.
class Clock {
 public:
  virtual ~Clock();
  virtual absl::Time Now() const = 0;
};

// The process-wide system clock (absl::Now()). Never null, never destroyed.
Clock* RealClock();

// A clock that only moves when told. Thread-safe: any thread may read it
// while another advances it.
class FakeClock final : public Clock {
 public:
  // Starts at an arbitrary fixed instant well after the epoch
  // (2024-01-01T00:00:00Z), so that "now minus an hour" is still positive.
  FakeClock();
  explicit FakeClock(absl::Time start);

  absl::Time Now() const override;

  // Moves time forward (or backward, for a negative duration: real clocks
  // step too, and code under test should survive it).
  void Advance(absl::Duration d);
  void Set(absl::Time t);

 private:
  mutable absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_CLOCK_H_
