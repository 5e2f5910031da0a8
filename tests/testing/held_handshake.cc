#include "tests/testing/held_handshake.h"

#include <poll.h>

namespace meshguard::testing {

bool HeldClientHello::Start(SSL* ssl, int fd, absl::Duration timeout) {
  ssl_ = ssl;
  socket_bio_ = BIO_new_socket(fd, BIO_NOCLOSE);
  BIO* nothing = BIO_new(BIO_s_mem());
  BIO_set_mem_eof_return(nothing, -1);
  SSL_set_bio(ssl_, nothing, socket_bio_);
  // Sends the ClientHello, then wants to read.
  if (SSL_connect(ssl_) != -1) return false;
  pollfd readable{fd, POLLIN, 0};
  return poll(&readable, 1,
              static_cast<int>(absl::ToInt64Milliseconds(timeout))) == 1;
}

void HeldClientHello::Resume() {
  BIO_up_ref(socket_bio_);
  SSL_set0_rbio(ssl_, socket_bio_);
}

}  // namespace meshguard::testing
