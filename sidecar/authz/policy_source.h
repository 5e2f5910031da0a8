// Where the policy in force comes from: a YAML file, reloaded when it
// changes, or the built-in "same trust domain" policy when no file is
// configured.
//
// The data path only ever reads a snapshot (PolicyWatcher::Current()); a
// reload compiles the new file completely, outside any lock, and then swaps
// one pointer. A new file that does not load or compile is refused: the
// previous policy stays in force and the error (file, line, field) is kept
// in ReloadStats::last_result. There is never a moment without a policy:
// Create() fails when a configured file cannot be loaded at start.
#ifndef MESHGUARD_SIDECAR_AUTHZ_POLICY_SOURCE_H_
#define MESHGUARD_SIDECAR_AUTHZ_POLICY_SOURCE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "identity/util/file_util.h"
#include "sidecar/authz/policy.h"

namespace meshguard::sidecar::authz {

// Loads `path` (YAML, see identity/util/yaml_config.h) and compiles it.
// Errors name the file and, for YAML errors, the line and field; for
// semantic errors the rule index, name and field. The same code path serves
// the sidecar and `meshguardctl policy check`.
absl::StatusOr<std::shared_ptr<const CompiledPolicy>> LoadPolicyFile(
    const std::string& path);

// The YAML text of a policy file as the proto, without the semantic checks
// (what `policy lint` reports on). An empty or whitespace-only file is an
// error, as for every loader here.
absl::StatusOr<AuthorizationPolicy> ParsePolicyYaml(absl::string_view contents,
                                                    const std::string& path);

// A 64-bit FNV-1a of the file's bytes, as 16 hex digits. For change
// detection and for telling operators which file is in force; not a
// cryptographic hash.
std::string ContentHash(absl::string_view contents);

// One published policy. Immutable; share it freely.
struct PolicySnapshot {
  std::shared_ptr<const CompiledPolicy> policy;
  // 1 for the policy in force at start, +1 for every successful reload.
  uint64_t version = 0;
  // ContentHash of the file; empty for the built-in policy.
  std::string content_hash;
  // The file path, or "<built-in>".
  std::string source;
};

struct ReloadStats {
  uint64_t ok = 0;     // successful reloads (not counting the initial load)
  uint64_t error = 0;  // refused new contents (each distinct content once)
  // OK, or why the latest change was refused. A later successful reload
  // resets it to OK.
  absl::Status last_result;
  absl::Time last_change_seen = absl::InfinitePast();
};

class PolicyWatcher final {
 public:
  struct Options {
    // The YAML policy file. Empty: the built-in policy
    // BuiltinTrustDomainPolicy(trust_domain), never reloaded.
    std::string path;
    // Used only for the built-in policy.
    std::string trust_domain;
    // How often the own thread stats the file; a change applies within
    // about one interval.
    absl::Duration poll_interval = absl::Seconds(1);
    // Start the polling thread. False: the owner calls Poll() (tests, or an
    // event-loop timer).
    bool start_thread = true;
    // Called after every reload attempt (success or refusal), on the thread
    // that ran Poll(), without the watcher's locks held. Must not call
    // Poll() or destroy the watcher.
    std::function<void(const absl::Status& result, const PolicySnapshot& now)>
        on_reload;
  };

  // Loads the initial policy; a configured file that fails is an error
  // (the sidecar must not start without its policy).
  static absl::StatusOr<std::unique_ptr<PolicyWatcher>> Create(Options options);

  // Stops and joins the polling thread.
  ~PolicyWatcher();
  PolicyWatcher(const PolicyWatcher&) = delete;
  PolicyWatcher& operator=(const PolicyWatcher&) = delete;

  // The policy in force. Any thread, any time; never null. Holds a reader
  // lock only for a shared_ptr copy, never while a file is read or a policy
  // compiled.
  std::shared_ptr<const PolicySnapshot> Current() const
      ABSL_LOCKS_EXCLUDED(snapshot_mu_);

  // Checks the file once and reloads it if its identity (inode, device,
  // size, mtime) or, while the mtime is too recent to trust, its content
  // changed. Returns the reload result when a reload was attempted, OK
  // otherwise. Thread-safe; concurrent calls are serialized.
  absl::Status Poll() ABSL_LOCKS_EXCLUDED(poll_mu_);

  ReloadStats reload_stats() const ABSL_LOCKS_EXCLUDED(stats_mu_);

 private:
  explicit PolicyWatcher(Options options);
  void Publish(std::shared_ptr<const CompiledPolicy> policy,
               std::string content_hash) ABSL_LOCKS_EXCLUDED(snapshot_mu_);
  void RecordResult(const absl::Status& status) ABSL_LOCKS_EXCLUDED(stats_mu_);
  void Run();

  const Options options_;

  mutable absl::Mutex snapshot_mu_;
  std::shared_ptr<const PolicySnapshot> snapshot_ ABSL_GUARDED_BY(snapshot_mu_);

  // Serializes Poll(); guards what the poller remembers about the file.
  absl::Mutex poll_mu_ ABSL_ACQUIRED_BEFORE(snapshot_mu_, stats_mu_);
  // What stat() said about the file at the last poll (a difference means
  // "look again"); nullopt while it is missing or must be read again.
  std::optional<util::FileVersion> last_version_ ABSL_GUARDED_BY(poll_mu_);
  // Hash of the last contents tried (in force or refused), so an unchanged
  // broken file is not retried and counted on every poll.
  std::string last_tried_hash_ ABSL_GUARDED_BY(poll_mu_);
  bool missing_reported_ ABSL_GUARDED_BY(poll_mu_) = false;

  mutable absl::Mutex stats_mu_;
  ReloadStats stats_ ABSL_GUARDED_BY(stats_mu_);

  absl::Mutex stop_mu_;
  bool stop_ ABSL_GUARDED_BY(stop_mu_) = false;
  std::thread thread_;
};

}  // namespace meshguard::sidecar::authz

#endif  // MESHGUARD_SIDECAR_AUTHZ_POLICY_SOURCE_H_
