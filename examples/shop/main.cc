// shop_service: one binary for the three services of the example shop
// (shop.proto), and a one-shot caller. Parses flags and wires the parts.
//
//   shop_service --name orders --listen 127.0.0.1:15208 --sidecar
//   127.0.0.1:15201 shop_service --name frontend ... --drive-interval 500ms
//   shop_service --name frontend --call inventory.Get --sidecar 127.0.0.1:15101
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "examples/shop/shop_calls.h"
#include "examples/shop/shop_services.h"
#include "grpcpp/grpcpp.h"
#include "identity/util/flag_names.h"

ABSL_FLAG(std::string, name, "",
          "Which service to run: frontend, orders or inventory. With --call: "
          "who is calling, for the printed line (default: client).");
ABSL_FLAG(std::string, listen, "", "Where the service listens (h2c).");
ABSL_FLAG(std::string, sidecar, "",
          "This app's sidecar's outbound listener (h2c), for calls to other "
          "services.");
ABSL_FLAG(absl::Duration, drive_interval, absl::ZeroDuration(),
          "frontend: call orders.Create/orders.Get through the sidecar this "
          "often and print each result (0: off).");
ABSL_FLAG(std::string, call, "",
          "Make one call and exit: frontend.Buy, orders.Create, orders.Get, "
          "inventory.Reserve or inventory.Get.");
ABSL_FLAG(std::string, target, "",
          "--call: where to send it (default: --sidecar).");
ABSL_FLAG(std::string, authority, "",
          "--call: the :authority (default: the method's service name).");
ABSL_FLAG(std::string, sku, "book", "--call: the item.");
ABSL_FLAG(int32_t, quantity, 1, "--call: how many.");
ABSL_FLAG(std::string, order_id, "o-1", "--call orders.Get: the order.");

namespace {

constexpr char kUsage[] =
    "shop_service: the example shop of scripts/run-mesh.sh.\n\n"
    "Usage:\n"
    "  shop_service --name frontend|orders|inventory --listen HOST:PORT\n"
    "      --sidecar HOST:PORT [--drive-interval 500ms]\n"
    "  shop_service [--name CALLER] --call SERVICE.METHOD (--sidecar | "
    "--target) HOST:PORT\n\n"
    "Runs one service of the shop (shop.v1) in plain h2c behind its sidecar,\n"
    "logging each call with the caller's identity from\n"
    "x-forwarded-client-cert; or makes one call and prints what every hop\n"
    "saw.\n";

using meshguard::examples::FrontendService;
using meshguard::examples::InventoryService;
using meshguard::examples::OrdersDriver;
using meshguard::examples::OrdersService;
using meshguard::examples::SidecarChannel;

int Fail(const std::string& message) {
  fprintf(stderr, "shop_service: %s\n", message.c_str());
  return 2;
}

int Call() {
  meshguard::examples::CallOptions options;
  options.caller = absl::GetFlag(FLAGS_name).empty()
                       ? std::string("client")
                       : absl::GetFlag(FLAGS_name);
  options.method = absl::GetFlag(FLAGS_call);
  options.target = absl::GetFlag(FLAGS_target).empty()
                       ? absl::GetFlag(FLAGS_sidecar)
                       : absl::GetFlag(FLAGS_target);
  options.authority = absl::GetFlag(FLAGS_authority);
  options.sku = absl::GetFlag(FLAGS_sku);
  options.quantity = absl::GetFlag(FLAGS_quantity);
  options.order_id = absl::GetFlag(FLAGS_order_id);
  if (options.target.empty()) return Fail("--call needs --sidecar or --target");
  absl::Status status = meshguard::examples::RunCall(options);
  if (absl::IsInvalidArgument(status) &&
      status.message().rfind("--call", 0) == 0) {
    return Fail(std::string(status.message()));
  }
  return status.ok() ? 0 : 1;
}

int Serve() {
  const std::string name = absl::GetFlag(FLAGS_name);
  const std::string listen = absl::GetFlag(FLAGS_listen);
  const std::string sidecar = absl::GetFlag(FLAGS_sidecar);
  if (name != "frontend" && name != "orders" && name != "inventory") {
    return Fail(absl::StrCat("--name \"", name,
                             "\": want frontend, orders or inventory"));
  }
  if (listen.empty()) return Fail("--listen is required");
  if (sidecar.empty() && name != "inventory") {
    return Fail(absl::StrCat(name,
                             " calls other services: --sidecar is "
                             "required"));
  }

  // Block the stop signals in every thread (they inherit the mask), so that
  // main can wait for them and shut down in order.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  std::unique_ptr<grpc::Service> service;
  if (name == "inventory") {
    service = std::make_unique<InventoryService>();
  } else if (name == "orders") {
    service =
        std::make_unique<OrdersService>(SidecarChannel(sidecar, "inventory"));
  } else {
    service =
        std::make_unique<FrontendService>(SidecarChannel(sidecar, "orders"));
  }
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    return Fail(absl::StrCat("cannot listen on ", listen));
  }
  printf("%s listening on %s\n", name.c_str(), listen.c_str());
  fflush(stdout);

  std::unique_ptr<OrdersDriver> driver;
  const absl::Duration interval = absl::GetFlag(FLAGS_drive_interval);
  if (name == "frontend" && interval > absl::ZeroDuration()) {
    driver = std::make_unique<OrdersDriver>(SidecarChannel(sidecar, "orders"),
                                            interval);
    driver->Start();
  }

  int received = 0;
  sigwait(&stop_signals, &received);
  if (driver != nullptr) driver->Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  printf("%s stopped\n", name.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (meshguard::util::PrintHelpIfAsked(argc, argv, kUsage,
                                        "examples/shop/main.cc")) {
    return 0;
  }
  absl::SetProgramUsageMessage(kUsage);
  const std::vector<std::string> args =
      meshguard::util::ParseCommandLine(argc, argv);
  if (args.size() != 1) {
    return Fail(
        absl::StrCat("unexpected argument \"", args[1], "\" (try --help)"));
  }
  return absl::GetFlag(FLAGS_call).empty() ? Serve() : Call();
}
