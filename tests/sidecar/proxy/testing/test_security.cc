#include "tests/sidecar/proxy/testing/test_security.h"

#include <openssl/ec.h>
#include <openssl/err.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace meshguard::sidecar::proxy::testing {
namespace {

absl::Status SslError(const char* what) {
  char buf[256] = "unknown";
  unsigned long err = ERR_get_error();
  if (err != 0) ERR_error_string_n(err, buf, sizeof(buf));
  return absl::InternalError(absl::StrCat(what, ": ", buf));
}

absl::StatusOr<crypto::EvpPkeyPtr> NewP256Key() {
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr));
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1 ||
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1) !=
          1) {
    return SslError("EC keygen init");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &raw) != 1) return SslError("EC keygen");
  return crypto::EvpPkeyPtr(raw);
}

absl::Status AddExtension(X509* cert, X509* issuer, int nid,
                          const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  crypto::X509ExtensionPtr ext(
      X509V3_EXT_conf_nid(nullptr, &ctx, nid, const_cast<char*>(value)));
  if (ext == nullptr || X509_add_ext(cert, ext.get(), -1) != 1) {
    return SslError("X509_add_ext");
  }
  return absl::OkStatus();
}

absl::StatusOr<crypto::X509Ptr> NewCert(EVP_PKEY* subject_key, const char* cn,
                                        long serial, absl::Duration lifetime) {
  crypto::X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -60);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()),
                  absl::ToInt64Seconds(lifetime));
  X509_set_pubkey(cert.get(), subject_key);
  X509_NAME_add_entry_by_txt(
      X509_get_subject_name(cert.get()), "CN", MBSTRING_ASC,
      reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  return cert;
}

int SelectH2(SSL*, const unsigned char** out, unsigned char* outlen,
             const unsigned char* in, unsigned int inlen, void*) {
  unsigned char* selected = nullptr;
  static const unsigned char kH2[] = {2, 'h', '2'};
  if (SSL_select_next_proto(&selected, outlen, kH2, sizeof(kH2), in, inlen) !=
      OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;
  }
  *out = selected;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TestCa>> TestCa::Create() {
  auto ca = std::make_unique<TestCa>();
  absl::StatusOr<crypto::EvpPkeyPtr> key = NewP256Key();
  if (!key.ok()) return key.status();
  ca->key_ = std::move(*key);
  absl::StatusOr<crypto::X509Ptr> cert =
      NewCert(ca->key_.get(), "meshguard test CA", 1, absl::Hours(24));
  if (!cert.ok()) return cert.status();
  ca->cert_ = std::move(*cert);
  X509_set_issuer_name(ca->cert_.get(), X509_get_subject_name(ca->cert_.get()));
  if (absl::Status s = AddExtension(ca->cert_.get(), ca->cert_.get(),
                                    NID_basic_constraints, "critical,CA:TRUE");
      !s.ok()) {
    return s;
  }
  AddExtension(ca->cert_.get(), ca->cert_.get(), NID_key_usage,
               "critical,keyCertSign,cRLSign")
      .IgnoreError();
  if (X509_sign(ca->cert_.get(), ca->key_.get(), EVP_sha256()) == 0) {
    return SslError("X509_sign CA");
  }
  return ca;
}

absl::StatusOr<TestCa::Leaf> TestCa::Issue(const std::string& spiffe_id,
                                           absl::Duration lifetime) {
  Leaf leaf;
  absl::StatusOr<crypto::EvpPkeyPtr> key = NewP256Key();
  if (!key.ok()) return key.status();
  leaf.key = std::move(*key);
  absl::StatusOr<crypto::X509Ptr> cert =
      NewCert(leaf.key.get(), "workload", ++serial_, lifetime);
  if (!cert.ok()) return cert.status();
  leaf.cert = std::move(*cert);
  X509_set_issuer_name(leaf.cert.get(), X509_get_subject_name(cert_.get()));
  const std::string san = "URI:" + spiffe_id;
  for (auto [nid, value] :
       {std::pair<int, const char*>{NID_subject_alt_name, san.c_str()},
        {NID_basic_constraints, "critical,CA:FALSE"},
        {NID_key_usage, "critical,digitalSignature"},
        {NID_ext_key_usage, "serverAuth,clientAuth"}}) {
    if (absl::Status s = AddExtension(leaf.cert.get(), cert_.get(), nid, value);
        !s.ok()) {
      return s;
    }
  }
  if (X509_sign(leaf.cert.get(), key_.get(), EVP_sha256()) == 0) {
    return SslError("X509_sign leaf");
  }
  return leaf;
}

absl::StatusOr<std::string> SpiffeIdOf(X509* cert) {
  crypto::GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (names == nullptr) return absl::NotFoundError("no subjectAltName");
  for (int i = 0; i < sk_GENERAL_NAME_num(names.get()); ++i) {
    GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type == GEN_URI) {
      const ASN1_IA5STRING* uri = name->d.uniformResourceIdentifier;
      return std::string(
          reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
          ASN1_STRING_length(uri));
    }
  }
  return absl::NotFoundError("no URI SAN");
}

absl::StatusOr<std::unique_ptr<TestSecurity>> TestSecurity::Create(
    TestCa& ca, const std::string& spiffe_id, uint64_t version,
    absl::Duration lifetime) {
  absl::StatusOr<TestCa::Leaf> leaf = ca.Issue(spiffe_id, lifetime);
  if (!leaf.ok()) return leaf.status();
  auto self = std::make_unique<TestSecurity>();
  self->version_ = version;
  self->expires_at_ = absl::Now() + lifetime;
  for (bool server : {true, false}) {
    crypto::SslCtxPtr ctx(SSL_CTX_new(TLS_method()));
    if (ctx == nullptr) return SslError("SSL_CTX_new");
    SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
    if (SSL_CTX_use_certificate(ctx.get(), leaf->cert.get()) != 1 ||
        SSL_CTX_use_PrivateKey(ctx.get(), leaf->key.get()) != 1) {
      return SslError("SSL_CTX_use_certificate");
    }
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx.get()), ca.cert());
    // Mutual TLS: both ends must present a certificate from the CA.
    SSL_CTX_set_verify(
        ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    if (server) {
      SSL_CTX_set_alpn_select_cb(ctx.get(), &SelectH2, nullptr);
      self->server_ctx_ = std::move(ctx);
    } else {
      static const unsigned char kH2[] = {2, 'h', '2'};
      SSL_CTX_set_alpn_protos(ctx.get(), kH2, sizeof(kH2));
      self->client_ctx_ = std::move(ctx);
    }
  }
  return self;
}

SSL* TestSecurity::NewServerSsl() { return SSL_new(server_ctx_.get()); }

SSL* TestSecurity::NewClientSsl(const UpstreamTarget&) {
  return SSL_new(client_ctx_.get());
}

absl::StatusOr<std::string> TestSecurity::PeerIdentity(
    SSL* ssl, const UpstreamTarget* target) {
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    return absl::UnauthenticatedError("peer certificate not verified");
  }
  crypto::X509Ptr cert(SSL_get1_peer_certificate(ssl));
  if (cert == nullptr) return absl::UnauthenticatedError("no peer certificate");
  absl::StatusOr<std::string> id = SpiffeIdOf(cert.get());
  if (!id.ok()) return id.status();
  if (target != nullptr && !target->expected_spiffe_id.empty() &&
      *id != target->expected_spiffe_id) {
    return absl::PermissionDeniedError(absl::StrCat(
        "peer is ", *id, ", expected ", target->expected_spiffe_id));
  }
  return id;
}

ConnectionSecurity::Refusal TestSecurity::RecheckPeer(SSL*) {
  ++rechecks_;
  Refusal refusal;
  if (refuse_recheck_) {
    refusal.kind = Refusal::Kind::kChain;
    refusal.message = "crl: certificate is revoked (test)";
  }
  return refusal;
}

CredentialInfo TestSecurity::Credentials(SSL*) {
  return CredentialInfo{version_, expires_at_};
}

}  // namespace meshguard::sidecar::proxy::testing
