// Workflow definitions: the graph of agent, gate and terminal nodes, each
// agent node's policy, and the workflow's budgets. Plain data, built with
// definition_builder and validated once by build(); the pure kernel reads it.
// A built definition is immutable and may be shared across threads.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace troupe {

using duration = std::chrono::nanoseconds;

/// Built-in outcome labels. Agents may add their own (e.g. "low_confidence").
namespace outcome {
constexpr const char* ok = "ok";
constexpr const char* timeout = "timeout";
constexpr const char* crashed = "crashed";
constexpr const char* bad_output = "bad_output";
constexpr const char* circuit_open = "circuit_open";
constexpr const char* budget = "budget";
constexpr const char* exhausted = "exhausted";
/// a dead-lettered workflow an operator gave up on
constexpr const char* dropped = "dropped";
/// a workflow an operator cancelled
constexpr const char* cancelled = "cancelled";
/// a failed workflow whose completed steps were compensated
constexpr const char* compensated = "compensated";
// gate decisions
constexpr const char* approve = "approve";
constexpr const char* reject = "reject";
constexpr const char* edit = "edit";
} // namespace outcome

/// The failure kinds an attempt can end with.
/// How an attempt failed. `rejected`: the model provider refused the request
/// (bad request, bad key, unknown model, context too large); retrying the
/// same request cannot help, so it is not retried by default. `budget`: a
/// model call would have taken the workflow past its max_tokens budget (its
/// estimate is reserved before sending); not routed as a failure: the
/// workflow takes its `budget` outcome.
enum class failure_kind : uint8_t { timeout, crashed, bad_output, circuit_open, rejected, budget };

/// Every failure kind, in declaration order: what validation covers and
/// what the journal decodes. A new kind is appended here too.
inline constexpr failure_kind all_failure_kinds[] = {
  failure_kind::timeout,      failure_kind::crashed,  failure_kind::bad_output,
  failure_kind::circuit_open, failure_kind::rejected, failure_kind::budget};

const char* to_string(failure_kind k);

/// How an agent node retries failed attempts (exponential backoff, full jitter:
/// the delay before attempt n+1 is uniform in [0, min(max, base * 2^(n-1))]).
struct retry_policy {
  /// Attempts in total, including the first. Must be >= 1.
  uint32_t max_attempts = 1;
  duration base_backoff = std::chrono::milliseconds{100};
  duration max_backoff = std::chrono::seconds{10};
  /// Failure kinds that are retried; others route at once by their own
  /// label (e.g. drop circuit_open and route it to a fallback model node).
  std::set<failure_kind> retryable = {failure_kind::timeout, failure_kind::crashed,
                                      failure_kind::bad_output, failure_kind::circuit_open};
};

/// Per agent node: how long an attempt may take, how it retries, where
/// failures go when no specific route matches.
struct agent_policy {
  duration timeout = std::chrono::seconds{30};
  retry_policy retry;
  /// Node taken by any failure without a more specific route ("" = none).
  std::string fallback;
  /// A registered agent that undoes what this node did ("" = nothing to
  /// undo). When the workflow fails after this node completed (a failed
  /// terminal, a dead letter dropped, a cancel), the compensations of its
  /// completed nodes run newest first, each with this node's timeout and
  /// retry policy; then the workflow fails with outcome "compensated". A
  /// compensation that fails for good dead-letters the workflow.
  std::string compensate;
};

/// Per gate node: who is told when a workflow parks there. The webhook gets
/// a JSON POST with a Slack-compatible body ({"text": ..., plus
/// workflow_id, definition, gate, reason and key fields}); a failed POST
/// (no connection, 408, 429, 5xx) is retried with backoff
/// (config::notify_retry). Sent once per park as it happens: a process that
/// dies between the park and the POST does not send it after recovery.
///
/// A gate may have a deadline: with no decision `deadline` after the
/// workflow parks there, the gate takes its "timeout" route (escalate to
/// another gate, or a failed terminal), else its "reject" route; journaled
/// as timer_fired{gate_deadline}. With a webhook, `remind_after` sends the
/// notification again (marked a reminder) after that long without a
/// decision, up to `reminders` times, each `remind_after` after the last,
/// none after the deadline.
struct gate_policy {
  std::string notify_url; ///< "" = nobody; else http:// or https://
  duration deadline{0};     ///< 0 = wait for ever
  duration remind_after{0}; ///< 0 = no reminder; needs notify_url
  uint32_t reminders = 1;   ///< at most this many, >= 1 when remind_after is set
};

enum class node_kind : uint8_t { agent, gate, terminal };
enum class terminal_kind : uint8_t { completed, failed };

/// One node of the graph. `routes` maps an outcome label to the next node.
struct node {
  std::string name;
  node_kind kind = node_kind::agent;
  std::string agent;                        ///< agent nodes: registered agent name
  agent_policy policy;                      ///< agent nodes
  gate_policy gate;                         ///< gate nodes
  terminal_kind terminal = terminal_kind::completed; ///< terminal nodes
  std::map<std::string, std::string> routes;
};

/// Per-workflow limits; 0 means unlimited. Before each attempt is scheduled,
/// a budget reached (steps, tokens or cost used >= the limit, or the
/// deadline passed) is the outcome "budget": the current node's "budget"
/// route if it has one, else the dead-letter state (an operator may retry
/// it with more budget, or drop it). The deadline also fires by itself,
/// mid-attempt or at a gate. Tokens and cost are also reserved before each
/// model call (step_context::ask), so a workflow overspends by at most the
/// difference between one call's estimate and its actual usage.
struct budgets {
  uint64_t max_steps = 0;   ///< agent attempts, retries included
  uint64_t max_tokens = 0;  ///< model tokens, failed attempts included
  double max_cost_usd = 0;  ///< model cost by the gateway's price tables, failed attempts included
  duration deadline{0};     ///< wall-clock time from start
  /// A soft threshold: once the tokens or cost used reach this share of
  /// max_tokens or max_cost_usd (say 0.8), the workflow parks at gate
  /// `soft_gate` before its next attempt instead of going on, once per
  /// workflow. Approve (or edit) there resumes the attempt it stopped
  /// before (the gate's own approve route is not taken); reject takes the
  /// gate's reject route. 0 = off; else in (0, 1), with soft_gate a gate.
  double soft_share = 0;
  std::string soft_gate;
};

/// Costs are journaled and summed as whole nano-dollars (1e-9 USD), so a
/// replay adds them exactly. Rounds to nearest; negative or NaN is 0; too
/// large saturates.
uint64_t to_nano_usd(double usd);
inline double to_usd(uint64_t nano_usd) { return static_cast<double>(nano_usd) / 1e9; }

/// A validated workflow graph. Build it with definition_builder.
struct definition {
  std::string name;
  uint32_t version = 1;
  std::string start;
  std::vector<node> nodes;
  budgets limits;

  /// The node called `name`, or nullptr.
  const node* find(const std::string& name) const;
};

/// What happens to an attempt that failed: retried, or routed to `target`
/// by outcome `label`: the label of the route taken ("exhausted" or the
/// kind's name); for the fallback, "exhausted" if retries ran out, else the
/// kind's name. `target` is empty and `retry` false for a failure no route
/// covers: the workflow is dead-lettered with `label`.
struct failure_decision {
  bool retry = false;
  std::string target;
  std::string label;
};

/// The single routing rule for failures, used by validation and the kernel.
/// A retryable kind with attempts left is retried; once they run out it goes
/// to route "exhausted", else its own route, else the fallback. A kind that
/// is not retryable goes to its own route, else the fallback; `rejected`
/// (the step cannot succeed as asked) goes to its own route, else
/// "exhausted", else the fallback.
failure_decision failure_route(const node& n, failure_kind kind, uint32_t attempt);

/// Fluent construction of a definition; build() validates it.
///
///   auto def = definition_builder{"triage"}
///     .agent("extract", "extractor", policy).on("ok", "analyze").on("exhausted", "review")
///     .gate("review").on("approve", "analyze").on("reject", "rejected")
///     .completed("done").failed("rejected")
///     .build();
class definition_builder {
public:
  explicit definition_builder(std::string name, uint32_t version = 1);

  /// Adds an agent node running agent `agent`. The first node added is the start.
  definition_builder& agent(std::string name, std::string agent, agent_policy policy = {});
  /// Adds a gate node that waits for approve / reject / edit (and, with a
  /// deadline, routes "timeout").
  definition_builder& gate(std::string name, gate_policy p = {});
  definition_builder& completed(std::string name);
  definition_builder& failed(std::string name);
  /// Routes `label` of the most recently added node to `target`.
  definition_builder& on(std::string label, std::string target);
  definition_builder& start(std::string name);
  definition_builder& limits(budgets b);

  /// Validates and returns the definition, or invalid_definition naming the
  /// node at fault: unknown target, unreachable node, no terminal, an agent
  /// node without an "ok" route, zero attempts, a duplicate name, an agent
  /// cycle without a step or deadline budget. A failure no route covers is
  /// allowed: it dead-letters the workflow.
  caf::expected<definition> build() const;

private:
  definition def_;
  std::string error_; // first misuse of the builder itself, reported by build()
};

/// Validates a definition made by hand (build() calls this).
caf::error validate(const definition& def);

} // namespace troupe
