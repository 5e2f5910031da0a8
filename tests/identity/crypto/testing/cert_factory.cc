#include "tests/identity/crypto/testing/cert_factory.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshguard::crypto::testing {
namespace {

// The made-up critical extension: a private-enterprise arc nobody uses.
constexpr char kUnknownExtensionOid[] = "1.3.6.1.4.1.55555.1.1";

absl::Status SslError(absl::string_view what) {
  char buf[256] = {0};
  uint32_t err = ERR_get_error();
  ERR_error_string_n(err, buf, sizeof(buf));
  ERR_clear_error();
  return absl::InternalError(absl::StrCat("cert_factory: ", what, ": ", buf));
}

absl::StatusOr<EvpPkeyPtr> Keygen(int id, int ec_nid, int rsa_bits,
                                  bool explicit_params) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(id, nullptr));
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) != 1) {
    return SslError("EVP_PKEY_keygen_init");
  }
  if (ec_nid != NID_undef &&
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), ec_nid) != 1) {
    return SslError("EVP_PKEY_CTX_set_ec_paramgen_curve_nid");
  }
  if (explicit_params) {
#ifdef OPENSSL_IS_BORINGSSL
    return absl::UnimplementedError(
        "cert_factory: BoringSSL cannot encode explicit EC parameters");
#else
    if (EVP_PKEY_CTX_set_ec_param_enc(ctx.get(), OPENSSL_EC_EXPLICIT_CURVE) !=
        1) {
      return SslError("EVP_PKEY_CTX_set_ec_param_enc");
    }
#endif
  }
  if (rsa_bits != 0 &&
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), rsa_bits) != 1) {
    return SslError("EVP_PKEY_CTX_set_rsa_keygen_bits");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen(ctx.get(), &raw) != 1) return SslError("EVP_PKEY_keygen");
  return EvpPkeyPtr(raw);
}

absl::StatusOr<EvpPkeyPtr> DsaKeygen(int bits) {
#ifdef OPENSSL_IS_BORINGSSL
  return absl::UnimplementedError("cert_factory: BoringSSL has no DSA keygen");
#else
  EvpPkeyCtxPtr pctx(EVP_PKEY_CTX_new_id(EVP_PKEY_DSA, nullptr));
  if (pctx == nullptr || EVP_PKEY_paramgen_init(pctx.get()) != 1 ||
      EVP_PKEY_CTX_set_dsa_paramgen_bits(pctx.get(), bits) != 1) {
    return SslError("DSA paramgen init");
  }
  EVP_PKEY* raw_params = nullptr;
  if (EVP_PKEY_paramgen(pctx.get(), &raw_params) != 1) {
    return SslError("EVP_PKEY_paramgen");
  }
  EvpPkeyPtr params(raw_params);
  EvpPkeyCtxPtr kctx(EVP_PKEY_CTX_new(params.get(), nullptr));
  if (kctx == nullptr || EVP_PKEY_keygen_init(kctx.get()) != 1) {
    return SslError("DSA keygen init");
  }
  EVP_PKEY* raw = nullptr;
  if (EVP_PKEY_keygen(kctx.get(), &raw) != 1) return SslError("DSA keygen");
  return EvpPkeyPtr(raw);
#endif
}

absl::StatusOr<Asn1TimePtr> ToAsn1Time(absl::Time t) {
  Asn1TimePtr out(ASN1_TIME_set(nullptr, absl::ToTimeT(t)));
  if (out == nullptr) return SslError("ASN1_TIME_set");
  return out;
}

absl::StatusOr<Asn1IntegerPtr> ToAsn1Integer(uint64_t v) {
  Asn1IntegerPtr out(ASN1_INTEGER_new());
  if (out == nullptr || ASN1_INTEGER_set_uint64(out.get(), v) != 1) {
    return SslError("ASN1_INTEGER_set_uint64");
  }
  return out;
}

// Digest to sign with: none for Ed25519 (it hashes internally).
const EVP_MD* SigningDigest(EVP_PKEY* key) {
  return EVP_PKEY_id(key) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
}

absl::Status AddConfExtension(X509* x, X509V3_CTX* v3, int nid,
                              const std::string& value) {
  X509ExtensionPtr ext(
      X509V3_EXT_nconf_nid(nullptr, v3, nid, const_cast<char*>(value.c_str())));
  if (ext == nullptr) {
    return SslError(absl::StrCat("extension ", OBJ_nid2sn(nid), "=", value));
  }
  if (X509_add_ext(x, ext.get(), -1) != 1) return SslError("X509_add_ext");
  return absl::OkStatus();
}

absl::Status AddSans(X509* x, const CertSpec& spec) {
  if (spec.uri_sans.empty() && spec.dns_sans.empty() && spec.ip_sans.empty()) {
    return absl::OkStatus();
  }
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return SslError("sk_GENERAL_NAME_new_null");
  auto add = [&](int type, const std::string& value) -> absl::Status {
    GeneralNamePtr name(GENERAL_NAME_new());
    if (name == nullptr) return SslError("GENERAL_NAME_new");
    // Owned by |name| from here on.
    name->type = type;
    name->d.ia5 = ASN1_IA5STRING_new();
    if (name->d.ia5 == nullptr ||
        ASN1_STRING_set(name->d.ia5, value.data(),
                        static_cast<int>(value.size())) != 1) {
      return SslError("ASN1_STRING_set");
    }
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) {
      return SslError("sk_GENERAL_NAME_push");
    }
    name.release();  // Now owned by |names|.
    return absl::OkStatus();
  };
  for (const std::string& uri : spec.uri_sans) {
    if (absl::Status s = add(GEN_URI, uri); !s.ok()) return s;
  }
  for (const std::string& dns : spec.dns_sans) {
    if (absl::Status s = add(GEN_DNS, dns); !s.ok()) return s;
  }
  for (const std::string& ip : spec.ip_sans) {
    GeneralNamePtr name(GENERAL_NAME_new());
    if (name == nullptr) return SslError("GENERAL_NAME_new");
    name->type = GEN_IPADD;
    name->d.ip = a2i_IPADDRESS(ip.c_str());
    if (name->d.ip == nullptr) return SslError(absl::StrCat("IP SAN ", ip));
    if (sk_GENERAL_NAME_push(names.get(), name.get()) == 0) {
      return SslError("sk_GENERAL_NAME_push");
    }
    name.release();
  }
  if (X509_add1_ext_i2d(x, NID_subject_alt_name, names.get(), 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return SslError("subjectAltName");
  }
  return absl::OkStatus();
}

absl::Status AddExtensions(X509* x, const CertSpec& spec, X509* issuer_cert) {
  if (spec.basic_constraints != BasicConstraints::kAbsent) {
    BasicConstraintsPtr bc(BASIC_CONSTRAINTS_new());
    if (bc == nullptr) return SslError("BASIC_CONSTRAINTS_new");
    bc->ca = spec.basic_constraints == BasicConstraints::kCaTrue ? 0xff : 0;
    if (spec.path_len.has_value()) {
      absl::StatusOr<Asn1IntegerPtr> len = ToAsn1Integer(*spec.path_len);
      if (!len.ok()) return len.status();
      bc->pathlen = len->release();  // Now owned by |bc|.
    }
    if (X509_add1_ext_i2d(x, NID_basic_constraints, bc.get(),
                          spec.basic_constraints_critical ? 1 : 0,
                          X509V3_ADD_DEFAULT) != 1) {
      return SslError("basicConstraints");
    }
  }
  if (spec.key_usage.has_value()) {
    Asn1BitStringPtr bits(ASN1_BIT_STRING_new());
    if (bits == nullptr) return SslError("ASN1_BIT_STRING_new");
    for (int bit = 0; bit < 9; ++bit) {
      if ((*spec.key_usage & (1u << bit)) != 0 &&
          ASN1_BIT_STRING_set_bit(bits.get(), bit, 1) != 1) {
        return SslError("ASN1_BIT_STRING_set_bit");
      }
    }
    if (X509_add1_ext_i2d(x, NID_key_usage, bits.get(),
                          spec.key_usage_critical ? 1 : 0,
                          X509V3_ADD_DEFAULT) != 1) {
      return SslError("keyUsage");
    }
  }
  if (!spec.ext_key_usage.empty()) {
    if (absl::Status s =
            AddConfExtension(x, nullptr, NID_ext_key_usage,
                             absl::StrJoin(spec.ext_key_usage, ","));
        !s.ok()) {
      return s;
    }
  }
  if (absl::Status s = AddSans(x, spec); !s.ok()) return s;
  if (!spec.permitted_uris.empty() || !spec.permitted_dns.empty()) {
    std::vector<std::string> parts = {"critical"};
    for (const std::string& uri : spec.permitted_uris) {
      parts.push_back(absl::StrCat("permitted;URI:", uri));
    }
    for (const std::string& dns : spec.permitted_dns) {
      parts.push_back(absl::StrCat("permitted;DNS:", dns));
    }
    if (absl::Status s = AddConfExtension(x, nullptr, NID_name_constraints,
                                          absl::StrJoin(parts, ","));
        !s.ok()) {
      return s;
    }
  }
  if (spec.key_identifiers) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (X509_pubkey_digest(x, EVP_sha1(), md, &md_len) != 1) {
      return SslError("X509_pubkey_digest");
    }
    Asn1OctetStringPtr skid(ASN1_OCTET_STRING_new());
    if (skid == nullptr ||
        ASN1_OCTET_STRING_set(skid.get(), md, static_cast<int>(md_len)) != 1 ||
        X509_add1_ext_i2d(x, NID_subject_key_identifier, skid.get(), 0,
                          X509V3_ADD_DEFAULT) != 1) {
      return SslError("subjectKeyIdentifier");
    }
    // An issuer without a subjectKeyIdentifier (a v1 one) gets no AKID.
    if (issuer_cert != x &&
        X509_get_ext_by_NID(issuer_cert, NID_subject_key_identifier, -1) >= 0) {
      X509V3_CTX v3;
      X509V3_set_ctx(&v3, issuer_cert, x, nullptr, nullptr, 0);
      if (absl::Status s =
              AddConfExtension(x, &v3, NID_authority_key_identifier, "keyid");
          !s.ok()) {
        return s;
      }
    }
  }
  if (spec.unknown_critical_extension) {
    Asn1ObjectPtr oid(OBJ_txt2obj(kUnknownExtensionOid, 1));
    static const unsigned char kDerNull[] = {0x05, 0x00};
    Asn1OctetStringPtr value(ASN1_OCTET_STRING_new());
    if (oid == nullptr || value == nullptr ||
        ASN1_OCTET_STRING_set(value.get(), kDerNull, sizeof(kDerNull)) != 1) {
      return SslError("unknown extension value");
    }
    X509ExtensionPtr ext(
        X509_EXTENSION_create_by_OBJ(nullptr, oid.get(), 1, value.get()));
    if (ext == nullptr || X509_add_ext(x, ext.get(), -1) != 1) {
      return SslError("unknown extension");
    }
  }
  return absl::OkStatus();
}

std::string ToDer(X509* x) {
  unsigned char* raw = nullptr;
  int len = i2d_X509(x, &raw);
  OpensslBytes der(raw);
  if (len <= 0) return "";
  return std::string(reinterpret_cast<char*>(der.get()), len);
}

std::string MemBioContents(BIO* bio) {
  char* data = nullptr;  // BoringSSL's BIO_get_mem_data takes char**.
  long len = BIO_get_mem_data(bio, &data);
  return len > 0 ? std::string(data, len) : std::string();
}

}  // namespace

absl::Time FixtureNow() { return absl::FromUnixSeconds(1767225600); }

absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyType type) {
  switch (type) {
    case KeyType::kP256:
      return Keygen(EVP_PKEY_EC, NID_X9_62_prime256v1, 0, false);
    case KeyType::kP384:
      return Keygen(EVP_PKEY_EC, NID_secp384r1, 0, false);
    case KeyType::kP521:
      return Keygen(EVP_PKEY_EC, NID_secp521r1, 0, false);
    case KeyType::kP256ExplicitParams:
      return Keygen(EVP_PKEY_EC, NID_X9_62_prime256v1, 0, true);
    case KeyType::kRsa1024:
      return Keygen(EVP_PKEY_RSA, NID_undef, 1024, false);
    case KeyType::kRsa2048:
      return Keygen(EVP_PKEY_RSA, NID_undef, 2048, false);
    case KeyType::kEd25519:
      return Keygen(EVP_PKEY_ED25519, NID_undef, 0, false);
    case KeyType::kDsa2048:
      return DsaKeygen(2048);
  }
  return absl::InvalidArgumentError("cert_factory: unknown key type");
}

TestCert::TestCert(X509Ptr cert, EvpPkeyPtr key)
    : cert_(std::move(cert)), key_(std::move(key)) {}

TestCert::TestCert(const TestCert& other) { *this = other; }

TestCert& TestCert::operator=(const TestCert& other) {
  if (this == &other) return *this;
  cert_ = other.CertRef();
  key_.reset();
  if (other.key_ != nullptr) {
    EVP_PKEY_up_ref(other.key_.get());
    key_.reset(other.key_.get());
  }
  return *this;
}

X509Ptr TestCert::CertRef() const {
  if (cert_ == nullptr) return nullptr;
  X509_up_ref(cert_.get());
  return X509Ptr(cert_.get());
}

std::string TestCert::Pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509(bio.get(), cert_.get()) != 1) {
    return "";
  }
  return MemBioContents(bio.get());
}

std::string TestCert::Der() const { return ToDer(cert_.get()); }

absl::StatusOr<TestCert> MakeCert(const CertSpec& spec) {
  EvpPkeyPtr key;
  if (spec.key != nullptr) {
    EVP_PKEY_up_ref(spec.key);
    key.reset(spec.key);
  } else {
    absl::StatusOr<EvpPkeyPtr> generated = GenerateKey(spec.key_type);
    if (!generated.ok()) return generated.status();
    key = *std::move(generated);
  }

  X509Ptr x(X509_new());
  if (x == nullptr) return SslError("X509_new");
  if (X509_set_version(x.get(), spec.version == 1 ? 0 : 2) != 1) {
    return SslError("X509_set_version");
  }
  absl::StatusOr<Asn1IntegerPtr> serial = ToAsn1Integer(spec.serial);
  if (!serial.ok()) return serial.status();
  if (X509_set_serialNumber(x.get(), serial->get()) != 1) {
    return SslError("X509_set_serialNumber");
  }
  X509NamePtr subject(X509_NAME_new());
  if (subject == nullptr ||
      X509_NAME_add_entry_by_txt(
          subject.get(), "CN", MBSTRING_ASC,
          reinterpret_cast<const unsigned char*>(spec.subject_cn.c_str()), -1,
          -1, 0) != 1 ||
      X509_set_subject_name(x.get(), subject.get()) != 1) {
    return SslError("subject name");
  }
  X509* issuer_cert = spec.issuer != nullptr ? spec.issuer->cert() : x.get();
  EVP_PKEY* signing_key =
      spec.issuer != nullptr ? spec.issuer->key() : key.get();
  if (X509_set_issuer_name(x.get(), X509_get_subject_name(issuer_cert)) != 1) {
    return SslError("issuer name");
  }
  absl::StatusOr<Asn1TimePtr> not_before = ToAsn1Time(spec.not_before);
  if (!not_before.ok()) return not_before.status();
  absl::StatusOr<Asn1TimePtr> not_after = ToAsn1Time(spec.not_after);
  if (!not_after.ok()) return not_after.status();
  if (X509_set1_notBefore(x.get(), not_before->get()) != 1 ||
      X509_set1_notAfter(x.get(), not_after->get()) != 1) {
    return SslError("validity");
  }
  if (X509_set_pubkey(x.get(), key.get()) != 1) {
    return SslError("X509_set_pubkey");
  }
  if (spec.version != 1) {
    if (absl::Status s = AddExtensions(x.get(), spec, issuer_cert); !s.ok()) {
      return s;
    }
  }
  if (X509_sign(x.get(), signing_key, SigningDigest(signing_key)) <= 0) {
    return SslError("X509_sign");
  }
  if (spec.tamper_signature) {
    std::string der = ToDer(x.get());
    if (der.empty()) return SslError("i2d_X509");
    der.back() ^= 0x01;  // The signature's last byte.
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    X509Ptr tampered(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    if (tampered == nullptr) return SslError("d2i_X509 (tampered)");
    x = std::move(tampered);
  }
  return TestCert(std::move(x), std::move(key));
}

CertSpec RootSpec(std::string cn) {
  CertSpec spec;
  spec.subject_cn = std::move(cn);
  spec.basic_constraints = BasicConstraints::kCaTrue;
  spec.key_usage = kKeyCertSign | kCrlSign;
  spec.ext_key_usage.clear();
  return spec;
}

CertSpec IntermediateSpec(std::string cn, const TestCert& issuer) {
  CertSpec spec = RootSpec(std::move(cn));
  spec.issuer = &issuer;
  return spec;
}

CertSpec LeafSpec(std::string spiffe_id, const TestCert& issuer) {
  CertSpec spec;
  spec.subject_cn = "workload";
  spec.issuer = &issuer;
  spec.uri_sans = {std::move(spiffe_id)};
  return spec;
}

absl::StatusOr<X509CrlPtr> MakeCrl(const CrlSpec& spec) {
  if (spec.issuer == nullptr) {
    return absl::InvalidArgumentError("cert_factory: CRL needs an issuer");
  }
  X509CrlPtr crl(X509_CRL_new());
  if (crl == nullptr || X509_CRL_set_version(crl.get(), 1) != 1 ||
      X509_CRL_set_issuer_name(
          crl.get(), X509_get_subject_name(spec.issuer->cert())) != 1) {
    return SslError("X509_CRL header");
  }
  absl::StatusOr<Asn1TimePtr> this_update = ToAsn1Time(spec.this_update);
  if (!this_update.ok()) return this_update.status();
  absl::StatusOr<Asn1TimePtr> next_update = ToAsn1Time(spec.next_update);
  if (!next_update.ok()) return next_update.status();
  if (X509_CRL_set1_lastUpdate(crl.get(), this_update->get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update->get()) != 1) {
    return SslError("CRL validity");
  }
  for (uint64_t serial : spec.revoked_serials) {
    X509RevokedPtr revoked(X509_REVOKED_new());
    absl::StatusOr<Asn1IntegerPtr> number = ToAsn1Integer(serial);
    if (!number.ok()) return number.status();
    if (revoked == nullptr ||
        X509_REVOKED_set_serialNumber(revoked.get(), number->get()) != 1 ||
        X509_REVOKED_set_revocationDate(revoked.get(), this_update->get()) !=
            1) {
      return SslError("X509_REVOKED");
    }
    if (X509_CRL_add0_revoked(crl.get(), revoked.get()) != 1) {
      return SslError("X509_CRL_add0_revoked");
    }
    revoked.release();  // Now owned by |crl|.
  }
  if (X509_CRL_sort(crl.get()) != 1) return SslError("X509_CRL_sort");
  EVP_PKEY* key = spec.issuer->key();
  if (X509_CRL_sign(crl.get(), key, SigningDigest(key)) <= 0) {
    return SslError("X509_CRL_sign");
  }
  if (spec.tamper_signature) {
    unsigned char* raw = nullptr;
    int len = i2d_X509_CRL(crl.get(), &raw);
    OpensslBytes der(raw);
    if (len <= 0) return SslError("i2d_X509_CRL");
    der.get()[len - 1] ^= 0x01;
    const unsigned char* p = der.get();
    X509CrlPtr tampered(d2i_X509_CRL(nullptr, &p, len));
    if (tampered == nullptr) return SslError("d2i_X509_CRL (tampered)");
    crl = std::move(tampered);
  }
  return crl;
}

absl::StatusOr<std::string> MakeCrlPem(const CrlSpec& spec) {
  absl::StatusOr<X509CrlPtr> crl = MakeCrl(spec);
  if (!crl.ok()) return crl.status();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_X509_CRL(bio.get(), crl->get()) != 1) {
    return SslError("PEM_write_bio_X509_CRL");
  }
  return MemBioContents(bio.get());
}

std::string ChainPem(const std::vector<const TestCert*>& certs) {
  std::string out;
  for (const TestCert* cert : certs) absl::StrAppend(&out, cert->Pem());
  return out;
}

}  // namespace meshguard::crypto::testing
