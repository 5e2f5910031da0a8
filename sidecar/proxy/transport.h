// The two seams between the HTTP/2 state machine and the event loop, so that
// the forwarding logic runs against fakes in unit tests (no sockets).
//
// Threading: both are used by exactly one thread, the owning worker's.
#ifndef MESHGUARD_SIDECAR_PROXY_TRANSPORT_H_
#define MESHGUARD_SIDECAR_PROXY_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>

namespace meshguard::sidecar::proxy {

// A byte stream to one peer (a socket, a TLS connection, or a test pipe).
class Transport {
 public:
  virtual ~Transport() = default;
  // Queues bytes for the peer; never blocks, always accepts.
  virtual void Write(const uint8_t* data, size_t size) = 0;
  // Bytes accepted by Write and not yet handed to the peer. The session
  // stops producing frames above a watermark, which is what turns a slow
  // reader into withheld WINDOW_UPDATEs for the other side.
  virtual size_t BufferedWriteBytes() const = 0;
  virtual void SetReadEnabled(bool enabled) = 0;
};

// Something deferred-deletable.
class Deletable {
 public:
  virtual ~Deletable() = default;
};

// Runs work later on the same thread, after the current callback returns.
// Used to break re-entrancy: an object may be asked to go away from inside
// one of its own callbacks.
class Dispatcher {
 public:
  virtual ~Dispatcher() = default;
  virtual void Post(std::function<void()> fn) = 0;
  // Destroys `object` after all work posted so far has run.
  virtual void DeferredDelete(std::unique_ptr<Deletable> object) = 0;
};

}  // namespace meshguard::sidecar::proxy

#endif  // MESHGUARD_SIDECAR_PROXY_TRANSPORT_H_
