// A command-line client of the Echo test service, for tests and manual
// checks: sends `--count` unary Echo calls (or one ReturnStatus call) and
// prints the status and what the server saw of the caller.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "tests/testing/echo.grpc.pb.h"

ABSL_FLAG(std::string, target, "127.0.0.1:15001", "Where to connect (h2c).");
ABSL_FLAG(std::string, authority, "", ":authority to send (default: target).");
ABSL_FLAG(int, count, 1, "Calls to make.");
ABSL_FLAG(int, payload_size, 16, "Payload bytes per call.");
ABSL_FLAG(int, timeout_ms, 5000, "Deadline per call.");
ABSL_FLAG(std::string, header, "", "One request header, k=v.");

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  grpc::ChannelArguments args;
  if (!absl::GetFlag(FLAGS_authority).empty()) {
    args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, absl::GetFlag(FLAGS_authority));
  }
  auto channel = grpc::CreateCustomChannel(
      absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials(), args);
  auto stub = meshguard::testing::Echo::NewStub(channel);
  int failures = 0;
  for (int i = 0; i < absl::GetFlag(FLAGS_count); ++i) {
    grpc::ClientContext context;
    context.set_deadline(
        std::chrono::system_clock::now() +
        std::chrono::milliseconds(absl::GetFlag(FLAGS_timeout_ms)));
    const std::string header = absl::GetFlag(FLAGS_header);
    if (size_t eq = header.find('='); eq != std::string::npos) {
      context.AddMetadata(header.substr(0, eq), header.substr(eq + 1));
    }
    meshguard::testing::EchoRequest request;
    request.set_payload(std::string(absl::GetFlag(FLAGS_payload_size), 'x'));
    meshguard::testing::EchoResponse response;
    grpc::Status status = stub->Echo(&context, request, &response);
    if (status.ok()) {
      printf("OK xfcc=%s\n", response.forwarded_client_cert().c_str());
    } else {
      ++failures;
      printf("ERROR %d %s\n", static_cast<int>(status.error_code()),
             status.error_message().c_str());
    }
  }
  return failures == 0 ? 0 : 1;
}
