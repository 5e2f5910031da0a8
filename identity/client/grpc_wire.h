// The parts of the gRPC HTTP/2 wire protocol (grpc/doc/PROTOCOL-HTTP2.md)
// that H2CaTransport needs and that need no socket: length-prefixed message
// framing, the grpc-timeout header, and the call status from grpc-status /
// grpc-message. Pure functions and one small parser; no I/O, no threads.
#ifndef MESHGUARD_IDENTITY_CLIENT_GRPC_WIRE_H_
#define MESHGUARD_IDENTITY_CLIENT_GRPC_WIRE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace meshguard::client::wire {

// Compressed-Flag (1 byte) + Message-Length (4 bytes, big-endian).
inline constexpr size_t kMessagePrefixBytes = 5;

// `message` with its prefix (not compressed).
std::string FrameMessage(absl::string_view message);

// The grpc-timeout value for `timeout`: at most 8 digits and a unit
// (H, M, S, m, u, n), rounded up so that the server never gives up before
// we do; "1n" for timeouts <= 0 (the caller checks its deadline first).
std::string EncodeGrpcTimeout(absl::Duration timeout);

// grpc-message is percent-encoded ("%" followed by two hex digits); anything
// that is not a valid escape is kept as it is, as gRPC does.
std::string PercentDecode(absl::string_view in);

// The call's status from the grpc-status and grpc-message values of the
// trailers (or of a trailers-only response). A missing or unparsable
// grpc-status is UNKNOWN, as in gRPC; codes beyond 16 are UNKNOWN too.
absl::Status StatusFromTrailers(std::optional<absl::string_view> grpc_status,
                                absl::string_view grpc_message);

// Splits the bytes of a response's DATA frames into messages.
class MessageDeframer {
 public:
  using OnMessage = std::function<absl::Status(absl::string_view message)>;

  explicit MessageDeframer(size_t max_message_bytes)
      : max_message_bytes_(max_message_bytes) {}

  // Consumes `data`; calls `on_message` for each message it completes (and
  // stops at the first error it returns). Errors, after which the deframer
  // must not be used again: RESOURCE_EXHAUSTED for a message longer than the
  // limit (decided from its prefix, before its bytes are buffered);
  // INTERNAL for a compressed message (we never offer compression) or a
  // flag byte other than 0/1.
  absl::Status Append(absl::string_view data, const OnMessage& on_message);

  // No partial prefix or message is buffered.
  bool AtMessageBoundary() const {
    return !expected_.has_value() && buffer_.empty();
  }

 private:
  const size_t max_message_bytes_;
  std::string buffer_;
  // Length of the message being buffered, once its prefix has arrived.
  std::optional<size_t> expected_;
};

}  // namespace meshguard::client::wire

#endif  // MESHGUARD_IDENTITY_CLIENT_GRPC_WIRE_H_
