#include "identity/client/h2_transport.h"

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "identity/client/grpc_wire.h"
#include "identity/client/identity_client.h"
#include "identity/client/tls_connection.h"
#include "identity/crypto/certificate.h"

namespace meshguard::client {

namespace internal {

// Everything a call needs, immutable once built; shared by the transport
// and the watches it started.
struct H2Target {
  CaClientOptions options;
  HostPort endpoint;
  std::string authority;  // :authority, the address as configured
  std::string peer_name;  // checked against the CA's SANs
  crypto::SslCtxPtr ctx;  // roots, TLS 1.2+, ALPN h2; shared read-only
};

}  // namespace internal

namespace {

namespace v1 = ::meshguard::ca::v1;
using internal::H2Target;

constexpr char kIssuePath[] =
    "/meshguard.ca.v1.CertificateAuthority/IssueCertificate";
constexpr char kGetBundlePath[] =
    "/meshguard.ca.v1.CertificateAuthority/GetTrustBundle";
constexpr char kWatchBundlePath[] =
    "/meshguard.ca.v1.CertificateAuthority/WatchTrustBundle";

// gRPC's TLS 1.2 cipher suites (GRPC_SSL_CIPHER_SUITES); TLS 1.3 suites
// are OpenSSL's defaults, as in gRPC.
constexpr char kTls12Ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384";

// Response header bytes we accept per call (names + values).
constexpr size_t kMaxHeaderBytes = 64 * 1024;

struct SessionDeleter {
  void operator()(nghttp2_session* s) const { nghttp2_session_del(s); }
};
struct CallbacksDeleter {
  void operator()(nghttp2_session_callbacks* c) const {
    nghttp2_session_callbacks_del(c);
  }
};

absl::Status WithAddress(const H2Target& target, const absl::Status& s) {
  if (s.ok()) return s;
  std::string message =
      absl::StrCat("CA ", target.options.address, ": ", s.message());
  if (absl::IsDeadlineExceeded(s)) {
    absl::StrAppend(&message, " (timeout ",
                    absl::FormatDuration(target.options.timeout), ")");
  }
  return absl::Status(s.code(), message);
}

// One call's view of the response, filled by nghttp2's callbacks on the
// calling thread.
struct CallState {
  CallState(size_t max_message_bytes,
            const wire::MessageDeframer::OnMessage& on_message)
      : deframer(max_message_bytes), on_message(on_message) {}

  int32_t stream_id = -1;
  std::string request;  // framed; read by the data provider
  size_t request_sent = 0;

  size_t header_bytes = 0;
  bool headers_seen = false;  // the final response headers arrived
  int http_status = 0;
  std::string content_type;
  std::optional<std::string> grpc_status;
  std::string grpc_message;
  bool ended = false;   // the CA ended its side of the stream
  bool closed = false;  // the stream is closed, either way
  uint32_t close_code = NGHTTP2_NO_ERROR;
  std::string goaway;  // "GOAWAY <code>", if the CA sent one

  // The first thing wrong with the response that we noticed ourselves.
  absl::Status failure;
  wire::MessageDeframer deframer;
  const wire::MessageDeframer::OnMessage& on_message;

  void Fail(absl::Status s) {
    if (failure.ok()) failure = std::move(s);
  }
};

CallState* State(void* user_data) { return static_cast<CallState*>(user_data); }

ssize_t ReadRequest(nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                    uint32_t* data_flags, nghttp2_data_source*,
                    void* user_data) {
  CallState* st = State(user_data);
  const size_t n = std::min(length, st->request.size() - st->request_sent);
  std::memcpy(buf, st->request.data() + st->request_sent, n);
  st->request_sent += n;
  if (st->request_sent == st->request.size()) {
    *data_flags |= NGHTTP2_DATA_FLAG_EOF;
  }
  return static_cast<ssize_t>(n);
}

int OnHeader(nghttp2_session*, const nghttp2_frame* frame, const uint8_t* name,
             size_t namelen, const uint8_t* value, size_t valuelen, uint8_t,
             void* user_data) {
  CallState* st = State(user_data);
  if (frame->hd.type != NGHTTP2_HEADERS ||
      frame->hd.stream_id != st->stream_id) {
    return 0;
  }
  st->header_bytes += namelen + valuelen;
  if (st->header_bytes > kMaxHeaderBytes) {
    st->Fail(absl::UnavailableError(absl::StrCat(
        "response headers larger than ", kMaxHeaderBytes, " bytes")));
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  const absl::string_view n(reinterpret_cast<const char*>(name), namelen);
  const absl::string_view v(reinterpret_cast<const char*>(value), valuelen);
  if (n == ":status") {
    if (!absl::SimpleAtoi(v, &st->http_status)) st->http_status = -1;
  } else if (n == "content-type") {
    st->content_type = std::string(v);
  } else if (n == "grpc-status") {
    st->grpc_status = std::string(v);
  } else if (n == "grpc-message") {
    st->grpc_message = std::string(v);
  }
  return 0;
}

int OnFrameRecv(nghttp2_session*, const nghttp2_frame* frame, void* user_data) {
  CallState* st = State(user_data);
  switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
      if (frame->hd.stream_id != st->stream_id) return 0;
      if (!st->headers_seen) {
        // 1xx responses are not final; gRPC servers do not send them.
        if (st->http_status >= 100 && st->http_status < 200) {
          st->http_status = 0;
          return 0;
        }
        st->headers_seen = true;
        if (st->http_status != 200) {
          st->Fail(absl::UnavailableError(
              absl::StrCat("HTTP status ", st->http_status,
                           st->grpc_message.empty() ? "" : ": ",
                           wire::PercentDecode(st->grpc_message))));
        } else if (!absl::StartsWith(st->content_type, "application/grpc")) {
          st->Fail(absl::UnavailableError(
              absl::StrCat("not a gRPC response (content-type \"",
                           absl::CEscape(st->content_type), "\")")));
        }
      }
      if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) st->ended = true;
      return 0;
    case NGHTTP2_DATA:
      if (frame->hd.stream_id == st->stream_id &&
          (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        st->ended = true;
      }
      return 0;
    case NGHTTP2_GOAWAY:
      st->goaway = absl::StrCat(
          "GOAWAY ", nghttp2_http2_strerror(frame->goaway.error_code));
      return 0;
    default:
      return 0;
  }
}

int OnDataChunk(nghttp2_session*, uint8_t, int32_t stream_id,
                const uint8_t* data, size_t len, void* user_data) {
  CallState* st = State(user_data);
  if (stream_id != st->stream_id || !st->failure.ok()) return 0;
  absl::Status s = st->deframer.Append(
      absl::string_view(reinterpret_cast<const char*>(data), len),
      st->on_message);
  if (!s.ok()) {
    st->Fail(std::move(s));
    return NGHTTP2_ERR_CALLBACK_FAILURE;
  }
  return 0;
}

int OnStreamClose(nghttp2_session*, int32_t stream_id, uint32_t error_code,
                  void* user_data) {
  CallState* st = State(user_data);
  if (stream_id == st->stream_id) {
    st->closed = true;
    st->close_code = error_code;
  }
  return 0;
}

absl::Status NgError(const char* what, int rv) {
  return absl::InternalError(
      absl::StrCat(what, ": ", nghttp2_strerror(rv), " (", rv, ")"));
}

// Exchanges frames until the stream closes, the response turns out bad or
// the connection fails.
absl::Status Pump(TlsConnection& conn, nghttp2_session* session, CallState& st,
                  const IoLimits& limits) {
  std::vector<char> buf(16 * 1024);
  while (true) {
    while (true) {
      const uint8_t* data = nullptr;
      const ssize_t n = nghttp2_session_mem_send(session, &data);
      if (n < 0)
        return NgError("nghttp2_session_mem_send", static_cast<int>(n));
      if (n == 0) break;
      absl::Status s = conn.WriteAll(
          absl::string_view(reinterpret_cast<const char*>(data), n), limits);
      if (!s.ok()) return s;
    }
    if (!st.failure.ok() || st.closed) return absl::OkStatus();
    if (!nghttp2_session_want_read(session)) {
      return absl::UnavailableError(absl::StrCat(
          "HTTP/2 session ended before the call",
          st.goaway.empty() ? "" : absl::StrCat(" (", st.goaway, ")")));
    }
    absl::StatusOr<size_t> n = conn.Read(buf.data(), buf.size(), limits);
    if (!n.ok()) return n.status();
    if (*n == 0) {
      return absl::UnavailableError(absl::StrCat(
          "connection closed before the call ended",
          st.goaway.empty() ? "" : absl::StrCat(" (", st.goaway, ")")));
    }
    const ssize_t rv = nghttp2_session_mem_recv(
        session, reinterpret_cast<const uint8_t*>(buf.data()), *n);
    if (rv < 0) {
      if (!st.failure.ok()) return absl::OkStatus();
      return absl::UnavailableError(absl::StrCat(
          "HTTP/2 error: ", nghttp2_strerror(static_cast<int>(rv))));
    }
  }
}

// One gRPC call on a connection of its own: connects by `connect_deadline`,
// sends `request` (one message) and hands each response message to
// `on_message` until the status arrives or `call_deadline` passes.
absl::Status RunCall(const H2Target& target, const char* path,
                     const std::string& request,
                     const CallCredentials& credentials,
                     absl::Time connect_deadline, absl::Time call_deadline,
                     int cancel_fd,
                     const wire::MessageDeframer::OnMessage& on_message) {
  TlsConnectOptions tls;
  tls.endpoint = target.endpoint;
  tls.ctx = target.ctx.get();
  tls.peer_name = target.peer_name;
  tls.client_cert_chain_pem = credentials.client_cert_chain_pem;
  tls.client_key_pem = credentials.client_key_pem;
  absl::StatusOr<std::unique_ptr<TlsConnection>> conn =
      TlsConnection::Connect(tls, {connect_deadline, cancel_fd});
  if (!conn.ok()) return conn.status();

  CallState st(target.options.max_response_bytes, on_message);
  st.request = wire::FrameMessage(request);

  nghttp2_session_callbacks* raw_cbs = nullptr;
  if (int rv = nghttp2_session_callbacks_new(&raw_cbs); rv != 0) {
    return NgError("nghttp2_session_callbacks_new", rv);
  }
  std::unique_ptr<nghttp2_session_callbacks, CallbacksDeleter> cbs(raw_cbs);
  nghttp2_session_callbacks_set_on_header_callback(cbs.get(), &OnHeader);
  nghttp2_session_callbacks_set_on_frame_recv_callback(cbs.get(), &OnFrameRecv);
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs.get(),
                                                            &OnDataChunk);
  nghttp2_session_callbacks_set_on_stream_close_callback(cbs.get(),
                                                         &OnStreamClose);
  nghttp2_session* raw = nullptr;
  if (int rv = nghttp2_session_client_new(&raw, cbs.get(), &st); rv != 0) {
    return NgError("nghttp2_session_client_new", rv);
  }
  std::unique_ptr<nghttp2_session, SessionDeleter> session(raw);
  const nghttp2_settings_entry settings[] = {
      {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
      {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, kMaxHeaderBytes},
  };
  if (int rv = nghttp2_submit_settings(raw, NGHTTP2_FLAG_NONE, settings,
                                       sizeof(settings) / sizeof(settings[0]));
      rv != 0) {
    return NgError("nghttp2_submit_settings", rv);
  }

  std::vector<std::pair<std::string, std::string>> headers = {
      {":method", "POST"},
      {":scheme", "https"},
      {":path", path},
      {":authority", target.authority},
      {"content-type", "application/grpc"},
      {"te", "trailers"},
      {"user-agent", "meshguard-h2-ca-client"},
  };
  if (call_deadline != absl::InfiniteFuture()) {
    headers.emplace_back("grpc-timeout",
                         wire::EncodeGrpcTimeout(call_deadline - absl::Now()));
  }
  if (!credentials.bearer_token.empty()) {
    headers.emplace_back("authorization",
                         absl::StrCat("Bearer ", credentials.bearer_token));
  }
  std::vector<nghttp2_nv> nv;
  nv.reserve(headers.size());
  for (auto& [name, value] : headers) {
    // nghttp2 copies names and values at submit time.
    nv.push_back({reinterpret_cast<uint8_t*>(name.data()),
                  reinterpret_cast<uint8_t*>(value.data()), name.size(),
                  value.size(), NGHTTP2_NV_FLAG_NONE});
  }
  nghttp2_data_provider body;
  body.source.ptr = nullptr;
  body.read_callback = &ReadRequest;
  st.stream_id = nghttp2_submit_request(raw, nullptr, nv.data(), nv.size(),
                                        &body, nullptr);
  if (st.stream_id < 0) return NgError("nghttp2_submit_request", st.stream_id);

  if (absl::Status s = Pump(**conn, raw, st, {call_deadline, cancel_fd});
      !s.ok()) {
    return s;
  }
  if (!st.failure.ok()) return st.failure;
  if (!st.ended) {
    return absl::UnavailableError(absl::StrCat(
        "stream reset by the CA (", nghttp2_http2_strerror(st.close_code), ")",
        st.goaway.empty() ? "" : absl::StrCat(" after ", st.goaway)));
  }
  if (!st.deframer.AtMessageBoundary()) {
    return absl::InternalError("response ended inside a message");
  }
  std::optional<absl::string_view> grpc_status;
  if (st.grpc_status.has_value()) grpc_status = *st.grpc_status;
  return wire::StatusFromTrailers(grpc_status, st.grpc_message);
}

template <typename Response>
absl::StatusOr<Response> UnaryCall(const H2Target& target, const char* path,
                                   const google::protobuf::Message& request,
                                   const CallCredentials& credentials) {
  std::optional<Response> response;
  const wire::MessageDeframer::OnMessage on_message =
      [&response](absl::string_view bytes) -> absl::Status {
    if (response.has_value()) {
      return absl::InternalError("more than one response message");
    }
    Response parsed;
    if (!parsed.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
      return absl::InternalError(
          absl::StrCat("cannot parse the response as ", parsed.GetTypeName()));
    }
    response = std::move(parsed);
    return absl::OkStatus();
  };
  const absl::Time deadline = absl::Now() + target.options.timeout;
  absl::Status s =
      RunCall(target, path, request.SerializeAsString(), credentials, deadline,
              deadline, /*cancel_fd=*/-1, on_message);
  if (s.ok() && !response.has_value()) {
    s = absl::InternalError("no response message");
  }
  if (!s.ok()) return WithAddress(target, s);
  return *std::move(response);
}

// WatchTrustBundle on its own thread, reconnecting with backoff (200 ms
// doubling to 30 s, reset by every bundle received) until Stop(). Stop()
// wakes the thread through an eventfd, wherever it is blocked.
class H2BundleWatch final : public BundleWatch {
 public:
  H2BundleWatch(std::shared_ptr<const H2Target> target,
                std::function<void(const v1::TrustBundle&)> on_bundle,
                int cancel_fd)
      : target_(std::move(target)),
        on_bundle_(std::move(on_bundle)),
        cancel_fd_(cancel_fd) {
    thread_ = std::thread([this] { Run(); });
  }
  ~H2BundleWatch() override {
    Stop();
    close(cancel_fd_);
  }

  void Stop() override {
    {
      absl::MutexLock lock(&mu_);
      if (stopped_) return;
      stopped_ = true;
    }
    const uint64_t one = 1;
    // An eventfd write of 1 only fails if the counter would overflow.
    (void)!write(cancel_fd_, &one, sizeof(one));
    stop_.Notify();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void Run() {
    absl::Duration backoff = absl::Milliseconds(200);
    const wire::MessageDeframer::OnMessage on_message =
        [this, &backoff](absl::string_view bytes) -> absl::Status {
      v1::TrustBundle bundle;
      if (!bundle.ParseFromArray(bytes.data(),
                                 static_cast<int>(bytes.size()))) {
        return absl::InternalError("cannot parse a TrustBundle");
      }
      backoff = absl::Milliseconds(200);
      on_bundle_(bundle);
      return absl::OkStatus();
    };
    const std::string request =
        v1::WatchTrustBundleRequest().SerializeAsString();
    while (!stop_.HasBeenNotified()) {
      // Bounded while connecting; the stream itself stays open.
      RunCall(*target_, kWatchBundlePath, request, CallCredentials(),
              absl::Now() + target_->options.timeout, absl::InfiniteFuture(),
              cancel_fd_, on_message)
          .IgnoreError();
      if (stop_.WaitForNotificationWithTimeout(backoff)) return;
      backoff = std::min(backoff * 2, absl::Seconds(30));
    }
  }

  const std::shared_ptr<const H2Target> target_;
  const std::function<void(const v1::TrustBundle&)> on_bundle_;
  const int cancel_fd_;
  absl::Notification stop_;
  absl::Mutex mu_;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<H2CaTransport>> H2CaTransport::Create(
    CaClientOptions options) {
  if (absl::Status s = ValidateCaClientOptions(options); !s.ok()) return s;
  absl::StatusOr<HostPort> endpoint = ParseHostPort(options.address);
  if (!endpoint.ok()) return endpoint.status();
  auto target = std::make_shared<H2Target>();
  target->endpoint = *endpoint;
  target->authority = std::string(
      absl::StripPrefix(absl::string_view(options.address), "dns:///"));
  target->peer_name =
      options.server_name.empty() ? endpoint->host : options.server_name;

  ERR_clear_error();
  crypto::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  if (SSL_CTX_set_cipher_list(ctx.get(), kTls12Ciphers) != 1) {
    return absl::InternalError("cannot set the TLS 1.2 cipher suites");
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  // Idle connections (the watch) give their record buffers back.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS);
  static constexpr unsigned char kAlpn[] = {2, 'h', '2'};
  if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn)) != 0) {
    return absl::InternalError("cannot set ALPN");
  }
  absl::StatusOr<std::vector<crypto::X509Ptr>> roots =
      crypto::ParseCertificateChainPem(options.ca_bundle_pem);
  if (!roots.ok()) return roots.status();
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  for (const crypto::X509Ptr& root : *roots) {
    if (X509_STORE_add_cert(store, root.get()) != 1) {
      // The same root twice is harmless; anything else is not.
      if (ERR_GET_REASON(ERR_peek_last_error()) !=
          X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        return absl::InvalidArgumentError("CA bundle: cannot add a root");
      }
      ERR_clear_error();
    }
  }
  target->ctx = std::move(ctx);
  target->options = std::move(options);
  return std::unique_ptr<H2CaTransport>(new H2CaTransport(std::move(target)));
}

H2CaTransport::~H2CaTransport() = default;

absl::StatusOr<v1::IssueCertificateResponse> H2CaTransport::IssueCertificate(
    const v1::IssueCertificateRequest& request,
    const CallCredentials& credentials) {
  return UnaryCall<v1::IssueCertificateResponse>(*target_, kIssuePath, request,
                                                 credentials);
}

absl::StatusOr<v1::TrustBundle> H2CaTransport::GetTrustBundle() {
  return UnaryCall<v1::TrustBundle>(
      *target_, kGetBundlePath, v1::GetTrustBundleRequest(), CallCredentials());
}

std::unique_ptr<BundleWatch> H2CaTransport::WatchTrustBundle(
    std::function<void(const v1::TrustBundle&)> on_bundle) {
  const int cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // Without a way to stop it, a watch could not be joined: none then. The
  // agent still gets every new bundle with its next certificate.
  if (cancel_fd < 0) return nullptr;
  return std::make_unique<H2BundleWatch>(target_, std::move(on_bundle),
                                         cancel_fd);
}

absl::StatusOr<std::unique_ptr<IdentityClient>> NewH2IdentityClient(
    CaClientOptions options) {
  absl::StatusOr<std::unique_ptr<H2CaTransport>> transport =
      H2CaTransport::Create(std::move(options));
  if (!transport.ok()) return transport.status();
  return IdentityClient::Create(std::move(*transport));
}

}  // namespace meshguard::client
