// apply() against the transition table at the top of workflow_machine.cpp:
// one row per (state, event) -> (phase, commands, state fields), the state
// being built by applying a history to the "triage" test definition, and one
// row per refusal. Pure; no actor system.
#include <functional>

#include "kernel/kernel_support.hpp"

using namespace troupe;
using namespace troupe::kernel;
using namespace troupe::kernel::test;

namespace {

std::vector<event> operator+(std::vector<event> h, std::vector<event> more) {
  h.insert(h.end(), more.begin(), more.end());
  return h;
}

/// Where the retry timer of `node` fires after `attempt` failed at `at` ms.
std::string retry_at(const definition& d, const std::string& node, uint32_t attempt, int64_t at) {
  return render_time(ms(at) + backoff_delay(d.find(node)->policy.retry, 7, node, attempt));
}

definition only_terminal(bool ok, budgets limits = {}) {
  definition_builder b{"tiny"};
  if (ok)
    b.completed("done");
  else
    b.failed("nope");
  return built(b.limits(limits).build());
}

// An agent that retries and has a budget route: "a" (2 attempts, timeout
// 1000) ok -> done, budget -> hold; gate hold; 500 ms deadline (timer 1).
definition retrying_with_budget() {
  agent_policy p;
  p.timeout = std::chrono::milliseconds{1000};
  p.retry.max_attempts = 2;
  p.fallback = "done";
  return built(definition_builder{"rb"}
               .agent("a", "worker", p)
               .on("ok", "done")
               .on("budget", "hold")
               .gate("hold")
               .on("approve", "done")
               .on("reject", "done")
               .completed("done")
               .limits(with_deadline(500))
               .build());
}

// An agent whose failures have no route: "a" (2 attempts, timeout 1000,
// every kind retryable) ok -> done; no exhausted route, no fallback. Its
// failures dead-letter the workflow.
definition unrouted(budgets limits = {}) {
  agent_policy p;
  p.timeout = std::chrono::milliseconds{1000};
  p.retry.max_attempts = 2;
  p.retry.base_backoff = std::chrono::milliseconds{100};
  p.retry.max_backoff = std::chrono::milliseconds{100};
  return built(definition_builder{"unrouted"}
               .agent("a", "worker", p)
               .on("ok", "done")
               .completed("done")
               .limits(limits)
               .build());
}

// A gate with a deadline and reminders: "a" ok -> g; g (deadline 1000 ms,
// a reminder every 300 ms, at most `reminders`) approve -> done, reject ->
// rejected, timeout -> boss (when `escalate`; else a's exhausted route
// reaches boss); boss is a plain gate.
definition gated(uint32_t reminders = 3, bool escalate = true) {
  gate_policy g;
  g.notify_url = "http://127.0.0.1:1/hook";
  g.deadline = std::chrono::milliseconds{1000};
  g.remind_after = std::chrono::milliseconds{300};
  g.reminders = reminders;
  definition_builder b{"gated"};
  b.agent("a", "worker").on("ok", "g").on("exhausted", escalate ? "rejected" : "boss")
      .gate("g", g).on("approve", "done").on("reject", "rejected");
  if (escalate)
    b.on("timeout", "boss");
  return built(b.gate("boss").on("approve", "done").on("reject", "rejected")
                 .completed("done")
                 .failed("rejected")
                 .build());
}

// A soft budget: "a" ok -> "b" ok -> done; max_tokens 100, soft share 0.8
// at gate "over" (approve -> done, never taken while resuming; reject ->
// stopped).
definition soft() {
  budgets b;
  b.max_tokens = 100;
  b.soft_share = 0.8;
  b.soft_gate = "over";
  agent_policy p;
  p.timeout = std::chrono::milliseconds{1000};
  return built(definition_builder{"soft"}
                 .agent("a", "worker", p).on("ok", "b")
                 .agent("b", "worker", p).on("ok", "done")
                 .gate("over").on("approve", "done").on("reject", "stopped")
                 .completed("done")
                 .failed("stopped")
                 .limits(b)
                 .build());
}

// A saga: reserve (undone by "release") -> charge (undone by "refund", 2
// attempts) -> gate review (approve -> ship, reject -> declined); ship (no
// undo; exhausted -> declined) -> done.
definition saga(budgets limits = {}) {
  agent_policy reserve;
  reserve.timeout = std::chrono::milliseconds{1000};
  reserve.compensate = "release";
  agent_policy charge = reserve;
  charge.compensate = "refund";
  charge.retry.max_attempts = 2;
  charge.retry.base_backoff = std::chrono::milliseconds{100};
  charge.retry.max_backoff = std::chrono::milliseconds{100};
  agent_policy ship;
  ship.timeout = std::chrono::milliseconds{1000};
  return built(definition_builder{"saga"}
                 .agent("reserve", "reserver", reserve).on("ok", "charge")
                 .agent("charge", "charger", charge).on("ok", "review")
                 .gate("review").on("approve", "ship").on("reject", "declined")
                 .agent("ship", "shipper", ship).on("ok", "done").on("exhausted", "declined")
                 .completed("done")
                 .failed("declined")
                 .limits(limits)
                 .build());
}

using check_fn = std::function<void(const workflow_state&)>;

struct row {
  std::string name;
  definition def;
  std::vector<event> past; // applied to the initial state first
  event e;
  phase expected;
  std::vector<std::string> commands;
  check_fn check = {};
};

struct refusal {
  std::string name;
  definition def;
  std::vector<event> past; // applied to the initial state first
  event e;
  errc expected;
  std::string says; // substring of describe(err)
};

bool has(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

// -- histories (times in ms; "triage" definition, see kernel_support.hpp) ----

using history = std::vector<event>;

const json input = {{"doc", "a"}, {"keep", true}};
// scheduling extract#1
const history S = {started(1000, input)};
// running extract#1; timer 1 = its step timeout @2000
const history R = S + history{scheduled(1000, "extract", 1)};
// at gate review (extract said low_confidence)
const history G = R + history{completed(1200, "extract", 1, "low_confidence")};
// backoff after extract#1 crashed; timer 2 = retry
const history BK = R + history{failed(1100, "extract", 1, failure_kind::crashed, 5)};
// running extract#2; timer 3 = step timeout
const history R2 = BK + history{retry_fired(1300, 2), scheduled(1300, "extract", 2)};
// running extract#3; timer 5 = step timeout
const history R3 = R2 + history{failed(1400, "extract", 2, failure_kind::timeout),
                                retry_fired(1600, 4), scheduled(1600, "extract", 3)};
// running analyze#1; timer 1 cancelled, timer 2 = step timeout @3210
const history A = R + history{completed(1200, "extract", 1, "ok", {{"facts", 1}}, 50),
                              scheduled(1210, "analyze", 1)};
// at gate signoff
const history SG = A + history{completed(1400, "analyze", 1, "ok", {{"score", 2}}, 20)};
// "unrouted" (see above): running a#2 (timer 3 = its step timeout), then
// dead-lettered after it crashed too
const history U2 = {started(1000), scheduled(1000, "a", 1),
                    failed(1100, "a", 1, failure_kind::crashed), retry_fired(1300, 2),
                    scheduled(1300, "a", 2)};
const history UD = U2 + history{failed(1400, "a", 2, failure_kind::crashed)};
// "gated" (see above): at gate g since 1200; timer 2 = its deadline @2200,
// 3-5 = reminders @1500, @1800, @2100
const history GG = {started(1000), scheduled(1000, "a", 1), completed(1200, "a", 1, "ok")};
// "soft": a ran and spent 80 tokens, so b waits at the soft gate "over"
const history SA = {started(1000), scheduled(1000, "a", 1)};
const history SO = SA + history{completed(1200, "a", 1, "ok", json::object(), 80)};
// "saga": reserve and charge done (timers 1, 2 used), at gate review
const history SR = {started(1000), scheduled(1000, "reserve", 1),
                    completed(1100, "reserve", 1, "ok"), scheduled(1100, "charge", 1),
                    completed(1200, "charge", 1, "ok")};
// rejected at review: compensating charge (timer 3 its step timeout)
const history SC = SR + history{signal(1300, "review", "reject"), scheduled(1300, "charge", 1)};
// charge refunded; compensating reserve (timer 4)
const history SC2 = SC + history{completed(1400, "charge", 1, "refunded"),
                                 scheduled(1400, "reserve", 1)};
// the refund failed twice: dead-lettered while compensating charge
const history SCD = SC + history{failed(1400, "charge", 1, failure_kind::crashed),
                                 retry_fired(1500, 4), scheduled(1500, "charge", 2),
                                 failed(1600, "charge", 2, failure_kind::crashed)};
// dead-lettered at review: the 500 ms deadline passed at the gate (DL)
const history GD = G + history{deadline_fired(1500, 1)};

// With a 500 ms deadline (DL below) the deadline is timer 1 @1500 and every
// other timer id is one higher: in R the step timer is 2, in A 3, in BK the
// retry timer is 3. (R2 and R3 are only used without a deadline.)

std::vector<row> accepted_rows() {
  const auto D = triage();
  const auto DL = triage(with_deadline(500));
  return {
    // -- not_started + workflow_started ---------------------------------------
    {"start: input becomes the data, the start agent is scheduled", D, {},
     started(1000, input, 7), phase::scheduling, {"schedule_step(extract,1)"},
     [](const workflow_state& s) {
       CHECK(s.node == "extract");
       CHECK(s.attempt == 1);
       CHECK(s.data == input);
       CHECK(s.seed == 7);
       CHECK(s.started_at == ms(1000));
       CHECK(s.deadline == ms(0));
       CHECK(s.timers.empty());
       CHECK(s.visits == std::map<std::string, uint32_t>{{"extract", 1}});
       CHECK(s.steps == 0);
       CHECK(s.traceparent.empty());
     }},
    {"start with a caller's traceparent keeps it in the state", D, {},
     workflow_started{ms(1000), input, 7,
                      "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
     phase::scheduling, {"schedule_step(extract,1)"},
     [](const workflow_state& s) {
       CHECK(s.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
       CHECK(s.node == "extract");
     }},
    {"start with a deadline arms the deadline timer", DL, {}, started(1000, input),
     phase::scheduling, {"start_timer(1,workflow_deadline,1500ms)", "schedule_step(extract,1)"},
     [](const workflow_state& s) {
       CHECK(s.deadline == ms(1500));
       CHECK(s.timers == std::map<uint64_t, pending_timer>{
                             {1, {timer_kind::workflow_deadline, ms(1500)}}});
       CHECK(s.next_timer == 2);
     }},
    {"start at a gate awaits its signal", triage({}, "review"), {}, started(1000),
     phase::at_gate, {"await_signal(review)"},
     [](const workflow_state& s) {
       CHECK(s.node == "review");
       CHECK(s.visits == std::map<std::string, uint32_t>{{"review", 1}});
     }},
    {"start at a completed terminal completes", only_terminal(true), {}, started(1000),
     phase::completed, {"complete(done)"},
     [](const workflow_state& s) {
       CHECK(s.node == "done");
       CHECK(s.outcome == "start");
     }},
    {"start at a failed terminal fails", only_terminal(false), {}, started(1000), phase::failed,
     {"fail(nope,start)"},
     [](const workflow_state& s) { CHECK(has(s.reason, "reached failed node 'nope'")); }},
    {"start at a terminal with a deadline cancels it at once",
     only_terminal(true, with_deadline(1000)), {}, started(1000), phase::completed,
     {"start_timer(1,workflow_deadline,2000ms)", "cancel_timer(1)", "complete(done)"},
     [](const workflow_state& s) { CHECK(s.timers.empty()); }},
    // -- scheduling + step_scheduled ------------------------------------------
    {"step_scheduled runs the agent under a step timeout", D, S,
     scheduled(1010, "extract", 1), phase::running,
     {"start_timer(1,step_timeout,2010ms)", "run_agent(extract,extractor,1,1)"},
     [](const workflow_state& s) {
       CHECK(s.steps == 1);
       CHECK(s.timers == std::map<uint64_t, pending_timer>{
                             {1, {timer_kind::step_timeout, ms(2010)}}});
     }},
    // -- running + step_completed ---------------------------------------------
    {"routed label: patch merged, step timer cancelled, target entered", D, R,
     completed(1200, "extract", 1, "ok", {{"doc", nullptr}, {"facts", {1, 2}}}, 50),
     phase::scheduling, {"cancel_timer(1)", "schedule_step(analyze,1)"},
     [](const workflow_state& s) {
       CHECK(s.data == json{{"keep", true}, {"facts", {1, 2}}});
       CHECK(s.tokens == 50);
       CHECK(s.node == "analyze");
       CHECK(s.attempt == 1);
       CHECK(s.timers.empty());
       CHECK(s.visits == std::map<std::string, uint32_t>{{"extract", 1}, {"analyze", 1}});
     }},
    {"an agent's own label routes like 'ok'", D, R,
     completed(1200, "extract", 1, "low_confidence", {{"conf", 1}}), phase::at_gate,
     {"cancel_timer(1)", "await_signal(review)"},
     [](const workflow_state& s) {
       CHECK(s.node == "review");
       CHECK(s.data.at("conf") == 1);
       CHECK(s.reason.empty()); // a success route: nothing to explain
       CHECK(s.attempt == 0);
     }},
    {"unrouted label is a bad_output failure: retried, patch dropped", D, R,
     completed(1200, "extract", 1, "maybe", {{"x", 1}}, 9), phase::backoff,
     {"cancel_timer(1)", "start_timer(2,retry_backoff," + retry_at(D, "extract", 1, 1200) + ")"},
     [](const workflow_state& s) {
       CHECK(s.data == input);
       CHECK(s.tokens == 9);
       CHECK(s.attempt == 1);
       CHECK(has(s.reason, "bad_output"));
       CHECK(has(s.reason, "'maybe'"));
     }},
    {"a built-in failure label is not an agent outcome, even when routed", D, R,
     completed(1200, "extract", 1, "exhausted"), phase::backoff,
     {"cancel_timer(1)", "start_timer(2,retry_backoff," + retry_at(D, "extract", 1, 1200) + ")"}},
    {"non-object patch is a bad_output failure", D, R,
     completed(1200, "extract", 1, "ok", json::array({1, 2})), phase::backoff,
     {"cancel_timer(1)", "start_timer(2,retry_backoff," + retry_at(D, "extract", 1, 1200) + ")"},
     [](const workflow_state& s) {
       CHECK(s.data == input);
       CHECK(s.node == "extract");
       CHECK(has(s.reason, "not a JSON object"));
     }},
    {"unrouted label without retries left falls back", D, A,
     completed(1500, "analyze", 1, "maybe"), phase::failed,
     {"cancel_timer(2)", "fail(broken,exhausted)"}},
    // -- running + step_failed ------------------------------------------------
    {"failure with retries left backs off", D, R,
     failed(1100, "extract", 1, failure_kind::crashed, 5), phase::backoff,
     {"cancel_timer(1)", "start_timer(2,retry_backoff," + retry_at(D, "extract", 1, 1100) + ")"},
     [](const workflow_state& s) {
       CHECK(s.tokens == 5);
       CHECK(s.attempt == 1);
       REQUIRE(s.timers.size() == 1);
       CHECK(s.timers.at(2).kind == timer_kind::retry_backoff);
       CHECK(has(s.reason, "attempt 1: crashed: boom"));
     }},
    {"retries exhausted take the 'exhausted' route", D, R3,
     failed(1700, "extract", 3, failure_kind::crashed), phase::failed,
     {"cancel_timer(5)", "fail(broken,exhausted)"},
     [](const workflow_state& s) {
       CHECK(s.node == "broken");
       CHECK(s.outcome == "exhausted");
       CHECK(s.steps == 3);
       CHECK(s.timers.empty());
       CHECK(has(s.reason, "node 'extract' attempt 3: crashed: boom"));
     }},
    {"a non-retryable kind takes its own route at once", D, R,
     failed(1100, "extract", 1, failure_kind::circuit_open), phase::at_gate,
     {"cancel_timer(1)", "await_signal(review)"},
     [](const workflow_state& s) { // the gate says why it holds the workflow
       CHECK(has(s.reason, "node 'extract' attempt 1: circuit_open: boom"));
     }},
    {"no specific route: the fallback, labelled 'exhausted'", D, A,
     failed(1500, "analyze", 1, failure_kind::crashed), phase::failed,
     {"cancel_timer(2)", "fail(broken,exhausted)"}},
    {"a non-retryable kind without route: the fallback, labelled by kind", D, A,
     failed(1500, "analyze", 1, failure_kind::circuit_open), phase::failed,
     {"cancel_timer(2)", "fail(broken,circuit_open)"}},
    // -- backoff + timer_fired{retry_backoff} ---------------------------------
    {"the retry timer schedules the next attempt", D, BK, retry_fired(1300, 2), phase::scheduling,
     {"schedule_step(extract,2)"},
     [](const workflow_state& s) {
       CHECK(s.attempt == 2);
       CHECK(s.timers.empty());
     }},
    {"a retry keeps the visit number", D, BK + history{retry_fired(1300, 2)},
     scheduled(1300, "extract", 2), phase::running,
     {"start_timer(3,step_timeout,2300ms)", "run_agent(extract,extractor,2,1)"},
     [](const workflow_state& s) { CHECK(s.steps == 2); }},
    // -- running + step_failed{timeout}: the step timeout fired --------------
    {"step timeout abandons the attempt and retries", D, R, timed_out(2000, "extract", 1, 7),
     phase::backoff,
     {"cancel_step(extract,1)", "cancel_timer(1)",
      "start_timer(2,retry_backoff," + retry_at(D, "extract", 1, 2000) + ")"},
     [](const workflow_state& s) {
       CHECK(s.timers.size() == 1);
       CHECK(s.tokens == 7); // what the attempt spent before it ran out of time
       CHECK(has(s.reason, "timeout: no outcome within 1000 ms"));
     }},
    {"step timeout on the last attempt is exhausted", D, A, timed_out(3210, "analyze", 1),
     phase::failed, {"cancel_step(analyze,1)", "cancel_timer(2)", "fail(broken,exhausted)"}},
    // -- budgets --------------------------------------------------------------
    {"max_steps spent at a retry, no budget route: dead-lettered at the node", triage(with_steps(2)),
     R2 + history{failed(1400, "extract", 2, failure_kind::crashed)}, retry_fired(1600, 4),
     phase::dead_lettered, {"dead_letter(extract,budget)"},
     [](const workflow_state& s) {
       CHECK(s.node == "extract");
       CHECK(s.outcome == "budget");
       CHECK(s.steps == 2);
       CHECK(has(s.reason, "node 'extract': max_steps budget of 2 spent"));
     }},
    {"max_steps spent entering a node with a budget route: its gate", triage(with_steps(1)), R,
     completed(1200, "extract", 1, "ok"), phase::at_gate,
     {"cancel_timer(1)", "await_signal(signoff)"},
     [](const workflow_state& s) {
       CHECK(s.node == "signoff");
       CHECK(s.visits == std::map<std::string, uint32_t>{
                             {"extract", 1}, {"analyze", 1}, {"signoff", 1}});
     }},
    {"max_tokens spent by a completed attempt", triage(with_tokens(100)), R,
     completed(1200, "extract", 1, "ok", json::object(), 100), phase::at_gate,
     {"cancel_timer(1)", "await_signal(signoff)"}},
    {"max_tokens not yet spent", triage(with_tokens(100)), R,
     completed(1200, "extract", 1, "ok", json::object(), 99), phase::scheduling,
     {"cancel_timer(1)", "schedule_step(analyze,1)"}},
    {"max_tokens spent by a failed attempt stops its retry", triage(with_tokens(100)),
     R + history{failed(1100, "extract", 1, failure_kind::crashed, 150)},
     retry_fired(1300, 2), phase::dead_lettered, {"dead_letter(extract,budget)"},
     [](const workflow_state& s) { CHECK(has(s.reason, "max_tokens budget of 100 spent")); }},
    {"a call refused for the token budget ends the step as budget, not as a failure, even "
     "with retries left",
     triage(with_tokens(100)), R, failed(1100, "extract", 1, failure_kind::budget, 3,
                                         "over_budget: no room"),
     phase::dead_lettered, {"cancel_timer(1)", "dead_letter(extract,budget)"},
     [](const workflow_state& s) {
       CHECK(s.outcome == "budget");
       CHECK(s.tokens == 3);
       CHECK(has(s.reason, "node 'extract': budget: over_budget: no room"));
     }},
    {"max_cost_usd spent by a completed attempt", triage(with_cost(0.01)), R,
     completed_costing(1200, "extract", 1, 0.01), phase::at_gate,
     {"cancel_timer(1)", "await_signal(signoff)"},
     [](const workflow_state& s) {
       CHECK(s.cost_nusd == 10'000'000);
       CHECK(s.reason == "node 'analyze': max_cost_usd budget of $0.010000000 spent "
                         "($0.010000000 used)");
     }},
    {"max_cost_usd not yet spent", triage(with_cost(0.01)), R,
     completed_costing(1200, "extract", 1, 0.009999999), phase::scheduling,
     {"cancel_timer(1)", "schedule_step(analyze,1)"},
     [](const workflow_state& s) { CHECK(s.cost_nusd == 9'999'999); }},
    {"max_cost_usd spent by a failed attempt stops its retry", triage(with_cost(0.5)),
     R + history{failed_costing(1100, "extract", 1, failure_kind::crashed, 0.75)},
     retry_fired(1300, 2), phase::dead_lettered, {"dead_letter(extract,budget)"},
     [](const workflow_state& s) {
       CHECK(s.cost_nusd == 750'000'000);
       CHECK(has(s.reason, "max_cost_usd budget of $0.500000000 spent ($0.750000000 used)"));
     }},
    {"a call refused for the token budget takes the node's budget route", triage(with_tokens(100)),
     A, failed(1500, "analyze", 1, failure_kind::budget), phase::at_gate,
     {"cancel_timer(2)", "await_signal(signoff)"}},
    {"deadline while running: cancel_step, no budget route: dead-lettered", DL, R, deadline_fired(1500, 1),
     phase::dead_lettered, {"cancel_step(extract,1)", "cancel_timer(2)", "dead_letter(extract,budget)"},
     [](const workflow_state& s) {
       CHECK(s.node == "extract");
       CHECK(s.reason == "node 'extract': deadline passed");
       CHECK(s.timers.empty());
     }},
    {"deadline while running with a budget route", DL, A, deadline_fired(1500, 1), phase::at_gate,
     {"cancel_step(analyze,1)", "cancel_timer(3)", "await_signal(signoff)"},
     [](const workflow_state& s) { CHECK(s.timers.empty()); }},
    {"deadline while scheduling: nothing in flight to cancel", DL, S, deadline_fired(1500, 1),
     phase::dead_lettered, {"dead_letter(extract,budget)"}},
    {"deadline while scheduling with a budget route: its gate", DL,
     R + history{completed(1200, "extract", 1, "ok")}, deadline_fired(1500, 1),
     phase::at_gate, {"await_signal(signoff)"},
     [](const workflow_state& s) {
       CHECK(s.node == "signoff");
       CHECK(s.attempt == 0);
       CHECK(s.timers.empty());
     }},
    {"deadline while in backoff cancels the retry", DL, BK, deadline_fired(1500, 1), phase::dead_lettered,
     {"cancel_timer(3)", "dead_letter(extract,budget)"}},
    {"deadline in backoff with a budget route cancels the retry", retrying_with_budget(),
     {started(1000), scheduled(1000, "a", 1), failed(1100, "a", 1, failure_kind::crashed)},
     deadline_fired(1500, 1), phase::at_gate, {"cancel_timer(3)", "await_signal(hold)"},
     [](const workflow_state& s) {
       CHECK(s.timers.empty());
       CHECK(s.attempt == 0);
     }},
    {"deadline at a gate without budget route: dead-lettered at the gate", DL, G, deadline_fired(1500, 1), phase::dead_lettered,
     {"dead_letter(review,budget)"}, [](const workflow_state& s) { CHECK(s.node == "review"); }},
    {"deadline at a gate with a budget route: its terminal", DL, SG, deadline_fired(1500, 1),
     phase::failed, {"fail(expired,budget)"},
     [](const workflow_state& s) {
       CHECK(s.node == "expired");
       CHECK(s.reason == "node 'signoff': deadline passed");
     }},
    {"deadline already passed when the next step is due: its timer is spent too", DL, R,
     completed(1600, "extract", 1, "ok"), phase::at_gate,
     {"cancel_timer(2)", "cancel_timer(1)", "await_signal(signoff)"},
     [](const workflow_state& s) { CHECK(s.timers.empty()); }},
    // -- at_gate + signal_received --------------------------------------------
    {"approve enters its route", D, G, signal(2000, "review", "approve"), phase::scheduling,
     {"schedule_step(analyze,1)"},
     [](const workflow_state& s) { CHECK(s.visits.at("analyze") == 1); }},
    {"reject enters a failed terminal", D, G, signal(2000, "review", "reject"), phase::failed,
     {"fail(rejected,reject)"},
     [](const workflow_state& s) {
       CHECK(s.outcome == "reject");
       CHECK(s.reason == "gate 'review': reject by 'ann'");
     }},
    {"edit without its own route merges and takes approve's", D, G,
     signal(2000, "review", "edit", {{"doc", "b"}}), phase::scheduling,
     {"schedule_step(analyze,1)"},
     [](const workflow_state& s) {
       CHECK(s.data == json{{"doc", "b"}, {"keep", true}});
       CHECK(s.node == "analyze");
     }},
    {"edit with its own route", D, SG, signal(2000, "signoff", "edit", {{"note", "x"}}),
     phase::scheduling, {"schedule_step(extract,1)"},
     [](const workflow_state& s) {
       CHECK(s.data.at("note") == "x");
       CHECK(s.visits.at("extract") == 2);
     }},
    {"a re-entered node runs with the next visit number", D,
     SG + history{signal(2000, "signoff", "edit", json::object())},
     scheduled(2010, "extract", 1), phase::running,
     {"start_timer(3,step_timeout,3010ms)", "run_agent(extract,extractor,1,2)"}},
    {"approve to a completed terminal completes", D, SG, signal(2000, "signoff", "approve"),
     phase::completed, {"complete(done)"},
     [](const workflow_state& s) {
       CHECK(s.node == "done");
       CHECK(s.outcome == "approve");
       CHECK(s.reason.empty());
       CHECK(s.attempt == 0);
       CHECK(s.data == json{{"doc", "a"}, {"keep", true}, {"facts", 1}, {"score", 2}});
       CHECK(s.tokens == 70);
     }},
    {"a completed terminal cancels every timer", DL, SG,
     signal(1450, "signoff", "approve"), phase::completed, {"cancel_timer(1)", "complete(done)"},
     [](const workflow_state& s) { CHECK(s.timers.empty()); }},
    {"a failed terminal cancels every timer", DL, G, signal(1300, "review", "reject"),
     phase::failed, {"cancel_timer(1)", "fail(rejected,reject)"},
     [](const workflow_state& s) { CHECK(s.timers.empty()); }},
    // -- gate deadlines and reminders -------------------------------------------
    {"a gate with a deadline arms it and each reminder due before it", gated(), 
     {started(1000), scheduled(1000, "a", 1)}, completed(1200, "a", 1, "ok"), phase::at_gate,
     {"cancel_timer(1)", "start_timer(2,gate_deadline,2200ms)",
      "start_timer(3,gate_reminder,1500ms)", "start_timer(4,gate_reminder,1800ms)",
      "start_timer(5,gate_reminder,2100ms)", "await_signal(g)"}},
    {"reminders stop at the deadline, whatever their count", gated(10),
     {started(1000), scheduled(1000, "a", 1)}, completed(1200, "a", 1, "ok"), phase::at_gate,
     {"cancel_timer(1)", "start_timer(2,gate_deadline,2200ms)",
      "start_timer(3,gate_reminder,1500ms)", "start_timer(4,gate_reminder,1800ms)",
      "start_timer(5,gate_reminder,2100ms)", "await_signal(g)"}},
    {"a reminder fires: remind, still at the gate", gated(), GG,
     fired(ms(1500), 3, timer_kind::gate_reminder), phase::at_gate, {"remind(g,1)"},
     [](const workflow_state& s) { CHECK(s.timers.size() == 3); }},
    {"the last reminder is numbered so", gated(),
     GG + history{fired(ms(1500), 3, timer_kind::gate_reminder),
                  fired(ms(1800), 4, timer_kind::gate_reminder)},
     fired(ms(2100), 5, timer_kind::gate_reminder), phase::at_gate, {"remind(g,3)"}},
    {"a decision cancels the gate's deadline and reminders", gated(), GG,
     signal(1300, "g", "approve"), phase::completed,
     {"cancel_timer(2)", "cancel_timer(3)", "cancel_timer(4)", "cancel_timer(5)",
      "complete(done)"}},
    {"no decision by the deadline escalates by the timeout route", gated(), GG,
     fired(ms(2200), 2, timer_kind::gate_deadline), phase::at_gate,
     {"cancel_timer(3)", "cancel_timer(4)", "cancel_timer(5)", "await_signal(boss)"},
     [](const workflow_state& s) {
       CHECK(s.node == "boss");
       CHECK(s.reason == "gate 'g': no decision within 1000 ms");
       CHECK(s.timers.empty());
     }},
    {"no decision by the deadline and no timeout route: the reject route", gated(3, false), GG,
     fired(ms(2200), 2, timer_kind::gate_deadline), phase::failed,
     {"cancel_timer(3)", "cancel_timer(4)", "cancel_timer(5)", "fail(rejected,timeout)"},
     [](const workflow_state& s) {
       CHECK(s.outcome == "timeout");
       CHECK(s.reason == "gate 'g': no decision within 1000 ms");
     }},
    // -- soft budget --------------------------------------------------------------
    {"the soft share reached parks at the soft gate before the next attempt", soft(), SA,
     completed(1200, "a", 1, "ok", json::object(), 80), phase::at_gate,
     {"cancel_timer(1)", "await_signal(over)"},
     [](const workflow_state& s) {
       CHECK(s.node == "over");
       CHECK(s.resume_node == "b");
       CHECK(s.resume_attempt == 1);
       CHECK(s.soft_passed);
       CHECK(s.reason == "node 'b': soft budget: 80 tokens used, 80% of 100 reached");
       CHECK(s.visits.at("b") == 1);
     }},
    {"below the soft share the workflow goes on", soft(), SA,
     completed(1200, "a", 1, "ok", json::object(), 79), phase::scheduling,
     {"cancel_timer(1)", "schedule_step(b,1)"}},
    {"approve at the soft gate resumes the waiting attempt, not the gate's route", soft(), SO,
     signal(1300, "over", "approve"), phase::scheduling, {"schedule_step(b,1)"},
     [](const workflow_state& s) {
       CHECK(s.node == "b");
       CHECK(s.resume_node.empty());
       CHECK(s.visits.at("b") == 1); // the same visit
       CHECK(s.reason == "gate 'over': approve by 'ann': over the soft budget");
     }},
    {"edit at the soft gate merges and resumes", soft(), SO,
     signal(1300, "over", "edit", {{"cap", 5}}), phase::scheduling, {"schedule_step(b,1)"},
     [](const workflow_state& s) { CHECK(s.data.at("cap") == 5); }},
    {"the soft gate parks once: later attempts go on until the hard budget", soft(),
     SO + history{signal(1300, "over", "approve"), scheduled(1300, "b", 1)},
     completed(1400, "b", 1, "ok", json::object(), 10), phase::completed,
     {"cancel_timer(2)", "complete(done)"}},
    {"reject at the soft gate takes its reject route", soft(), SO,
     signal(1300, "over", "reject"), phase::failed, {"fail(stopped,reject)"},
     [](const workflow_state& s) { CHECK(s.resume_node.empty()); }},
    {"the hard budget wins over the soft one", soft(), SA,
     completed(1200, "a", 1, "ok", json::object(), 100), phase::dead_lettered,
     {"cancel_timer(1)", "dead_letter(b,budget)"}},
    // -- compensation -------------------------------------------------------------
    {"a completed step with a compensating agent is remembered", saga(),
     {started(1000), scheduled(1000, "reserve", 1)}, completed(1100, "reserve", 1, "ok"),
     phase::scheduling, {"cancel_timer(1)", "schedule_step(charge,1)"},
     [](const workflow_state& s) {
       CHECK(s.undo == std::vector<std::pair<std::string, uint32_t>>{{"reserve", 1}});
     }},
    {"failing after compensable steps compensates, newest first", saga(), SR,
     signal(1300, "review", "reject"), phase::scheduling, {"schedule_step(charge,1)"},
     [](const workflow_state& s) {
       CHECK(s.compensating);
       CHECK(s.node == "charge");
       CHECK(s.undo_terminal == "declined");
       CHECK(s.reason == "compensating after 'reject': gate 'review': reject by 'ann'");
     }},
    {"a compensation runs the compensating agent, keyed to the visit it undoes", saga(),
     SR + history{signal(1300, "review", "reject")}, scheduled(1300, "charge", 1),
     phase::running,
     {"start_timer(3,step_timeout,2300ms)", "run_agent(charge,refund,1,1,undo)"}},
    {"a compensation done, any label: the next, older one", saga(), SC,
     completed(1400, "charge", 1, "refunded", {{"refund", "r-1"}}), phase::scheduling,
     {"cancel_timer(3)", "schedule_step(reserve,1)"},
     [](const workflow_state& s) {
       CHECK(s.data.at("refund") == "r-1");
       CHECK(s.undo.size() == 1);
     }},
    {"the last compensation done: failed at the terminal, outcome compensated", saga(), SC2,
     completed(1500, "reserve", 1, "ok"), phase::failed,
     {"cancel_timer(4)", "fail(declined,compensated)"},
     [](const workflow_state& s) {
       CHECK(s.node == "declined");
       CHECK(s.outcome == "compensated");
       CHECK(s.reason == "compensated after 'reject': gate 'review': reject by 'ann'");
       CHECK(s.undo.empty());
       CHECK_FALSE(s.compensating);
     }},
    {"a failed compensation retries by its node's policy", saga(), SC,
     failed(1400, "charge", 1, failure_kind::crashed), phase::backoff,
     {"cancel_timer(3)", "start_timer(4,retry_backoff," + retry_at(saga(), "charge", 1, 1400)
                           + ")"}},
    {"a compensation that fails for good dead-letters the workflow",
     saga(), SC + history{failed(1400, "charge", 1, failure_kind::crashed),
                          retry_fired(1500, 4), scheduled(1500, "charge", 2)},
     failed(1600, "charge", 2, failure_kind::crashed), phase::dead_lettered,
     {"cancel_timer(5)", "dead_letter(charge,exhausted)"},
     [](const workflow_state& s) {
       CHECK(s.compensating);
       CHECK(s.reason == "compensating node 'charge' (agent 'refund') failed: node 'charge' "
                         "attempt 2: crashed: boom");
     }},
    {"a retried dead letter re-runs the compensation", saga(), SCD, dlq_retry(5000),
     phase::scheduling, {"schedule_step(charge,1)"},
     [](const workflow_state& s) { CHECK(s.compensating); }},
    {"a dropped dead letter ends without the compensations left", saga(), SCD,
     dlq_drop(5000), phase::failed, {"fail(,dropped)"},
     [](const workflow_state& s) { CHECK(s.undo.size() == 2); }},
    {"a cancel at a gate compensates", saga(), SR, cancel(1300), phase::scheduling,
     {"schedule_step(charge,1)"},
     [](const workflow_state& s) {
       CHECK(s.undo_terminal.empty());
       CHECK(s.reason == "compensating after 'cancelled': cancelled by 'ops': customer asked");
     }},
    {"a cancel mid-attempt abandons the attempt, then compensates", saga(),
     {started(1000), scheduled(1000, "reserve", 1), completed(1100, "reserve", 1, "ok"),
      scheduled(1100, "charge", 1)},
     cancel(1150), phase::scheduling,
     {"cancel_step(charge,1)", "cancel_timer(2)", "schedule_step(reserve,1)"}},
    {"a cancel with nothing to undo fails at once, outcome cancelled", D, R, cancel(1100),
     phase::failed, {"cancel_step(extract,1)", "cancel_timer(1)", "fail(,cancelled)"},
     [](const workflow_state& s) { CHECK(s.reason == "cancelled by 'ops': customer asked"); }},
    {"a cancel of a dead letter ends it", unrouted(), UD, cancel(5000), phase::failed,
     {"fail(,cancelled)"}},
    {"an actor crashing past the restart intensity dead-letters a running workflow", D, R,
     workflow_crashed{ms(1100), "its actor crashed 4 times"}, phase::dead_lettered,
     {"cancel_step(extract,1)", "cancel_timer(1)", "dead_letter(extract,crashed)"},
     [](const workflow_state& s) { CHECK(s.reason == "its actor crashed 4 times"); }},
    {"compensations run with the step budget spent", saga(with_steps(2)), SR,
     signal(1300, "review", "reject"), phase::scheduling, {"schedule_step(charge,1)"}},
    // -- dead letter ------------------------------------------------------------
    {"retries exhausted with no route: dead-lettered at the node", unrouted(), U2,
     failed(1400, "a", 2, failure_kind::crashed), phase::dead_lettered,
     {"cancel_timer(3)", "dead_letter(a,exhausted)"},
     [](const workflow_state& s) {
       CHECK(s.node == "a");
       CHECK(s.outcome == "exhausted");
       CHECK(s.attempt == 0);
       CHECK(s.timers.empty());
       CHECK(s.reason == "node 'a' attempt 2: crashed: boom");
     }},
    {"a dead-letter retry re-enters the node in the same visit, attempts afresh", unrouted(), UD,
     dlq_retry(5000), phase::scheduling, {"schedule_step(a,1)"},
     [](const workflow_state& s) {
       CHECK(s.attempt == 1);
       CHECK(s.visits.at("a") == 1); // same idempotency key: journaled effects stay done
       CHECK(s.outcome.empty());
       CHECK(s.reason == "retried from dead letter by 'ops'");
     }},
    {"the retried attempt runs as visit 1", unrouted(), UD + history{dlq_retry(5000)},
     scheduled(5000, "a", 1), phase::running,
     {"start_timer(4,step_timeout,6000ms)", "run_agent(a,worker,1,1)"}},
    {"a retried node that fails again is dead-lettered again", unrouted(),
     UD + history{dlq_retry(5000), scheduled(5000, "a", 1),
                  failed(5100, "a", 1, failure_kind::timeout), retry_fired(5200, 5),
                  scheduled(5200, "a", 2)},
     failed(5300, "a", 2, failure_kind::bad_output), phase::dead_lettered,
     {"cancel_timer(6)", "dead_letter(a,exhausted)"}},
    {"a retry with no more budget is dead-lettered again at once", triage(with_steps(2)),
     R2 + history{failed(1400, "extract", 2, failure_kind::crashed), retry_fired(1600, 4)},
     dlq_retry(5000), phase::dead_lettered, {"dead_letter(extract,budget)"},
     [](const workflow_state& s) { CHECK(has(s.reason, "max_steps budget of 2 spent")); }},
    {"a retry granting steps runs", triage(with_steps(2)),
     R2 + history{failed(1400, "extract", 2, failure_kind::crashed), retry_fired(1600, 4)},
     dlq_retry(5000, budget_grant{1, 0, 0, {}}), phase::scheduling, {"schedule_step(extract,1)"},
     [](const workflow_state& s) { CHECK(s.granted.steps == 1); }},
    {"granted steps count once spent", triage(with_steps(2)),
     R2 + history{failed(1400, "extract", 2, failure_kind::crashed), retry_fired(1600, 4),
                  dlq_retry(5000, budget_grant{1, 0, 0, {}}), scheduled(5000, "extract", 1),
                  failed(5100, "extract", 1, failure_kind::crashed)},
     retry_fired(5500, 6), phase::dead_lettered, {"dead_letter(extract,budget)"},
     [](const workflow_state& s) { CHECK(has(s.reason, "max_steps budget of 3 spent")); }},
    {"grants add up saturating, never wrapping to a small budget", triage(with_steps(2)),
     R2 + history{failed(1400, "extract", 2, failure_kind::crashed), retry_fired(1600, 4),
                  dlq_retry(5000, budget_grant{UINT64_MAX, 0, 0, {}}),
                  scheduled(5000, "extract", 1),
                  failed(5100, "extract", 1, failure_kind::crashed), retry_fired(5500, 6),
                  scheduled(5500, "extract", 2),
                  failed(5600, "extract", 2, failure_kind::crashed), retry_fired(5900, 8),
                  scheduled(5900, "extract", 3)},
     failed(6000, "extract", 3, failure_kind::crashed), phase::failed,
     {"cancel_timer(9)", "fail(broken,exhausted)"},
     [](const workflow_state& s) {
       CHECK(limits_of(triage(with_steps(2)), s).steps == UINT64_MAX);
     }},
    {"a retry granting cost and tokens lifts those budgets", triage(with_cost(0.5)),
     R + history{failed_costing(1100, "extract", 1, failure_kind::crashed, 0.75),
                 retry_fired(1300, 2)},
     dlq_retry(5000, budget_grant{0, 0, to_nano_usd(0.5), {}}), phase::scheduling,
     {"schedule_step(extract,1)"}},
    {"a retry granting time re-arms the deadline and waits at the gate again", DL, GD,
     dlq_retry(5000, budget_grant{0, 0, 0, std::chrono::seconds{10}}), phase::at_gate,
     {"start_timer(3,workflow_deadline,11500ms)", "await_signal(review)"},
     [](const workflow_state& s) {
       CHECK(s.deadline == ms(11500));
       CHECK(s.visits.at("review") == 1);
     }},
    {"a retry whose deadline is still past stops again at the next step", DL, GD,
     dlq_retry(5000), phase::at_gate, {"await_signal(review)"},
     [](const workflow_state& s) { CHECK(s.timers.empty()); }},
    {"a drop fails the workflow, outcome dropped", unrouted(), UD, dlq_drop(5000, "obsolete"),
     phase::failed, {"fail(,dropped)"},
     [](const workflow_state& s) {
       CHECK(s.outcome == "dropped");
       CHECK(s.reason == "dropped from dead letter by 'ops': obsolete (was: node 'a' attempt 2: "
                         "crashed: boom)");
     }},
  };
}

} // namespace

TEST_CASE("apply() follows the transition table", "[machine]") {
  for (auto& r : accepted_rows()) {
    DYNAMIC_SECTION(r.name) {
      auto before = run(r.def, r.past).state;
      auto copy = before;
      auto t = apply(r.def, before, r.e);
      if (!t)
        FAIL("refused: " << describe(t.error()));
      CHECK(to_string(t->state.at) == std::string{to_string(r.expected)});
      CHECK(render(t->commands) == r.commands);
      CHECK(t->state.events == r.past.size() + 1);
      CHECK(before == copy);
      if (r.check)
        r.check(t->state);
      if (t->state.finished()) {
        CHECK(t->state.timers.empty());
        REQUIRE_FALSE(t->commands.empty());
        if (auto f = std::get_if<fail>(&t->commands.back()))
          CHECK(f->reason == t->state.reason);
      }
      auto again = apply(r.def, before, r.e); // pure: same input, same output
      REQUIRE(again);
      CHECK(again->state == t->state);
      CHECK(render(again->commands) == render(t->commands));
      auto in_place = before; // folded in place: the same state and commands
      auto commands = apply_in_place(r.def, in_place, r.e);
      REQUIRE(commands);
      CHECK(in_place == t->state);
      CHECK(render(*commands) == render(t->commands));
    }
  }
}

TEST_CASE("apply() refuses events that do not fit, leaving the state as it was",
          "[machine]") {
  const auto D = triage();
  const auto inv = errc::invalid_transition, done = errc::workflow_finished;
  const auto F = G + history{signal(2000, "review", "reject")}; // finished
  std::vector<refusal> table = {
    {"step_scheduled before start", D, {}, scheduled(1000, "extract", 1), inv,
     "step_scheduled refused in phase not_started"},
    {"a timer before start", D, {}, timeout_fired(1000, 1), inv, "timer 1 is not armed"},
    {"workflow_started twice", D, S, started(1100), inv, "already started"},
    {"non-object input: array", D, {}, started(1000, json::array({1})), inv,
     "input must be a JSON object"},
    {"non-object input: string", D, {}, started(1000, "x"), inv, "input must be a JSON object"},
    {"non-object input: null", D, {}, started(1000, nullptr), inv, "must be a JSON object"},
    {"step_completed while scheduling", D, S, completed(1100, "extract", 1, "ok"), inv,
     "no attempt is running"},
    {"step_failed while scheduling", D, S, failed(1100, "extract", 1, failure_kind::crashed),
     inv, "in phase scheduling at node 'extract'"},
    {"step_scheduled for the wrong node", D, S, scheduled(1000, "analyze", 1), inv,
     "names attempt 1 of 'analyze', expected attempt 1 of 'extract'"},
    {"step_scheduled for the wrong attempt", D, S, scheduled(1000, "extract", 2), inv,
     "expected attempt 1 of 'extract'"},
    {"step_scheduled twice", D, R, scheduled(1000, "extract", 1), inv,
     "no step is waiting to be scheduled"},
    {"step_scheduled overtaken by the deadline", triage(with_deadline(500)),
     R + history{completed(1200, "extract", 1, "ok"), deadline_fired(1500, 1)},
     scheduled(1500, "analyze", 1), inv, "in phase at_gate at node 'signoff'"},
    {"late completion of an earlier attempt", D, R2, completed(1400, "extract", 1, "ok"), inv,
     "names attempt 1 of 'extract', expected attempt 2"},
    {"step_failed for the wrong node", D, R, failed(1100, "analyze", 1, failure_kind::crashed),
     inv, "expected attempt 1 of 'extract'"},
    {"step_completed in backoff", D, BK, completed(1200, "extract", 1, "ok"), inv,
     "in phase backoff"},
    {"step_failed at a gate", D, G, failed(1300, "extract", 1, failure_kind::crashed), inv,
     "in phase at_gate"},
    {"a timer of another kind", D, R, deadline_fired(1500, 1), inv,
     "timer 1 is a step_timeout timer, not workflow_deadline"},
    {"an unknown timer", D, R, timeout_fired(1500, 99), inv, "timer 99 is not armed"},
    {"a step timeout journaled as timer_fired", D, R, timeout_fired(2000, 1), inv,
     "a step timeout is journaled as step_failed{timeout}"},
    {"a cancelled timer", D, A, timeout_fired(2000, 1), inv, "timer 1 is not armed"},
    {"a fired timer fires again", D, R2, retry_fired(1500, 2), inv, "timer 2 is not armed"},
    {"a signal while running", D, R, signal(1100, "review", "approve"), inv,
     "not waiting at a gate"},
    {"a signal for another gate", D, G, signal(1300, "signoff", "approve"), inv,
     "waits at gate 'review', not 'signoff'"},
    {"an unknown verdict", D, G, signal(1300, "review", "maybe"), inv,
     "unknown verdict 'maybe'"},
    {"'budget' is not a verdict", D, G, signal(1300, "review", "budget"), inv,
     "unknown verdict 'budget'"},
    {"an edit with a non-object patch", D, G, signal(1300, "review", "edit", json::array()),
     inv, "an edit needs a JSON object patch"},
    {"an edit without patch", D, G, signal(1300, "review", "edit"), inv,
     "an edit needs a JSON object patch"},
    {"workflow_started after finish", D, F, started(3000), done, "the workflow has finished"},
    {"step_scheduled after finish", D, F, scheduled(3000, "extract", 1), done, "has finished"},
    {"step_completed after finish", D, F, completed(3000, "extract", 1, "ok"), done,
     "has finished"},
    {"step_failed after finish", D, F, failed(3000, "extract", 1, failure_kind::crashed), done,
     "has finished"},
    {"timer_fired after finish", D, F, timeout_fired(3000, 1), done, "in phase failed"},
    {"signal after finish", D, F, signal(3000, "review", "approve"), done, "has finished"},
    {"signal after completion", D, SG + history{signal(2000, "signoff", "approve")},
     signal(3000, "signoff", "approve"), done, "in phase completed at node 'done'"},
    {"a dead-letter retry while running", D, R, dlq_retry(1100), inv,
     "the workflow is not dead-lettered"},
    {"a dead-letter drop at a gate", D, G, dlq_drop(1300), inv,
     "the workflow is not dead-lettered"},
    {"a dead-letter retry after finish", D, F, dlq_retry(3000), done, "has finished"},
    {"a signal while dead-lettered", triage(with_deadline(500)), GD, signal(2000, "review", "approve"), inv,
     "in phase dead_lettered at node 'review': the workflow is not waiting at a gate"},
    {"a step event while dead-lettered", unrouted(), UD,
     completed(2000, "a", 2, "ok"), inv, "no attempt is running"},
    {"a drop after a drop", unrouted(), UD + history{dlq_drop(5000)}, dlq_drop(5100), done,
     "has finished"},
    {"a cancel while compensating", saga(), SC, cancel(1350), inv,
     "the workflow is compensating already"},
    {"a cancel before start", D, {}, cancel(1000), inv, "has not started"},
    {"a crash of a dead letter", unrouted(), UD, workflow_crashed{ms(5000), "x"}, inv,
     "dead-lettered already"},
    {"a cancel after finish", D, F, cancel(3000), done, "has finished"},
    {"a gate deadline after the decision", gated(), GG + history{signal(1300, "g", "reject")},
     fired(ms(2200), 2, timer_kind::gate_deadline), done, "has finished"},
    {"a reminder that is a deadline", gated(), GG, fired(ms(2200), 3, timer_kind::gate_deadline),
     inv, "timer 3 is a gate_reminder timer, not gate_deadline"},
  };
  for (auto& r : table) {
    DYNAMIC_SECTION(r.name) {
      auto before = run(r.def, r.past).state;
      auto copy = before;
      auto t = apply(r.def, before, r.e);
      REQUIRE_FALSE(t);
      auto text = describe(t.error());
      INFO("describe: " << text);
      CHECK(is(t.error(), r.expected));
      CHECK(has(text, std::string{kind_of(r.e)} + " refused"));
      CHECK(has(text, r.says));
      CHECK(before == copy);
    }
  }
}

TEST_CASE("a workflow can start at another node, as a fork does", "[machine]") {
  const auto def = triage();
  workflow_started at_analyze{ms(1000), {{"facts", 3}}, 7};
  at_analyze.start_node = "analyze";
  at_analyze.model = "local/qwen";
  at_analyze.forked_from = "triage-1";
  at_analyze.forked_at = 4;
  auto t = apply(def, workflow_state{}, at_analyze);
  REQUIRE(t);
  CHECK(t->state.at == phase::scheduling);
  CHECK(t->state.node == "analyze");
  CHECK(t->state.model == "local/qwen");
  CHECK(t->state.data == json{{"facts", 3}});
  CHECK(render(t->commands) == std::vector<std::string>{"schedule_step(analyze,1)"});

  workflow_started at_gate{ms(1000), json::object(), 7};
  at_gate.start_node = "review";
  auto g = apply(def, workflow_state{}, at_gate);
  REQUIRE(g);
  CHECK(g->state.at == phase::at_gate);
  CHECK(render(g->commands) == std::vector<std::string>{"await_signal(review)"});

  for (auto [node, says] : {std::pair{"done", "start node 'done' is a terminal"},
                            std::pair{"nowhere", "start node 'nowhere' is not in definition"}}) {
    workflow_started bad{ms(1000), json::object(), 7};
    bad.start_node = node;
    auto r = apply(def, workflow_state{}, bad);
    REQUIRE_FALSE(r);
    CHECK(is(r.error(), errc::invalid_transition));
    CHECK(has(describe(r.error()), says));
  }
}
