// The identity agent against a real in-process CA signer (a working
// stand-in for meshguard-ca, not a mock): bootstrap, renewal timing, a
// failed renewal keeping the old certificate, expiry failing closed, and
// bundle updates publishing new credentials.
#include "sidecar/identity/agent.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "identity/crypto/ca_signer.h"
#include "identity/crypto/certificate.h"
#include "identity/crypto/csr.h"
#include "identity/crypto/keys.h"

namespace meshguard::sidecar {
namespace {

namespace v1 = ::meshguard::ca::v1;

const char kId[] = "spiffe://cluster.local/ns/shop/sa/orders";

// A tiny CA: a root and a signer, issuing with the fake clock's time.
class InProcessCa {
 public:
  explicit InProcessCa(const util::Clock* clock) : clock_(clock) {
    root_key_ = *crypto::GenerateEcP256Key();
    root_ = *crypto::CreateRootCertificate(root_key_.get(), "cluster.local",
                                           absl::Hours(24 * 365),
                                           clock_->Now() - absl::Hours(1));
    signer_ = *crypto::CaSigner::Create(
        crypto::X509Ptr(X509_dup(root_.get())),
        crypto::EvpPkeyPtr(*crypto::PrivateKeyFromPem(
            *crypto::PrivateKeyToPem(root_key_.get()))),
        {});
    bundle_.set_trust_domain("cluster.local");
    bundle_.add_root_certificates_pem(*crypto::CertificateToPem(root_.get()));
    bundle_.set_sequence_number(1);
  }

  absl::StatusOr<client::IssuedCertificate> Issue(absl::Duration ttl) {
    client::IssuedCertificate out;
    out.key = *crypto::GenerateEcP256Key();
    out.key_pem = *crypto::PrivateKeyToPem(out.key.get());
    crypto::LeafRequest request{out.key.get(),
                                *crypto::SpiffeId::Parse(kId),
                                ttl,
                                clock_->Now(),
                                {},
                                {}};
    absl::StatusOr<crypto::X509Ptr> leaf = signer_->IssueLeaf(request);
    if (!leaf.ok()) return leaf.status();
    out.chain_pem.push_back(*crypto::CertificateToPem(leaf->get()));
    out.bundle = bundle_;
    out.spiffe_id = kId;
    out.serial = crypto::SerialHex(leaf->get());
    out.not_before = crypto::NotBefore(leaf->get());
    out.not_after = crypto::NotAfter(leaf->get());
    return out;
  }

  const v1::TrustBundle& bundle() const { return bundle_; }

 private:
  const util::Clock* clock_;
  crypto::EvpPkeyPtr root_key_;
  crypto::X509Ptr root_;
  std::unique_ptr<crypto::CaSigner> signer_;
  v1::TrustBundle bundle_;
};

// An IdentitySource whose next answers the test scripts: OK (issue from
// the in-process CA) or a given error.
class ScriptedSource final : public IdentitySource {
 public:
  ScriptedSource(InProcessCa* ca, absl::Duration ttl) : ca_(ca), ttl_(ttl) {}

  void FailNext(int n, absl::Status status) {
    absl::MutexLock lock(&mu_);
    for (int i = 0; i < n; ++i) failures_.push_back(status);
  }
  int bootstraps() const {
    absl::MutexLock lock(&mu_);
    return bootstraps_;
  }
  int renewals() const {
    absl::MutexLock lock(&mu_);
    return renewals_;
  }

  absl::StatusOr<client::IssuedCertificate> Bootstrap() override {
    absl::MutexLock lock(&mu_);
    ++bootstraps_;
    return Next();
  }
  absl::StatusOr<client::IssuedCertificate> Renew(
      const client::IssuedCertificate& current) override {
    absl::MutexLock lock(&mu_);
    ++renewals_;
    EXPECT_FALSE(current.key_pem.empty());
    return Next();
  }
  std::unique_ptr<client::BundleWatch> Watch(
      std::function<void(const v1::TrustBundle&)> on_bundle) override {
    absl::MutexLock lock(&mu_);
    on_bundle_ = std::move(on_bundle);
    return nullptr;
  }
  // What the watch would deliver (the CA sends its current bundle whenever
  // the watch reconnects).
  void Deliver(const v1::TrustBundle& bundle) {
    std::function<void(const v1::TrustBundle&)> f;
    {
      absl::MutexLock lock(&mu_);
      f = on_bundle_;
    }
    ASSERT_TRUE(f != nullptr) << "no watch open";
    f(bundle);
  }
  bool TrustRoots(const std::vector<std::string>& roots) override {
    absl::MutexLock lock(&mu_);
    trusted_roots_ = roots;
    return false;
  }
  std::vector<std::string> trusted_roots() const {
    absl::MutexLock lock(&mu_);
    return trusted_roots_;
  }

 private:
  std::vector<std::string> trusted_roots_ ABSL_GUARDED_BY(mu_);
  std::function<void(const v1::TrustBundle&)> on_bundle_ ABSL_GUARDED_BY(mu_);
  absl::StatusOr<client::IssuedCertificate> Next()
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!failures_.empty()) {
      absl::Status s = failures_.front();
      failures_.pop_front();
      return s;
    }
    return ca_->Issue(ttl_);
  }

  InProcessCa* ca_;
  absl::Duration ttl_;
  mutable absl::Mutex mu_;
  std::deque<absl::Status> failures_ ABSL_GUARDED_BY(mu_);
  int bootstraps_ ABSL_GUARDED_BY(mu_) = 0;
  int renewals_ ABSL_GUARDED_BY(mu_) = 0;
};

class AgentTest : public ::testing::Test {
 protected:
  AgentTest() : clock_(absl::Now()), ca_(&clock_) {}

  std::unique_ptr<IdentityAgent> MakeAgent(absl::Duration ttl) {
    auto source = std::make_unique<ScriptedSource>(&ca_, ttl);
    source_ = source.get();
    RotationPolicy policy;
    policy.jitter_fraction = 0;  // deterministic: renew at exactly half
    return std::make_unique<IdentityAgent>(std::move(source), "cluster.local",
                                           policy, &store_, &clock_,
                                           [] { return 0.5; });
  }

  util::FakeClock clock_;
  InProcessCa ca_;
  MutableCredentialStore store_;
  ScriptedSource* source_ = nullptr;
};

TEST_F(AgentTest, BootstrapPublishesCredentials) {
  auto agent = MakeAgent(absl::Hours(1));
  EXPECT_FALSE(agent->Ready());
  EXPECT_EQ(store_.Current(), nullptr);
  ASSERT_TRUE(agent->Bootstrap(clock_.Now() + absl::Seconds(5)).ok());
  EXPECT_TRUE(agent->Ready());
  std::shared_ptr<const TlsCredentials> creds = store_.Current();
  ASSERT_NE(creds, nullptr);
  EXPECT_EQ(creds->spiffe_id, kId);
  EXPECT_NE(creds->server_ctx, nullptr);
  EXPECT_NE(creds->client_ctx, nullptr);
  EXPECT_EQ(creds->version, 1u);
  // The bundle's roots are handed to the CA connection too (root rotation).
  EXPECT_EQ(source_->trusted_roots().size(), 1u);
}

TEST_F(AgentTest, BootstrapRefusedCredentialIsNotRetried) {
  auto agent = MakeAgent(absl::Hours(1));
  source_->FailNext(1, absl::UnauthenticatedError("join token already used"));
  absl::Status s = agent->Bootstrap(clock_.Now() + absl::Seconds(60));
  EXPECT_TRUE(absl::IsUnauthenticated(s)) << s;
  EXPECT_EQ(source_->bootstraps(), 1);
  EXPECT_FALSE(agent->Ready());
}

TEST_F(AgentTest, RenewsAtHalfLifeWithNewSerial) {
  auto agent = MakeAgent(absl::Hours(1));
  const absl::Time issued = clock_.Now();
  ASSERT_TRUE(agent->Bootstrap(clock_.Now() + absl::Seconds(5)).ok());
  std::shared_ptr<const TlsCredentials> first = store_.Current();
  // Certificates start kClockSkewAllowance early; half-life counts from
  // when the certificate arrived, not from the backdated notBefore.
  EXPECT_LT(first->not_before, issued);
  const absl::Time renew_at = issued + (first->not_after - issued) / 2;

  clock_.Set(renew_at - absl::Seconds(1));
  EXPECT_EQ(agent->Step(clock_.Now()), renew_at);
  EXPECT_EQ(source_->renewals(), 0);

  clock_.Set(renew_at);
  agent->Step(clock_.Now());
  EXPECT_EQ(source_->renewals(), 1);
  std::shared_ptr<const TlsCredentials> second = store_.Current();
  EXPECT_NE(second->serial, first->serial);
  EXPECT_GT(second->version, first->version);
  EXPECT_EQ(agent->Stats().renewals_ok, 1u);
}

TEST_F(AgentTest, FailedRenewalKeepsServingThenFailsClosedAtExpiry) {
  auto agent = MakeAgent(absl::Minutes(10));
  ASSERT_TRUE(agent->Bootstrap(clock_.Now() + absl::Seconds(5)).ok());
  std::shared_ptr<const TlsCredentials> first = store_.Current();
  source_->FailNext(1000, absl::UnavailableError("CA unreachable"));

  clock_.Set(agent->Stats().next_renewal);
  absl::Time next = agent->Step(clock_.Now());
  EXPECT_GT(next, clock_.Now());
  EXPECT_EQ(store_.Current(), first) << "a failed renewal must not evict";
  EXPECT_TRUE(agent->Ready());
  EXPECT_EQ(agent->Stats().renewals_failed, 1u);

  // Retries back off, yet never sleep past expiry.
  for (int i = 0; i < 50 && clock_.Now() < first->not_after; ++i) {
    next = agent->Step(clock_.Now());
    EXPECT_LE(next, first->not_after);
    clock_.Set(std::max(next, clock_.Now() + absl::Milliseconds(10)));
  }
  clock_.Set(first->not_after);
  agent->Step(clock_.Now());
  EXPECT_EQ(store_.Current(), nullptr) << "expired identity must fail closed";
  EXPECT_FALSE(agent->Ready());
}

TEST_F(AgentTest, RecoversWhenTheCaComesBack) {
  auto agent = MakeAgent(absl::Minutes(10));
  ASSERT_TRUE(agent->Bootstrap(clock_.Now() + absl::Seconds(5)).ok());
  std::shared_ptr<const TlsCredentials> first = store_.Current();
  source_->FailNext(2, absl::UnavailableError("CA unreachable"));
  clock_.Set(agent->Stats().next_renewal);
  for (int i = 0; i < 3; ++i) {
    absl::Time next = agent->Step(clock_.Now());
    clock_.Set(std::max(next, clock_.Now()));
  }
  EXPECT_EQ(agent->Stats().renewals_failed, 2u);
  EXPECT_EQ(agent->Stats().renewals_ok, 1u);
  EXPECT_NE(store_.Current()->serial, first->serial);
}

// Polls `condition` (real time) until it holds or `timeout` passes.
bool WaitUntil(const std::function<bool()>& condition, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (!condition()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(absl::Milliseconds(20));
  }
  return true;
}

// The CA back (its bundle arrives on the reconnected watch): the renewal
// is tried at once, not after the rest of a backoff of up to a minute.
TEST_F(AgentTest, BundleFromTheCaBringsTheRetryForward) {
  auto agent = MakeAgent(absl::Minutes(10));
  ASSERT_TRUE(agent->Bootstrap(clock_.Now() + absl::Seconds(5)).ok());
  source_->FailNext(1, absl::UnavailableError("CA unreachable"));
  clock_.Set(agent->Stats().next_renewal);
  // The agent's own thread, on a clock that stands still: after the first
  // failure, its retry lies in a future that never comes.
  agent->Start();
  ASSERT_TRUE(WaitUntil([&] { return agent->Stats().renewals_failed == 1; },
                        absl::Seconds(5)));
  EXPECT_FALSE(agent->Stats().last_error.empty());
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_EQ(agent->Stats().renewals_ok, 0u) << "retried before its time";

  source_->Deliver(ca_.bundle());
  EXPECT_TRUE(WaitUntil([&] { return agent->Stats().renewals_ok == 1; },
                        absl::Seconds(5)))
      << "the bundle did not bring the retry forward";
  EXPECT_EQ(agent->Stats().last_error, "") << "cleared by the success";
  agent->Stop();
}

TEST_F(AgentTest, ShortLivedBackdatedCertificateIsNotRenewedAtOnce) {
  // A 60 s certificate backdated by 5 minutes: its "half-life" by notBefore
  // is long past. The agent must still wait ~30 s, not renew every step.
  auto agent = MakeAgent(absl::Seconds(60));
  ASSERT_TRUE(agent->Bootstrap(clock_.Now() + absl::Seconds(5)).ok());
  std::shared_ptr<const TlsCredentials> first = store_.Current();
  ASSERT_LT(first->not_before, clock_.Now() - absl::Minutes(4));
  const absl::Time next = agent->Step(clock_.Now());
  EXPECT_GE(next, clock_.Now() + absl::Seconds(29));
  EXPECT_LE(next, clock_.Now() + absl::Seconds(31));
  EXPECT_EQ(source_->renewals(), 0);
}

TEST_F(AgentTest, ExpiredIdentityReBootstraps) {
  auto agent = MakeAgent(absl::Minutes(10));
  ASSERT_TRUE(agent->Bootstrap(clock_.Now() + absl::Seconds(5)).ok());
  clock_.Set(store_.Current()->not_after + absl::Seconds(1));
  agent->Step(clock_.Now());
  // Expired: withdrawn, then a fresh bootstrap in the same step.
  EXPECT_EQ(source_->bootstraps(), 2);
  ASSERT_NE(store_.Current(), nullptr);
  EXPECT_TRUE(agent->Ready());
}

TEST_F(AgentTest, CertificateNotVerifyingAgainstItsBundleIsRefused) {
  // A certificate from another CA, shipped with this CA's bundle: the agent
  // must refuse to publish what every peer would refuse.
  util::FakeClock other_clock(clock_.Now());
  InProcessCa other(&other_clock);
  absl::StatusOr<client::IssuedCertificate> foreign =
      other.Issue(absl::Hours(1));
  ASSERT_TRUE(foreign.ok());
  foreign->bundle = ca_.bundle();

  class OneShot final : public IdentitySource {
   public:
    explicit OneShot(client::IssuedCertificate c) : c_(std::move(c)) {}
    absl::StatusOr<client::IssuedCertificate> Bootstrap() override {
      return std::move(c_);
    }
    absl::StatusOr<client::IssuedCertificate> Renew(
        const client::IssuedCertificate&) override {
      return absl::UnavailableError("no");
    }
    std::unique_ptr<client::BundleWatch> Watch(
        std::function<void(const v1::TrustBundle&)>) override {
      return nullptr;
    }
    client::IssuedCertificate c_;
  };
  IdentityAgent agent(std::make_unique<OneShot>(std::move(*foreign)),
                      "cluster.local", RotationPolicy(), &store_, &clock_,
                      [] { return 0.5; });
  absl::Status s = agent.Bootstrap(clock_.Now());
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(store_.Current(), nullptr);
}

}  // namespace
}  // namespace meshguard::sidecar
