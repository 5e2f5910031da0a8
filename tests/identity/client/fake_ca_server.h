// A TLS server on a loopback port that plays a broken or hostile CA for
// H2CaTransport's tests: it completes the TLS handshake (with a certificate
// from its own test PKI, DNS SAN "meshguard-ca" and IP SAN 127.0.0.1, and
// ALPN h2 unless told otherwise), reads the client's request, then writes
// whatever bytes the test scripted (raw HTTP/2 frames built with the
// helpers below, or garbage) and drains the connection until the client
// closes it (or closes it first, if told to). It records the headers of every
// request it read.
//
// One accept thread; connections are served one at a time. Thread-safe.
#ifndef MESHGUARD_TESTS_IDENTITY_CLIENT_FAKE_CA_SERVER_H_
#define MESHGUARD_TESTS_IDENTITY_CLIENT_FAKE_CA_SERVER_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::client::testing {

// A root and a serving leaf signed by it.
struct TestPki {
  std::string root_pem;
  crypto::X509Ptr leaf;
  crypto::EvpPkeyPtr leaf_key;
  static absl::StatusOr<TestPki> Create();
};

// --- Raw HTTP/2 pieces (RFC 9113), for scripting responses ---------------
// A frame: 9-byte header then payload.
std::string Frame(uint8_t type, uint8_t flags, uint32_t stream_id,
                  const std::string& payload);
// An HPACK block of literal fields without indexing (no Huffman).
std::string HeaderBlock(
    const std::vector<std::pair<std::string, std::string>>& fields);
// SETTINGS (empty), the server's connection preface.
std::string ServerPreface();
// HEADERS on stream 1 with END_HEADERS (and END_STREAM if `end_stream`).
std::string Headers(
    const std::vector<std::pair<std::string, std::string>>& fields,
    bool end_stream);
// DATA on stream 1.
std::string Data(const std::string& payload, bool end_stream);
// ":status 200" + "content-type application/grpc".
std::string OkResponseHeaders();
// Trailers with grpc-status (and grpc-message, sent as given).
std::string Trailers(int grpc_status, const std::string& grpc_message = "");
std::string RstStream(uint32_t error_code);
std::string Goaway(uint32_t last_stream_id, uint32_t error_code);

class FakeCaServer {
 public:
  struct Options {
    bool alpn_h2 = true;
    // Bytes written after the request's HEADERS frame arrived; empty: write
    // nothing at all (a CA that hangs).
    std::string response;
    // After the response: TLS close_notify and TCP FIN (a CA that goes
    // away in the middle of a call).
    bool close_after_response = false;
  };

  static absl::StatusOr<std::unique_ptr<FakeCaServer>> Start(const TestPki& pki,
                                                             Options options);
  ~FakeCaServer();

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"
  // Decoded request headers, one map per request read so far.
  std::vector<std::map<std::string, std::string>> requests() const;

 private:
  FakeCaServer(int listen_fd, int port, crypto::SslCtxPtr ctx, Options options);
  void Serve();
  void HandleConnection(int fd);

  const int listen_fd_;
  const int port_;
  const crypto::SslCtxPtr ctx_;
  const Options options_;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable absl::Mutex mu_;
  std::vector<std::map<std::string, std::string>> requests_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::client::testing

#endif  // MESHGUARD_TESTS_IDENTITY_CLIENT_FAKE_CA_SERVER_H_
