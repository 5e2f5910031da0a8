// Durability: SIGKILL meshguard-ca in the middle of a burst of issuances from
// several client threads, restart it on the same data dir, and check what a
// client may rely on: every certificate it received is in the issuance log,
// and no join token used before the kill works again. And while the log
// cannot be written, the CA refuses to issue rather than hand out a
// certificate it has not recorded.
#include <sqlite3.h>

#include <atomic>
#include <csignal>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "identity/client/ca_client.h"
#include "tests/integration/ca_fixture.h"
#include "tests/integration/testing/process.h"

namespace meshguard::integration {
namespace {

using ::meshguard::testing::HttpGet;
using ::meshguard::testing::HttpResponse;
using ::meshguard::testing::WaitFor;
using ::testing::HasSubstr;

constexpr int kTokens = 120;
constexpr int kThreads = 4;
constexpr int kKillAfterAcknowledged = 25;

struct Attempt {
  std::string id;
  std::string token;
  enum State { kUnused, kInFlight, kAcknowledged, kFailed } state = kUnused;
  std::string serial;  // when acknowledged
};

// A CA on a fresh data dir, with rate limiting off: these tests send
// bursts and retry from one address, which the per-address limit on failed
// authentications would (rightly) throttle.
absl::StatusOr<std::unique_ptr<CaInstance>> StartCa(const std::string& name) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca = CaInstance::Init(name);
  if (!ca.ok()) return ca.status();
  absl::Status served = (*ca)->Serve("rate_limit:\n  requests_per_second: 0\n");
  if (!served.ok()) return served;
  return ca;
}

TEST(CaDurabilityTest, AcknowledgedIssuancesSurviveSigkill) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca_or = StartCa("dur");
  ASSERT_TRUE(ca_or.ok()) << ca_or.status();
  CaInstance& ca = **ca_or;

  std::vector<Attempt> attempts(kTokens);
  for (int i = 0; i < kTokens; ++i) {
    attempts[i].id = SpiffeIdFor("burst", absl::StrCat("w", i));
    absl::StatusOr<std::string> token = ca.JoinToken(attempts[i].id);
    ASSERT_TRUE(token.ok()) << token.status();
    attempts[i].token = *token;
  }

  absl::Mutex mu;
  int next = 0;  // guarded by mu
  std::atomic<int> acknowledged{0};
  std::vector<std::thread> threads;
  const client::CaClientOptions options = ca.ClientOptions();
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      absl::StatusOr<std::unique_ptr<client::CaClient>> client =
          client::CaClient::Create(options);
      if (!client.ok()) return;
      while (true) {
        int i;
        {
          absl::MutexLock lock(&mu);
          if (next >= kTokens) return;
          i = next++;
          attempts[i].state = Attempt::kInFlight;
        }
        absl::StatusOr<client::IssuedCertificate> issued =
            (*client)->IssueWithJoinToken(attempts[i].token);
        absl::MutexLock lock(&mu);
        if (issued.ok()) {
          attempts[i].state = Attempt::kAcknowledged;
          attempts[i].serial = issued->serial;
          ++acknowledged;
        } else {
          attempts[i].state = Attempt::kFailed;
          return;  // the CA is gone; stop this client
        }
      }
    });
  }
  ASSERT_TRUE(
      WaitFor([&] { return acknowledged.load() >= kKillAfterAcknowledged; },
              absl::Seconds(30)))
      << "only " << acknowledged.load() << " issuances in 30 s";
  ExitStatus killed = ca.Kill();
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(killed.signal, SIGKILL) << killed.ToString();

  int in_flight = 0, unused = 0;
  std::set<std::string> acked_serials;
  for (const Attempt& a : attempts) {
    if (a.state == Attempt::kAcknowledged) acked_serials.insert(a.serial);
    if (a.state == Attempt::kFailed || a.state == Attempt::kInFlight) {
      ++in_flight;
    }
    if (a.state == Attempt::kUnused) ++unused;
  }
  EXPECT_GT(unused + in_flight, 0) << "the kill came after the burst";
  ::testing::Test::RecordProperty("acknowledged",
                                  static_cast<int>(acked_serials.size()));
  ::testing::Test::RecordProperty("in_flight_at_kill", in_flight);

  absl::Status served = ca.Serve();
  ASSERT_TRUE(served.ok()) << served;

  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> records = ca.Records();
  ASSERT_TRUE(records.ok()) << records.status();
  std::map<std::string, int> per_id;
  std::set<std::string> logged;
  for (const ca::v1::CertificateRecord& r : *records) {
    logged.insert(r.serial());
    ++per_id[r.spiffe_id()];
  }
  for (const std::string& serial : acked_serials) {
    EXPECT_TRUE(logged.count(serial))
        << "acknowledged " << serial << " is not in the issuance log";
  }

  // Tokens whose certificate was acknowledged are spent; tokens never sent
  // still work; a token that was in flight at the kill may work only if the
  // log has no certificate from it (it was not consumed).
  std::unique_ptr<client::CaClient> client = ca.Client();
  for (const Attempt& a : attempts) {
    SCOPED_TRACE(a.id);
    absl::StatusOr<client::IssuedCertificate> retry =
        client->IssueWithJoinToken(a.token);
    switch (a.state) {
      case Attempt::kAcknowledged:
        EXPECT_EQ(retry.status().code(), absl::StatusCode::kUnauthenticated)
            << "a used join token worked again: " << retry.status();
        break;
      case Attempt::kUnused:
        EXPECT_TRUE(retry.ok()) << retry.status();
        break;
      default:
        if (retry.ok()) {
          EXPECT_EQ(per_id[a.id], 0)
              << "token issued twice: once before the kill, once after";
        }
        break;
    }
  }
}

// SIGTERM in the middle of a burst: the CA exits 0 within its shutdown
// deadline, every call in flight gets an answer (none hangs), and every
// certificate a client received is in the log after a restart.
TEST(CaDurabilityTest, SigtermDuringBurstAnswersAndLogsEveryIssuance) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca_or = StartCa("term");
  ASSERT_TRUE(ca_or.ok()) << ca_or.status();
  CaInstance& ca = **ca_or;
  absl::StatusOr<client::IssuedCertificate> first =
      ca.IssueFor(SpiffeIdFor("term", "renewer"));
  ASSERT_TRUE(first.ok()) << first.status();

  absl::Mutex mu;
  std::set<std::string> acked;  // guarded by mu
  std::atomic<int> answered{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      absl::StatusOr<std::unique_ptr<client::CaClient>> client =
          client::CaClient::Create(ca.ClientOptions());
      if (!client.ok()) return;
      while (!stop.load()) {
        absl::StatusOr<client::IssuedCertificate> renewed =
            (*client)->Renew(first->ChainPem(), first->key_pem);
        ++answered;
        if (!renewed.ok()) return;  // the CA is going away
        absl::MutexLock lock(&mu);
        acked.insert(renewed->serial);
      }
    });
  }
  ASSERT_TRUE(
      WaitFor([&] { return answered.load() >= 20; }, absl::Seconds(30)));
  ExitStatus stopped = ca.Stop();
  stop = true;
  for (std::thread& t : threads) t.join();  // every call got an answer
  EXPECT_TRUE(stopped.Success()) << "SIGTERM: " << stopped.ToString();

  absl::Status served = ca.Serve();
  ASSERT_TRUE(served.ok()) << served;
  absl::StatusOr<std::vector<ca::v1::CertificateRecord>> records = ca.Records();
  ASSERT_TRUE(records.ok()) << records.status();
  std::set<std::string> logged;
  for (const ca::v1::CertificateRecord& r : *records) logged.insert(r.serial());
  absl::MutexLock lock(&mu);
  EXPECT_GE(acked.size(), 20u);
  for (const std::string& serial : acked) {
    EXPECT_TRUE(logged.count(serial))
        << "acknowledged " << serial << " is not in the issuance log";
  }
}

// Another connection (an operator's sqlite3 shell, a backup tool) holds
// the log's write lock past the CA's busy timeout: the renewal is refused
// with UNAVAILABLE naming the log, counted and logged, and no certificate
// reaches the caller or the log. Once the lock is gone, renewals work.
TEST(CaDurabilityTest, UnwritableLogRefusesIssuance) {
  absl::StatusOr<std::unique_ptr<CaInstance>> ca_or = StartCa("lock");
  ASSERT_TRUE(ca_or.ok()) << ca_or.status();
  CaInstance& ca = **ca_or;
  absl::StatusOr<client::IssuedCertificate> first =
      ca.IssueFor(SpiffeIdFor("shop", "locked"));
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_EQ(ca.CountCertificates(), 1);

  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((ca.data_dir() + "/meshguard-ca.db").c_str(), &db),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr),
            SQLITE_OK)
      << sqlite3_errmsg(db);

  client::CaClientOptions options = ca.ClientOptions();
  options.timeout = absl::Seconds(30);  // the CA waits 5 s for the lock
  absl::StatusOr<std::unique_ptr<client::CaClient>> client =
      client::CaClient::Create(options);
  ASSERT_TRUE(client.ok()) << client.status();
  absl::StatusOr<client::IssuedCertificate> refused =
      (*client)->Renew(first->ChainPem(), first->key_pem);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable)
      << refused.status();
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("issuance log"));

  ASSERT_EQ(sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);

  EXPECT_EQ(ca.CountCertificates(), 1) << "a refused certificate was logged";
  absl::StatusOr<HttpResponse> metrics =
      HttpGet("127.0.0.1", ca.http_port(), "/metrics");
  ASSERT_TRUE(metrics.ok()) << metrics.status();
  EXPECT_THAT(
      metrics->body,
      HasSubstr(
          "meshguard_ca_issuance_failures_total{reason=\"storage_failed\"} 1"));
  bool logged = false;
  for (const std::string& line : ca.LogLines("issuance_refused")) {
    if (absl::StrContains(line, "storage_failed")) logged = true;
  }
  EXPECT_TRUE(logged) << "no issuance_refused line with storage_failed";

  absl::StatusOr<client::IssuedCertificate> renewed =
      (*client)->Renew(first->ChainPem(), first->key_pem);
  ASSERT_TRUE(renewed.ok()) << renewed.status();
  EXPECT_EQ(ca.CountCertificates(), 2);
}

}  // namespace
}  // namespace meshguard::integration
