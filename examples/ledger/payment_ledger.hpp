// The ledger example's external payment provider: a table of charges keyed
// by idempotency key, in its own SQLite file apart from the troupe journal.
// The ledger example's charger agent calls charge() from its effect function
// (on the attempt's actor); the crash tests read charges() once the process
// that wrote them is gone.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

struct sqlite3;

namespace troupe::examples {

/// One row of the ledger's `charges` table.
struct ledger_charge {
  std::string key;      ///< the effect's idempotency key (primary key)
  std::string workflow; ///< the workflow that charged
  int64_t amount = 0;   ///< cents
  std::string receipt;
  int64_t calls = 0;    ///< times the key was charged; > 1: a repeat was deduped
};

/// A payment provider that dedupes by idempotency key, kept in its own
/// SQLite file (WAL, synchronous=FULL) apart from the troupe journal:
///
///   charges(key TEXT PRIMARY KEY, workflow TEXT, amount INTEGER,
///           receipt TEXT, calls INTEGER)
///
/// Thread-safe: one connection behind a mutex; any thread may call. Errors
/// are values: SQLite failures become errc::overloaded (busy, locked) or
/// errc::agent_crashed, with the SQLite message and the file as context.
class payment_ledger {
public:
  /// Opens (creating if absent) the ledger at `path`.
  static caf::expected<std::shared_ptr<payment_ledger>> open(const std::string& path);
  ~payment_ledger();
  payment_ledger(const payment_ledger&) = delete;
  payment_ledger& operator=(const payment_ledger&) = delete;

  /// Charges `amount` under `key` in one transaction: a new key is inserted
  /// with calls = 1 and a receipt derived from `receipt_seed` (a pure hash);
  /// a known key only counts the call and returns its stored receipt.
  /// Returns {"receipt": ..., "amount": ...} as stored.
  caf::expected<nlohmann::json> charge(const std::string& key, const std::string& workflow,
                                       int64_t amount, const std::string& receipt_seed);
  /// Every charge, ordered by key.
  caf::expected<std::vector<ledger_charge>> charges() const;

private:
  payment_ledger(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  caf::error exec(const char* sql) const;

  mutable std::mutex mtx_;
  sqlite3* db_;
  std::string path_;
};

} // namespace troupe::examples
