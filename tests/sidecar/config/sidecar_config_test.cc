#include "sidecar/config/sidecar_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>

#include "identity/util/yaml_config.h"

namespace meshguard::sidecar {
namespace {

using ::meshguard::config::v1::SidecarConfig;
using ::meshguard::util::ConfigOrigins;
using ::testing::HasSubstr;

SidecarConfig Valid() {
  SidecarConfig c;
  c.mutable_ca()->set_ca_bundle_file("/etc/meshguard/bundle.pem");
  c.mutable_ca()->set_join_token("mgjt_x");
  ApplySidecarDefaults(&c);
  return c;
}

TEST(SidecarConfigTest, DefaultsMatchTheDocumentation) {
  SidecarConfig c = Valid();
  EXPECT_EQ(c.trust_domain(), "cluster.local");
  EXPECT_EQ(c.ca().address(), "127.0.0.1:15012");
  EXPECT_EQ(c.listeners().outbound(), "127.0.0.1:15001");
  EXPECT_EQ(c.listeners().inbound(), "0.0.0.0:15006");
  EXPECT_EQ(c.listeners().admin(), "127.0.0.1:15000");
  EXPECT_EQ(c.app_address(), "127.0.0.1:8080");
  EXPECT_GE(c.workers(), 1u);
  EXPECT_EQ(ToAbsl(c.timeouts().connect()), absl::Seconds(5));
  EXPECT_EQ(ToAbsl(c.timeouts().drain()), absl::Seconds(15));
  EXPECT_DOUBLE_EQ(c.rotation().renew_fraction(), 0.5);
  EXPECT_EQ(c.access_log().path(), "stdout");
  EXPECT_TRUE(ValidateSidecarConfig(c).ok()) << ValidateSidecarConfig(c);
}

TEST(SidecarConfigTest, DefaultsKeepExplicitValues) {
  SidecarConfig c;
  c.mutable_listeners()->set_inbound("127.0.0.1:9999");
  c.set_workers(3);
  ApplySidecarDefaults(&c);
  EXPECT_EQ(c.listeners().inbound(), "127.0.0.1:9999");
  EXPECT_EQ(c.workers(), 3u);
}

struct BadCase {
  const char* name;
  std::function<void(SidecarConfig*)> mutate;
  const char* field;
};

class SidecarConfigBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(SidecarConfigBadTest, NamesTheField) {
  SidecarConfig c = Valid();
  GetParam().mutate(&c);
  absl::Status s = ValidateSidecarConfig(c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(GetParam().field));
}

INSTANTIATE_TEST_SUITE_P(
    Fields, SidecarConfigBadTest,
    ::testing::Values(
        BadCase{"bad_trust_domain",
                [](SidecarConfig* c) { c->set_trust_domain("Bad:TD"); },
                "trust_domain"},
        BadCase{
            "no_bundle",
            [](SidecarConfig* c) { c->mutable_ca()->clear_ca_bundle_file(); },
            "ca.ca_bundle_file"},
        BadCase{"no_credential",
                [](SidecarConfig* c) { c->mutable_ca()->clear_join_token(); },
                "bootstrap credential"},
        BadCase{"two_credentials",
                [](SidecarConfig* c) {
                  c->mutable_ca()->set_token_file("/var/run/token");
                },
                "bootstrap credential"},
        BadCase{"inbound_not_host_port",
                [](SidecarConfig* c) {
                  c->mutable_listeners()->set_inbound("15006");
                },
                "listeners.inbound"},
        BadCase{"app_port_zero",
                [](SidecarConfig* c) { c->set_app_address("127.0.0.1:0"); },
                "app_address"},
        BadCase{"port_too_big",
                [](SidecarConfig* c) {
                  c->mutable_listeners()->set_admin("127.0.0.1:70000");
                },
                "listeners.admin"},
        BadCase{"route_without_authority",
                [](SidecarConfig* c) {
                  c->add_routes()->set_upstream("127.0.0.1:15006");
                },
                "routes[0].authority"},
        BadCase{"route_bad_upstream",
                [](SidecarConfig* c) {
                  auto* r = c->add_routes();
                  r->set_authority("orders");
                  r->set_upstream("orders");
                },
                "routes[0].upstream"},
        BadCase{"route_bad_spiffe_id",
                [](SidecarConfig* c) {
                  auto* r = c->add_routes();
                  r->set_authority("orders");
                  r->set_upstream("127.0.0.1:1");
                  r->set_spiffe_id("https://x/y");
                },
                "routes[0].spiffe_id"},
        BadCase{"duplicate_route",
                [](SidecarConfig* c) {
                  for (int i = 0; i < 2; ++i) {
                    auto* r = c->add_routes();
                    r->set_authority("orders");
                    r->set_upstream("127.0.0.1:1");
                  }
                },
                "routes[1].authority"},
        BadCase{"route_spiffe_id_of_another_trust_domain",
                [](SidecarConfig* c) {
                  auto* r = c->add_routes();
                  r->set_authority("orders");
                  r->set_upstream("127.0.0.1:1");
                  r->set_spiffe_id("spiffe://other.example/ns/a/sa/b");
                },
                "routes[0].spiffe_id"},
        BadCase{"negative_ttl",
                [](SidecarConfig* c) {
                  c->mutable_ca()->mutable_ttl()->set_seconds(-5);
                },
                "ca.ttl"},
        BadCase{"sub_second_ttl",
                [](SidecarConfig* c) {
                  c->mutable_ca()->mutable_ttl()->set_nanos(500000000);
                },
                "ca.ttl"},
        BadCase{"negative_initial_backoff",
                [](SidecarConfig* c) {
                  c->mutable_rotation()->mutable_initial_backoff()->set_seconds(
                      -1);
                },
                "rotation.initial_backoff"},
        BadCase{"renew_fraction_one",
                [](SidecarConfig* c) {
                  c->mutable_rotation()->set_renew_fraction(1.0);
                },
                "rotation.renew_fraction"},
        BadCase{"jitter_too_big",
                [](SidecarConfig* c) {
                  c->mutable_rotation()->set_jitter_fraction(0.6);
                },
                "rotation.jitter_fraction"},
        BadCase{"sample_rate",
                [](SidecarConfig* c) {
                  c->mutable_access_log()->set_sample_rate(2);
                },
                "access_log.sample_rate"},
        BadCase{"negative_timeout",
                [](SidecarConfig* c) {
                  c->mutable_timeouts()->mutable_connect()->set_seconds(-1);
                },
                "timeouts.connect"},
        BadCase{"too_many_workers",
                [](SidecarConfig* c) { c->set_workers(1000); }, "workers"}),
    [](const auto& info) { return info.param.name; });

// Errors say where the bad value came from: the line of sidecar.yaml, or
// the flag that overrode the file (main.cc records which).
struct OriginCase {
  const char* name;
  const char* yaml;
  // Flags applied over the file, as main.cc does.
  std::function<void(SidecarConfig*, ConfigOrigins*)> flags;
  const char* message;
};

class SidecarConfigOriginTest : public ::testing::TestWithParam<OriginCase> {};

TEST_P(SidecarConfigOriginTest, SaysWhereTheValueCameFrom) {
  SidecarConfig c;
  util::FieldLines lines;
  absl::Status parsed =
      util::ParseYamlToMessage(GetParam().yaml, "sidecar.yaml", &c, &lines);
  ASSERT_TRUE(parsed.ok()) << parsed;
  ConfigOrigins origins;
  origins.SetFile("sidecar.yaml", std::move(lines));
  if (GetParam().flags) GetParam().flags(&c, &origins);
  ApplySidecarDefaults(&c);
  absl::Status s = ValidateSidecarConfig(c, origins);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), GetParam().message);
}

INSTANTIATE_TEST_SUITE_P(
    Origins, SidecarConfigOriginTest,
    ::testing::Values(
        OriginCase{"from_the_file",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n"
                   "  join_token: mgjt_x\n"
                   "listeners:\n"
                   "  inbound: nope\n",
                   nullptr,
                   "sidecar.yaml:5: config field listeners.inbound: \"nope\" "
                   "is not host:port"},
        OriginCase{"from_a_flag_over_the_file",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n"
                   "  join_token: mgjt_x\n"
                   "listeners:\n"
                   "  inbound: 127.0.0.1:15006\n",
                   [](SidecarConfig* c, ConfigOrigins* o) {
                     c->mutable_listeners()->set_inbound("nope");
                     o->SetByFlag("listeners.inbound", "--inbound-listen");
                   },
                   "--inbound-listen: \"nope\" is not host:port"},
        OriginCase{"missing_from_file_and_flag",
                   "ca:\n"
                   "  join_token: mgjt_x\n",
                   nullptr,
                   "config field ca.ca_bundle_file (in sidecar.yaml) or "
                   "--ca-bundle: required: the roots that authenticate the CA"},
        OriginCase{"empty_in_the_file",
                   "ca:\n"
                   "  join_token: mgjt_x\n"
                   "  ca_bundle_file: ''\n",
                   nullptr,
                   "sidecar.yaml:3: config field ca.ca_bundle_file or "
                   "--ca-bundle: required: the roots that authenticate the CA"},
        OriginCase{"no_credential",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n",
                   nullptr,
                   "config field ca.token_file / ca.join_token (in "
                   "sidecar.yaml) or --token-file / --join-token: required: "
                   "exactly one bootstrap credential"},
        OriginCase{"credential_in_file_and_flag",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n"
                   "  token_file: /var/run/token\n",
                   [](SidecarConfig* c, ConfigOrigins* o) {
                     c->mutable_ca()->set_join_token("mgjt_x");
                     o->SetByFlag("ca.join_token", "--join-token");
                   },
                   "--join-token: only one bootstrap credential may be given; "
                   "ca.token_file is set too (sidecar.yaml:3)"},
        OriginCase{"route_without_upstream_points_at_the_route",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n"
                   "  join_token: mgjt_x\n"
                   "routes:\n"
                   "  - authority: orders\n"
                   "    upstream: 127.0.0.1:1\n"
                   "  - authority: pay\n",
                   nullptr,
                   "sidecar.yaml:7: config field routes[1].upstream: \"\" is "
                   "not host:port"},
        OriginCase{"route_from_a_flag_after_those_of_the_file",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n"
                   "  join_token: mgjt_x\n"
                   "routes:\n"
                   "  - authority: orders\n"
                   "    upstream: 127.0.0.1:1\n",
                   [](SidecarConfig* c, ConfigOrigins* o) {
                     auto* r = c->add_routes();
                     r->set_authority("orders");
                     r->set_upstream("127.0.0.1:2");
                     o->SetByFlag("routes[1]",
                                  "--route \"orders=127.0.0.1:2\"");
                   },
                   "--route \"orders=127.0.0.1:2\": config field "
                   "routes[1].authority: \"orders\" appears twice"},
        // The file set only initial_backoff, above the default max_backoff.
        OriginCase{"backoff_blames_the_field_the_file_set",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n"
                   "  join_token: mgjt_x\n"
                   "rotation:\n"
                   "  initial_backoff: 120s\n",
                   nullptr,
                   "sidecar.yaml:5: config field rotation.initial_backoff: "
                   "must not exceed max_backoff (1m)"},
        OriginCase{"backoffs_both_in_the_file",
                   "ca:\n"
                   "  ca_bundle_file: /etc/meshguard/bundle.pem\n"
                   "  join_token: mgjt_x\n"
                   "rotation:\n"
                   "  initial_backoff: 120s\n"
                   "  max_backoff: 60s\n",
                   nullptr,
                   "sidecar.yaml:6: config field rotation.max_backoff: must be "
                   "at least initial_backoff"}),
    [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace meshguard::sidecar
