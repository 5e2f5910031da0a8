#include "identity/ca/issuance_store.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace meshguard::ca {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

constexpr absl::string_view kFrontend =
    "spiffe://cluster.local/ns/shop/sa/frontend";
constexpr absl::string_view kOrders =
    "spiffe://cluster.local/ns/shop/sa/orders";

// A fixed "now" for every test: 2024-01-01T00:00:00Z.
const absl::Time kNow = absl::FromUnixSeconds(1704067200);

// A fake SHA-256 hex digest, distinct per n.
std::string Hash(int n) { return absl::StrFormat("%064x", n + 1); }

class IssuanceStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = absl::StrCat(
        ::testing::TempDir(), "/issuance_store_test_",
        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    ASSERT_EQ(mkdir(dir_.c_str(), 0700), 0) << dir_;
    path_ = dir_ + "/ca.db";
    Reopen();
  }

  void Reopen() {
    store_.reset();
    absl::StatusOr<std::unique_ptr<IssuanceStore>> store =
        IssuanceStore::Open(path_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(*store);
  }

  // A record issued `age` before kNow, valid for `ttl` from then.
  static IssuanceRecord Record(absl::string_view serial,
                               absl::string_view spiffe_id,
                               absl::Duration age = absl::ZeroDuration(),
                               absl::Duration ttl = absl::Hours(1)) {
    IssuanceRecord r;
    r.serial = std::string(serial);
    r.spiffe_id = std::string(spiffe_id);
    r.issued_at = kNow - age;
    r.not_before = r.issued_at - absl::Minutes(1);
    r.not_after = r.issued_at + ttl;
    r.auth_method = std::string(kAuthK8sToken);
    r.requester = "system:serviceaccount:shop:frontend";
    return r;
  }

  void MustRecord(const IssuanceRecord& r) {
    absl::Status status = store_->RecordIssuance(r);
    ASSERT_TRUE(status.ok()) << status;
  }

  static std::vector<std::string> Serials(
      const std::vector<IssuanceRecord>& records) {
    std::vector<std::string> serials;
    for (const IssuanceRecord& r : records) serials.push_back(r.serial);
    return serials;
  }

  std::string dir_;
  std::string path_;
  std::unique_ptr<IssuanceStore> store_;
};

TEST_F(IssuanceStoreTest, RecordRoundTrips) {
  IssuanceRecord r = Record("1a2b", kFrontend);
  // Microsecond precision survives; see the header.
  r.issued_at += absl::Microseconds(123);
  r.auth_method = std::string(kAuthJoinToken);
  MustRecord(r);

  absl::StatusOr<std::optional<IssuanceRecord>> got = store_->Get("1a2b");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  const IssuanceRecord& g = **got;
  EXPECT_EQ(g.serial, "1a2b");
  EXPECT_EQ(g.spiffe_id, kFrontend);
  EXPECT_EQ(g.not_before, r.not_before);
  EXPECT_EQ(g.not_after, r.not_after);
  EXPECT_EQ(g.issued_at, r.issued_at);
  EXPECT_EQ(g.auth_method, "join_token");
  EXPECT_EQ(g.requester, r.requester);
  EXPECT_FALSE(g.revoked_at.has_value());
  EXPECT_EQ(g.revocation_reason, "");

  // And after a reopen.
  Reopen();
  got = store_->Get("1a2b");
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_TRUE(got->has_value());
  EXPECT_EQ((*got)->issued_at, r.issued_at);

  absl::StatusOr<bool> revoked = store_->IsRevoked("1a2b");
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_FALSE(*revoked);
}

TEST_F(IssuanceStoreTest, GetUnknownSerialIsEmpty) {
  absl::StatusOr<std::optional<IssuanceRecord>> got = store_->Get("ffff");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_FALSE(got->has_value());

  absl::StatusOr<bool> revoked = store_->IsRevoked("ffff");
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(revoked.status().message()), HasSubstr("ffff"));
}

TEST_F(IssuanceStoreTest, DuplicateSerialIsAlreadyExists) {
  MustRecord(Record("abc", kFrontend));
  absl::Status status = store_->RecordIssuance(Record("abc", kOrders));
  EXPECT_EQ(status.code(), absl::StatusCode::kAlreadyExists) << status;
  EXPECT_THAT(std::string(status.message()), HasSubstr("abc"));
  // The first record is untouched.
  EXPECT_EQ((*store_->Get("abc"))->spiffe_id, kFrontend);
}

TEST_F(IssuanceStoreTest, RefusesMalformedRecords) {
  IssuanceRecord r = Record("", kFrontend);
  EXPECT_EQ(store_->RecordIssuance(r).code(),
            absl::StatusCode::kInvalidArgument);
  r = Record("01", "");
  EXPECT_EQ(store_->RecordIssuance(r).code(),
            absl::StatusCode::kInvalidArgument);
  r = Record("02", kFrontend);
  r.auth_method = "password";
  absl::Status status = store_->RecordIssuance(r);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("password"));
}

// Many callers at once: every row lands, each caller told the truth.
TEST_F(IssuanceStoreTest, ConcurrentRecordsAllLand) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      while (!go.load()) std::this_thread::yield();
      for (int i = 0; i < kPerThread; ++i) {
        absl::Status status = store_->RecordIssuance(
            Record(absl::StrFormat("%02x%04x", t, i), kFrontend));
        EXPECT_TRUE(status.ok()) << status;
      }
    });
  }
  go.store(true);
  for (std::thread& t : threads) t.join();

  const IssuanceStore::CommitStats stats = store_->commit_stats();
  EXPECT_EQ(stats.rows, kThreads * kPerThread);
  EXPECT_GE(stats.commits, 1);
  EXPECT_LE(stats.commits, stats.rows);
  Reopen();
  IssuanceStore::ListFilter all;
  all.limit = 1000;
  absl::StatusOr<std::vector<IssuanceRecord>> listed = store_->List(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->size(), static_cast<size_t>(kThreads * kPerThread));
}

// Holds SQLite's write lock on `path` from another connection until
// Release(), so that the store's next commit waits (busy_timeout) and
// callers arriving meanwhile queue up behind it.
class WriteLockHolder {
 public:
  explicit WriteLockHolder(const std::string& path) {
    sqlite3* raw = nullptr;
    EXPECT_EQ(sqlite3_open(path.c_str(), &raw), SQLITE_OK);
    db_.reset(raw);
    EXPECT_EQ(
        sqlite3_exec(db_.get(), "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
        SQLITE_OK)
        << sqlite3_errmsg(db_.get());
  }
  void Release() {
    EXPECT_EQ(sqlite3_exec(db_.get(), "COMMIT", nullptr, nullptr, nullptr),
              SQLITE_OK)
        << sqlite3_errmsg(db_.get());
  }

 private:
  struct Closer {
    void operator()(sqlite3* db) const { sqlite3_close(db); }
  };
  std::unique_ptr<sqlite3, Closer> db_;
};

// While one commit waits for the disk (here: for another connection's write
// lock), the callers that arrive share the next transaction; a duplicate
// serial inside that group fails alone.
TEST_F(IssuanceStoreTest, WaitingCallersCommitTogether) {
  WriteLockHolder lock(path_);
  // The first caller takes the head of the queue and waits inside SQLite.
  std::vector<std::thread> threads;
  std::vector<absl::Status> results(8);
  threads.emplace_back(
      [&] { results[0] = store_->RecordIssuance(Record("00", kFrontend)); });
  absl::SleepFor(absl::Milliseconds(200));
  // Seven more queue behind it; two of them ask for the same serial.
  const std::vector<std::string> serials = {"00", "01", "02", "03",
                                            "04", "05", "05", "06"};
  for (int i = 1; i < 8; ++i) {
    threads.emplace_back([&, i] {
      results[i] = store_->RecordIssuance(Record(serials[i], kOrders));
    });
  }
  absl::SleepFor(absl::Milliseconds(500));
  lock.Release();
  for (std::thread& t : threads) t.join();

  EXPECT_TRUE(results[0].ok()) << results[0];
  int ok = 0;
  int already_exists = 0;
  for (int i = 1; i < 8; ++i) {
    if (results[i].ok()) ++ok;
    if (absl::IsAlreadyExists(results[i])) ++already_exists;
  }
  EXPECT_EQ(ok, 6);              // 01, 02, 03, 04, 06 and one of the 05s
  EXPECT_EQ(already_exists, 1);  // the other 05
  // The serial recorded by the first caller is untouched by the duplicate.
  EXPECT_EQ((*store_->Get("00"))->spiffe_id, kFrontend);
  const IssuanceStore::CommitStats stats = store_->commit_stats();
  EXPECT_EQ(stats.rows, 7);
  // Without grouping, seven rows would take seven commits.
  EXPECT_LT(stats.commits, 7) << "no group commit";
  Reopen();
  for (const std::string& serial : serials) {
    absl::StatusOr<std::optional<IssuanceRecord>> got = store_->Get(serial);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->has_value()) << serial;
  }
}

// The committer-thread path: each callback gets what RecordIssuance would
// have returned, only after the row is durable, and rows queued while a
// commit waits share the next transaction.
TEST_F(IssuanceStoreTest, AsyncRecordsAnswerAfterCommitInGroups) {
  WriteLockHolder lock(path_);
  absl::Mutex mu;
  std::vector<std::pair<std::string, absl::Status>> answers;
  auto record = [&](const std::string& serial) {
    store_->RecordIssuanceAsync(
        Record(serial, kOrders), [&, serial](absl::Status status) {
          absl::MutexLock l(&mu);
          answers.emplace_back(serial, std::move(status));
        });
  };
  record("a0");  // the committer takes it and waits for the lock
  absl::SleepFor(absl::Milliseconds(200));
  for (const char* serial : {"a1", "a2", "a3", "a3", "a4"}) record(serial);
  absl::SleepFor(absl::Milliseconds(300));
  {
    absl::MutexLock l(&mu);
    EXPECT_THAT(answers, IsEmpty()) << "answered before the commit";
  }
  lock.Release();
  {
    absl::MutexLock l(&mu);
    auto all = [&]() { return answers.size() == 6; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
  }
  int ok = 0;
  int already_exists = 0;
  for (const auto& [serial, status] : answers) {
    if (status.ok()) ++ok;
    if (absl::IsAlreadyExists(status)) {
      ++already_exists;
      EXPECT_EQ(serial, "a3");
    }
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(already_exists, 1);
  const IssuanceStore::CommitStats stats = store_->commit_stats();
  EXPECT_EQ(stats.rows, 5);
  EXPECT_EQ(stats.commits, 2) << "a0 alone, then the five queued behind it";
  Reopen();
  for (const char* serial : {"a0", "a1", "a2", "a3", "a4"}) {
    absl::StatusOr<std::optional<IssuanceRecord>> got = store_->Get(serial);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->has_value()) << serial;
  }
}

TEST_F(IssuanceStoreTest, AsyncRefusesMalformedRecordAtOnce) {
  std::optional<absl::Status> answer;
  IssuanceRecord r = Record("03", kFrontend);
  r.auth_method = "password";
  store_->RecordIssuanceAsync(
      r, [&](absl::Status status) { answer = std::move(status); });
  ASSERT_TRUE(answer.has_value()) << "a malformed record waits for nothing";
  EXPECT_EQ(answer->code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(answer->message()), HasSubstr("password"));
  EXPECT_FALSE((*store_->Get("03")).has_value());
}

// Closing the store commits and answers every row it accepted.
TEST_F(IssuanceStoreTest, AsyncRowsQueuedAtCloseAreCommittedAndAnswered) {
  constexpr int kRows = 200;
  std::atomic<int> ok{0};
  std::atomic<int> answered{0};
  for (int i = 0; i < kRows; ++i) {
    store_->RecordIssuanceAsync(Record(absl::StrFormat("c%04x", i), kFrontend),
                                [&](absl::Status status) {
                                  if (status.ok()) ++ok;
                                  ++answered;
                                });
  }
  store_.reset();
  EXPECT_EQ(answered.load(), kRows);
  EXPECT_EQ(ok.load(), kRows);
  Reopen();
  IssuanceStore::ListFilter all;
  all.limit = 1000;
  absl::StatusOr<std::vector<IssuanceRecord>> listed = store_->List(all);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->size(), static_cast<size_t>(kRows));
}

TEST_F(IssuanceStoreTest, JoinTokenIsConsumedOnce) {
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(1), std::string(kFrontend),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  absl::StatusOr<std::string> id = store_->ConsumeJoinToken(Hash(1), kNow);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, kFrontend);

  id = store_->ConsumeJoinToken(Hash(1), kNow);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("join token already used"));
}

TEST_F(IssuanceStoreTest, LookupChecksWithoutConsuming) {
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(1), std::string(kFrontend),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<std::string> id = store_->LookupJoinToken(Hash(1), kNow);
    ASSERT_TRUE(id.ok()) << id.status();
    EXPECT_EQ(*id, kFrontend);
  }
  ASSERT_TRUE(store_->ConsumeJoinToken(Hash(1), kNow).ok());
  absl::StatusOr<std::string> id = store_->LookupJoinToken(Hash(1), kNow);
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("join token already used"));
  id = store_->LookupJoinToken(Hash(2), kNow);
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("unknown join token"));
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(3), std::string(kOrders),
                                    kNow + absl::Minutes(1), kNow)
                  .ok());
  id = store_->LookupJoinToken(Hash(3), kNow + absl::Minutes(1));
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("join token expired"));
}

TEST_F(IssuanceStoreTest, JoinTokenStaysConsumedAcrossReopen) {
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(1), std::string(kFrontend),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(2), std::string(kOrders),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  ASSERT_TRUE(store_->ConsumeJoinToken(Hash(1), kNow).ok());
  Reopen();
  absl::StatusOr<std::string> id = store_->ConsumeJoinToken(Hash(1), kNow);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("join token already used"));
  // The unconsumed one survived the reopen, unused.
  id = store_->ConsumeJoinToken(Hash(2), kNow);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, kOrders);
}

TEST_F(IssuanceStoreTest, ExpiredJoinTokenIsRefused) {
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(1), std::string(kFrontend),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  absl::StatusOr<std::string> id =
      store_->ConsumeJoinToken(Hash(1), kNow + absl::Minutes(10));
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("join token expired"));
  // The refusal did not consume it: before its expiry (a clock stepped back)
  // it still works.
  id = store_->ConsumeJoinToken(Hash(1), kNow + absl::Minutes(9));
  EXPECT_TRUE(id.ok()) << id.status();
}

TEST_F(IssuanceStoreTest, UnknownJoinTokenIsRefused) {
  absl::StatusOr<std::string> id = store_->ConsumeJoinToken(Hash(7), kNow);
  EXPECT_EQ(id.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(std::string(id.status().message()),
              HasSubstr("unknown join token"));
}

TEST_F(IssuanceStoreTest, JoinTokenMustBeAHash) {
  absl::Status status = store_->CreateJoinToken(
      "the-token-itself", std::string(kFrontend), kNow + absl::Hours(1), kNow);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(store_->ConsumeJoinToken("the-token-itself", kNow).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(IssuanceStoreTest, DuplicateJoinTokenIsAlreadyExists) {
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(1), std::string(kFrontend),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  EXPECT_EQ(store_
                ->CreateJoinToken(Hash(1), std::string(kOrders),
                                  kNow + absl::Minutes(10), kNow)
                .code(),
            absl::StatusCode::kAlreadyExists);
}

// All threads share one store (one connection behind its mutex).
TEST_F(IssuanceStoreTest, ConcurrentConsumersOfOneTokenOneWins) {
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(1), std::string(kFrontend),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  std::atomic<int> wins{0};
  std::atomic<int> already_used{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      while (!go.load()) std::this_thread::yield();
      absl::StatusOr<std::string> id = store_->ConsumeJoinToken(Hash(1), kNow);
      if (id.ok()) {
        wins.fetch_add(1);
      } else if (absl::StrContains(id.status().message(), "already used")) {
        already_used.fetch_add(1);
      }
    });
  }
  go.store(true);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(already_used.load(), 7);
}

// Each thread has its own store, hence its own SQLite connection: the file
// locks, not our mutex, decide.
TEST_F(IssuanceStoreTest, ConcurrentConsumersOnSeparateConnectionsOneWins) {
  ASSERT_TRUE(store_
                  ->CreateJoinToken(Hash(1), std::string(kFrontend),
                                    kNow + absl::Minutes(10), kNow)
                  .ok());
  std::vector<std::unique_ptr<IssuanceStore>> stores;
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<std::unique_ptr<IssuanceStore>> s =
        IssuanceStore::Open(path_);
    ASSERT_TRUE(s.ok()) << s.status();
    stores.push_back(std::move(*s));
  }
  std::atomic<int> wins{0};
  std::atomic<int> already_used{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      while (!go.load()) std::this_thread::yield();
      absl::StatusOr<std::string> id =
          stores[i]->ConsumeJoinToken(Hash(1), kNow);
      if (id.ok()) {
        wins.fetch_add(1);
      } else if (absl::StrContains(id.status().message(), "already used")) {
        already_used.fetch_add(1);
      } else {
        ADD_FAILURE() << id.status();
      }
    });
  }
  go.store(true);
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(wins.load(), 1);
  EXPECT_EQ(already_used.load(), 7);
}

TEST_F(IssuanceStoreTest, RevokeSerial) {
  MustRecord(Record("01", kFrontend));
  MustRecord(Record("02", kFrontend));

  absl::StatusOr<std::vector<std::string>> revoked =
      store_->RevokeSerial("01", "key compromise", kNow);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked, ElementsAre("01"));

  IssuanceRecord r = **store_->Get("01");
  ASSERT_TRUE(r.revoked_at.has_value());
  EXPECT_EQ(*r.revoked_at, kNow);
  EXPECT_EQ(r.revocation_reason, "key compromise");
  EXPECT_TRUE(*store_->IsRevoked("01"));
  EXPECT_FALSE(*store_->IsRevoked("02"));

  // Again: nothing newly revoked, first reason and time kept.
  revoked = store_->RevokeSerial("01", "again", kNow + absl::Minutes(1));
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked, IsEmpty());
  r = **store_->Get("01");
  EXPECT_EQ(*r.revoked_at, kNow);
  EXPECT_EQ(r.revocation_reason, "key compromise");
}

// A renewal authenticated by a certificate that a revocation reaches before
// the renewal's row commits is refused at commit, alone: it must not leave a
// live certificate behind (the audit saw 14-34 escape a revoke-by-ID).
TEST_F(IssuanceStoreTest, RenewalFromACertificateRevokedMeanwhileIsRefused) {
  MustRecord(Record("parent", kFrontend));
  IssuanceRecord child = Record("child", kFrontend);
  child.auth_method = std::string(kAuthRenewal);
  child.renewed_from_serial = "parent";
  // Not revoked yet: the renewal commits.
  IssuanceRecord first = child;
  first.serial = "child0";
  MustRecord(first);

  ASSERT_TRUE(
      store_->RevokeSpiffeId(std::string(kFrontend), "compromise", kNow).ok());
  absl::Status refused = store_->RecordIssuance(child);
  EXPECT_EQ(refused.code(), absl::StatusCode::kPermissionDenied) << refused;
  EXPECT_THAT(std::string(refused.message()),
              AllOf(HasSubstr("revoked"), HasSubstr("parent")));
  EXPECT_FALSE(store_->Get("child")->has_value()) << "nothing recorded";

  // In a group, the refused row does not take the others with it.
  WriteLockHolder lock(path_);
  absl::Mutex mu;
  std::vector<std::pair<std::string, absl::Status>> answers;
  auto record = [&](IssuanceRecord r) {
    const std::string serial = r.serial;
    store_->RecordIssuanceAsync(std::move(r), [&, serial](absl::Status st) {
      absl::MutexLock l(&mu);
      answers.emplace_back(serial, std::move(st));
    });
  };
  record(Record("g0", kOrders));
  absl::SleepFor(absl::Milliseconds(200));
  IssuanceRecord late = child;
  late.serial = "g-child";
  record(late);
  record(Record("g1", kOrders));
  lock.Release();
  {
    absl::MutexLock l(&mu);
    auto all = [&]() { return answers.size() == 3; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&all), absl::Seconds(10)));
  }
  for (const auto& [serial, status] : answers) {
    if (serial == "g-child") {
      EXPECT_TRUE(absl::IsPermissionDenied(status)) << status;
    } else {
      EXPECT_TRUE(status.ok()) << serial << ": " << status;
    }
  }
  EXPECT_TRUE(store_->Get("g1")->has_value());
  EXPECT_FALSE(store_->Get("g-child")->has_value());
}

TEST_F(IssuanceStoreTest, RevokeUnknownSerialIsNotFound) {
  absl::StatusOr<std::vector<std::string>> revoked =
      store_->RevokeSerial("dead", "x", kNow);
  EXPECT_EQ(revoked.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(revoked.status().message()), HasSubstr("dead"));
}

TEST_F(IssuanceStoreTest, RevokeSpiffeIdRevokesOnlyLiveCertificates) {
  // Expired an hour ago: not touched.
  MustRecord(Record("old", kFrontend, absl::Hours(2), absl::Hours(1)));
  // Live.
  MustRecord(Record("live1", kFrontend, absl::Minutes(30)));
  MustRecord(Record("live2", kFrontend, absl::Minutes(5)));
  // Already revoked: not returned again.
  MustRecord(Record("gone", kFrontend, absl::Minutes(20)));
  ASSERT_TRUE(
      store_->RevokeSerial("gone", "first", kNow - absl::Minutes(1)).ok());
  // Another identity: not touched.
  MustRecord(Record("other", kOrders, absl::Minutes(5)));

  absl::StatusOr<std::vector<std::string>> revoked =
      store_->RevokeSpiffeId(std::string(kFrontend), "decommissioned", kNow);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked, ElementsAre("live2", "live1"));  // Newest first.

  EXPECT_FALSE(*store_->IsRevoked("old"));
  EXPECT_FALSE(*store_->IsRevoked("other"));
  EXPECT_EQ((**store_->Get("gone")).revocation_reason, "first");
  EXPECT_EQ((**store_->Get("live1")).revocation_reason, "decommissioned");

  // Nothing left to revoke.
  revoked =
      store_->RevokeSpiffeId(std::string(kFrontend), "decommissioned", kNow);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked, IsEmpty());
  // An ID never seen: nothing, not an error.
  revoked =
      store_->RevokeSpiffeId("spiffe://cluster.local/ns/x/sa/y", "", kNow);
  ASSERT_TRUE(revoked.ok()) << revoked.status();
  EXPECT_THAT(*revoked, IsEmpty());
}

TEST_F(IssuanceStoreTest, ListRevokedUnexpiredIsWhatTheCrlNeeds) {
  MustRecord(Record("a", kFrontend, absl::Minutes(50), absl::Hours(1)));
  MustRecord(Record("b", kFrontend, absl::Minutes(10), absl::Hours(1)));
  MustRecord(Record("c", kOrders, absl::Minutes(10), absl::Hours(1)));
  ASSERT_TRUE(store_->RevokeSerial("a", "x", kNow).ok());
  ASSERT_TRUE(store_->RevokeSerial("b", "x", kNow + absl::Seconds(1)).ok());

  absl::StatusOr<std::vector<IssuanceRecord>> crl =
      store_->ListRevokedUnexpired(kNow + absl::Seconds(2));
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_THAT(Serials(*crl), ElementsAre("a", "b"));

  // Once "a" expires (issued 50 min ago, 1 h lifetime) it leaves the CRL.
  crl = store_->ListRevokedUnexpired(kNow + absl::Minutes(10));
  ASSERT_TRUE(crl.ok()) << crl.status();
  EXPECT_THAT(Serials(*crl), ElementsAre("b"));
}

TEST_F(IssuanceStoreTest, ListFilters) {
  MustRecord(Record("f-expired", kFrontend, absl::Hours(3), absl::Hours(1)));
  MustRecord(Record("f-revoked", kFrontend, absl::Minutes(40)));
  MustRecord(Record("f-live", kFrontend, absl::Minutes(20)));
  MustRecord(Record("o-live", kOrders, absl::Minutes(10)));
  ASSERT_TRUE(store_->RevokeSerial("f-revoked", "x", kNow).ok());

  IssuanceStore::ListFilter all;
  all.now = kNow;
  absl::StatusOr<std::vector<IssuanceRecord>> list = store_->List(all);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Serials(*list),
              ElementsAre("o-live", "f-live", "f-revoked", "f-expired"));

  IssuanceStore::ListFilter frontend = all;
  frontend.spiffe_id = std::string(kFrontend);
  list = store_->List(frontend);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Serials(*list), ElementsAre("f-live", "f-revoked", "f-expired"));

  IssuanceStore::ListFilter live = frontend;
  live.live_only = true;
  list = store_->List(live);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Serials(*list), ElementsAre("f-live"));

  IssuanceStore::ListFilter all_live = all;
  all_live.live_only = true;
  list = store_->List(all_live);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Serials(*list), ElementsAre("o-live", "f-live"));

  IssuanceStore::ListFilter limited = all;
  limited.limit = 2;
  list = store_->List(limited);
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_THAT(Serials(*list), ElementsAre("o-live", "f-live"));
}

TEST_F(IssuanceStoreTest, CrlNumberIsMonotonicAcrossReopen) {
  int64_t last = 0;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < 3; ++i) {
      absl::StatusOr<int64_t> n = store_->NextCrlNumber();
      ASSERT_TRUE(n.ok()) << n.status();
      EXPECT_GT(*n, last);
      last = *n;
    }
    Reopen();
  }
  EXPECT_EQ(last, 9);
}

TEST_F(IssuanceStoreTest, DatabaseFileIsPrivate) {
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
  // SQLite gives the WAL the database's mode.
  MustRecord(Record("01", kFrontend));
  const std::string wal = path_ + "-wal";
  ASSERT_EQ(stat(wal.c_str(), &st), 0) << wal;
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(IssuanceStoreTest, DatabaseFileIsPrivateDespiteUmask) {
  const mode_t old = umask(0);
  absl::StatusOr<std::unique_ptr<IssuanceStore>> s =
      IssuanceStore::Open(dir_ + "/umask0.db");
  umask(old);
  ASSERT_TRUE(s.ok()) << s.status();
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/umask0.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600);
}

TEST_F(IssuanceStoreTest, OpenGarbageFileFailsNamingIt) {
  const std::string garbage = dir_ + "/garbage.db";
  {
    std::ofstream out(garbage);
    for (int i = 0; i < 100; ++i) out << "this is not an SQLite database\n";
  }
  absl::StatusOr<std::unique_ptr<IssuanceStore>> s =
      IssuanceStore::Open(garbage);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition)
      << s.status();
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(garbage));
  EXPECT_THAT(std::string(s.status().message()), HasSubstr("not a database"));
}

TEST_F(IssuanceStoreTest, OpenUnwritablePathFailsNamingIt) {
  // Root ignores directory modes, so use paths no one can create.
  const std::string missing_dir = dir_ + "/no/such/dir/ca.db";
  absl::StatusOr<std::unique_ptr<IssuanceStore>> s =
      IssuanceStore::Open(missing_dir);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(missing_dir));
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("No such file or directory"));

  const std::string under_file = path_ + "/ca.db";  // path_ is a file.
  s = IssuanceStore::Open(under_file);
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(under_file));

  if (geteuid() != 0) {
    const std::string ro_dir = dir_ + "/readonly";
    ASSERT_EQ(mkdir(ro_dir.c_str(), 0500), 0);
    s = IssuanceStore::Open(ro_dir + "/ca.db");
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(std::string(s.status().message()), HasSubstr(ro_dir));
    chmod(ro_dir.c_str(), 0700);
  }
}

TEST_F(IssuanceStoreTest, OpenNewerSchemaFailsNamingIt) {
  store_.reset();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &raw), SQLITE_OK);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, &sqlite3_close);
  ASSERT_EQ(sqlite3_exec(db.get(), "PRAGMA user_version = 99", nullptr, nullptr,
                         nullptr),
            SQLITE_OK);
  db.reset();

  absl::StatusOr<std::unique_ptr<IssuanceStore>> s = IssuanceStore::Open(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()), HasSubstr(path_));
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("schema version 99"));
}

TEST_F(IssuanceStoreTest, OpenOtherProgramsDatabaseFails) {
  const std::string other = dir_ + "/other.db";
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(other.c_str(), &raw), SQLITE_OK);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, &sqlite3_close);
  ASSERT_EQ(
      sqlite3_exec(db.get(), "CREATE TABLE t (x)", nullptr, nullptr, nullptr),
      SQLITE_OK);
  db.reset();

  absl::StatusOr<std::unique_ptr<IssuanceStore>> s = IssuanceStore::Open(other);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(std::string(s.status().message()),
              HasSubstr("not a meshguard issuance database"));
}

TEST_F(IssuanceStoreTest, SchemaVersionIsSet) {
  store_.reset();
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &raw), SQLITE_OK);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> db(raw, &sqlite3_close);
  sqlite3_stmt* stmt_raw = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db.get(), "PRAGMA user_version", -1, &stmt_raw,
                               nullptr),
            SQLITE_OK);
  std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(stmt_raw,
                                                             &sqlite3_finalize);
  ASSERT_EQ(sqlite3_step(stmt.get()), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(stmt.get(), 0), IssuanceStore::kSchemaVersion);
}

}  // namespace
}  // namespace meshguard::ca
