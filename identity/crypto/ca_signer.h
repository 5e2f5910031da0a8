// The CA's signing core: self-signed roots, intermediates, X.509-SVID leaves
// and CRLs, to the profile in DESIGN.md ("Identity").
//
// CaSigner is immutable once created; IssueLeaf and CreateCrl may be called
// concurrently from any thread. It applies the certificate profile and the
// key policy only: who may get which SPIFFE ID is the CA service's decision.
#ifndef MESHGUARD_IDENTITY_CRYPTO_CA_SIGNER_H_
#define MESHGUARD_IDENTITY_CRYPTO_CA_SIGNER_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {

// Certificates start this long before `now`, so that peers whose clocks are
// a little behind accept them at once.
inline constexpr absl::Duration kClockSkewAllowance = absl::Minutes(5);

// A self-signed root for `trust_domain`: cA=TRUE, keyUsage (critical)
// keyCertSign+cRLSign, subject and issuer "CN=meshguard root <td>,
// O=meshguard", URI SAN "spiffe://<td>", SKI/AKI, random positive 128-bit
// serial, SHA-256. Valid from now - kClockSkewAllowance to now + ttl.
absl::StatusOr<X509Ptr> CreateRootCertificate(EVP_PKEY* key,
                                              absl::string_view trust_domain,
                                              absl::Duration ttl,
                                              absl::Time now);

// An intermediate for `subject_key` signed by `issuer_cert`/`issuer_key`:
// cA=TRUE pathLen 0, otherwise like the root ("CN=meshguard intermediate
// <td>"). Its validity never leaves the issuer's.
absl::StatusOr<X509Ptr> CreateIntermediateCertificate(
    EVP_PKEY* subject_key, X509* issuer_cert, EVP_PKEY* issuer_key,
    absl::string_view trust_domain, absl::Duration ttl, absl::Time now);

struct LeafRequest {
  EVP_PKEY* public_key = nullptr;  // Not owned; only read.
  SpiffeId spiffe_id;
  absl::Duration ttl;
  absl::Time now;
  // Extra SANs, for the CA's own serving certificate; empty for workloads.
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;  // "10.0.0.1", "::1"
};

struct RevokedCertificate {
  std::string serial_hex;  // as SerialHex prints it
  absl::Time revoked_at;
};

class CaSigner final {
 public:
  // `signing_cert` must be a CA certificate (basicConstraints cA=TRUE,
  // keyUsage keyCertSign) whose public key matches `signing_key`.
  // `chain_above`: the intermediates above `signing_cert`, nearest first, up
  // to but excluding the root; usually empty.
  static absl::StatusOr<std::unique_ptr<CaSigner>> Create(
      X509Ptr signing_cert, EvpPkeyPtr signing_key,
      std::vector<X509Ptr> chain_above);

  CaSigner(const CaSigner&) = delete;
  CaSigner& operator=(const CaSigner&) = delete;

  // An X.509-SVID leaf: the SPIFFE ID as the only URI SAN (plus the DNS/IP
  // SANs asked for), basicConstraints (critical) cA=FALSE, keyUsage
  // (critical) digitalSignature (+keyEncipherment for RSA keys), EKU
  // serverAuth+clientAuth, SKI/AKI, random positive 128-bit serial.
  // Valid from max(now - kClockSkewAllowance, signer's notBefore) to
  // now + ttl, clamped to the notAfter of the signer and of chain_above.
  // INVALID_ARGUMENT for ttl <= 0, a key failing CheckIssuableKey, a SPIFFE
  // ID outside the signer's trust domain (when the signing certificate names
  // one in its URI SAN) or a malformed DNS name / IP address;
  // FAILED_PRECONDITION if the signer has expired at `now`.
  absl::StatusOr<X509Ptr> IssueLeaf(const LeafRequest& request) const;

  // A v2 CRL: issuer = signing certificate's subject, thisUpdate = now,
  // nextUpdate = now + validity, cRLNumber, AKI, signed SHA-256.
  absl::StatusOr<X509CrlPtr> CreateCrl(
      const std::vector<RevokedCertificate>& revoked, int64_t crl_number,
      absl::Time now, absl::Duration validity) const;

  // Owned by this signer.
  X509* certificate() const { return signing_cert_.get(); }
  EVP_PKEY* key() const { return signing_key_.get(); }
  // The certificates above certificate(), nearest first, root excluded.
  std::vector<X509*> ChainAbove() const;
  // The trust domain named by the signing certificate's URI SAN, or empty.
  const std::string& trust_domain() const { return trust_domain_; }

 private:
  CaSigner(X509Ptr signing_cert, EvpPkeyPtr signing_key,
           std::vector<X509Ptr> chain_above, X509NamePtr issuer_name,
           std::string key_id, absl::Time not_before, absl::Time not_after,
           std::string trust_domain);

  // All set in Create and never changed, so that concurrent calls only read.
  const X509Ptr signing_cert_;
  const EvpPkeyPtr signing_key_;
  const std::vector<X509Ptr> chain_above_;
  const X509NamePtr issuer_name_;  // signing_cert_'s subject
  const std::string key_id_;       // signing_cert_'s subject key identifier
  const absl::Time not_before_;    // signing_cert_'s notBefore
  const absl::Time not_after_;     // earliest notAfter of the chain
  const std::string trust_domain_;
};

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_CA_SIGNER_H_
