#include "tests/identity/crypto/testing/test_keys.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/rsa.h>

namespace meshguard::crypto::testkeys {

EvpPkeyPtr GenerateEc(int nid) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), nid) <= 0 ||
      EVP_PKEY_keygen(ctx.get(), &raw) <= 0) {
    return nullptr;
  }
  return EvpPkeyPtr(raw);
}

EvpPkeyPtr GenerateRsa(int bits) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), bits) <= 0 ||
      EVP_PKEY_keygen(ctx.get(), &raw) <= 0) {
    return nullptr;
  }
  return EvpPkeyPtr(raw);
}

EvpPkeyPtr GenerateEd25519() {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_ED25519, nullptr));
  EVP_PKEY* raw = nullptr;
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) <= 0 ||
      EVP_PKEY_keygen(ctx.get(), &raw) <= 0) {
    return nullptr;
  }
  return EvpPkeyPtr(raw);
}

EvpPkeyPtr GenerateRsaWithExponent(int bits, unsigned long e) {
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_RSA, nullptr));
  BIGNUM* exponent = BN_new();
  EVP_PKEY* raw = nullptr;
  bool ok = ctx != nullptr && exponent != nullptr && BN_set_word(exponent, e) &&
            EVP_PKEY_keygen_init(ctx.get()) > 0 &&
            EVP_PKEY_CTX_set_rsa_keygen_bits(ctx.get(), bits) > 0;
#ifdef OPENSSL_IS_BORINGSSL
  // BoringSSL takes ownership of the exponent.
  ok = ok && EVP_PKEY_CTX_set_rsa_keygen_pubexp(ctx.get(), exponent) > 0;
  if (ok) exponent = nullptr;
#else
  ok = ok && EVP_PKEY_CTX_set1_rsa_keygen_pubexp(ctx.get(), exponent) > 0;
#endif
  BN_free(exponent);
  if (!ok || EVP_PKEY_keygen(ctx.get(), &raw) <= 0) return nullptr;
  return EvpPkeyPtr(raw);
}

EvpPkeyPtr GenerateP256WithExplicitParameters() {
#ifdef OPENSSL_IS_BORINGSSL
  return nullptr;
#else
  EcKeyPtr ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  EvpPkeyPtr key(EVP_PKEY_new());
  if (ec == nullptr || key == nullptr || EC_KEY_generate_key(ec.get()) != 1) {
    return nullptr;
  }
  EC_KEY_set_asn1_flag(ec.get(), OPENSSL_EC_EXPLICIT_CURVE);
  if (EVP_PKEY_assign_EC_KEY(key.get(), ec.get()) != 1) return nullptr;
  ec.release();  // Now owned by `key`.
  return key;
#endif
}

}  // namespace meshguard::crypto::testkeys
