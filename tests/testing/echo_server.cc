// Runs the test echo service: echo_server --listen=127.0.0.1:0
// Prints "listening on PORT" once it accepts calls, so tests can read it.
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "tests/testing/echo_service.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0",
          "address to listen on (h2c); port 0 picks a free port");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  auto server =
      meshguard::testing::EchoServer::Start(absl::GetFlag(FLAGS_listen));
  if (!server.ok()) {
    std::cerr << server.status() << "\n";
    return 1;
  }
  std::cout << "listening on " << (*server)->port() << std::endl;
  (*server)->Wait();
  return 0;
}
