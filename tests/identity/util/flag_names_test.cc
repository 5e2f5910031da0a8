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

}  // namespace
}  // namespace meshguard::util
