// The forwarder (sidecar/proxy: StreamPair between a server-role and a
// client-role Http2Session) between a client and an upstream server, with
// no sockets, for h2_forwarder_fuzz and for make_seeds, which records its
// seeds.
//
// One side is hostile: its bytes come from the fuzz input. The other side
// is an honest nghttp2 endpoint (a test session) that checks what the proxy
// sends it:
//   kClient hostile: the bytes a downstream app (or, inbound, a peer
//     sidecar) sends to the proxy; the honest upstream server answers every
//     request it receives with "pong" and grpc-status 0, and checks that it
//     never gets a connection error from the proxy, that the proxy's
//     x-forwarded-client-cert is the only one, and that no hop-by-hop
//     header or unknown pseudo-header reaches it.
//   kUpstream hostile: the bytes the upstream sends back; the honest client
//     makes three calls at the start (one routed with a body, one that ends
//     its body later, one with no route) and checks that it never gets a
//     connection error from the proxy, whatever the upstream sends.
// At the end every session goes away and every StreamPair must be freed.
//
// Recording: with `record`, the hostile side is played by an honest
// session too (the client makes the three calls above; the server answers
// as above), and the bytes it sends are kept in the input format, so that
// make_seeds writes inputs that reach deep into the state machine.
#ifndef MESHGUARD_TESTS_FUZZ_H2_HARNESS_H_
#define MESHGUARD_TESTS_FUZZ_H2_HARNESS_H_

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sidecar/proxy/counters.h"
#include "sidecar/proxy/http2_session.h"
#include "sidecar/proxy/stream_pair.h"
#include "tests/sidecar/proxy/testing/fake_h2.h"

namespace meshguard::fuzz {

// The input format: a mode byte (bit 0 clear: hostile client, set: hostile
// upstream; bit 1: structured), then chunks of [flags][length, 2 bytes
// big-endian][bytes]. Unstructured, a chunk's bytes are what the hostile
// side writes. Structured, each chunk describes one HTTP/2 frame, which
// the harness encodes (after the preface and SETTINGS the hostile side
// would send first):
//   [type][frame flags][stream id][rest]
// For HEADERS, PUSH_PROMISE and CONTINUATION the rest is a header list,
// entries [name][value] where a byte below StructuredWords().size() picks
// a word and any other byte is followed by [length][bytes] of a literal;
// the list is HPACK-encoded by one encoder per connection, so the proxy's
// decoder stays in step and the mutations reach the forwarder instead of
// dying in HPACK. For other frames the rest is the payload as is.
// Flag bit 0: the honest side stops reading (a slow reader) until a chunk
// without it; bit 1: run the event loop between this chunk and the next
// (otherwise chunks arrive back to back, as in one read); bit 2: the
// hostile side stops reading.
enum class Hostile { kClient, kUpstream };

inline constexpr uint8_t kModeUpstreamHostile = 1;
inline constexpr uint8_t kModeStructured = 2;

inline constexpr uint8_t kChunkSlowReader = 1;
inline constexpr uint8_t kChunkPump = 2;

class H2Harness final : public sidecar::proxy::UpstreamConnector {
 public:
  H2Harness(Hostile hostile, bool record);
  ~H2Harness() override;

  // Feeds one chunk from the hostile side.
  void Feed(uint8_t flags, const uint8_t* data, size_t size);
  // Moves bytes and runs posted work until nothing changes (bounded).
  void Pump();
  // Ends every session, frees every pair, checks nothing leaked.
  void Finish();

  // Runs a whole fuzz input.
  static void Run(const uint8_t* data, size_t size);

  // The header names and values structured inputs pick from.
  static const std::vector<std::string>& StructuredWords();
  // One structured chunk's bytes for a frame (for make_seeds): a header
  // list of words, or a payload.
  static std::string StructuredHeaders(
      uint8_t type, uint8_t flags, uint8_t stream,
      const std::vector<std::pair<std::string, std::string>>& headers);
  static std::string StructuredFrame(uint8_t type, uint8_t flags,
                                     uint8_t stream,
                                     const std::string& payload);

  // Recorded input (record mode): mode byte and chunks.
  const std::string& recording() const { return recording_; }

  // UpstreamConnector.
  void Acquire(const sidecar::proxy::UpstreamTarget& target,
               sidecar::proxy::UpstreamWaiter* waiter) override;
  void CancelAcquire(sidecar::proxy::UpstreamWaiter*) override {}

 private:
  class Router;
  class Filter;
  struct Callbacks;

  void StartClientCalls();
  void AnswerServerStreams();
  void CheckUpstreamRequest(const sidecar::proxy::HeaderList& headers);
  // Hands `from`'s bytes to `to` (the writer's queue then counts as
  // drained). Returns whether bytes moved and the receive status.
  bool Move(sidecar::proxy::testing::FakeTransport& from,
            sidecar::proxy::Http2Session* to,
            sidecar::proxy::Http2Session* writer, bool honest_receiver);
  void Record(const sidecar::proxy::testing::FakeTransport& out);
  // The wire bytes of a structured chunk (see the input format).
  std::string EncodeStructured(const uint8_t* data, size_t size);

  const Hostile hostile_;
  const bool record_;
  std::string recording_;
  bool slow_reader_ = false;
  bool hostile_slow_ = false;
  bool finished_ = false;
  bool structured_ = false;

  sidecar::proxy::testing::FakeDispatcher dispatcher_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<Filter> filter_;
  sidecar::proxy::Counters counters_;
  sidecar::proxy::DownstreamContext context_;
  sidecar::proxy::testing::FakeTransport client_out_, proxy_down_out_,
      proxy_up_out_, server_out_;
  std::unique_ptr<Callbacks> client_cbs_, proxy_down_cbs_, proxy_up_cbs_,
      server_cbs_;
  std::unique_ptr<sidecar::proxy::Http2Session> client_, proxy_down_, proxy_up_,
      server_;
  std::map<int32_t, std::unique_ptr<sidecar::proxy::testing::RecordingStream>>
      server_streams_;
  std::map<int32_t, bool> answered_;
  std::vector<std::unique_ptr<sidecar::proxy::testing::RecordingStream>>
      client_streams_;
  // The hostile side's HPACK encoder, for structured inputs.
  nghttp2_hd_deflater* deflater_ = nullptr;
};

}  // namespace meshguard::fuzz

#endif  // MESHGUARD_TESTS_FUZZ_H2_HARNESS_H_
