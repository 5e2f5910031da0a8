#include "identity/util/flag_names.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "absl/flags/flag.h"

// Flags for the help tests, in absl's registry like a binary's own.
ABSL_FLAG(std::string, help_test_ca, "127.0.0.1:15012", "CA address.");
ABSL_FLAG(std::string, help_test_out_dir, "", "make: output directory.");
ABSL_FLAG(bool, help_test_live, false, "list: only live ones.");

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

std::optional<std::vector<std::string>> Help(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return HelpRequest(static_cast<int>(argv.size()), argv.data());
}

using Words = std::vector<std::string>;

TEST(HelpRequestTest, NamesTheCommandHelpIsAskedFor) {
  EXPECT_EQ(Help({"prog", "--help"}), Words{});
  EXPECT_EQ(Help({"prog", "help"}), Words{});
  EXPECT_EQ(Help({"prog", "thing", "make", "--help"}),
            (Words{"thing", "make"}));
  EXPECT_EQ(Help({"prog", "-h", "thing", "make"}), (Words{"thing", "make"}));
  EXPECT_EQ(Help({"prog", "help", "thing", "make"}), (Words{"thing", "make"}));
  EXPECT_EQ(Help({"prog", "-help", "thing"}), Words{"thing"});
  // --helpfull is the whole program's help whatever the command.
  EXPECT_EQ(Help({"prog", "thing", "--helpfull"}), Words{});
}

TEST(HelpRequestTest, TellsFlagValuesFromWordsWithTheRegistry) {
  // A string flag takes the next argument; a boolean does not.
  EXPECT_EQ(Help({"prog", "--help-test-ca", "x", "thing", "-h"}),
            Words{"thing"});
  EXPECT_EQ(Help({"prog", "--help_test_ca=x", "thing", "-h"}), Words{"thing"});
  EXPECT_EQ(Help({"prog", "--help-test-live", "thing", "--help"}),
            Words{"thing"});
  // A flag missing its value does not swallow --help.
  EXPECT_EQ(Help({"prog", "thing", "--help-test-out-dir", "--help"}),
            Words{"thing"});
  // "help" as a flag's value or a later word asks for nothing.
  EXPECT_EQ(Help({"prog", "--help-test-ca", "help"}), std::nullopt);
  EXPECT_EQ(Help({"prog", "thing", "inspect", "help"}), std::nullopt);
}

TEST(HelpRequestTest, NotAskedWithoutHelpOrAfterDoubleDash) {
  EXPECT_EQ(Help({"prog"}), std::nullopt);
  EXPECT_EQ(Help({"prog", "thing", "make", "--help-test-live"}), std::nullopt);
  EXPECT_EQ(Help({"prog", "thing", "--", "--help"}), std::nullopt);
  EXPECT_EQ(Help({"prog", "--", "help"}), std::nullopt);
}

TEST(FlagHelpTest, TextAndDefaultFromTheRegistry) {
  EXPECT_EQ(FlagHelp("help_test_ca"),
            "  --help-test-ca (default: 127.0.0.1:15012)\n"
            "      CA address.\n");
  EXPECT_EQ(FlagHelp("help-test-out-dir"),
            "  --help-test-out-dir\n      make: output directory.\n");
  EXPECT_EQ(FlagHelp("help_test_live"),
            "  --help-test-live (default: false)\n"
            "      list: only live ones.\n");
  EXPECT_EQ(FlagHelp("help_test_unknown"), "  --help-test-unknown\n");
}

const std::vector<CommandHelp>& TestCommands() {
  static const auto* commands = new std::vector<CommandHelp>{
      {"thing make",
       "thing make --help-test-out-dir O",
       "Makes a thing in O.\n",
       {"help_test_ca"}},
      {"thing list", "thing list [--help-test-live]", "Lists things.", {}},
      {"other", "other", "", {}},
  };
  return *commands;
}

const CommandFlags& TestCommandFlags() {
  static const auto* flags =
      new CommandFlags{{"help_test_out_dir", {"thing make"}},
                       {"help_test_live", {"thing list", "other"}}};
  return *flags;
}

TEST(FormatCommandHelpTest, UsageDescriptionOwnFlagsThenGlobalOnes) {
  EXPECT_EQ(FormatCommandHelp("prog", "thing make", TestCommands(),
                              TestCommandFlags()),
            "Usage: prog thing make --help-test-out-dir O\n"
            "\n"
            "Makes a thing in O.\n"
            "\n"
            "Flags:\n"
            "  --help-test-out-dir\n"
            "      make: output directory.\n"
            "\n"
            "Global flags:\n"
            "  --help-test-ca (default: 127.0.0.1:15012)\n"
            "      CA address.\n");
  // No global flags, no description: no empty sections.
  EXPECT_EQ(
      FormatCommandHelp("prog", "other", TestCommands(), TestCommandFlags()),
      "Usage: prog other\n"
      "\n"
      "Flags:\n"
      "  --help-test-live (default: false)\n"
      "      list: only live ones.\n");
}

TEST(FormatCommandHelpTest, FirstWordGivesEveryCommandUnderIt) {
  const std::string both =
      FormatCommandHelp("prog", "thing", TestCommands(), TestCommandFlags());
  EXPECT_THAT(both, ::testing::AllOf(
                        ::testing::StartsWith("Usage: prog thing make"),
                        ::testing::HasSubstr("\n\nUsage: prog thing list"),
                        ::testing::HasSubstr("Lists things.\n"),
                        ::testing::Not(::testing::HasSubstr("prog other"))));
  EXPECT_EQ(
      FormatCommandHelp("prog", "thin", TestCommands(), TestCommandFlags()),
      "");
  EXPECT_EQ(FormatCommandHelp("prog", "thing frob", TestCommands(),
                              TestCommandFlags()),
            "");
}

}  // namespace
}  // namespace meshguard::util
