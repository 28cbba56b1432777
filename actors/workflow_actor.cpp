// The workflow actor (see the header). Logic lives in the kernel; this file
// turns messages into events and commands into actions.
#include "actors/workflow_actor.hpp"

#include <deque>
#include <map>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/agent_actor.hpp"
#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "kernel/workflow_machine.hpp"
#include "persistence/event_codec.hpp"
#include "persistence/state_codec.hpp"
#include "runtime/applied_event.hpp"
#include "runtime/log_format.hpp"
#include "troupe/errors.hpp"
#include "troupe/trace.hpp"

namespace troupe {

namespace {

using kernel::instant;

// An event waiting for its turn. Events made from an agent's message carry
// the agent's token, timer events their timer: both are checked again when
// their turn comes, since a command carried out meanwhile may have made them
// moot (a timed-out attempt's late reply, a cancelled timer).
struct queued {
  kernel::event ev;
  caf::response_promise reply; ///< signals: answered after the ack
  uint64_t token = 0;
  uint64_t timer = 0;
};

struct workflow_actor_state {
  workflow_env env;
  std::string id;
  workflow_row row; ///< as last journaled (status, outcome)
  kernel::workflow_state wf;
  uint64_t wf_seq = 0;
  std::deque<queued> inbox;
  bool journaling = false;
  bool resumed = false; ///< recovered: resume() ran (on the manager's resume_atom)
  std::map<uint64_t, kernel::timer_kind> armed;
  caf::actor runner;         ///< runs the attempt in flight, if any
  uint64_t agent_token = 0;  ///< that attempt's; 0: none in flight
  bool agent_reported = false; ///< its report arrived (nothing to cancel)
  std::string agent_node;
  uint32_t agent_attempt = 0;
  std::string agent_name;    ///< the agent that attempt runs
  instant agent_started{-1}; ///< when it was dispatched; -1: not by this actor
  uint64_t next_token = 1;
  uint64_t attempt_tokens = 0;
  uint64_t attempt_nusd = 0; ///< that attempt's model cost so far
  workflow_status reported = workflow_status::running; ///< last status the manager saw
  std::string trace_id; ///< once known (workflow_started applied)
  /// Status asks that came while a write was in flight: `wf` is ahead of
  /// the journal then, so they are answered at its ack.
  std::vector<caf::typed_response_promise<info_msg>> status_asks;
  attempt_trace trace;  ///< trace_id as numbers, and where span ids continue:
  uint64_t id_hash = 0; ///< workflow_hash(id)
  std::shared_ptr<const std::string> shared_id; ///< id, for applied_events (tracing on)
  static inline const char* name = "troupe.workflow";

  /// Runs as the actor exits, however it ends: a status ask still waiting
  /// for an ack is answered with an error, and the manager reads the journal.
  ~workflow_actor_state() {
    for (auto& rp : status_asks)
      rp.deliver(make_error(errc::interrupted, "workflow " + id
                                                   + " stopped before its write was acknowledged"));
  }
};

using self_ptr = caf::stateful_actor<workflow_actor_state>*;

instant now(self_ptr self) {
  auto& c = self->state.env.clock;
  if (c)
    return c->now();
  return std::chrono::duration_cast<instant>(self->clock().now().time_since_epoch());
}

bool idle_at_gate(self_ptr self);

info_msg info(self_ptr self) {
  auto& st = self->state;
  info_msg m;
  m.id = st.id;
  m.definition = st.env.def->name;
  m.status = static_cast<uint8_t>(status_of(st.wf));
  m.node = st.wf.node;
  m.outcome = st.wf.outcome;
  m.reason = st.wf.reason;
  m.state_json = st.wf.data.dump();
  m.steps = st.wf.steps;
  m.tokens = st.wf.tokens;
  m.cost_nusd = st.wf.cost_nusd;
  return m;
}

void pump(self_ptr self);

void enqueue(self_ptr self, queued q) {
  self->state.inbox.push_back(std::move(q));
  pump(self);
}

budgets_left budgets_of(self_ptr self) {
  auto& st = self->state;
  auto l = kernel::limits_of(*st.env.def, st.wf); // with dead-letter grants
  budgets_left left;
  if (l.steps > 0)
    left.steps = l.steps > st.wf.steps ? l.steps - st.wf.steps : 0;
  if (l.tokens > 0)
    left.tokens = l.tokens > st.wf.tokens ? l.tokens - st.wf.tokens : 0;
  if (l.cost_nusd > 0)
    left.cost_nusd = l.cost_nusd > st.wf.cost_nusd ? l.cost_nusd - st.wf.cost_nusd : 0;
  if (st.wf.deadline > instant::zero())
    left.time = std::max(duration::zero(), st.wf.deadline - now(self));
  return left;
}

// Ends our part in the attempt in flight; one that has not reported is
// cancelled on its runner, which drops it and its late replies.
void stop_agent(self_ptr self) {
  auto& st = self->state;
  if (st.runner && st.agent_token != 0 && !st.agent_reported)
    self->send(st.runner, cancel_atom::value, st.agent_token);
  st.runner = nullptr;
  st.agent_token = 0;
}

const std::string& trace_id(self_ptr self) {
  auto& st = self->state;
  if (st.trace_id.empty()) { // the traceparent is known once workflow_started is applied
    st.trace_id = trace_id_of(st.id, st.wf.traceparent);
    st.trace = attempt_trace_of(st.trace_id, 0);
    st.id_hash = workflow_hash(st.id);
  }
  return st.trace_id;
}

// The trace context of the attempt that run_agent starts: the workflow's
// trace, and the attempt's span, which the trace exporter derives from the
// same step number (the kernel has just counted this attempt in `steps`).
// Numbers only: the agent formats its traceparent if it needs one.
attempt_trace attempt_context(self_ptr self) {
  trace_id(self);
  auto t = self->state.trace;
  t.span = attempt_span_number(self->state.id_hash, self->state.wf.steps);
  return t;
}

// What this workflow's log lines are about: it, and the node and attempt it is at.
log_context about(self_ptr self) {
  auto& st = self->state;
  return {st.id, trace_id(self), st.wf.node, st.wf.attempt};
}

void run_agent(self_ptr self, const kernel::run_agent& c) {
  auto& st = self->state;
  stop_agent(self); // at most one attempt in flight (kernel invariant 2)
  step_input in;
  in.workflow_id = st.id;
  in.node = c.node;
  in.agent = c.agent;
  in.attempt = c.attempt;
  in.token = st.next_token++;
  // a compensation keys its effects apart from the step it undoes
  in.key = c.compensation ? kernel::idempotency_key(st.id, c.node + "~undo", c.visit)
                          : kernel::idempotency_key(st.id, c.node, c.visit);
  in.state = st.wf.data;
  in.budget = budgets_of(self);
  in.user = st.row.user;
  in.sessions = st.env.sessions;
  in.trace = attempt_context(self);
  in.model = st.wf.model;
  // registry::add_definition checked the agent (and compensating agent)
  // exists; a snapshot never shrinks
  auto impl = st.env.agents->at(c.agent);
  st.agent_token = in.token;
  st.agent_node = c.node;
  st.agent_attempt = c.attempt;
  st.agent_name = c.agent;
  st.agent_started = now(self);
  st.attempt_tokens = 0;
  st.attempt_nusd = 0;
  st.agent_reported = false;
  st.runner = st.env.runners->pick(c.agent, impl, in.token);
  if (!st.runner) { // the runtime is stopping: this attempt cannot run
    enqueue(self, {kernel::step_failed{now(self), c.node, c.attempt, failure_kind::crashed,
                                       "agent runners stopped: the runtime is shutting down", 0},
                   {}, st.agent_token, 0});
    return;
  }
  self->send(st.runner, run_atom::value, std::move(in));
}

void notify(self_ptr self) {
  self->state.reported = status_of(self->state.wf);
  if (self->state.env.manager)
    self->send(self->state.env.manager, status_atom::value, info(self));
}

// Tells the manager whenever the status changed (parked, running again after
// a signal, finished), so an await never sees a stale snapshot.
void notify_if_changed(self_ptr self) {
  if (status_of(self->state.wf) != self->state.reported)
    notify(self);
}

// Posts to the gate's webhook, if it has one, that the workflow waits
// there; `reminder` > 0 marks the nth reminder.
void notify_gate(self_ptr self, const std::string& gate_name, uint32_t reminder) {
  auto& st = self->state;
  const node* gate = st.env.def->find(gate_name);
  if (!st.env.notifier || !gate || gate->gate.notify_url.empty())
    return;
  auto text = std::string{reminder > 0 ? "troupe: reminder: workflow " : "troupe: workflow "}
              + st.id + " (" + st.env.def->name + ") " + (reminder > 0 ? "still " : "")
              + "waits at gate '" + gate_name + "'"
              + (st.wf.reason.empty() ? "" : ": " + st.wf.reason);
  nlohmann::json body = {
    {"text", text},
    {"workflow_id", st.id},
    {"definition", st.env.def->name},
    {"gate", gate_name},
    {"reason", st.wf.reason},
    {"key", kernel::idempotency_key(st.id, gate_name, st.wf.visits[gate_name])},
  };
  if (reminder > 0)
    body["reminder"] = reminder;
  self->send(st.env.notifier, notify_atom::value, gate->gate.notify_url,
             body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void execute(self_ptr self, const kernel::command& cmd) {
  auto& st = self->state;
  struct visitor {
    self_ptr self;
    workflow_actor_state& st;
    void operator()(const kernel::schedule_step& c) {
      enqueue(self, {kernel::step_scheduled{now(self), c.node, c.attempt}, {}, 0, 0});
    }
    void operator()(const kernel::run_agent& c) { troupe::run_agent(self, c); }
    void operator()(const kernel::cancel_step&) { stop_agent(self); }
    void operator()(const kernel::start_timer& c) {
      st.armed.emplace(c.id, c.kind);
      if (c.kind == kernel::timer_kind::workflow_deadline && st.env.manager) {
        // the manager keeps deadlines, to wake the workflow when passive
        self->send(st.env.manager, timer_atom::value, st.id, c.id, c.fire_at.count());
        return;
      }
      if (st.env.timers) {
        self->send(st.env.timers, timer_atom::value, c.id, c.fire_at.count());
        return;
      }
      auto delay = c.fire_at - now(self);
      if (delay <= duration::zero())
        self->send(self, timer_atom::value, c.id); // already due
      else
        self->delayed_send(self, delay, timer_atom::value, c.id);
    }
    void operator()(const kernel::cancel_timer& c) {
      auto i = st.armed.find(c.id);
      if (i == st.armed.end())
        return;
      if (st.env.timers && i->second != kernel::timer_kind::workflow_deadline)
        self->send(st.env.timers, disarm_atom::value, c.id);
      st.armed.erase(i);
    }
    // parking and finishing are status changes: notify_if_changed reports
    // them; a gate with a webhook also tells whoever decides there
    void operator()(const kernel::await_signal& c) { notify_gate(self, c.gate, 0); }
    void operator()(const kernel::remind& c) { notify_gate(self, c.gate, c.n); }
    void operator()(const kernel::dead_letter& c) {
      log_about(about(self), spdlog::level::warn,
                "workflow {} ({}): dead-lettered at '{}' ({}): {}", st.id, st.env.def->name,
                c.node, c.outcome, c.reason);
    }
    void operator()(const kernel::complete&) {}
    void operator()(const kernel::fail&) {}
  };
  std::visit(visitor{self, st}, cmd);
}

// A journal write failed: the state in memory is ahead of the journal, so
// the workflow stops here and reports why. Nothing more is carried out.
void journal_failed(self_ptr self, const caf::error& err, caf::response_promise reply = {}) {
  auto& st = self->state;
  log_about(about(self), spdlog::level::err, "workflow {}: journal write failed: {}", st.id,
            describe(err));
  stop_agent(self);
  st.wf.at = kernel::phase::failed;
  st.wf.outcome = "journal_write_failed";
  st.wf.reason = describe(err);
  for (auto& q : st.inbox)
    if (q.reply.pending())
      q.reply.deliver(err);
  st.inbox.clear();
  st.reported = workflow_status::failed;
  auto m = info(self);
  m.stopped = true;
  if (st.env.manager) // before the reply: a caller answered next must see it stopped
    self->send(st.env.manager, status_atom::value, std::move(m));
  if (reply.pending())
    reply.deliver(err); // the signal being journaled did not take effect
  self->quit(err);
}

// An event the workflow made for itself that a transition applied since
// has made moot: a late reply of an abandoned attempt, a cancelled timer, a
// step whose scheduling the deadline overtook.
bool stale(self_ptr self, const queued& q) {
  auto& st = self->state;
  if (q.token != 0 && q.token != st.agent_token)
    return true;
  if (q.timer != 0 && st.armed.erase(q.timer) == 0)
    return true;
  if (auto s = std::get_if<kernel::step_scheduled>(&q.ev))
    return st.wf.at != kernel::phase::scheduling || s->node != st.wf.node
           || s->attempt != st.wf.attempt;
  return false;
}

// For the trace exporter: event `ev` (moved from) as applied, with the
// commands of its transition and the state it left (see applied_events);
// `problem`: why the kernel took a step_completed as bad_output, read
// before it applied it. A write whose events do not all fit goes without.
// With tracing off (`out` null), nothing.
void note_applied(std::shared_ptr<applied_events>& out, kernel::event& ev,
                  const std::vector<kernel::command>& cmds, const kernel::workflow_state& after,
                  std::string problem = {}) {
  if (out && !out->add(std::move(ev), cmds, after, std::move(problem)))
    out.reset();
}

// Applies at once the step_scheduled that a schedule_step command asks for,
// adding it to the same write (and to `applied`), and puts its commands in
// the command's place.
caf::error chain_scheduling(self_ptr self, std::vector<kernel::command>& cmds,
                            journal_write& w, std::shared_ptr<applied_events>& applied) {
  auto& st = self->state;
  for (size_t i = 0; i < cmds.size();) {
    auto s = std::get_if<kernel::schedule_step>(&cmds[i]);
    if (!s) {
      ++i;
      continue;
    }
    kernel::event ev = kernel::step_scheduled{now(self), s->node, s->attempt};
    auto t = kernel::apply(*st.env.def, st.wf, ev);
    if (!t)
      return t.error();
    st.wf = std::move(t->state);
    w.events.push_back(persistence::to_record(st.id, ++st.wf_seq, ev));
    note_applied(applied, ev, t->commands, st.wf);
    cmds.erase(cmds.begin() + static_cast<std::ptrdiff_t>(i));
    cmds.insert(cmds.begin() + static_cast<std::ptrdiff_t>(i), t->commands.begin(),
                t->commands.end());
  }
  return {};
}

const char* status_name(const kernel::workflow_state& s) {
  return to_string(status_of(s));
}

// What else the write carries: the row when the status changed, a snapshot
// when it crossed a multiple of snapshot_every, a dead letter when the
// workflow has just been dead-lettered.
void complete_write(self_ptr self, journal_write& w, uint64_t seq_before) {
  auto& st = self->state;
  auto at = now(self).count();
  const char* status = status_name(st.wf);
  if (st.wf.at == kernel::phase::dead_lettered && st.row.status != status)
    w.dead_letter.push_back({st.id, st.wf.node, st.wf.outcome, st.wf.reason, at});
  if (seq_before == 0 || st.row.status != status || st.row.outcome != st.wf.outcome) {
    st.row.status = status;
    st.row.outcome = st.wf.outcome;
    st.row.updated_ns = at;
    w.workflow.push_back(st.row);
  }
  auto n = st.env.snapshot_every;
  if (n > 0 && seq_before / n != st.wf_seq / n)
    w.snapshot.push_back({st.id, st.wf_seq, persistence::encode_state(st.wf)});
}

// A transition of our own making was refused: a bug, never silently skipped.
void refused(self_ptr self, const caf::error& err) {
  log_about(about(self), spdlog::level::err, "workflow {}: {}", self->state.id, describe(err));
  stop_agent(self);
  self->quit(err);
}

// Parked at a gate or in dead letter with nothing in flight: hand the
// workflow to the journal and quit. The manager wakes it on a signal (or a
// dead-letter retry or drop) or when its timer is due.
void maybe_passivate(self_ptr self) {
  auto& st = self->state;
  if (!idle_at_gate(self))
    return;
  auto m = info(self);
  m.passive = true;
  for (auto& [id, t] : st.wf.timers)
    if (m.wake_at_ns == 0 || t.fire_at.count() < m.wake_at_ns)
      m.wake_at_ns = t.fire_at.count();
  self->send(st.env.manager, status_atom::value, std::move(m));
  self->quit();
}

bool idle_at_gate(self_ptr self) {
  auto& st = self->state;
  return st.env.passivate && st.env.manager
         && (st.wf.at == kernel::phase::at_gate || st.wf.at == kernel::phase::dead_lettered)
         && st.inbox.empty() && !st.journaling && !st.runner;
}

/// What the metrics learn from one event, applied once it is durable.
struct metric_note {
  bool started = false;
  const char* reached = nullptr; ///< a status the workflow entered: completed, ...
  std::string agent;             ///< an attempt of it ended with `outcome`
  std::string outcome;
  instant took{-1};
  std::string retried;           ///< a later attempt of this agent was scheduled
};

/// The agent that runs `node`'s attempts in `s` (its compensation's while
/// compensating).
const std::string& agent_at(self_ptr self, const kernel::workflow_state& s,
                            const std::string& node) {
  static const std::string none;
  const troupe::node* n = self->state.env.def->find(node);
  if (!n)
    return none;
  return s.compensating ? n->policy.compensate : n->agent;
}

metric_note observe(self_ptr self, const kernel::event& ev, const kernel::workflow_state& before,
                    const kernel::workflow_state& after) {
  auto& st = self->state;
  metric_note m;
  // an attempt this actor dispatched knows its agent and start; one cut off
  // by a crash of the process (failed on recovery) only its node
  auto attempt_ended = [&](const std::string& node, uint32_t attempt, instant at) {
    if (node == st.agent_node && attempt == st.agent_attempt && st.agent_started.count() >= 0) {
      m.agent = st.agent_name;
      m.took = at - st.agent_started;
    } else {
      m.agent = agent_at(self, before, node);
    }
  };
  if (std::holds_alternative<kernel::workflow_started>(ev)) {
    m.started = true;
  } else if (auto* c = std::get_if<kernel::step_completed>(&ev)) {
    attempt_ended(c->node, c->attempt, c->at);
    m.outcome = c->label;
  } else if (auto* f = std::get_if<kernel::step_failed>(&ev)) {
    attempt_ended(f->node, f->attempt, f->at);
    m.outcome = to_string(f->kind);
  }
  if (before.at != after.at
      && (after.at == kernel::phase::completed || after.at == kernel::phase::failed
          || after.at == kernel::phase::dead_lettered))
    m.reached = to_string(after.at);
  return m;
}

void record(runtime_metrics& metrics, const metric_note& m) {
  if (m.started)
    metrics.workflow_started();
  if (!m.outcome.empty())
    metrics.step_ended(m.agent, m.outcome, m.took);
  if (m.reached)
    metrics.workflow_ended(m.reached);
  if (!m.retried.empty())
    metrics.step_retried(m.retried);
}

// The state is durable again (a write was acknowledged): the status asks
// that waited for it get it.
void answer_status_asks(self_ptr self) {
  auto& st = self->state;
  if (st.status_asks.empty())
    return;
  auto m = info(self);
  for (auto& rp : st.status_asks)
    rp.deliver(m);
  st.status_asks.clear();
}

void pump(self_ptr self) {
  auto& st = self->state;
  while (!st.journaling && !st.inbox.empty()) {
    auto q = std::move(st.inbox.front());
    st.inbox.pop_front();
    if (stale(self, q))
      continue;
    if (q.token != 0) // the attempt has ended: later messages of it are stale
      stop_agent(self);
    auto t = kernel::apply(*st.env.def, st.wf, q.ev);
    if (!t) {
      if (q.reply.pending()) { // a caller's signal: refused, nothing changed
        auto err = is(t.error(), errc::invalid_transition)
                     ? make_error(errc::bad_signal, describe(t.error()))
                     : t.error();
        q.reply.deliver(std::move(err));
        continue;
      }
      refused(self, t.error());
      return;
    }
    auto seq_before = st.wf_seq;
    metric_note note;
    if (st.env.metrics)
      note = observe(self, q.ev, st.wf, t->state);
    std::shared_ptr<applied_events> applied;
    std::string problem; // as the kernel saw it, in the state before
    if (st.env.trace_applied) {
      if (!st.shared_id)
        st.shared_id = std::make_shared<const std::string>(st.id);
      applied = std::make_shared<applied_events>(st.shared_id, st.wf_seq + 1);
      if (auto c = std::get_if<kernel::step_completed>(&q.ev);
          c && st.wf.at == kernel::phase::running)
        problem = kernel::completion_problem(*st.env.def, st.wf, *c);
    }
    st.wf = std::move(t->state);
    journal_write w;
    w.events.push_back(persistence::to_record(st.id, ++st.wf_seq, q.ev));
    note_applied(applied, q.ev, t->commands, st.wf, std::move(problem));
    if (auto err = chain_scheduling(self, t->commands, w, applied)) {
      refused(self, err);
      return;
    }
    w.applied = std::move(applied);
    complete_write(self, w, seq_before);
    // a write schedules at most one attempt (kernel invariant 2)
    if (st.env.metrics && w.events.size() > 1 && st.wf.at == kernel::phase::running
        && st.wf.attempt > 1)
      note.retried = agent_at(self, st.wf, st.wf.node);
    st.journaling = true;
    auto commands = std::make_shared<std::vector<kernel::command>>(std::move(t->commands));
    auto reply = q.reply;
    self->request(st.env.journal, caf::infinite, append_atom::value, std::move(w))
      .then(
        [self, commands, reply, first = seq_before == 0, note = std::move(note)](uint64_t) mutable {
          self->state.journaling = false;
          if (self->state.env.metrics)
            record(*self->state.env.metrics, note);
          answer_status_asks(self);
          // before the signal's reply: its sender may await next; the first
          // write always: the manager answers start() once it is durable
          if (first)
            notify(self);
          else
            notify_if_changed(self);
          if (reply.pending())
            reply.deliver(caf::unit);
          for (auto& c : *commands)
            execute(self, c);
          if (self->state.wf.finished()) {
            self->quit();
            return;
          }
          pump(self);
          maybe_passivate(self);
        },
        [self, reply](caf::error& err) mutable { journal_failed(self, err, reply); });
  }
}

// Re-issues what a journaled state had pending (see spawn_recovered_workflow).
void resume(self_ptr self) {
  auto& st = self->state;
  for (auto& [id, t] : st.wf.timers) {
    if (st.wf.at == kernel::phase::running && t.kind == kernel::timer_kind::step_timeout)
      continue; // the attempt is over: it fails below, which cancels this timer
    execute(self, kernel::start_timer{id, t.kind, t.fire_at});
  }
  switch (st.wf.at) {
    case kernel::phase::scheduling: // not written by this version (chain_scheduling
      // puts step_scheduled in the write that asks for it); kept for journals
      // and snapshots that end between the two
      enqueue(self, {kernel::step_scheduled{now(self), st.wf.node, st.wf.attempt}, {}, 0, 0});
      break;
    case kernel::phase::running:
      enqueue(self, {kernel::step_failed{now(self), st.wf.node, st.wf.attempt,
                                         failure_kind::crashed,
                                         "interrupted: the runtime stopped during attempt "
                                           + std::to_string(st.wf.attempt),
                                         0},
                     {}, 0, 0});
      break;
    default: // backoff and deadline: the timers above; a gate: the next signal
      break;
  }
}

// A dead-letter retry or drop, or a cancel, as its event (the facade
// checked the grant).
kernel::event operator_event(self_ptr self, const signal_msg& s) {
  if (s.verdict == signal_msg::dlq_drop)
    return kernel::dlq_dropped{now(self), s.by, s.patch_json};
  if (s.verdict == signal_msg::cancel)
    return kernel::workflow_cancelled{now(self), s.by, s.patch_json};
  kernel::dlq_retried e{now(self), s.by, {}};
  e.grant.steps = s.grant_steps;
  e.grant.tokens = s.grant_tokens;
  e.grant.cost_nusd = s.grant_cost_nusd;
  e.grant.time = duration{s.grant_time_ns};
  return e;
}

/// How the actor begins: a new workflow, or one rebuilt from the journal.
struct beginning {
  bool recovered = false;
  kernel::workflow_started first; ///< a new workflow's first event, stamped when it runs
  persistence::loaded_workflow loaded;
};

caf::behavior workflow(self_ptr self, workflow_env env, workflow_row row, beginning b) {
  auto& st = self->state;
  st.env = std::move(env);
  st.id = row.id;
  st.row = std::move(row);
  self->set_exit_handler([self](caf::exit_msg& em) {
    stop_agent(self);
    self->quit(em.reason);
  });
  if (b.recovered) {
    st.wf = std::move(b.loaded.state);
    st.wf_seq = b.loaded.wf_seq;
    notify(self); // resume() waits for the manager's resume_atom
  } else {
    b.first.at = now(self);
    enqueue(self, {std::move(b.first), {}, 0, 0});
  }
  return {
    [self](const agent_report& r) {
      auto& st = self->state;
      if (r.token != st.agent_token)
        return; // late reply of an abandoned attempt
      st.agent_reported = true;
      auto tokens = st.attempt_tokens + r.tokens;
      auto at = now(self);
      auto failed = [&](failure_kind kind, std::string reason) {
        kernel::step_failed e{at, st.agent_node, st.agent_attempt, kind, std::move(reason), tokens};
        e.cost_nusd = st.attempt_nusd;
        enqueue(self, {std::move(e), {}, r.token, 0});
      };
      if (!r.ok)
        return failed(r.kind < std::size(all_failure_kinds) ? all_failure_kinds[r.kind]
                                                            : failure_kind::crashed,
                      r.reason);
      auto patch = nlohmann::json::parse(r.patch_json, nullptr, false);
      if (patch.is_discarded())
        return failed(failure_kind::bad_output, "patch is not JSON");
      kernel::step_completed e{at, st.agent_node, st.agent_attempt, r.label, std::move(patch),
                               tokens};
      e.cost_nusd = st.attempt_nusd;
      enqueue(self, {std::move(e), {}, r.token, 0});
    },
    [self](usage_atom, uint64_t token, uint64_t tokens, uint64_t cost_nusd) {
      if (token == self->state.agent_token) {
        self->state.attempt_tokens += tokens;
        self->state.attempt_nusd += cost_nusd;
      }
    },
    [self](timer_atom, uint64_t id) {
      auto& st = self->state;
      auto i = st.armed.find(id);
      if (i == st.armed.end())
        return; // cancelled
      if (i->second != kernel::timer_kind::step_timeout) {
        enqueue(self, {kernel::timer_fired{now(self), id, i->second}, {}, 0, id});
        return;
      }
      // The attempt ran out of time: a failure of that attempt, with what it spent.
      auto limit = st.env.def->find(st.agent_node)->policy.timeout;
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(limit).count();
      kernel::step_failed e{now(self), st.agent_node, st.agent_attempt, failure_kind::timeout,
                            "no outcome within " + std::to_string(ms) + " ms",
                            st.attempt_tokens};
      e.cost_nusd = st.attempt_nusd;
      enqueue(self, {std::move(e), {}, st.agent_token, id});
    },
    [self](signal_atom, const signal_msg& s) {
      auto rp = self->make_response_promise();
      if (s.verdict == signal_msg::dlq_retry || s.verdict == signal_msg::dlq_drop
          || s.verdict == signal_msg::cancel) {
        enqueue(self, {operator_event(self, s), rp, 0, 0});
        maybe_passivate(self);
        return rp;
      }
      nlohmann::json patch;
      if (s.verdict == outcome::edit) {
        patch = nlohmann::json::parse(s.patch_json, nullptr, false);
        if (patch.is_discarded() || !patch.is_object()) {
          rp.deliver(make_error(errc::bad_signal, "workflow " + self->state.id
                                                      + ": an edit needs a JSON object patch, got '"
                                                      + s.patch_json + "'"));
          maybe_passivate(self);
          return rp;
        }
      }
      enqueue(self, {kernel::signal_received{now(self), s.gate, s.verdict, std::move(patch), s.by},
                     rp, 0, 0});
      maybe_passivate(self); // a refused signal leaves the workflow idle at its gate
      return rp;
    },
    // What the journal has: while a write is in flight the state here is
    // ahead of it (a caller told "parked" then could find the workflow
    // running after a restart), so the answer waits for the ack.
    [self](status_atom) -> caf::result<info_msg> {
      if (!self->state.journaling)
        return info(self);
      auto rp = self->make_response_promise<info_msg>();
      self->state.status_asks.push_back(rp);
      return rp;
    },
    // the manager gave up restarting this workflow's crashing actor
    [self](crash_atom, const std::string& reason) {
      self->state.resumed = true; // nothing pending is re-issued: it stops here
      enqueue(self, {kernel::workflow_crashed{now(self), reason}, {}, 0, 0});
    },
    [self](resume_atom) {
      if (!self->state.resumed) {
        self->state.resumed = true;
        resume(self);
      }
    },
  };
}

} // namespace

workflow_status status_of(const kernel::workflow_state& s) {
  switch (s.at) {
    case kernel::phase::at_gate: return workflow_status::parked;
    case kernel::phase::dead_lettered: return workflow_status::dead_lettered;
    case kernel::phase::completed: return workflow_status::completed;
    case kernel::phase::failed: return workflow_status::failed;
    default: return workflow_status::running;
  }
}

caf::actor spawn_workflow(caf::actor_system& sys, workflow_env env, workflow_row row,
                          nlohmann::json input, uint64_t seed, std::string traceparent) {
  return spawn_workflow(sys, std::move(env), std::move(row),
                        kernel::workflow_started{{}, std::move(input), seed,
                                                 std::move(traceparent)});
}

caf::actor spawn_workflow(caf::actor_system& sys, workflow_env env, workflow_row row,
                          kernel::workflow_started first) {
  beginning b;
  b.first = std::move(first);
  return sys.spawn(workflow, std::move(env), std::move(row), std::move(b));
}

caf::actor spawn_recovered_workflow(caf::actor_system& sys, workflow_env env, workflow_row row,
                                    persistence::loaded_workflow loaded) {
  beginning b;
  b.recovered = true;
  b.loaded = std::move(loaded);
  // lazy: it first runs on resume_atom, after recovery has rebuilt them all
  return sys.spawn<caf::lazy_init>(workflow, std::move(env), std::move(row), std::move(b));
}

} // namespace troupe
