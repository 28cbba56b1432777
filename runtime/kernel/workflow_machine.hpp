// The pure core: a workflow's state, the events that change it and the
// commands it asks the outside world to carry out. apply() folds one event
// into a state; replay() folds a whole history. No actors, clocks, random
// numbers or I/O: time and the jitter seed arrive inside events.
// Called by the workflow actor (live) and by recovery and tests (replay).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "troupe/definition.hpp"

namespace troupe::kernel {

/// Nanoseconds since the runtime clock's epoch.
using instant = std::chrono::nanoseconds;

// -- events: past-tense facts, journaled before their commands run ----------

struct workflow_started {
  instant at;
  nlohmann::json input; ///< the initial workflow state (an object)
  uint64_t seed = 0;    ///< seeds backoff jitter; chosen once, journaled
  /// The caller's W3C traceparent header ("" = none), checked before the
  /// workflow starts: its trace continues the caller's (troupe/trace.hpp).
  std::string traceparent{};
  /// The node it enters first: "" for the definition's start; else an agent
  /// or gate node (a fork resumes where its origin was).
  std::string start_node{};
  /// A model reference every model call of its agents uses instead of the
  /// agent's own ("" = theirs). Kept in the state; the actors apply it.
  std::string model{};
  /// A fork: the workflow it was forked from ("" = none) and the event of
  /// that workflow whose state is `input`. Kept in the journal only.
  std::string forked_from{};
  uint64_t forked_at = 0;
};
struct step_scheduled {
  instant at;
  std::string node;
  uint32_t attempt = 0;
};
struct step_completed {
  instant at;
  std::string node;
  uint32_t attempt = 0;
  std::string label;    ///< "ok" or one of the agent's own labels
  nlohmann::json patch; ///< merged into the state (RFC 7386 merge patch)
  uint64_t tokens = 0;
  uint64_t cost_nusd = 0; ///< the attempt's model cost, nano-dollars (to_nano_usd)
};
struct step_failed {
  instant at;
  std::string node;
  uint32_t attempt = 0;
  failure_kind kind = failure_kind::crashed;
  std::string reason;
  uint64_t tokens = 0;
  uint64_t cost_nusd = 0; ///< the attempt's model cost, nano-dollars (to_nano_usd)
};
enum class timer_kind : uint8_t {
  step_timeout,
  retry_backoff,
  workflow_deadline,
  gate_deadline, ///< a gate's decision deadline (gate_policy::deadline)
  gate_reminder, ///< a gate's reminder (gate_policy::remind_after)
};
const char* to_string(timer_kind k);

struct timer_fired {
  instant at;
  uint64_t timer = 0;
  timer_kind kind = timer_kind::step_timeout; ///< must match the armed timer's kind
};
struct signal_received {
  instant at;
  std::string gate;
  std::string decision; ///< approve | reject | edit
  nlohmann::json patch; ///< edit only: merged into the state
  std::string by;       ///< who decided (caller-supplied identity)
};

/// More budget for a workflow, given by an operator with a dead-letter
/// retry: added to the definition's limits (a limit of 0, unlimited, stays
/// unlimited). `time` moves the deadline later.
struct budget_grant {
  uint64_t steps = 0;
  uint64_t tokens = 0;
  uint64_t cost_nusd = 0;
  duration time{0};
  bool operator==(const budget_grant& o) const {
    return steps == o.steps && tokens == o.tokens && cost_nusd == o.cost_nusd && time == o.time;
  }
};

/// An operator retries a dead-lettered workflow: it re-enters the node it
/// stopped at with a fresh round of attempts, in the same visit (effects
/// already journaled are not run again), with `grant` added to its budgets.
struct dlq_retried {
  instant at;
  std::string by; ///< who retried (caller-supplied identity)
  budget_grant grant;
};
/// An operator gives up on a dead-lettered workflow: it fails, outcome
/// "dropped".
struct dlq_dropped {
  instant at;
  std::string by;
  std::string reason;
};

/// An operator cancels a live workflow: an attempt in flight is abandoned,
/// and it fails with outcome "cancelled" (compensating first, see
/// agent_policy::compensate).
struct workflow_cancelled {
  instant at;
  std::string by;
  std::string reason;
};

/// The workflow's actor crashed more often than the manager's restart
/// intensity allows: it is dead-lettered (outcome "crashed") instead of
/// being restarted again.
struct workflow_crashed {
  instant at;
  std::string reason;
};

using event = std::variant<workflow_started, step_scheduled, step_completed, step_failed,
                           timer_fired, signal_received, dlq_retried, dlq_dropped,
                           workflow_cancelled, workflow_crashed>;

/// "workflow_started", "step_scheduled", ...
const char* kind_of(const event& e);
instant time_of(const event& e);

// -- commands: imperatives for the workflow actor ---------------------------

/// Record step_scheduled{now, node, attempt} (the actor supplies now).
struct schedule_step {
  std::string node;
  uint32_t attempt = 0;
};
/// Spawn agent `agent` for this attempt.
struct run_agent {
  std::string node;
  std::string agent;
  uint32_t attempt = 0;
  uint32_t visit = 0; ///< nth entry into `node`; keys idempotency across attempts
  bool compensation = false; ///< `agent` undoes that visit of `node`
};
/// Abandon an attempt that timed out: stop its agent, drop its late reply.
struct cancel_step {
  std::string node;
  uint32_t attempt = 0;
};
/// Arm timer `id`; it comes back as timer_fired{id} at `fire_at`.
struct start_timer {
  uint64_t id = 0;
  timer_kind kind = timer_kind::step_timeout;
  instant fire_at;
};
/// Timer `id` is moot; drop it if it fires.
struct cancel_timer {
  uint64_t id = 0;
};
/// Park until a signal for `gate` arrives.
struct await_signal {
  std::string gate;
};
/// Tell the gate's webhook again that the workflow still waits there.
struct remind {
  std::string gate;
  uint32_t n = 0; ///< 1 for the first reminder
};
/// The workflow reached a completed terminal.
struct complete {
  std::string terminal;
};
/// The workflow stopped in the dead-letter state at `node`: a failure no
/// route covers, or a budget spent with no `budget` route. It waits there,
/// durable, for an operator's dlq_retried or dlq_dropped.
struct dead_letter {
  std::string node;
  std::string outcome; ///< "exhausted", "budget", a failure kind's name
  std::string reason;
};
/// The workflow failed: at a failed terminal, or dropped from dead letter.
struct fail {
  std::string terminal; ///< "" when no terminal was reached (dropped)
  std::string outcome;  ///< label that led here: "reject", "exhausted", "budget", ...
  std::string reason;
};

using command = std::variant<schedule_step, run_agent, cancel_step, start_timer, cancel_timer,
                             await_signal, remind, dead_letter, complete, fail>;

// -- state ------------------------------------------------------------------

enum class phase : uint8_t {
  not_started, ///< no event yet
  scheduling,  ///< schedule_step issued, waiting for step_scheduled
  running,     ///< attempt in flight
  backoff,     ///< waiting for the retry timer
  at_gate,     ///< waiting for a signal
  completed,   ///< terminal
  failed,      ///< terminal
  dead_lettered, ///< stopped by a failure or budget; waits for retry or drop
};
const char* to_string(phase p);

struct pending_timer {
  timer_kind kind = timer_kind::step_timeout;
  instant fire_at;
  bool operator==(const pending_timer& o) const {
    return kind == o.kind && fire_at == o.fire_at;
  }
};

struct workflow_state {
  phase at = phase::not_started;
  std::string node;     ///< current node ("" before start)
  uint32_t attempt = 0; ///< current attempt at `node` (scheduling/running/backoff)
  nlohmann::json data = nlohmann::json::object();
  uint64_t steps = 0;   ///< attempts scheduled so far
  uint64_t tokens = 0;  ///< tokens spent so far
  uint64_t cost_nusd = 0; ///< model cost so far, nano-dollars
  uint64_t seed = 0;
  instant started_at{0};
  instant deadline{0};  ///< 0 = none
  uint64_t events = 0;  ///< events applied
  uint64_t next_timer = 1;
  std::map<uint64_t, pending_timer> timers;
  std::map<std::string, uint32_t> visits; ///< entries per node (idempotency keys)
  std::string outcome;  ///< terminal: label that ended it
  std::string reason;   ///< failed or dead-lettered: why; else the failure or budget that
                        ///< routed here (or "")
  budget_grant granted; ///< budget added by dead-letter retries, in all
  bool soft_passed = false; ///< the soft budget threshold has parked it once
  std::string resume_node;  ///< at the soft gate: the node whose attempt waits
  uint32_t resume_attempt = 0; ///< ... and that attempt's number
  /// Completed visits of nodes with a compensating agent, oldest first:
  /// what a failure undoes, newest first.
  std::vector<std::pair<std::string, uint32_t>> undo;
  bool compensating = false; ///< the steps run are undo.back()'s compensation
  std::string undo_terminal; ///< compensating: the failed terminal it ends at ("" none)
  std::string undo_reason;   ///< compensating: why the workflow failed
  std::string traceparent;   ///< the caller's, from workflow_started ("" = none)
  std::string model;         ///< the model override, from workflow_started ("" = none)

  bool finished() const { return at == phase::completed || at == phase::failed; }
  bool operator==(const workflow_state& o) const;
  bool operator!=(const workflow_state& o) const { return !(*this == o); }
};

struct transition {
  workflow_state state;
  std::vector<command> commands;
};

/// A workflow's budgets now: the definition's limits plus what dead-letter
/// retries granted (saturating; 0, unlimited, stays 0). Costs in
/// nano-dollars. The kernel checks these, and agents are told what is left
/// of them.
struct limits {
  uint64_t steps = 0;
  uint64_t tokens = 0;
  uint64_t cost_nusd = 0;
};
limits limits_of(const definition& def, const workflow_state& s);

/// Why apply() takes `e` as a failed attempt (bad_output) rather than a
/// completion in state `s` (running `e`'s attempt): a label the node does
/// not route or a built-in failure label, or a patch that is not an
/// object. "" when it is a completion. Traces mark such attempts failed.
std::string completion_problem(const definition& def, const workflow_state& s,
                               const step_completed& e);

/// Pure: equal (definition, state, event) always give an equal transition.
/// An event that does not fit the state is errc::invalid_transition naming
/// both; the input state is never changed.
[[nodiscard]] caf::expected<transition> apply(const definition& def, const workflow_state& s,
                                              const event& e);
/// apply() that changes `s` into the transition's state and returns its
/// commands, which saves copying the state (traces fold every committed
/// event this way). On a refusal `s` is unspecified: fold no more into it.
[[nodiscard]] caf::expected<std::vector<command>>
apply_in_place(const definition& def, workflow_state& s, const event& e);

/// Folds `history` from the initial state. Returns the final state and the
/// commands of the last event (what was pending when the history ended).
[[nodiscard]] caf::expected<transition> replay(const definition& def,
                                               const std::vector<event>& history);

/// Full-jitter backoff before attempt `failed_attempt + 1`: uniform in
/// [0, min(max_backoff, base_backoff * 2^(failed_attempt-1))], drawn from a
/// hash of (seed, node, failed_attempt). Deterministic.
[[nodiscard]] duration backoff_delay(const retry_policy& p, uint64_t seed, const std::string& node,
                                     uint32_t failed_attempt);

/// The idempotency key of a visit: "<workflow>/<node>#<visit>".
std::string idempotency_key(const std::string& workflow_id, const std::string& node,
                            uint32_t visit);

} // namespace troupe::kernel
