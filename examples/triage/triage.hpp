// Shows a ticket-triage pipeline surviving model faults: retries, timeouts, a review gate.
//
// Tickets go extract -> analyze -> report; the scripted model fails, hangs
// or garbles some calls on purpose, and uncertain analyses wait for a human.
// The pieces: triage_definition() is the workflow graph, register_triage()
// puts its three agents and the definition into a runtime, triage_config()
// builds a runtime config whose scripted model answers for those agents (with
// faults switched on), run_triage() drives a batch of tickets through it and
// tallies what happened from the journal, and run_triage_demo() prints that
// for a person. start_tickets(), settle_tickets() and tally_tickets() are
// run_triage()'s three stages, for drivers that split a run across
// processes (triage_crash.hpp). Called by the `troupe` CLI and by tests;
// blocking, from a plain thread (never from an actor).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include "troupe/definition.hpp"
#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"

namespace troupe::examples {

/// Knobs of a triage run; every field has a usable default.
struct triage_options {
  /// Tickets (= workflows) to run.
  size_t workflows = 300;
  /// Seeds the scripted model's fault draws and the workflows' jitter.
  uint64_t seed = 42;
  /// Share of model calls answered with an error (llm_unavailable).
  double fail_rate = 0.05;
  /// Share of model calls never answered (the step timeout fires).
  double timeout_rate = 0.02;
  /// Share of model calls answered with text that is not JSON.
  double malformed_rate = 0.05;
  /// Scheduler worker threads of the runtime.
  size_t threads = 2;
  /// How long the driver waits for one workflow to settle before giving up.
  std::chrono::milliseconds await_timeout{30000};
  /// Each step's timeout (the scripted model answers at once; a real model
  /// needs seconds).
  std::chrono::milliseconds step_timeout{200};
  /// Real model providers; with one, the agents ask it instead of the
  /// scripted model (whose fault rates then do not apply).
  gateway_config gateway;
};

/// Analyses below this confidence are routed to the review gate.
constexpr double triage_confidence_threshold = 0.3;

/// The triage workflow graph:
///
///   extract  --ok--> analyze          extract --exhausted--> review
///   review   --approve|edit--> analyze        review --reject--> rejected
///   analyze  --ok--> report   analyze --low_confidence--> review
///   analyze  --exhausted--> failed
///   report   --ok--> done     report  --exhausted--> failed
///
/// `done` is the completed terminal; `rejected` and `failed` are failed ones.
caf::expected<definition> triage_definition(
  std::chrono::milliseconds step_timeout = std::chrono::milliseconds{200});

/// A runtime config whose scripted model answers the three triage agents,
/// with the fault rates, seed and thread count of `opt`.
config triage_config(const triage_options& opt);

/// Registers the agents "extractor", "analyzer", "reporter" and the
/// "triage" definition; the first registration error, if any.
caf::error register_triage(runtime& rt,
                           std::chrono::milliseconds step_timeout = std::chrono::milliseconds{200});

/// The ticket text of ticket number `i` (deterministic).
std::string triage_ticket(size_t i);

/// What a triage run did, counted from each workflow's final status and
/// journaled history.
struct triage_summary {
  size_t started = 0;
  size_t completed = 0;
  size_t failed = 0;
  size_t unsettled = 0;    ///< neither completed nor failed when the driver gave up
  size_t retried = 0;      ///< workflows with at least one attempt > 1
  size_t timeouts = 0;     ///< attempts that timed out
  size_t crashes = 0;      ///< attempts that crashed (model errors included)
  size_t bad_outputs = 0;  ///< attempts that returned unusable output
  size_t circuit_open = 0; ///< attempts refused by an open breaker
  size_t interrupted = 0;  ///< attempts cut off by a runtime stop (not in `crashes`)
  size_t repeated_steps = 0; ///< (node, visit)s that ran again once completed: must be 0
  size_t parked = 0;       ///< times a workflow was found parked at the review gate
  size_t approved = 0;     ///< approvals delivered to the review gate
  size_t signals = 0;      ///< signal_received records in the journals
  uint64_t steps = 0;      ///< agent attempts, all workflows
  uint64_t tokens = 0;     ///< model tokens, all workflows
  double cost_usd = 0;     ///< their cost by the provider's price table
  std::chrono::nanoseconds wall{0};
  /// Failed workflows by how they ended ("failed: exhausted", ...).
  std::vector<std::pair<std::string, size_t>> failures;
  /// Problems of the driver itself (start, await, signal, history errors).
  std::vector<std::string> errors;
  /// One workflow's history, chosen to show an interrupted attempt, a
  /// timeout, a retry and a park, as far as any workflow had them.
  std::string sample_id;
  std::string sample_ticket;
  std::vector<journal_record> sample_history;

  /// Every workflow settled and the driver hit no error.
  bool ok() const { return unsettled == 0 && errors.empty() && started > 0; }
};

/// Runs `opt.workflows` tickets through a fresh runtime: starts them all,
/// approves every workflow that parks at the review gate, waits for all of
/// them to finish and counts. An error only when the runtime could not be
/// set up; per-workflow trouble lands in the summary.
caf::expected<triage_summary> run_triage(const triage_options& opt);

/// One started ticket: its workflow and its number (see triage_ticket()).
struct started_ticket {
  std::string id;
  size_t ticket = 0;
};

/// Starts tickets 0 .. n-1 with idempotency keys "ticket-<i>" (a ticket
/// already in the runtime's journal is not started again); start errors go
/// to `s.errors`, and `s.started` is set.
std::vector<started_ticket> start_tickets(runtime& rt, size_t n, triage_summary& s);

/// What settle_tickets() reports as it goes.
enum class settle_event { finished, parked, approved };

/// Waits for each ticket in turn, approving every park, until all finished
/// or 25 rounds passed; counts parks and approvals into `s`. Calls
/// `progress` (if set) on the calling thread for each event.
void settle_tickets(runtime& rt, const std::vector<started_ticket>& tickets,
                    std::chrono::milliseconds await_timeout, triage_summary& s,
                    const std::function<void(settle_event)>& progress = {});

/// Counts final statuses and journaled histories into `s`; picks the sample.
void tally_tickets(runtime& rt, const std::vector<started_ticket>& tickets, triage_summary& s);

/// Whether `history` ends with an agent attempt in flight (scheduled, and
/// neither completed, failed nor timed out).
bool ends_mid_attempt(const std::vector<journal_record>& history);

/// Prints `s` for people: the tallies, then the sample's timeline.
void print_triage_summary(const triage_options& opt, const triage_summary& s, std::ostream& out);

/// Prints one summary line: "  <label padded> <value right-aligned>   <note>".
void summary_row(std::ostream& out, const char* label, const std::string& value,
                 const std::string& note = {});
void summary_row(std::ostream& out, const char* label, uint64_t value,
                 const std::string& note = {});

/// Prints one history as a timeline: ms since its first record, event,
/// node, attempt, and the outcome or failure. With `cut_after` > 0, a line
/// saying `cut` follows the record with that wf_seq.
void print_timeline(const std::vector<journal_record>& history, std::ostream& out,
                    uint64_t cut_after = 0, const std::string& cut = {});

/// run_triage() then print_triage_summary(); 0 when every workflow settled.
int run_triage_demo(const triage_options& opt, std::ostream& out);

} // namespace troupe::examples
