// Header rules of the forwarder: which fields are hop-by-hop, and the gRPC
// trailers-only responses the proxy synthesizes for its own errors.
#ifndef MESHGUARD_SIDECAR_PROXY_HEADERS_H_
#define MESHGUARD_SIDECAR_PROXY_HEADERS_H_

#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "sidecar/proxy/api.h"

namespace meshguard::sidecar::proxy {

// Connection-specific fields (RFC 9113 8.2.2) never cross the proxy; "te"
// only as "trailers", which gRPC requires.
bool IsHopByHop(const Header& header);
// Removes hop-by-hop fields in place.
void RemoveHopByHop(HeaderList& headers);

// The value of the first `name` field, or empty.
std::string_view FindHeader(const HeaderList& headers, std::string_view name);
void RemoveHeader(HeaderList& headers, std::string_view name);
// Replaces every `name` field with one `name: value` (appended).
void SetHeader(HeaderList& headers, std::string_view name,
               std::string_view value);

// grpc-message encoding (gRPC HTTP/2 protocol spec): bytes outside
// 0x20..0x7E and '%' become %XX.
std::string PercentEncodeGrpcMessage(std::string_view message);

// A trailers-only gRPC response: ":status 200", "content-type:
// application/grpc", "grpc-status: <code>", "grpc-message: <encoded>".
HeaderList GrpcTrailersOnly(absl::StatusCode code, std::string_view message);
// The same status as trailers after a response has started.
HeaderList GrpcStatusTrailers(absl::StatusCode code, std::string_view message);

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_HEADERS_H_
