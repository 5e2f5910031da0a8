#include "tests/interop/cpp/interop_common.h"

#include <cstdint>

// Declared in gRPC core's internal src/core/lib/surface/call_test_only.h
// (not installed), defined and exported by libgrpc with C++ linkage.
grpc_compression_algorithm grpc_call_test_only_get_compression_algorithm(
    grpc_call* call);
uint32_t grpc_call_test_only_get_message_flags(grpc_call* call);

namespace meshguard::interop {
namespace {

// gRPC core's flags on a received message that arrived compressed:
// GRPC_WRITE_INTERNAL_COMPRESS (0x80000000) while still compressed, and
// GRPC_WRITE_INTERNAL_TEST_ONLY_WAS_COMPRESSED (0x40000000), which the
// decompression filter leaves after inflating it (what 1.51 reports).
constexpr uint32_t kCompressedFlags = 0x80000000u | 0x40000000u;

}  // namespace

bool LastMessageGzipped(grpc_call* call) {
  return call != nullptr &&
         (grpc_call_test_only_get_message_flags(call) & kCompressedFlags) !=
             0 &&
         grpc_call_test_only_get_compression_algorithm(call) ==
             GRPC_COMPRESS_GZIP;
}

}  // namespace meshguard::interop
