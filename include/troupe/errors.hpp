// troupe's error codes: one enum for the whole runtime, grouped by what the
// caller should do next. Errors are values (caf::error); exceptions never
// cross an actor boundary. Included by every layer, including the pure kernel.
#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>

namespace troupe {

/// Every failure the runtime reports. Codes are stable: they are journaled.
enum class errc : uint8_t {
  // -- do not retry: the request itself is wrong ------------------------------
  /// A workflow definition failed validation; the context names the node.
  invalid_definition = 1,
  /// A definition with that name is not registered (or registered twice).
  unknown_definition,
  /// An agent name is not registered (or registered twice).
  unknown_agent,
  /// No workflow with that id exists.
  unknown_workflow,
  /// A signal names a gate the workflow is not waiting at, or is malformed.
  bad_signal,
  /// An event does not fit the workflow's state (kernel refused it).
  invalid_transition,
  /// A workflow input is not a JSON object.
  invalid_input,
  /// A configuration value is out of range or malformed.
  invalid_config,
  /// The workflow has already finished; it takes no more signals.
  workflow_finished,
  // -- retry with backoff: a transient condition ------------------------------
  /// The model did not answer in time.
  llm_timeout,
  /// The model answered with an error (transport, 5xx, injected fault).
  llm_unavailable,
  /// The runtime is saturated; try again later.
  overloaded,
  /// The model's circuit breaker is open: calls fail fast until it closes.
  circuit_open,
  /// An await ran out of time before the workflow settled.
  await_timeout,
  // -- the step's output is unusable ------------------------------------------
  /// The model or agent produced output that does not parse or fit.
  bad_output,
  /// An agent threw or exited without producing an outcome.
  agent_crashed,
  // -- stop and alert: durability is at stake ---------------------------------
  /// The journal refused or failed a write; state after it is not durable.
  journal_write_failed,
  /// A journaled record does not decode, or a workflow's records have a gap.
  journal_corrupt,
  /// The runtime is shutting down and takes no new work.
  shutting_down,
  // -- durability, continued (codes are appended, never renumbered) -----------
  /// The journal file cannot be used: not a troupe journal, written by a
  /// newer troupe, read-only, locked by another process, or unreadable. The
  /// context names the file; the file is left as it was.
  journal_unusable,
  /// The journal's disk is full; the failed batch is rolled back.
  journal_full,
  // -- the model, continued ---------------------------------------------------
  /// The model provider refused the request and would refuse it again: bad
  /// request, bad or missing key, unknown model, a prompt larger than the
  /// model's context window. Not retryable; fix the request or the config.
  llm_rejected,
  /// A model call was not sent: its estimate (prompt + max_tokens, and its
  /// cost at the model's price) does not fit what is left of the workflow's
  /// max_tokens or max_cost_usd budget.
  over_budget,
  // -- supervision --------------------------------------------------------------
  /// A supervisor's children restarted more often than its intensity allows
  /// within its period (or one could not be started): it stopped them all and
  /// exited with this reason, for its own supervisor to handle.
  restart_intensity,
  /// The runtime service holding the call (the workflow manager, the
  /// gateway) died before it answered; its supervisor restarts it. The call
  /// may or may not have taken effect: a start with an idempotency key can
  /// be repeated safely, an await or status can simply be asked again.
  interrupted,
};

/// Builds a caf::error in troupe's category with `context` as its message.
caf::error make_error(errc code, std::string context = {});

/// The code's name, e.g. "invalid_definition".
const char* to_string(errc code);

/// True for codes worth retrying with backoff (the single source of truth).
bool is_retryable(errc code);

/// True if `err` belongs to troupe's category and has code `code`.
bool is(const caf::error& err, errc code);

/// The error's context as text, without its code's name: what follows
/// "code: " in describe().
std::string context_of(const caf::error& err);

/// Renders any caf::error for people: "invalid_definition: node 'x': ...".
/// Works without an actor system (CAF's own categories render by name).
std::string describe(const caf::error& err);

/// The category atom troupe's errors carry.
constexpr caf::atom_value error_category = caf::atom("troupe");

} // namespace troupe
