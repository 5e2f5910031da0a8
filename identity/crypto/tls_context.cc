#include "identity/crypto/tls_context.h"

#include <openssl/err.h>

#include <cstring>

#include "absl/strings/str_cat.h"
#include "identity/crypto/keys.h"

namespace meshguard::crypto {
namespace {

// Per-SSL state, owned by the SSL through ex_data.
struct SslState {
  std::string expected_peer_id;
  std::string verified_peer_id;
  std::string failure_message;
  std::string failure_label;
};

// Per-SSL_CTX state: the bundle verification uses, kept alive as long as the
// context (and so every SSL made from it).
struct CtxState {
  std::shared_ptr<const TrustBundle> bundle;
};

void FreeSslState(void* parent, void* ptr, CRYPTO_EX_DATA* ad, int index,
                  long argl, void* argp) {
  delete static_cast<SslState*>(ptr);
}

void FreeCtxState(void* parent, void* ptr, CRYPTO_EX_DATA* ad, int index,
                  long argl, void* argp) {
  delete static_cast<CtxState*>(ptr);
}

int SslStateIndex() {
  static const int index =
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeSslState);
  return index;
}

int CtxStateIndex() {
  static const int index =
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, FreeCtxState);
  return index;
}

SslState* GetOrCreateState(SSL* ssl) {
  auto* state = static_cast<SslState*>(SSL_get_ex_data(ssl, SslStateIndex()));
  if (state == nullptr) {
    state = new SslState();
    if (SSL_set_ex_data(ssl, SslStateIndex(), state) != 1) {
      delete state;
      return nullptr;
    }
  }
  return state;
}

// Replaces OpenSSL's chain verification: the whole decision is
// VerifyX509Svid's, so the data plane and meshguardctl verify identically.
int VerifyCallback(X509_STORE_CTX* store_ctx, void* arg) {
  SSL* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(
      store_ctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  SslState* state = ssl == nullptr ? nullptr : GetOrCreateState(ssl);
  if (state == nullptr) return 0;
  SSL_CTX* ctx = SSL_get_SSL_CTX(ssl);
  auto* ctx_state =
      static_cast<CtxState*>(SSL_CTX_get_ex_data(ctx, CtxStateIndex()));
  X509* leaf = X509_STORE_CTX_get0_cert(store_ctx);
  if (ctx_state == nullptr || leaf == nullptr) {
    state->failure_label = "no_client_certificate";
    state->failure_message = "peer presented no certificate";
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
  std::vector<X509*> intermediates;
  if (STACK_OF(X509)* untrusted = X509_STORE_CTX_get0_untrusted(store_ctx)) {
    for (size_t i = 0; i < static_cast<size_t>(sk_X509_num(untrusted)); ++i) {
      X509* c = sk_X509_value(untrusted, i);
      if (c != leaf) intermediates.push_back(c);
    }
  }
  VerifyOptions options;
  options.at = absl::Now();
  absl::StatusOr<SpiffeId> id =
      VerifyX509Svid(leaf, intermediates, *ctx_state->bundle, options);
  if (!id.ok()) {
    state->failure_message = std::string(id.status().message());
    state->failure_label = VerifyFailureLabelOf(state->failure_message);
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  if (!state->expected_peer_id.empty() &&
      id->ToString() != state->expected_peer_id) {
    state->failure_label = "unexpected_peer";
    state->failure_message = absl::StrCat(
        "peer is ", id->ToString(), ", expected ", state->expected_peer_id);
    X509_STORE_CTX_set_error(store_ctx, X509_V_ERR_CERT_REJECTED);
    return 0;
  }
  state->verified_peer_id = id->ToString();
  return 1;
}

int SelectAlpn(SSL* ssl, const unsigned char** out, unsigned char* outlen,
               const unsigned char* in, unsigned int inlen, void* arg) {
  // The client's list is length-prefixed protocol names.
  for (unsigned int i = 0; i < inlen;) {
    unsigned int len = in[i];
    if (i + 1 + len > inlen) break;
    if (len == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
      *out = in + i + 1;
      *outlen = 2;
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  if (SslState* state = GetOrCreateState(ssl)) {
    state->failure_label = "alpn";
    state->failure_message = "ALPN: the client did not offer h2";
  }
  return SSL_TLSEXT_ERR_ALERT_FATAL;
}

}  // namespace

absl::StatusOr<SslCtxPtr> NewMeshTlsContext(
    TlsRole role, EVP_PKEY* key, const std::vector<X509*>& chain,
    std::shared_ptr<const TrustBundle> bundle) {
  if (key == nullptr || chain.empty() || bundle == nullptr) {
    return absl::InvalidArgumentError(
        "TLS context needs a key, a certificate chain and a trust bundle");
  }
  SslCtxPtr ctx(SSL_CTX_new(TLS_method()));
  if (ctx == nullptr) {
    return absl::InternalError(
        absl::StrCat("SSL_CTX_new: ", ConsumeSslErrors()));
  }
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1) {
    return absl::InternalError(
        absl::StrCat("cannot restrict to TLS 1.3: ", ConsumeSslErrors()));
  }
  // Pinned here rather than left to the host's openssl.cnf: the three TLS
  // 1.3 AEAD suites with full-length tags (no CCM_8), and elliptic-curve key
  // exchange only (no finite-field groups). BoringSSL's TLS 1.3 suites are
  // fixed, and already these three.
#ifndef OPENSSL_IS_BORINGSSL
  if (SSL_CTX_set_ciphersuites(ctx.get(),
                               "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"
                               "TLS_CHACHA20_POLY1305_SHA256") != 1) {
    return absl::InternalError(absl::StrCat(
        "cannot set the TLS 1.3 cipher suites: ", ConsumeSslErrors()));
  }
#endif
  if (SSL_CTX_set1_curves_list(ctx.get(), "X25519:P-256:P-384") != 1) {
    return absl::InternalError(absl::StrCat(
        "cannot set the key exchange groups: ", ConsumeSslErrors()));
  }
  if (SSL_CTX_use_certificate(ctx.get(), chain[0]) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot use certificate: ", ConsumeSslErrors()));
  }
  for (size_t i = 1; i < chain.size(); ++i) {
    // add1: the context takes its own reference.
    if (SSL_CTX_add1_chain_cert(ctx.get(), chain[i]) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot add chain certificate: ", ConsumeSslErrors()));
    }
  }
  if (SSL_CTX_use_PrivateKey(ctx.get(), key) != 1 ||
      SSL_CTX_check_private_key(ctx.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "private key does not match the certificate: ", ConsumeSslErrors()));
  }
  auto* ctx_state = new CtxState{std::move(bundle)};
  if (SSL_CTX_set_ex_data(ctx.get(), CtxStateIndex(), ctx_state) != 1) {
    delete ctx_state;
    return absl::InternalError("SSL_CTX_set_ex_data failed");
  }
  SSL_CTX_set_cert_verify_callback(ctx.get(), VerifyCallback, nullptr);
  if (role == TlsRole::kServer) {
    SSL_CTX_set_verify(
        ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    SSL_CTX_set_alpn_select_cb(ctx.get(), SelectAlpn, nullptr);
    // Session resumption would skip the verify callback on resumed
    // handshakes, and with it the revocation and expiry checks.
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx.get(), 0);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    static const unsigned char kAlpn[] = {2, 'h', '2'};
    if (SSL_CTX_set_alpn_protos(ctx.get(), kAlpn, sizeof(kAlpn)) != 0) {
      return absl::InternalError("cannot set ALPN");
    }
    SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  }
  return ctx;
}

void SetExpectedPeerId(SSL* ssl, absl::string_view spiffe_id) {
  if (SslState* state = GetOrCreateState(ssl)) {
    state->expected_peer_id = std::string(spiffe_id);
  }
}

absl::StatusOr<std::string> VerifiedPeerId(SSL* ssl) {
  auto* state = static_cast<SslState*>(SSL_get_ex_data(ssl, SslStateIndex()));
  if (state == nullptr || state->verified_peer_id.empty()) {
    std::string why = state == nullptr || state->failure_message.empty()
                          ? "peer not verified"
                          : state->failure_message;
    return absl::UnauthenticatedError(why);
  }
  return state->verified_peer_id;
}

std::string VerifyFailureMessage(SSL* ssl) {
  auto* state = static_cast<SslState*>(SSL_get_ex_data(ssl, SslStateIndex()));
  return state == nullptr ? "" : state->failure_message;
}

std::string VerifyFailureLabel(SSL* ssl) {
  auto* state = static_cast<SslState*>(SSL_get_ex_data(ssl, SslStateIndex()));
  return state == nullptr ? "" : state->failure_label;
}

namespace {

// The intermediates the peer sent besides its leaf: a client's view of the
// chain holds the leaf, a server's does not.
std::vector<X509*> PeerIntermediates(SSL* ssl, X509* leaf) {
  std::vector<X509*> intermediates;
  if (STACK_OF(X509)* chain = SSL_get_peer_cert_chain(ssl)) {
    for (size_t i = 0; i < static_cast<size_t>(sk_X509_num(chain)); ++i) {
      X509* c = sk_X509_value(chain, i);
      if (X509_cmp(c, leaf) != 0) intermediates.push_back(c);
    }
  }
  return intermediates;
}

void AppendDer(X509* cert, std::string* out) {
  const int size = i2d_X509(cert, nullptr);
  if (size <= 0) return;
  const size_t at = out->size();
  out->resize(at + static_cast<size_t>(size));
  auto* p = reinterpret_cast<unsigned char*>(&(*out)[at]);
  i2d_X509(cert, &p);
}

}  // namespace

absl::StatusOr<SpiffeId> VerifyPeerAgain(SSL* ssl, const TrustBundle& bundle,
                                         absl::Time at) {
  X509* leaf = PeerLeaf(ssl);
  if (leaf == nullptr) {
    return absl::FailedPreconditionError(
        "no_client_certificate: peer presented no certificate");
  }
  VerifyOptions options;
  options.at = at;
  return VerifyX509Svid(leaf, PeerIntermediates(ssl, leaf), bundle, options);
}

std::string PeerChainDer(SSL* ssl) {
  std::string der;
  X509* leaf = PeerLeaf(ssl);
  if (leaf == nullptr) return der;
  AppendDer(leaf, &der);
  for (X509* c : PeerIntermediates(ssl, leaf)) AppendDer(c, &der);
  return der;
}

std::string VerifyFailureLabelOf(absl::string_view message) {
  const size_t colon = message.find(':');
  return colon == absl::string_view::npos
             ? "verify"
             : std::string(message.substr(0, colon));
}

X509* PeerLeaf(SSL* ssl) {
#ifdef OPENSSL_IS_BORINGSSL
  // BoringSSL's SSL_get_peer_certificate returns a new reference too.
  X509Ptr cert(SSL_get_peer_certificate(ssl));
  return cert.get();  // The SSL keeps its own reference.
#else
  return SSL_get0_peer_certificate(ssl);
#endif
}

}  // namespace meshguard::crypto
