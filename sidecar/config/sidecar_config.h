// meshguard-sidecar's configuration: the SidecarConfig proto, loaded from
// YAML, overridden by flags, defaulted and validated once at start.
#ifndef MESHGUARD_SIDECAR_CONFIG_SIDECAR_CONFIG_H_
#define MESHGUARD_SIDECAR_CONFIG_SIDECAR_CONFIG_H_

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "identity/util/config_origins.h"
#include "proto/config.pb.h"

namespace meshguard::sidecar {

// Fills every unset field with its documented default (see config.proto).
void ApplySidecarDefaults(meshguard::config::v1::SidecarConfig* config);

// Checks a defaulted config. The error names the field and the problem
// and, from `origins`, where the value came from: the config file and line,
// or the flag (see util::ConfigOrigins).
absl::Status ValidateSidecarConfig(
    const meshguard::config::v1::SidecarConfig& config,
    const util::ConfigOrigins& origins = util::ConfigOrigins());

absl::Duration ToAbsl(const google::protobuf::Duration& d);

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_CONFIG_SIDECAR_CONFIG_H_
