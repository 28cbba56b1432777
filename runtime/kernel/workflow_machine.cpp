// The workflow state machine. Pure: apply() depends on its arguments only.
//
// Transition table (phase x event -> phase, commands). "enter(n)" is below.
//
//   not_started  workflow_started{input, seed,  start_timer(deadline)?, enter(start_node
//                traceparent, start_node,       or the definition's start); traceparent
//                model, forked_from/at}         and model kept, never read; start_node
//                                                must be an agent or gate node
//   scheduling   step_scheduled{node, attempt}  -> running: start_timer(step_timeout),
//                                                run_agent
//   running      step_completed{label, patch}   cancel_timer(step_timeout); label routed:
//                                                merge patch, enter(route[label]);
//                                                label not routed, or patch not an object:
//                                                as step_failed(bad_output)
//   running      step_failed{kind}              cancel_timer(step_timeout); kind timeout:
//                                                cancel_step; kind budget (a model call
//                                                refused by the token or cost budget):
//                                                budget;
//                                                else fail(kind)
//   (a step_timeout timer that fires is reported as step_failed{timeout} with the
//    tokens the attempt spent; timer_fired{step_timeout} is refused)
//   backoff      timer_fired{retry_backoff}     schedule(attempt + 1)
//   any live     timer_fired{workflow_deadline} cancel_step if running; budget
//   at_gate      signal_received{gate, verdict} edit merges its patch; enter(route[verdict]),
//                                                edit without a route takes approve's
//   at_gate (soft gate, resume_node set) signal approve/edit: edit merges; node =
//                                                resume_node, schedule(resume_attempt)
//   at_gate      timer_fired{gate_deadline}     enter(route["timeout"] or route["reject"]),
//                                                label "timeout"
//   at_gate      timer_fired{gate_reminder}     remind{gate, n}
//   dead_lettered dlq_retried{grant}            grant added to the budgets (and deadline);
//                                                deadline re-armed if still ahead; agent node:
//                                                schedule(1) in the same visit; gate: at_gate
//   dead_lettered dlq_dropped{by, reason}       -> failed: fail{outcome "dropped"}
//   any live but dead_lettered  workflow_crashed{reason}  cancel_step if running;
//                                                dead letter, outcome "crashed"
//   any live     workflow_cancelled{by, reason} cancel_step if running; -> failed:
//                                                fail{outcome "cancelled"} (refused while
//                                                compensating)
//   completed/failed  any event                 refused: workflow_finished
//   anything else                               refused: invalid_transition
//
//   enter(n):    completed terminal -> completed: cancel timers, complete
//                failed terminal    -> failed: cancel timers, fail
//                gate               -> at_gate: start_timer(gate_deadline)?,
//                                      start_timer(gate_reminder) for each reminder
//                                      due before the deadline, await_signal
//                (entering any node from a gate first cancels that gate's timers)
//                agent              -> schedule(1)
//   schedule(a): a budget is spent (max_steps, max_tokens, max_cost_usd, deadline)
//                -> budget;
//                the soft share of max_tokens or max_cost_usd is reached, the first
//                time -> resume_node/attempt = (node, a), enter(soft_gate) with label
//                "budget";
//                else -> scheduling: schedule_step{node, a}
//   fail(kind):  failure_route(node, kind, attempt): retry -> backoff: start_timer(
//                retry_backoff, now + backoff_delay); a route -> enter(target); none
//                -> dead letter
//   budget:      cancel step/retry timers (and the deadline timer once the deadline
//                is spent); the current node's "budget" route -> enter(it); else ->
//                dead letter
//   dead letter: -> dead_lettered at the current node: cancel timers,
//                dead_letter{node, label, reason}
//   failing (a failed terminal, a drop, a cancel) with `undo` not empty and not
//   compensating: cancel timers, compensating; then for each entry of undo, newest
//                first: node = it, schedule(1) (no budget check), run_agent{its
//                compensate agent, its visit, compensation}; any step_completed pops
//                it; a failure retries by the node's policy, else dead letter (a
//                retry re-runs it, a drop ends failed "dropped"); undo empty ->
//                failed: fail{undo_terminal, "compensated"}
//   (a completed step of a node with a compensating agent pushes (node, visit) on undo)
//
// Invariants:
//   1. A timer id is in state.timers exactly while it is armed; every start_timer
//      is matched by one timer_fired or one cancel_timer.
//   2. Only `running` has an attempt in flight; leaving it always cancels its
//      step_timeout timer (and cancel_step when it did not end by itself).
//   3. steps counts step_scheduled events; tokens and cost_nusd count every
//      attempt's tokens and cost.
//   4. A finished state has no timers and takes no events; a dead-lettered one
//      has no timers and takes only dlq_retried and dlq_dropped.
#include "kernel/workflow_machine.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "troupe/errors.hpp"

namespace troupe::kernel {

namespace {

uint64_t add_saturating(uint64_t a, uint64_t b) {
  return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

/// "$0.000123": nano-dollars shown to the nano.
std::string usd(uint64_t nano) {
  auto frac = std::to_string(nano % 1'000'000'000);
  return "$" + std::to_string(nano / 1'000'000'000) + "." + std::string(9 - frac.size(), '0') + frac;
}

// One transition in the making: `s` is changed in place (the caller's copy,
// or the caller's own state for apply_in_place), `out` collects the commands.
struct builder {
  const definition& def;
  workflow_state& s;
  std::vector<command> out;
  instant at;

  const node& current() const { return *def.find(s.node); }

  uint64_t arm(timer_kind kind, instant fire_at) {
    auto id = s.next_timer++;
    s.timers.emplace(id, pending_timer{kind, fire_at});
    out.emplace_back(start_timer{id, kind, fire_at});
    return id;
  }

  void disarm(timer_kind kind) {
    for (auto i = s.timers.begin(); i != s.timers.end();) {
      if (i->second.kind == kind) {
        out.emplace_back(cancel_timer{i->first});
        i = s.timers.erase(i);
      } else {
        ++i;
      }
    }
  }

  void disarm_all() {
    for (auto& t : s.timers)
      out.emplace_back(cancel_timer{t.first});
    s.timers.clear();
  }

  void finish(phase p, const std::string& terminal, const std::string& label,
              const std::string& reason) {
    if (p == phase::failed && !s.compensating && !s.undo.empty())
      return compensate(terminal, label, reason);
    disarm_all();
    s.at = p;
    s.outcome = label;
    if (!terminal.empty())
      s.node = terminal;
    s.attempt = 0;
    if (p == phase::completed) {
      s.reason.clear();
      out.emplace_back(complete{terminal});
    } else {
      s.reason = reason;
      out.emplace_back(fail{terminal, label, reason});
    }
  }

  // The workflow failed with completed steps to undo: run their
  // compensations, newest first, before it ends. Nothing is armed (budgets
  // and the deadline no longer apply: an undo must not be cut short).
  void compensate(const std::string& terminal, const std::string& label,
                  const std::string& reason) {
    disarm_all();
    s.compensating = true;
    s.undo_terminal = terminal;
    s.undo_reason = "'" + label + "': " + reason;
    s.outcome.clear();
    s.reason = "compensating after " + s.undo_reason;
    next_compensation();
  }

  // Schedules the newest compensation left, or ends the workflow compensated.
  void next_compensation() {
    if (s.undo.empty()) {
      s.compensating = false;
      auto reason = "compensated after " + s.undo_reason;
      s.undo_reason.clear();
      auto terminal = std::move(s.undo_terminal);
      s.undo_terminal.clear();
      return finish(phase::failed, terminal, outcome::compensated, reason);
    }
    s.node = s.undo.back().first;
    schedule(1);
  }

  // How many reminders a wait at gate `g` sends: those due before its deadline.
  static uint32_t reminders_due(const node& g) {
    if (g.gate.remind_after <= duration::zero())
      return 0;
    uint32_t k = 0;
    while (k < g.gate.reminders
           && (g.gate.deadline <= duration::zero() || g.gate.remind_after * (k + 1) < g.gate.deadline))
      ++k;
    return k;
  }

  // Arms a gate's deadline and its reminders, as of now.
  void arm_gate(const node& g) {
    if (g.gate.deadline > duration::zero())
      arm(timer_kind::gate_deadline, at + g.gate.deadline);
    for (uint32_t k = 1; k <= reminders_due(g); ++k)
      arm(timer_kind::gate_reminder, at + g.gate.remind_after * k);
  }

  void enter(const std::string& target, const std::string& label, const std::string& reason) {
    if (s.at == phase::at_gate) { // the gate left no longer waits (no scan per step)
      disarm(timer_kind::gate_deadline);
      disarm(timer_kind::gate_reminder);
      s.resume_node.clear(); // a soft gate left by its own routes resumes nothing
      s.resume_attempt = 0;
    }
    const node& n = *def.find(target);
    switch (n.kind) {
      case node_kind::terminal:
        if (n.terminal == terminal_kind::completed)
          finish(phase::completed, target, label, {});
        else
          finish(phase::failed, target, label,
                 reason.empty() ? "reached failed node '" + target + "' by '" + label + "'"
                                : reason);
        return;
      case node_kind::gate:
        s.node = target;
        s.attempt = 0;
        s.reason = reason; // why it parked, when a failure or budget led here
        ++s.visits[target];
        s.at = phase::at_gate;
        arm_gate(n);
        out.emplace_back(await_signal{target});
        return;
      case node_kind::agent:
        s.node = target;
        s.reason = reason; // a fallback node knows what failed before it
        ++s.visits[target];
        schedule(1);
        return;
    }
  }

  std::string spent_budget() const {
    auto l = limits_of(def, s);
    if (l.steps > 0 && s.steps >= l.steps)
      return "max_steps budget of " + std::to_string(l.steps) + " spent";
    if (l.tokens > 0 && s.tokens >= l.tokens)
      return "max_tokens budget of " + std::to_string(l.tokens) + " spent ("
             + std::to_string(s.tokens) + " used)";
    if (l.cost_nusd > 0 && s.cost_nusd >= l.cost_nusd)
      return "max_cost_usd budget of " + usd(l.cost_nusd) + " spent (" + usd(s.cost_nusd)
             + " used)";
    if (s.deadline > instant::zero() && at >= s.deadline)
      return "deadline passed";
    return {};
  }

  // Why the soft budget threshold stops the workflow now, or "".
  std::string soft_threshold() const {
    const auto& b = def.limits;
    if (b.soft_share <= 0 || s.soft_passed)
      return {};
    auto share = [&](uint64_t max) {
      return static_cast<uint64_t>(static_cast<double>(max) * b.soft_share);
    };
    auto pct = std::to_string(static_cast<int>(b.soft_share * 100 + 0.5)) + "%";
    auto l = limits_of(def, s);
    if (l.tokens > 0 && s.tokens >= share(l.tokens))
      return "soft budget: " + std::to_string(s.tokens) + " tokens used, " + pct + " of "
             + std::to_string(l.tokens) + " reached";
    if (l.cost_nusd > 0 && s.cost_nusd >= share(l.cost_nusd))
      return "soft budget: " + usd(s.cost_nusd) + " used, " + pct + " of " + usd(l.cost_nusd)
             + " reached";
    return {};
  }

  void schedule(uint32_t attempt) {
    if (s.compensating) { // an undo runs whatever the budgets say
      s.at = phase::scheduling;
      s.attempt = attempt;
      out.emplace_back(schedule_step{s.node, attempt});
      return;
    }
    if (auto why = spent_budget(); !why.empty())
      return budget(why);
    if (auto why = soft_threshold(); !why.empty()) {
      auto node = s.node;
      s.soft_passed = true;
      enter(def.limits.soft_gate, outcome::budget, "node '" + node + "': " + why);
      s.resume_node = node;
      s.resume_attempt = attempt;
      return;
    }
    s.at = phase::scheduling;
    s.attempt = attempt;
    out.emplace_back(schedule_step{s.node, attempt});
  }

  // `in_flight`: an attempt is running and must be abandoned.
  void budget(const std::string& why, bool in_flight = false) {
    auto reason = "node '" + s.node + "': " + why;
    if (in_flight)
      out.emplace_back(cancel_step{s.node, s.attempt});
    disarm(timer_kind::step_timeout);
    disarm(timer_kind::retry_backoff);
    if (s.deadline > instant::zero() && at >= s.deadline)
      disarm(timer_kind::workflow_deadline); // spent: it must not fire again at the gate
    auto& routes = current().routes;
    if (auto r = routes.find(outcome::budget); r != routes.end())
      return enter(r->second, outcome::budget, reason);
    to_dead_letter(outcome::budget, reason);
  }

  // Stops at the current node for an operator: nothing runs, nothing is
  // armed (a retry re-arms the deadline if it is still ahead).
  void to_dead_letter(const std::string& label, const std::string& reason) {
    disarm_all();
    s.at = phase::dead_lettered;
    s.attempt = 0;
    s.outcome = label;
    s.reason = reason;
    out.emplace_back(dead_letter{s.node, label, reason});
  }

  void failed_attempt(failure_kind kind, const std::string& why) {
    disarm(timer_kind::step_timeout);
    const node& n = current();
    auto reason = "node '" + n.name + "' attempt " + std::to_string(s.attempt) + ": "
                  + to_string(kind) + (why.empty() ? "" : ": " + why);
    auto dec = failure_route(n, kind, s.attempt);
    if (dec.retry) {
      s.at = phase::backoff;
      s.reason = reason;
      arm(timer_kind::retry_backoff, at + backoff_delay(n.policy.retry, s.seed, n.name, s.attempt));
      return;
    }
    if (s.compensating)
      return to_dead_letter(dec.label, "compensating node '" + n.name + "' (agent '"
                                         + n.policy.compensate + "') failed: " + reason);
    if (dec.target.empty())
      return to_dead_letter(dec.label, reason);
    enter(dec.target, dec.label, reason);
  }
};

caf::error refuse(const workflow_state& s, const event& e, const std::string& why) {
  auto code = s.finished() ? errc::workflow_finished : errc::invalid_transition;
  std::string where = s.node.empty() ? "" : " at node '" + s.node + "'";
  return make_error(code, std::string{kind_of(e)} + " refused in phase " + to_string(s.at) + where
                              + ": " + why);
}

bool is_builtin_failure(const std::string& label) {
  return label == outcome::timeout || label == outcome::crashed || label == outcome::bad_output
         || label == outcome::circuit_open || label == outcome::exhausted
         || label == outcome::budget;
}

// Why a step event does not fit: the workflow is not in `expected` (`idle`
// says so), or the event names another attempt than the current one. "" fits.
std::string misfit(const workflow_state& s, phase expected, const char* idle,
                   const std::string& node, uint32_t attempt) {
  if (s.at != expected)
    return idle;
  if (node != s.node || attempt != s.attempt)
    return "names attempt " + std::to_string(attempt) + " of '" + node + "', expected attempt "
           + std::to_string(s.attempt) + " of '" + s.node + "'";
  return {};
}

caf::error on(builder& b, const event& e, const workflow_started& ev) {
  if (b.s.at != phase::not_started)
    return refuse(b.s, e, "workflow already started");
  if (!ev.input.is_object())
    return refuse(b.s, e, "input must be a JSON object");
  const std::string& first = ev.start_node.empty() ? b.def.start : ev.start_node;
  if (!ev.start_node.empty()) {
    const node* n = b.def.find(ev.start_node);
    if (n == nullptr)
      return refuse(b.s, e, "start node '" + ev.start_node + "' is not in definition '"
                              + b.def.name + "'");
    if (n->kind == node_kind::terminal)
      return refuse(b.s, e, "start node '" + ev.start_node + "' is a terminal");
  }
  b.s.data = ev.input;
  b.s.seed = ev.seed;
  b.s.traceparent = ev.traceparent;
  b.s.model = ev.model;
  b.s.started_at = ev.at;
  if (b.def.limits.deadline > duration::zero()) {
    b.s.deadline = ev.at + b.def.limits.deadline;
    b.arm(timer_kind::workflow_deadline, b.s.deadline);
  }
  b.enter(first, "start", {});
  return {};
}

caf::error on(builder& b, const event& e, const step_scheduled& ev) {
  if (auto why = misfit(b.s, phase::scheduling, "no step is waiting to be scheduled", ev.node,
                        ev.attempt);
      !why.empty())
    return refuse(b.s, e, why);
  const node& n = b.current();
  b.s.at = phase::running;
  ++b.s.steps;
  b.arm(timer_kind::step_timeout, ev.at + n.policy.timeout);
  if (b.s.compensating)
    b.out.emplace_back(
      run_agent{n.name, n.policy.compensate, ev.attempt, b.s.undo.back().second, true});
  else
    b.out.emplace_back(run_agent{n.name, n.agent, ev.attempt, b.s.visits[n.name]});
  return {};
}

caf::error on(builder& b, const event& e, const step_completed& ev) {
  if (auto why = misfit(b.s, phase::running, "no attempt is running", ev.node, ev.attempt);
      !why.empty())
    return refuse(b.s, e, why);
  if (auto problem = completion_problem(b.def, b.s, ev); !problem.empty()) {
    b.s.tokens += ev.tokens;
    b.s.cost_nusd += ev.cost_nusd;
    b.failed_attempt(failure_kind::bad_output, problem);
    return {};
  }
  b.s.tokens += ev.tokens;
  b.s.cost_nusd += ev.cost_nusd;
  const node& n = b.current();
  b.disarm(timer_kind::step_timeout);
  b.s.data.merge_patch(ev.patch);
  if (b.s.compensating) { // undone, whatever the label
    b.s.undo.pop_back();
    b.next_compensation();
    return {};
  }
  if (!n.policy.compensate.empty())
    b.s.undo.emplace_back(n.name, b.s.visits[n.name]);
  b.enter(n.routes.at(ev.label), ev.label, {});
  return {};
}

caf::error on(builder& b, const event& e, const step_failed& ev) {
  if (auto why = misfit(b.s, phase::running, "no attempt is running", ev.node, ev.attempt);
      !why.empty())
    return refuse(b.s, e, why);
  if (static_cast<size_t>(ev.kind) >= std::size(all_failure_kinds))
    return refuse(b.s, e, "unknown failure kind " + std::to_string(static_cast<int>(ev.kind)));
  b.s.tokens += ev.tokens;
  b.s.cost_nusd += ev.cost_nusd;
  if (ev.kind == failure_kind::budget && !b.s.compensating) {
    b.budget("budget: " + ev.reason);
    return {};
  }
  if (ev.kind == failure_kind::timeout)
    b.out.emplace_back(cancel_step{b.s.node, b.s.attempt}); // it may still be running
  b.failed_attempt(ev.kind, ev.reason);
  return {};
}

caf::error on(builder& b, const event& e, const timer_fired& ev) {
  auto i = b.s.timers.find(ev.timer);
  if (i == b.s.timers.end())
    return refuse(b.s, e, "timer " + std::to_string(ev.timer) + " is not armed");
  auto kind = i->second.kind;
  if (kind != ev.kind)
    return refuse(b.s, e, "timer " + std::to_string(ev.timer) + " is a " + to_string(kind)
                            + " timer, not " + to_string(ev.kind));
  if (kind == timer_kind::step_timeout)
    return refuse(b.s, e, "a step timeout is journaled as step_failed{timeout}, not as "
                          "timer_fired");
  b.s.timers.erase(i);
  switch (kind) {
    case timer_kind::step_timeout: // refused above
      break;
    case timer_kind::retry_backoff:
      b.schedule(b.s.attempt + 1);
      break;
    case timer_kind::workflow_deadline:
      b.budget("deadline passed", b.s.at == phase::running);
      break;
    case timer_kind::gate_deadline: {
      const node& g = b.current();
      auto route = g.routes.find(outcome::timeout);
      if (route == g.routes.end())
        route = g.routes.find(outcome::reject);
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(g.gate.deadline).count();
      b.enter(route->second, outcome::timeout,
              "gate '" + g.name + "': no decision within " + std::to_string(ms) + " ms");
      break;
    }
    case timer_kind::gate_reminder: {
      uint32_t left = 0;
      for (auto& [id, t] : b.s.timers)
        left += t.kind == timer_kind::gate_reminder ? 1 : 0;
      b.out.emplace_back(remind{b.s.node, builder::reminders_due(b.current()) - left});
      break;
    }
  }
  return {};
}

caf::error on(builder& b, const event& e, const signal_received& ev) {
  if (b.s.at != phase::at_gate)
    return refuse(b.s, e, "the workflow is not waiting at a gate");
  if (ev.gate != b.s.node)
    return refuse(b.s, e, "the workflow waits at gate '" + b.s.node + "', not '" + ev.gate + "'");
  if (ev.decision != outcome::approve && ev.decision != outcome::reject
      && ev.decision != outcome::edit)
    return refuse(b.s, e, "unknown verdict '" + ev.decision + "' (approve, reject or edit)");
  const auto& routes = b.current().routes;
  auto route = routes.find(ev.decision);
  if (ev.decision == outcome::edit) {
    if (!ev.patch.is_object())
      return refuse(b.s, e, "an edit needs a JSON object patch");
    b.s.data.merge_patch(ev.patch);
    if (route == routes.end())
      route = routes.find(outcome::approve);
  }
  std::string who = ev.by.empty() ? "" : " by '" + ev.by + "'";
  if (!b.s.resume_node.empty() && ev.decision != outcome::reject) {
    // the soft budget gate: go on with the attempt that waited for it
    b.disarm(timer_kind::gate_deadline);
    b.disarm(timer_kind::gate_reminder);
    b.s.node = b.s.resume_node;
    b.s.reason = "gate '" + ev.gate + "': " + ev.decision + who + ": over the soft budget";
    auto attempt = b.s.resume_attempt;
    b.s.resume_node.clear();
    b.s.resume_attempt = 0;
    b.schedule(attempt);
    return {};
  }
  b.enter(route->second, ev.decision,
          "gate '" + ev.gate + "': " + ev.decision + who);
  return {};
}

caf::error on(builder& b, const event& e, const dlq_retried& ev) {
  if (b.s.at != phase::dead_lettered)
    return refuse(b.s, e, "the workflow is not dead-lettered");
  auto& g = b.s.granted;
  g.steps = add_saturating(g.steps, ev.grant.steps);
  g.tokens = add_saturating(g.tokens, ev.grant.tokens);
  g.cost_nusd = add_saturating(g.cost_nusd, ev.grant.cost_nusd);
  auto more = std::max(ev.grant.time, duration::zero());
  auto room = [](duration d) { return duration::max() - std::max(d, duration::zero()); };
  g.time += std::min(more, room(g.time));
  if (b.s.deadline > instant::zero()) {
    b.s.deadline += std::min(more, room(b.s.deadline));
    if (b.s.deadline > b.at && !b.s.compensating)
      b.arm(timer_kind::workflow_deadline, b.s.deadline);
  }
  b.s.outcome.clear();
  b.s.reason = "retried from dead letter" + (ev.by.empty() ? "" : " by '" + ev.by + "'");
  const node& n = b.current();
  if (n.kind == node_kind::gate) {
    b.s.at = phase::at_gate;
    b.arm_gate(n); // a fresh wait for a decision
    b.out.emplace_back(await_signal{n.name});
    return {};
  }
  b.schedule(1); // same visit: the idempotency key, and effects journaled under it, stay
  return {};
}

caf::error on(builder& b, const event& e, const dlq_dropped& ev) {
  if (b.s.at != phase::dead_lettered)
    return refuse(b.s, e, "the workflow is not dead-lettered");
  auto why = "dropped from dead letter" + (ev.by.empty() ? "" : " by '" + ev.by + "'")
             + (ev.reason.empty() ? "" : ": " + ev.reason) + " (was: " + b.s.reason + ")";
  b.finish(phase::failed, {}, outcome::dropped, why);
  return {};
}

caf::error on(builder& b, const event& e, const workflow_cancelled& ev) {
  if (b.s.at == phase::not_started)
    return refuse(b.s, e, "the workflow has not started");
  if (b.s.compensating)
    return refuse(b.s, e, "the workflow is compensating already");
  if (b.s.at == phase::running)
    b.out.emplace_back(cancel_step{b.s.node, b.s.attempt});
  b.finish(phase::failed, {}, outcome::cancelled,
           "cancelled" + (ev.by.empty() ? "" : " by '" + ev.by + "'")
             + (ev.reason.empty() ? "" : ": " + ev.reason));
  return {};
}

caf::error on(builder& b, const event& e, const workflow_crashed& ev) {
  if (b.s.at == phase::not_started)
    return refuse(b.s, e, "the workflow has not started");
  if (b.s.at == phase::dead_lettered)
    return refuse(b.s, e, "the workflow is dead-lettered already");
  if (b.s.at == phase::running)
    b.out.emplace_back(cancel_step{b.s.node, b.s.attempt});
  b.to_dead_letter("crashed", ev.reason);
  return {};
}

} // namespace

std::string completion_problem(const definition& def, const workflow_state& s,
                               const step_completed& e) {
  const node* n = def.find(s.node);
  if (!s.compensating && n != nullptr) { // a compensation is undone whatever its label
    if (is_builtin_failure(e.label) || n->routes.count(e.label) == 0)
      return "agent returned outcome '" + e.label + "', which the node does not route";
  }
  if (!e.patch.is_object())
    return "state patch is not a JSON object";
  return {};
}

limits limits_of(const definition& def, const workflow_state& s) {
  const auto& b = def.limits;
  const auto& g = s.granted;
  limits l;
  if (b.max_steps > 0)
    l.steps = add_saturating(b.max_steps, g.steps);
  if (b.max_tokens > 0)
    l.tokens = add_saturating(b.max_tokens, g.tokens);
  if (b.max_cost_usd > 0)
    l.cost_nusd = add_saturating(to_nano_usd(b.max_cost_usd), g.cost_nusd);
  return l;
}

namespace {

caf::error run(builder& b, const event& e) {
  if (b.s.finished())
    return refuse(b.s, e, "the workflow has finished");
  if (auto err = std::visit([&](const auto& ev) { return on(b, e, ev); }, e))
    return err;
  ++b.s.events;
  return {};
}

} // namespace

caf::expected<transition> apply(const definition& def, const workflow_state& s, const event& e) {
  transition t{s, {}};
  builder b{def, t.state, {}, time_of(e)};
  if (auto err = run(b, e))
    return err;
  t.commands = std::move(b.out);
  return t;
}

caf::expected<std::vector<command>> apply_in_place(const definition& def, workflow_state& s,
                                                   const event& e) {
  builder b{def, s, {}, time_of(e)};
  if (auto err = run(b, e))
    return err;
  return std::move(b.out);
}

caf::expected<transition> replay(const definition& def, const std::vector<event>& history) {
  transition t;
  for (size_t i = 0; i < history.size(); ++i) {
    auto next = apply(def, t.state, history[i]);
    if (!next)
      return make_error(errc::invalid_transition,
                        "replay stopped at event #" + std::to_string(i + 1) + ": "
                            + describe(next.error()));
    t = std::move(*next);
  }
  return t;
}

} // namespace troupe::kernel
