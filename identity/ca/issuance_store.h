// The CA's durable issuance log, in one SQLite file: every certificate the CA
// has issued, every revocation, the one-time join tokens and the CRL number.
//
// Durability contract: every mutating call commits (WAL, synchronous=FULL)
// before it returns OK, so the CA acknowledges a certificate or a consumed
// join token only once the record survives a crash of the process or the
// machine.
//
// Times are stored as integer microseconds since the Unix epoch (UTC), so
// they round-trip absl::Time at microsecond precision; sub-microsecond parts
// are truncated toward the past. A certificate is live at `now` while
// now < not_after and it is not revoked.
//
// Thread-safe: one connection, used under one mutex; every call runs to
// completion (including its fsync) while holding it. Issuances are committed
// in groups by one committer thread: it writes every row queued at that
// moment in one transaction (one fsync) while later rows queue up for the
// next, as LevelDB's DBImpl::Write groups writers. RecordIssuanceAsync
// answers each row through a callback once the transaction holding it has
// committed, so a server thread need not wait through the fsync;
// RecordIssuance waits for that answer. Several processes (or
// several IssuanceStore objects) may open the same file; SQLite's locks
// serialize their writes and busy_timeout makes them wait rather than fail.
//
// This class knows nothing of certificates or tokens themselves: serials are
// opaque strings (the CA uses lowercase hex) and join tokens arrive already
// hashed.
#ifndef MESHGUARD_IDENTITY_CA_ISSUANCE_STORE_H_
#define MESHGUARD_IDENTITY_CA_ISSUANCE_STORE_H_

#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/functional/any_invocable.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

// From <sqlite3.h>; kept out of this header so users need not see SQLite.
struct sqlite3;
struct sqlite3_stmt;

namespace meshguard::ca {

// How the caller of IssueCertificate authenticated.
inline constexpr absl::string_view kAuthK8sToken = "k8s_token";
inline constexpr absl::string_view kAuthJoinToken = "join_token";
inline constexpr absl::string_view kAuthRenewal = "renewal";

struct IssuanceRecord {
  std::string serial;
  std::string spiffe_id;
  absl::Time not_before = absl::UnixEpoch();
  absl::Time not_after = absl::UnixEpoch();
  absl::Time issued_at = absl::UnixEpoch();
  std::string auth_method;  // kAuthK8sToken | kAuthJoinToken | kAuthRenewal
  // Who asked: the token's subject, the join token's hash prefix or the
  // renewing certificate's serial; free text for the audit trail.
  std::string requester;
  std::optional<absl::Time> revoked_at;
  std::string revocation_reason;
  // A renewal: the serial of the certificate that authenticated it. Not
  // stored; checked inside the committing transaction, which refuses the
  // row (PERMISSION_DENIED) if that certificate is revoked by then. SQLite
  // serializes writers, so a revocation either commits first (this row is
  // refused) or after (and, by SPIFFE ID, revokes this row too): a renewal
  // in flight during a revocation cannot leave a live certificate behind.
  std::string renewed_from_serial;
};

class IssuanceStore final {
 public:
  // The schema version this build writes and understands (PRAGMA
  // user_version). Opening a file with a newer version fails rather than risk
  // misreading it.
  static constexpr int kSchemaVersion = 1;

  // Opens (creating with mode 0600 if missing) the database at `path` and
  // creates or migrates its schema. Errors name the path: unwritable
  // directory, not a database, a database of another program, a newer
  // schema version.
  static absl::StatusOr<std::unique_ptr<IssuanceStore>> Open(
      const std::string& path);

  IssuanceStore(const IssuanceStore&) = delete;
  IssuanceStore& operator=(const IssuanceStore&) = delete;
  ~IssuanceStore();

  const std::string& path() const { return path_; }

  // Appends one issuance, durable before it returns (the transaction holding
  // it, possibly shared with concurrent callers' rows, has committed).
  // ALREADY_EXISTS if the serial is already recorded; INVALID_ARGUMENT for an
  // empty serial or SPIFFE ID or an unknown auth_method.
  absl::Status RecordIssuance(const IssuanceRecord& record);

  // The same, without waiting: `record` is committed on the store's
  // committer thread (started on first use), grouped with every row queued
  // meanwhile, and `done` then runs on that thread with what RecordIssuance
  // would have returned (or at once, on the caller's thread, for a record
  // RecordIssuance would refuse without writing). `done` must not call
  // RecordIssuance (it would wait for the thread it runs on). Rows queued
  // before the store is destroyed are committed and their callbacks run before
  // the destructor returns.
  using IssuanceDone = absl::AnyInvocable<void(absl::Status) &&>;
  void RecordIssuanceAsync(IssuanceRecord record, IssuanceDone done);

  // Stores a join token by the SHA-256 hex of its value (the store never
  // sees the token). ALREADY_EXISTS if the hash is already stored.
  absl::Status CreateJoinToken(const std::string& token_hash,
                               const std::string& spiffe_id,
                               absl::Time expires_at, absl::Time created_at);

  // Marks the token used and returns the SPIFFE ID it bootstraps. Atomic and
  // durable before it returns: of any number of concurrent callers, in any
  // number of processes, across restarts, exactly one ever succeeds.
  // UNAUTHENTICATED "unknown join token" / "join token already used" /
  // "join token expired" (expired when now >= expires_at).
  absl::StatusOr<std::string> ConsumeJoinToken(const std::string& token_hash,
                                               absl::Time now);

  // The checks of ConsumeJoinToken without using the token up: its SPIFFE
  // ID if it could be consumed at `now`, else the same errors. Lets the CA
  // refuse a request for other reasons without burning the token.
  absl::StatusOr<std::string> LookupJoinToken(const std::string& token_hash,
                                              absl::Time now);

  // Revokes one certificate. Returns {serial} if this call revoked it, an
  // empty vector if it was already revoked; NOT_FOUND for an unknown serial.
  absl::StatusOr<std::vector<std::string>> RevokeSerial(
      const std::string& serial, const std::string& reason, absl::Time now);

  // Revokes every live certificate of `spiffe_id` and returns their serials,
  // newest first (empty if there were none). Expired and already revoked
  // certificates are left as they are.
  absl::StatusOr<std::vector<std::string>> RevokeSpiffeId(
      const std::string& spiffe_id, const std::string& reason, absl::Time now);

  // Revoked certificates that have not expired at `now`: what the CRL must
  // list. Ordered by revocation time, then serial.
  absl::StatusOr<std::vector<IssuanceRecord>> ListRevokedUnexpired(
      absl::Time now);

  struct ListFilter {
    std::string spiffe_id;   // exact match; empty for all
    bool live_only = false;  // neither expired at `now` nor revoked
    absl::Time now = absl::UnixEpoch();
    uint32_t limit = 1000;  // 0 means the default, 1000
  };
  // Newest issuance first.
  absl::StatusOr<std::vector<IssuanceRecord>> List(const ListFilter& filter);

  // std::nullopt for an unknown serial.
  absl::StatusOr<std::optional<IssuanceRecord>> Get(const std::string& serial);

  // NOT_FOUND for an unknown serial.
  absl::StatusOr<bool> IsRevoked(const std::string& serial);

  // The next CRL number (1, 2, 3, ...), persisted: strictly increasing
  // across calls, processes and restarts.
  absl::StatusOr<int64_t> NextCrlNumber();

  // Transactions that recorded issuances, and the rows they committed, since
  // Open (rows / commits is the mean group size). For metrics and tests.
  struct CommitStats {
    int64_t commits = 0;
    int64_t rows = 0;
  };
  CommitStats commit_stats() const;

 private:
  struct DbCloser {
    void operator()(sqlite3* db) const;
  };
  using DbPtr = std::unique_ptr<sqlite3, DbCloser>;
  struct StmtFinalizer {
    void operator()(sqlite3_stmt* stmt) const;
  };
  // A queued row, its callback and, once committed, its status (defined in
  // the .cc).
  struct PendingIssuance;

  // The most rows one group commit takes; later arrivals wait for the next.
  static constexpr size_t kMaxGroupCommit = 256;

  IssuanceStore(std::string path, DbPtr db);

  absl::Status InitSchema() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // `sql` prepared on db_ on first use and kept until the store closes. The
  // caller wraps it in a Statement (issuance_store.cc), which resets it and
  // clears its bindings when done, and uses it only while holding mu_.
  absl::StatusOr<sqlite3_stmt*> Prepared(absl::string_view sql)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Writes `group`'s rows and commits, setting each one's status: one
  // transaction for all, or, if that fails as a whole (not merely a
  // duplicate serial), one transaction each, so that every row gets its own
  // fate.
  void CommitIssuances(const std::vector<PendingIssuance*>& group)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // One row in autocommit mode.
  absl::Status InsertIssuance(const IssuanceRecord& record)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;

  // Checks RecordIssuance's preconditions (everything but the serial's
  // uniqueness).
  static absl::Status ValidateRecord(const IssuanceRecord& record);

  // The committer thread's loop: take every queued row (up to
  // kMaxGroupCommit), commit them as a group, run their callbacks.
  void CommitLoop();

  // The committer thread and its queue. queue_mu_ is never held while
  // waiting for mu_: rows arriving during a commit queue for the next one.
  absl::Mutex queue_mu_;
  std::deque<std::unique_ptr<PendingIssuance>> queue_
      ABSL_GUARDED_BY(queue_mu_);
  bool stopping_ ABSL_GUARDED_BY(queue_mu_) = false;
  std::thread committer_ ABSL_GUARDED_BY(queue_mu_);

  mutable absl::Mutex mu_;
  // The one connection. Guarded: SQLite connections are not to be used by two
  // threads at once, and a transaction spans several statements.
  DbPtr db_ ABSL_GUARDED_BY(mu_);
  // Declared after db_, so destroyed (finalized) before it closes.
  absl::flat_hash_map<std::string, std::unique_ptr<sqlite3_stmt, StmtFinalizer>>
      statements_ ABSL_GUARDED_BY(mu_);
  CommitStats commit_stats_ ABSL_GUARDED_BY(mu_);
};

}  // namespace meshguard::ca

#endif  // MESHGUARD_IDENTITY_CA_ISSUANCE_STORE_H_
