// meshguard-ca's serving side: the CertificateAuthority and
// CertificateAuthorityAdmin gRPC services, the admin Unix socket, the
// observability HTTP port, and the CRL refresher.
//
// Create() loads everything and fails with a message naming the file or
// field at fault; Start() binds; Shutdown() stops. All public methods are
// thread-safe.
#ifndef MESHGUARD_IDENTITY_CA_CA_SERVER_H_
#define MESHGUARD_IDENTITY_CA_CA_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "identity/util/config_origins.h"
#include "proto/config.pb.h"

namespace meshguard::ca {

class CaServer {
 public:
  virtual ~CaServer() = default;

  // `config` is defaulted and validated here; `origins` (where its fields
  // came from: file lines, flags) goes into the errors.
  static absl::StatusOr<std::unique_ptr<CaServer>> Create(
      meshguard::config::v1::CaConfig config,
      const util::ConfigOrigins& origins = util::ConfigOrigins());

  // Binds the gRPC port, the admin socket and the HTTP port.
  virtual absl::Status Start() = 0;
  // Stops accepting, cancels watchers, waits for in-flight calls.
  virtual void Shutdown() = 0;

  // Bound ports (useful when the config asked for port 0).
  virtual int grpc_port() const = 0;
  virtual int http_port() const = 0;
  virtual std::string admin_socket_path() const = 0;
};

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_CA_SERVER_H_
