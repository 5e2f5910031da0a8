#include "identity/util/config_origins.h"

#include <gtest/gtest.h>

#include <string>

namespace meshguard::util {
namespace {

// The file set listeners and two routes; flags set listeners.inbound and
// appended routes[2].
ConfigOrigins FileAndFlags() {
  ConfigOrigins o;
  o.SetFile("/etc/sidecar.yaml", {{"listeners", 4},
                                  {"listeners.inbound", 5},
                                  {"listeners.admin", 6},
                                  {"routes[0]", 8},
                                  {"routes[0].upstream", 9},
                                  {"routes[1]", 10},
                                  {"ca.ca_bundle_file", 2}});
  o.SetByFlag("listeners.inbound", "--inbound-listen");
  o.SetByFlag("routes[2]", "--route \"a=b\"");
  return o;
}

TEST(ConfigOriginsTest, FieldErrorSaysWhereTheValueCameFrom) {
  const ConfigOrigins o = FileAndFlags();
  struct Case {
    const char* field;
    const char* want;
  };
  for (const Case& c : {
           Case{"listeners.admin",
                "/etc/sidecar.yaml:6: config field listeners.admin: bad"},
           // The flag overrode the file's line 5.
           Case{"listeners.inbound", "--inbound-listen: bad"},
           Case{"routes[0].upstream",
                "/etc/sidecar.yaml:9: config field routes[0].upstream: bad"},
           // Not in the file itself: its list element's line.
           Case{"routes[1].upstream",
                "/etc/sidecar.yaml:10: config field routes[1].upstream: bad"},
           Case{"routes[2].upstream",
                "--route \"a=b\": config field routes[2].upstream: bad"},
           // A default: no origin; an enclosing message is not blamed.
           Case{"listeners.outbound", "config field listeners.outbound: bad"},
           Case{"routes[3].upstream", "config field routes[3].upstream: bad"},
       }) {
    SCOPED_TRACE(c.field);
    absl::Status s = o.FieldError(c.field, "bad");
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(s.message(), c.want);
  }
}

TEST(ConfigOriginsTest, WhereIsTheFlagTheLineOrNothing) {
  const ConfigOrigins o = FileAndFlags();
  EXPECT_EQ(o.Where("listeners.inbound"), "--inbound-listen");
  EXPECT_EQ(o.Where("listeners.admin"), "/etc/sidecar.yaml:6");
  EXPECT_EQ(o.Where("routes[1].authority"), "/etc/sidecar.yaml:10");
  EXPECT_EQ(o.Where("listeners.outbound"), "");
  EXPECT_EQ(ConfigOrigins().Where("listeners.admin"), "");
}

TEST(ConfigOriginsTest, MissingNamesTheFileAndTheFlag) {
  ConfigOrigins with_file;
  with_file.SetFile("/etc/sidecar.yaml", {});
  EXPECT_EQ(
      with_file.Missing("ca.ca_bundle_file", "--ca-bundle", "roots").message(),
      "config field ca.ca_bundle_file (in /etc/sidecar.yaml) or "
      "--ca-bundle: required: roots");
  EXPECT_EQ(ConfigOrigins().Missing("data_dir", "--data-dir", "").message(),
            "config field data_dir or --data-dir: required");
  // In the file, but empty.
  EXPECT_EQ(
      FileAndFlags().Missing("ca.ca_bundle_file", "--ca-bundle", "").message(),
      "/etc/sidecar.yaml:2: config field ca.ca_bundle_file or --ca-bundle: "
      "required");
  EXPECT_EQ(ConfigOrigins().Missing("x", "--x", "").code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace meshguard::util
