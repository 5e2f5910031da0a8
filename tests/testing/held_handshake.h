// A TLS client whose handshake stops right after its ClientHello: the
// server has answered and waits for the client's certificate and Finished,
// for as long as the test needs (to change something under a handshake in
// progress). The server's answer is read from an empty buffer until
// Resume, so the stop does not depend on how fast the server is.
#ifndef MESHGUARD_TESTS_TESTING_HELD_HANDSHAKE_H_
#define MESHGUARD_TESTS_TESTING_HELD_HANDSHAKE_H_

#include <openssl/ssl.h>

#include "absl/time/time.h"

namespace meshguard::testing {

class HeldClientHello {
 public:
  // Sends `ssl`'s ClientHello on `fd` (connected; `ssl` in connect state,
  // not yet bound to a socket) and waits up to `timeout` for the server's
  // answer to arrive, unread. False if none came (or the handshake did not
  // stop there).
  bool Start(SSL* ssl, int fd, absl::Duration timeout);
  // From now on `ssl` reads the server's answer from the socket; the
  // caller goes on with SSL_connect.
  void Resume();

 private:
  SSL* ssl_ = nullptr;
  BIO* socket_bio_ = nullptr;  // owned by ssl_
};

}  // namespace meshguard::testing

#endif  // MESHGUARD_TESTS_TESTING_HELD_HANDSHAKE_H_
