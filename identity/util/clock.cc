#include "identity/util/clock.h"

namespace meshguard::util {
namespace {

class RealClockImpl final : public Clock {
 public:
  absl::Time Now() const override { return absl::Now(); }
};

}  // namespace

Clock::~Clock() = default;

Clock* RealClock() {
  // Leaked on purpose: usable from other static destructors and threads that
  // outlive main().
  static Clock* const clock = new RealClockImpl();
  return clock;
}

FakeClock::FakeClock() : FakeClock(absl::FromUnixSeconds(1704067200)) {}

FakeClock::FakeClock(absl::Time start) : now_(start) {}

absl::Time FakeClock::Now() const {
  absl::MutexLock lock(&mu_);
  return now_;
}

void FakeClock::Advance(absl::Duration d) {
  absl::MutexLock lock(&mu_);
  now_ += d;
}

void FakeClock::Set(absl::Time t) {
  absl::MutexLock lock(&mu_);
  now_ = t;
}

}  // namespace meshguard::util
