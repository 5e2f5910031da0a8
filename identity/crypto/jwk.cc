#include "identity/crypto/jwk.h"

#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "identity/crypto/ssl_ptr.h"

namespace meshguard::crypto {
namespace {

constexpr size_t kP256CoordinateBytes = 32;
// BoringSSL refuses to verify with public exponents over 33 bits; so do we,
// everywhere, so that a key works the same with either library.
constexpr int kMaxRsaExponentBits = 33;
// A PEM file of public keys is a few KiB; refuse to parse megabytes.
constexpr size_t kMaxPemBytes = 1 << 20;

// The oldest queued OpenSSL error as text (and the queue cleared), so that
// messages say what the library saw.
std::string SslError() {
  const unsigned long code = ERR_get_error();
  ERR_clear_error();
  if (code == 0) return "no OpenSSL error queued";
  char buf[256];
  ERR_error_string_n(code, buf, sizeof(buf));
  return buf;
}

// Strict unpadded base64url (RFC 7515 section 2): absl alone would also
// accept padding and skip whitespace.
absl::StatusOr<std::string> DecodeBase64Url(absl::string_view field,
                                            absl::string_view in) {
  if (in.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("JWK \"", field, "\" is empty"));
  }
  for (char c : in) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                    (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) {
      return absl::InvalidArgumentError(absl::StrCat(
          "JWK \"", field, "\" is not unpadded base64url (bad character '",
          absl::CHexEscape(absl::string_view(&c, 1)), "')"));
    }
  }
  std::string out;
  if (!absl::WebSafeBase64Unescape(in, &out)) {
    return absl::InvalidArgumentError(
        absl::StrCat("JWK \"", field, "\" is not valid base64url"));
  }
  return out;
}

BignumPtr BytesToBignum(const std::string& bytes) {
  return BignumPtr(BN_bin2bn(reinterpret_cast<const uint8_t*>(bytes.data()),
                             bytes.size(), nullptr));
}

absl::StatusOr<std::string> PublicKeyToPem(EVP_PKEY* pkey) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (bio == nullptr || PEM_write_bio_PUBKEY(bio.get(), pkey) != 1) {
    return absl::InternalError(
        absl::StrCat("PEM_write_bio_PUBKEY failed: ", SslError()));
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  if (len <= 0 || data == nullptr) {
    return absl::InternalError("PEM_write_bio_PUBKEY wrote nothing");
  }
  return std::string(data, static_cast<size_t>(len));
}

absl::Status CheckRsaModulusBits(int bits) {
  if (bits < kMinRsaModulusBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("RSA modulus has ", bits, " bits; at least ",
                     kMinRsaModulusBits, " are required"));
  }
  if (bits > kMaxRsaModulusBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("RSA modulus has ", bits, " bits; at most ",
                     kMaxRsaModulusBits, " are accepted"));
  }
  return absl::OkStatus();
}

// Type and size checks shared by PEM input; JWK input is checked while it is
// built.
absl::StatusOr<PublicKeyType> ClassifyPublicKey(const EVP_PKEY* pkey) {
  switch (EVP_PKEY_id(pkey)) {
    case EVP_PKEY_RSA: {
      absl::Status bits = CheckRsaModulusBits(EVP_PKEY_bits(pkey));
      if (!bits.ok()) return bits;
      return PublicKeyType::kRsa;
    }
    case EVP_PKEY_EC: {
      const EC_KEY* ec = EVP_PKEY_get0_EC_KEY(pkey);
      const EC_GROUP* group = ec == nullptr ? nullptr : EC_KEY_get0_group(ec);
      if (group == nullptr ||
          EC_GROUP_get_curve_name(group) != NID_X9_62_prime256v1) {
        return absl::InvalidArgumentError(
            "EC public key is not on P-256 (the only curve accepted)");
      }
      return PublicKeyType::kEcP256;
    }
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("public key type ", EVP_PKEY_id(pkey),
                       " is neither RSA nor EC P-256"));
  }
}

}  // namespace

absl::string_view PublicKeyTypeName(PublicKeyType type) {
  switch (type) {
    case PublicKeyType::kRsa:
      return "RSA";
    case PublicKeyType::kEcP256:
      return "EC P-256";
  }
  return "unknown";
}

absl::StatusOr<std::string> RsaJwkToPem(absl::string_view n_b64url,
                                        absl::string_view e_b64url) {
  absl::StatusOr<std::string> n_bytes = DecodeBase64Url("n", n_b64url);
  if (!n_bytes.ok()) return n_bytes.status();
  absl::StatusOr<std::string> e_bytes = DecodeBase64Url("e", e_b64url);
  if (!e_bytes.ok()) return e_bytes.status();

  BignumPtr n = BytesToBignum(*n_bytes);
  BignumPtr e = BytesToBignum(*e_bytes);
  if (n == nullptr || e == nullptr) {
    return absl::InternalError(absl::StrCat("BN_bin2bn failed: ", SslError()));
  }
  if (absl::Status bits = CheckRsaModulusBits(BN_num_bits(n.get()));
      !bits.ok()) {
    return bits;
  }
  if (!BN_is_odd(n.get())) {
    return absl::InvalidArgumentError("RSA modulus is even");
  }
  // e = 1 would make the "signature" the message itself.
  if (!BN_is_odd(e.get()) || BN_num_bits(e.get()) < 2 ||
      BN_num_bits(e.get()) > kMaxRsaExponentBits) {
    return absl::InvalidArgumentError(
        absl::StrCat("RSA public exponent must be odd, at least 3 and at most ",
                     kMaxRsaExponentBits, " bits"));
  }

  RsaPtr rsa(RSA_new());
  if (rsa == nullptr ||
      RSA_set0_key(rsa.get(), n.get(), e.get(), nullptr) != 1) {
    return absl::InternalError(
        absl::StrCat("RSA_set0_key failed: ", SslError()));
  }
  // RSA_set0_key took ownership of n and e.
  n.release();
  e.release();

  EvpPkeyPtr pkey(EVP_PKEY_new());
  if (pkey == nullptr || EVP_PKEY_assign_RSA(pkey.get(), rsa.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("EVP_PKEY_assign_RSA failed: ", SslError()));
  }
  rsa.release();  // owned by pkey now
  return PublicKeyToPem(pkey.get());
}

absl::StatusOr<std::string> EcJwkToPem(absl::string_view crv,
                                       absl::string_view x_b64url,
                                       absl::string_view y_b64url) {
  if (crv != "P-256") {
    return absl::InvalidArgumentError(
        absl::StrCat("EC JWK curve \"", absl::CHexEscape(crv.substr(0, 32)),
                     "\" is not supported (only P-256)"));
  }
  absl::StatusOr<std::string> x_bytes = DecodeBase64Url("x", x_b64url);
  if (!x_bytes.ok()) return x_bytes.status();
  absl::StatusOr<std::string> y_bytes = DecodeBase64Url("y", y_b64url);
  if (!y_bytes.ok()) return y_bytes.status();
  // RFC 7518 section 6.2.1.2: the full coordinate length, leading zeros kept.
  if (x_bytes->size() != kP256CoordinateBytes ||
      y_bytes->size() != kP256CoordinateBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("EC JWK coordinates must be ", kP256CoordinateBytes,
                     " bytes each for P-256; got x ", x_bytes->size(), ", y ",
                     y_bytes->size()));
  }

  BignumPtr x = BytesToBignum(*x_bytes);
  BignumPtr y = BytesToBignum(*y_bytes);
  EcKeyPtr ec(EC_KEY_new_by_curve_name(NID_X9_62_prime256v1));
  if (x == nullptr || y == nullptr || ec == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot allocate EC key: ", SslError()));
  }
  // Both libraries refuse a point that is not on the curve (or has a
  // coordinate outside the field) here; EC_KEY_check_key says so twice.
  if (EC_KEY_set_public_key_affine_coordinates(ec.get(), x.get(), y.get()) !=
          1 ||
      EC_KEY_check_key(ec.get()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("EC JWK point is not on the P-256 curve: ", SslError()));
  }

  EvpPkeyPtr pkey(EVP_PKEY_new());
  if (pkey == nullptr || EVP_PKEY_assign_EC_KEY(pkey.get(), ec.get()) != 1) {
    return absl::InternalError(
        absl::StrCat("EVP_PKEY_assign_EC_KEY failed: ", SslError()));
  }
  ec.release();  // owned by pkey now
  return PublicKeyToPem(pkey.get());
}

absl::StatusOr<std::vector<PublicKeyPem>> ParsePublicKeysPem(
    absl::string_view pem) {
  if (pem.size() > kMaxPemBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("PEM input is larger than ", kMaxPemBytes, " bytes"));
  }
  ERR_clear_error();
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (bio == nullptr) {
    return absl::InternalError(
        absl::StrCat("BIO_new_mem_buf failed: ", SslError()));
  }
  std::vector<PublicKeyPem> keys;
  for (int block = 1;; ++block) {
    // PEM_read_bio only splits blocks; the DER inside is parsed below, so
    // the end of input is told apart from a broken key the same way under
    // both libraries (OpenSSL 3's PEM_read_bio_PUBKEY reports the end of
    // input as a DECODER error).
    char* raw_name = nullptr;
    char* raw_header = nullptr;
    unsigned char* raw_data = nullptr;
    long len = 0;
    const int read =
        PEM_read_bio(bio.get(), &raw_name, &raw_header, &raw_data, &len);
    OpensslString name(raw_name);
    OpensslString header(raw_header);
    OpensslBytes data(raw_data);
    if (read != 1) {
      const unsigned long code = ERR_peek_last_error();
      if (ERR_GET_LIB(code) == ERR_LIB_PEM &&
          ERR_GET_REASON(code) == PEM_R_NO_START_LINE) {
        ERR_clear_error();  // the normal end of input
        break;
      }
      return absl::InvalidArgumentError(
          absl::StrCat("PEM block ", block, " cannot be read: ", SslError()));
    }
    if (absl::string_view(name.get()) != "PUBLIC KEY") continue;
    const uint8_t* p = data.get();
    EvpPkeyPtr pkey(d2i_PUBKEY(nullptr, &p, len));
    if (pkey == nullptr || p != data.get() + len) {
      return absl::InvalidArgumentError(absl::StrCat(
          "PEM block ", block, " is not a valid PUBLIC KEY: ", SslError()));
    }
    absl::StatusOr<PublicKeyType> type = ClassifyPublicKey(pkey.get());
    if (!type.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("PEM block ", block, ": ", type.status().message()));
    }
    absl::StatusOr<std::string> normalized = PublicKeyToPem(pkey.get());
    if (!normalized.ok()) return normalized.status();
    keys.push_back(PublicKeyPem{*type, *std::move(normalized)});
  }
  if (keys.empty()) {
    return absl::InvalidArgumentError(
        "no \"-----BEGIN PUBLIC KEY-----\" block found");
  }
  return keys;
}

}  // namespace meshguard::crypto
