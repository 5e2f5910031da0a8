#include "identity/crypto/spiffe_id.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace meshguard::crypto {
namespace {

using ::testing::HasSubstr;

struct ValidCase {
  std::string id;
  std::string trust_domain;
  std::string path;
};

class SpiffeIdValidTest : public ::testing::TestWithParam<ValidCase> {};

TEST_P(SpiffeIdValidTest, Parses) {
  const ValidCase& c = GetParam();
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse(c.id);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->trust_domain(), c.trust_domain);
  EXPECT_EQ(id->path(), c.path);
  EXPECT_EQ(id->ToString(), c.id);
}

INSTANTIATE_TEST_SUITE_P(
    Spec, SpiffeIdValidTest,
    ::testing::Values(ValidCase{"spiffe://cluster.local/ns/shop/sa/frontend",
                                "cluster.local", "/ns/shop/sa/frontend"},
                      ValidCase{"spiffe://example.org/a", "example.org", "/a"},
                      ValidCase{"spiffe://td-1_x.y/Path.With-Mixed_Case/9",
                                "td-1_x.y", "/Path.With-Mixed_Case/9"},
                      ValidCase{"spiffe://a/...", "a", "/..."},
                      ValidCase{"spiffe://a/.hidden", "a", "/.hidden"}));

struct InvalidCase {
  std::string name;
  std::string id;
  std::string reason;  // substring of the error
};

class SpiffeIdInvalidTest : public ::testing::TestWithParam<InvalidCase> {};

TEST_P(SpiffeIdInvalidTest, RefusedWithReason) {
  const InvalidCase& c = GetParam();
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse(c.id);
  ASSERT_FALSE(id.ok()) << c.id;
  EXPECT_EQ(id.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(id.status().message()), HasSubstr(c.reason));
}

INSTANTIATE_TEST_SUITE_P(
    Spec, SpiffeIdInvalidTest,
    ::testing::Values(
        InvalidCase{"empty", "", "empty"},
        InvalidCase{"other_scheme", "https://cluster.local/ns/a/sa/b",
                    "scheme is not spiffe"},
        InvalidCase{"uppercase_scheme", "SPIFFE://cluster.local/ns/a/sa/b",
                    "scheme must be lowercase"},
        InvalidCase{"no_trust_domain", "spiffe:///ns/a",
                    "trust domain is empty"},
        InvalidCase{"uppercase_trust_domain", "spiffe://Cluster.local/a",
                    "uppercase"},
        InvalidCase{"port", "spiffe://cluster.local:8443/a", "port"},
        InvalidCase{"userinfo", "spiffe://user@cluster.local/a", "userinfo"},
        InvalidCase{"percent_encoded_td", "spiffe://clu%73ter.local/a",
                    "percent"},
        InvalidCase{"bad_td_char", "spiffe://cluster!local/a", "[a-z0-9.-_]"},
        InvalidCase{"no_path", "spiffe://cluster.local", "path is empty"},
        InvalidCase{"root_path", "spiffe://cluster.local/", "trailing"},
        InvalidCase{"trailing_slash", "spiffe://cluster.local/ns/a/",
                    "trailing"},
        InvalidCase{"empty_segment", "spiffe://cluster.local/ns//a",
                    "empty segment"},
        InvalidCase{"dot_segment", "spiffe://cluster.local/ns/./a", "'.'"},
        InvalidCase{"dotdot_segment", "spiffe://cluster.local/ns/../a", "'..'"},
        InvalidCase{"percent_in_path", "spiffe://cluster.local/a%20b",
                    "outside [a-zA-Z0-9.-_]"},
        InvalidCase{"space_in_path", "spiffe://cluster.local/a b",
                    "outside [a-zA-Z0-9.-_]"},
        InvalidCase{"query", "spiffe://cluster.local/a?x=1", "query"},
        InvalidCase{"fragment", "spiffe://cluster.local/a#x", "fragment"},
        InvalidCase{"too_long",
                    "spiffe://cluster.local/" + std::string(2048, 'a'),
                    "longer than 2048"}),
    [](const ::testing::TestParamInfo<InvalidCase>& info) {
      return info.param.name;
    });

TEST(SpiffeIdTest, AcceptsExactly2048Bytes) {
  std::string prefix = "spiffe://cluster.local/";
  std::string id = prefix + std::string(2048 - prefix.size(), 'a');
  ASSERT_EQ(id.size(), 2048u);
  EXPECT_TRUE(SpiffeId::Parse(id).ok());
}

TEST(SpiffeIdTest, ForServiceAccountBuildsAndSplits) {
  absl::StatusOr<SpiffeId> id =
      SpiffeId::ForServiceAccount("cluster.local", "shop", "frontend");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->ToString(), "spiffe://cluster.local/ns/shop/sa/frontend");
  EXPECT_EQ(id->Namespace(), "shop");
  EXPECT_EQ(id->ServiceAccount(), "frontend");
  EXPECT_TRUE(id->MemberOf("cluster.local"));
  EXPECT_FALSE(id->MemberOf("other.local"));
}

TEST(SpiffeIdTest, ForServiceAccountRefusesBadParts) {
  EXPECT_FALSE(SpiffeId::ForServiceAccount("cluster.local", "", "x").ok());
  EXPECT_FALSE(SpiffeId::ForServiceAccount("cluster.local", "x", "").ok());
  EXPECT_FALSE(SpiffeId::ForServiceAccount("cluster.local", "a/b", "x").ok());
  EXPECT_FALSE(SpiffeId::ForServiceAccount("Bad.TD", "a", "b").ok());
  EXPECT_FALSE(SpiffeId::ForServiceAccount("cluster.local", "..", "b").ok());
}

TEST(SpiffeIdTest, NamespaceEmptyForOtherShapes) {
  absl::StatusOr<SpiffeId> id = SpiffeId::Parse("spiffe://td/workload/x");
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(id->Namespace(), "");
  EXPECT_EQ(id->ServiceAccount(), "");
}

TEST(SpiffeIdTest, Equality) {
  EXPECT_EQ(*SpiffeId::Parse("spiffe://a/b"), *SpiffeId::Parse("spiffe://a/b"));
  EXPECT_NE(*SpiffeId::Parse("spiffe://a/b"), *SpiffeId::Parse("spiffe://a/B"));
}

}  // namespace
}  // namespace meshguard::crypto
