// Shows exactly-once side effects across crashes: orders charged through an
// external payment ledger that dedupes by idempotency key.
//
// Each order goes quote -> charge -> confirm. `charge` calls the ledger from
// ctx.effect("charge", ...): the journal records the receipt once, and a
// crash between the ledger call and that record makes the call run again
// with the same key, which the ledger answers from its table (counting the
// repeat in `calls`) instead of charging twice. The crash tests
// (tests/crash/) run this example as a process, SIGKILL it at random
// instants and restart it until every order is settled.
//
// The pieces: payment_ledger (payment_ledger.hpp) is the external system,
// ledger_definition() the graph, ledger_config() a runtime config whose
// scripted model answers the agents, register_ledger() the agents and the
// definition, and run_ledger() the whole program behind `troupe run ledger`.
// Everything here blocks the calling thread; call it from a plain thread,
// never from an actor (the agents themselves run on their runner actors).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "ledger/payment_ledger.hpp"
#include "troupe/definition.hpp"
#include "troupe/runtime.hpp"

namespace troupe::examples {

/// Knobs of a ledger run. The two paths are required.
struct ledger_options {
  std::string journal_path; ///< the troupe journal (SQLite)
  std::string ledger_path;  ///< the payment ledger (SQLite)
  /// Orders (= workflows), started with idempotency keys "order-0", ...
  size_t workflows = 100;
  /// Seeds the order contents and the scripted model's fault draws.
  uint64_t seed = 42;
  /// Share of model calls answered with an error (each is retried).
  double fail_rate = 0.05;
  /// Scheduler worker threads of the runtime.
  size_t threads = 2;
  /// Where to write the results (one JSON line per order, sorted by key),
  /// atomically; "" writes none.
  std::string out_path;
  /// > 0: the process SIGKILLs itself at the journal's Nth fsync, counted
  /// from the journal's opening (a kill exactly mid-commit; fault VFS).
  uint64_t kill_at_sync = 0;
  /// How long to wait for one order to settle before giving up.
  std::chrono::milliseconds await_timeout{120000};
};

/// Quotes above this many cents are refused (the order fails as rejected).
constexpr int64_t ledger_price_limit = 90000;

/// The ledger workflow graph:
///
///   quote   --ok--> charge     quote --over_limit--> rejected
///   charge  --ok--> confirm    confirm --ok--> done
///   any agent --exhausted--> failed
///
/// `done` is the completed terminal; `rejected` and `failed` are failed ones.
/// Every agent node retries up to 64 times with 2-10 ms backoff: more than
/// the kills a crash test deals one order, so only a broken runtime exhausts.
caf::expected<definition> ledger_definition();

/// A runtime config whose scripted model answers "quoter" and "confirmer"
/// (2 ms latency, `opt.fail_rate`, `opt.seed`); the journal is left unset.
config ledger_config(const ledger_options& opt);

/// Registers the agents "quoter", "charger" (which charges `ledger` and keeps
/// it alive) and "confirmer", and the "ledger" definition.
caf::error register_ledger(runtime& rt, std::shared_ptr<payment_ledger> ledger);

/// The idempotency key of order `i`: "order-<i>".
std::string ledger_order_key(size_t i);

/// The input state of order `i` under `seed` (deterministic).
nlohmann::json ledger_order(size_t i, uint64_t seed);

/// One settled (or not) order, as the results file has it.
struct ledger_result {
  std::string key;
  std::string id;
  workflow_status status = workflow_status::running;
  std::string node;
  std::string outcome;
  nlohmann::json state;
  /// The results file's line: {"key","id","status","node","outcome","state"}.
  nlohmann::json to_json() const;
};

/// The whole program: opens the journal and the ledger, recovers what the
/// journal has open, starts the orders (an order already in the journal is
/// not started again), waits for all, writes `opt.out_path`, and prints
/// progress to `out`: "recovered: resumed=R parked=P quarantined=Q", one
/// line per quarantined workflow, then a summary ending with "journal
/// syncs: S" (the journal's fsyncs in this run). An order's final state
/// depends only on its index and `opt.seed`: faults and crashes change how
/// many attempts it takes, never where it ends, so runs can be compared.
/// Returns 0 when every order settled, 1 otherwise, 2 for unusable options.
int run_ledger(const ledger_options& opt, std::ostream& out);

} // namespace troupe::examples
