// The SQLite journal store (open_sqlite_journal in troupe/journal.hpp), the
// durable journal. The journal writer actor calls append() and purge() on
// its own thread; recovery, workflow actors and the CLI read from any
// thread. One connection and one mutex: a read waits while an append runs.
// SQLite's result codes become troupe errors in one place, sqlite_error().
//
// FILE FORMAT
//
// A troupe journal is a SQLite 3 database in WAL mode marked with
//   PRAGMA application_id = 0x54525550 ("TRUP")
//   PRAGMA user_version   = the schema version (4, see "Versions")
//
// events         one row per event, append-only
//   seq          INTEGER PRIMARY KEY   the rowid; global order (I4)
//   workflow     INTEGER NOT NULL   the workflow's workflows.n
//   wf_seq       INTEGER NOT NULL   1, 2, ... within the workflow (I2)
//   kind         TEXT NOT NULL      "step_completed", ...
//   at_ns        INTEGER NOT NULL   event time
//   payload      TEXT NOT NULL      the event, JSON (event codec)
//   UNIQUE (workflow, wf_seq)       also the index read() walks
// workflows      one row per workflow (I3)
//   n                INTEGER PRIMARY KEY   the rowid: the workflow's number,
//                                          assigned with its row, never changed
//   id               TEXT NOT NULL UNIQUE
//   definition       TEXT NOT NULL
//   version          INTEGER NOT NULL
//   idempotency_key  TEXT          NULL when the workflow has none
//   status           TEXT NOT NULL  running | parked | dead_lettered |
//                                   completed | failed
//   outcome          TEXT NOT NULL
//   created_ns       INTEGER NOT NULL
//   updated_ns       INTEGER NOT NULL
//   user_id          TEXT NOT NULL  who it runs for, "" = none (since schema 3)
//   INDEX workflows_key  UNIQUE (idempotency_key)
//                        WHERE idempotency_key IS NOT NULL      (I5)
//   INDEX workflows_open (created_ns, id)
//                        WHERE status NOT IN ('completed', 'failed')
//                        open_workflows(): only open rows, oldest first
//   INDEX workflows_status (status, created_ns, id)     (since schema 4)
//                        list_workflows(): newest first within a status
//                        (all statuses: five such walks merged), and
//                        count_workflows() once per store, a covering scan
//   INDEX workflows_done (updated_ns)
//                        WHERE status IN ('completed', 'failed')   purge()
// snapshots      the latest snapshot of each workflow (I7)
//   workflow_id  TEXT PRIMARY KEY
//   wf_seq       INTEGER NOT NULL   the state is the one after this event
//   state        TEXT NOT NULL      state codec
// effects        recorded side effects (I6)
//   key          TEXT PRIMARY KEY   "<workflow>/<node>#<visit>/<effect>"
//   workflow_id  TEXT NOT NULL
//   result       TEXT NOT NULL      JSON
//   at_ns        INTEGER NOT NULL
//   INDEX effects_workflow (workflow_id)             purge(), effects_of()
// dead_letters   append-only; purge() keeps them
//   id           INTEGER PRIMARY KEY   insertion order
//   workflow_id, node, outcome, reason  TEXT NOT NULL
//   at_ns        INTEGER NOT NULL
// journal_state  named numbers
//   key          TEXT PRIMARY KEY
//   value        INTEGER NOT NULL
//   'purged_seq'   the highest seq assigned when purge() last ran (I4)
//
// Invariants. append() enforces them; the code cites the numbers.
//   I1  One append() is one transaction: a batch is entirely present or
//       entirely absent, after a failed append and after a crash.
//   I2  A workflow's events have wf_seq 1..n without gaps or repeats: the
//       events of one write belong to one workflow, are consecutive, and
//       continue the stored ones.
//   I3  Every workflow with events has a row; the row is written with or
//       before the first event.
//   I4  seq grows in append order and is never reused, even after purge:
//       the next seq is 1 + the highest of max(events.seq) and purged_seq.
//       (The store assigns it; AUTOINCREMENT would cost a write per event.)
//   I5  A non-empty idempotency key belongs to at most one workflow.
//   I6  An effect key keeps the result first recorded under it.
//   I7  A snapshot replaces the stored one only if its wf_seq is at least
//       as high.
//
// Recovery rule. After a crash a reader may assume I1-I7, and that every
// acknowledged append is present. A failed append is not visible through
// the store that failed it (SQLite rolled it back), but it is not certain
// to be absent from the file: when the fsync of its commit failed, the
// commit frame may already be in the WAL, and a process that dies before
// writing again leaves a file in which the next open finds the batch,
// entirely (I1). So the writer treats a failed batch as "outcome unknown
// until the journal is read again", which is what recovery does.
//
// Versions. `migrations` is an ordered list: step k takes a file from
// user_version k to k + 1. Opening applies the steps a file lacks and sets
// user_version in the same transaction. A file with a user_version beyond
// this build's is refused untouched: journal_unusable "... was written by a
// newer troupe (schema N, this build knows up to M)". A format change edits
// this comment, then appends a step.
//   1  events.workflow_id TEXT (the id itself) and workflows.id TEXT PRIMARY
//      KEY, no workflows.n
//   2  events refer to their workflow by workflows.n: an index entry of a
//      few bytes instead of the id's 30 or so, so the entries of the
//      workflows in flight share index pages and a commit writes fewer of
//      them. Step 2 rebuilds both tables (n in created_ns order).
//   3  workflows.status may be 'dead_lettered' (an open status: the
//      workflow waits for an operator), and workflows.user_id names who the
//      workflow runs for. Step 3 rebuilds workflows, keeping each row's n.
//   4  INDEX workflows_status, so that listing workflows (the admin API)
//      reads a page of index entries instead of scanning and sorting the
//      table. Step 4 only adds it.
//
// Opening. Nothing is written before the file is known to be ours or new:
// a file that is not SQLite, or SQLite with another application_id, or with
// schema objects and no application_id, is refused untouched (even setting
// journal_mode=WAL would change it). A missing or empty file is created.
// Then: WAL, synchronous from the options, locking_mode=EXCLUSIVE, and a
// write transaction that takes the lock, held until the store is destroyed
// (a second opener, in this process or another, is refused as locked). The
// WAL index lives in heap memory: there is no -shm file, and no other
// process, not even the sqlite3 shell, can read the file while it is open.
// Connection settings, not part of the format: a 32 MiB page cache, and a
// checkpoint each 4000 WAL pages (fewer, larger checkpoints: a commit that
// runs one takes longer, see bench/bench_journal.cpp).
//
// Cost. The index on (workflow, wf_seq) makes an append touch the index
// pages of the workflows in the batch. Numbers are assigned in start order
// and entries are small, so the workflows in flight share a few pages.
#include <sqlite3.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "troupe/errors.hpp"
#include "troupe/journal.hpp"

namespace troupe {

namespace {

constexpr int32_t troupe_application_id = 0x54525550;

/// Bounds sqlite_journal::known_ (about 100 bytes an entry).
constexpr size_t max_cached_workflows = 100'000;

const char* const migrations[] = {
  // 0 -> 1
  R"sql(
CREATE TABLE events (
  seq INTEGER PRIMARY KEY,
  workflow_id TEXT NOT NULL,
  wf_seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  at_ns INTEGER NOT NULL,
  payload TEXT NOT NULL,
  UNIQUE (workflow_id, wf_seq));
CREATE TABLE workflows (
  id TEXT PRIMARY KEY,
  definition TEXT NOT NULL,
  version INTEGER NOT NULL,
  idempotency_key TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'parked', 'completed', 'failed')),
  outcome TEXT NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL);
CREATE UNIQUE INDEX workflows_key ON workflows (idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX workflows_open ON workflows (created_ns, id)
  WHERE status NOT IN ('completed', 'failed');
CREATE INDEX workflows_done ON workflows (updated_ns)
  WHERE status IN ('completed', 'failed');
CREATE TABLE snapshots (
  workflow_id TEXT PRIMARY KEY,
  wf_seq INTEGER NOT NULL,
  state TEXT NOT NULL);
CREATE TABLE effects (
  key TEXT PRIMARY KEY,
  workflow_id TEXT NOT NULL,
  result TEXT NOT NULL,
  at_ns INTEGER NOT NULL);
CREATE INDEX effects_workflow ON effects (workflow_id);
CREATE TABLE dead_letters (
  id INTEGER PRIMARY KEY,
  workflow_id TEXT NOT NULL,
  node TEXT NOT NULL,
  outcome TEXT NOT NULL,
  reason TEXT NOT NULL,
  at_ns INTEGER NOT NULL);
CREATE TABLE journal_state (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL);
)sql",
  // 1 -> 2
  R"sql(
CREATE TABLE workflows_2 (
  n INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  definition TEXT NOT NULL,
  version INTEGER NOT NULL,
  idempotency_key TEXT,
  status TEXT NOT NULL CHECK (status IN ('running', 'parked', 'completed', 'failed')),
  outcome TEXT NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL);
INSERT INTO workflows_2 (id, definition, version, idempotency_key, status, outcome,
                         created_ns, updated_ns)
  SELECT id, definition, version, idempotency_key, status, outcome, created_ns, updated_ns
  FROM workflows ORDER BY created_ns, id;
CREATE TABLE events_2 (
  seq INTEGER PRIMARY KEY,
  workflow INTEGER NOT NULL,
  wf_seq INTEGER NOT NULL,
  kind TEXT NOT NULL,
  at_ns INTEGER NOT NULL,
  payload TEXT NOT NULL,
  UNIQUE (workflow, wf_seq));
INSERT INTO events_2 (seq, workflow, wf_seq, kind, at_ns, payload)
  SELECT e.seq, w.n, e.wf_seq, e.kind, e.at_ns, e.payload
  FROM events e JOIN workflows_2 w ON w.id = e.workflow_id ORDER BY e.seq;
DROP TABLE events;
DROP TABLE workflows;
ALTER TABLE workflows_2 RENAME TO workflows;
ALTER TABLE events_2 RENAME TO events;
CREATE UNIQUE INDEX workflows_key ON workflows (idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX workflows_open ON workflows (created_ns, id)
  WHERE status NOT IN ('completed', 'failed');
CREATE INDEX workflows_done ON workflows (updated_ns)
  WHERE status IN ('completed', 'failed');
)sql",
  // 2 -> 3
  R"sql(
CREATE TABLE workflows_3 (
  n INTEGER PRIMARY KEY,
  id TEXT NOT NULL UNIQUE,
  definition TEXT NOT NULL,
  version INTEGER NOT NULL,
  idempotency_key TEXT,
  status TEXT NOT NULL
    CHECK (status IN ('running', 'parked', 'dead_lettered', 'completed', 'failed')),
  outcome TEXT NOT NULL,
  created_ns INTEGER NOT NULL,
  updated_ns INTEGER NOT NULL,
  user_id TEXT NOT NULL);
INSERT INTO workflows_3 (n, id, definition, version, idempotency_key, status, outcome,
                         created_ns, updated_ns, user_id)
  SELECT n, id, definition, version, idempotency_key, status, outcome, created_ns, updated_ns,
         ''
  FROM workflows ORDER BY n;
DROP TABLE workflows;
ALTER TABLE workflows_3 RENAME TO workflows;
CREATE UNIQUE INDEX workflows_key ON workflows (idempotency_key)
  WHERE idempotency_key IS NOT NULL;
CREATE INDEX workflows_open ON workflows (created_ns, id)
  WHERE status NOT IN ('completed', 'failed');
CREATE INDEX workflows_done ON workflows (updated_ns)
  WHERE status IN ('completed', 'failed');
)sql",
  // 3 -> 4
  R"sql(
CREATE INDEX workflows_status ON workflows (status, created_ns, id);
)sql",
};

constexpr int schema_version = static_cast<int>(sizeof(migrations) / sizeof(migrations[0]));

// -- the error boundary ---------------------------------------------------------

/// When an error happened: opening refuses the file, later ones fail a call.
enum class phase { open, write, read };

/// The one place SQLite result codes become troupe errors. The context
/// reads "<file>: <doing>: <what SQLite said>".
caf::error sqlite_error(int rc, sqlite3* db, const std::string& path, const std::string& doing,
                        phase when) {
  std::string said = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  said += " (sqlite " + std::to_string(rc) + ")";
  auto context = [&](const char* what) {
    return path + ": " + doing + ": " + (what ? std::string{what} + " (" + said + ")" : said);
  };
  switch (rc & 0xff) {
    case SQLITE_FULL:
      return make_error(errc::journal_full, context(nullptr));
    case SQLITE_CORRUPT:
      return make_error(errc::journal_corrupt, context(nullptr));
    default:
      break;
  }
  if (when == phase::open) {
    switch (rc & 0xff) {
      case SQLITE_NOTADB:
        return make_error(errc::journal_unusable, context("is not a troupe journal"));
      case SQLITE_BUSY:
      case SQLITE_LOCKED:
        return make_error(errc::journal_unusable, context("is locked by another process"));
      case SQLITE_READONLY:
        return make_error(errc::journal_unusable, context("is read-only"));
      case SQLITE_CANTOPEN: {
        int sys = db != nullptr ? sqlite3_system_errno(db) : 0;
        bool denied = sys == EACCES || sys == EPERM || sys == EROFS;
        return make_error(errc::journal_unusable,
                          context(denied ? "is read-only" : "cannot be opened"));
      }
      case SQLITE_IOERR:
        return make_error(errc::journal_unusable, context("cannot be read"));
      default:
        return make_error(errc::journal_unusable, context("cannot be used"));
    }
  }
  if ((rc & 0xff) == SQLITE_NOTADB)
    return make_error(errc::journal_corrupt, context(nullptr));
  if (when == phase::read)
    return make_error(errc::journal_unusable, context("cannot be read"));
  return make_error(errc::journal_write_failed, context(nullptr));
}

// -- statements -------------------------------------------------------------

struct finalize {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

using statement = std::unique_ptr<sqlite3_stmt, finalize>;

/// Resets a statement when the scope ends, so no read stays open and the
/// statement is ready for the next call.
class in_use {
public:
  explicit in_use(const statement& s) : s_(s.get()) {}
  ~in_use() { sqlite3_reset(s_); }
  in_use(const in_use&) = delete;
  in_use& operator=(const in_use&) = delete;
  sqlite3_stmt* get() const { return s_; }

private:
  sqlite3_stmt* s_;
};

// Text is bound SQLITE_STATIC: every caller's string outlives the step.
// (Not named bind(): ADL would find std::bind for a std::string argument.)
void bind_value(sqlite3_stmt* s, int i, const std::string& v) {
  sqlite3_bind_text64(s, i, v.data(), v.size(), SQLITE_STATIC, SQLITE_UTF8);
}

void bind_value(sqlite3_stmt* s, int i, int64_t v) {
  sqlite3_bind_int64(s, i, v);
}

/// Binds `args` to parameters ?1, ?2, ... of `s`.
template <class... Ts>
void bind_all([[maybe_unused]] sqlite3_stmt* s, const Ts&... args) {
  int i = 0;
  (bind_value(s, ++i, args), ...);
}

int64_t as_int(uint64_t v) {
  return static_cast<int64_t>(v); // callers keep v <= INT64_MAX
}

std::string text(sqlite3_stmt* s, int i) {
  auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s, i));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(s, i))) : std::string{};
}

// The columns of workflow_row, in order, for every query that reads rows.
#define TROUPE_ROW_COLUMNS                                                                   \
  "id, definition, version, COALESCE(idempotency_key, ''), status, outcome, created_ns, "   \
  "updated_ns, user_id"

workflow_row row_at(sqlite3_stmt* s) {
  workflow_row r;
  r.id = text(s, 0);
  r.definition = text(s, 1);
  r.version = static_cast<uint32_t>(sqlite3_column_int64(s, 2));
  r.idempotency_key = text(s, 3);
  r.status = text(s, 4);
  r.outcome = text(s, 5);
  r.created_ns = sqlite3_column_int64(s, 6);
  r.updated_ns = sqlite3_column_int64(s, 7);
  r.user = text(s, 8);
  return r;
}

// -- the store -----------------------------------------------------------------

class sqlite_journal final : public journal_store {
public:
  explicit sqlite_journal(std::string path) : path_(std::move(path)) {}

  ~sqlite_journal() override {
    st_ = {};
    sqlite3_close_v2(db_); // checkpoints the WAL into the file, unless refused
  }

  caf::error open(const sqlite_journal_options& opts);

  caf::error append(std::vector<journal_write>& batch) override;
  caf::expected<std::vector<journal_record>> read(const std::string& workflow_id,
                                                  uint64_t after) const override;
  caf::expected<workflow_row> workflow(const std::string& workflow_id) const override;
  caf::expected<std::string> find_key(const std::string& key) const override;
  caf::expected<std::vector<workflow_row>> open_workflows() const override;
  caf::expected<int64_t> created_ns_bound() const override;
  caf::expected<uint64_t> last_seq() const override;
  caf::expected<std::vector<snapshot_record>>
  snapshot(const std::string& workflow_id) const override;
  caf::expected<std::vector<effect_record>> effect(const std::string& key) const override;
  caf::expected<std::vector<effect_record>>
  effects_of(const std::string& workflow_id) const override;
  caf::expected<std::vector<dead_letter_record>> dead_letters() const override;
  caf::expected<std::vector<workflow_row>>
  list_workflows(const workflow_query& q) const override;
  caf::expected<workflow_counts> count_workflows() const override;
  caf::expected<uint64_t> purge(int64_t before_ns, uint64_t limit) override;

private:
  struct statements {
    statement begin, commit, rollback;
    statement insert_event, last_event, upsert_workflow, key_owner, upsert_snapshot,
      insert_effect, insert_dead_letter;
    statement read_events, read_workflow, open_workflows, created_bound, read_snapshot,
      read_effect, read_effects_of, read_dead_letters, list_workflows, list_status, count_workflows,
      row_status;
    statement purge_mark, purge_events, purge_snapshots, purge_effects, purge_workflows;
  };

  caf::error fail(int rc, const std::string& doing, phase when) const {
    return sqlite_error(rc, db_, path_, doing, when);
  }
  caf::error refuse(const std::string& why) const {
    return make_error(errc::journal_unusable, path_ + ": open: " + why);
  }
  caf::error refuse_write(const std::string& why) const {
    return make_error(errc::journal_write_failed, path_ + ": append: " + why);
  }
  caf::error exec(const std::string& sql, const char* doing);
  /// Runs a one-row query while opening and calls `f(stmt)` on its row.
  template <class F>
  caf::error query_one(const char* sql, const char* doing, F f);
  caf::error check_file();
  caf::error migrate();
  caf::error check_migration(int from);
  caf::error prepare_all();
  caf::error append_write(journal_write& w);
  /// Checks I2 and I3 for the events of one write; sets `n` to their
  /// workflow's number.
  caf::error continue_events(const std::vector<journal_record>& events, int64_t& n);
  /// Binds `args` to `s`, steps it to the end and resets it. `doing` is a
  /// C string or a function making one, called only on failure.
  template <class Doing, class... Ts>
  caf::error run(const statement& s, const Doing& doing, const Ts&... args);
  /// Binds `args` to `s`, calls `f(stmt)` for every row and resets it.
  template <class F, class... Ts>
  caf::error each_row(const statement& s, const char* doing, F f, const Ts&... args) const;
  /// Rolls back the transaction if SQLite has not already.
  void roll_back();

  std::string path_;
  sqlite3* db_ = nullptr;
  mutable std::mutex mtx_;
  statements st_;
  uint64_t next_seq_ = 1; ///< I4; guarded by mtx_ like everything below
  /// Workflows known to have a row (I3): their number and last wf_seq
  /// (I2), so that appending to a busy workflow needs no lookup. Only this
  /// connection writes the file; cleared after a failed append and by
  /// purge().
  struct known_workflow {
    int64_t n = 0;
    uint64_t last = 0;
  };
  std::unordered_map<std::string, known_workflow> known_;
  /// The rows per status, once count_workflows() has counted them; kept by
  /// append() (which then reads a row's status before replacing it), and
  /// dropped by a failed append and by purge(), to be counted again.
  mutable std::optional<workflow_counts> counts_;
};

template <class Doing, class... Ts>
caf::error sqlite_journal::run(const statement& s, const Doing& doing, const Ts&... args) {
  in_use use{s};
  bind_all(s.get(), args...);
  int rc = sqlite3_step(s.get());
  if (rc == SQLITE_DONE)
    return {};
  if constexpr (std::is_invocable_v<Doing>)
    return fail(rc, doing(), phase::write);
  else
    return fail(rc, doing, phase::write);
}

template <class F, class... Ts>
caf::error sqlite_journal::each_row(const statement& s, const char* doing, F f,
                                    const Ts&... args) const {
  in_use use{s};
  bind_all(s.get(), args...);
  int rc;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW)
    f(s.get());
  if (rc == SQLITE_DONE)
    return {};
  // Inside a transaction the read is part of an append or a purge.
  return fail(rc, doing, sqlite3_get_autocommit(db_) == 0 ? phase::write : phase::read);
}

void sqlite_journal::roll_back() {
  if (sqlite3_get_autocommit(db_) == 0) {
    in_use use{st_.rollback};
    sqlite3_step(use.get());
  }
}

// -- opening ----------------------------------------------------------------

caf::error sqlite_journal::exec(const std::string& sql, const char* doing) {
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? caf::error{} : fail(rc, doing, phase::open);
}

template <class F>
caf::error sqlite_journal::query_one(const char* sql, const char* doing, F f) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v2(db_, sql, -1, &raw, nullptr);
  statement s{raw};
  if (rc == SQLITE_OK)
    rc = sqlite3_step(raw);
  if (rc != SQLITE_ROW)
    return fail(rc, doing, phase::open);
  f(raw);
  return {};
}

caf::error sqlite_journal::open(const sqlite_journal_options& opts) {
  if (!opts.create) {
    std::error_code ec;
    if (!std::filesystem::exists(path_, ec))
      return refuse(ec ? "cannot be opened (" + ec.message() + ")" : std::string{"does not exist"});
  }
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
  if (opts.create)
    flags |= SQLITE_OPEN_CREATE;
  const char* vfs = opts.vfs.empty() ? nullptr : opts.vfs.c_str();
  if (int rc = sqlite3_open_v2(path_.c_str(), &db_, flags, vfs); rc != SQLITE_OK)
    return fail(rc, "open", phase::open);
  sqlite3_extended_result_codes(db_, 1);
  // Until the file is known to be ours, closing must not checkpoint a WAL
  // into it.
  sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  if (sqlite3_db_readonly(db_, "main") == 1)
    return refuse("is read-only");
  if (auto err = exec("PRAGMA locking_mode = EXCLUSIVE", "open"))
    return err;
  if (auto err = check_file())
    return err;
  // From here on the file is ours or new.
  std::string mode;
  if (auto err = query_one("PRAGMA journal_mode = WAL", "open: journal_mode=WAL",
                           [&](sqlite3_stmt* s) { mode = text(s, 0); }))
    return err;
  if (mode != "wal")
    return refuse("cannot use WAL (journal_mode stays '" + mode + "')");
  const char* sync = opts.synchronous == "normal" ? "NORMAL" : "FULL";
  auto tuning = std::string{"PRAGMA synchronous = "} + sync
                + "; PRAGMA cache_size = -32768; PRAGMA wal_autocheckpoint = 4000";
  if (auto err = exec(tuning, "open"))
    return err;
  if (auto err = migrate())
    return err;
  sqlite3_db_config(db_, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 0, nullptr);
  auto err = query_one("SELECT max(ifnull((SELECT max(seq) FROM events), 0),"
                       " ifnull((SELECT value FROM journal_state WHERE key = 'purged_seq'), 0))",
                       "open: read the highest seq", [&](sqlite3_stmt* s) {
                         next_seq_ = static_cast<uint64_t>(sqlite3_column_int64(s, 0)) + 1;
                       });
  return err ? err : prepare_all();
}

/// Refuses a file that is not ours, before anything is written to it.
caf::error sqlite_journal::check_file() {
  int app = 0;
  int version = 0;
  int objects = 0;
  auto err = query_one("SELECT (SELECT application_id FROM pragma_application_id),"
                       " (SELECT user_version FROM pragma_user_version),"
                       " (SELECT count(*) FROM sqlite_master)",
                       "open", [&](sqlite3_stmt* s) {
                         app = sqlite3_column_int(s, 0);
                         version = sqlite3_column_int(s, 1);
                         objects = sqlite3_column_int(s, 2);
                       });
  if (err)
    return err;
  if (app != troupe_application_id && (app != 0 || objects != 0)) {
    char hex[16];
    std::snprintf(hex, sizeof hex, "0x%08x", static_cast<unsigned>(app));
    return refuse("is not a troupe journal (application_id " + std::string{hex} + ", "
                  + std::to_string(objects) + " schema objects)");
  }
  if (version > schema_version)
    return refuse("was written by a newer troupe (schema " + std::to_string(version)
                  + ", this build knows up to " + std::to_string(schema_version) + ")");
  return {};
}

/// Brings the schema to this build's version in one transaction, which also
/// takes the exclusive lock for the store's lifetime. A current file is not
/// written to.
caf::error sqlite_journal::migrate() {
  if (auto err = exec("BEGIN IMMEDIATE", "open: begin"))
    return err;
  int version = 0;
  if (auto err = query_one("PRAGMA user_version", "open: read user_version",
                           [&](sqlite3_stmt* s) { version = sqlite3_column_int(s, 0); }))
    return err;
  for (int k = version; k < schema_version; ++k) {
    auto doing = "open: migrate to schema " + std::to_string(k + 1);
    if (auto err = check_migration(k))
      return err;
    if (auto err = exec(migrations[k], doing.c_str()))
      return err;
  }
  if (version < schema_version) {
    auto stamp = "PRAGMA application_id = " + std::to_string(troupe_application_id)
                 + "; PRAGMA user_version = " + std::to_string(schema_version);
    if (auto err = exec(stamp, "open: stamp"))
      return err;
  }
  return exec("COMMIT", "open: commit");
}

/// Refuses a step that would not carry every record over. Step 1 -> 2
/// joins each event to its workflow's row, so an event without a row (a
/// file that breaks I3) would be lost.
caf::error sqlite_journal::check_migration(int from) {
  if (from != 1)
    return {};
  int64_t orphans = 0;
  auto err = query_one("SELECT count(*) FROM events e"
                       " WHERE NOT EXISTS (SELECT 1 FROM workflows w WHERE w.id = e.workflow_id)",
                       "open: check schema 1 before migrating",
                       [&](sqlite3_stmt* s) { orphans = sqlite3_column_int64(s, 0); });
  if (err)
    return err;
  if (orphans > 0)
    return refuse("has " + std::to_string(orphans) + " events without a workflow row (schema 1,"
                  " invariant I3): migrating it to schema 2 would lose them, so it is left as"
                  " it is");
  return {};
}

caf::error sqlite_journal::prepare_all() {
  struct item {
    statement* target;
    const char* sql;
  };
// the oldest finished workflows, at most ?2 (-1: all), in a stable order:
// the four deletes of one purge select the same ones
#define TROUPE_PURGED(column)                                                                \
  "(SELECT " column " FROM workflows WHERE status IN ('completed', 'failed')"                \
  " AND updated_ns < ?1 ORDER BY updated_ns, n LIMIT ?2)"
#define TROUPE_LIST_STATUS(status)                                                          \
  "SELECT " TROUPE_ROW_COLUMNS " FROM workflows WHERE status = " status                     \
  " AND (?2 = '' OR created_ns < ?3 OR (created_ns = ?3 AND id < ?2))"                     \
  " ORDER BY created_ns DESC, id DESC LIMIT ?4"
  const item items[] = {
    {&st_.begin, "BEGIN IMMEDIATE"},
    {&st_.commit, "COMMIT"},
    {&st_.rollback, "ROLLBACK"},
    {&st_.insert_event, "INSERT INTO events (seq, workflow, wf_seq, kind, at_ns, payload)"
                        " VALUES (?1, ?2, ?3, ?4, ?5, ?6)"},
    {&st_.last_event, "SELECT n, (SELECT max(wf_seq) FROM events WHERE workflow = n)"
                      " FROM workflows WHERE id = ?1"},
    {&st_.upsert_workflow,
     "INSERT INTO workflows (id, definition, version, idempotency_key, status, outcome,"
     " created_ns, updated_ns, user_id) VALUES (?1, ?2, ?3, NULLIF(?4, ''), ?5, ?6, ?7, ?8, ?9)"
     " ON CONFLICT (id) DO UPDATE SET definition = excluded.definition,"
     " version = excluded.version, idempotency_key = excluded.idempotency_key,"
     " status = excluded.status, outcome = excluded.outcome,"
     " created_ns = excluded.created_ns, updated_ns = excluded.updated_ns,"
     " user_id = excluded.user_id"},
    {&st_.key_owner, "SELECT id FROM workflows WHERE idempotency_key = ?1"},
    {&st_.upsert_snapshot, "INSERT INTO snapshots (workflow_id, wf_seq, state) VALUES (?1, ?2, ?3)"
                           " ON CONFLICT (workflow_id) DO UPDATE SET wf_seq = excluded.wf_seq,"
                           " state = excluded.state WHERE excluded.wf_seq >= snapshots.wf_seq"},
    {&st_.insert_effect, "INSERT INTO effects (key, workflow_id, result, at_ns)"
                         " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (key) DO NOTHING"},
    {&st_.insert_dead_letter, "INSERT INTO dead_letters (workflow_id, node, outcome, reason,"
                              " at_ns) VALUES (?1, ?2, ?3, ?4, ?5)"},
    {&st_.read_events, "SELECT seq, wf_seq, kind, at_ns, payload FROM events"
                       " WHERE workflow = (SELECT n FROM workflows WHERE id = ?1)"
                       " AND wf_seq > ?2 ORDER BY wf_seq"},
    {&st_.read_workflow, "SELECT " TROUPE_ROW_COLUMNS " FROM workflows WHERE id = ?1"},
    // both through their partial indexes (workflows_open, workflows_done)
    {&st_.created_bound,
     "SELECT max(ifnull((SELECT max(created_ns) FROM workflows"
     " WHERE status NOT IN ('completed', 'failed')), 0),"
     " ifnull((SELECT max(updated_ns) FROM workflows WHERE status IN ('completed', 'failed')), 0))"},
    {&st_.open_workflows, "SELECT " TROUPE_ROW_COLUMNS " FROM workflows"
                          " WHERE status NOT IN ('completed', 'failed') ORDER BY created_ns, id"},
    {&st_.read_snapshot, "SELECT wf_seq, state FROM snapshots WHERE workflow_id = ?1"},
    {&st_.read_effect, "SELECT workflow_id, result, at_ns FROM effects WHERE key = ?1"},
    {&st_.read_effects_of, "SELECT key, result, at_ns FROM effects WHERE workflow_id = ?1"
                           " ORDER BY at_ns, key"},
    {&st_.read_dead_letters, "SELECT workflow_id, node, outcome, reason, at_ns"
                             " FROM dead_letters ORDER BY id"},
    // ?1 status, ?2 before_id ('' none), ?3 before_created_ns, ?4 limit: a
    // walk back through workflows_status from the cursor
    {&st_.list_status, TROUPE_LIST_STATUS("?1")},
    // every status: the five walks merged (?1 unused)
    {&st_.list_workflows,
     "SELECT * FROM (" TROUPE_LIST_STATUS("'running'") ") UNION ALL SELECT * FROM ("
     TROUPE_LIST_STATUS("'parked'") ") UNION ALL SELECT * FROM ("
     TROUPE_LIST_STATUS("'dead_lettered'") ") UNION ALL SELECT * FROM ("
     TROUPE_LIST_STATUS("'completed'") ") UNION ALL SELECT * FROM ("
     TROUPE_LIST_STATUS("'failed'") ") ORDER BY created_ns DESC, id DESC LIMIT ?4"},
    {&st_.count_workflows, "SELECT status, count(*) FROM workflows GROUP BY status"},
    {&st_.row_status, "SELECT status FROM workflows WHERE id = ?1"},
    {&st_.purge_mark, "INSERT INTO journal_state (key, value) VALUES ('purged_seq', ?1)"
                      " ON CONFLICT (key) DO UPDATE SET value = excluded.value"},
    {&st_.purge_events, "DELETE FROM events WHERE workflow IN " TROUPE_PURGED("n")},
    {&st_.purge_snapshots, "DELETE FROM snapshots WHERE workflow_id IN " TROUPE_PURGED("id")},
    {&st_.purge_effects, "DELETE FROM effects WHERE workflow_id IN " TROUPE_PURGED("id")},
    {&st_.purge_workflows, "DELETE FROM workflows WHERE n IN " TROUPE_PURGED("n")},
  };
#undef TROUPE_PURGED
#undef TROUPE_LIST_STATUS
  for (const auto& it : items) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v3(db_, it.sql, -1, SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
    it.target->reset(raw);
    if (rc != SQLITE_OK)
      return fail(rc, std::string{"open: prepare "} + it.sql, phase::open);
  }
  return {};
}

// -- append -----------------------------------------------------------------

caf::error sqlite_journal::append(std::vector<journal_write>& batch) {
  std::lock_guard<std::mutex> guard{mtx_};
  bool any = false;
  for (const auto& w : batch) {
    if (auto why = shape_error(w); !why.empty())
      return refuse_write(why);
    any = any || !w.events.empty() || !w.workflow.empty() || !w.snapshot.empty()
          || !w.effect.empty() || !w.dead_letter.empty();
  }
  if (!any)
    return {};
  auto first_seq = next_seq_;
  auto err = run(st_.begin, "begin");
  for (size_t i = 0; !err && i < batch.size(); ++i)
    err = append_write(batch[i]);
  if (!err)
    err = run(st_.commit, "commit");
  if (err) { // I1: nothing of a failed batch stays
    roll_back();
    next_seq_ = first_seq;
    known_.clear();
    counts_.reset();
    for (auto& w : batch)
      for (auto& e : w.events)
        e.seq = 0;
  }
  return err;
}

caf::error sqlite_journal::append_write(journal_write& w) {
  for (const auto& row : w.workflow) {
    if (!row.idempotency_key.empty()) { // I5, with a message that names the owner
      std::string owner;
      auto err = each_row(st_.key_owner, "append: read key owner",
                          [&](sqlite3_stmt* s) { owner = text(s, 0); }, row.idempotency_key);
      if (err)
        return err;
      if (!owner.empty() && owner != row.id)
        return refuse_write("idempotency key '" + row.idempotency_key
                            + "' belongs to workflow '" + owner + "'");
    }
    std::string was; // the row's status before, for counts_ ("" = a new row)
    if (counts_)
      if (auto err = each_row(st_.row_status, "append: read the row's status",
                              [&](sqlite3_stmt* s) { was = text(s, 0); }, row.id))
        return err;
    auto err = run(st_.upsert_workflow, [&] { return "append: workflow '" + row.id + "'"; },
                   row.id, row.definition, int64_t{row.version}, row.idempotency_key,
                   row.status, row.outcome, row.created_ns, row.updated_ns, row.user);
    if (err)
      return err;
    if (counts_ && was != row.status) {
      if (!was.empty())
        counts_->add(was, -1);
      counts_->add(row.status);
    }
  }
  if (!w.events.empty()) {
    int64_t n = 0;
    if (auto err = continue_events(w.events, n))
      return err;
    for (auto& e : w.events) {
      auto doing = [&] {
        return "append: event " + e.workflow_id + "#" + std::to_string(e.wf_seq);
      };
      auto err = run(st_.insert_event, doing, as_int(next_seq_), n, as_int(e.wf_seq), e.kind,
                     e.at_ns, e.payload);
      if (err)
        return err;
      e.seq = next_seq_++; // I4
    }
    known_[w.events.front().workflow_id] = {n, w.events.back().wf_seq};
  }
  for (const auto& row : w.workflow) // a finished workflow takes no more events
    if (row.finished())
      known_.erase(row.id);
  for (const auto& snap : w.snapshot) // I7 in the statement's WHERE
    if (auto err = run(st_.upsert_snapshot,
                       [&] { return "append: snapshot of '" + snap.workflow_id + "'"; },
                       snap.workflow_id, as_int(snap.wf_seq), snap.state))
      return err;
  for (const auto& eff : w.effect) // I6: ON CONFLICT DO NOTHING
    if (auto err = run(st_.insert_effect, [&] { return "append: effect '" + eff.key + "'"; },
                       eff.key, eff.workflow_id, eff.result, eff.at_ns))
      return err;
  for (const auto& dl : w.dead_letter)
    if (auto err = run(st_.insert_dead_letter,
                       [&] { return "append: dead letter of '" + dl.workflow_id + "'"; },
                       dl.workflow_id, dl.node, dl.outcome, dl.reason, dl.at_ns))
      return err;
  return {};
}

/// I2 across writes and I3: the events continue the workflow's stored ones
/// and the workflow has a row. One indexed lookup for a workflow not seen
/// since the store opened (or since the cache was cleared).
caf::error sqlite_journal::continue_events(const std::vector<journal_record>& events,
                                           int64_t& n) {
  const auto& first = events.front();
  uint64_t last = 0;
  if (auto it = known_.find(first.workflow_id); it != known_.end()) {
    n = it->second.n;
    last = it->second.last;
  } else {
    bool has_row = false;
    auto err = each_row(st_.last_event, "append: read the last event", [&](sqlite3_stmt* s) {
      has_row = true;
      n = sqlite3_column_int64(s, 0);
      last = static_cast<uint64_t>(sqlite3_column_int64(s, 1)); // NULL: 0
    }, first.workflow_id);
    if (err)
      return err;
    if (!has_row)
      return refuse_write("workflow '" + first.workflow_id
                          + "': has no row (a workflow's row comes with its first event)");
    if (known_.size() >= max_cached_workflows)
      known_.clear();
  }
  if (first.wf_seq <= last)
    return refuse_write("workflow '" + first.workflow_id + "': event wf_seq "
                        + std::to_string(first.wf_seq) + " is already recorded");
  if (first.wf_seq != last + 1)
    return refuse_write("workflow '" + first.workflow_id + "': event wf_seq "
                        + std::to_string(first.wf_seq) + " leaves a gap after "
                        + std::to_string(last));
  return {};
}

// -- reads ------------------------------------------------------------------

caf::expected<std::vector<journal_record>>
sqlite_journal::read(const std::string& workflow_id, uint64_t after) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<journal_record> out;
  auto err = each_row(st_.read_events, "read events", [&](sqlite3_stmt* s) {
    out.push_back({static_cast<uint64_t>(sqlite3_column_int64(s, 0)), workflow_id,
                   static_cast<uint64_t>(sqlite3_column_int64(s, 1)), text(s, 2),
                   sqlite3_column_int64(s, 3), text(s, 4)});
  }, workflow_id, as_int(std::min(after, uint64_t{INT64_MAX})));
  if (err)
    return err;
  return out;
}

caf::expected<workflow_row> sqlite_journal::workflow(const std::string& workflow_id) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<workflow_row> out;
  auto err = each_row(st_.read_workflow, "read workflow",
                      [&](sqlite3_stmt* s) { out.push_back(row_at(s)); }, workflow_id);
  if (err)
    return err;
  if (out.empty())
    return make_error(errc::unknown_workflow, "no workflow '" + workflow_id + "' in " + path_);
  return std::move(out.front());
}

caf::expected<std::string> sqlite_journal::find_key(const std::string& key) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::string id;
  if (auto err = each_row(st_.key_owner, "find key", [&](sqlite3_stmt* s) { id = text(s, 0); },
                          key))
    return err;
  return id;
}

caf::expected<std::vector<workflow_row>> sqlite_journal::open_workflows() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<workflow_row> out;
  if (auto err = each_row(st_.open_workflows, "read open workflows",
                          [&](sqlite3_stmt* s) { out.push_back(row_at(s)); }))
    return err;
  return out;
}

caf::expected<int64_t> sqlite_journal::created_ns_bound() const {
  std::lock_guard<std::mutex> guard{mtx_};
  int64_t bound = 0;
  if (auto err = each_row(st_.created_bound, "read the newest workflow time",
                          [&](sqlite3_stmt* s) { bound = sqlite3_column_int64(s, 0); }))
    return err;
  return bound;
}

caf::expected<uint64_t> sqlite_journal::last_seq() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return next_seq_ - 1; // I4: read at open, advanced by each committed append
}

caf::expected<std::vector<snapshot_record>>
sqlite_journal::snapshot(const std::string& workflow_id) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<snapshot_record> out;
  auto err = each_row(st_.read_snapshot, "read snapshot", [&](sqlite3_stmt* s) {
    out.push_back({workflow_id, static_cast<uint64_t>(sqlite3_column_int64(s, 0)), text(s, 1)});
  }, workflow_id);
  if (err)
    return err;
  return out;
}

caf::expected<std::vector<effect_record>>
sqlite_journal::effects_of(const std::string& workflow_id) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<effect_record> out;
  auto err = each_row(st_.read_effects_of, "read effects", [&](sqlite3_stmt* s) {
    out.push_back({text(s, 0), workflow_id, text(s, 1), sqlite3_column_int64(s, 2)});
  }, workflow_id);
  if (err)
    return err;
  return out;
}

caf::expected<std::vector<effect_record>> sqlite_journal::effect(const std::string& key) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<effect_record> out;
  auto err = each_row(st_.read_effect, "read effect", [&](sqlite3_stmt* s) {
    out.push_back({key, text(s, 0), text(s, 1), sqlite3_column_int64(s, 2)});
  }, key);
  if (err)
    return err;
  return out;
}

caf::expected<std::vector<dead_letter_record>> sqlite_journal::dead_letters() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<dead_letter_record> out;
  auto err = each_row(st_.read_dead_letters, "read dead letters", [&](sqlite3_stmt* s) {
    out.push_back({text(s, 0), text(s, 1), text(s, 2), text(s, 3), sqlite3_column_int64(s, 4)});
  });
  if (err)
    return err;
  return out;
}

caf::expected<std::vector<workflow_row>>
sqlite_journal::list_workflows(const workflow_query& q) const {
  if (auto why = query_error(q); !why.empty())
    return make_error(errc::invalid_input, path_ + ": list workflows: " + why);
  auto limit = as_int(std::min<uint64_t>(q.limit, INT64_MAX));
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<workflow_row> out;
  if (auto err = each_row(q.status.empty() ? st_.list_workflows : st_.list_status,
                          "list workflows",
                          [&](sqlite3_stmt* s) { out.push_back(row_at(s)); }, q.status,
                          q.before_id, q.before_created_ns, limit))
    return err;
  return out;
}

caf::expected<workflow_counts> sqlite_journal::count_workflows() const {
  std::lock_guard<std::mutex> guard{mtx_};
  if (counts_)
    return *counts_;
  workflow_counts n; // once: append() keeps them from here on
  if (auto err = each_row(st_.count_workflows, "count workflows", [&](sqlite3_stmt* s) {
        n.add(text(s, 0), sqlite3_column_int64(s, 1));
      }))
    return err;
  counts_ = n;
  return n;
}

// -- purge ------------------------------------------------------------------

caf::expected<uint64_t> sqlite_journal::purge(int64_t before_ns, uint64_t limit) {
  // SQLite's LIMIT -1 is none; a limit beyond int64 is none as well
  int64_t most = limit == 0 || limit > uint64_t{INT64_MAX} ? -1 : static_cast<int64_t>(limit);
  std::lock_guard<std::mutex> guard{mtx_};
  known_.clear();
  counts_.reset();
  auto err = run(st_.begin, "purge: begin");
  if (!err) // I4: the seqs of purged events stay used
    err = run(st_.purge_mark, "purge", as_int(next_seq_ - 1));
  // The workflows go last: the other deletes select by them.
  for (auto* s : {&st_.purge_events, &st_.purge_snapshots, &st_.purge_effects,
                  &st_.purge_workflows})
    if (!err)
      err = run(*s, "purge", before_ns, most);
  auto purged = static_cast<uint64_t>(sqlite3_changes64(db_));
  if (!err)
    err = run(st_.commit, "purge: commit");
  if (err) {
    roll_back();
    return err;
  }
  return purged;
}

} // namespace

caf::expected<std::shared_ptr<journal_store>>
open_sqlite_journal(const sqlite_journal_options& opts) {
  if (opts.path.empty())
    return make_error(errc::invalid_config, "journal path: empty");
  if (opts.synchronous != "full" && opts.synchronous != "normal")
    return make_error(errc::invalid_config, "journal synchronous '" + opts.synchronous
                                              + "': expected 'full' or 'normal'");
  if (!opts.vfs.empty() && sqlite3_vfs_find(opts.vfs.c_str()) == nullptr)
    return make_error(errc::invalid_config,
                      "journal vfs '" + opts.vfs + "': no SQLite VFS of that name is registered");
  auto store = std::make_shared<sqlite_journal>(opts.path);
  if (auto err = store->open(opts))
    return err;
  return std::shared_ptr<journal_store>{std::move(store)};
}

} // namespace troupe
