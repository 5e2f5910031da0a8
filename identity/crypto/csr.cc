#include "identity/crypto/csr.h"

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/opensslv.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#if !defined(OPENSSL_IS_BORINGSSL) && OPENSSL_VERSION_MAJOR >= 3
#include <openssl/provider.h>
#endif

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"

namespace meshguard::crypto {
namespace {

// `id` null: no subjectAltName at all.
absl::StatusOr<std::string> BuildCsrPem(EVP_PKEY* key, const SpiffeId* id) {
  if (key == nullptr) return absl::InvalidArgumentError("CSR key is null");
  ERR_clear_error();
  X509ReqPtr req(X509_REQ_new());
  if (req == nullptr) return SslError("X509_REQ_new");
  if (!X509_REQ_set_version(req.get(), 0) ||
      !X509_REQ_set_pubkey(req.get(), key)) {
    return SslError("cannot set CSR version and public key");
  }
  if (id != nullptr) {
    GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
    if (names == nullptr) return SslError("sk_GENERAL_NAME_new_null");
    absl::Status added = AddGeneralName(names.get(), GEN_URI, id->ToString());
    if (!added.ok()) return added;
    X509ExtensionPtr san(X509V3_EXT_i2d(NID_subject_alt_name, 0, names.get()));
    ExtensionStackPtr extensions(sk_X509_EXTENSION_new_null());
    if (san == nullptr || extensions == nullptr ||
        !sk_X509_EXTENSION_push(extensions.get(), san.get())) {
      return SslError("cannot build the CSR's subjectAltName extension");
    }
    san.release();  // Now owned by `extensions`.
    if (!X509_REQ_add_extensions(req.get(), extensions.get())) {
      return SslError("X509_REQ_add_extensions");
    }
  }
  if (X509_REQ_sign(req.get(), key, EVP_sha256()) <= 0) {
    return SslError(
        absl::StrCat("cannot sign CSR with ", DescribeKey(key), " key"));
  }
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || !PEM_write_bio_X509_REQ(bio.get(), req.get())) {
    return SslError("PEM_write_bio_X509_REQ");
  }
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) return SslError("BIO_get_mem_data");
  return std::string(data, static_cast<size_t>(len));
}

// OpenSSL 3.0 decodes the public key of a request while parsing it, through
// its generic decoder framework: OSSL_DECODER_CTX_new_for_pkey walks every
// key manager and decoder of the default provider, under the stores' locks,
// for every request. Measured in ca_issue_bench's bare loop that was about
// half of an issuance on one thread, and it is what made concurrent
// issuances slow each other down (two threads in one process: 1.42x the CPU
// per certificate of one). 3.2 caches those contexts; 3.0 does not.
//
// So the request is parsed in a library context that holds only the "null"
// provider: the opportunistic decode finds no decoder and is skipped (the
// parse itself does not depend on it), and DecodeReqPublicKey decodes the
// key through the EC- and RSA-specific routines instead (the same checks:
// a named or explicit curve, the point on the curve). Keys of any other type
// still go through the generic decoder, so the caller's error says what the
// key is. BoringSSL has no decoder framework: it parses as before.
#if !defined(OPENSSL_IS_BORINGSSL) && OPENSSL_VERSION_MAJOR >= 3
OSSL_LIB_CTX* ParseOnlyLibCtx() {
  static OSSL_LIB_CTX* const ctx = [] {
    OSSL_LIB_CTX* c = OSSL_LIB_CTX_new();
    if (c != nullptr && OSSL_PROVIDER_load(c, "null") == nullptr) {
      OSSL_LIB_CTX_free(c);
      c = nullptr;
    }
    ERR_clear_error();
    return c;
  }();
  return ctx;
}

X509_REQ* ParseReqDer(const unsigned char** p, long len) {
  OSSL_LIB_CTX* ctx = ParseOnlyLibCtx();
  if (ctx == nullptr) return d2i_X509_REQ(nullptr, p, len);
  return reinterpret_cast<X509_REQ*>(ASN1_item_d2i_ex(
      nullptr, p, len, ASN1_ITEM_rptr(X509_REQ), ctx, nullptr));
}

EvpPkeyPtr DecodeReqPublicKey(X509_REQ* req) {
  X509_PUBKEY* spki = X509_REQ_get_X509_PUBKEY(req);
  if (spki == nullptr) return nullptr;
  ASN1_OBJECT* algorithm = nullptr;
  if (!X509_PUBKEY_get0_param(&algorithm, nullptr, nullptr, nullptr, spki)) {
    return nullptr;
  }
  unsigned char* raw = nullptr;
  const int raw_len = i2d_X509_PUBKEY(spki, &raw);
  OpensslBytes der(raw);
  if (raw_len <= 0) return nullptr;
  const unsigned char* q = der.get();
  switch (OBJ_obj2nid(algorithm)) {
    case NID_X9_62_id_ecPublicKey: {
      EcKeyPtr ec(d2i_EC_PUBKEY(nullptr, &q, raw_len));
      if (ec == nullptr) return nullptr;
      // The legacy decoder accepts the point at infinity (one 0x00 octet);
      // the provider's, which this replaces, refused it. So do we.
      const EC_POINT* point = EC_KEY_get0_public_key(ec.get());
      if (point == nullptr ||
          EC_POINT_is_at_infinity(EC_KEY_get0_group(ec.get()), point) == 1) {
        ERR_raise_data(ERR_LIB_EC, EC_R_POINT_AT_INFINITY,
                       "public key is the point at infinity");
        return nullptr;
      }
      EvpPkeyPtr key(EVP_PKEY_new());
      if (key == nullptr || !EVP_PKEY_assign_EC_KEY(key.get(), ec.get())) {
        return nullptr;
      }
      ec.release();  // Now owned by `key`.
      return key;
    }
    case NID_rsaEncryption: {
      RsaPtr rsa(d2i_RSA_PUBKEY(nullptr, &q, raw_len));
      EvpPkeyPtr key(EVP_PKEY_new());
      if (rsa == nullptr || key == nullptr ||
          !EVP_PKEY_assign_RSA(key.get(), rsa.get())) {
        return nullptr;
      }
      rsa.release();  // Now owned by `key`.
      return key;
    }
    default:
      return EvpPkeyPtr(d2i_PUBKEY(nullptr, &q, raw_len));
  }
}
#else
X509_REQ* ParseReqDer(const unsigned char** p, long len) {
  return d2i_X509_REQ(nullptr, p, len);
}

EvpPkeyPtr DecodeReqPublicKey(X509_REQ* req) {
  return EvpPkeyPtr(X509_REQ_get_pubkey(req));
}
#endif

}  // namespace

absl::StatusOr<std::string> CreateCsrPem(EVP_PKEY* key, const SpiffeId& id) {
  return BuildCsrPem(key, &id);
}

absl::StatusOr<std::string> CreateCsrPemWithoutIdentity(EVP_PKEY* key) {
  return BuildCsrPem(key, nullptr);
}

absl::StatusOr<Csr> Csr::ParsePem(absl::string_view pem) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadPemBlocks(pem, "CSR PEM", kMaxCsrPemBytes);
  if (!blocks.ok()) return blocks.status();
  if (blocks->size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR PEM has ", blocks->size(), " PEM blocks; expected exactly one"));
  }
  const PemBlock& block = blocks->front();
  if (block.type != "CERTIFICATE REQUEST" &&
      block.type != "NEW CERTIFICATE REQUEST") {
    return absl::InvalidArgumentError(
        absl::StrCat("CSR PEM holds a \"", block.type,
                     "\" block, not \"CERTIFICATE REQUEST\""));
  }
  ERR_clear_error();
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(block.der.data());
  const unsigned char* end = p + block.der.size();
  X509ReqPtr req(ParseReqDer(&p, static_cast<long>(block.der.size())));
  if (req == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse CSR DER: ", ConsumeSslErrors()));
  }
  if (p != end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR DER has ", end - p, " trailing bytes after the request"));
  }
  EvpPkeyPtr public_key = DecodeReqPublicKey(req.get());
  if (public_key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("CSR public key cannot be decoded: ", ConsumeSslErrors()));
  }
  return Csr(std::move(req), std::move(public_key));
}

absl::Status Csr::CheckSignature() const {
  // The SHA-2 family only: a signature over SHA-1 (or MD5, which OpenSSL
  // still verifies) proves too little. RSA-PSS requests are refused too;
  // the client library signs with PKCS#1 v1.5 or ECDSA over SHA-256.
  const ASN1_BIT_STRING* signature = nullptr;
  const X509_ALGOR* algorithm = nullptr;
  X509_REQ_get0_signature(req_.get(), &signature, &algorithm);
  const ASN1_OBJECT* oid = nullptr;
  if (algorithm != nullptr) X509_ALGOR_get0(&oid, nullptr, nullptr, algorithm);
  const int nid = oid == nullptr ? NID_undef : OBJ_obj2nid(oid);
  switch (nid) {
    case NID_ecdsa_with_SHA256:
    case NID_ecdsa_with_SHA384:
    case NID_ecdsa_with_SHA512:
    case NID_sha256WithRSAEncryption:
    case NID_sha384WithRSAEncryption:
    case NID_sha512WithRSAEncryption:
      break;
    default: {
      char text[80] = "unknown";  // the OID, dotted, if OpenSSL has no name
      if (oid != nullptr) OBJ_obj2txt(text, sizeof(text), oid, 1);
      return absl::InvalidArgumentError(absl::StrCat(
          "CSR signature algorithm ", nid != NID_undef ? OBJ_nid2ln(nid) : text,
          " is not accepted: the CA takes ECDSA or RSA (PKCS#1 v1.5) "
          "signatures over SHA-256, SHA-384 or SHA-512"));
    }
  }
  ERR_clear_error();
  if (X509_REQ_verify(req_.get(), public_key_.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CSR signature does not verify with its ",
        DescribeKey(public_key_.get()), " public key: ", ConsumeSslErrors()));
  }
  return absl::OkStatus();
}

std::vector<std::string> Csr::SansOfType(int type) const {
  std::vector<std::string> out;
  ExtensionStackPtr extensions(X509_REQ_get_extensions(req_.get()));
  ERR_clear_error();
  if (extensions == nullptr) return out;
  const int count = static_cast<int>(sk_X509_EXTENSION_num(extensions.get()));
  for (int i = 0; i < count; ++i) {
    X509_EXTENSION* ext = sk_X509_EXTENSION_value(extensions.get(), i);
    if (OBJ_obj2nid(X509_EXTENSION_get_object(ext)) != NID_subject_alt_name) {
      continue;
    }
    GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(X509V3_EXT_d2i(ext)));
    ERR_clear_error();
    std::vector<std::string> found = GeneralNameStrings(names.get(), type);
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

std::vector<std::string> Csr::UriSans() const { return SansOfType(GEN_URI); }

std::vector<std::string> Csr::DnsSans() const { return SansOfType(GEN_DNS); }

}  // namespace meshguard::crypto
