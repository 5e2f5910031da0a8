// Keys of any curve or size for tests, including the ones the product
// refuses to make (P-384, RSA-1024), so tests can check the refusals.
#ifndef MESHGUARD_TESTS_IDENTITY_CRYPTO_TESTING_TEST_KEYS_H_
#define MESHGUARD_TESTS_IDENTITY_CRYPTO_TESTING_TEST_KEYS_H_

#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto::testkeys {

// An EC key on the curve `nid` (NID_X9_62_prime256v1, NID_secp384r1, ...);
// nullptr if the library cannot make one.
EvpPkeyPtr GenerateEc(int nid);

// An RSA key of `bits`; nullptr on failure.
EvpPkeyPtr GenerateRsa(int bits);

// An Ed25519 key (a type the CA refuses); nullptr on failure.
EvpPkeyPtr GenerateEd25519();

// An RSA key of `bits` with public exponent `e` (odd, >= 3); nullptr on
// failure.
EvpPkeyPtr GenerateRsaWithExponent(int bits, unsigned long e);

// A P-256 key (legacy EC_KEY) that encodes its curve as explicit parameters
// instead of the curve's name, as RFC 5480 forbids. nullptr where the library
// always encodes the name (BoringSSL).
EvpPkeyPtr GenerateP256WithExplicitParameters();

}  // namespace meshguard::crypto::testkeys

#endif  // MESHGUARD_TESTS_IDENTITY_CRYPTO_TESTING_TEST_KEYS_H_
