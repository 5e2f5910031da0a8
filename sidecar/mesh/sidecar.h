// meshguard-sidecar, assembled: identity agent -> credential store ->
// data plane (outbound h2c listener, inbound mTLS listener), authorization,
// telemetry and the admin endpoint.
//
// Start order follows linkerd2-proxy: the admin endpoint first (so
// /healthz answers and /readyz says "not ready"), then a valid identity,
// and only then the listeners. Run() blocks until SIGTERM/SIGINT, then
// drains: GOAWAY, in-flight calls finish until the drain deadline.
#ifndef MESHGUARD_SIDECAR_MESH_SIDECAR_H_
#define MESHGUARD_SIDECAR_MESH_SIDECAR_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "proto/config.pb.h"

namespace meshguard::sidecar {

struct RunOptions {
  // How long to keep trying for the first identity before giving up.
  absl::Duration bootstrap_timeout = absl::Minutes(2);
};

// Runs the sidecar with a defaulted, validated config. Signals SIGTERM and
// SIGINT must be blocked in every thread before this is called (main does
// it), so that Run() can wait for them synchronously.
absl::Status RunSidecar(const meshguard::config::v1::SidecarConfig& config,
                        const RunOptions& options);

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_MESH_SIDECAR_H_
