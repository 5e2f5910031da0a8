#include "examples/shop/shop_services.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace meshguard::examples {
namespace {

constexpr char kForwardedClientCert[] = "x-forwarded-client-cert";

std::string Unquote(absl::string_view value) {
  if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
    value = value.substr(1, value.size() - 2);
  }
  return std::string(value);
}

// One line per call served, with the caller's identity: the point of the
// demo is that the app learns it from its sidecar without any TLS code.
void LogServed(const shop::v1::Hop& hop, absl::string_view method,
               absl::string_view result) {
  const std::string caller =
      hop.caller().empty()
          ? std::string("outside the mesh (no x-forwarded-client-cert)")
          : hop.caller();
  printf("%s: %s from %s: %s\n", hop.service().c_str(),
         std::string(method).c_str(), caller.c_str(),
         std::string(result).c_str());
  fflush(stdout);
}

// Calls made while serving one end no later than it does.
void SetDeadline(const grpc::ServerContext& server,
                 grpc::ClientContext* client) {
  const auto limit = std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(kCallTimeout);
  client->set_deadline(std::min(server.deadline(), limit));
}

// A downstream failure, passed on with its code and where it happened.
grpc::Status Downstream(absl::string_view hop, const grpc::Status& status) {
  return grpc::Status(status.error_code(),
                      absl::StrCat(hop, ": ", status.error_message()));
}

}  // namespace

ForwardedClientCert ParseForwardedClientCert(absl::string_view value) {
  ForwardedClientCert out;
  // Elements are comma-separated; the last one is the nearest hop's. (A
  // quoted value could hold a comma; SPIFFE IDs and hashes cannot.)
  std::vector<absl::string_view> elements = absl::StrSplit(value, ',');
  absl::string_view element = elements.empty() ? value : elements.back();
  for (absl::string_view pair : absl::StrSplit(element, ';')) {
    pair = absl::StripAsciiWhitespace(pair);
    const size_t eq = pair.find('=');
    if (eq == absl::string_view::npos) continue;
    const absl::string_view key = pair.substr(0, eq);
    const std::string field = Unquote(pair.substr(eq + 1));
    if (absl::EqualsIgnoreCase(key, "By")) out.by = field;
    if (absl::EqualsIgnoreCase(key, "URI")) out.uri = field;
  }
  return out;
}

shop::v1::Hop HopOf(absl::string_view service,
                    const grpc::ServerContext& context) {
  shop::v1::Hop hop;
  hop.set_service(std::string(service));
  auto it = context.client_metadata().find(kForwardedClientCert);
  if (it != context.client_metadata().end()) {
    ForwardedClientCert xfcc = ParseForwardedClientCert(
        absl::string_view(it->second.data(), it->second.size()));
    hop.set_served_by(xfcc.by);
    hop.set_caller(xfcc.uri);
  }
  return hop;
}

std::shared_ptr<grpc::Channel> SidecarChannel(const std::string& sidecar,
                                              const std::string& authority) {
  grpc::ChannelArguments args;
  args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, authority);
  // The sidecar is on loopback; never send it through an http_proxy from
  // the environment.
  args.SetInt(GRPC_ARG_ENABLE_HTTP_PROXY, 0);
  return grpc::CreateCustomChannel(sidecar, grpc::InsecureChannelCredentials(),
                                   args);
}

grpc::Status InventoryService::Reserve(grpc::ServerContext* context,
                                       const shop::v1::ReserveRequest* request,
                                       shop::v1::ReserveResponse* response) {
  shop::v1::Hop hop = HopOf("inventory", *context);
  if (request->quantity() <= 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "quantity must be positive");
  }
  {
    absl::MutexLock lock(&mu_);
    int64_t& reserved = reserved_[request->sku()];
    if (reserved + request->quantity() > kInitialStock) {
      return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                          absl::StrCat("out of ", request->sku()));
    }
    reserved += request->quantity();
    response->set_reservation_id(absl::StrCat("r-", next_reservation_++));
    response->set_remaining(kInitialStock - reserved);
  }
  *response->add_trace() = hop;
  LogServed(hop, "Reserve",
            absl::StrCat(request->quantity(), " x ", request->sku(), " -> ",
                         response->reservation_id()));
  return grpc::Status::OK;
}

grpc::Status InventoryService::Get(grpc::ServerContext* context,
                                   const shop::v1::GetStockRequest* request,
                                   shop::v1::StockResponse* response) {
  shop::v1::Hop hop = HopOf("inventory", *context);
  {
    absl::MutexLock lock(&mu_);
    auto it = reserved_.find(request->sku());
    response->set_available(kInitialStock -
                            (it == reserved_.end() ? 0 : it->second));
  }
  response->set_sku(request->sku());
  *response->add_trace() = hop;
  LogServed(
      hop, "Get",
      absl::StrCat(response->available(), " x ", request->sku(), " available"));
  return grpc::Status::OK;
}

grpc::Status OrdersService::Get(grpc::ServerContext* context,
                                const shop::v1::GetOrderRequest* request,
                                shop::v1::OrderResponse* response) {
  shop::v1::Hop hop = HopOf("orders", *context);
  {
    absl::MutexLock lock(&mu_);
    auto it = orders_.find(request->id());
    if (it == orders_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          absl::StrCat("no order ", request->id()));
    }
    *response->mutable_order() = it->second;
  }
  *response->add_trace() = hop;
  LogServed(hop, "Get", absl::StrCat("order ", request->id()));
  return grpc::Status::OK;
}

grpc::Status OrdersService::Create(grpc::ServerContext* context,
                                   const shop::v1::CreateOrderRequest* request,
                                   shop::v1::OrderResponse* response) {
  shop::v1::Hop hop = HopOf("orders", *context);
  shop::v1::ReserveRequest reserve;
  reserve.set_sku(request->sku());
  reserve.set_quantity(request->quantity());
  shop::v1::ReserveResponse reserved;
  grpc::ClientContext call;
  SetDeadline(*context, &call);
  grpc::Status status = inventory_->Reserve(&call, reserve, &reserved);
  if (!status.ok()) return Downstream("orders -> inventory.Reserve", status);

  shop::v1::Order* order = response->mutable_order();
  order->set_sku(request->sku());
  order->set_quantity(request->quantity());
  order->set_reservation_id(reserved.reservation_id());
  {
    absl::MutexLock lock(&mu_);
    order->set_id(absl::StrCat("o-", next_order_++));
    orders_[order->id()] = *order;
  }
  *response->add_trace() = hop;
  for (const shop::v1::Hop& next : reserved.trace()) {
    *response->add_trace() = next;
  }
  LogServed(hop, "Create",
            absl::StrCat("order ", order->id(), " (", order->quantity(), " x ",
                         order->sku(), ", reservation ",
                         order->reservation_id(), ")"));
  return grpc::Status::OK;
}

grpc::Status FrontendService::Buy(grpc::ServerContext* context,
                                  const shop::v1::BuyRequest* request,
                                  shop::v1::BuyResponse* response) {
  shop::v1::Hop hop = HopOf("frontend", *context);
  shop::v1::CreateOrderRequest create;
  create.set_sku(request->sku());
  create.set_quantity(request->quantity() > 0 ? request->quantity() : 1);
  shop::v1::OrderResponse created;
  grpc::ClientContext call;
  SetDeadline(*context, &call);
  grpc::Status status = orders_->Create(&call, create, &created);
  if (!status.ok()) return Downstream("frontend -> orders.Create", status);

  *response->mutable_order() = created.order();
  *response->add_trace() = hop;
  for (const shop::v1::Hop& next : created.trace()) {
    *response->add_trace() = next;
  }
  LogServed(hop, "Buy", absl::StrCat("order ", created.order().id()));
  return grpc::Status::OK;
}

}  // namespace meshguard::examples
