// MutableCredentialStore: versions, and the hook that lets the sidecar act
// on new credentials at once.
#include "sidecar/identity/credential_store.h"

#include <memory>
#include <thread>

#include "gtest/gtest.h"

namespace meshguard::sidecar {
namespace {

TEST(MutableCredentialStoreTest, EveryPublishGetsAHigherVersion) {
  MutableCredentialStore store;
  EXPECT_EQ(store.Current(), nullptr);
  store.Publish(std::make_shared<TlsCredentials>());
  const uint64_t first = store.Current()->version;
  store.Publish(std::make_shared<TlsCredentials>());
  EXPECT_GT(store.Current()->version, first);
  store.Publish(nullptr);  // withdrawn
  EXPECT_EQ(store.Current(), nullptr);
}

TEST(MutableCredentialStoreTest, OnPublishRunsAfterEachPublishWithTheNewOne) {
  MutableCredentialStore store;
  int calls = 0;
  uint64_t seen_version = 0;
  store.SetOnPublish([&] {
    ++calls;
    // Runs without the store's lock: reading it back does not deadlock,
    // and sees what was just published.
    auto now = store.Current();
    seen_version = now == nullptr ? 0 : now->version;
  });
  store.Publish(std::make_shared<TlsCredentials>());
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(seen_version, store.Current()->version);
  store.Publish(nullptr);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(seen_version, 0u);

  store.SetOnPublish(nullptr);
  store.Publish(std::make_shared<TlsCredentials>());
  EXPECT_EQ(calls, 2);
}

TEST(MutableCredentialStoreTest, OnPublishRunsOnThePublishingThread) {
  MutableCredentialStore store;
  std::thread::id ran_on;
  store.SetOnPublish([&] { ran_on = std::this_thread::get_id(); });
  std::thread publisher(
      [&] { store.Publish(std::make_shared<TlsCredentials>()); });
  const std::thread::id publisher_id = publisher.get_id();
  publisher.join();
  EXPECT_EQ(ran_on, publisher_id);
}

}  // namespace
}  // namespace meshguard::sidecar
