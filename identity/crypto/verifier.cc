#include "identity/crypto/verifier.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace meshguard::crypto {
namespace {

constexpr int kMinRsaBits = 2048;
constexpr int kMaxRsaBits = 8192;

// The most certificates a PEM chain may hold before we stop reading it.
constexpr int kMaxChainCertificates = kMaxIntermediates + 1;

std::string SslErrorString() {
  uint32_t err = ERR_get_error();
  ERR_clear_error();
  if (err == 0) return "unknown error";
  char buf[256] = {0};
  ERR_error_string_n(err, buf, sizeof(buf));
  return buf;
}

std::string MemBioContents(BIO* bio) {
  char* data = nullptr;  // BoringSSL's BIO_get_mem_data takes char**.
  long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, len) : std::string();
}

std::string NameString(const X509_NAME* name) {
  if (name == nullptr) return "(none)";
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    return "(unprintable)";
  }
  std::string out = MemBioContents(bio.get());
  return out.empty() ? "(empty)" : out;
}

std::string Subject(X509* x) {
  return x == nullptr ? "(unknown)" : NameString(X509_get_subject_name(x));
}

absl::Time ToTime(const ASN1_TIME* t) {
  Asn1TimePtr epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int secs = 0;
  if (t == nullptr || epoch == nullptr ||
      ASN1_TIME_diff(&days, &secs, epoch.get(), t) != 1) {
    return absl::InfinitePast();
  }
  return absl::FromUnixSeconds(int64_t{days} * 86400 + secs);
}

std::string FormatUtc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// A serial as a set key: the hex of its value (sign included), upper case
// (the libraries disagree on BN_bn2hex's case).
std::string SerialKey(const ASN1_INTEGER* serial) {
  BignumPtr bn(ASN1_INTEGER_to_BN(serial, nullptr));
  if (bn == nullptr) return "?";
  OpensslString hex(BN_bn2hex(bn.get()));
  return hex == nullptr ? "?" : absl::AsciiStrToUpper(hex.get());
}

// For messages: "0x" and SerialKey's spelling.
std::string SerialHex(X509* x) {
  return absl::StrCat("0x", SerialKey(X509_get_serialNumber(x)));
}

absl::Status Unauthenticated(absl::string_view step, absl::string_view what) {
  return absl::UnauthenticatedError(absl::StrCat(step, ": ", what));
}

// Reads every "CERTIFICATE" block of `pem`, at most `max` of them (more is an
// error, without parsing the rest). `what` names the input in errors.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(absl::string_view pem,
                                                       absl::string_view what,
                                                       size_t max) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
  std::vector<X509Ptr> certs;
  ERR_clear_error();
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (cert == nullptr) {
      uint32_t err = ERR_peek_last_error();
      if (!certs.empty() && ERR_GET_LIB(err) == ERR_LIB_PEM &&
          ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        break;
      }
      if (certs.empty() && ERR_GET_LIB(err) == ERR_LIB_PEM &&
          ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        return absl::InvalidArgumentError(
            absl::StrCat("parse: no PEM certificate in ", what));
      }
      return absl::InvalidArgumentError(absl::StrCat("parse: certificate ",
                                                     certs.size(), " of ", what,
                                                     ": ", SslErrorString()));
    }
    if (certs.size() == max) {
      return absl::UnauthenticatedError(absl::StrCat(
          "path: ", what, " has more than ", max, " certificates; at most ",
          kMaxIntermediates, " intermediates are accepted"));
    }
    certs.push_back(std::move(cert));
  }
  return certs;
}

// webpki-strength keys: RSA 2048..8192, EC P-256/P-384 named curves, Ed25519.
// Decided from the SubjectPublicKeyInfo itself so that both libraries judge
// the same bytes (BoringSSL cannot even decode explicit EC parameters).
absl::Status CheckKey(X509* x) {
  ASN1_OBJECT* alg_oid = nullptr;
  X509_ALGOR* alg = nullptr;
  X509_PUBKEY* spki = X509_get_X509_PUBKEY(x);
  if (spki == nullptr ||
      X509_PUBKEY_get0_param(&alg_oid, nullptr, nullptr, &alg, spki) != 1) {
    return absl::InvalidArgumentError("cannot read the public key");
  }
  int nid = OBJ_obj2nid(alg_oid);
  switch (nid) {
    case NID_rsaEncryption: {
      EvpPkeyPtr key(X509_get_pubkey(x));
      if (key == nullptr) {
        ERR_clear_error();
        return absl::InvalidArgumentError("cannot decode the RSA key");
      }
      int bits = EVP_PKEY_bits(key.get());
      if (bits < kMinRsaBits || bits > kMaxRsaBits) {
        return absl::InvalidArgumentError(
            absl::StrCat("RSA key of ", bits, " bits is outside ", kMinRsaBits,
                         "..", kMaxRsaBits));
      }
      return absl::OkStatus();
    }
    case NID_X9_62_id_ecPublicKey: {
      const ASN1_OBJECT* param_obj = nullptr;
      int param_type = 0;
      const void* param = nullptr;
      X509_ALGOR_get0(&param_obj, &param_type, &param, alg);
      if (param_type != V_ASN1_OBJECT) {
        return absl::InvalidArgumentError(
            "EC key has explicit curve parameters; only named curves are "
            "accepted");
      }
      int curve = OBJ_obj2nid(static_cast<const ASN1_OBJECT*>(param));
      if (curve != NID_X9_62_prime256v1 && curve != NID_secp384r1) {
        const char* name = OBJ_nid2sn(curve);
        return absl::InvalidArgumentError(
            absl::StrCat("EC curve ", name != nullptr ? name : "unknown",
                         " is not accepted (P-256 or P-384 only)"));
      }
      return absl::OkStatus();
    }
    case NID_ED25519:
      return absl::OkStatus();
    case NID_dsa:
      return absl::InvalidArgumentError("DSA keys are not accepted");
    default: {
      const char* name = OBJ_nid2sn(nid);
      return absl::InvalidArgumentError(
          absl::StrCat("key algorithm ", name != nullptr ? name : "unknown",
                       " is not accepted"));
    }
  }
}

absl::Status CheckSignatureAlgorithm(X509* x) {
  switch (X509_get_signature_nid(x)) {
    case NID_sha256WithRSAEncryption:
    case NID_sha384WithRSAEncryption:
    case NID_sha512WithRSAEncryption:
    case NID_rsassaPss:
    case NID_ecdsa_with_SHA256:
    case NID_ecdsa_with_SHA384:
    case NID_ecdsa_with_SHA512:
    case NID_ED25519:
      return absl::OkStatus();
    default: {
      const char* name = OBJ_nid2ln(X509_get_signature_nid(x));
      return absl::InvalidArgumentError(
          absl::StrCat("signature algorithm ",
                       name != nullptr ? name : "unknown", " is not accepted"));
    }
  }
}

// Rules for any certificate we are shown, used or not.
absl::Status CheckCertificate(X509* x, bool check_signature_algorithm) {
  if (X509_get_version(x) != 2) {
    return absl::InvalidArgumentError(absl::StrCat("certificate is version ",
                                                   X509_get_version(x) + 1,
                                                   "; only v3 is accepted"));
  }
  if ((X509_get_extension_flags(x) & EXFLAG_INVALID) != 0) {
    return absl::InvalidArgumentError("certificate has a malformed extension");
  }
  // RFC 5280 4.2.1.3. OpenSSL 3 refuses this in strict mode and BoringSSL
  // does not, so the rule is ours.
  uint32_t flags = X509_get_extension_flags(x);
  if ((flags & EXFLAG_KUSAGE) != 0 &&
      (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) != 0 &&
      (flags & EXFLAG_CA) == 0) {
    return absl::InvalidArgumentError(
        "keyUsage keyCertSign without basicConstraints cA=true");
  }
  for (int i = 0; i < X509_get_ext_count(x); ++i) {
    X509_EXTENSION* ext = X509_get_ext(x, i);
    if (X509_EXTENSION_get_critical(ext) && !X509_supported_extension(ext)) {
      char oid[80] = {0};
      OBJ_obj2txt(oid, sizeof(oid), X509_EXTENSION_get_object(ext), 1);
      return absl::InvalidArgumentError(
          absl::StrCat("unhandled critical extension ", oid));
    }
  }
  if (absl::Status s = CheckKey(x); !s.ok()) return s;
  if (check_signature_algorithm) return CheckSignatureAlgorithm(x);
  return absl::OkStatus();
}

// What is wrong with `x` as an issuer; OK if nothing. `role` starts the
// message ("issuer", "intermediate", "root").
absl::Status CheckIssuer(X509* x, absl::string_view role) {
  uint32_t flags = X509_get_extension_flags(x);
  if ((flags & EXFLAG_CA) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(role, " is not a CA (basicConstraints cA=true missing)"));
  }
  if ((flags & EXFLAG_KUSAGE) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(role, " has no keyUsage extension"));
  }
  if ((X509_get_key_usage(x) & KU_KEY_CERT_SIGN) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(role, " keyUsage lacks keyCertSign"));
  }
  return absl::OkStatus();
}

bool IsCrlError(int err) {
  switch (err) {
    case X509_V_ERR_UNABLE_TO_GET_CRL:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_HAS_EXPIRED:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_CERT_REVOKED:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR:
      return true;
    default:
      return false;
  }
}

// Our own words for the common errors, so that both libraries say the same.
std::string DescribeVerifyError(int err, X509* cert) {
  switch (err) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return absl::StrCat("certificate has expired (notAfter ",
                          FormatUtc(ToTime(X509_get0_notAfter(cert))), ")");
    case X509_V_ERR_CERT_NOT_YET_VALID:
      return absl::StrCat("certificate is not yet valid (notBefore ",
                          FormatUtc(ToTime(X509_get0_notBefore(cert))), ")");
    case X509_V_ERR_CERT_REVOKED:
      return absl::StrCat("certificate is revoked (serial ", SerialHex(cert),
                          ")");
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
      return absl::StrCat("no path to a trusted root (issuer ",
                          NameString(X509_get_issuer_name(cert)),
                          " is not in the trust bundle or the chain)");
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
      return "no path to a trusted root (self-signed certificate not in the "
             "trust bundle)";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
      return "certificate signature does not verify";
    case X509_V_ERR_INVALID_CA:
    case X509_V_ERR_KEYUSAGE_NO_CERTSIGN: {
      absl::Status why = CheckIssuer(cert, "issuer");
      return absl::StrCat("invalid CA certificate: ",
                          why.ok() ? "not usable as an issuer" : why.message());
    }
    case X509_V_ERR_PATH_LENGTH_EXCEEDED:
      return "basicConstraints pathLen constraint exceeded";
    case X509_V_ERR_PERMITTED_VIOLATION:
      return "name constraints violation (name outside the permitted subtree)";
    case X509_V_ERR_EXCLUDED_VIOLATION:
      return "name constraints violation (name in an excluded subtree)";
    case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
      return "unhandled critical extension";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG:
      return absl::StrCat("chain is longer than ", kMaxIntermediates,
                          " intermediates");
    case X509_V_ERR_CRL_HAS_EXPIRED:
      return "CRL has expired (nextUpdate passed)";
    case X509_V_ERR_CRL_NOT_YET_VALID:
      return "CRL is not yet valid (thisUpdate in the future)";
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
      return "CRL signature does not verify";
    default:
      return X509_verify_cert_error_string(err);
  }
}

// Tolerates exactly one error: an issuer without a CRL in the bundle (see the
// header). Everything else keeps OpenSSL's verdict.
int VerifyCallback(int ok, X509_STORE_CTX* ctx) {
  if (ok == 0 &&
      X509_STORE_CTX_get_error(ctx) == X509_V_ERR_UNABLE_TO_GET_CRL) {
    return 1;
  }
  return ok;
}

absl::Status CheckPath(X509* leaf, const std::vector<X509*>& intermediates,
                       const TrustBundle& bundle,
                       const VerifyOptions& options) {
  if (leaf == nullptr) {
    return absl::InvalidArgumentError("parse: no leaf certificate");
  }
  if (intermediates.size() > static_cast<size_t>(kMaxIntermediates)) {
    return Unauthenticated(
        "path", absl::StrCat("chain has ", intermediates.size(),
                             " intermediates; at most ", kMaxIntermediates,
                             " are accepted"));
  }
  // Our rules over everything the peer sent, before any signature work.
  for (size_t i = 0; i <= intermediates.size(); ++i) {
    X509* x = i == 0 ? leaf : intermediates[i - 1];
    if (x == nullptr) {
      return absl::InvalidArgumentError("parse: null intermediate certificate");
    }
    absl::Status s = CheckCertificate(x, /*check_signature_algorithm=*/true);
    // Every intermediate the peer sends must be able to issue: the libraries
    // differ on how such a certificate fails (BoringSSL skips it while
    // building the chain, OpenSSL refuses it as an invalid CA), so this rule
    // is ours.
    if (s.ok() && i > 0) s = CheckIssuer(x, "intermediate");
    if (!s.ok()) {
      return Unauthenticated(
          "path", absl::StrCat(s.message(), " for subject ", Subject(x)));
    }
  }

  X509StackPtr untrusted(sk_X509_new_null());
  if (untrusted == nullptr) return absl::ResourceExhaustedError("sk_X509_new");
  for (X509* x : intermediates) {
    if (sk_X509_push(untrusted.get(), x) == 0) {
      return absl::ResourceExhaustedError("sk_X509_push");
    }
    X509_up_ref(x);  // Owned by |untrusted| now.
  }
  X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (ctx == nullptr || X509_STORE_CTX_init(ctx.get(), bundle.store(), leaf,
                                            untrusted.get()) != 1) {
    return absl::ResourceExhaustedError(
        absl::StrCat("X509_STORE_CTX_init: ", SslErrorString()));
  }
  unsigned long flags = X509_V_FLAG_X509_STRICT;
  if (bundle.crl_count() > 0) {
    flags |= X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
  }
  X509_STORE_CTX_set_flags(ctx.get(), flags);
  X509_STORE_CTX_set_time(ctx.get(), 0, absl::ToTimeT(options.at));
  // BoringSSL counts depth one lower than OpenSSL; allow one more here and
  // let the chain-length check below carry the exact rule.
  X509_VERIFY_PARAM_set_depth(X509_STORE_CTX_get0_param(ctx.get()),
                              kMaxIntermediates + 1);
  X509_STORE_CTX_set_verify_cb(ctx.get(), VerifyCallback);

  if (X509_verify_cert(ctx.get()) != 1) {
    ERR_clear_error();
    int err = X509_STORE_CTX_get_error(ctx.get());
    X509* cert = X509_STORE_CTX_get_current_cert(ctx.get());
    if (cert == nullptr) cert = leaf;
    std::string what = absl::StrCat(DescribeVerifyError(err, cert),
                                    " for subject ", Subject(cert));
    return Unauthenticated(IsCrlError(err) ? "crl" : "path", what);
  }

  // A leaf any CRL of the bundle lists is revoked, whichever intermediate
  // signed that CRL. The CA lists every revoked serial in the CRL of its
  // current intermediate; after a signer switch (root rotation, a new
  // intermediate) no CRL of the previous intermediate is published, and
  // OpenSSL, finding none for such a leaf's issuer, would accept it, also
  // when it was revoked before the switch. Leaves' serials are 127 random
  // bits, so a CRL cannot name another issuer's leaf by accident.
  if (bundle.ListsSerial(leaf)) {
    return Unauthenticated(
        "crl", absl::StrCat("certificate is revoked (serial ", SerialHex(leaf),
                            ") for subject ", Subject(leaf)));
  }

  // Our rules over the chain the library built (it may differ from what the
  // peer sent; roots were checked at TrustBundle::Create).
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  size_t chain_len =
      chain == nullptr ? 0 : static_cast<size_t>(sk_X509_num(chain));
  if (chain_len < 2) {
    return Unauthenticated("path", "the built chain has no trusted root");
  }
  if (chain_len > static_cast<size_t>(kMaxIntermediates) + 2) {
    return Unauthenticated(
        "path", absl::StrCat("chain is longer than ", kMaxIntermediates,
                             " intermediates"));
  }
  for (size_t i = 1; i < chain_len; ++i) {
    X509* x = sk_X509_value(chain, i);
    if (absl::Status s = CheckIssuer(x, "issuer"); !s.ok()) {
      return Unauthenticated(
          "path", absl::StrCat(s.message(), " for subject ", Subject(x)));
    }
  }
  return absl::OkStatus();
}

// The URI SANs of `leaf`.
absl::StatusOr<std::vector<std::string>> UriSans(X509* leaf) {
  int critical = -1;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(leaf, NID_subject_alt_name, &critical, nullptr)));
  std::vector<std::string> uris;
  if (names == nullptr) {
    if (critical == -2) {
      return Unauthenticated("svid",
                             "leaf has several subjectAltName "
                             "extensions");
    }
    if (critical >= 0) {
      return Unauthenticated("svid", "leaf subjectAltName is malformed");
    }
    return uris;
  }
  for (size_t i = 0; i < static_cast<size_t>(sk_GENERAL_NAME_num(names.get()));
       ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name->type != GEN_URI) continue;
    const ASN1_STRING* uri = name->d.uniformResourceIdentifier;
    uris.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(uri)),
                      ASN1_STRING_length(uri));
  }
  return uris;
}

absl::StatusOr<SpiffeId> CheckSvid(X509* leaf, const TrustBundle& bundle,
                                   const VerifyOptions& options) {
  uint32_t flags = X509_get_extension_flags(leaf);
  if ((flags & EXFLAG_CA) != 0) {
    return Unauthenticated("svid", "leaf is a CA (basicConstraints cA=true)");
  }
  if ((flags & EXFLAG_KUSAGE) == 0) {
    return Unauthenticated("svid", "leaf has no keyUsage extension");
  }
  uint32_t ku = X509_get_key_usage(leaf);
  if ((ku & KU_KEY_CERT_SIGN) != 0) {
    return Unauthenticated("svid", "leaf keyUsage has keyCertSign");
  }
  if ((ku & KU_CRL_SIGN) != 0) {
    return Unauthenticated("svid", "leaf keyUsage has cRLSign");
  }
  if ((ku & KU_DIGITAL_SIGNATURE) == 0) {
    return Unauthenticated("svid", "leaf keyUsage lacks digitalSignature");
  }
  if ((flags & EXFLAG_XKUSAGE) != 0) {
    uint32_t xku = X509_get_extended_key_usage(leaf);
    bool server = (xku & XKU_SSL_SERVER) != 0;
    bool client = (xku & XKU_SSL_CLIENT) != 0;
    if (!server || !client) {
      return Unauthenticated(
          "svid", absl::StrCat("leaf extendedKeyUsage lacks ",
                               server ? "clientAuth" : "serverAuth",
                               "; an X.509-SVID has both or no EKU"));
    }
  }
  absl::StatusOr<std::vector<std::string>> uris = UriSans(leaf);
  if (!uris.ok()) return uris.status();
  if (uris->size() != 1) {
    return Unauthenticated(
        "svid", absl::StrCat("leaf has ", uris->size(),
                             " URI SANs; an X.509-SVID has exactly one"));
  }
  const std::string& uri = uris->front();
  if (!absl::StartsWithIgnoreCase(uri, "spiffe:")) {
    return Unauthenticated("svid",
                           absl::StrCat("URI SAN \"", uri.substr(0, 256),
                                        "\" is not a spiffe:// URI"));
  }
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse(uri);
  if (!id.ok()) return Unauthenticated("svid", id.status().message());
  const std::string& want = options.trust_domain.empty() ? bundle.trust_domain()
                                                         : options.trust_domain;
  if (!id->MemberOf(want)) {
    return Unauthenticated("svid",
                           absl::StrCat("trust domain \"", id->trust_domain(),
                                        "\" is not \"", want, "\""));
  }
  return *std::move(id);
}

}  // namespace

absl::StatusOr<std::shared_ptr<const TrustBundle>> TrustBundle::Create(
    absl::string_view trust_domain, const std::vector<std::string>& root_pems,
    const std::vector<std::string>& crl_pems) {
  if (absl::Status s = SpiffeId::ValidateTrustDomain(trust_domain); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("trust bundle: ", s.message()));
  }
  std::shared_ptr<TrustBundle> bundle(new TrustBundle());
  bundle->trust_domain_ = std::string(trust_domain);
  bundle->store_.reset(X509_STORE_new());
  if (bundle->store_ == nullptr) {
    return absl::ResourceExhaustedError("X509_STORE_new");
  }
  for (size_t p = 0; p < root_pems.size(); ++p) {
    absl::StatusOr<std::vector<X509Ptr>> certs = ParseCertificates(
        root_pems[p], absl::StrCat("root PEM ", p), /*max=*/1000);
    if (!certs.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("trust bundle: ", certs.status().message()));
    }
    for (X509Ptr& root : *certs) {
      const std::string which =
          absl::StrCat("trust bundle: root ", bundle->roots_.size(),
                       " (subject ", Subject(root.get()), "): ");
      if (absl::Status s =
              CheckCertificate(root.get(), /*check_signature_algorithm=*/false);
          !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(which, s.message()));
      }
      if (absl::Status s = CheckIssuer(root.get(), "root"); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(which, s.message()));
      }
      EvpPkeyPtr key(X509_get_pubkey(root.get()));
      if (X509_check_issued(root.get(), root.get()) != X509_V_OK ||
          key == nullptr || X509_verify(root.get(), key.get()) != 1) {
        ERR_clear_error();
        return absl::InvalidArgumentError(
            absl::StrCat(which, "not self-signed"));
      }
      bool duplicate = false;
      for (const X509Ptr& seen : bundle->roots_) {
        duplicate = duplicate || X509_cmp(seen.get(), root.get()) == 0;
      }
      if (duplicate) continue;
      if (X509_STORE_add_cert(bundle->store_.get(), root.get()) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat(which, "X509_STORE_add_cert: ", SslErrorString()));
      }
      bundle->earliest_root_expiry_ =
          std::min(bundle->earliest_root_expiry_,
                   ToTime(X509_get0_notAfter(root.get())));
      bundle->root_ptrs_.push_back(root.get());
      bundle->roots_.push_back(std::move(root));
    }
  }
  if (bundle->roots_.empty()) {
    return absl::InvalidArgumentError("trust bundle: no root certificate");
  }
  for (size_t p = 0; p < crl_pems.size(); ++p) {
    BioPtr bio(BIO_new_mem_buf(crl_pems[p].data(),
                               static_cast<int>(crl_pems[p].size())));
    if (bio == nullptr) return absl::ResourceExhaustedError("BIO_new_mem_buf");
    size_t in_this_pem = 0;
    ERR_clear_error();
    for (;;) {
      X509CrlPtr crl(
          PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
      if (crl == nullptr) {
        uint32_t err = ERR_peek_last_error();
        if (in_this_pem > 0 && ERR_GET_LIB(err) == ERR_LIB_PEM &&
            ERR_GET_REASON(err) == PEM_R_NO_START_LINE) {
          ERR_clear_error();
          break;
        }
        return absl::InvalidArgumentError(absl::StrCat(
            "trust bundle: CRL PEM ", p, ": parse: ",
            in_this_pem == 0 ? "no PEM X509 CRL; " : "after a good CRL; ",
            SslErrorString()));
      }
      if (X509_STORE_add_crl(bundle->store_.get(), crl.get()) != 1) {
        return absl::InvalidArgumentError(
            absl::StrCat("trust bundle: CRL PEM ", p,
                         ": X509_STORE_add_crl: ", SslErrorString()));
      }
      STACK_OF(X509_REVOKED)* revoked = X509_CRL_get_REVOKED(crl.get());
      for (size_t i = 0; revoked != nullptr &&
                         i < static_cast<size_t>(sk_X509_REVOKED_num(revoked));
           ++i) {
        bundle->listed_serials_.insert(SerialKey(
            X509_REVOKED_get0_serialNumber(sk_X509_REVOKED_value(revoked, i))));
      }
      bundle->crls_.push_back(std::move(crl));
      ++in_this_pem;
    }
  }
  return std::shared_ptr<const TrustBundle>(std::move(bundle));
}

bool TrustBundle::ListsSerial(X509* cert) const {
  return cert != nullptr && !listed_serials_.empty() &&
         listed_serials_.contains(SerialKey(X509_get_serialNumber(cert)));
}

absl::Status VerifyPath(X509* leaf,
                        const std::vector<X509*>& untrusted_intermediates,
                        const TrustBundle& bundle,
                        const VerifyOptions& options) {
  return CheckPath(leaf, untrusted_intermediates, bundle, options);
}

absl::StatusOr<SpiffeId> VerifyX509Svid(
    X509* leaf, const std::vector<X509*>& untrusted_intermediates,
    const TrustBundle& bundle, const VerifyOptions& options) {
  if (absl::Status s =
          CheckPath(leaf, untrusted_intermediates, bundle, options);
      !s.ok()) {
    return s;
  }
  if (!options.path_only) return CheckSvid(leaf, bundle, options);
  absl::StatusOr<std::vector<std::string>> uris = UriSans(leaf);
  if (uris.ok()) {
    for (const std::string& uri : *uris) {
      absl::StatusOr<SpiffeId> id = SpiffeId::Parse(uri);
      if (id.ok()) return id;
    }
  }
  return Unauthenticated("svid", "leaf has no SPIFFE ID URI SAN");
}

absl::StatusOr<SpiffeId> VerifyX509SvidPem(absl::string_view chain_pem,
                                           const TrustBundle& bundle,
                                           const VerifyOptions& options) {
  absl::StatusOr<std::vector<X509Ptr>> certs =
      ParseCertificates(chain_pem, "the chain", kMaxChainCertificates);
  if (!certs.ok()) return certs.status();
  std::vector<X509*> intermediates;
  for (size_t i = 1; i < certs->size(); ++i) {
    intermediates.push_back((*certs)[i].get());
  }
  return VerifyX509Svid(certs->front().get(), intermediates, bundle, options);
}

}  // namespace meshguard::crypto
