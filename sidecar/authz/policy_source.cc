#include "sidecar/authz/policy_source.h"

#include <cstdio>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "identity/util/file_util.h"
#include "identity/util/yaml_config.h"

namespace meshguard::sidecar::authz {
namespace {

// A file modified this recently may be modified again within the same
// mtime tick without changing size or inode (the "racy git" problem), so
// its content is hashed on every poll until it is older than this.
constexpr absl::Duration kRacyWindow = absl::Seconds(2);

struct LoadedPolicy {
  std::shared_ptr<const CompiledPolicy> policy;
  std::string content_hash;
};

// Parses and compiles `contents`, read from `path`.
absl::StatusOr<std::shared_ptr<const CompiledPolicy>> CompileYaml(
    absl::string_view contents, const std::string& path) {
  absl::StatusOr<AuthorizationPolicy> proto = ParsePolicyYaml(contents, path);
  if (!proto.ok()) return proto.status();
  return CompiledPolicy::Compile(*proto, path);
}

absl::StatusOr<LoadedPolicy> ReadAndCompile(const std::string& path) {
  // Read once, then hash and parse the same bytes, so the published hash is
  // the hash of what is in force.
  absl::StatusOr<std::string> contents =
      util::ReadFile(path, util::kMaxYamlConfigBytes);
  if (!contents.ok()) return contents.status();
  absl::StatusOr<std::shared_ptr<const CompiledPolicy>> policy =
      CompileYaml(*contents, path);
  if (!policy.ok()) return policy.status();
  return LoadedPolicy{*std::move(policy), ContentHash(*contents)};
}

}  // namespace

absl::StatusOr<AuthorizationPolicy> ParsePolicyYaml(absl::string_view contents,
                                                    const std::string& path) {
  // An empty file is most likely a writer caught between truncate and
  // write; taking it as "no rules, default DENY" would deny every call,
  // at start or on a reload. A policy with no rules is written as
  // `default_action: ...`.
  if (absl::StripAsciiWhitespace(contents).empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": policy file is empty (write at least default_action)"));
  }
  AuthorizationPolicy proto;
  if (absl::Status s = util::ParseYamlToMessage(contents, path, &proto);
      !s.ok()) {
    return s;
  }
  return proto;
}

absl::StatusOr<std::shared_ptr<const CompiledPolicy>> LoadPolicyFile(
    const std::string& path) {
  absl::StatusOr<LoadedPolicy> loaded = ReadAndCompile(path);
  if (!loaded.ok()) return loaded.status();
  return std::move(loaded->policy);
}

std::string ContentHash(absl::string_view contents) {
  uint64_t h = 14695981039346656037ull;
  for (unsigned char c : contents) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return absl::StrFormat("%016x", h);
}

PolicyWatcher::PolicyWatcher(Options options) : options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<PolicyWatcher>> PolicyWatcher::Create(
    Options options) {
  std::unique_ptr<PolicyWatcher> w(new PolicyWatcher(std::move(options)));
  const std::string& path = w->options_.path;
  if (path.empty()) {
    absl::StatusOr<std::shared_ptr<const CompiledPolicy>> builtin =
        CompiledPolicy::Compile(
            BuiltinTrustDomainPolicy(w->options_.trust_domain), "<built-in>");
    if (!builtin.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("no policy file configured and the built-in policy for "
                       "trust domain \"",
                       w->options_.trust_domain,
                       "\" is invalid: ", builtin.status().message()));
    }
    absl::MutexLock lock(&w->snapshot_mu_);
    w->snapshot_ = std::make_shared<const PolicySnapshot>(
        PolicySnapshot{*std::move(builtin), 1, "", "<built-in>"});
    return w;
  }

  {
    absl::MutexLock lock(&w->poll_mu_);
    // Stat before reading: if the file changes in between, the next poll
    // sees a new version and loads it again.
    if (absl::StatusOr<util::FileVersion> version = util::StatFileVersion(path);
        version.ok()) {
      w->last_version_ = *version;
    }
    absl::StatusOr<LoadedPolicy> loaded = ReadAndCompile(path);
    if (!loaded.ok()) {
      return absl::Status(loaded.status().code(),
                          absl::StrCat("cannot load the authorization policy: ",
                                       loaded.status().message()));
    }
    w->last_tried_hash_ = loaded->content_hash;
    absl::MutexLock snapshot_lock(&w->snapshot_mu_);
    w->snapshot_ = std::make_shared<const PolicySnapshot>(PolicySnapshot{
        std::move(loaded->policy), 1, std::move(loaded->content_hash), path});
  }
  if (w->options_.start_thread) {
    w->thread_ = std::thread([raw = w.get()] { raw->Run(); });
  }
  return w;
}

PolicyWatcher::~PolicyWatcher() {
  {
    absl::MutexLock lock(&stop_mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const PolicySnapshot> PolicyWatcher::Current() const {
  absl::ReaderMutexLock lock(&snapshot_mu_);
  return snapshot_;
}

ReloadStats PolicyWatcher::reload_stats() const {
  absl::MutexLock lock(&stats_mu_);
  return stats_;
}

void PolicyWatcher::Publish(std::shared_ptr<const CompiledPolicy> policy,
                            std::string content_hash) {
  absl::MutexLock lock(&snapshot_mu_);
  snapshot_ = std::make_shared<const PolicySnapshot>(
      PolicySnapshot{std::move(policy), snapshot_->version + 1,
                     std::move(content_hash), options_.path});
}

void PolicyWatcher::RecordResult(const absl::Status& status) {
  absl::MutexLock lock(&stats_mu_);
  if (status.ok()) {
    ++stats_.ok;
  } else {
    ++stats_.error;
  }
  stats_.last_result = status;
  stats_.last_change_seen = absl::Now();
}

absl::Status PolicyWatcher::Poll() {
  if (options_.path.empty()) return absl::OkStatus();
  absl::Status result;
  {
    absl::MutexLock lock(&poll_mu_);
    const std::string& path = options_.path;
    // stat, not lstat: a Kubernetes ConfigMap swaps a symlink to a new
    // directory, which shows up as a new inode of the target.
    absl::StatusOr<util::FileVersion> now = util::StatFileVersion(path);
    if (!now.ok()) {
      if (missing_reported_) return absl::OkStatus();
      missing_reported_ = true;
      last_version_.reset();
      result = absl::NotFoundError(
          absl::StrCat("policy file ", path,
                       " is missing; keeping the policy in force (version ",
                       Current()->version, ")"));
    } else {
      missing_reported_ = false;
      bool racy =
          absl::FromUnixNanos(now->mtime_ns) > absl::Now() - kRacyWindow;
      if (last_version_ == *now && !racy) return absl::OkStatus();
      last_version_ = *now;
      absl::StatusOr<std::string> contents =
          util::ReadFile(path, util::kMaxYamlConfigBytes);
      if (!contents.ok()) {
        result = contents.status();
        // Retry the read on the next poll, but count this failure once.
        std::string marker = absl::StrCat("read error: ", result.ToString());
        if (marker == last_tried_hash_) return absl::OkStatus();
        last_tried_hash_ = std::move(marker);
        last_version_.reset();
      } else {
        std::string hash = ContentHash(*contents);
        if (hash == last_tried_hash_) return absl::OkStatus();
        last_tried_hash_ = hash;
        absl::StatusOr<std::shared_ptr<const CompiledPolicy>> policy =
            CompileYaml(*contents, path);
        if (policy.ok()) {
          Publish(*std::move(policy), std::move(hash));
        } else {
          result = policy.status();
        }
      }
    }
    RecordResult(result);
  }
  if (options_.on_reload) options_.on_reload(result, *Current());
  return result;
}

void PolicyWatcher::Run() {
  while (true) {
    {
      absl::MutexLock lock(&stop_mu_);
      stop_mu_.AwaitWithTimeout(absl::Condition(&stop_),
                                options_.poll_interval);
      if (stop_) return;
    }
    Poll().IgnoreError();
  }
}

}  // namespace meshguard::sidecar::authz
