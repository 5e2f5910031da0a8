#include "tests/identity/client/fake_ca_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "identity/crypto/ca_signer.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"
#include "identity/crypto/spiffe_id.h"

namespace meshguard::client::testing {
namespace {

constexpr size_t kClientPrefaceBytes =
    24;  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
constexpr uint8_t kData = 0, kHeaders = 1, kRstStream = 3, kSettings = 4,
                  kGoaway = 7;
constexpr uint8_t kEndStream = 0x1, kEndHeaders = 0x4, kPadded = 0x8,
                  kPriority = 0x20;

// HPACK integer with an N-bit prefix (RFC 7541, 5.1).
void AppendInt(std::string* out, uint8_t first_byte_bits, int prefix_bits,
               size_t value) {
  const size_t max_prefix = (size_t{1} << prefix_bits) - 1;
  if (value < max_prefix) {
    out->push_back(static_cast<char>(first_byte_bits | value));
    return;
  }
  out->push_back(static_cast<char>(first_byte_bits | max_prefix));
  value -= max_prefix;
  while (value >= 128) {
    out->push_back(static_cast<char>((value % 128) + 128));
    value /= 128;
  }
  out->push_back(static_cast<char>(value));
}

void AppendString(std::string* out, const std::string& s) {
  AppendInt(out, 0, 7, s.size());  // H = 0: no Huffman
  out->append(s);
}

std::string Be32(uint32_t v) {
  std::string out(4, '\0');
  out[0] = static_cast<char>(v >> 24);
  out[1] = static_cast<char>((v >> 16) & 0xff);
  out[2] = static_cast<char>((v >> 8) & 0xff);
  out[3] = static_cast<char>(v & 0xff);
  return out;
}

int SelectH2(SSL*, const unsigned char** out, unsigned char* outlen,
             const unsigned char* in, unsigned int inlen, void*) {
  static constexpr unsigned char kH2[] = {2, 'h', '2'};
  unsigned char* selected = nullptr;
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof(kH2), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

// Decodes one HPACK block into `out` (a fresh inflater: the fake server
// reads one request per connection, so the dynamic table starts empty).
bool Inflate(const std::string& block,
             std::map<std::string, std::string>* out) {
  nghttp2_hd_inflater* inflater = nullptr;
  if (nghttp2_hd_inflate_new(&inflater) != 0) return false;
  const uint8_t* in = reinterpret_cast<const uint8_t*>(block.data());
  size_t left = block.size();
  bool ok = true;
  while (true) {
    nghttp2_nv nv;
    int flags = 0;
    const ssize_t n =
        nghttp2_hd_inflate_hd2(inflater, &nv, &flags, in, left, 1);
    if (n < 0) {
      ok = false;
      break;
    }
    in += n;
    left -= static_cast<size_t>(n);
    if (flags & NGHTTP2_HD_INFLATE_EMIT) {
      (*out)[std::string(reinterpret_cast<char*>(nv.name), nv.namelen)] =
          std::string(reinterpret_cast<char*>(nv.value), nv.valuelen);
    }
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(inflater);
      break;
    }
    if (!(flags & NGHTTP2_HD_INFLATE_EMIT) && left == 0) break;
  }
  nghttp2_hd_inflate_del(inflater);
  return ok;
}

}  // namespace

absl::StatusOr<TestPki> TestPki::Create() {
  absl::StatusOr<crypto::EvpPkeyPtr> root_key = crypto::GenerateEcP256Key();
  if (!root_key.ok()) return root_key.status();
  absl::StatusOr<crypto::X509Ptr> root = crypto::CreateRootCertificate(
      root_key->get(), "cluster.local", absl::Hours(24), absl::Now());
  if (!root.ok()) return root.status();
  EVP_PKEY_up_ref(root_key->get());
  absl::StatusOr<std::unique_ptr<crypto::CaSigner>> signer =
      crypto::CaSigner::Create(crypto::X509Ptr(X509_dup(root->get())),
                               crypto::EvpPkeyPtr(root_key->get()), {});
  if (!signer.ok()) return signer.status();
  TestPki pki;
  absl::StatusOr<crypto::EvpPkeyPtr> leaf_key = crypto::GenerateEcP256Key();
  if (!leaf_key.ok()) return leaf_key.status();
  absl::StatusOr<crypto::SpiffeId> id = crypto::SpiffeId::Parse(
      "spiffe://cluster.local/ns/meshguard-system/sa/meshguard-ca");
  if (!id.ok()) return id.status();
  crypto::LeafRequest request{leaf_key->get(),  *id,
                              absl::Hours(1),   absl::Now(),
                              {"meshguard-ca"}, {"127.0.0.1"}};
  absl::StatusOr<crypto::X509Ptr> leaf = (*signer)->IssueLeaf(request);
  if (!leaf.ok()) return leaf.status();
  absl::StatusOr<std::string> root_pem = crypto::CertificateToPem(root->get());
  if (!root_pem.ok()) return root_pem.status();
  pki.root_pem = *root_pem;
  pki.leaf = *std::move(leaf);
  pki.leaf_key = *std::move(leaf_key);
  return pki;
}

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream_id,
                  const std::string& payload) {
  std::string out;
  const size_t n = payload.size();
  out.push_back(static_cast<char>((n >> 16) & 0xff));
  out.push_back(static_cast<char>((n >> 8) & 0xff));
  out.push_back(static_cast<char>(n & 0xff));
  out.push_back(static_cast<char>(type));
  out.push_back(static_cast<char>(flags));
  out += Be32(stream_id & 0x7fffffff);
  out += payload;
  return out;
}

std::string HeaderBlock(
    const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [name, value] : fields) {
    out.push_back('\0');  // literal without indexing, new name
    AppendString(&out, name);
    AppendString(&out, value);
  }
  return out;
}

std::string ServerPreface() { return Frame(kSettings, 0, 0, ""); }

std::string Headers(
    const std::vector<std::pair<std::string, std::string>>& fields,
    bool end_stream) {
  return Frame(kHeaders, kEndHeaders | (end_stream ? kEndStream : 0), 1,
               HeaderBlock(fields));
}

std::string Data(const std::string& payload, bool end_stream) {
  return Frame(kData, end_stream ? kEndStream : 0, 1, payload);
}

std::string OkResponseHeaders() {
  return Headers({{":status", "200"}, {"content-type", "application/grpc"}},
                 false);
}

std::string Trailers(int grpc_status, const std::string& grpc_message) {
  std::vector<std::pair<std::string, std::string>> fields = {
      {"grpc-status", absl::StrCat(grpc_status)}};
  if (!grpc_message.empty()) fields.emplace_back("grpc-message", grpc_message);
  return Headers(fields, true);
}

std::string RstStream(uint32_t error_code) {
  return Frame(kRstStream, 0, 1, Be32(error_code));
}

std::string Goaway(uint32_t last_stream_id, uint32_t error_code) {
  return Frame(kGoaway, 0, 0, Be32(last_stream_id) + Be32(error_code));
}

absl::StatusOr<std::unique_ptr<FakeCaServer>> FakeCaServer::Start(
    const TestPki& pki, Options options) {
  crypto::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (ctx == nullptr ||
      SSL_CTX_use_certificate(ctx.get(), pki.leaf.get()) != 1 ||
      SSL_CTX_use_PrivateKey(ctx.get(), pki.leaf_key.get()) != 1) {
    return absl::InternalError("cannot build the fake CA's TLS context");
  }
  if (options.alpn_h2) {
    SSL_CTX_set_alpn_select_cb(ctx.get(), SelectH2, nullptr);
  }
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
      listen(fd, 16) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    if (fd >= 0) close(fd);
    return absl::InternalError(
        absl::StrCat("fake CA listen: ", std::strerror(errno)));
  }
  return std::unique_ptr<FakeCaServer>(new FakeCaServer(
      fd, ntohs(addr.sin_port), std::move(ctx), std::move(options)));
}

FakeCaServer::FakeCaServer(int listen_fd, int port, crypto::SslCtxPtr ctx,
                           Options options)
    : listen_fd_(listen_fd),
      port_(port),
      ctx_(std::move(ctx)),
      options_(std::move(options)) {
  thread_ = std::thread([this] { Serve(); });
}

FakeCaServer::~FakeCaServer() {
  stopping_ = true;
  thread_.join();
  close(listen_fd_);
}

std::string FakeCaServer::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::vector<std::map<std::string, std::string>> FakeCaServer::requests() const {
  absl::MutexLock lock(&mu_);
  return requests_;
}

void FakeCaServer::Serve() {
  // The server writes through OpenSSL's socket BIO (write(2)), e.g. TLS 1.3
  // session tickets to a client that already hung up; that must be EPIPE,
  // not the end of the test. Blocked in this thread only: the client under
  // test must not raise SIGPIPE anywhere (it sends with MSG_NOSIGNAL).
  sigset_t pipe;
  sigemptyset(&pipe);
  sigaddset(&pipe, SIGPIPE);
  pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
  while (!stopping_) {
    pollfd p = {listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    HandleConnection(fd);
    close(fd);
  }
}

void FakeCaServer::HandleConnection(int fd) {
  // Nothing in a test should take longer; a stuck client must not hang the
  // server thread past the test.
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  crypto::SslPtr ssl(SSL_new(ctx_.get()));
  SSL_set_fd(ssl.get(), fd);
  if (SSL_accept(ssl.get()) != 1) return;

  // Read until the request's HEADERS frame is complete.
  std::string in;
  size_t pos = kClientPrefaceBytes;
  bool have_request = false;
  char buf[16384];
  while (!have_request) {
    const int n = SSL_read(ssl.get(), buf, sizeof(buf));
    if (n <= 0) return;
    in.append(buf, n);
    while (in.size() >= pos + 9) {
      const auto* h = reinterpret_cast<const unsigned char*>(in.data() + pos);
      const size_t length = (size_t{h[0]} << 16) | (size_t{h[1]} << 8) | h[2];
      if (in.size() < pos + 9 + length) break;
      const uint8_t type = h[3];
      const uint8_t flags = h[4];
      std::string payload = in.substr(pos + 9, length);
      pos += 9 + length;
      if (type != kHeaders) continue;
      size_t pad = 0;
      if (flags & kPadded) {
        pad = static_cast<unsigned char>(payload[0]);
        payload.erase(0, 1);
      }
      if (flags & kPriority) payload.erase(0, 5);
      payload.resize(payload.size() - pad);
      std::map<std::string, std::string> headers;
      Inflate(payload, &headers);
      absl::MutexLock lock(&mu_);
      requests_.push_back(std::move(headers));
      have_request = true;
      break;
    }
  }
  if (!options_.response.empty()) {
    SSL_write(ssl.get(), options_.response.data(),
              static_cast<int>(options_.response.size()));
  }
  if (options_.close_after_response) {
    SSL_shutdown(ssl.get());
    shutdown(fd, SHUT_WR);
  }
  // Drain until the client closes, so that it reads everything we wrote
  // before it sees the connection end.
  while (!stopping_ && SSL_read(ssl.get(), buf, sizeof(buf)) > 0) {
  }
}

}  // namespace meshguard::client::testing
