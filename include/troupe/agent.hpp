// The agent API. An agent is stateless code that runs one attempt of one
// step: it reads a step_context, may ask the model (without blocking), and
// ends the attempt with finish() or fail(). Each attempt runs in its own
// actor; an agent that throws or returns without ending its attempt is
// reported as "crashed" for that attempt, never a crash of the workflow.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <string>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "troupe/definition.hpp"
#include "troupe/model.hpp"

namespace troupe {

/// What an attempt produced: a label the definition routes, a merge patch
/// for the workflow state, and tokens spent beyond model calls (model
/// calls made through the context are counted automatically).
struct step_outcome {
  std::string label = outcome::ok;
  nlohmann::json patch = nlohmann::json::object();
  uint64_t extra_tokens = 0;
};

/// Budgets remaining when the attempt started. Unlimited is the max value.
struct budgets_left {
  static constexpr uint64_t unlimited = std::numeric_limits<uint64_t>::max();
  uint64_t steps = unlimited;
  uint64_t tokens = unlimited;
  uint64_t cost_nusd = unlimited; ///< nano-dollars (to_usd() converts)
  duration time = duration::max();
};

/// The attempt's view of the world. Valid only inside run() and inside the
/// reply handlers of ask(); all calls happen on the runner actor that runs
/// this attempt, never two at once.
class step_context {
public:
  using reply_handler = std::function<void(step_context&, caf::expected<llm_reply>)>;
  /// A side effect: gets the effect's idempotency key, returns its result.
  using effect_fn = std::function<nlohmann::json(const std::string& key)>;
  using effect_handler = std::function<void(step_context&, caf::expected<nlohmann::json>)>;

  virtual ~step_context() = default;

  virtual const std::string& workflow_id() const = 0;
  virtual const std::string& node() const = 0;
  virtual uint32_t attempt() const = 0;
  /// The workflow state as of this step (read-only; change it via a patch).
  virtual const nlohmann::json& state() const = 0;
  virtual const budgets_left& budget() const = 0;
  /// Stable across the attempts of one visit to this node: hand it to
  /// external systems that dedupe.
  virtual const std::string& idempotency_key() const = 0;
  /// The user the workflow was started for ("" if none: runtime::start).
  virtual const std::string& user() const = 0;
  /// This attempt's W3C traceparent: the workflow's trace and the
  /// attempt's span (troupe/trace.hpp). Model calls carry it as a header;
  /// pass it to tools that take part in traces. "" where none is known.
  virtual const std::string& traceparent() const;

  /// This user's session context: small JSON values by key, shared by the
  /// agents of all of the user's workflows and never visible to another
  /// user's; each expires config::session_ttl after its last write. Held in
  /// memory, not journaled: a restart forgets it. Null if the key holds
  /// nothing (or the workflow has no user).
  virtual nlohmann::json session_get(const std::string& key) const = 0;
  /// Sets the value under `key` (null removes it). invalid_input if the
  /// workflow has no user, or the value would take the user's context past
  /// config::session_max_bytes (nothing changes then).
  virtual caf::error session_put(const std::string& key, const nlohmann::json& value) = 0;

  /// Asks the model; `then` runs later on the attempt's runner actor with the
  /// reply or an error. The request's idempotency key and (if empty) script
  /// are filled in. Does not block. The call's estimate (prompt tokens +
  /// max_tokens, and their cost at the model's price) is reserved against
  /// the workflow's max_tokens and max_cost_usd budgets: one that does not
  /// fit what is left (after this attempt's earlier calls) is not sent, and
  /// `then` gets over_budget at once, inside ask(); failing the attempt with
  /// it (failure_of) ends the workflow with its `budget` outcome. After the
  /// reply the actual tokens and cost are charged instead.
  virtual void ask(llm_request req, reply_handler then) = 0;
  /// Runs a side effect (a payment, an email, a ticket) at most once per
  /// visit of this node and `name` once its result is journaled: if the
  /// journal already holds a result under the effect's key (an earlier
  /// attempt, or a run before a crash), `then` gets that result and `fn` is
  /// not called; else `fn(key)` runs on the attempt's runner actor, its result is
  /// journaled, and `then` gets it. The key, "<idempotency key>/<name>", is
  /// stable across attempts and restarts: pass it to external systems that
  /// dedupe, because a crash after `fn` returns and before the journal
  /// commit runs `fn` again with the same key. If two attempts race, the
  /// first result journaled wins and both get it. A journal error reaches
  /// `then` as the error; `fn` throwing fails the attempt as crashed.
  virtual void effect(const std::string& name, effect_fn fn, effect_handler then) = 0;
  /// Ends the attempt with an outcome. Later calls are ignored.
  virtual void finish(step_outcome o) = 0;
  /// Ends the attempt as failed. Later calls are ignored.
  virtual void fail(failure_kind kind, std::string reason) = 0;
};

/// An agent written as a class. run() may be called concurrently for
/// different attempts: keep no mutable state in the object.
class agent {
public:
  virtual ~agent() = default;
  virtual void run(step_context& ctx) const = 0;
};

using agent_fn = std::function<void(step_context&)>;
using agent_ptr = std::shared_ptr<const agent>;

/// Wraps a lambda as an agent.
agent_ptr make_agent(agent_fn fn);

/// The failure kind a model error maps to: llm_timeout -> timeout,
/// bad_output -> bad_output, circuit_open -> circuit_open, llm_rejected ->
/// rejected, over_budget -> budget, else crashed.
failure_kind failure_of(const caf::error& err);

/// Convenience: asks for JSON and calls `then` with the parsed document.
/// A model error fails the attempt with failure_of(error); a reply that is
/// not a JSON object fails it with bad_output.
void ask_json(step_context& ctx, llm_request req,
              std::function<void(step_context&, nlohmann::json)> then);

} // namespace troupe
