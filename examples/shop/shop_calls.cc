#include "examples/shop/shop_calls.h"

#include <chrono>
#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "examples/shop/shop_services.h"
#include "google/protobuf/repeated_field.h"

namespace meshguard::examples {
namespace {

using HopList = google::protobuf::RepeatedPtrField<shop::v1::Hop>;

void SetDeadline(grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        absl::ToChronoMilliseconds(kCallTimeout));
}

std::string Failure(const grpc::Status& status) {
  return absl::StrCat("FAILED ", StatusCodeName(status.error_code()), ": ",
                      status.error_message());
}

// "served by <id>" from the first hop, for one-line summaries.
std::string ServedBy(const HopList& trace) {
  if (trace.empty() || trace[0].served_by().empty()) return "";
  return absl::StrCat(" (served by ", trace[0].served_by(), ")");
}

// One line per hop: which identity each service saw calling it.
void PrintTrace(const HopList& trace) {
  for (const shop::v1::Hop& hop : trace) {
    if (hop.caller().empty()) {
      printf(
          "    %-10s was called directly, from outside the mesh (no "
          "x-forwarded-client-cert)\n",
          hop.service().c_str());
    } else {
      printf("    %-10s saw caller %s (its own sidecar: %s)\n",
             hop.service().c_str(), hop.caller().c_str(),
             hop.served_by().c_str());
    }
  }
}

}  // namespace

std::string StatusCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return absl::StrCat("CODE_", static_cast<int>(code));
  }
}

OrdersDriver::OrdersDriver(std::shared_ptr<grpc::Channel> orders,
                           absl::Duration interval)
    : orders_(shop::v1::Orders::NewStub(std::move(orders))),
      interval_(interval) {}

OrdersDriver::~OrdersDriver() {
  if (thread_.joinable()) Stop();
}

void OrdersDriver::Start() {
  thread_ = std::thread([this] { Run(); });
}

void OrdersDriver::Stop() {
  stop_.Notify();
  thread_.join();
  absl::MutexLock lock(&mu_);
  printf("frontend driver: %lld calls, %lld failed\n",
         static_cast<long long>(calls_), static_cast<long long>(failed_));
  fflush(stdout);
}

void OrdersDriver::Run() {
  for (int64_t n = 0; !stop_.HasBeenNotified(); ++n) {
    const bool ok = CallOnce(n);
    {
      absl::MutexLock lock(&mu_);
      ++calls_;
      if (!ok) ++failed_;
    }
    stop_.WaitForNotificationWithTimeout(interval_);
  }
}

bool OrdersDriver::CallOnce(int64_t n) {
  const std::string now =
      absl::FormatTime("%H:%M:%E3S", absl::Now(), absl::LocalTimeZone());
  grpc::ClientContext context;
  SetDeadline(&context);
  shop::v1::OrderResponse response;
  grpc::Status status;
  std::string method;
  // Create on even turns, then read that order back on odd ones.
  if (n % 2 == 0 || last_order_id_.empty()) {
    method = "orders.Create";
    shop::v1::CreateOrderRequest request;
    request.set_sku("book");
    request.set_quantity(1);
    status = orders_->Create(&context, request, &response);
    if (status.ok()) last_order_id_ = response.order().id();
  } else {
    method = "orders.Get";
    shop::v1::GetOrderRequest request;
    request.set_id(last_order_id_);
    status = orders_->Get(&context, request, &response);
  }
  if (status.ok()) {
    printf("%s frontend -> %s: OK order %s%s\n", now.c_str(), method.c_str(),
           response.order().id().c_str(), ServedBy(response.trace()).c_str());
  } else {
    printf("%s frontend -> %s: %s\n", now.c_str(), method.c_str(),
           Failure(status).c_str());
  }
  fflush(stdout);
  return status.ok();
}

absl::Status RunCall(const CallOptions& options) {
  const size_t dot = options.method.find('.');
  const std::string service = options.method.substr(0, dot);
  const std::string authority =
      options.authority.empty() ? service : options.authority;
  std::shared_ptr<grpc::Channel> channel =
      SidecarChannel(options.target, authority);
  grpc::ClientContext context;
  SetDeadline(&context);
  grpc::Status status;
  std::string result;
  const HopList* trace = nullptr;

  shop::v1::BuyResponse bought;
  shop::v1::OrderResponse order;
  shop::v1::ReserveResponse reserved;
  shop::v1::StockResponse stock;
  auto describe_order = [](const shop::v1::Order& o) {
    return absl::StrCat("order ", o.id(), " (", o.quantity(), " x ", o.sku(),
                        ", reservation ", o.reservation_id(), ")");
  };
  if (options.method == "frontend.Buy") {
    shop::v1::BuyRequest request;
    request.set_sku(options.sku);
    request.set_quantity(options.quantity);
    status =
        shop::v1::Frontend::NewStub(channel)->Buy(&context, request, &bought);
    result = describe_order(bought.order());
    trace = &bought.trace();
  } else if (options.method == "orders.Create") {
    shop::v1::CreateOrderRequest request;
    request.set_sku(options.sku);
    request.set_quantity(options.quantity);
    status =
        shop::v1::Orders::NewStub(channel)->Create(&context, request, &order);
    result = describe_order(order.order());
    trace = &order.trace();
  } else if (options.method == "orders.Get") {
    shop::v1::GetOrderRequest request;
    request.set_id(options.order_id);
    status = shop::v1::Orders::NewStub(channel)->Get(&context, request, &order);
    result = describe_order(order.order());
    trace = &order.trace();
  } else if (options.method == "inventory.Reserve") {
    shop::v1::ReserveRequest request;
    request.set_sku(options.sku);
    request.set_quantity(options.quantity);
    status = shop::v1::Inventory::NewStub(channel)->Reserve(&context, request,
                                                            &reserved);
    result = absl::StrCat("reservation ", reserved.reservation_id(), ", ",
                          reserved.remaining(), " left");
    trace = &reserved.trace();
  } else if (options.method == "inventory.Get") {
    shop::v1::GetStockRequest request;
    request.set_sku(options.sku);
    status =
        shop::v1::Inventory::NewStub(channel)->Get(&context, request, &stock);
    result = absl::StrCat(stock.available(), " x ", stock.sku(), " available");
    trace = &stock.trace();
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "--call ", options.method,
        ": want frontend.Buy, orders.Create, orders.Get, inventory.Reserve "
        "or inventory.Get"));
  }

  if (!status.ok()) {
    printf("%s -> %s: %s\n", options.caller.c_str(), options.method.c_str(),
           Failure(status).c_str());
    fflush(stdout);
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  printf("%s -> %s: OK %s\n", options.caller.c_str(), options.method.c_str(),
         result.c_str());
  PrintTrace(*trace);
  fflush(stdout);
  return absl::OkStatus();
}

}  // namespace meshguard::examples
