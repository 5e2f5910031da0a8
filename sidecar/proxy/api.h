// The data plane's extension points: what a listener asks of the rest of the
// sidecar. The router and the request filter decide where a call goes and
// whether it may; ConnectionSecurity supplies TLS (the identity system
// implements it over the credential store).
//
// Threading: every hook is called on worker threads, possibly several at
// once, so implementations must be thread-safe. They run on the per-call
// path: they must not block.
#ifndef MESHGUARD_SIDECAR_PROXY_API_H_
#define MESHGUARD_SIDECAR_PROXY_API_H_

#include <openssl/ssl.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace meshguard::sidecar::proxy {

// One HTTP/2 header field, verbatim (binary "-bin" values stay base64 as
// gRPC put them on the wire; the proxy never decodes them).
struct Header {
  std::string name;
  std::string value;
};
using HeaderList = std::vector<Header>;

// Where a call is forwarded. Upstream connections are pooled per worker by
// the whole value, so calls for different expected identities never share a
// connection.
struct UpstreamTarget {
  std::string address;  // "ip:port" or "[ipv6]:port"; numeric only.
  // When non-empty, the upstream must authenticate as exactly this SPIFFE ID
  // (ConnectionSecurity::PeerIdentity checks it).
  std::string expected_spiffe_id;
  bool use_tls = false;

  bool operator==(const UpstreamTarget& o) const {
    return address == o.address && expected_spiffe_id == o.expected_spiffe_id &&
           use_tls == o.use_tls;
  }
  template <typename H>
  friend H AbslHashValue(H h, const UpstreamTarget& t) {
    return H::combine(std::move(h), t.address, t.expected_spiffe_id, t.use_tls);
  }
};

// What the router and the filter see of a call.
struct RequestInfo {
  std::string_view authority;  // :authority
  std::string_view path;       // :path, "/pkg.Service/Method" for gRPC
  // The downstream peer's authenticated identity; empty for plaintext.
  std::string_view peer_identity;
  // The local address the downstream connection arrived at ("ip:port"):
  // with iptables REDIRECT, the original destination.
  std::string_view original_destination;
  // Scratch space the filter may fill in OnRequest (e.g. its decision and
  // rule); handed back as CallSummary::filter_note. Owned by the call.
  std::string* filter_note = nullptr;
};

class Router {
 public:
  virtual ~Router() = default;
  // An error makes the proxy answer UNAVAILABLE "no route: <message>".
  virtual absl::StatusOr<UpstreamTarget> Route(const RequestInfo& request) = 0;
};

// How a call ended, for metrics and access logs.
struct CallSummary {
  std::string_view authority;
  std::string_view path;
  std::string_view peer_identity;
  // The grpc-status the client received: the upstream's (trailers, or a
  // trailers-only response) or the proxy's own reply. -1 when the call
  // ended in a reset without a status.
  int grpc_status = -1;
  // The proxy answered itself (denied, no route, connect or handshake
  // failure, upstream lost before answering).
  bool local_reply = false;
  absl::Duration duration;
  // DATA payload bytes received from the client / relayed back to it.
  uint64_t request_bytes = 0;
  uint64_t response_bytes = 0;
  // What the filter wrote into RequestInfo::filter_note.
  std::string_view filter_note;
};

class RequestFilter {
 public:
  virtual ~RequestFilter() = default;
  // Called once per call that reached OnRequest, when both of its streams
  // are closed. Runs on the worker thread; must not block.
  virtual void OnCallEnd(const CallSummary& call) {}
  // Called with the request's headers (pseudo-headers included, hop-by-hop
  // ones already removed). Returning a non-OK status denies the call: the
  // client gets a trailers-only response with that status code and message
  // and the upstream never sees the call. It may add, replace or remove
  // headers in `headers` (pseudo-headers must stay first).
  virtual absl::Status OnRequest(const RequestInfo& request,
                                 HeaderList& headers) = 0;
};

// The credentials a connection was authenticated with: the proxy GOAWAYs a
// connection before they expire, or when a newer trust bundle (a higher
// version) no longer accepts its peer, so that a connection never outlives
// its certificates.
struct CredentialInfo {
  uint64_t version = 0;
  absl::Time expires_at = absl::InfiniteFuture();
};

// What Proxy::RecheckPeersOlderThan did with the connections it checked.
struct RecheckCounts {
  int kept = 0;          // the peer passed under the new bundle
  int drained = 0;       // it did not: GOAWAY
  int in_handshake = 0;  // checked when the handshake completes
  // Peer chains verified for kept + drained: connections whose peers sent
  // the same chain (ConnectionSecurity::PeerChainKey) share one check.
  int chains_verified = 0;

  RecheckCounts& operator+=(const RecheckCounts& o) {
    kept += o.kept;
    drained += o.drained;
    in_handshake += o.in_handshake;
    chains_verified += o.chains_verified;
    return *this;
  }
};

class ConnectionSecurity {  // thread-safe; called on worker threads
 public:
  virtual ~ConnectionSecurity() = default;
  // nullptr = plaintext (h2c). The SSL* is owned by the caller after return.
  virtual SSL* NewServerSsl() = 0;
  virtual SSL* NewClientSsl(const UpstreamTarget& target) = 0;
  // After a completed handshake: the peer's identity, or an error that makes
  // the proxy close the connection (server side) / fail the calls with
  // UNAVAILABLE "handshake failure: ..." (client side).
  virtual absl::StatusOr<std::string> PeerIdentity(
      SSL* ssl, const UpstreamTarget* target_or_null) = 0;
  // After PeerIdentity succeeded: which credentials this connection uses and
  // when the first of its certificates (ours or the peer's) expires.
  virtual CredentialInfo Credentials(SSL* ssl) { return CredentialInfo(); }

  // After a failed handshake: why we refused the peer (empty message if we
  // did not; then TLS itself failed, or the peer refused us), and what we
  // refused: its chain (root, validity, CRL), its identity (an X.509-SVID
  // rule, the trust domain, not the expected SPIFFE ID), or its ALPN (no
  // h2). For the caller's error and the failure metrics.
  struct Refusal {
    enum class Kind { kNone, kChain, kIdentity, kAlpn };
    std::string message;
    Kind kind = Kind::kNone;
  };
  virtual Refusal HandshakeRefusal(SSL* ssl) { return Refusal(); }

  // The peer's chain of a connection made under an older trust bundle,
  // checked again under the credentials current now (the new bundle's CRL
  // may revoke it, or its root may be gone): for established connections
  // when a new bundle arrives, and for those whose handshake was under way
  // then, once it completes. A refusal (kind other than kNone) drains an
  // established connection, and closes one just handshaken (server side) /
  // fails its calls (client side), counted as the handshake refusal it is.
  virtual Refusal RecheckPeer(SSL* ssl) { return Refusal(); }
  // What RecheckPeer's verdict depends on besides the credentials: two
  // connections with the same key get the same verdict within one recheck
  // pass, so only one is checked. Empty: check every connection.
  virtual std::string PeerChainKey(SSL* ssl) { return std::string(); }
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_API_H_
