// The gRPC wire pieces of H2CaTransport, with tables of cases: refusals
// first (oversized, compressed, malformed), then what a real server sends.
#include "identity/client/grpc_wire.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace meshguard::client::wire {
namespace {

std::string Prefix(unsigned char flag, uint32_t length) {
  std::string out(1, static_cast<char>(flag));
  out.push_back(static_cast<char>(length >> 24));
  out.push_back(static_cast<char>((length >> 16) & 0xff));
  out.push_back(static_cast<char>((length >> 8) & 0xff));
  out.push_back(static_cast<char>(length & 0xff));
  return out;
}

// Feeds `chunks` in order; returns the messages and the first error.
struct Deframed {
  std::vector<std::string> messages;
  absl::Status status;
};
Deframed Deframe(const std::vector<std::string>& chunks, size_t max) {
  MessageDeframer deframer(max);
  Deframed out;
  for (const std::string& chunk : chunks) {
    out.status = deframer.Append(chunk, [&](absl::string_view m) {
      out.messages.emplace_back(m);
      return absl::OkStatus();
    });
    if (!out.status.ok()) break;
  }
  return out;
}

TEST(MessageDeframerTest, RefusesWhatItMustNotBuffer) {
  struct Case {
    const char* name;
    std::vector<std::string> chunks;
    absl::StatusCode code;
  } cases[] = {
      // Refused from the prefix alone, before any of the 4 GiB arrives.
      {"huge_length",
       {Prefix(0, 0xffffffff)},
       absl::StatusCode::kResourceExhausted},
      {"one_over_limit",
       {Prefix(0, 1025)},
       absl::StatusCode::kResourceExhausted},
      {"length_split_across_chunks",
       {Prefix(0, 2000).substr(0, 2), Prefix(0, 2000).substr(2)},
       absl::StatusCode::kResourceExhausted},
      {"compressed", {Prefix(1, 3) + "abc"}, absl::StatusCode::kInternal},
      {"bad_flag", {Prefix(7, 3) + "abc"}, absl::StatusCode::kInternal},
      {"second_message_oversized",
       {Prefix(0, 1) + "x" + Prefix(0, 5000)},
       absl::StatusCode::kResourceExhausted},
  };
  for (const Case& c : cases) {
    Deframed d = Deframe(c.chunks, 1024);
    EXPECT_EQ(d.status.code(), c.code) << c.name << ": " << d.status;
  }
}

TEST(MessageDeframerTest, AnErrorFromTheCallbackStopsIt) {
  MessageDeframer deframer(1024);
  int calls = 0;
  absl::Status s = deframer.Append(FrameMessage("a") + FrameMessage("b"),
                                   [&](absl::string_view) {
                                     ++calls;
                                     return absl::InternalError("no");
                                   });
  EXPECT_EQ(s.code(), absl::StatusCode::kInternal);
  EXPECT_EQ(calls, 1);
}

TEST(MessageDeframerTest, SplitsMessagesWhateverTheChunking) {
  const std::string stream = FrameMessage("hello") + FrameMessage("") +
                             FrameMessage(std::string(1024, 'z'));
  // Every chunk size, from byte by byte to all at once.
  for (size_t step = 1; step <= stream.size(); ++step) {
    std::vector<std::string> chunks;
    for (size_t i = 0; i < stream.size(); i += step) {
      chunks.push_back(stream.substr(i, step));
    }
    Deframed d = Deframe(chunks, 1024);
    ASSERT_TRUE(d.status.ok()) << "step " << step << ": " << d.status;
    ASSERT_EQ(d.messages.size(), 3u) << "step " << step;
    EXPECT_EQ(d.messages[0], "hello");
    EXPECT_EQ(d.messages[1], "");
    EXPECT_EQ(d.messages[2], std::string(1024, 'z'));
  }
}

TEST(MessageDeframerTest, KnowsWhenItHoldsAPartialMessage) {
  MessageDeframer deframer(1024);
  auto ignore = [](absl::string_view) { return absl::OkStatus(); };
  EXPECT_TRUE(deframer.AtMessageBoundary());
  ASSERT_TRUE(deframer.Append(Prefix(0, 4).substr(0, 3), ignore).ok());
  EXPECT_FALSE(deframer.AtMessageBoundary());
  ASSERT_TRUE(deframer.Append(Prefix(0, 4).substr(3), ignore).ok());
  EXPECT_FALSE(deframer.AtMessageBoundary()) << "prefix in, body missing";
  ASSERT_TRUE(deframer.Append("abcd", ignore).ok());
  EXPECT_TRUE(deframer.AtMessageBoundary());
}

TEST(FrameMessageTest, PrefixIsFlagThenBigEndianLength) {
  EXPECT_EQ(FrameMessage(""), std::string("\0\0\0\0\0", 5));
  EXPECT_EQ(FrameMessage(std::string(258, 'a')).substr(0, 5),
            std::string("\0\0\0\x01\x02", 5));
}

TEST(StatusFromTrailersTest, Table) {
  struct Case {
    std::optional<std::string> status;
    std::string message;
    absl::StatusCode code;
    std::string want_message;
  } cases[] = {
      // What a server must not send: UNKNOWN, as gRPC does.
      {std::nullopt, "", absl::StatusCode::kUnknown,
       "response ended without grpc-status"},
      {std::string(""), "", absl::StatusCode::kUnknown,
       "invalid grpc-status \"\": "},
      {std::string("17"), "x", absl::StatusCode::kUnknown,
       "invalid grpc-status \"17\": x"},
      {std::string("-1"), "", absl::StatusCode::kUnknown,
       "invalid grpc-status \"-1\": "},
      {std::string("3 "), "", absl::StatusCode::kUnknown,
       "invalid grpc-status \"3 \": "},
      {std::string("99999999999"), "", absl::StatusCode::kUnknown,
       "invalid grpc-status \"99999999999\": "},
      // What the CA sends.
      {std::string("0"), "", absl::StatusCode::kOk, ""},
      {std::string("16"), "join token already used",
       absl::StatusCode::kUnauthenticated, "join token already used"},
      {std::string("7"), "CSR names spiffe://x%2Fy%20%E2%9C%93",
       absl::StatusCode::kPermissionDenied,
       "CSR names spiffe://x/y \xE2\x9C\x93"},
      {std::string("14"), "", absl::StatusCode::kUnavailable, ""},
  };
  for (const Case& c : cases) {
    std::optional<absl::string_view> status;
    if (c.status.has_value()) status = *c.status;
    absl::Status s = StatusFromTrailers(status, c.message);
    EXPECT_EQ(s.code(), c.code) << c.status.value_or("(none)");
    EXPECT_EQ(s.message(), c.want_message) << c.status.value_or("(none)");
  }
}

TEST(PercentDecodeTest, Table) {
  struct Case {
    std::string in, out;
  } cases[] = {
      // Broken escapes are kept as they are (gRPC does the same).
      {"%", "%"},
      {"%4", "%4"},
      {"100%", "100%"},
      {"%zz", "%zz"},
      {"%g0", "%g0"},
      {"a%2", "a%2"},
      // Valid ones.
      {"", ""},
      {"plain text", "plain text"},
      {"%25", "%"},
      {"%0a%0D", "\n\r"},
      {"%00", std::string(1, '\0')},
      {"caf%C3%A9", "caf\xC3\xA9"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(PercentDecode(c.in), c.out) << c.in;
  }
}

TEST(EncodeGrpcTimeoutTest, Table) {
  struct Case {
    absl::Duration in;
    std::string out;
  } cases[] = {
      {absl::ZeroDuration(), "1n"},
      {-absl::Seconds(3), "1n"},
      {absl::Nanoseconds(1), "1n"},
      {absl::Nanoseconds(99999999), "99999999n"},
      // Rounded up, never down: the server must not give up first.
      {absl::Nanoseconds(100000001), "100001u"},
      {absl::Seconds(10), "10000000u"},
      {absl::Seconds(100), "100000m"},
      {absl::Hours(30), "108000S"},
      {absl::Hours(24 * 365 * 20), "10512000M"},
      {absl::InfiniteDuration(), "2562048H"},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(EncodeGrpcTimeout(c.in), c.out) << c.in;
  }
}

}  // namespace
}  // namespace meshguard::client::wire
