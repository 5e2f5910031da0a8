#include "identity/ca/token_review_client.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <pthread.h>
#include <signal.h>

#include <optional>
#include <utility>
#include <vector>

#include "absl/memory/memory.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/certificate.h"
#include "identity/util/json_log.h"

namespace meshguard::ca {
namespace {

// A header block of a TokenReview answer is a few hundred bytes.
constexpr ev_ssize_t kMaxHeaderBytes = 16 * 1024;
constexpr size_t kMaxCaFileBytes = 1 << 20;

// What the libevent callbacks of one review learn. Lives on Post's stack,
// which outlives every callback (the connection is freed before Post
// returns, and freeing it runs none).
struct Exchange {
  event_base* base = nullptr;
  bool done = false;       // the request callback ran
  bool timed_out = false;  // our deadline fired first
  int http_status = 0;     // 0: no answer
  std::string body;
  std::optional<evhttp_request_error> error;
  // The first certificate the verifier refused, and why.
  int verify_error = X509_V_OK;
  int verify_depth = -1;
};

// The SSL ex_data slot that points at the review's Exchange.
int ExchangeIndex() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// OpenSSL's chain and host checks decide; this only remembers why they
// refused, for the message.
int VerifyCallback(int preverify_ok, X509_STORE_CTX* store) {
  if (preverify_ok == 1) return 1;
  auto* ssl = static_cast<SSL*>(
      X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* exchange =
      ssl == nullptr
          ? nullptr
          : static_cast<Exchange*>(SSL_get_ex_data(ssl, ExchangeIndex()));
  if (exchange != nullptr && exchange->verify_error == X509_V_OK) {
    exchange->verify_error = X509_STORE_CTX_get_error(store);
    exchange->verify_depth = X509_STORE_CTX_get_error_depth(store);
  }
  return 0;
}

void OnRequestDone(evhttp_request* req, void* arg) {
  auto* exchange = static_cast<Exchange*>(arg);
  exchange->done = true;
  if (req != nullptr)
    exchange->http_status = evhttp_request_get_response_code(req);
  if (exchange->http_status != 0) {
    evbuffer* in = evhttp_request_get_input_buffer(req);
    const size_t n = evbuffer_get_length(in);
    exchange->body.resize(n);
    evbuffer_copyout(in, exchange->body.data(), n);
  }
  event_base_loopbreak(exchange->base);
}

void OnRequestError(evhttp_request_error error, void* arg) {
  static_cast<Exchange*>(arg)->error = error;
}

void OnDeadline(evutil_socket_t, short, void* arg) {
  auto* exchange = static_cast<Exchange*>(arg);
  exchange->timed_out = true;
  event_base_loopbreak(exchange->base);
}

// libevent writes to the socket with write(2); an API server that hangs up
// first must cost an EPIPE, not the CA process. SIGPIPE is blocked in the
// calling thread for the review, and one it raised is discarded before the
// old mask comes back (what curl does), so the rest of the process keeps
// its own SIGPIPE disposition.
class ScopedSigpipeBlock final {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~ScopedSigpipeBlock() {
    if (!was_pending_) {
      const timespec zero = {0, 0};
      sigtimedwait(&pipe_, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_;
  sigset_t old_;
  bool was_pending_ = false;
};

// Everything libevent hands out for one review, freed in the order libevent
// needs: the connection (its bufferevent, SSL and socket, and any pending
// name lookup of it) before the resolver, both before the base.
struct Resources {
  event_base* base = nullptr;
  evdns_base* dns = nullptr;
  event* deadline = nullptr;
  bufferevent* bev = nullptr;  // until the connection owns it
  evhttp_connection* connection = nullptr;

  ~Resources() {
    if (connection != nullptr) evhttp_connection_free(connection);
    if (bev != nullptr) bufferevent_free(bev);
    if (deadline != nullptr) event_free(deadline);
    if (dns != nullptr) evdns_base_free(dns, /*fail_requests=*/0);
    if (base != nullptr) event_base_free(base);
  }
};

std::string HostHeader(const ApiServerUrl& server) {
  const bool v6 = server.host.find(':') != std::string::npos;
  return absl::StrCat(v6 ? "[" : "", server.host, v6 ? "]" : "", ":",
                      server.port);
}

std::string RequestErrorName(evhttp_request_error error) {
  switch (error) {
    case EVREQ_HTTP_TIMEOUT:
      return "timed out";
    case EVREQ_HTTP_EOF:
      return "the connection closed before a complete answer";
    case EVREQ_HTTP_INVALID_HEADER:
      return "malformed HTTP answer";
    case EVREQ_HTTP_BUFFER_ERROR:
      return "connection error";
    case EVREQ_HTTP_REQUEST_CANCEL:
      return "request cancelled";
    case EVREQ_HTTP_DATA_TOO_LONG:
      return absl::StrCat("the answer is larger than ",
                          kMaxTokenReviewResponseBytes, " bytes");
  }
  return "unknown error";
}

// Why a review got no answer, most specific cause first.
std::string DescribeFailure(const Exchange& exchange, bufferevent* bev,
                            absl::Duration timeout) {
  if (exchange.verify_error != X509_V_OK) {
    return absl::StrCat(
        "TLS verification of the API server's certificate failed: ",
        X509_verify_cert_error_string(exchange.verify_error),
        " (certificate depth ", exchange.verify_depth,
        "; checked against kubernetes.token_review.ca_file and the "
        "api_server host)");
  }
  if (exchange.timed_out ||
      (exchange.error.has_value() && *exchange.error == EVREQ_HTTP_TIMEOUT)) {
    return absl::StrCat("no answer within ", absl::FormatDuration(timeout),
                        " (kubernetes.token_review.timeout)");
  }
  if (bev != nullptr) {
    // libevent queues OpenSSL's errors and, with library 0, the
    // SSL_get_error() code of a failed read or write (5, SSL_ERROR_SYSCALL,
    // for a refused connection): only the former say more than errno.
    unsigned long ssl_error;
    while ((ssl_error = bufferevent_get_openssl_error(bev)) != 0) {
      if (ERR_GET_LIB(ssl_error) == 0) continue;
      char text[256];
      ERR_error_string_n(ssl_error, text, sizeof(text));
      return absl::StrCat("TLS handshake failed: ", text);
    }
  }
  if (exchange.error.has_value()) return RequestErrorName(*exchange.error);
  // What is left is the TCP connection itself. Its errno is not known here:
  // evhttp's cleanup overwrites it (shutdown(2) of the failed socket).
  return "cannot connect (TCP connection refused, unreachable or reset)";
}

}  // namespace

absl::StatusOr<std::unique_ptr<HttpsTokenReviewClient>>
HttpsTokenReviewClient::Create(ApiServerUrl server, std::string ca_file) {
  absl::StatusOr<util::FileVersion> version = util::StatFileVersion(ca_file);
  if (!version.ok()) return version.status();
  auto client = absl::WrapUnique(
      new HttpsTokenReviewClient(std::move(server), std::move(ca_file)));
  absl::StatusOr<SslCtxRef> ctx = client->LoadContext();
  if (!ctx.ok()) return ctx.status();
  absl::MutexLock lock(&client->mu_);
  client->ctx_ = *std::move(ctx);
  client->ca_version_ = *version;
  return client;
}

absl::StatusOr<HttpsTokenReviewClient::SslCtxRef>
HttpsTokenReviewClient::LoadContext() const {
  absl::StatusOr<std::string> pem = util::ReadFile(ca_file_, kMaxCaFileBytes);
  if (!pem.ok()) return pem.status();
  absl::StatusOr<std::vector<crypto::X509Ptr>> roots =
      crypto::ParseCertificateChainPem(*pem);
  if (!roots.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(ca_file_, ": ", roots.status().message()));
  }
  SslCtxRef ctx(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  if (ctx == nullptr) return absl::InternalError("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  X509_STORE* store = SSL_CTX_get_cert_store(ctx.get());
  for (const crypto::X509Ptr& root : *roots) {
    if (X509_STORE_add_cert(store, root.get()) != 1) {
      ERR_clear_error();  // a duplicate certificate in the file
    }
  }
  SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, &VerifyCallback);
  return ctx;
}

HttpsTokenReviewClient::SslCtxRef HttpsTokenReviewClient::Context() {
  absl::StatusOr<util::FileVersion> version = util::StatFileVersion(ca_file_);
  absl::MutexLock lock(&mu_);
  if (!version.ok() || *version == ca_version_) return ctx_;
  // Remembered even on failure, so that a broken file is reported once,
  // and tried again when it changes again.
  ca_version_ = *version;
  absl::StatusOr<SslCtxRef> fresh = LoadContext();
  if (!fresh.ok()) {
    util::LogLine("error", "token_review_ca_file_reload_failed")
        .Add("ca_file", ca_file_)
        .Add("message", fresh.status().ToString())
        .Emit();
    return ctx_;
  }
  ctx_ = *std::move(fresh);
  util::LogLine("info", "token_review_ca_file_reloaded")
      .Add("ca_file", ca_file_)
      .Emit();
  return ctx_;
}

absl::StatusOr<TokenReviewHttpAnswer> HttpsTokenReviewClient::Post(
    absl::string_view request_json, absl::string_view bearer_token,
    absl::Duration timeout) {
  const SslCtxRef ctx = Context();
  const std::string where = server_.ToString();
  auto failed = [&](absl::string_view why) {
    return TokenReviewFailed(absl::StrCat(where, ": ", why));
  };
  ScopedSigpipeBlock no_sigpipe;
  Resources r;
  Exchange exchange;
  r.base = event_base_new();
  if (r.base == nullptr) return failed("event_base_new failed");
  exchange.base = r.base;

  SSL* ssl = SSL_new(ctx.get());
  if (ssl == nullptr) return failed("SSL_new failed");
  SSL_set_ex_data(ssl, ExchangeIndex(), &exchange);
  // The certificate must name the host we dialled: its IP (an IP SAN) or
  // its DNS name (also sent as SNI).
  const bool name_set =
      server_.host_is_ip
          ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl),
                                          server_.host.c_str()) == 1
          : SSL_set_tlsext_host_name(ssl, server_.host.c_str()) == 1 &&
                SSL_set1_host(ssl, server_.host.c_str()) == 1;
  if (!name_set) {
    SSL_free(ssl);
    return failed("cannot set the expected host name");
  }
  // From here the bufferevent owns the SSL (BEV_OPT_CLOSE_ON_FREE).
  r.bev = bufferevent_openssl_socket_new(
      r.base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
      BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
  if (r.bev == nullptr) return failed("bufferevent_openssl_socket_new failed");
  // An API server (or proxy) that closes without close_notify after a
  // complete answer is not an error; a truncated answer still is (evhttp
  // knows the length).
  bufferevent_openssl_set_allow_dirty_shutdown(r.bev, 1);
  if (!server_.host_is_ip) {
    // Asynchronous, so that the deadline bounds name resolution too.
    r.dns = evdns_base_new(r.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (r.dns == nullptr) return failed("cannot set up name resolution");
  }
  r.connection = evhttp_connection_base_bufferevent_new(
      r.base, r.dns, r.bev, server_.host.c_str(),
      static_cast<ev_uint16_t>(server_.port));
  if (r.connection == nullptr) return failed("cannot create the connection");
  r.bev = nullptr;  // owned by the connection now
  const timeval tv = absl::ToTimeval(timeout);
  evhttp_connection_set_timeout_tv(r.connection, &tv);
  evhttp_connection_set_max_body_size(
      r.connection, static_cast<ev_ssize_t>(kMaxTokenReviewResponseBytes));
  evhttp_connection_set_max_headers_size(r.connection, kMaxHeaderBytes);

  evhttp_request* req = evhttp_request_new(&OnRequestDone, &exchange);
  if (req == nullptr) return failed("evhttp_request_new failed");
  evhttp_request_set_error_cb(req, &OnRequestError);
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  const std::string host = HostHeader(server_);
  const std::string authorization = absl::StrCat("Bearer ", bearer_token);
  evhttp_add_header(headers, "Host", host.c_str());
  evhttp_add_header(headers, "Authorization", authorization.c_str());
  evhttp_add_header(headers, "Content-Type", "application/json");
  evhttp_add_header(headers, "Accept", "application/json");
  evhttp_add_header(headers, "User-Agent", "meshguard-ca");
  evhttp_add_header(headers, "Connection", "close");
  evbuffer_add(evhttp_request_get_output_buffer(req), request_json.data(),
               request_json.size());

  r.deadline = evtimer_new(r.base, &OnDeadline, &exchange);
  if (r.deadline == nullptr || evtimer_add(r.deadline, &tv) != 0) {
    evhttp_request_free(req);
    return failed("cannot arm the deadline");
  }
  const std::string path(kTokenReviewPath);
  // On failure evhttp has freed the request.
  if (evhttp_make_request(r.connection, req, EVHTTP_REQ_POST, path.c_str()) !=
      0) {
    return failed("cannot start the request");
  }
  event_base_dispatch(r.base);

  if (exchange.done && exchange.http_status != 0) {
    return TokenReviewHttpAnswer{exchange.http_status,
                                 std::move(exchange.body)};
  }
  return failed(DescribeFailure(
      exchange, evhttp_connection_get_bufferevent(r.connection), timeout));
}

}  // namespace meshguard::ca
