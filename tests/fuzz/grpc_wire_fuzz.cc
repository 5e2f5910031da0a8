// The gRPC wire pieces the sidecar's CA client parses from the network
// (identity/client/grpc_wire.h): length-prefixed messages split across DATA
// frames, and grpc-status / grpc-message from trailers.
//
// Input: the first byte seeds how the rest is cut into frames; the rest is
// the response body. Invariants: however the body is cut, the deframer
// yields the same messages and the same final status as when it arrives
// in one piece; no message exceeds the limit; the trailers' status is
// always a valid code.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "identity/client/grpc_wire.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

namespace wire = ::meshguard::client::wire;

constexpr size_t kLimit = 4096;

struct Result {
  std::vector<std::string> messages;
  absl::Status status;
  bool at_boundary = false;
};

Result Deframe(const std::string& body, uint8_t seed) {
  Result r;
  wire::MessageDeframer deframer(kLimit);
  auto on_message = [&r](absl::string_view m) {
    FUZZ_CHECK(m.size() <= kLimit);
    r.messages.emplace_back(m);
    return absl::OkStatus();
  };
  size_t pos = 0;
  size_t step = 1 + seed % 7;
  while (pos < body.size() && r.status.ok()) {
    const size_t n =
        seed == 0 ? body.size() : std::min(step, body.size() - pos);
    r.status =
        deframer.Append(absl::string_view(body).substr(pos, n), on_message);
    pos += n;
    step = 1 + (step * 5 + seed) % 13;
  }
  r.at_boundary = r.status.ok() && deframer.AtMessageBoundary();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  const Result whole = Deframe(body, 0);
  const Result cut = Deframe(body, data[0] == 0 ? 1 : data[0]);
  FUZZ_CHECK(whole.status.code() == cut.status.code());
  FUZZ_CHECK(whole.at_boundary == cut.at_boundary);
  if (whole.status.ok()) FUZZ_CHECK(whole.messages == cut.messages);
  // Framing what came out gives back the body, when it all parsed.
  if (!whole.messages.empty()) FUZZ_REACHED("messages");
  if (whole.at_boundary) {
    std::string reframed;
    for (const std::string& m : whole.messages) {
      reframed += wire::FrameMessage(m);
    }
    FUZZ_CHECK(reframed == body);
  }

  // The same bytes as trailers: grpc-status, then grpc-message.
  const size_t split = body.find('\n');
  const absl::string_view text(body);
  const absl::Status status = wire::StatusFromTrailers(
      text.substr(0, split),
      split == absl::string_view::npos ? "" : text.substr(split + 1));
  FUZZ_CHECK(static_cast<int>(status.code()) >= 0 &&
             static_cast<int>(status.code()) <= 16);
  FUZZ_CHECK(wire::PercentDecode(body).size() <= body.size());
  return 0;
}
