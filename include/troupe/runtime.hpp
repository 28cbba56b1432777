// The embedding facade: a troupe runtime inside a C++ service. Construct it
// from a config, register agents and definitions, start workflows, signal
// their gates, await results, shut down. All methods are thread-safe and
// block the calling thread only for the call itself (await: until the
// workflow settles or the timeout passes). Never call them from an actor.
// Destroying a runtime waits for the threads other than its own caller that
// have called into it to end (CAF 0.17 counts them): end those first.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "troupe/agent.hpp"
#include "troupe/definition.hpp"
#include "troupe/gateway.hpp"
#include "troupe/supervisor.hpp"
#include "troupe/journal.hpp"
#include "troupe/model.hpp"
#include "troupe/seams.hpp"
#include "troupe/trace.hpp"

namespace troupe {

struct config {
  /// Scheduler worker threads.
  size_t threads = 2;
  /// How ready actors are shared among the threads: "sharing" (one FIFO
  /// queue: every workflow in flight advances in turn, which measured 25%
  /// more durable steps/s and a third of the p99 step latency at 64
  /// workflows on 2 cores) or "stealing" (CAF's default: a queue per
  /// thread, idle threads steal; can pay off with many cores).
  std::string scheduler = "sharing";
  /// The embedded scripted model (provider "scripted").
  scripted_model_config model;
  /// The model providers agents reach through the gateway; with none, the
  /// scripted model is the default (troupe/gateway.hpp).
  gateway_config gateway;
  /// How a gate's webhook POST is retried (gate_policy::notify_url):
  /// attempts in all, and the full-jitter backoff between them.
  retry_policy notify_retry = {5, std::chrono::milliseconds{500}, std::chrono::seconds{30}, {}};
  // -- seams (production defaults when null) --
  std::shared_ptr<clock_source> clock;   ///< system clock
  std::shared_ptr<random_source> random; ///< random_device-seeded
  /// Where workflows are journaled: open_sqlite_journal() for a durable
  /// runtime; null is an in-memory journal (nothing survives the process).
  std::shared_ptr<journal_store> journal;
  /// Writes per journal batch at most (group commit).
  size_t journal_batch = 256;
  /// A snapshot of a workflow's state every this many events (0: never), so
  /// recovering a long agent loop replays only the events after it.
  uint32_t snapshot_every = 64;
  /// A workflow parked at a gate gives up its actor until a signal or its
  /// deadline wakes it from the journal.
  bool passivate = true;
  /// A workflow actor that crashes (a bug, not a failed step: those are
  /// retried by policy) is rebuilt from the journal up to this many times
  /// within the period; one more crash dead-letters the workflow, outcome
  /// "crashed", for an operator to retry or drop.
  uint32_t workflow_restart_intensity = 3;
  std::chrono::nanoseconds workflow_restart_period = std::chrono::minutes{1};
  /// Per-user session context (step_context::session_get/put): a value
  /// expires this long after its last write; one user's values take at
  /// most session_max_bytes (keys and JSON text).
  std::chrono::nanoseconds session_ttl = std::chrono::hours{1};
  size_t session_max_bytes = 64 * 1024;
  /// spdlog level name: trace, debug, info, warn, error, off.
  std::string log_level = "warn";
  /// How spdlog writes lines: "text" (spdlog's pattern) or "json" (one
  /// object per line: time, level, logger, message, and the workflow's id,
  /// trace id, node and attempt where a line concerns one). Like
  /// log_level, it is set on spdlog's default logger, process-wide.
  std::string log_format = "text";
  /// Span export to an OpenTelemetry collector (troupe/trace.hpp); off
  /// while tracing.otlp_endpoint is "".
  tracing_config tracing;
};

/// How runtime::start starts a workflow, beyond its definition and input.
struct start_options {
  /// Non-empty and already used: that workflow's id, nothing started.
  std::string idempotency_key{};
  /// Journaled with the workflow: whose session context its agents see.
  std::string user{};
  /// A W3C traceparent, "00-<32 hex trace id>-<16 hex span id>-<2 hex
  /// flags>": the workflow's trace continues the caller's, its root span
  /// under the caller's span. Journaled. "" starts a trace of its own.
  std::string traceparent{};
  /// A model reference (troupe/gateway.hpp: "provider" or "provider/model")
  /// that every model call of the workflow's agents uses instead of the one
  /// the agent asked for, and is priced at. Journaled. "" leaves them be;
  /// one the gateway cannot resolve is invalid_input, nothing started.
  std::string model{};
};

/// How runtime::fork starts its copy.
struct fork_options {
  /// As start_options::model: "" keeps the agents' own models.
  std::string model{};
  /// As start_options::idempotency_key: a fork retried with the same key
  /// is the fork already made.
  std::string idempotency_key{};
};

/// `dead_lettered`: stopped by a failure no route covers or a spent budget
/// with no budget route; durable, it waits for retry_dead_letter() or
/// drop_dead_letter().
enum class workflow_status : uint8_t { running, parked, completed, failed, dead_lettered };
const char* to_string(workflow_status s);

/// A snapshot of one workflow.
struct workflow_info {
  std::string id;
  std::string definition;
  workflow_status status = workflow_status::running;
  std::string node;      ///< current node, or the terminal reached
  std::string outcome;   ///< finished: the label that ended it
  std::string reason;    ///< failed: why; parked or running: the failure that routed here
  nlohmann::json state;
  uint64_t steps = 0;
  uint64_t tokens = 0;
  double cost_usd = 0;   ///< model cost, by the gateway's price tables
  bool finished() const {
    return status == workflow_status::completed || status == workflow_status::failed;
  }
};

/// What recover() found in the journal.
struct recovery_report {
  uint64_t resumed = 0; ///< running again: pending steps re-issued, timers re-armed
  uint64_t parked = 0;  ///< waiting at a gate again (passive until woken)
  /// "<id>: <why>" for each workflow left untouched in the journal: a record
  /// that does not decode, a definition not registered (or another version).
  std::vector<std::string> quarantined;
};

/// What a human (or a program) decides at a gate.
struct decision {
  std::string verdict;   ///< "approve" | "reject" | "edit"
  std::string patch_json; ///< edit: a JSON object merged into the state
  std::string by;        ///< who decided
  static decision approve(std::string by = {}) { return {outcome::approve, {}, std::move(by)}; }
  static decision reject(std::string by = {}) { return {outcome::reject, {}, std::move(by)}; }
  static decision edit(std::string patch_json, std::string by = {}) {
    return {outcome::edit, std::move(patch_json), std::move(by)};
  }
};

/// More budget for a dead-letter retry, added to the definition's limits
/// (a limit that is 0, unlimited, stays so). `time` moves the deadline.
struct extra_budget {
  uint64_t steps = 0;
  uint64_t tokens = 0;
  double cost_usd = 0;
  std::chrono::nanoseconds time{0};
};

/// What changed in a runtime's journal since a version (runtime::watch).
struct journal_changes {
  /// Committed journal batches since the runtime started (purges count too).
  uint64_t version = 0;
  /// The workflows those commits touched, each once, oldest change first.
  std::vector<std::string> workflows;
  /// Too far behind to list (or `after` came from another runtime):
  /// anything may have changed; `workflows` is empty.
  bool all = false;
  /// The `seq` of the newest event committed (journal_record::seq): events
  /// of these workflows with a greater one are newer than this answer.
  uint64_t last_seq = 0;
};

/// One agent's attempts as the runtime's metrics hold them (the
/// troupe_step_duration_seconds histogram and troupe_steps_total): what
/// ended since the runtime started, timed from dispatch to outcome in the
/// runtime's clock.
struct agent_latency {
  std::string agent;
  /// Upper bounds of the histogram's buckets, in seconds, ascending; one
  /// more bucket, above every bound, follows.
  std::vector<double> bounds;
  /// Timed attempts per bucket (not cumulative): bounds.size() + 1 entries.
  std::vector<uint64_t> counts;
  uint64_t count = 0;     ///< timed attempts: the sum of `counts`
  double sum_seconds = 0; ///< their durations added up
  /// Every ended attempt by outcome (a label, or a failure kind), timed or
  /// not: an attempt cut off by a crash of the process has no duration.
  std::map<std::string, uint64_t> outcomes;
};

class runtime {
public:
  /// Starts the actor system and the runtime's service actors.
  /// Throws std::invalid_argument on an invalid config (the only throw).
  explicit runtime(config cfg);
  /// Shuts down (see shutdown()).
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Registers an agent under `name`; unknown_agent if the name is taken.
  caf::error register_agent(const std::string& name, agent_ptr a);
  caf::error register_agent(const std::string& name, agent_fn fn);
  /// Registers a built definition; every agent it names must be registered.
  caf::error register_definition(definition def);

  /// Starts a workflow of `definition` with `input` (a JSON object) as its
  /// state. A non-empty `idempotency_key` already used returns that
  /// workflow's id instead of starting another. Returns once the workflow's
  /// first event is in the journal: an id returned survives a crash right
  /// after. journal_write_failed if that write failed (nothing was started;
  /// retry with the same key if unsure). `user` (journaled with the
  /// workflow) is whose session context its agents see.
  caf::expected<std::string> start(const std::string& definition, nlohmann::json input,
                                   const std::string& idempotency_key = {},
                                   const std::string& user = {});
  /// start() with options: a traceparent that does not parse is
  /// invalid_input naming what is wrong, and nothing is started. A start
  /// joining an earlier one by idempotency key keeps the earlier trace.
  caf::expected<std::string> start(const std::string& definition, nlohmann::json input,
                                   const start_options& opts);
  /// Delivers a decision to a workflow parked at `gate`.
  caf::error signal(const std::string& workflow_id, const std::string& gate, const decision& d);
  /// Waits until the workflow finishes or is dead-lettered (or, with
  /// `or_parked`, parks at a gate).
  caf::expected<workflow_info> await(const std::string& workflow_id,
                                     std::chrono::milliseconds timeout, bool or_parked = false);
  /// The workflow's current snapshot as journaled, without waiting for it
  /// to settle: what it reports survives a restart (asked while a write
  /// is in flight, it waits for that write's acknowledgement).
  caf::expected<workflow_info> status(const std::string& workflow_id);
  /// Every workflow waiting in dead letter, oldest first: `node` is where
  /// it stopped, `outcome` the label that stopped it ("exhausted",
  /// "budget", a failure kind), `reason` why, `state` its state then.
  caf::expected<std::vector<workflow_info>> dead_letters();
  /// Retries a dead-lettered workflow: it re-enters the node it stopped at
  /// with a fresh round of attempts, in the same visit (its idempotency key
  /// stays, and effects already journaled are not run again), with `more`
  /// added to its budgets. Journaled with `by`. bad_signal if the workflow
  /// is not dead-lettered; invalid_input for a negative or non-finite grant.
  caf::error retry_dead_letter(const std::string& workflow_id, const std::string& by,
                               extra_budget more = {});
  /// Gives up on a dead-lettered workflow: it fails with outcome "dropped"
  /// and `reason`, journaled with `by`. bad_signal if it is not dead-lettered.
  caf::error drop_dead_letter(const std::string& workflow_id, const std::string& by,
                              const std::string& reason);
  /// Cancels a live workflow (running, parked, or dead-lettered): an
  /// attempt in flight is abandoned, then the compensations of its
  /// completed steps run (agent_policy::compensate) and it fails with
  /// outcome "compensated", or at once with "cancelled" if there is nothing
  /// to undo. Journaled with `by` and `reason`. workflow_finished if it has
  /// finished; bad_signal while it is compensating already.
  caf::error cancel(const std::string& workflow_id, const std::string& by,
                    const std::string& reason);
  /// The workflow as it was right after its journaled event `wf_seq` (time
  /// travel, `troupe replay --until`): status, node, state, steps, tokens
  /// and cost then, folded from the journal by the workflow's definition.
  /// unknown_workflow; unknown_definition if its definition (that version)
  /// is not registered here; invalid_input for a seq it does not have.
  caf::expected<workflow_info> state_at(const std::string& workflow_id, uint64_t wf_seq);
  /// Starts a new workflow from `workflow_id`'s state right after its event
  /// `wf_seq` (`troupe fork --at`): the same definition and user, that state
  /// as its input, entering the node the original was at then (an attempt
  /// in flight or waiting to be retried starts over at attempt 1; a gate
  /// waits again; a dead letter's node runs again), with `opts.model` for
  /// every model call if given. The original is not touched. The fork is a
  /// workflow of its own: its own id, budgets counted from zero, its own
  /// idempotency keys (so its effects run again: fork workflows whose
  /// effects reach real systems with care), and its workflow_started
  /// journals where it came from. Errors as state_at's, and invalid_input
  /// for a seq at which the workflow had finished or was compensating, or
  /// a model the gateway cannot resolve.
  caf::expected<std::string> fork(const std::string& workflow_id, uint64_t wf_seq,
                                  const fork_options& opts = {});
  /// The workflow's journaled events, oldest first.
  caf::expected<std::vector<journal_record>> history(const std::string& workflow_id);
  /// Rebuilds every workflow the journal has open (not completed or failed)
  /// and not yet in this runtime: call it after registering the agents and
  /// definitions they use. A step that was running when the process died
  /// fails as `crashed` and follows its retry policy; a scheduled step runs;
  /// timers fire at their journaled instants (at once if past); a gate
  /// waits again. Workflows that cannot be rebuilt are quarantined and
  /// reported; the others go on. Calling it again recovers nothing twice.
  caf::expected<recovery_report> recover();
  /// Deletes completed and failed workflows that finished more than
  /// `older_than` ago from the journal (events, snapshots, effects; dead
  /// letters stay). Returns how many went.
  caf::expected<uint64_t> purge(std::chrono::nanoseconds older_than);
  /// The model gateway's lanes (provider + model) used so far: breaker
  /// state, queue, counts, tokens and cost.
  caf::expected<std::vector<lane_stats>> model_lanes();
  /// The runtime's metrics in Prometheus' text exposition format (what
  /// `troupe serve` answers on /metrics): workflows by status, steps by
  /// agent and outcome, retries, step latency per agent, restarts, journal
  /// commit latency and batch sizes, and per model lane the breaker state,
  /// queue depth, requests, tokens and cost. README lists every series.
  caf::expected<std::string> metrics_text();
  /// The attempt latency histogram and outcome counts of each agent that
  /// ended an attempt in this runtime, agents by name.
  std::vector<agent_latency> step_latency() const;
  /// The runtime's service actors, in start order, under its root
  /// supervisor (rest_for_one: journal, timers, scripted, gateway,
  /// notifier, manager).
  /// A service that dies is restarted with those started after it; a new
  /// manager recovers every open workflow from the journal.
  caf::expected<std::vector<child_info>> services();
  /// The workflow's spans, derived from its journal now (derive_trace):
  /// those still open with ended false. unknown_workflow, or
  /// unknown_definition if its definition (that version) is not registered.
  caf::expected<std::vector<span>> trace(const std::string& workflow_id);
  /// What span export has done so far (all zero while it is off).
  troupe::trace_stats trace_stats() const;
  /// Waits until the spans of everything committed before the call are
  /// exported or dropped, at most `timeout`; false if time ran out (true
  /// at once while export is off). For tests and orderly handovers.
  bool flush_traces(std::chrono::milliseconds timeout);
  /// Tells the runtime that its injected clock (config::clock) jumped, as a
  /// test's virtual clock does: step and retry timers now due fire at once
  /// instead of after the delay measured when they were armed. Timers armed
  /// before the call are covered. shutting_down if the timer service is gone.
  caf::error clock_changed();
  /// Workflow rows from the journal, newest first (see workflow_query):
  /// what list pages show. invalid_input for an unknown status or a zero limit.
  caf::expected<std::vector<workflow_row>> list(const workflow_query& q);
  /// How many workflows the journal has in each status.
  caf::expected<workflow_counts> counts();
  /// The registered definitions, ordered by name.
  std::vector<definition> definitions();
  /// Waits until the journal commits anything after `after` (a `version`
  /// from an earlier answer; 0 at the start), wake_watchers() is called,
  /// the runtime shuts down or `wait` passes, and says what changed. Any
  /// thread but an actor's; returns at once when there is news already.
  journal_changes watch(uint64_t after, std::chrono::milliseconds wait);
  /// Makes every watch() in progress return now (a server stopping).
  void wake_watchers();
  /// Stops taking work, stops every actor, waits for them, then exports
  /// what spans it can within tracing.shutdown_timeout. Idempotent.
  void shutdown();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace troupe
