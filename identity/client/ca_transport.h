// The seam between the CA client library's logic (keys, CSRs, checking what
// the CA returns: IdentityClient) and the wire that carries the CA API
// (meshguard.ca.v1.CertificateAuthority). Two transports implement it:
//   - gRPC C++ (ca_client.h, CaClient): for meshguardctl and any program
//     that links gRPC anyway;
//   - our own HTTP/2 client over nghttp2 + OpenSSL (h2_transport.h): for the
//     sidecar, which must not carry gRPC's C core (memory, threads).
// Both speak the same protocol to the same server with the same TLS checks,
// and report failures with the same absl::Status codes.
//
// This header names no gRPC type, so that code which only needs certificates
// (the sidecar's identity agent) does not depend on gRPC.
#ifndef MESHGUARD_IDENTITY_CLIENT_CA_TRANSPORT_H_
#define MESHGUARD_IDENTITY_CLIENT_CA_TRANSPORT_H_

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "identity/crypto/ssl_ptr.h"
#include "proto/ca.pb.h"

namespace meshguard::client {

struct CaClientOptions {
  // host:port of meshguard-ca.
  std::string address = "127.0.0.1:15012";
  // PEM roots that authenticate the CA's serving certificate.
  std::string ca_bundle_pem;
  // Name the CA's certificate must carry (a DNS SAN, or an IP SAN when this
  // is an IP address). Empty: the host part of `address`.
  std::string server_name = "meshguard-ca";
  // Deadline of each call (the watch: of each connection attempt).
  absl::Duration timeout = absl::Seconds(10);
  // Largest response message accepted (gRPC's default receive limit).
  size_t max_response_bytes = 4 * 1024 * 1024;
};

// INVALID_ARGUMENT unless `options` names an address and a CA bundle that
// parses as PEM certificates.
absl::Status ValidateCaClientOptions(const CaClientOptions& options);

// A certificate the CA issued, with the key it was issued for.
struct IssuedCertificate {
  crypto::EvpPkeyPtr key;
  std::string key_pem;                 // PKCS#8
  std::vector<std::string> chain_pem;  // leaf first
  meshguard::ca::v1::TrustBundle bundle;
  std::string spiffe_id;
  std::string serial;
  absl::Time not_before;
  absl::Time not_after;

  std::string ChainPem() const;   // chain_pem concatenated
  std::string BundlePem() const;  // bundle roots concatenated
  // Writes dir/key.pem (0600), dir/cert.pem (ChainPem) and dir/bundle.pem
  // as a set (util::ReplaceFiles): all three new ones, or on an error the
  // old ones untouched, so a key never sits beside another certificate.
  absl::Status WriteFiles(const std::string& dir) const;
};

// Runs WatchTrustBundle on its own thread and calls `on_bundle` for each
// bundle received (on that thread). Reconnects with backoff until Stop().
class BundleWatch {
 public:
  virtual ~BundleWatch() = default;
  virtual void Stop() = 0;
};

// How one IssueCertificate call proves who the caller is: a bearer token
// (Kubernetes service-account token), a client certificate (renewal over
// mTLS), or neither (the join token travels in the request).
struct CallCredentials {
  std::string bearer_token;           // sent as "authorization: Bearer <it>"
  std::string client_cert_chain_pem;  // leaf first; with client_key_pem
  std::string client_key_pem;
};

// One call per method of the CA API. Implementations are thread-safe; each
// call runs with CaClientOptions::timeout as its deadline. Errors: the CA's
// own status (code and message as it sent them, prefixed "CA <address>: "),
// or UNAVAILABLE / DEADLINE_EXCEEDED naming the CA address and the cause
// when the call did not reach a status (no connection, TLS refused, stream
// reset, ...).
class CaTransport {
 public:
  virtual ~CaTransport() = default;

  virtual absl::StatusOr<meshguard::ca::v1::IssueCertificateResponse>
  IssueCertificate(const meshguard::ca::v1::IssueCertificateRequest& request,
                   const CallCredentials& credentials) = 0;

  virtual absl::StatusOr<meshguard::ca::v1::TrustBundle> GetTrustBundle() = 0;

  virtual std::unique_ptr<BundleWatch> WatchTrustBundle(
      std::function<void(const meshguard::ca::v1::TrustBundle&)> on_bundle) = 0;
};

}  // namespace meshguard::client

#endif  // MESHGUARD_IDENTITY_CLIENT_CA_TRANSPORT_H_
