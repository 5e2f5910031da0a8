// What the C++ client and server of tests/interop share: the metadata keys
// of docs/interop.md, the message size limit, and what an endpoint can see
// of the compression of a message it received.
#ifndef MESHGUARD_TESTS_INTEROP_CPP_INTEROP_COMMON_H_
#define MESHGUARD_TESTS_INTEROP_CPP_INTEROP_COMMON_H_

#include <grpc/grpc.h>

namespace meshguard::interop {

// Echoed by the server: the first in its initial metadata, the second in
// its trailers.
inline constexpr char kEchoInitial[] = "x-grpc-test-echo-initial";
inline constexpr char kEchoTrailing[] = "x-grpc-test-echo-trailing-bin";
// The call-state extension: a tracked call's token, the query's token, and
// the answer in the query's trailers.
inline constexpr char kToken[] = "x-interop-token";
inline constexpr char kQueryToken[] = "x-interop-query-token";
inline constexpr char kCallState[] = "x-interop-call-state";

inline constexpr int kMaxMessageBytes = 16 << 20;

// The last message received on `call` was gzip-compressed: its compressed
// flag was set and the call's grpc-encoding is gzip. The public API hides
// both; gRPC core exports test-only accessors for them, which gRPC's own
// C++ interop client and server use for the same checks. Callable from the
// thread that owns the call, after a message was read.
bool LastMessageGzipped(grpc_call* call);

}  // namespace meshguard::interop

#endif  // MESHGUARD_TESTS_INTEROP_CPP_INTEROP_COMMON_H_
