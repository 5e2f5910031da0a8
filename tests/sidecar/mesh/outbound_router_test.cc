// Where the outbound listener sends a call: configured routes by
// :authority, then (transparent mode only) the original destination, then
// an ip:port authority; never back into its own listener.
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/config.pb.h"
#include "sidecar/mesh/filters.h"

namespace meshguard::sidecar {
namespace {

using ::meshguard::config::v1::SidecarConfig;
using ::testing::HasSubstr;

constexpr char kOwnListener[] = "127.0.0.1:15001";

std::unique_ptr<OutboundRouter> Router(bool transparent) {
  SidecarConfig config;
  config.set_transparent(transparent);
  auto* route = config.add_routes();
  route->set_authority("orders.shop");
  route->set_upstream("127.0.0.1:16006");
  route->set_spiffe_id("spiffe://cluster.local/ns/shop/sa/orders");
  absl::StatusOr<std::unique_ptr<OutboundRouter>> r =
      OutboundRouter::Create(config, kOwnListener);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? std::move(*r) : nullptr;
}

absl::StatusOr<proxy::UpstreamTarget> RouteOf(OutboundRouter& router,
                                              std::string_view authority,
                                              std::string_view original) {
  proxy::RequestInfo request;
  request.authority = authority;
  request.path = "/pkg.Svc/M";
  request.original_destination = original;
  return router.Route(request);
}

TEST(OutboundRouterTest, RouteByAuthorityWithOrWithoutPort) {
  for (bool transparent : {false, true}) {
    std::unique_ptr<OutboundRouter> router = Router(transparent);
    for (std::string_view authority : {"orders.shop", "orders.shop:8080"}) {
      absl::StatusOr<proxy::UpstreamTarget> t =
          RouteOf(*router, authority, "10.0.0.9:8080");
      ASSERT_TRUE(t.ok()) << t.status();
      EXPECT_EQ(t->address, "127.0.0.1:16006");
      EXPECT_EQ(t->expected_spiffe_id,
                "spiffe://cluster.local/ns/shop/sa/orders");
      EXPECT_TRUE(t->use_tls);
    }
  }
}

TEST(OutboundRouterTest, WithoutTransparentModeAnUnknownAuthorityIsRefused) {
  std::unique_ptr<OutboundRouter> router = Router(false);
  absl::StatusOr<proxy::UpstreamTarget> t =
      RouteOf(*router, "10.0.0.5:8080", "10.0.0.5:8080");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(t.status().message(), HasSubstr("\"10.0.0.5:8080\""));
}

TEST(OutboundRouterTest, TransparentDialsTheOriginalDestinationFirst) {
  std::unique_ptr<OutboundRouter> router = Router(true);
  absl::StatusOr<proxy::UpstreamTarget> t =
      RouteOf(*router, "inventory.shop:8080", "10.0.0.7:8080");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->address, "10.0.0.7:8080");
  EXPECT_TRUE(t->use_tls);
  EXPECT_EQ(t->expected_spiffe_id, "") << "any ID of the trust domain";
}

TEST(OutboundRouterTest, TransparentFallsBackToAnAddressAuthority) {
  std::unique_ptr<OutboundRouter> router = Router(true);
  // Not redirected: the app dialed the listener itself, so the "original
  // destination" is the listener.
  for (std::string_view authority : {"10.0.0.5:8080", "[fd00::5]:8080"}) {
    absl::StatusOr<proxy::UpstreamTarget> t =
        RouteOf(*router, authority, kOwnListener);
    ASSERT_TRUE(t.ok()) << authority << ": " << t.status();
    EXPECT_EQ(t->address, authority);
    EXPECT_TRUE(t->use_tls);
  }
}

TEST(OutboundRouterTest, TransparentNeverLoopsIntoItsOwnListener) {
  std::unique_ptr<OutboundRouter> router = Router(true);
  for (std::string_view authority :
       {std::string_view(kOwnListener), std::string_view("127.0.0.2:15001")}) {
    absl::StatusOr<proxy::UpstreamTarget> t =
        RouteOf(*router, authority, kOwnListener);
    EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound) << authority;
  }
}

TEST(OutboundRouterTest, TransparentDoesNotResolveNamesPerCall) {
  std::unique_ptr<OutboundRouter> router = Router(true);
  for (std::string_view authority :
       {"inventory.shop:8080", "inventory.shop", "10.0.0.5", "10.0.0.5:0",
        "10.0.0.5:70000", "[fd00::5:8080", "300.1.1.1:80"}) {
    absl::StatusOr<proxy::UpstreamTarget> t = RouteOf(*router, authority, "");
    EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound) << authority;
    EXPECT_THAT(t.status().message(), HasSubstr("not an ip:port")) << authority;
  }
}

}  // namespace
}  // namespace meshguard::sidecar
