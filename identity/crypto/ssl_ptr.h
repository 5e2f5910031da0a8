// Owning smart pointers for every OpenSSL/BoringSSL type meshguard uses.
//
// Every OpenSSL object is owned by one of these from the line that creates it
// (BoringSSL's bssl::UniquePtr style). Only identity/crypto and the data
// plane's TLS code include this header. Written against the API subset that
// OpenSSL 3 and BoringSSL share.
#ifndef MESHGUARD_IDENTITY_CRYPTO_SSL_PTR_H_
#define MESHGUARD_IDENTITY_CRYPTO_SSL_PTR_H_

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace meshguard::crypto {

namespace internal {
template <typename T, void (*Free)(T*)>
struct Deleter {
  void operator()(T* p) const {
    if (p != nullptr) Free(p);
  }
};

// OPENSSL_free is a macro in OpenSSL 3; wrap it in a function.
inline void FreeOpensslString(char* p) { OPENSSL_free(p); }
inline void FreeOpensslBytes(unsigned char* p) { OPENSSL_free(p); }
inline void FreeGeneralNames(GENERAL_NAMES* p) { GENERAL_NAMES_free(p); }
inline void FreeX509Stack(STACK_OF(X509) * p) {
  sk_X509_pop_free(p, X509_free);
}
inline void FreeX509CrlStack(STACK_OF(X509_CRL) * p) {
  sk_X509_CRL_pop_free(p, X509_CRL_free);
}
inline void FreeExtensionStack(STACK_OF(X509_EXTENSION) * p) {
  sk_X509_EXTENSION_pop_free(p, X509_EXTENSION_free);
}
}  // namespace internal

#define MESHGUARD_SSL_PTR(Alias, Type, FreeFn) \
  using Alias = std::unique_ptr<Type, internal::Deleter<Type, FreeFn>>

MESHGUARD_SSL_PTR(BioPtr, BIO, BIO_free_all);
MESHGUARD_SSL_PTR(BignumPtr, BIGNUM, BN_free);
MESHGUARD_SSL_PTR(BnCtxPtr, BN_CTX, BN_CTX_free);
MESHGUARD_SSL_PTR(EvpPkeyPtr, EVP_PKEY, EVP_PKEY_free);
MESHGUARD_SSL_PTR(EvpPkeyCtxPtr, EVP_PKEY_CTX, EVP_PKEY_CTX_free);
MESHGUARD_SSL_PTR(EvpMdCtxPtr, EVP_MD_CTX, EVP_MD_CTX_free);
MESHGUARD_SSL_PTR(EcKeyPtr, EC_KEY, EC_KEY_free);
MESHGUARD_SSL_PTR(EcGroupPtr, EC_GROUP, EC_GROUP_free);
MESHGUARD_SSL_PTR(EcPointPtr, EC_POINT, EC_POINT_free);
MESHGUARD_SSL_PTR(EcdsaSigPtr, ECDSA_SIG, ECDSA_SIG_free);
MESHGUARD_SSL_PTR(RsaPtr, RSA, RSA_free);
MESHGUARD_SSL_PTR(X509Ptr, X509, X509_free);
MESHGUARD_SSL_PTR(X509ReqPtr, X509_REQ, X509_REQ_free);
MESHGUARD_SSL_PTR(X509AlgorPtr, X509_ALGOR, X509_ALGOR_free);
MESHGUARD_SSL_PTR(X509CrlPtr, X509_CRL, X509_CRL_free);
MESHGUARD_SSL_PTR(X509RevokedPtr, X509_REVOKED, X509_REVOKED_free);
MESHGUARD_SSL_PTR(X509NamePtr, X509_NAME, X509_NAME_free);
MESHGUARD_SSL_PTR(X509ExtensionPtr, X509_EXTENSION, X509_EXTENSION_free);
MESHGUARD_SSL_PTR(X509StorePtr, X509_STORE, X509_STORE_free);
MESHGUARD_SSL_PTR(X509StoreCtxPtr, X509_STORE_CTX, X509_STORE_CTX_free);
MESHGUARD_SSL_PTR(X509VerifyParamPtr, X509_VERIFY_PARAM,
                  X509_VERIFY_PARAM_free);
MESHGUARD_SSL_PTR(Asn1IntegerPtr, ASN1_INTEGER, ASN1_INTEGER_free);
MESHGUARD_SSL_PTR(Asn1TimePtr, ASN1_TIME, ASN1_TIME_free);
MESHGUARD_SSL_PTR(Asn1ObjectPtr, ASN1_OBJECT, ASN1_OBJECT_free);
MESHGUARD_SSL_PTR(Asn1BitStringPtr, ASN1_BIT_STRING, ASN1_BIT_STRING_free);
MESHGUARD_SSL_PTR(Asn1OctetStringPtr, ASN1_OCTET_STRING,
                  ASN1_OCTET_STRING_free);
MESHGUARD_SSL_PTR(BasicConstraintsPtr, BASIC_CONSTRAINTS,
                  BASIC_CONSTRAINTS_free);
MESHGUARD_SSL_PTR(AuthorityKeyIdPtr, AUTHORITY_KEYID, AUTHORITY_KEYID_free);
MESHGUARD_SSL_PTR(ExtKeyUsagePtr, EXTENDED_KEY_USAGE, EXTENDED_KEY_USAGE_free);
MESHGUARD_SSL_PTR(GeneralNamePtr, GENERAL_NAME, GENERAL_NAME_free);
MESHGUARD_SSL_PTR(GeneralNamesPtr, GENERAL_NAMES, internal::FreeGeneralNames);
MESHGUARD_SSL_PTR(X509StackPtr, STACK_OF(X509), internal::FreeX509Stack);
MESHGUARD_SSL_PTR(X509CrlStackPtr, STACK_OF(X509_CRL),
                  internal::FreeX509CrlStack);
MESHGUARD_SSL_PTR(ExtensionStackPtr, STACK_OF(X509_EXTENSION),
                  internal::FreeExtensionStack);
MESHGUARD_SSL_PTR(SslCtxPtr, SSL_CTX, SSL_CTX_free);
MESHGUARD_SSL_PTR(SslPtr, SSL, SSL_free);
MESHGUARD_SSL_PTR(OpensslString, char, internal::FreeOpensslString);
MESHGUARD_SSL_PTR(OpensslBytes, unsigned char, internal::FreeOpensslBytes);

#undef MESHGUARD_SSL_PTR

}  // namespace meshguard::crypto

#endif  // MESHGUARD_IDENTITY_CRYPTO_SSL_PTR_H_
