#include "identity/crypto/certificate.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <cctype>
#include <ctime>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "identity/crypto/keys.h"

namespace meshguard::crypto {
namespace {

std::string NameToString(const X509_NAME* name) {
  if (name == nullptr) return "";
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr ||
      X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253) < 0) {
    ERR_clear_error();
    return "";
  }
  absl::StatusOr<std::string> s = BioContents(bio.get(), "X509_NAME_print_ex");
  return s.ok() ? *std::move(s) : "";
}

GeneralNamesPtr SubjectAltNames(X509* cert) {
  if (cert == nullptr) return nullptr;
  GeneralNamesPtr names(static_cast<GENERAL_NAMES*>(
      X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  ERR_clear_error();
  return names;
}

}  // namespace

std::vector<std::string> GeneralNameStrings(const GENERAL_NAMES* names,
                                            int type) {
  std::vector<std::string> out;
  if (names == nullptr) return out;
  const int count = static_cast<int>(sk_GENERAL_NAME_num(names));
  for (int i = 0; i < count; ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    if (name == nullptr || name->type != type) continue;
    const ASN1_STRING* s = nullptr;
    switch (type) {
      case GEN_URI:
        s = name->d.uniformResourceIdentifier;
        break;
      case GEN_DNS:
        s = name->d.dNSName;
        break;
      case GEN_EMAIL:
        s = name->d.rfc822Name;
        break;
      case GEN_IPADD:
        s = name->d.iPAddress;
        break;
      default:
        continue;
    }
    if (s == nullptr) continue;
    out.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                     static_cast<size_t>(ASN1_STRING_length(s)));
  }
  return out;
}

absl::Status AddGeneralName(GENERAL_NAMES* names, int type,
                            absl::string_view value) {
  if (names == nullptr) return absl::InvalidArgumentError("names is null");
  GeneralNamePtr name(GENERAL_NAME_new());
  if (name == nullptr) return SslError("GENERAL_NAME_new");
  ASN1_STRING* s = nullptr;
  switch (type) {
    case GEN_URI:
      s = name->d.uniformResourceIdentifier = ASN1_IA5STRING_new();
      break;
    case GEN_DNS:
      s = name->d.dNSName = ASN1_IA5STRING_new();
      break;
    case GEN_IPADD:
      if (value.size() != 4 && value.size() != 16) {
        return absl::InvalidArgumentError(absl::StrCat(
            "IP address SAN must be 4 or 16 bytes, not ", value.size()));
      }
      s = name->d.iPAddress = ASN1_OCTET_STRING_new();
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unsupported GENERAL_NAME type ", type));
  }
  // From here on `name` owns `s` (GENERAL_NAME_free frees by type).
  name->type = type;
  if (s == nullptr ||
      !ASN1_STRING_set(s, value.data(), static_cast<int>(value.size()))) {
    return SslError("cannot build subjectAltName entry");
  }
  if (!sk_GENERAL_NAME_push(names, name.get())) {
    return SslError("sk_GENERAL_NAME_push");
  }
  name.release();  // Now owned by `names`.
  return absl::OkStatus();
}

absl::StatusOr<X509Ptr> ParseCertificateDer(absl::string_view der) {
  if (der.empty()) {
    return absl::InvalidArgumentError("certificate DER is empty");
  }
  ERR_clear_error();
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (cert == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse certificate DER: ", ConsumeSslErrors()));
  }
  if (p != end) {
    return absl::InvalidArgumentError(absl::StrCat("certificate DER has ",
                                                   end - p,
                                                   " trailing bytes after the "
                                                   "certificate"));
  }
  return cert;
}

absl::StatusOr<std::vector<X509Ptr>> ParseCertificateChainPem(
    absl::string_view pem) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadPemBlocks(pem, "certificate PEM");
  if (!blocks.ok()) return blocks.status();
  std::vector<X509Ptr> chain;
  for (size_t i = 0; i < blocks->size(); ++i) {
    const PemBlock& block = (*blocks)[i];
    if (block.type != "CERTIFICATE") continue;
    absl::StatusOr<X509Ptr> cert = ParseCertificateDer(block.der);
    if (!cert.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "certificate PEM block ", i + 1, ": ", cert.status().message()));
    }
    chain.push_back(*std::move(cert));
  }
  if (chain.empty()) {
    return absl::InvalidArgumentError(
        "certificate PEM has no \"CERTIFICATE\" block");
  }
  return chain;
}

absl::StatusOr<X509Ptr> ParseCertificatePem(absl::string_view pem) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadPemBlocks(pem, "certificate PEM");
  if (!blocks.ok()) return blocks.status();
  if (blocks->size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate PEM has ", blocks->size(),
                     " PEM blocks; expected exactly one"));
  }
  if (blocks->front().type != "CERTIFICATE") {
    return absl::InvalidArgumentError(
        absl::StrCat("certificate PEM holds a \"", blocks->front().type,
                     "\" block, not \"CERTIFICATE\""));
  }
  return ParseCertificateDer(blocks->front().der);
}

absl::StatusOr<std::string> CertificateToDer(X509* cert) {
  if (cert == nullptr) return absl::InvalidArgumentError("certificate is null");
  ERR_clear_error();
  unsigned char* raw = nullptr;
  int len = i2d_X509(cert, &raw);
  OpensslBytes der(raw);
  if (len <= 0) return SslError("cannot DER-encode certificate");
  return std::string(reinterpret_cast<char*>(der.get()),
                     static_cast<size_t>(len));
}

absl::StatusOr<std::string> CertificateToPem(X509* cert) {
  absl::StatusOr<std::string> der = CertificateToDer(cert);
  if (!der.ok()) return der.status();
  return WritePemBlock("CERTIFICATE", *der);
}

std::string SerialHex(X509* cert) {
  if (cert == nullptr) return "";
  const ASN1_INTEGER* serial = X509_get0_serialNumber(cert);
  BignumPtr bn(serial == nullptr ? nullptr
                                 : ASN1_INTEGER_to_BN(serial, nullptr));
  if (bn == nullptr) {
    ERR_clear_error();
    return "";
  }
  OpensslString hex(BN_bn2hex(bn.get()));
  if (hex == nullptr) {
    ERR_clear_error();
    return "";
  }
  std::string s = absl::AsciiStrToLower(hex.get());
  bool negative = !s.empty() && s[0] == '-';
  size_t start = negative ? 1 : 0;
  size_t first = s.find_first_not_of('0', start);
  if (first == std::string::npos) return "0";
  return absl::StrCat(negative ? "-" : "", s.substr(first));
}

absl::StatusOr<std::string> NormalizeSerialHex(absl::string_view typed) {
  absl::string_view in = absl::StripAsciiWhitespace(typed);
  if (absl::StartsWithIgnoreCase(in, "0x")) in.remove_prefix(2);
  std::string digits;
  digits.reserve(in.size());
  for (char c : in) {
    if (c == ':') continue;
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError(absl::StrCat(
          "serial \"", typed,
          "\" is not a hexadecimal number (e.g. 3f2a9c or 3F:2A:9C)"));
    }
    digits.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
  }
  if (digits.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("serial \"", typed, "\" is empty"));
  }
  const size_t first = digits.find_first_not_of('0');
  if (first == std::string::npos) return std::string("0");
  digits.erase(0, first);
  if (digits.size() > 40) {
    return absl::InvalidArgumentError(
        absl::StrCat("serial \"", typed,
                     "\" is longer than 20 bytes, the most RFC 5280 allows"));
  }
  return digits;
}

absl::Time Asn1TimeToAbsl(const ASN1_TIME* t) {
  if (t == nullptr) return absl::InfinitePast();
  Asn1TimePtr epoch(ASN1_TIME_set(nullptr, 0));
  int days = 0;
  int secs = 0;
  if (epoch == nullptr || !ASN1_TIME_diff(&days, &secs, epoch.get(), t)) {
    ERR_clear_error();
    return absl::InfinitePast();
  }
  return absl::UnixEpoch() + absl::Hours(24) * days + absl::Seconds(secs);
}

Asn1TimePtr AbslToAsn1Time(absl::Time t) {
  if (t == absl::InfinitePast() || t == absl::InfiniteFuture()) return nullptr;
  Asn1TimePtr out(ASN1_TIME_set(nullptr, absl::ToTimeT(t)));
  if (out == nullptr) ERR_clear_error();
  return out;
}

absl::Time NotBefore(X509* cert) {
  return cert == nullptr ? absl::InfinitePast()
                         : Asn1TimeToAbsl(X509_get0_notBefore(cert));
}

absl::Time NotAfter(X509* cert) {
  return cert == nullptr ? absl::InfinitePast()
                         : Asn1TimeToAbsl(X509_get0_notAfter(cert));
}

std::vector<std::string> UriSans(X509* cert) {
  GeneralNamesPtr names = SubjectAltNames(cert);
  return GeneralNameStrings(names.get(), GEN_URI);
}

std::vector<std::string> DnsSans(X509* cert) {
  GeneralNamesPtr names = SubjectAltNames(cert);
  return GeneralNameStrings(names.get(), GEN_DNS);
}

std::string Sha256FingerprintHex(X509* cert) {
  if (cert == nullptr) return "";
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (!X509_digest(cert, EVP_sha256(), md, &len)) {
    ERR_clear_error();
    return "";
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(md), len));
}

bool IsCa(X509* cert) {
  if (cert == nullptr) return false;
  BasicConstraintsPtr bc(static_cast<BASIC_CONSTRAINTS*>(
      X509_get_ext_d2i(cert, NID_basic_constraints, nullptr, nullptr)));
  ERR_clear_error();
  return bc != nullptr && bc->ca != 0;
}

CertificateInfo DescribeCertificate(X509* cert) {
  CertificateInfo info;
  if (cert == nullptr) return info;
  info.subject = NameToString(X509_get_subject_name(cert));
  info.issuer = NameToString(X509_get_issuer_name(cert));
  info.serial = SerialHex(cert);
  info.not_before = NotBefore(cert);
  info.not_after = NotAfter(cert);
  info.uri_sans = UriSans(cert);
  info.dns_sans = DnsSans(cert);
  EvpPkeyPtr key(X509_get_pubkey(cert));
  info.key_description = DescribeKey(key.get());
  info.is_ca = IsCa(cert);
  ERR_clear_error();
  return info;
}

absl::StatusOr<X509CrlPtr> ParseCrlPem(absl::string_view pem) {
  absl::StatusOr<std::vector<PemBlock>> blocks = ReadPemBlocks(pem, "CRL PEM");
  if (!blocks.ok()) return blocks.status();
  if (blocks->size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "CRL PEM has ", blocks->size(), " PEM blocks; expected exactly one"));
  }
  const PemBlock& block = blocks->front();
  if (block.type != "X509 CRL") {
    return absl::InvalidArgumentError(absl::StrCat(
        "CRL PEM holds a \"", block.type, "\" block, not \"X509 CRL\""));
  }
  ERR_clear_error();
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(block.der.data());
  const unsigned char* end = p + block.der.size();
  X509CrlPtr crl(
      d2i_X509_CRL(nullptr, &p, static_cast<long>(block.der.size())));
  if (crl == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot parse CRL DER: ", ConsumeSslErrors()));
  }
  if (p != end) {
    return absl::InvalidArgumentError("CRL DER has trailing bytes");
  }
  return crl;
}

absl::StatusOr<std::string> CrlToPem(X509_CRL* crl) {
  if (crl == nullptr) return absl::InvalidArgumentError("CRL is null");
  ERR_clear_error();
  unsigned char* raw = nullptr;
  int len = i2d_X509_CRL(crl, &raw);
  OpensslBytes der(raw);
  if (len <= 0) return SslError("cannot DER-encode CRL");
  return WritePemBlock("X509 CRL",
                       absl::string_view(reinterpret_cast<char*>(der.get()),
                                         static_cast<size_t>(len)));
}

}  // namespace meshguard::crypto
