// X.509-SVID verification as a peer does it: the chain a peer presents, the
// trust bundle (roots + CRLs) of our trust domain, a verification time.
//
// A TLS verify callback calls VerifyX509Svid once per handshake, from any
// thread, with the TrustBundle of the current credential snapshot. The
// functions here are stateless; TrustBundle is immutable after Create and
// safe to share between threads.
//
// Every failure is UNAUTHENTICATED, except unparseable input
// (INVALID_ARGUMENT). Messages start with the failing step so that a CLI can
// print them as they are:
//   "parse: ..."  the PEM or DER could not be read,
//   "path: ..."   RFC 5280 path validation or our own path rules,
//   "crl: ..."    revocation (a revoked certificate, a bad or stale CRL),
//   "svid: ..."   the X.509-SVID rules for the leaf.
//
// Path rules: OpenSSL's (or BoringSSL's) X509_verify_cert at VerifyOptions.at
// with X509_V_FLAG_X509_STRICT, plus our own checks over every certificate
// the peer sent and every certificate of the built chain, so that both
// libraries refuse the same certificates:
//   - at most kMaxIntermediates intermediates are accepted, and the chain
//     depth is bounded the same way;
//   - version 3 only;
//   - keys: RSA 2048..8192 bits, EC on P-256 or P-384 with named-curve
//     parameters, Ed25519; nothing else (no DSA, no explicit EC parameters);
//   - signatures: SHA-256/384/512 with RSA (PKCS#1 v1.5 or PSS) or ECDSA,
//     or Ed25519 (no SHA-1, no MD5);
//   - every issuer: basicConstraints cA=true and keyUsage with keyCertSign.
//
// Revocation: when the bundle holds CRLs, X509_V_FLAG_CRL_CHECK |
// X509_V_FLAG_CRL_CHECK_ALL are set, and a certificate whose issuer has no
// CRL in the bundle is not an error ("unable to get CRL" is tolerated by the
// verify callback, and only that error). An issuer that has a CRL gets it
// checked in full: signature, thisUpdate/nextUpdate at `at`, revoked
// serials. A bundle without CRLs does no revocation checking. Beyond that,
// a leaf whose serial any CRL of the bundle lists is refused, whichever
// issuer signed that CRL (the CA lists every revocation in its current
// intermediate's CRL, also those of a previous intermediate's leaves).
#ifndef MESHGUARD_IDENTITY_CRYPTO_VERIFIER_H_
#define MESHGUARD_IDENTITY_CRYPTO_VERIFIER_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "identity/crypto/spiffe_id.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {

// Most intermediates a presented chain may carry (and may be built with).
inline constexpr int kMaxIntermediates = 8;

// The roots and CRLs of one trust domain. Immutable after Create; share it as
// std::shared_ptr<const TrustBundle> between any number of threads.
class TrustBundle final {
 public:
  // `root_pems`: PEM strings, each may hold several "CERTIFICATE" blocks.
  // Every root must be a v3 self-signed CA certificate (basicConstraints
  // cA=true, keyUsage with keyCertSign, a valid self-signature) with a key
  // meeting the rules above. `crl_pems`: PEM "X509 CRL" blocks, each issued
  // by (named after) one of the roots or by some intermediate; their
  // signatures are checked at verification time. INVALID_ARGUMENT on any
  // problem, naming the root or CRL by index and subject.
  static absl::StatusOr<std::shared_ptr<const TrustBundle>> Create(
      absl::string_view trust_domain, const std::vector<std::string>& root_pems,
      const std::vector<std::string>& crl_pems);

  TrustBundle(const TrustBundle&) = delete;
  TrustBundle& operator=(const TrustBundle&) = delete;

  const std::string& trust_domain() const { return trust_domain_; }
  // Owned by the bundle; valid as long as it lives. Do not modify.
  const std::vector<X509*>& roots() const { return root_ptrs_; }
  size_t crl_count() const { return crls_.size(); }
  // Whether any CRL of the bundle, whoever issued it, lists `cert`'s serial
  // (see "Revocation" above).
  bool ListsSerial(X509* cert) const;
  // The earliest notAfter over all roots (for metrics and alerts).
  absl::Time earliest_root_expiry() const { return earliest_root_expiry_; }

  // The shared store holding roots and CRLs. X509_STORE is safe for
  // concurrent lookups; per-verification settings go on the X509_STORE_CTX.
  X509_STORE* store() const { return store_.get(); }

 private:
  TrustBundle() = default;

  std::string trust_domain_;
  std::vector<X509Ptr> roots_;
  std::vector<X509*> root_ptrs_;
  std::vector<X509CrlPtr> crls_;
  // Every serial any CRL lists, as SerialKey() spells it.
  absl::flat_hash_set<std::string> listed_serials_;
  absl::Time earliest_root_expiry_ = absl::InfiniteFuture();
  X509StorePtr store_;
};

struct VerifyOptions {
  // The verification time (inject a clock's now()).
  absl::Time at;
  // The trust domain the leaf must belong to; empty: the bundle's.
  std::string trust_domain;
  // Only the path (and CRL) checks; see VerifyX509Svid.
  bool path_only = false;
};

// Verifies `leaf` and the peer's `untrusted_intermediates` against `bundle`
// and returns the leaf's SPIFFE ID. Neither argument is modified or kept.
//
// With options.path_only the X.509-SVID leaf rules and the trust-domain check
// are skipped; the result is then the first URI SAN of the leaf that parses
// as a SPIFFE ID (whatever its trust domain), and a leaf with none fails with
// "svid: leaf has no SPIFFE ID URI SAN" after the path checks passed.
absl::StatusOr<SpiffeId> VerifyX509Svid(
    X509* leaf, const std::vector<X509*>& untrusted_intermediates,
    const TrustBundle& bundle, const VerifyOptions& options);

// As VerifyX509Svid, from a PEM chain, leaf first. Empty or unreadable input
// is INVALID_ARGUMENT ("parse: ...").
absl::StatusOr<SpiffeId> VerifyX509SvidPem(absl::string_view chain_pem,
                                           const TrustBundle& bundle,
                                           const VerifyOptions& options);

// The path (and CRL) checks only, whatever options.path_only says; OK when
// they pass.
absl::Status VerifyPath(X509* leaf,
                        const std::vector<X509*>& untrusted_intermediates,
                        const TrustBundle& bundle,
                        const VerifyOptions& options);

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_VERIFIER_H_
