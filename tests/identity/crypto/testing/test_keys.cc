#include "tests/identity/crypto/testing/test_keys.h"

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

}  // namespace meshguard::crypto::testkeys
