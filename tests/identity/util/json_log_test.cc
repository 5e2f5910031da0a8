#include "identity/util/json_log.h"

#include <gtest/gtest.h>
#include <stdio.h>

#include <cmath>
#include <limits>
#include <string>

#include "absl/time/time.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace meshguard::util {
namespace {

using ::google::protobuf::Struct;

// Parses a line with protobuf's JSON parser: what any consumer would do.
Struct Parse(const std::string& json) {
  Struct parsed;
  auto status = google::protobuf::util::JsonStringToMessage(json, &parsed);
  EXPECT_TRUE(status.ok()) << status << "\n" << json;
  return parsed;
}

const absl::Time kAt = absl::FromUnixMillis(1704067200123);  // 2024-01-01

TEST(JsonLogTest, StandardFieldsFirstInOrder) {
  LogLine line("info", "issued");
  line.Add("serial", "0a1b").AddTime("not_after", kAt);
  const std::string json = line.ToJson();
  EXPECT_EQ(json.rfind("{\"time\":\"", 0), 0u) << json;
  EXPECT_NE(json.find("\"level\":\"info\",\"event\":\"issued\",\"serial\":"
                      "\"0a1b\",\"not_after\":\"2024-01-01T00:00:00.123Z\"}"),
            std::string::npos)
      << json;
  Struct parsed = Parse(json);
  EXPECT_EQ(parsed.fields().size(), 5u);
}

TEST(JsonLogTest, AddingAKeyAgainReplacesItsValue) {
  LogLine line("info", "e");
  line.Add("k", "first").Add("other", true).Add("k", "second");
  Struct parsed = Parse(line.ToJson());
  EXPECT_EQ(parsed.fields().at("k").string_value(), "second");
  EXPECT_EQ(line.ToJson().find("first"), std::string::npos);
  EXPECT_LT(line.ToJson().find("\"k\""), line.ToJson().find("\"other\""));
}

TEST(JsonLogTest, NumbersAndBooleans) {
  LogLine line("info", "e");
  line.Add("port", 15012)
      .Add("big", int64_t{9007199254740993})  // 2^53 + 1: not a double
      .Add("negative", int64_t{-5})
      .Add("ratio", 0.1)
      .Add("third", 1.0 / 3)
      .Add("whole", 2.0)
      .Add("yes", true)
      .Add("no", false)
      .Add("nan", std::nan(""))
      .Add("inf", std::numeric_limits<double>::infinity())
      .Add("ninf", -std::numeric_limits<double>::infinity());
  const std::string json = line.ToJson();
  EXPECT_NE(json.find("\"port\":15012,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"big\":9007199254740993,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"ratio\":0.1,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"whole\":2,"), std::string::npos) << json;
  EXPECT_NE(json.find("\"nan\":\"NaN\""), std::string::npos) << json;
  Struct parsed = Parse(json);
  EXPECT_EQ(parsed.fields().at("negative").number_value(), -5);
  EXPECT_EQ(parsed.fields().at("third").number_value(), 1.0 / 3);
  EXPECT_TRUE(parsed.fields().at("yes").bool_value());
  EXPECT_FALSE(parsed.fields().at("no").bool_value());
  EXPECT_EQ(parsed.fields().at("inf").string_value(), "Infinity");
  EXPECT_EQ(parsed.fields().at("ninf").string_value(), "-Infinity");
}

TEST(JsonLogTest, StringsAreEscaped) {
  const std::string nasty =
      std::string("quote \" backslash \\ newline \n tab \t cr \r nul ") +
      std::string(1, '\0') + " bell \x07 del \x7f end";
  LogLine line("warn", "e");
  line.Add("message", nasty).Add("key \"with\" quotes", "v");
  const std::string json = line.ToJson();
  EXPECT_EQ(json.find('\n'), std::string::npos) << "a raw newline splits lines";
  Struct parsed = Parse(json);
  EXPECT_EQ(parsed.fields().at("message").string_value(), nasty);
  EXPECT_EQ(parsed.fields().at("key \"with\" quotes").string_value(), "v");
}

TEST(JsonLogTest, Utf8IsKeptAndInvalidBytesReplaced) {
  const std::string valid = "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x90";
  LogLine line("info", "e");
  line.Add("valid", valid)
      .Add("lone_continuation", "a\x80z")
      .Add("truncated", "a\xe2\x82")
      .Add("overlong", "\xc0\xaf")
      .Add("surrogate", "\xed\xa0\x80")
      .Add("too_high", "\xf4\x90\x80\x80");
  Struct parsed = Parse(line.ToJson());
  EXPECT_EQ(parsed.fields().at("valid").string_value(), valid);
  const std::string r = "\xef\xbf\xbd";  // U+FFFD
  EXPECT_EQ(parsed.fields().at("lone_continuation").string_value(),
            "a" + r + "z");
  EXPECT_EQ(parsed.fields().at("truncated").string_value(), "a" + r + r);
  EXPECT_EQ(parsed.fields().at("overlong").string_value(), r + r);
  EXPECT_EQ(parsed.fields().at("surrogate").string_value(), r + r + r);
  EXPECT_EQ(parsed.fields().at("too_high").string_value(), r + r + r + r);
}

TEST(JsonLogTest, EmitWritesOneLineToTheStream) {
  char* buffer = nullptr;
  size_t size = 0;
  FILE* stream = open_memstream(&buffer, &size);
  ASSERT_NE(stream, nullptr);
  SetLogStream(stream);
  LogLine("info", "first").Add("n", 1).Emit();
  LogLine("error", "second").Add("why", "a\nb").Emit();
  SetLogStream(nullptr);
  fclose(stream);
  const std::string out(buffer, size);
  free(buffer);
  const size_t newline = out.find('\n');
  ASSERT_NE(newline, std::string::npos);
  EXPECT_EQ(out.back(), '\n');
  EXPECT_EQ(out.find('\n', newline + 1), out.size() - 1) << out;
  EXPECT_EQ(Parse(out.substr(0, newline)).fields().at("event").string_value(),
            "first");
  Struct second = Parse(out.substr(newline + 1, out.size() - newline - 2));
  EXPECT_EQ(second.fields().at("why").string_value(), "a\nb");
  EXPECT_EQ(second.fields().at("level").string_value(), "error");
}

}  // namespace
}  // namespace meshguard::util
