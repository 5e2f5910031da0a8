#include "identity/util/flag_names.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace meshguard::util {
namespace {

std::vector<std::string> Normalize(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  std::vector<std::string> storage;
  std::vector<char*> out =
      NormalizeFlagNames(static_cast<int>(argv.size()), argv.data(), &storage);
  EXPECT_EQ(out.back(), nullptr);
  return std::vector<std::string>(out.begin(), out.end() - 1);
}

TEST(FlagNamesTest, DashesInNamesOnly) {
  EXPECT_THAT(
      Normalize({"prog", "--data-dir=/a-b", "--ca-bundle", "x-y.pem",
                 "-trust-domain=td", "cert", "request"}),
      ::testing::ElementsAre("prog", "--data_dir=/a-b", "--ca_bundle",
                             "x-y.pem", "-trust_domain=td", "cert", "request"));
}

TEST(FlagNamesTest, StopsAtDoubleDash) {
  EXPECT_THAT(Normalize({"prog", "--a-b", "--", "--c-d"}),
              ::testing::ElementsAre("prog", "--a_b", "--", "--c-d"));
}

TEST(FlagNamesTest, LeavesShortArgumentsAlone) {
  EXPECT_THAT(Normalize({"prog", "-", "--", "a-b"}),
              ::testing::ElementsAre("prog", "-", "--", "a-b"));
}

std::string Misplaced(std::vector<std::string> args,
                      const std::string& command) {
  const CommandFlags flags = {{"out_dir", {"cert request", "bundle fetch"}},
                              {"live", {"list"}}};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return MisplacedFlag(static_cast<int>(argv.size()), argv.data(), command,
                       flags);
}

TEST(MisplacedFlagTest, NamesTheFlagTheCommandAndWhereItBelongs) {
  EXPECT_EQ(Misplaced({"prog", "verify", "--out-dir", "o"}, "verify"),
            "--out-dir does not apply to verify (it is for bundle fetch, "
            "cert request)");
  // Every spelling of the name and of a boolean.
  EXPECT_THAT(Misplaced({"prog", "--out_dir=o", "x"}, "x"),
              ::testing::StartsWith("--out-dir does not apply to x"));
  EXPECT_THAT(Misplaced({"prog", "--nolive", "x"}, "x"),
              ::testing::StartsWith("--live does not apply to x"));
  EXPECT_THAT(Misplaced({"prog", "--live=false", "x"}, "x"),
              ::testing::StartsWith("--live does not apply to x"));
}

TEST(MisplacedFlagTest, AcceptsOwnAndGlobalFlagsAndStopsAtDoubleDash) {
  EXPECT_EQ(
      Misplaced({"prog", "--out-dir", "o", "--ca", "a", "bundle", "fetch"},
                "bundle fetch"),
      "");
  EXPECT_EQ(Misplaced({"prog", "--live", "list"}, "list"), "");
  EXPECT_EQ(Misplaced({"prog", "list", "--", "--out-dir"}, "list"), "");
  EXPECT_EQ(Misplaced({"prog", "-", "list"}, "list"), "");
}

}  // namespace
}  // namespace meshguard::util
