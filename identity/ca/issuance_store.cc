#include "identity/ca/issuance_store.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"

namespace meshguard::ca {
namespace {

// Local stand-ins for the usual status macros; this module has no other
// dependency that provides them.
#define MG_RETURN_IF_ERROR(expr)             \
  do {                                       \
    absl::Status mg_status_ = (expr);        \
    if (!mg_status_.ok()) return mg_status_; \
  } while (0)

#define MG_CONCAT_INNER(a, b) a##b
#define MG_CONCAT(a, b) MG_CONCAT_INNER(a, b)
#define MG_ASSIGN_OR_RETURN(lhs, expr) \
  MG_ASSIGN_OR_RETURN_IMPL(MG_CONCAT(mg_statusor_, __LINE__), lhs, expr)
#define MG_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return tmp.status();            \
  lhs = std::move(*tmp)

// How long a writer waits for another connection's write lock before giving
// up with UNAVAILABLE. Writes here are single rows, so a long wait means
// something is wrong.
constexpr int kBusyTimeoutMs = 5000;

// Version 1. Times are microseconds since the Unix epoch (UTC). A NULL
// revoked_at_us / used_at_us means "not revoked" / "not used".
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE issuance (
  serial            TEXT    PRIMARY KEY NOT NULL,
  spiffe_id         TEXT    NOT NULL,
  not_before_us     INTEGER NOT NULL,
  not_after_us      INTEGER NOT NULL,
  issued_at_us      INTEGER NOT NULL,
  auth_method       TEXT    NOT NULL,
  requester         TEXT    NOT NULL,
  revoked_at_us     INTEGER,
  revocation_reason TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX issuance_by_spiffe_id ON issuance (spiffe_id, not_after_us);
CREATE INDEX issuance_by_issued_at ON issuance (issued_at_us);
CREATE INDEX issuance_revoked ON issuance (not_after_us)
  WHERE revoked_at_us IS NOT NULL;
CREATE TABLE join_token (
  token_hash    TEXT    PRIMARY KEY NOT NULL,
  spiffe_id     TEXT    NOT NULL,
  created_at_us INTEGER NOT NULL,
  expires_at_us INTEGER NOT NULL,
  used_at_us    INTEGER
);
CREATE TABLE crl_number (
  id   INTEGER PRIMARY KEY CHECK (id = 1),
  last INTEGER NOT NULL
);
INSERT INTO crl_number (id, last) VALUES (1, 0);
)sql";

// kMigrations[v] takes a database from user_version v to v + 1. Append only;
// never edit a step that has shipped.
constexpr const char* kMigrations[] = {kSchemaV1};
static_assert(sizeof(kMigrations) / sizeof(kMigrations[0]) ==
                  IssuanceStore::kSchemaVersion,
              "one migration step per schema version");

// Column list shared by every query that returns whole records; ReadRecord
// depends on this order.
#define MG_RECORD_COLUMNS                                          \
  "serial, spiffe_id, not_before_us, not_after_us, issued_at_us, " \
  "auth_method, requester, revoked_at_us, revocation_reason"

absl::StatusCode CodeFor(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
      return absl::StatusCode::kUnavailable;
    case SQLITE_FULL:
      return absl::StatusCode::kResourceExhausted;
    case SQLITE_CORRUPT:
      return absl::StatusCode::kDataLoss;
    // Not PERMISSION_DENIED: the store uses that for a renewal whose
    // certificate was revoked while it was in flight, a verdict on the
    // caller; a read-only database says nothing about the caller.
    case SQLITE_READONLY:
    case SQLITE_PERM:
    case SQLITE_AUTH:
    case SQLITE_NOTADB:
    case SQLITE_CANTOPEN:
      return absl::StatusCode::kFailedPrecondition;
    case SQLITE_CONSTRAINT:
      return absl::StatusCode::kAlreadyExists;
    default:
      return absl::StatusCode::kInternal;
  }
}

// "issuance database <path>: <what>: <sqlite's message>".
absl::Status SqliteError(sqlite3* db, int rc, absl::string_view path,
                         absl::string_view what) {
  const char* detail = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  return absl::Status(CodeFor(rc), absl::StrCat("issuance database ", path,
                                                ": ", what, ": ", detail));
}

struct StmtDeleter {
  void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
};
using StmtPtr = std::unique_ptr<sqlite3_stmt, StmtDeleter>;

// One prepared statement, in use. Values are only ever bound, never spliced
// into SQL. Either owns its sqlite3_stmt (Prepare: finalized when this goes
// away) or borrows one from the store's cache (Borrow: reset, and its
// bindings cleared, when this goes away, so that it holds no read snapshot
// and no copy of the values between uses).
class Statement {
 public:
  static absl::StatusOr<Statement> Prepare(sqlite3* db, absl::string_view path,
                                           absl::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    const int rc = sqlite3_prepare_v2(
        db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    StmtPtr stmt(raw);
    if (rc != SQLITE_OK) {
      return SqliteError(db, rc, path, absl::StrCat("cannot prepare ", sql));
    }
    sqlite3_stmt* borrowed = stmt.get();
    return Statement(db, path, borrowed, std::move(stmt));
  }

  // A statement from IssuanceStore::Prepared: it stays the store's, which
  // must not hand it out again before this Statement is gone.
  static absl::StatusOr<Statement> Borrow(
      sqlite3* db, absl::string_view path,
      absl::StatusOr<sqlite3_stmt*> prepared) {
    if (!prepared.ok()) return prepared.status();
    return Statement(db, path, *prepared, nullptr);
  }

  Statement(Statement&& other) noexcept
      : db_(other.db_),
        path_(other.path_),
        stmt_(std::exchange(other.stmt_, nullptr)),
        owned_(std::move(other.owned_)),
        bind_rc_(other.bind_rc_),
        last_rc_(other.last_rc_) {}
  Statement& operator=(Statement&&) = delete;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  ~Statement() {
    if (stmt_ != nullptr && owned_ == nullptr) {
      // The return value repeats the last step's error, already reported.
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  // Parameters are numbered from 1, as in SQLite.
  Statement& Bind(int i, absl::string_view text) {
    Check(sqlite3_bind_text(stmt_, i, text.data(),
                            static_cast<int>(text.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Statement& Bind(int i, int64_t value) {
    Check(sqlite3_bind_int64(stmt_, i, value));
    return *this;
  }
  Statement& Bind(int i, absl::Time t) {
    return Bind(i, absl::ToUnixMicros(t));
  }
  Statement& BindNull(int i) {
    Check(sqlite3_bind_null(stmt_, i));
    return *this;
  }

  // true: a row is ready; false: done. `what` names the operation in errors.
  absl::StatusOr<bool> Step(absl::string_view what) {
    if (bind_rc_ != SQLITE_OK) {
      return SqliteError(db_, bind_rc_, path_,
                         absl::StrCat(what, ": cannot bind parameter"));
    }
    const int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    last_rc_ = rc;
    return SqliteError(db_, rc, path_, what);
  }

  // Runs a statement that returns no rows.
  absl::Status Run(absl::string_view what) {
    absl::StatusOr<bool> row = Step(what);
    if (!row.ok()) return row.status();
    return absl::OkStatus();
  }

  // The extended result code of the last failed Step(), or SQLITE_OK.
  int last_rc() const { return last_rc_; }

  bool IsNull(int col) const {
    return sqlite3_column_type(stmt_, col) == SQLITE_NULL;
  }
  int64_t Int64(int col) const { return sqlite3_column_int64(stmt_, col); }
  absl::Time Time(int col) const { return absl::FromUnixMicros(Int64(col)); }
  std::string Text(int col) const {
    const unsigned char* text = sqlite3_column_text(stmt_, col);
    const int size = sqlite3_column_bytes(stmt_, col);
    if (text == nullptr) return std::string();
    return std::string(reinterpret_cast<const char*>(text),
                       static_cast<size_t>(size));
  }

 private:
  Statement(sqlite3* db, absl::string_view path, sqlite3_stmt* stmt,
            StmtPtr owned)
      : db_(db), path_(path), stmt_(stmt), owned_(std::move(owned)) {}

  void Check(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  absl::string_view path_;
  sqlite3_stmt* stmt_;  // owned_.get(), or borrowed
  StmtPtr owned_;
  int bind_rc_ = SQLITE_OK;
  int last_rc_ = SQLITE_OK;
};

// Runs fixed SQL (no values), e.g. BEGIN or DDL.
absl::Status Exec(sqlite3* db, absl::string_view path, const char* sql,
                  absl::string_view what) {
  const int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, path, what);
  return absl::OkStatus();
}

// A write transaction. BEGIN IMMEDIATE takes the write lock up front, so a
// read-then-write sequence inside it cannot race another connection (and
// never fails to upgrade with SQLITE_BUSY half way). Rolls back unless
// committed.
class Transaction {
 public:
  Transaction(sqlite3* db, absl::string_view path) : db_(db), path_(path) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (open_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }

  absl::Status Begin() {
    MG_RETURN_IF_ERROR(
        Exec(db_, path_, "BEGIN IMMEDIATE", "cannot begin transaction"));
    open_ = true;
    return absl::OkStatus();
  }

  // With synchronous=FULL, the WAL is fsynced before COMMIT returns.
  absl::Status Commit() {
    MG_RETURN_IF_ERROR(Exec(db_, path_, "COMMIT", "cannot commit"));
    open_ = false;
    return absl::OkStatus();
  }

 private:
  sqlite3* db_;
  absl::string_view path_;
  bool open_ = false;
};

IssuanceRecord ReadRecord(const Statement& s) {
  IssuanceRecord r;
  r.serial = s.Text(0);
  r.spiffe_id = s.Text(1);
  r.not_before = s.Time(2);
  r.not_after = s.Time(3);
  r.issued_at = s.Time(4);
  r.auth_method = s.Text(5);
  r.requester = s.Text(6);
  if (!s.IsNull(7)) r.revoked_at = s.Time(7);
  r.revocation_reason = s.Text(8);
  return r;
}

absl::StatusOr<std::vector<IssuanceRecord>> ReadRecords(
    Statement& s, absl::string_view what) {
  std::vector<IssuanceRecord> records;
  while (true) {
    MG_ASSIGN_OR_RETURN(bool row, s.Step(what));
    if (!row) break;
    records.push_back(ReadRecord(s));
  }
  return records;
}

bool IsKnownAuthMethod(absl::string_view method) {
  return method == kAuthK8sToken || method == kAuthJoinToken ||
         method == kAuthRenewal;
}

// The store must only ever hold hashes; refusing anything else catches a
// caller passing the token itself.
absl::Status ValidateTokenHash(absl::string_view hash) {
  if (hash.size() != 64) {
    return absl::InvalidArgumentError(
        "join token hash must be 64 hex digits (SHA-256)");
  }
  for (char c : hash) {
    if (!absl::ascii_isdigit(c) && !(c >= 'a' && c <= 'f')) {
      return absl::InvalidArgumentError(
          "join token hash must be lowercase hex (SHA-256)");
    }
  }
  return absl::OkStatus();
}

// Enough of the hash to find the token in logs, never the token itself.
std::string TokenLabel(absl::string_view hash) {
  return absl::StrCat("sha256 ", hash.substr(0, 12), "...");
}

constexpr absl::string_view kInsertIssuance =
    "INSERT INTO issuance (" MG_RECORD_COLUMNS
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

constexpr absl::string_view kSelectJoinToken =
    "SELECT spiffe_id, expires_at_us, used_at_us "
    "FROM join_token WHERE token_hash = ?1";

// The SPIFFE ID of a join token that could be consumed at `now`, or why
// not, with `s` prepared from kSelectJoinToken. Shared by LookupJoinToken
// and (inside its transaction) ConsumeJoinToken.
absl::StatusOr<std::string> CheckJoinToken(Statement& s,
                                           const std::string& token_hash,
                                           const std::string& label,
                                           absl::Time now) {
  s.Bind(1, token_hash);
  MG_ASSIGN_OR_RETURN(bool row,
                      s.Step(absl::StrCat("cannot read join token ", label)));
  if (!row) {
    return absl::UnauthenticatedError(
        absl::StrCat("unknown join token (", label, ")"));
  }
  std::string spiffe_id = s.Text(0);
  if (!s.IsNull(2)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "join token already used (", label, ", for ", spiffe_id, ", at ",
        absl::FormatTime(s.Time(2), absl::UTCTimeZone()), ")"));
  }
  if (now >= s.Time(1)) {
    return absl::UnauthenticatedError(absl::StrCat(
        "join token expired (", label, ", for ", spiffe_id, ", at ",
        absl::FormatTime(s.Time(1), absl::UTCTimeZone()), ")"));
  }
  return spiffe_id;
}

// Creates the file with mode 0600 unless it exists, so that SQLite (which
// gives its -wal and -shm files the database file's mode) never makes a
// world-readable issuance log. An existing file keeps its mode.
absl::Status CreateFileIfMissing(const std::string& path) {
  const int fd =
      open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return absl::OkStatus();
    const int err = errno;
    return absl::ErrnoToStatus(
        err, absl::StrCat("cannot create issuance database ", path));
  }
  // The umask may only have removed bits, but make the mode exact anyway.
  const int chmod_rc = fchmod(fd, 0600);
  const int err = errno;
  close(fd);
  if (chmod_rc != 0) {
    return absl::ErrnoToStatus(
        err, absl::StrCat("cannot set mode 0600 on issuance database ", path));
  }
  return absl::OkStatus();
}

}  // namespace

void IssuanceStore::DbCloser::operator()(sqlite3* db) const {
  // close_v2 also succeeds with statements still open (there are none: every
  // statement is finalized by its own unique_ptr first).
  sqlite3_close_v2(db);
}

void IssuanceStore::StmtFinalizer::operator()(sqlite3_stmt* stmt) const {
  sqlite3_finalize(stmt);
}

struct IssuanceStore::PendingIssuance {
  PendingIssuance(IssuanceRecord r, IssuanceDone d)
      : record(std::move(r)), done(std::move(d)) {}
  IssuanceRecord record;
  IssuanceDone done;
  absl::Status status;  // set by CommitIssuances, then passed to `done`
};

absl::StatusOr<sqlite3_stmt*> IssuanceStore::Prepared(absl::string_view sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    sqlite3_stmt* raw = nullptr;
    const int rc =
        sqlite3_prepare_v3(db_.get(), sql.data(), static_cast<int>(sql.size()),
                           SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    std::unique_ptr<sqlite3_stmt, StmtFinalizer> stmt(raw);
    if (rc != SQLITE_OK) {
      return SqliteError(db_.get(), rc, path_,
                         absl::StrCat("cannot prepare ", sql));
    }
    it = statements_.emplace(std::string(sql), std::move(stmt)).first;
  }
  return it->second.get();
}

IssuanceStore::IssuanceStore(std::string path, DbPtr db)
    : path_(std::move(path)), db_(std::move(db)) {}

IssuanceStore::~IssuanceStore() {
  std::thread committer;
  {
    absl::MutexLock lock(&queue_mu_);
    stopping_ = true;
    committer = std::move(committer_);
  }
  // The loop exits once the queue is empty: every accepted row is committed
  // and answered first.
  if (committer.joinable()) committer.join();
}

absl::StatusOr<std::unique_ptr<IssuanceStore>> IssuanceStore::Open(
    const std::string& path) {
  if (path.empty()) {
    return absl::InvalidArgumentError("issuance database path is empty");
  }
  MG_RETURN_IF_ERROR(CreateFileIfMissing(path));

  sqlite3* raw = nullptr;
  // The file exists now, so no SQLITE_OPEN_CREATE: SQLite must not create
  // one with its own default mode. FULLMUTEX is cheap insurance on top of
  // mu_.
  const int rc =
      sqlite3_open_v2(path.c_str(), &raw,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX, nullptr);
  DbPtr db(raw);  // Owned even when open failed, as SQLite requires.
  if (rc != SQLITE_OK) {
    return SqliteError(db.get(), rc, path, "cannot open");
  }
  sqlite3_extended_result_codes(db.get(), 1);
  sqlite3_busy_timeout(db.get(), kBusyTimeoutMs);

  // The first statement reads the header: this is where a file that is not
  // a database is found out.
  {
    absl::StatusOr<Statement> wal =
        Statement::Prepare(db.get(), path, "PRAGMA journal_mode=WAL");
    if (!wal.ok()) {
      return SqliteError(db.get(), sqlite3_extended_errcode(db.get()), path,
                         "cannot open");
    }
    absl::StatusOr<bool> row = wal->Step("cannot open");
    if (!row.ok()) return row.status();
    const std::string mode = *row ? wal->Text(0) : "";
    if (mode != "wal") {
      return absl::FailedPreconditionError(
          absl::StrCat("issuance database ", path,
                       ": cannot enable WAL journal mode (got \"", mode,
                       "\"); is it on a network file system?"));
    }
  }
  // Per connection: fsync the WAL on every commit, so that a commit that
  // returned survives power loss, not only a crash of this process.
  MG_RETURN_IF_ERROR(Exec(db.get(), path, "PRAGMA synchronous=FULL",
                          "cannot set synchronous=FULL"));

  auto store =
      std::unique_ptr<IssuanceStore>(new IssuanceStore(path, std::move(db)));
  {
    absl::MutexLock lock(&store->mu_);
    MG_RETURN_IF_ERROR(store->InitSchema());
  }
  return store;
}

absl::Status IssuanceStore::InitSchema() {
  sqlite3* db = db_.get();
  Transaction txn(db, path_);
  MG_RETURN_IF_ERROR(txn.Begin());

  int64_t version = 0;
  {
    MG_ASSIGN_OR_RETURN(Statement s,
                        Statement::Prepare(db, path_, "PRAGMA user_version"));
    MG_ASSIGN_OR_RETURN(bool row, s.Step("cannot read schema version"));
    if (row) version = s.Int64(0);
  }
  if (version > kSchemaVersion) {
    return absl::FailedPreconditionError(
        absl::StrCat("issuance database ", path_, ": schema version ", version,
                     " is newer than this build understands (", kSchemaVersion,
                     "); upgrade meshguard-ca"));
  }
  if (version == 0) {
    // A fresh file has no tables. Tables without our version mean some other
    // program's database: refuse rather than write into it.
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db, path_, "SELECT count(*) FROM sqlite_master"));
    MG_ASSIGN_OR_RETURN(bool row, s.Step("cannot read schema"));
    if (row && s.Int64(0) != 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "issuance database ", path_,
          ": not a meshguard issuance database (it has tables but no "
          "schema version)"));
    }
  }
  if (version == kSchemaVersion) return absl::OkStatus();  // Rolls back.

  for (int64_t v = version; v < kSchemaVersion; ++v) {
    MG_RETURN_IF_ERROR(Exec(
        db, path_, kMigrations[v],
        absl::StrCat("cannot migrate schema from version ", v, " to ", v + 1)));
  }
  // PRAGMA takes no bound parameters; the value is our own constant.
  static_assert(kSchemaVersion == 1, "update the PRAGMA below");
  MG_RETURN_IF_ERROR(
      Exec(db, path_, "PRAGMA user_version = 1", "cannot set schema version"));
  return txn.Commit();
}

absl::Status IssuanceStore::ValidateRecord(const IssuanceRecord& record) {
  if (record.serial.empty()) {
    return absl::InvalidArgumentError("issuance record has an empty serial");
  }
  if (record.spiffe_id.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "issuance record for serial ", record.serial, " has no SPIFFE ID"));
  }
  if (!IsKnownAuthMethod(record.auth_method)) {
    return absl::InvalidArgumentError(
        absl::StrCat("issuance record for serial ", record.serial,
                     ": unknown auth_method \"", record.auth_method, "\""));
  }
  if (record.not_after < record.not_before) {
    return absl::InvalidArgumentError(
        absl::StrCat("issuance record for serial ", record.serial,
                     ": not_after is before not_before"));
  }
  return absl::OkStatus();
}

void IssuanceStore::RecordIssuanceAsync(IssuanceRecord record,
                                        IssuanceDone done) {
  if (absl::Status s = ValidateRecord(record); !s.ok()) {
    std::move(done)(std::move(s));
    return;
  }
  {
    absl::MutexLock lock(&queue_mu_);
    if (!stopping_) {
      queue_.push_back(std::make_unique<PendingIssuance>(std::move(record),
                                                         std::move(done)));
      if (!committer_.joinable()) {
        committer_ = std::thread([this] { CommitLoop(); });
      }
      return;
    }
  }
  // Only a caller racing the destructor gets here; answered outside the
  // lock, as the committer answers.
  std::move(done)(absl::UnavailableError(
      absl::StrCat("issuance database ", path_, " is closing; serial ",
                   record.serial, " was not recorded")));
}

void IssuanceStore::CommitLoop() {
  for (;;) {
    std::vector<std::unique_ptr<PendingIssuance>> batch;
    {
      absl::MutexLock lock(&queue_mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(queue_mu_) {
        return stopping_ || !queue_.empty();
      };
      queue_mu_.Await(absl::Condition(&ready));
      if (queue_.empty()) return;  // stopping, nothing left
      const size_t n = std::min(queue_.size(), kMaxGroupCommit);
      for (size_t i = 0; i < n; ++i) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    std::vector<PendingIssuance*> group;
    for (const auto& p : batch) group.push_back(p.get());
    {
      absl::MutexLock lock(&mu_);
      CommitIssuances(group);
    }
    for (PendingIssuance* p : group) std::move(p->done)(std::move(p->status));
  }
}

absl::Status IssuanceStore::RecordIssuance(const IssuanceRecord& record) {
  // The committer thread's queue, waited for: callers arriving together
  // share its transactions exactly as asynchronous ones do.
  absl::Notification committed;
  absl::Status result;
  RecordIssuanceAsync(record, [&](absl::Status status) {
    result = std::move(status);
    committed.Notify();
  });
  committed.WaitForNotification();
  return result;
}

absl::Status IssuanceStore::InsertIssuance(const IssuanceRecord& record) {
  if (!record.renewed_from_serial.empty()) {
    // In the write transaction (BEGIN IMMEDIATE): what a revocation has
    // committed is visible here, and none can commit until this does.
    MG_ASSIGN_OR_RETURN(
        Statement parent,
        Statement::Borrow(db_.get(), path_,
                          Prepared("SELECT revoked_at_us IS NOT NULL FROM "
                                   "issuance WHERE serial = ?1")));
    parent.Bind(1, record.renewed_from_serial);
    MG_ASSIGN_OR_RETURN(bool row,
                        parent.Step(absl::StrCat("cannot read serial ",
                                                 record.renewed_from_serial)));
    if (row && parent.Int64(0) != 0) {
      return absl::PermissionDeniedError(absl::StrCat(
          "client certificate refused: revoked (serial ",
          record.renewed_from_serial, ", while this renewal was in flight)"));
    }
  }
  MG_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Borrow(db_.get(), path_, Prepared(kInsertIssuance)));
  s.Bind(1, record.serial)
      .Bind(2, record.spiffe_id)
      .Bind(3, record.not_before)
      .Bind(4, record.not_after)
      .Bind(5, record.issued_at)
      .Bind(6, record.auth_method)
      .Bind(7, record.requester)
      .Bind(9, record.revocation_reason);
  if (record.revoked_at.has_value()) {
    s.Bind(8, *record.revoked_at);
  } else {
    s.BindNull(8);
  }
  absl::Status status =
      s.Run(absl::StrCat("cannot record serial ", record.serial));
  if (!status.ok() && (s.last_rc() & 0xff) == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError(absl::StrCat("issuance database ", path_,
                                                 ": serial ", record.serial,
                                                 " is already recorded"));
  }
  return status;
}

void IssuanceStore::CommitIssuances(
    const std::vector<PendingIssuance*>& group) {
  if (group.size() > 1) {
    // One transaction for the group: a failing INSERT (a duplicate serial)
    // undoes only itself, and the COMMIT, with synchronous=FULL, makes every
    // other row durable with one fsync.
    Transaction txn(db_.get(), path_);
    absl::Status status = txn.Begin();
    for (PendingIssuance* p : group) {
      if (!status.ok()) break;
      p->status = InsertIssuance(p->record);
      // A duplicate serial or a revoked renewing certificate refuses its
      // row alone; the transaction goes on.
      if (!p->status.ok() && !absl::IsAlreadyExists(p->status) &&
          !absl::IsPermissionDenied(p->status)) {
        status = p->status;  // the transaction may be gone; start over
      }
    }
    if (status.ok()) status = txn.Commit();
    if (status.ok()) {
      ++commit_stats_.commits;
      for (const PendingIssuance* p : group) {
        if (p->status.ok()) ++commit_stats_.rows;
      }
      return;
    }
    // Rolled back as `txn` goes: nothing of the group was written. Each row
    // on its own then, so that one row's failure is not everyone's.
  }
  for (PendingIssuance* p : group) {
    // One statement in autocommit mode: committed (and fsynced) when it
    // returns.
    p->status = InsertIssuance(p->record);
    if (p->status.ok()) {
      ++commit_stats_.commits;
      ++commit_stats_.rows;
    }
  }
}

IssuanceStore::CommitStats IssuanceStore::commit_stats() const {
  absl::MutexLock lock(&mu_);
  return commit_stats_;
}

absl::Status IssuanceStore::CreateJoinToken(const std::string& token_hash,
                                            const std::string& spiffe_id,
                                            absl::Time expires_at,
                                            absl::Time created_at) {
  MG_RETURN_IF_ERROR(ValidateTokenHash(token_hash));
  if (spiffe_id.empty()) {
    return absl::InvalidArgumentError("join token has no SPIFFE ID");
  }
  absl::MutexLock lock(&mu_);
  MG_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Borrow(db_.get(), path_,
                        Prepared("INSERT INTO join_token (token_hash, "
                                 "spiffe_id, created_at_us, expires_at_us, "
                                 "used_at_us) VALUES (?1, ?2, ?3, ?4, NULL)")));
  s.Bind(1, token_hash)
      .Bind(2, spiffe_id)
      .Bind(3, created_at)
      .Bind(4, expires_at);
  absl::Status status = s.Run(absl::StrCat(
      "cannot store join token ", TokenLabel(token_hash), " for ", spiffe_id));
  if (!status.ok() && (s.last_rc() & 0xff) == SQLITE_CONSTRAINT) {
    return absl::AlreadyExistsError(
        absl::StrCat("issuance database ", path_, ": join token ",
                     TokenLabel(token_hash), " already exists"));
  }
  return status;
}

absl::StatusOr<std::string> IssuanceStore::ConsumeJoinToken(
    const std::string& token_hash, absl::Time now) {
  MG_RETURN_IF_ERROR(ValidateTokenHash(token_hash));
  const std::string label = TokenLabel(token_hash);

  absl::MutexLock lock(&mu_);
  sqlite3* db = db_.get();
  Transaction txn(db, path_);
  MG_RETURN_IF_ERROR(txn.Begin());

  std::string spiffe_id;
  {
    MG_ASSIGN_OR_RETURN(
        Statement s, Statement::Borrow(db, path_, Prepared(kSelectJoinToken)));
    MG_ASSIGN_OR_RETURN(spiffe_id, CheckJoinToken(s, token_hash, label, now));
  }
  {
    // The IS NULL guard makes the consume safe on its own, even without the
    // write lock BEGIN IMMEDIATE already holds.
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Borrow(db, path_,
                          Prepared("UPDATE join_token SET used_at_us = ?1 "
                                   "WHERE token_hash = ?2 AND used_at_us IS "
                                   "NULL")));
    s.Bind(1, now).Bind(2, token_hash);
    MG_RETURN_IF_ERROR(
        s.Run(absl::StrCat("cannot mark join token ", label, " used")));
    if (sqlite3_changes(db) != 1) {
      return absl::UnauthenticatedError(
          absl::StrCat("join token already used (", label, ")"));
    }
  }
  MG_RETURN_IF_ERROR(txn.Commit());
  return spiffe_id;
}

absl::StatusOr<std::string> IssuanceStore::LookupJoinToken(
    const std::string& token_hash, absl::Time now) {
  MG_RETURN_IF_ERROR(ValidateTokenHash(token_hash));
  absl::MutexLock lock(&mu_);
  MG_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Borrow(db_.get(), path_, Prepared(kSelectJoinToken)));
  return CheckJoinToken(s, token_hash, TokenLabel(token_hash), now);
}

absl::StatusOr<std::vector<std::string>> IssuanceStore::RevokeSerial(
    const std::string& serial, const std::string& reason, absl::Time now) {
  absl::MutexLock lock(&mu_);
  sqlite3* db = db_.get();
  Transaction txn(db, path_);
  MG_RETURN_IF_ERROR(txn.Begin());
  {
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Borrow(db, path_,
                          Prepared("SELECT revoked_at_us FROM issuance "
                                   "WHERE serial = ?1")));
    s.Bind(1, serial);
    MG_ASSIGN_OR_RETURN(bool row,
                        s.Step(absl::StrCat("cannot read serial ", serial)));
    if (!row) {
      return absl::NotFoundError(
          absl::StrCat("serial ", serial, " is not in the issuance log"));
    }
    if (!s.IsNull(0)) return std::vector<std::string>();
  }
  {
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Borrow(db, path_,
                          Prepared("UPDATE issuance SET revoked_at_us = ?1, "
                                   "revocation_reason = ?2 "
                                   "WHERE serial = ?3 AND revoked_at_us IS "
                                   "NULL")));
    s.Bind(1, now).Bind(2, reason).Bind(3, serial);
    MG_RETURN_IF_ERROR(s.Run(absl::StrCat("cannot revoke serial ", serial)));
  }
  MG_RETURN_IF_ERROR(txn.Commit());
  return std::vector<std::string>{serial};
}

absl::StatusOr<std::vector<std::string>> IssuanceStore::RevokeSpiffeId(
    const std::string& spiffe_id, const std::string& reason, absl::Time now) {
  const std::string what = absl::StrCat("cannot revoke ", spiffe_id);
  absl::MutexLock lock(&mu_);
  sqlite3* db = db_.get();
  Transaction txn(db, path_);
  MG_RETURN_IF_ERROR(txn.Begin());
  std::vector<std::string> serials;
  {
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Borrow(
            db, path_,
            Prepared("SELECT serial FROM issuance WHERE spiffe_id = ?1 "
                     "AND revoked_at_us IS NULL AND not_after_us > ?2 "
                     "ORDER BY issued_at_us DESC, rowid DESC")));
    s.Bind(1, spiffe_id).Bind(2, now);
    while (true) {
      MG_ASSIGN_OR_RETURN(bool row, s.Step(what));
      if (!row) break;
      serials.push_back(s.Text(0));
    }
  }
  if (serials.empty()) return serials;
  {
    // Same predicate, same transaction: updates exactly the rows read above.
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Borrow(
            db, path_,
            Prepared("UPDATE issuance SET revoked_at_us = ?1, "
                     "revocation_reason = ?2 WHERE spiffe_id = ?3 "
                     "AND revoked_at_us IS NULL AND not_after_us > ?1")));
    s.Bind(1, now).Bind(2, reason).Bind(3, spiffe_id);
    MG_RETURN_IF_ERROR(s.Run(what));
  }
  MG_RETURN_IF_ERROR(txn.Commit());
  return serials;
}

absl::StatusOr<std::vector<IssuanceRecord>> IssuanceStore::ListRevokedUnexpired(
    absl::Time now) {
  absl::MutexLock lock(&mu_);
  MG_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Borrow(db_.get(), path_,
                        Prepared("SELECT " MG_RECORD_COLUMNS " FROM issuance "
                                 "WHERE revoked_at_us IS NOT NULL "
                                 "AND not_after_us > ?1 "
                                 "ORDER BY revoked_at_us, serial")));
  s.Bind(1, now);
  return ReadRecords(s, "cannot list revoked certificates");
}

absl::StatusOr<std::vector<IssuanceRecord>> IssuanceStore::List(
    const ListFilter& filter) {
  const int64_t limit = filter.limit == 0 ? 1000 : filter.limit;
  absl::MutexLock lock(&mu_);
  MG_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Borrow(
          db_.get(), path_,
          Prepared(
              "SELECT " MG_RECORD_COLUMNS " FROM issuance "
              "WHERE (?1 = '' OR spiffe_id = ?1) "
              "AND (?2 = 0 OR (revoked_at_us IS NULL AND not_after_us > ?3)) "
              "ORDER BY issued_at_us DESC, rowid DESC LIMIT ?4")));
  s.Bind(1, filter.spiffe_id)
      .Bind(2, int64_t{filter.live_only ? 1 : 0})
      .Bind(3, filter.now)
      .Bind(4, limit);
  return ReadRecords(s, "cannot list certificates");
}

absl::StatusOr<std::optional<IssuanceRecord>> IssuanceStore::Get(
    const std::string& serial) {
  absl::MutexLock lock(&mu_);
  MG_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Borrow(db_.get(), path_,
                        Prepared("SELECT " MG_RECORD_COLUMNS
                                 " FROM issuance WHERE serial = ?1")));
  s.Bind(1, serial);
  MG_ASSIGN_OR_RETURN(bool row,
                      s.Step(absl::StrCat("cannot read serial ", serial)));
  if (!row) return std::optional<IssuanceRecord>();
  return std::optional<IssuanceRecord>(ReadRecord(s));
}

absl::StatusOr<bool> IssuanceStore::IsRevoked(const std::string& serial) {
  absl::MutexLock lock(&mu_);
  MG_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Borrow(db_.get(), path_,
                        Prepared("SELECT revoked_at_us IS NOT NULL FROM "
                                 "issuance WHERE serial = ?1")));
  s.Bind(1, serial);
  MG_ASSIGN_OR_RETURN(bool row,
                      s.Step(absl::StrCat("cannot read serial ", serial)));
  if (!row) {
    return absl::NotFoundError(
        absl::StrCat("serial ", serial, " is not in the issuance log"));
  }
  return s.Int64(0) != 0;
}

absl::StatusOr<int64_t> IssuanceStore::NextCrlNumber() {
  absl::MutexLock lock(&mu_);
  sqlite3* db = db_.get();
  Transaction txn(db, path_);
  MG_RETURN_IF_ERROR(txn.Begin());
  {
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Borrow(db, path_,
                          Prepared("UPDATE crl_number SET last = last + 1 "
                                   "WHERE id = 1")));
    MG_RETURN_IF_ERROR(s.Run("cannot advance CRL number"));
  }
  int64_t number = 0;
  {
    MG_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Borrow(
            db, path_, Prepared("SELECT last FROM crl_number WHERE id = 1")));
    MG_ASSIGN_OR_RETURN(bool row, s.Step("cannot read CRL number"));
    if (!row) {
      return absl::DataLossError(absl::StrCat("issuance database ", path_,
                                              ": CRL number row is missing"));
    }
    number = s.Int64(0);
  }
  MG_RETURN_IF_ERROR(txn.Commit());
  return number;
}

#undef MG_RECORD_COLUMNS
#undef MG_ASSIGN_OR_RETURN_IMPL
#undef MG_ASSIGN_OR_RETURN
#undef MG_CONCAT
#undef MG_CONCAT_INNER
#undef MG_RETURN_IF_ERROR

}  // namespace meshguard::ca
