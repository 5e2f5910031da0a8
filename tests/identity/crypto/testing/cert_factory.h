// Test-only X.509 fixture builder: good and deliberately broken certificates
// and CRLs, made with raw OpenSSL/BoringSSL calls so that no product code is
// trusted to build the inputs it is tested against.
//
// Usable by any test suite (crypto, CA, sidecar handshakes). Every function is
// thread-compatible; TestCert is an immutable, copyable handle (copies share
// the underlying X509 and key by reference count).
//
//   TestCert root = *MakeCert(RootSpec("root"));
//   TestCert inter = *MakeCert(IntermediateSpec("inter", root));
//   CertSpec leaf_spec = LeafSpec("spiffe://cluster.local/ns/a/sa/b", inter);
//   leaf_spec.uri_sans.push_back("spiffe://cluster.local/ns/a/sa/c");  // break
//   TestCert leaf = *MakeCert(leaf_spec);
#ifndef MESHGUARD_TESTS_IDENTITY_CRYPTO_TESTING_CERT_FACTORY_H_
#define MESHGUARD_TESTS_IDENTITY_CRYPTO_TESTING_CERT_FACTORY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto::testing {

// The instant fixtures are valid around by default: 2026-01-01T00:00:00Z.
// Tests pass it (or an offset of it) as the verification time.
absl::Time FixtureNow();

enum class KeyType {
  kP256,
  kP384,
  kP521,
  kP256ExplicitParams,  // OpenSSL only: Unimplemented under BoringSSL.
  kRsa1024,
  kRsa2048,
  kEd25519,
  kDsa2048,  // OpenSSL only: Unimplemented under BoringSSL.
};

absl::StatusOr<EvpPkeyPtr> GenerateKey(KeyType type);

// A certificate and its private key.
class TestCert final {
 public:
  TestCert(X509Ptr cert, EvpPkeyPtr key);
  TestCert(const TestCert& other);
  TestCert& operator=(const TestCert& other);
  TestCert(TestCert&&) = default;
  TestCert& operator=(TestCert&&) = default;

  X509* cert() const { return cert_.get(); }
  EVP_PKEY* key() const { return key_.get(); }
  // A new reference to the certificate.
  X509Ptr CertRef() const;
  std::string Pem() const;
  std::string Der() const;

 private:
  X509Ptr cert_;
  EvpPkeyPtr key_;
};

enum class BasicConstraints { kAbsent, kCaTrue, kCaFalse };

// keyUsage bits (RFC 5280 names), combined with |.
enum KeyUsage : uint32_t {
  kDigitalSignature = 1u << 0,
  kNonRepudiation = 1u << 1,
  kKeyEncipherment = 1u << 2,
  kDataEncipherment = 1u << 3,
  kKeyAgreement = 1u << 4,
  kKeyCertSign = 1u << 5,
  kCrlSign = 1u << 6,
};

struct CertSpec {
  std::string subject_cn = "meshguard test";
  // nullptr: self-signed with the certificate's own key.
  const TestCert* issuer = nullptr;
  KeyType key_type = KeyType::kP256;
  // If set, used instead of generating a key of key_type (a reference is
  // taken): saves RSA keygen time and allows re-issuing for the same key.
  EVP_PKEY* key = nullptr;
  uint64_t serial = 1;
  absl::Time not_before = FixtureNow() - absl::Hours(24 * 365);
  absl::Time not_after = FixtureNow() + absl::Hours(24 * 365);
  int version = 3;  // 1 or 3. A v1 certificate carries no extensions at all.

  BasicConstraints basic_constraints = BasicConstraints::kCaFalse;
  std::optional<int> path_len;  // Only with kCaTrue.
  bool basic_constraints_critical = true;
  std::optional<uint32_t> key_usage = kDigitalSignature;  // nullopt: absent
  bool key_usage_critical = true;
  // "serverAuth", "clientAuth", "codeSigning", ... or dotted OIDs. Empty: no
  // extendedKeyUsage extension.
  std::vector<std::string> ext_key_usage = {"serverAuth", "clientAuth"};
  std::vector<std::string> uri_sans;
  std::vector<std::string> dns_sans;
  std::vector<std::string> ip_sans;  // "127.0.0.1", "::1"
  // nameConstraints permitted subtrees (critical). Both empty: absent.
  std::vector<std::string> permitted_uris;  // host or ".domain", RFC 5280
  std::vector<std::string> permitted_dns;
  // subjectKeyIdentifier, and authorityKeyIdentifier when not self-signed.
  bool key_identifiers = true;
  // A made-up critical extension (OID 1.3.6.1.4.1.55555.1.1, value NULL).
  bool unknown_critical_extension = false;
  // Flip a bit of the signature after signing.
  bool tamper_signature = false;
};

absl::StatusOr<TestCert> MakeCert(const CertSpec& spec);

// Good defaults for the three roles of an X.509-SVID chain.
// Root: self-signed, cA=true, keyCertSign|cRLSign, no EKU.
CertSpec RootSpec(std::string cn);
// Intermediate: cA=true, keyCertSign|cRLSign, no EKU.
CertSpec IntermediateSpec(std::string cn, const TestCert& issuer);
// Leaf: cA=false, digitalSignature, EKU serverAuth+clientAuth, one URI SAN.
CertSpec LeafSpec(std::string spiffe_id, const TestCert& issuer);

struct CrlSpec {
  const TestCert* issuer = nullptr;  // Required.
  std::vector<uint64_t> revoked_serials;
  absl::Time this_update = FixtureNow() - absl::Hours(1);
  absl::Time next_update = FixtureNow() + absl::Hours(24);
  bool tamper_signature = false;
};

absl::StatusOr<X509CrlPtr> MakeCrl(const CrlSpec& spec);
absl::StatusOr<std::string> MakeCrlPem(const CrlSpec& spec);

// PEM of several certificates, concatenated in order.
std::string ChainPem(const std::vector<const TestCert*>& certs);

}  // namespace meshguard::crypto::testing

#endif  // MESHGUARD_TESTS_IDENTITY_CRYPTO_TESTING_CERT_FACTORY_H_
