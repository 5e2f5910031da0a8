#include "sidecar/mesh/filters.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "identity/util/json_log.h"
#include "sidecar/authz/policy.h"

namespace meshguard::sidecar {
namespace {

// The policy engine's view of a call's metadata: every value of a repeated
// key, in order (the engine decides how they count); pseudo-headers are not
// metadata.
class HeaderListMap final : public authz::HeaderMap {
 public:
  explicit HeaderListMap(const proxy::HeaderList& headers)
      : headers_(headers) {}

  void ForEachValue(
      absl::string_view lowercase_name,
      absl::FunctionRef<bool(absl::string_view)> fn) const override {
    for (const proxy::Header& h : headers_) {
      if (h.name.empty() || h.name[0] == ':' || h.name != lowercase_name) {
        continue;
      }
      if (!fn(absl::string_view(h.value.data(), h.value.size()))) return;
    }
  }

 private:
  const proxy::HeaderList& headers_;
};

absl::string_view View(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

const char* ActionName(authz::Action action) {
  switch (action) {
    case meshguard::policy::v1::ALLOW:
      return "allow";
    case meshguard::policy::v1::DENY:
      return "deny";
    case meshguard::policy::v1::AUDIT:
      return "audit";
    default:
      return "unknown";
  }
}

// A caller-chosen string in a status message: bounded, so that the message
// always fits the caller's metadata limit (a 20 KB path made the denial
// itself fail with RESOURCE_EXHAUSTED).
std::string Shown(absl::string_view s) {
  constexpr size_t kMax = 256;
  if (s.size() <= kMax) return std::string(s);
  return absl::StrCat(s.substr(0, kMax), "... (", s.size(), " bytes)");
}

// "10.0.0.5:8080" or "[fd00::5]:8080", a port in 1..65535.
bool IsNumericHostPort(absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos) return false;
  absl::string_view host = address.substr(0, colon);
  int port = 0;
  if (!absl::SimpleAtoi(address.substr(colon + 1), &port) || port < 1 ||
      port > 65535) {
    return false;
  }
  unsigned char buf[sizeof(in6_addr)];
  if (absl::ConsumePrefix(&host, "[") && absl::ConsumeSuffix(&host, "]")) {
    return inet_pton(AF_INET6, std::string(host).c_str(), buf) == 1;
  }
  return inet_pton(AF_INET, std::string(host).c_str(), buf) == 1;
}

}  // namespace

absl::Status InboundFilter::OnRequest(const proxy::RequestInfo& request,
                                      proxy::HeaderList& headers) {
  if (!authz::IsCanonicalGrpcMethodPath(View(request.path))) {
    // Refused before the policy: rules match the path byte for byte, and
    // the app may read another spelling of it as a method a rule denies.
    if (request.filter_note != nullptr) {
      *request.filter_note = "deny|malformed_path";
    }
    return absl::PermissionDeniedError(absl::StrCat(
        "meshguard: :path \"", Shown(View(request.path)),
        "\" is not a gRPC method in its canonical form "
        "(/package.Service/Method); refused before authorization"));
  }
  std::shared_ptr<const authz::PolicySnapshot> snapshot = policy_->Current();
  HeaderListMap metadata(headers);
  authz::Request query;
  query.peer_spiffe_id = View(request.peer_identity);
  query.method = View(request.path);
  query.headers = &metadata;
  authz::Decision decision = snapshot->policy->Evaluate(query);
  for (const authz::AuditMatch& audit : decision.audit_matches) {
    const char* would = ActionName(audit.action);
    telemetry_->RecordAudit(audit.rule, would);
    util::LogLine("info", audit.dry_run ? "authz_dry_run" : "authz_audit")
        .Add("rule", audit.rule)
        .Add("would", would)
        .Add("peer", View(request.peer_identity))
        .Add("method", View(request.path))
        .Emit();
  }
  // The note outlives the snapshot's string views: copy the rule name.
  if (request.filter_note != nullptr) {
    *request.filter_note =
        absl::StrCat(decision.allowed ? "allow|" : "deny|", decision.rule);
  }
  if (decision.allowed) return absl::OkStatus();
  if (decision.rule_index < 0) {
    return absl::PermissionDeniedError(
        absl::StrCat("meshguard: ", View(request.peer_identity),
                     " may not call ", Shown(View(request.path)),
                     ": denied by the default policy (no rule allows it)"));
  }
  return absl::PermissionDeniedError(absl::StrCat(
      "meshguard: ", View(request.peer_identity), " may not call ",
      Shown(View(request.path)), ": denied by rule \"", decision.rule, "\""));
}

void InboundFilter::OnCallEnd(const proxy::CallSummary& call) {
  absl::string_view note = View(call.filter_note);
  size_t bar = note.find('|');
  CallRecord record;
  record.direction = "inbound";
  record.principal = View(call.peer_identity);
  record.decision =
      bar == absl::string_view::npos ? "none" : note.substr(0, bar);
  record.rule = bar == absl::string_view::npos ? "" : note.substr(bar + 1);
  telemetry_->Record(record, call);
}

void OutboundObserver::OnCallEnd(const proxy::CallSummary& call) {
  CallRecord record;
  record.direction = "outbound";
  record.principal = own_id_;
  record.decision = "none";
  telemetry_->Record(record, call);
}

absl::StatusOr<std::string> ResolveHostPort(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\" is not host:port"));
  }
  std::string host = address.substr(0, colon);
  std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[') return address;  // IPv6 literal
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* result = nullptr;
  int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &result);
  if (rc != 0 || result == nullptr) {
    return absl::UnavailableError(
        absl::StrCat("cannot resolve ", host, ": ", gai_strerror(rc)));
  }
  char buf[NI_MAXHOST];
  std::string numeric;
  for (addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, buf, sizeof(buf), nullptr, 0,
                    NI_NUMERICHOST) != 0) {
      continue;
    }
    if (ai->ai_family == AF_INET) {
      numeric = buf;
      break;
    }
    if (numeric.empty()) numeric = absl::StrCat("[", buf, "]");
  }
  freeaddrinfo(result);
  if (numeric.empty()) {
    return absl::UnavailableError(absl::StrCat("cannot resolve ", host));
  }
  return absl::StrCat(numeric, ":", port);
}

absl::StatusOr<std::unique_ptr<OutboundRouter>> OutboundRouter::Create(
    const meshguard::config::v1::SidecarConfig& config,
    std::string own_listener) {
  std::unique_ptr<OutboundRouter> router(new OutboundRouter());
  router->transparent_ = config.transparent();
  router->own_listener_ = std::move(own_listener);
  for (int i = 0; i < config.routes_size(); ++i) {
    const auto& route = config.routes(i);
    absl::StatusOr<std::string> upstream = ResolveHostPort(route.upstream());
    if (!upstream.ok()) {
      return absl::Status(
          upstream.status().code(),
          absl::StrCat("config field routes[", i,
                       "].upstream: ", upstream.status().message()));
    }
    proxy::UpstreamTarget target;
    target.address = *upstream;
    target.expected_spiffe_id = route.spiffe_id();
    target.use_tls = true;
    router->routes_[route.authority()] = target;
  }
  return router;
}

absl::StatusOr<proxy::UpstreamTarget> OutboundRouter::Route(
    const proxy::RequestInfo& request) {
  const absl::string_view authority = View(request.authority);
  auto it = routes_.find(authority);
  if (it == routes_.end()) {
    size_t colon = authority.rfind(':');
    if (colon != absl::string_view::npos) {
      it = routes_.find(authority.substr(0, colon));
    }
  }
  if (it != routes_.end()) return it->second;
  if (!transparent_) {
    return absl::NotFoundError(
        absl::StrCat("no route for authority \"", authority, "\""));
  }
  // Not redirected (the app dialed the listener itself): dialing the
  // "original destination" would loop back into this listener.
  const absl::string_view own_port =
      absl::string_view(own_listener_).substr(own_listener_.rfind(':'));
  auto to_self = [&](absl::string_view address) {
    return address == own_listener_ || (absl::StartsWith(address, "127.") &&
                                        absl::EndsWith(address, own_port));
  };
  const absl::string_view original = View(request.original_destination);
  proxy::UpstreamTarget target;
  target.use_tls = true;
  if (!original.empty() && !to_self(original)) {
    target.address = std::string(original);
    return target;
  }
  // Then the authority, when it is an address (names are not resolved per
  // call, which would block the worker: give them a route).
  if (IsNumericHostPort(authority) && !to_self(authority)) {
    target.address = std::string(authority);
    return target;
  }
  return absl::NotFoundError(absl::StrCat(
      "no route for authority \"", authority,
      "\", no original destination, and the authority is not an ip:port"));
}

}  // namespace meshguard::sidecar
