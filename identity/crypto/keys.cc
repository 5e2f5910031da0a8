#include "identity/crypto/keys.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace meshguard::crypto {
namespace {

const EC_GROUP* EcGroupOf(EVP_PKEY* key) {
  const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
  return ec == nullptr ? nullptr : EC_KEY_get0_group(ec);
}

bool IsPrivateKeyPemType(absl::string_view type) {
  return type == "PRIVATE KEY" || type == "EC PRIVATE KEY" ||
         type == "RSA PRIVATE KEY";
}

}  // namespace

absl::Status SslError(absl::string_view what) {
  return absl::InternalError(absl::StrCat(what, ": ", ConsumeSslErrors()));
}

absl::StatusOr<std::string> BioContents(BIO* bio, absl::string_view what) {
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  if (len < 0 || (len > 0 && data == nullptr)) {
    return SslError(absl::StrCat(what, ": cannot read memory BIO"));
  }
  return std::string(data, static_cast<size_t>(len));
}

std::string ConsumeSslErrors() {
  std::vector<std::string> errors;
  while (uint32_t e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof(buf));
    errors.emplace_back(buf);
  }
  if (errors.empty()) return "no OpenSSL error";
  return absl::StrJoin(errors, "; ");
}

absl::StatusOr<std::vector<PemBlock>> ReadPemBlocks(absl::string_view pem,
                                                    absl::string_view what,
                                                    size_t max_bytes) {
  if (pem.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  }
  if (pem.size() > max_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is too large: ", pem.size(),
                     " bytes, the limit is ", max_bytes));
  }
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) return SslError("BIO_new_mem_buf");
  std::vector<PemBlock> blocks;
  while (true) {
    char* name_raw = nullptr;
    char* header_raw = nullptr;
    unsigned char* data_raw = nullptr;
    long len = 0;
    int ok = PEM_read_bio(bio.get(), &name_raw, &header_raw, &data_raw, &len);
    OpensslString name(name_raw);
    OpensslString header(header_raw);
    OpensslBytes data(data_raw);
    if (!ok) {
      uint32_t e = ERR_peek_last_error();
      if (ERR_GET_LIB(e) == ERR_LIB_PEM &&
          ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // The normal end: nothing more to read.
        break;
      }
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": PEM block ", blocks.size() + 1,
                       " is truncated or malformed: ", ConsumeSslErrors()));
    }
    if (header != nullptr && header.get()[0] != '\0') {
      return absl::InvalidArgumentError(absl::StrCat(
          what, ": PEM block ", blocks.size() + 1, " (", name.get(),
          ") has headers; encrypted PEM is not "
          "supported"));
    }
    blocks.push_back(
        PemBlock{name.get(), std::string(reinterpret_cast<char*>(data.get()),
                                         static_cast<size_t>(len))});
  }
  if (blocks.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " has no PEM block (expected \"-----BEGIN ...\")"));
  }
  return blocks;
}

absl::StatusOr<std::string> WritePemBlock(absl::string_view type,
                                          absl::string_view der) {
  ERR_clear_error();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return SslError("BIO_new");
  std::string type_str(type);
  if (PEM_write_bio(bio.get(), type_str.c_str(), "",
                    reinterpret_cast<const unsigned char*>(der.data()),
                    static_cast<long>(der.size())) <= 0) {
    return SslError(absl::StrCat("cannot PEM-encode ", type));
  }
  return BioContents(bio.get(), "PEM_write_bio");
}

absl::StatusOr<EvpPkeyPtr> GenerateEcP256Key() {
  ERR_clear_error();
  EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_id(EVP_PKEY_EC, nullptr));
  if (ctx == nullptr || EVP_PKEY_keygen_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_ec_paramgen_curve_nid(ctx.get(), NID_X9_62_prime256v1) <=
          0) {
    return SslError("cannot set up ECDSA P-256 key generation");
  }
  EVP_PKEY* raw = nullptr;
  int ok = EVP_PKEY_keygen(ctx.get(), &raw);
  EvpPkeyPtr key(raw);
  if (ok <= 0 || key == nullptr) {
    return SslError("cannot generate an ECDSA P-256 key");
  }
  return key;
}

absl::StatusOr<std::string> PrivateKeyToPem(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("private key is null");
  ERR_clear_error();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return SslError("BIO_new");
  if (!PEM_write_bio_PKCS8PrivateKey(bio.get(), key, nullptr, nullptr, 0,
                                     nullptr, nullptr)) {
    return SslError(absl::StrCat("cannot write ", DescribeKey(key),
                                 " private key as PKCS#8 PEM"));
  }
  return BioContents(bio.get(), "PEM_write_bio_PKCS8PrivateKey");
}

absl::StatusOr<std::string> PrivateKeyToDer(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("private key is null");
  ERR_clear_error();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return SslError("BIO_new");
  if (!i2d_PKCS8PrivateKey_bio(bio.get(), key, nullptr, nullptr, 0, nullptr,
                               nullptr)) {
    return SslError(absl::StrCat("cannot write ", DescribeKey(key),
                                 " private key as PKCS#8 DER"));
  }
  return BioContents(bio.get(), "i2d_PKCS8PrivateKey_bio");
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromDer(absl::string_view der) {
  if (der.empty()) {
    return absl::InvalidArgumentError("private key DER is empty");
  }
  if (der.size() > kMaxPemBytes) {
    return absl::InvalidArgumentError("private key DER is too large");
  }
  ERR_clear_error();
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  EvpPkeyPtr key(
      d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size())));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot parse private key DER (PKCS#8): ", ConsumeSslErrors()));
  }
  if (p != end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "private key DER has ", end - p, " trailing bytes after the key"));
  }
  return key;
}

absl::StatusOr<EvpPkeyPtr> PrivateKeyFromPem(absl::string_view pem) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadPemBlocks(pem, "private key PEM");
  if (!blocks.ok()) return blocks.status();
  if (blocks->size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("private key PEM has ", blocks->size(),
                     " PEM blocks; expected exactly one"));
  }
  const PemBlock& block = blocks->front();
  if (block.type == "ENCRYPTED PRIVATE KEY") {
    return absl::InvalidArgumentError(
        "private key PEM is encrypted; meshguard keeps keys unencrypted in "
        "memory");
  }
  if (!IsPrivateKeyPemType(block.type)) {
    return absl::InvalidArgumentError(
        absl::StrCat("private key PEM holds a \"", block.type,
                     "\" block, not \"PRIVATE KEY\""));
  }
  return PrivateKeyFromDer(block.der);
}

absl::StatusOr<std::string> PublicKeyToPem(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("public key is null");
  ERR_clear_error();
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr) return SslError("BIO_new");
  if (!PEM_write_bio_PUBKEY(bio.get(), key)) {
    return SslError(
        absl::StrCat("cannot write ", DescribeKey(key), " public key as PEM"));
  }
  return BioContents(bio.get(), "PEM_write_bio_PUBKEY");
}

absl::StatusOr<EvpPkeyPtr> PublicKeyFromPem(absl::string_view pem) {
  absl::StatusOr<std::vector<PemBlock>> blocks =
      ReadPemBlocks(pem, "public key PEM");
  if (!blocks.ok()) return blocks.status();
  if (blocks->size() != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("public key PEM has ", blocks->size(),
                     " PEM blocks; expected exactly one"));
  }
  const PemBlock& block = blocks->front();
  if (block.type != "PUBLIC KEY") {
    return absl::InvalidArgumentError(
        absl::StrCat("public key PEM holds a \"", block.type,
                     "\" block, not \"PUBLIC KEY\""));
  }
  ERR_clear_error();
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(block.der.data());
  const unsigned char* end = p + block.der.size();
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(block.der.size())));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cannot parse SubjectPublicKeyInfo: ", ConsumeSslErrors()));
  }
  if (p != end) {
    return absl::InvalidArgumentError(
        "public key PEM has trailing bytes after the SubjectPublicKeyInfo");
  }
  return key;
}

std::string DescribeKey(EVP_PKEY* key) {
  if (key == nullptr) return "no key";
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
      const EC_GROUP* group = EcGroupOf(key);
      if (group == nullptr) return "ECDSA (no curve)";
      int nid = EC_GROUP_get_curve_name(group);
      const char* nist = EC_curve_nid2nist(nid);
      if (nist != nullptr) return absl::StrCat("ECDSA ", nist);
      const char* sn = OBJ_nid2sn(nid);
      return absl::StrCat("ECDSA ", sn != nullptr ? sn : "unknown curve");
    }
    case EVP_PKEY_RSA:
      return absl::StrCat("RSA ", EVP_PKEY_bits(key));
    case EVP_PKEY_ED25519:
      return "Ed25519";
    default: {
      const char* sn = OBJ_nid2sn(EVP_PKEY_id(key));
      return absl::StrCat(sn != nullptr ? sn : "unknown", " key (",
                          EVP_PKEY_bits(key), " bits)");
    }
  }
}

absl::Status CheckIssuableKey(EVP_PKEY* key) {
  if (key == nullptr) return absl::InvalidArgumentError("public key is null");
  switch (EVP_PKEY_id(key)) {
    case EVP_PKEY_EC: {
      const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(key);
      const EC_GROUP* group = ec == nullptr ? nullptr : EC_KEY_get0_group(ec);
      if (group != nullptr &&
          EC_GROUP_get_curve_name(group) == NID_X9_62_prime256v1) {
        // OpenSSL maps explicit parameters that match P-256 to the curve
        // but keeps encoding them explicitly; a leaf for such a key would
        // carry them. RFC 5480 (and so an X.509-SVID) requires the name.
        if ((EC_GROUP_get_asn1_flag(group) & OPENSSL_EC_NAMED_CURVE) == 0) {
          return absl::InvalidArgumentError(
              "ECDSA P-256 key with explicit curve parameters is not "
              "accepted: the key must name its curve (prime256v1, RFC 5480)");
        }
        // Decoding accepts the point at infinity (one 0x00 octet), and
        // ECDSA verification with it accepts signatures anyone can make:
        // both the CSR's proof of possession and the certificate would be
        // worthless. (Decoding has already checked that any other point is
        // on the curve; P-256's cofactor is 1, so that is the whole check.)
        const EC_POINT* point = EC_KEY_get0_public_key(ec);
        if (point == nullptr || EC_POINT_is_at_infinity(group, point) == 1) {
          return absl::InvalidArgumentError(
              "ECDSA P-256 public key is the point at infinity");
        }
        return absl::OkStatus();
      }
      break;
    }
    case EVP_PKEY_RSA: {
      if (EVP_PKEY_bits(key) < 2048) break;
      // CA/Browser Forum Baseline Requirements 6.1.6: an odd exponent,
      // and (a SHOULD there, a must here) at least 2^16 + 1 and below
      // 2^256. With e = 1 a "signature" is the padded hash itself, so the
      // CSR's proof of possession would prove nothing.
      const RSA* rsa = EVP_PKEY_get0_RSA(key);
      const BIGNUM* e = nullptr;
      if (rsa != nullptr) RSA_get0_key(rsa, nullptr, &e, nullptr);
      if (e == nullptr) {
        return absl::InvalidArgumentError("RSA key without a public exponent");
      }
      if (!BN_is_odd(e) || BN_num_bits(e) < 17 || BN_num_bits(e) > 256) {
        const std::string value =
            BN_num_bits(e) <= 64 ? absl::StrCat(BN_get_word(e))
                                 : absl::StrCat("of ", BN_num_bits(e), " bits");
        return absl::InvalidArgumentError(absl::StrCat(
            "RSA public exponent ", value,
            " is not accepted: it must be odd, at least 65537 and below "
            "2^256"));
      }
      return absl::OkStatus();
    }
    default:
      break;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("key type ", DescribeKey(key),
                   " is not accepted: the CA certifies ECDSA P-256 or RSA of "
                   "at least 2048 bits"));
}

bool PublicKeysEqual(EVP_PKEY* a, EVP_PKEY* b) {
  if (a == nullptr || b == nullptr) return false;
  unsigned char* a_raw = nullptr;
  int a_len = i2d_PUBKEY(a, &a_raw);
  OpensslBytes a_der(a_raw);
  unsigned char* b_raw = nullptr;
  int b_len = i2d_PUBKEY(b, &b_raw);
  OpensslBytes b_der(b_raw);
  if (a_len <= 0 || b_len <= 0) {
    ERR_clear_error();
    return false;
  }
  return a_len == b_len && std::memcmp(a_der.get(), b_der.get(), a_len) == 0;
}

}  // namespace meshguard::crypto
