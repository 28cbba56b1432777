// Shows exactly-once fulfillment under retries, replays and a restart:
// orders classified by a model, then shipped or refunded through an external
// warehouse with ctx.effect.
//
//   classify --purchase--> fulfill --ok--> shipped
//   classify --return----> refund  --ok--> refunded
//   any agent --exhausted--> failed
//
// `classify` asks the scripted model whether the customer's message is a
// purchase or a return. `fulfill` asks it for a packing slip, then ships
// through warehouse::ship from ctx.effect("ship", ...); `refund` refunds
// through warehouse::refund from ctx.effect("refund", ...). Faults are
// switched on per call, as pure functions of (seed, order, node, attempt):
// model errors and malformed replies, model calls that never answer (the
// step times out), an agent that dies after its effect ran and before it
// finished, and an agent that answers with a label its node does not route.
// Every one is retried; the effect's journaled result (and, for a crash
// between the warehouse call and its commit, the warehouse's dedupe by key)
// keeps each order shipped or refunded once.
//
// Timeouts run on a virtual clock (examples/common/virtual_clock.hpp): a
// model call that hangs tells the timeout_driver, whose thread moves the
// clock past the step timeout and calls runtime::clock_changed(), so a
// one-minute timeout costs no wall-clock time.
//
// Everything here blocks the calling thread except where noted; call it
// from a plain thread, never from an actor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "common/virtual_clock.hpp"
#include "order_processing/warehouse.hpp"
#include "troupe/definition.hpp"
#include "troupe/runtime.hpp"

namespace troupe::examples {

/// Knobs of an order run. Rates are per call or per attempt, in [0, 1].
struct order_options {
  size_t orders = 40;           ///< started with idempotency keys "order-0", ...
  uint64_t seed = 42;           ///< order contents and every fault draw
  double fail_rate = 0.1;       ///< model calls answered with an error
  double malformed_rate = 0.1;  ///< model calls answered with text that is not JSON
  double hang_rate = 0.05;      ///< model calls never answered (the step times out)
  double crash_after_effect_rate = 0.25; ///< fulfill/refund die after the warehouse call
  double bad_output_rate = 0.1; ///< fulfill/refund answer a label the node does not route
  size_t threads = 2;           ///< the runtime's scheduler threads
  /// run_order_processing: start two thirds of the orders, stop the runtime
  /// at once, open a new one on the same journal, recover, replay every start.
  bool restart = true;
};

/// An agent node's step timeout (virtual time): a minute, as a model call
/// may take. On the virtual clock it costs no wall-clock time, and no run
/// lasts a minute, so only the driver's jumps reach it: a call that does
/// not hang is never timed out by a slow machine.
constexpr std::chrono::seconds order_step_timeout{60};

/// Moves a virtual clock past the step timeout whenever a model call hangs,
/// and tells the attached runtime (clock_changed()), from a thread of its
/// own that lives only while a runtime is attached: a thread that has
/// called into a runtime must end before that runtime is destroyed (CAF
/// 0.17 waits for it). hung() may be called from any thread, actors
/// included; attach() from a plain thread. Hangs reported while no runtime
/// is attached are acted on once one is.
class timeout_driver {
public:
  timeout_driver() = default;
  ~timeout_driver(); ///< detaches
  timeout_driver(const timeout_driver&) = delete;
  timeout_driver& operator=(const timeout_driver&) = delete;

  const std::shared_ptr<virtual_clock>& clock() const { return clock_; }
  /// Acts on `rt` from now on (nullptr: on none). Ends the thread acting on
  /// the previous runtime first, so that one may be destroyed once
  /// attach(nullptr) returns.
  void attach(runtime* rt);
  /// A model call hung: a jump is due. Never blocks for long.
  void hung();
  /// Jumps made so far.
  uint64_t jumps() const;

private:
  void loop(runtime* rt);

  std::shared_ptr<virtual_clock> clock_ = std::make_shared<virtual_clock>();
  mutable std::mutex mtx_; ///< guards the fields below; held only briefly
  std::condition_variable cv_;
  uint64_t pending_ = 0;
  uint64_t jumps_ = 0;
  bool stop_ = false;
  std::thread thread_; ///< acts on the attached runtime; joined by attach()
};

/// What the scripted model does with a model call of an order's node.
enum class order_fault { none, model_error, malformed, hang };

/// The fault of the model call that `node`'s attempt `attempt` makes for
/// order `order` (its key, "order-<i>"): a pure function of them and
/// opt.seed, hang_rate, fail_rate and malformed_rate. The rules answer by
/// it; tests use it to know which calls hang.
order_fault order_call_fault(const order_options& opt, const std::string& order,
                             const std::string& node, uint32_t attempt);

/// The "orders" graph above. Every agent node: order_step_timeout, 50
/// attempts with 1-5 ms backoff (a crashed attempt is retried too).
caf::expected<definition> order_definition();

/// A runtime config for `opt`: the scripted model's rules ("classifier",
/// "packer", which hang calls through `driver`), its fault rates, the
/// driver's virtual clock. The journal is left unset (in memory).
config order_config(const order_options& opt, std::shared_ptr<timeout_driver> driver);

/// Registers the agents "classifier", "fulfiller" and "refunder" (which
/// keep `store` alive) and the "orders" definition.
caf::error register_order_processing(runtime& rt, std::shared_ptr<warehouse> store,
                                     const order_options& opt);

/// The idempotency key of order `i`: "order-<i>".
std::string order_key(size_t i);

/// The input of order `i` under `seed` (deterministic): {"order", "customer",
/// "message", "sku", "qty", "cents", "intent"}. "intent" ("purchase" or
/// "return") is what the message says, for checking; the agents do not read it.
nlohmann::json order_input(size_t i, uint64_t seed);

/// One workflow's journey, read back from its journal: "classify(2) ->
/// fulfill(3) -> shipped" (attempts per node) and its failed attempts by kind.
struct order_journey {
  std::string path;
  uint32_t attempts = 0;
  uint32_t timeouts = 0;
  uint32_t crashes = 0;
  uint32_t bad_outputs = 0;
  /// (node, visit) pairs completed more than once: always 0 unless broken.
  uint32_t repeated_completions = 0;
};
caf::expected<order_journey> read_journey(runtime& rt, const std::string& workflow_id);

/// The program behind `troupe run order_processing`: a SQLite journal in a
/// fresh temporary directory (removed at the end), the orders started with
/// their keys, a restart part-way (opt.restart: two thirds started, the
/// runtime stopped with them in flight) after which every start is
/// replayed with the same key, one line per order (path, outcome, attempts,
/// tracking number or refund) and a summary with the warehouse's counts.
/// Returns 0 when every order finished shipped or refunded exactly once, 1
/// otherwise.
int run_order_processing(const order_options& opt, std::ostream& out);

} // namespace troupe::examples
