// Shows per-agent timeouts, a fallback and a human gate: loan applications
// checked by identity, credit, risk and compliance agents, then decided by
// an underwriter.
//
//   identity        --ok--> credit_check          --unverified--> declined
//   credit_check    --ok--> risk                  --timeout / exhausted--> credit_fallback
//   credit_fallback --ok--> risk                  --exhausted--> failed
//   risk            --ok--> compliance
//   compliance      --ok--> approval              --flagged--> declined
//   approval (gate) --approve / edit--> funded    --reject--> rejected
//
// Each agent node has its own timeout. credit_check asks the primary bureau
// with a 2 s budget; for about a third of the applicants that bureau takes
// 10 s, so the check times out (a timeout is not retried there: it routes)
// and credit_fallback asks the secondary bureau instead. The bureaus are
// reached through the scripted model (rules "bureau_primary" and
// "bureau_secondary"); the slow one leaves its call unanswered
// (scripted_model_config::no_reply) and tells credit_bureaus, and the
// driver moves a virtual clock (examples/common/virtual_clock.hpp) 10 s
// ahead and calls runtime::clock_changed(): the 2 s budget is spent in
// virtual time, not waited for. identity and compliance are plain logic;
// risk asks the model (rule "risk").
//
// Everything here blocks the calling thread except where noted; call it
// from a plain thread, never from an actor.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "common/virtual_clock.hpp"
#include "troupe/definition.hpp"
#include "troupe/runtime.hpp"

namespace troupe::examples {

/// Knobs of a loan run.
struct loan_options {
  size_t applications = 12; ///< started with idempotency keys "app-0", ...
  uint64_t seed = 42;       ///< applicants, scores and which calls are slow
  size_t threads = 2;       ///< the runtime's scheduler threads
};

/// credit_check's budget, and how long the slow primary bureau takes.
constexpr std::chrono::seconds credit_budget{2};
constexpr std::chrono::seconds slow_bureau_takes{10};

/// The two credit bureaus, outside the runtime. Both report the same score
/// for an applicant; the primary is slow for some applications. Records
/// each primary call it leaves hanging. Thread-safe: the model rules call
/// stalled() on the scripted model's actor; drivers wait on a plain thread.
class credit_bureaus {
public:
  explicit credit_bureaus(uint64_t seed) : seed_(seed) {}

  /// Whether the primary bureau takes slow_bureau_takes for `application`.
  bool primary_slow(const std::string& application) const;
  /// The applicant's credit score (300-850), the same at both bureaus.
  int score(const std::string& application) const;

  /// The primary left attempt `attempt` of `application`'s check hanging.
  void stalled(const std::string& application, uint32_t attempt);
  /// The attempt of `application` whose primary call hung last (0: none).
  uint32_t last_stall(const std::string& application) const;
  /// Hung primary calls so far.
  uint64_t stalls() const;
  /// Waits up to `d` for the next stalled() call; false if none came.
  bool wait_next_stall(std::chrono::milliseconds d);

private:
  uint64_t seed_;
  mutable std::mutex mtx_;
  std::condition_variable cv_;
  std::map<std::string, uint32_t> last_;
  uint64_t stalls_ = 0;
};

/// The "loans" graph above. Timeouts: identity 1 s, credit_check and
/// credit_fallback credit_budget, risk 5 s, compliance 1 s; every agent node
/// retries crashes and bad output (3 attempts, 1-5 ms backoff); only
/// credit_fallback retries a timeout.
caf::expected<definition> loan_definition();

/// A runtime config for `opt`: the scripted model's rules (which report
/// stalls to `bureaus`) and `clock`. The journal is left unset (in memory).
config loan_config(const loan_options& opt, std::shared_ptr<credit_bureaus> bureaus,
                   std::shared_ptr<virtual_clock> clock);

/// Registers the agents "identity_checker", "credit_primary",
/// "credit_secondary", "risk_scorer" and "compliance_checker" and the
/// "loans" definition.
caf::error register_loan_approval(runtime& rt);

/// The idempotency key of application `i`: "app-<i>".
std::string loan_key(size_t i);

/// The input of application `i` under `seed` (deterministic): {"application",
/// "applicant", "amount", "income", "id_document" ("" for a few: unverified),
/// "country" ("embargoed" for a few: flagged)}.
nlohmann::json loan_input(size_t i, uint64_t seed);

/// One started application.
struct loan_application {
  std::string key;
  std::string id;
  nlohmann::json input;
  bool slow = false; ///< its primary bureau call hangs (and it reaches credit_check)
};

/// Drives `apps` until each is parked at `approval` or finished: awaits the
/// others, waits until every slow one has its current credit_check attempt
/// hanging at the primary bureau, then moves `clock` slow_bureau_takes
/// ahead and calls rt.clock_changed(), so those attempts time out and fall
/// back, and awaits them. (A slow attempt that a restarted service cut off
/// and that hangs again after the jump times out by itself: the virtual
/// clock runs on with the system clock.) Returns await_timeout naming an
/// application that did not get there within `patience`.
caf::error drive_to_gate(runtime& rt, credit_bureaus& bureaus, virtual_clock& clock,
                         const std::vector<loan_application>& apps,
                         std::chrono::milliseconds patience);

/// The underwriter's decision for an application parked at `approval`:
/// approve a low risk, edit a medium one down to 75% of the amount, reject
/// a high one.
decision underwrite(const workflow_info& parked);

/// An application's path, read back from its journal: "identity(1) ->
/// credit_check(1 timeout) -> credit_fallback(1) -> risk(1) ->
/// compliance(1) -> approval[edit] -> funded".
caf::expected<std::string> loan_path(runtime& rt, const std::string& workflow_id);

/// The program behind `troupe run loan_approval`: an in-memory runtime on a
/// virtual clock, the applications driven to the gate, the underwriter's
/// decisions, one line per application (path, outcome, attempts) and a
/// summary. Returns 0 when every application finished, 1 otherwise.
int run_loan_approval(const loan_options& opt, std::ostream& out);

} // namespace troupe::examples
