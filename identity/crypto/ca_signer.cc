#include "identity/crypto/ca_signer.h"

#include <arpa/inet.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/opensslv.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <algorithm>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/keys.h"

namespace meshguard::crypto {
namespace {

// keyUsage bit numbers (RFC 5280, 4.2.1.3).
constexpr int kDigitalSignature = 0;
constexpr int kKeyEncipherment = 2;
constexpr int kKeyCertSign = 5;
constexpr int kCrlSign = 6;

// X.520 ub-common-name.
constexpr size_t kMaxCommonName = 64;

// A random positive serial of at most 128 bits (RFC 5280 allows 20 octets;
// 16 random octets with the top bit cleared keep the DER at 16 octets).
absl::StatusOr<Asn1IntegerPtr> RandomSerial() {
  unsigned char bytes[16];
  bool zero = true;
  while (zero) {
    if (RAND_bytes(bytes, sizeof(bytes)) != 1) return SslError("RAND_bytes");
    bytes[0] &= 0x7f;
    zero = std::all_of(std::begin(bytes), std::end(bytes),
                       [](unsigned char b) { return b == 0; });
  }
  BignumPtr bn(BN_bin2bn(bytes, sizeof(bytes), nullptr));
  if (bn == nullptr) return SslError("BN_bin2bn");
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (serial == nullptr) return SslError("BN_to_ASN1_INTEGER");
  return serial;
}

absl::Status SetValidity(X509* cert, absl::Time not_before,
                         absl::Time not_after) {
  Asn1TimePtr nb = AbslToAsn1Time(not_before);
  Asn1TimePtr na = AbslToAsn1Time(not_after);
  if (nb == nullptr || na == nullptr || !X509_set1_notBefore(cert, nb.get()) ||
      !X509_set1_notAfter(cert, na.get())) {
    return SslError(absl::StrCat("cannot set validity ",
                                 absl::FormatTime(not_before), " to ",
                                 absl::FormatTime(not_after)));
  }
  return absl::OkStatus();
}

absl::StatusOr<X509NamePtr> CaName(absl::string_view role,
                                   absl::string_view trust_domain) {
  std::string cn = absl::StrCat("meshguard ", role, " ", trust_domain);
  if (cn.size() > kMaxCommonName) cn.resize(kMaxCommonName);
  X509NamePtr name(X509_NAME_new());
  if (name == nullptr ||
      !X509_NAME_add_entry_by_NID(
          name.get(), NID_organizationName, MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>("meshguard"), -1, -1, 0) ||
      !X509_NAME_add_entry_by_NID(
          name.get(), NID_commonName, MBSTRING_UTF8,
          reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0)) {
    return SslError(absl::StrCat("cannot build name \"", cn, "\""));
  }
  return name;
}

absl::Status AddExtension(X509* cert, int nid, void* value, bool critical) {
  if (X509_add1_ext_i2d(cert, nid, value, critical ? 1 : 0,
                        X509V3_ADD_DEFAULT) != 1) {
    return SslError(
        absl::StrCat("cannot add the ", OBJ_nid2sn(nid), " extension"));
  }
  return absl::OkStatus();
}

absl::Status AddBasicConstraints(X509* cert, bool ca, int path_len) {
  BasicConstraintsPtr bc(BASIC_CONSTRAINTS_new());
  if (bc == nullptr) return SslError("BASIC_CONSTRAINTS_new");
  bc->ca = ca ? 0xff : 0;
  if (path_len >= 0) {
    bc->pathlen = ASN1_INTEGER_new();  // Owned by `bc` from here.
    if (bc->pathlen == nullptr || !ASN1_INTEGER_set(bc->pathlen, path_len)) {
      return SslError("cannot set pathLenConstraint");
    }
  }
  return AddExtension(cert, NID_basic_constraints, bc.get(), true);
}

absl::Status AddKeyUsage(X509* cert, std::initializer_list<int> bits) {
  Asn1BitStringPtr usage(ASN1_BIT_STRING_new());
  if (usage == nullptr) return SslError("ASN1_BIT_STRING_new");
  for (int bit : bits) {
    if (!ASN1_BIT_STRING_set_bit(usage.get(), bit, 1)) {
      return SslError("ASN1_BIT_STRING_set_bit");
    }
  }
  return AddExtension(cert, NID_key_usage, usage.get(), true);
}

absl::Status AddServerAndClientAuth(X509* cert) {
  ExtKeyUsagePtr eku(sk_ASN1_OBJECT_new_null());
  if (eku == nullptr) return SslError("sk_ASN1_OBJECT_new_null");
  for (int nid : {NID_server_auth, NID_client_auth}) {
    // Built-in objects are static; freeing them is a no-op, so the stack may
    // own them like any other.
    Asn1ObjectPtr obj(OBJ_nid2obj(nid));
    if (obj == nullptr || !sk_ASN1_OBJECT_push(eku.get(), obj.get())) {
      return SslError("cannot build extendedKeyUsage");
    }
    obj.release();  // Now owned by `eku`.
  }
  return AddExtension(cert, NID_ext_key_usage, eku.get(), false);
}

// SHA-1 of the subjectPublicKey BIT STRING (RFC 5280, 4.2.1.2, method 1).
absl::StatusOr<std::string> ComputeKeyId(X509* cert) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!X509_pubkey_digest(cert, EVP_sha1(), md, &len)) {
    return SslError("cannot hash the public key for the key identifier");
  }
  return std::string(reinterpret_cast<char*>(md), len);
}

// The certificate's subjectKeyIdentifier, or one computed from its key.
absl::StatusOr<std::string> SubjectKeyIdOf(X509* cert) {
  Asn1OctetStringPtr ski(static_cast<ASN1_OCTET_STRING*>(
      X509_get_ext_d2i(cert, NID_subject_key_identifier, nullptr, nullptr)));
  ERR_clear_error();
  if (ski != nullptr && ASN1_STRING_length(ski.get()) > 0) {
    return std::string(
        reinterpret_cast<const char*>(ASN1_STRING_get0_data(ski.get())),
        static_cast<size_t>(ASN1_STRING_length(ski.get())));
  }
  return ComputeKeyId(cert);
}

absl::Status AddSubjectKeyId(X509* cert, const std::string& key_id) {
  Asn1OctetStringPtr ski(ASN1_OCTET_STRING_new());
  if (ski == nullptr ||
      !ASN1_OCTET_STRING_set(
          ski.get(), reinterpret_cast<const unsigned char*>(key_id.data()),
          static_cast<int>(key_id.size()))) {
    return SslError("cannot build subjectKeyIdentifier");
  }
  return AddExtension(cert, NID_subject_key_identifier, ski.get(), false);
}

absl::StatusOr<AuthorityKeyIdPtr> MakeAuthorityKeyId(
    const std::string& key_id) {
  AuthorityKeyIdPtr aki(AUTHORITY_KEYID_new());
  if (aki == nullptr) return SslError("AUTHORITY_KEYID_new");
  aki->keyid = ASN1_OCTET_STRING_new();  // Owned by `aki` from here.
  if (aki->keyid == nullptr ||
      !ASN1_OCTET_STRING_set(
          aki->keyid, reinterpret_cast<const unsigned char*>(key_id.data()),
          static_cast<int>(key_id.size()))) {
    return SslError("cannot build authorityKeyIdentifier");
  }
  return aki;
}

absl::Status AddAuthorityKeyId(X509* cert, const std::string& key_id) {
  absl::StatusOr<AuthorityKeyIdPtr> aki = MakeAuthorityKeyId(key_id);
  if (!aki.ok()) return aki.status();
  return AddExtension(cert, NID_authority_key_identifier, aki->get(), false);
}

absl::Status AddSubjectAltNames(X509* cert, GENERAL_NAMES* names,
                                bool critical) {
  return AddExtension(cert, NID_subject_alt_name, names, critical);
}

// Puts `key` into a leaf's subjectPublicKeyInfo. An EC key goes in through
// its legacy EC_KEY, for two reasons:
// - OpenSSL 3's X509_set_pubkey encodes a provider key with an OSSL_ENCODER
//   and decodes the DER again with an OSSL_DECODER, both looked up among the
//   providers afresh on every call (that round trip was 40 % of issuing a
//   leaf); the legacy EC_KEY, which OpenSSL derives once per key and caches
//   (CheckIssuableKey has already asked for it, and a CSR's key is one
//   already), is encoded directly.
// - The point is always written uncompressed. A key decoded from a
//   compressed point (a CSR may carry one) keeps that form and would be
//   written back the same way, and RFC 5480 requires verifiers to read only
//   the uncompressed form (Go's crypto/x509 reads no other). Such a key is
//   copied rather than changed under its owner.
// The certificate then holds an EVP_PKEY of the same key, so
// X509_get0_pubkey works as before.
absl::Status SetPublicKey(X509* cert, EVP_PKEY* key, absl::string_view id) {
  if (EVP_PKEY_id(key) == EVP_PKEY_EC) {
    EcKeyPtr ec(EVP_PKEY_get1_EC_KEY(key));
    if (ec != nullptr &&
        EC_KEY_get_conv_form(ec.get()) != POINT_CONVERSION_UNCOMPRESSED) {
      ec.reset(EC_KEY_dup(ec.get()));
      if (ec != nullptr) {
        EC_KEY_set_conv_form(ec.get(), POINT_CONVERSION_UNCOMPRESSED);
      }
    }
    EvpPkeyPtr legacy(EVP_PKEY_new());
    if (ec == nullptr || legacy == nullptr ||
        !EVP_PKEY_assign_EC_KEY(legacy.get(), ec.get())) {
      return SslError(absl::StrCat("cannot take the EC key for ", id));
    }
    ec.release();  // Now owned by `legacy`.
    if (!X509_set_pubkey(cert, legacy.get())) {
      return SslError(absl::StrCat("cannot set the public key for ", id));
    }
    return absl::OkStatus();
  }
  if (!X509_set_pubkey(cert, key)) {
    return SslError(absl::StrCat("cannot set the public key for ", id));
  }
  return absl::OkStatus();
}

absl::Status Sign(X509* cert, EVP_PKEY* key, absl::string_view what) {
  if (X509_sign(cert, key, EVP_sha256()) <= 0) {
    return SslError(
        absl::StrCat("cannot sign ", what, " with ", DescribeKey(key), " key"));
  }
  return absl::OkStatus();
}

// The trust domain of a signing certificate's URI SAN "spiffe://<td>", or "".
std::string TrustDomainOf(X509* cert) {
  constexpr absl::string_view kScheme = "spiffe://";
  for (const std::string& uri : UriSans(cert)) {
    if (!absl::StartsWith(uri, kScheme)) continue;
    absl::string_view td = absl::string_view(uri).substr(kScheme.size());
    if (SpiffeId::ValidateTrustDomain(td).ok()) return std::string(td);
  }
  return "";
}

absl::Status CheckSignerPair(X509* cert, EVP_PKEY* key,
                             absl::string_view what) {
  if (cert == nullptr || key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " certificate or key is null"));
  }
  ERR_clear_error();
  if (X509_check_private_key(cert, key) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat(what, " key (", DescribeKey(key), ") does not match the ",
                     what, " certificate (serial ", SerialHex(cert), ")"));
  }
  if (!IsCa(cert)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " certificate (serial ", SerialHex(cert),
                     ") is not a CA: basicConstraints cA is not TRUE"));
  }
  Asn1BitStringPtr usage(static_cast<ASN1_BIT_STRING*>(
      X509_get_ext_d2i(cert, NID_key_usage, nullptr, nullptr)));
  ERR_clear_error();
  if (usage == nullptr || !ASN1_BIT_STRING_get_bit(usage.get(), kKeyCertSign)) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " certificate (serial ", SerialHex(cert),
                     ") lacks keyUsage keyCertSign"));
  }
  return absl::OkStatus();
}

// Builds and signs a CA certificate. `issuer_cert` null means self-signed.
absl::StatusOr<X509Ptr> CreateCaCertificate(
    EVP_PKEY* subject_key, X509* issuer_cert, EVP_PKEY* issuer_key,
    absl::string_view trust_domain, absl::Duration ttl, absl::Time now,
    absl::string_view role, int path_len) {
  if (absl::Status s = SpiffeId::ValidateTrustDomain(trust_domain); !s.ok()) {
    return s;
  }
  if (subject_key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(role, " key is null"));
  }
  if (absl::Status s = CheckIssuableKey(subject_key); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(role, " key refused: ", s.message()));
  }
  if (ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat(role, " certificate TTL must be positive, got ",
                     absl::FormatDuration(ttl)));
  }
  absl::Time not_before = now - kClockSkewAllowance;
  absl::Time not_after = now + ttl;
  if (issuer_cert != nullptr) {
    not_before = std::max(not_before, NotBefore(issuer_cert));
    not_after = std::min(not_after, NotAfter(issuer_cert));
    if (not_after <= now) {
      return absl::FailedPreconditionError(absl::StrCat(
          "issuer certificate (serial ", SerialHex(issuer_cert),
          ") expired at ", absl::FormatTime(NotAfter(issuer_cert))));
    }
  }
  ERR_clear_error();
  X509Ptr cert(X509_new());
  if (cert == nullptr) return SslError("X509_new");
  absl::StatusOr<Asn1IntegerPtr> serial = RandomSerial();
  if (!serial.ok()) return serial.status();
  absl::StatusOr<X509NamePtr> subject = CaName(role, trust_domain);
  if (!subject.ok()) return subject.status();
  X509_NAME* issuer_name = issuer_cert == nullptr
                               ? subject->get()
                               : X509_get_subject_name(issuer_cert);
  if (!X509_set_version(cert.get(), 2) ||
      !X509_set_serialNumber(cert.get(), serial->get()) ||
      !X509_set_subject_name(cert.get(), subject->get()) ||
      !X509_set_issuer_name(cert.get(), issuer_name) ||
      !X509_set_pubkey(cert.get(), subject_key)) {
    return SslError(absl::StrCat("cannot fill in the ", role, " certificate"));
  }
  if (absl::Status s = SetValidity(cert.get(), not_before, not_after);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> key_id = ComputeKeyId(cert.get());
  if (!key_id.ok()) return key_id.status();
  absl::StatusOr<std::string> authority_key_id =
      issuer_cert == nullptr ? *key_id : SubjectKeyIdOf(issuer_cert);
  if (!authority_key_id.ok()) return authority_key_id.status();
  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return SslError("sk_GENERAL_NAME_new_null");
  absl::Status s = AddBasicConstraints(cert.get(), true, path_len);
  if (s.ok()) s = AddKeyUsage(cert.get(), {kKeyCertSign, kCrlSign});
  if (s.ok()) s = AddSubjectKeyId(cert.get(), *key_id);
  if (s.ok()) s = AddAuthorityKeyId(cert.get(), *authority_key_id);
  if (s.ok()) {
    s = AddGeneralName(names.get(), GEN_URI,
                       absl::StrCat("spiffe://", trust_domain));
  }
  if (s.ok()) s = AddSubjectAltNames(cert.get(), names.get(), false);
  if (s.ok()) {
    s = Sign(cert.get(), issuer_key,
             absl::StrCat(role, " certificate for ", trust_domain));
  }
  if (!s.ok()) return s;
  return cert;
}

bool IsDnsNameChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' ||
         c == '.' || c == '*';
}

absl::Status CheckDnsName(absl::string_view name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' ||
      !std::all_of(name.begin(), name.end(), IsDnsNameChar)) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid DNS name \"", name.substr(0, 256), "\""));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ParseIpAddress(const std::string& text) {
  unsigned char buf[16];
  if (inet_pton(AF_INET, text.c_str(), buf) == 1) {
    return std::string(reinterpret_cast<char*>(buf), 4);
  }
  if (inet_pton(AF_INET6, text.c_str(), buf) == 1) {
    return std::string(reinterpret_cast<char*>(buf), 16);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("invalid IP address \"", text.substr(0, 64), "\""));
}

absl::StatusOr<Asn1IntegerPtr> SerialFromHex(const std::string& hex) {
  if (hex.empty() || hex.size() > 40 ||
      !std::all_of(hex.begin(), hex.end(), [](char c) {
        return absl::ascii_isxdigit(static_cast<unsigned char>(c));
      })) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid serial \"", hex.substr(0, 64),
                     "\": expected 1 to 40 hex digits"));
  }
  BIGNUM* raw = nullptr;
  int parsed = BN_hex2bn(&raw, hex.c_str());
  BignumPtr bn(raw);
  if (parsed != static_cast<int>(hex.size()) || bn == nullptr) {
    return SslError(absl::StrCat("BN_hex2bn(\"", hex, "\")"));
  }
  Asn1IntegerPtr serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
  if (serial == nullptr) return SslError("BN_to_ASN1_INTEGER");
  return serial;
}

}  // namespace

absl::StatusOr<X509Ptr> CreateRootCertificate(EVP_PKEY* key,
                                              absl::string_view trust_domain,
                                              absl::Duration ttl,
                                              absl::Time now) {
  return CreateCaCertificate(key, nullptr, key, trust_domain, ttl, now, "root",
                             -1);
}

absl::StatusOr<X509Ptr> CreateIntermediateCertificate(
    EVP_PKEY* subject_key, X509* issuer_cert, EVP_PKEY* issuer_key,
    absl::string_view trust_domain, absl::Duration ttl, absl::Time now) {
  if (absl::Status s = CheckSignerPair(issuer_cert, issuer_key, "issuer");
      !s.ok()) {
    return s;
  }
  std::string issuer_td = TrustDomainOf(issuer_cert);
  if (!issuer_td.empty() && issuer_td != trust_domain) {
    return absl::InvalidArgumentError(
        absl::StrCat("issuer certificate is for trust domain \"", issuer_td,
                     "\", not \"", trust_domain, "\""));
  }
  return CreateCaCertificate(subject_key, issuer_cert, issuer_key, trust_domain,
                             ttl, now, "intermediate", 0);
}

absl::StatusOr<std::unique_ptr<CaSigner>> CaSigner::Create(
    X509Ptr signing_cert, EvpPkeyPtr signing_key,
    std::vector<X509Ptr> chain_above) {
  if (absl::Status s =
          CheckSignerPair(signing_cert.get(), signing_key.get(), "signing");
      !s.ok()) {
    return s;
  }
  absl::Time not_after = NotAfter(signing_cert.get());
  for (size_t i = 0; i < chain_above.size(); ++i) {
    if (chain_above[i] == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("chain_above[", i, "] is null"));
    }
    not_after = std::min(not_after, NotAfter(chain_above[i].get()));
  }
  X509NamePtr issuer_name(
      X509_NAME_dup(X509_get_subject_name(signing_cert.get())));
  if (issuer_name == nullptr) return SslError("X509_NAME_dup");
  absl::StatusOr<std::string> key_id = SubjectKeyIdOf(signing_cert.get());
  if (!key_id.ok()) return key_id.status();
  absl::Time not_before = NotBefore(signing_cert.get());
  std::string trust_domain = TrustDomainOf(signing_cert.get());
  return std::unique_ptr<CaSigner>(new CaSigner(
      std::move(signing_cert), std::move(signing_key), std::move(chain_above),
      std::move(issuer_name), *std::move(key_id), not_before, not_after,
      std::move(trust_domain)));
}

CaSigner::CaSigner(X509Ptr signing_cert, EvpPkeyPtr signing_key,
                   std::vector<X509Ptr> chain_above, X509NamePtr issuer_name,
                   std::string key_id, absl::Time not_before,
                   absl::Time not_after, std::string trust_domain)
    : signing_cert_(std::move(signing_cert)),
      signing_key_(std::move(signing_key)),
      chain_above_(std::move(chain_above)),
      issuer_name_(std::move(issuer_name)),
      key_id_(std::move(key_id)),
      not_before_(not_before),
      not_after_(not_after),
      trust_domain_(std::move(trust_domain)) {}

std::vector<X509*> CaSigner::ChainAbove() const {
  std::vector<X509*> out;
  out.reserve(chain_above_.size());
  for (const X509Ptr& cert : chain_above_) out.push_back(cert.get());
  return out;
}

absl::StatusOr<X509Ptr> CaSigner::IssueLeaf(const LeafRequest& request) const {
  const std::string id = request.spiffe_id.ToString();
  if (request.public_key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("no public key in the request for ", id));
  }
  if (absl::Status s = CheckIssuableKey(request.public_key); !s.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to certify ", id, ": ", s.message()));
  }
  if (request.ttl <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("refusing to certify ", id, ": TTL must be positive, got ",
                     absl::FormatDuration(request.ttl)));
  }
  if (!trust_domain_.empty() && !request.spiffe_id.MemberOf(trust_domain_)) {
    return absl::InvalidArgumentError(absl::StrCat("refusing to certify ", id,
                                                   ": this CA signs for trust "
                                                   "domain \"",
                                                   trust_domain_, "\""));
  }
  const absl::Time not_before =
      std::max(request.now - kClockSkewAllowance, not_before_);
  const absl::Time not_after = std::min(request.now + request.ttl, not_after_);
  if (not_after <= request.now || not_after <= not_before) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot certify ", id, ": the signing chain expires at ",
                     absl::FormatTime(not_after_), ", not after now (",
                     absl::FormatTime(request.now), ")"));
  }

  GeneralNamesPtr names(sk_GENERAL_NAME_new_null());
  if (names == nullptr) return SslError("sk_GENERAL_NAME_new_null");
  if (absl::Status s = AddGeneralName(names.get(), GEN_URI, id); !s.ok()) {
    return s;
  }
  for (const std::string& dns : request.dns_names) {
    if (absl::Status s = CheckDnsName(dns); !s.ok()) return s;
    if (absl::Status s = AddGeneralName(names.get(), GEN_DNS, dns); !s.ok()) {
      return s;
    }
  }
  for (const std::string& ip_text : request.ip_addresses) {
    absl::StatusOr<std::string> ip = ParseIpAddress(ip_text);
    if (!ip.ok()) return ip.status();
    if (absl::Status s = AddGeneralName(names.get(), GEN_IPADD, *ip); !s.ok()) {
      return s;
    }
  }

  ERR_clear_error();
  X509Ptr leaf(X509_new());
  if (leaf == nullptr) return SslError("X509_new");
  absl::StatusOr<Asn1IntegerPtr> serial = RandomSerial();
  if (!serial.ok()) return serial.status();
  // The subject stays empty: the identity is the URI SAN alone, which RFC
  // 5280 (4.2.1.6) then requires to be critical.
  if (!X509_set_version(leaf.get(), 2) ||
      !X509_set_serialNumber(leaf.get(), serial->get()) ||
      !X509_set_issuer_name(leaf.get(), issuer_name_.get())) {
    return SslError(absl::StrCat("cannot fill in the certificate for ", id));
  }
  if (absl::Status s = SetPublicKey(leaf.get(), request.public_key, id);
      !s.ok()) {
    return s;
  }
  if (absl::Status s = SetValidity(leaf.get(), not_before, not_after);
      !s.ok()) {
    return s;
  }
  absl::StatusOr<std::string> key_id = ComputeKeyId(leaf.get());
  if (!key_id.ok()) return key_id.status();
  absl::Status s = AddBasicConstraints(leaf.get(), false, -1);
  if (s.ok()) {
    // keyEncipherment only where the key can do it (RSA key transport).
    s = EVP_PKEY_id(request.public_key) == EVP_PKEY_RSA
            ? AddKeyUsage(leaf.get(), {kDigitalSignature, kKeyEncipherment})
            : AddKeyUsage(leaf.get(), {kDigitalSignature});
  }
  if (s.ok()) s = AddServerAndClientAuth(leaf.get());
  if (s.ok()) s = AddSubjectAltNames(leaf.get(), names.get(), true);
  if (s.ok()) s = AddSubjectKeyId(leaf.get(), *key_id);
  if (s.ok()) s = AddAuthorityKeyId(leaf.get(), key_id_);
  if (s.ok()) {
    s = Sign(leaf.get(), signing_key_.get(),
             absl::StrCat("certificate for ", id));
  }
  if (!s.ok()) return s;
  return leaf;
}

absl::StatusOr<X509CrlPtr> CaSigner::CreateCrl(
    const std::vector<RevokedCertificate>& revoked, int64_t crl_number,
    absl::Time now, absl::Duration validity) const {
  if (validity <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CRL validity must be positive, got ", absl::FormatDuration(validity)));
  }
  if (crl_number < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("CRL number must not be negative, got ", crl_number));
  }
  ERR_clear_error();
  X509CrlPtr crl(X509_CRL_new());
  if (crl == nullptr) return SslError("X509_CRL_new");
  Asn1TimePtr this_update = AbslToAsn1Time(now);
  Asn1TimePtr next_update = AbslToAsn1Time(now + validity);
  if (this_update == nullptr || next_update == nullptr ||
      !X509_CRL_set_version(crl.get(), 1) ||
      !X509_CRL_set_issuer_name(crl.get(), issuer_name_.get()) ||
      !X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) ||
      !X509_CRL_set1_nextUpdate(crl.get(), next_update.get())) {
    return SslError("cannot fill in the CRL");
  }
  for (const RevokedCertificate& entry : revoked) {
    absl::StatusOr<Asn1IntegerPtr> serial = SerialFromHex(entry.serial_hex);
    if (!serial.ok()) return serial.status();
    Asn1TimePtr revoked_at = AbslToAsn1Time(entry.revoked_at);
    X509RevokedPtr item(X509_REVOKED_new());
    if (revoked_at == nullptr || item == nullptr ||
        !X509_REVOKED_set_serialNumber(item.get(), serial->get()) ||
        !X509_REVOKED_set_revocationDate(item.get(), revoked_at.get()) ||
        !X509_CRL_add0_revoked(crl.get(), item.get())) {
      return SslError(
          absl::StrCat("cannot add serial ", entry.serial_hex, " to the CRL"));
    }
    item.release();  // Now owned by `crl`.
  }
  if (!X509_CRL_sort(crl.get())) return SslError("X509_CRL_sort");
  Asn1IntegerPtr number(ASN1_INTEGER_new());
  if (number == nullptr ||
      !ASN1_INTEGER_set(number.get(), static_cast<long>(crl_number)) ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, number.get(), 0,
                            X509V3_ADD_DEFAULT) != 1) {
    return SslError("cannot add the cRLNumber extension");
  }
  absl::StatusOr<AuthorityKeyIdPtr> aki = MakeAuthorityKeyId(key_id_);
  if (!aki.ok()) return aki.status();
  if (X509_CRL_add1_ext_i2d(crl.get(), NID_authority_key_identifier, aki->get(),
                            0, X509V3_ADD_DEFAULT) != 1) {
    return SslError("cannot add the CRL's authorityKeyIdentifier");
  }
  if (X509_CRL_sign(crl.get(), signing_key_.get(), EVP_sha256()) <= 0) {
    return SslError("cannot sign the CRL");
  }
  return crl;
}

}  // namespace meshguard::crypto
