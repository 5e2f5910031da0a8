// The sidecar's RequestFilters and Routers: what the data plane asks of the
// mesh on every call.
//
// Thread-safety: all are called concurrently on worker threads and never
// block (the policy is a snapshot read; telemetry is lock-free in the
// steady state).
#ifndef MESHGUARD_SIDECAR_MESH_FILTERS_H_
#define MESHGUARD_SIDECAR_MESH_FILTERS_H_

#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "proto/config.pb.h"
#include "sidecar/authz/policy_source.h"
#include "sidecar/mesh/telemetry.h"
#include "sidecar/proxy/api.h"

namespace meshguard::sidecar {

// Inbound: authorizes each call by the peer's SPIFFE ID and the method;
// a denial is PERMISSION_DENIED naming the rule, and the app never sees it.
class InboundFilter final : public proxy::RequestFilter {
 public:
  InboundFilter(const authz::PolicyWatcher* policy, CallTelemetry* telemetry)
      : policy_(policy), telemetry_(telemetry) {}

  absl::Status OnRequest(const proxy::RequestInfo& request,
                         proxy::HeaderList& headers) override;
  void OnCallEnd(const proxy::CallSummary& call) override;

 private:
  const authz::PolicyWatcher* const policy_;
  CallTelemetry* const telemetry_;
};

// Outbound: only observes (metrics and access log).
class OutboundObserver final : public proxy::RequestFilter {
 public:
  OutboundObserver(std::string own_id, CallTelemetry* telemetry)
      : own_id_(std::move(own_id)), telemetry_(telemetry) {}
  absl::Status OnRequest(const proxy::RequestInfo& request,
                         proxy::HeaderList& headers) override {
    return absl::OkStatus();
  }
  void OnCallEnd(const proxy::CallSummary& call) override;

 private:
  const std::string own_id_;
  CallTelemetry* const telemetry_;
};

// Inbound: everything goes to the local app, plaintext h2c.
class AppRouter final : public proxy::Router {
 public:
  explicit AppRouter(std::string app_address) {
    target_.address = std::move(app_address);
  }
  absl::StatusOr<proxy::UpstreamTarget> Route(
      const proxy::RequestInfo& request) override {
    return target_;
  }

 private:
  proxy::UpstreamTarget target_;
};

// Outbound: by :authority through the configured routes (exact, then the
// host without its port); in transparent mode, to the original destination
// (the address the app dialed, recovered with SO_ORIGINAL_DST). Always mTLS.
class OutboundRouter final : public proxy::Router {
 public:
  // Routes' upstream hostnames are resolved here, once (the data plane dials
  // numeric addresses only). `own_listener` is the outbound listener's
  // address: an original destination equal to it means "not redirected".
  static absl::StatusOr<std::unique_ptr<OutboundRouter>> Create(
      const meshguard::config::v1::SidecarConfig& config,
      std::string own_listener);

  absl::StatusOr<proxy::UpstreamTarget> Route(
      const proxy::RequestInfo& request) override;

 private:
  OutboundRouter() = default;
  absl::flat_hash_map<std::string, proxy::UpstreamTarget> routes_;
  bool transparent_ = false;
  std::string own_listener_;
};

// "host:port" with a name resolved to a numeric address (IPv4 preferred).
absl::StatusOr<std::string> ResolveHostPort(const std::string& address);

}  // namespace meshguard::sidecar

#endif  // MESHGUARD_SIDECAR_MESH_FILTERS_H_
