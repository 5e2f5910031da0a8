// google.protobuf.Duration <-> absl::Duration, for config fields.
#ifndef MESHGUARD_IDENTITY_UTIL_PROTO_DURATION_H_
#define MESHGUARD_IDENTITY_UTIL_PROTO_DURATION_H_

#include "absl/time/time.h"
#include "google/protobuf/duration.pb.h"
#include "google/protobuf/util/time_util.h"

namespace meshguard::util {

inline absl::Duration ToAbsl(const google::protobuf::Duration& d) {
  return absl::Seconds(d.seconds()) + absl::Nanoseconds(d.nanos());
}

inline google::protobuf::Duration ToProtoDuration(absl::Duration d) {
  return google::protobuf::util::TimeUtil::NanosecondsToDuration(
      absl::ToInt64Nanoseconds(d));
}

}  // namespace meshguard::util

#endif  // MESHGUARD_IDENTITY_UTIL_PROTO_DURATION_H_
