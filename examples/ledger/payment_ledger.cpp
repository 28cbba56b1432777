// The payment ledger (see payment_ledger.hpp), written with the plain
// sqlite3 API. SQLite result codes are translated in ledger_error() only.
#include "ledger/payment_ledger.hpp"

#include <cstdio>
#include <utility>

#include <sqlite3.h>

#include "troupe/errors.hpp"
#include "troupe/hash.hpp"

namespace troupe::examples {

namespace {

/// The one translation of SQLite result codes: busy or locked is worth a
/// retry (errc::overloaded), anything else fails the caller's attempt
/// (errc::agent_crashed). The context names the file, the operation and
/// SQLite's own message.
caf::error ledger_error(sqlite3* db, int rc, const std::string& path, const char* what) {
  std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
  auto context = "payment ledger " + path + ": " + what + ": " + msg;
  int primary = rc & 0xff;
  if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
    return make_error(errc::overloaded, std::move(context));
  return make_error(errc::agent_crashed, std::move(context));
}

/// A prepared statement, finalized on scope exit.
class statement {
public:
  statement(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &stmt_, nullptr); }
  ~statement() { sqlite3_finalize(stmt_); }
  statement(const statement&) = delete;
  statement& operator=(const statement&) = delete;
  int prepared() const { return rc_; }
  sqlite3_stmt* get() const { return stmt_; }
  void bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  std::string text(int col) const {
    auto* p = sqlite3_column_text(stmt_, col);
    return p != nullptr ? reinterpret_cast<const char*>(p) : std::string{};
  }

private:
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

/// "rcpt-" and 16 hex digits of a hash of `seed`: what the provider would
/// hand back, and the same for the same seed in every run.
std::string receipt_of(const std::string& seed) {
  char buf[24];
  std::snprintf(buf, sizeof(buf), "rcpt-%016llx",
                static_cast<unsigned long long>(splitmix64(fnv1a(seed))));
  return buf;
}

} // namespace

caf::expected<std::shared_ptr<payment_ledger>> payment_ledger::open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr);
  if (rc != SQLITE_OK) {
    auto err = ledger_error(db, rc, path, "open");
    sqlite3_close(db);
    return err;
  }
  std::shared_ptr<payment_ledger> ledger{new payment_ledger(db, path)};
  sqlite3_busy_timeout(db, 5000);
  for (const char* sql : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                          "CREATE TABLE IF NOT EXISTS charges(key TEXT PRIMARY KEY, "
                          "workflow TEXT NOT NULL, amount INTEGER NOT NULL, "
                          "receipt TEXT NOT NULL, calls INTEGER NOT NULL)"})
    if (auto err = ledger->exec(sql))
      return err;
  return ledger;
}

payment_ledger::~payment_ledger() {
  sqlite3_close(db_);
}

caf::error payment_ledger::exec(const char* sql) const {
  int rc = sqlite3_exec(db_, sql, nullptr, nullptr, nullptr);
  return rc == SQLITE_OK ? caf::error{} : ledger_error(db_, rc, path_, sql);
}

caf::expected<nlohmann::json> payment_ledger::charge(const std::string& key,
                                                     const std::string& workflow, int64_t amount,
                                                     const std::string& receipt_seed) {
  std::lock_guard<std::mutex> guard{mtx_};
  if (auto err = exec("BEGIN IMMEDIATE"))
    return err;
  auto body = [&]() -> caf::expected<nlohmann::json> {
    statement find{db_, "SELECT amount, receipt FROM charges WHERE key = ?1"};
    if (find.prepared() != SQLITE_OK)
      return ledger_error(db_, find.prepared(), path_, "select");
    find.bind(1, key);
    int rc = sqlite3_step(find.get());
    if (rc == SQLITE_ROW) { // a repeat: count it, charge nothing
      nlohmann::json stored = {{"receipt", find.text(1)},
                               {"amount", sqlite3_column_int64(find.get(), 0)}};
      statement bump{db_, "UPDATE charges SET calls = calls + 1 WHERE key = ?1"};
      if (bump.prepared() != SQLITE_OK)
        return ledger_error(db_, bump.prepared(), path_, "update");
      bump.bind(1, key);
      if (rc = sqlite3_step(bump.get()); rc != SQLITE_DONE)
        return ledger_error(db_, rc, path_, "update");
      return stored;
    }
    if (rc != SQLITE_DONE)
      return ledger_error(db_, rc, path_, "select");
    auto receipt = receipt_of(receipt_seed);
    statement add{db_, "INSERT INTO charges(key, workflow, amount, receipt, calls) "
                       "VALUES (?1, ?2, ?3, ?4, 1)"};
    if (add.prepared() != SQLITE_OK)
      return ledger_error(db_, add.prepared(), path_, "insert");
    add.bind(1, key);
    add.bind(2, workflow);
    add.bind(3, amount);
    add.bind(4, receipt);
    if (rc = sqlite3_step(add.get()); rc != SQLITE_DONE)
      return ledger_error(db_, rc, path_, "insert");
    return nlohmann::json{{"receipt", receipt}, {"amount", amount}};
  };
  auto result = body();
  if (!result) {
    exec("ROLLBACK");
    return result;
  }
  if (auto err = exec("COMMIT")) {
    exec("ROLLBACK");
    return err;
  }
  return result;
}

caf::expected<std::vector<ledger_charge>> payment_ledger::charges() const {
  std::lock_guard<std::mutex> guard{mtx_};
  statement all{db_, "SELECT key, workflow, amount, receipt, calls FROM charges ORDER BY key"};
  if (all.prepared() != SQLITE_OK)
    return ledger_error(db_, all.prepared(), path_, "select");
  std::vector<ledger_charge> rows;
  int rc = SQLITE_OK;
  while ((rc = sqlite3_step(all.get())) == SQLITE_ROW)
    rows.push_back({all.text(0), all.text(1), sqlite3_column_int64(all.get(), 2), all.text(3),
                    sqlite3_column_int64(all.get(), 4)});
  if (rc != SQLITE_DONE)
    return ledger_error(db_, rc, path_, "select");
  return rows;
}

} // namespace troupe::examples
