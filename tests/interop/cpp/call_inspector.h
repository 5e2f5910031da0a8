// What a gRPC C++ endpoint can see of the compression of the last message it
// received on a call: whether that message arrived compressed (its
// compressed flag) and the call's grpc-encoding. The public API hides both;
// gRPC core exports test-only accessors for them, which gRPC's own C++
// interop client and server use for the same checks. Callable from the
// thread that owns the call, after a message was read.
#ifndef MESHGUARD_TESTS_INTEROP_CPP_CALL_INSPECTOR_H_
#define MESHGUARD_TESTS_INTEROP_CPP_CALL_INSPECTOR_H_

#include <grpc/grpc.h>

namespace meshguard::interop {

// The last message received on `call` was compressed with gzip: its
// compressed flag was set and the call's grpc-encoding is gzip.
bool LastMessageGzipped(grpc_call* call);

}  // namespace meshguard::interop

#endif  // MESHGUARD_TESTS_INTEROP_CPP_CALL_INSPECTOR_H_
