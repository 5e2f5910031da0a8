// X.509 certificates and CRLs: PEM/DER parsing and encoding, and read-only
// accessors for the fields meshguard looks at (validity, SANs, serial,
// fingerprint).
//
// Free functions, no shared state: safe to call from any thread on objects
// that no other thread is modifying.
#ifndef MESHGUARD_IDENTITY_CRYPTO_CERTIFICATE_H_
#define MESHGUARD_IDENTITY_CRYPTO_CERTIFICATE_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {

// Every "CERTIFICATE" block of `pem`, in order (leaf first for a chain).
// Blocks of other types (a key in the same file) are skipped. INVALID_ARGUMENT
// if there is none, or on garbage, truncation or a block that is not a DER
// certificate.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificateChainPem(
    absl::string_view pem);
// Exactly one certificate (one PEM block, of type "CERTIFICATE").
absl::StatusOr<X509Ptr> ParseCertificatePem(absl::string_view pem);
// One DER certificate; trailing bytes are an error.
absl::StatusOr<X509Ptr> ParseCertificateDer(absl::string_view der);

absl::StatusOr<std::string> CertificateToPem(X509* cert);
absl::StatusOr<std::string> CertificateToDer(X509* cert);

// Lowercase hex, no leading zeros, "0" for zero, "-" prefix if negative.
std::string SerialHex(X509* cert);

// A serial number as a person may type it, in SerialHex's form: upper or
// lower case, an optional "0x", leading zeros, and ':' between byte pairs
// (as `openssl x509 -serial` and browsers print it) are accepted. Anything
// else (an empty string, a non-hex digit, more than 20 bytes, which RFC 5280
// forbids) is INVALID_ARGUMENT naming the input.
absl::StatusOr<std::string> NormalizeSerialHex(absl::string_view typed);

absl::Time NotBefore(X509* cert);
absl::Time NotAfter(X509* cert);

// The URI / DNS names of the subjectAltName extension, in order.
std::vector<std::string> UriSans(X509* cert);
std::vector<std::string> DnsSans(X509* cert);

// Lowercase hex SHA-256 of the DER certificate (Envoy's XFCC "Hash").
std::string Sha256FingerprintHex(X509* cert);

// A human-readable summary, for logs, the admin endpoint and meshguardctl.
struct CertificateInfo {
  std::string subject;  // RFC 2253
  std::string issuer;   // RFC 2253
  std::string serial;   // SerialHex
  absl::Time not_before;
  absl::Time not_after;
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::string key_description;  // DescribeKey of the subject key
  bool is_ca = false;           // basicConstraints cA
};
CertificateInfo DescribeCertificate(X509* cert);

// basicConstraints cA=TRUE.
bool IsCa(X509* cert);

// Exactly one CRL (one "X509 CRL" PEM block).
absl::StatusOr<X509CrlPtr> ParseCrlPem(absl::string_view pem);
absl::StatusOr<std::string> CrlToPem(X509_CRL* crl);

// ASN1_TIME (UTCTime or GeneralizedTime) to absl::Time; absl::InfinitePast()
// for null or malformed times.
absl::Time Asn1TimeToAbsl(const ASN1_TIME* t);
// absl::Time (truncated to seconds) to a new ASN1_TIME; null on failure.
Asn1TimePtr AbslToAsn1Time(absl::Time t);

// The strings of `names` whose type is `type` (GEN_URI, GEN_DNS, GEN_EMAIL,
// or GEN_IPADD as raw address bytes), in order.
std::vector<std::string> GeneralNameStrings(const GENERAL_NAMES* names,
                                            int type);

// Appends one name to `names`: GEN_URI and GEN_DNS take the string as is,
// GEN_IPADD takes raw address bytes (4 or 16).
absl::Status AddGeneralName(GENERAL_NAMES* names, int type,
                            absl::string_view value);

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_CERTIFICATE_H_
