// The workflow manager actor (see the header).
#include "actors/workflow_manager_actor.hpp"

#include <algorithm>
#include <cstdio>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "actors/workflow_actor.hpp"
#include "persistence/recovery.hpp"
#include "runtime/log_format.hpp"
#include "troupe/errors.hpp"
#include "troupe/trace.hpp"

namespace troupe {

namespace {

struct waiter {
  caf::response_promise promise;
  bool or_parked = false;
  uint64_t id = 0; ///< for expiry
};

// A workflow held in memory: live (actor set) or passive (actor null, parked).
struct entry {
  caf::actor actor;
  info_msg last;          ///< passive: without state_json (the journal has it)
  std::string idempotency_key;
  /// When its timer is due (0: none): a live workflow's deadline timer
  /// (`timer`), which the manager keeps so a passive workflow holds nothing
  /// in CAF's clock; a passive workflow is woken then.
  int64_t wake_at = 0;
  uint64_t timer = 0;
  std::vector<waiter> waiters;
  /// False until the workflow's first write is in the journal; until then
  /// the start calls for it (the first, and any with its key) wait here.
  bool durable = true;
  std::vector<caf::response_promise> starting;
  std::deque<int64_t> crashes; ///< when its actor crashed, within restart_period
};

/// A start with an idempotency key, while the journal is asked for the key.
struct keyed_start {
  start_msg m;
  caf::response_promise rp;
};

struct manager_state {
  manager_env env;
  std::shared_ptr<agent_runners> runners; ///< every workflow's attempts run there
  std::unordered_map<std::string, entry> workflows;
  std::unordered_map<std::string, std::string> by_key; ///< keys of workflows in memory
  /// Starts waiting for the journal writer's answer: is their key journaled?
  std::unordered_map<std::string, std::vector<keyed_start>> key_lookups;
  std::unordered_map<caf::actor_addr, std::string> by_addr;
  std::unordered_map<std::string, std::string> quarantined; ///< id -> why
  std::multimap<int64_t, std::string> wakes; ///< workflows by wake_at
  int64_t wake_armed = 0; ///< earliest wake message in flight (0: none)
  caf::error stopping; ///< set once an exit arrived: quit when by_addr empties
  std::optional<int64_t> journal_floor_ms; ///< no journal row is newer (new_id)
  int64_t id_ms = 0;                       ///< the ms of the last id minted
  std::unordered_set<std::string> ids_this_ms;
  uint64_t next_waiter = 1;
  /// The last workflows to finish, answered from here: an await or status
  /// just after the end (the usual case) does not read the journal on this
  /// thread, where it would wait for the store behind a commit. Terminal
  /// infos never change; a purge clears it.
  std::unordered_map<std::string, info_msg> finished_recently;
  std::deque<std::string> finished_order; ///< oldest first
  /// A replacement manager: the dead one's workflows not yet seen down.
  std::set<caf::actor_addr> adopting;
  bool adopted = true; ///< false until the dead manager's workflows are recovered
  static inline const char* name = "troupe.workflow_manager";

  /// Runs as the manager exits, however it ends (killed too): every call
  /// it still holds is answered interrupted instead of never.
  ~manager_state() {
    auto err = make_error(errc::interrupted, "the workflow manager stopped");
    for (auto& [id, e] : workflows) {
      for (auto& w : e.waiters)
        w.promise.deliver(err);
      for (auto& p : e.starting)
        p.deliver(err);
    }
    for (auto& [key, waiting] : key_lookups)
      for (auto& w : waiting)
        w.rp.deliver(err);
  }
};

using self_ptr = caf::stateful_actor<manager_state>*;

/// How many finished workflows finished_recently keeps.
constexpr size_t finished_kept = 1024;

int64_t now_ns(self_ptr self) {
  if (auto& c = self->state.env.clock)
    return c->now().count();
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
           self->clock().now().time_since_epoch())
    .count();
}

bool finished(const info_msg& m) {
  auto s = static_cast<workflow_status>(m.status);
  return s == workflow_status::completed || s == workflow_status::failed;
}

// An await returns once the workflow finished or waits for an operator in
// dead letter (nothing happens there by itself), or, asked so, parks at a gate.
bool settles(const info_msg& m, bool or_parked) {
  auto s = static_cast<workflow_status>(m.status);
  return finished(m) || s == workflow_status::dead_lettered
         || (or_parked && s == workflow_status::parked);
}

workflow_env env_for(self_ptr self, std::shared_ptr<const definition> def) {
  auto& st = self->state;
  workflow_env w;
  w.def = std::move(def);
  w.agents = st.env.reg->agents();
  w.journal = st.env.journal;
  w.model = st.env.model;
  w.runners = st.runners;
  w.manager = caf::actor_cast<caf::actor>(self);
  w.clock = st.env.clock;
  w.snapshot_every = st.env.snapshot_every;
  w.passivate = st.env.passivate;
  w.timers = st.env.timers;
  w.notifier = st.env.notifier;
  w.sessions = st.env.sessions;
  w.metrics = st.env.metrics;
  w.trace_applied = st.env.trace_applied;
  return w;
}

void track(self_ptr self, const std::string& id, entry& e, caf::actor a) {
  self->monitor(a);
  self->state.by_addr.emplace(a.address(), id);
  self->state.env.live->add(a);
  e.actor = std::move(a);
}

void unschedule_wake(self_ptr self, const std::string& id, entry& e);

void schedule_wake(self_ptr self, const std::string& id, entry& e, int64_t at, uint64_t timer);

// Forgets a finished workflow: the journal answers for it from now on.
void forget(self_ptr self, const std::string& id) {
  auto& st = self->state;
  auto i = st.workflows.find(id);
  if (i == st.workflows.end())
    return;
  if (!i->second.idempotency_key.empty())
    st.by_key.erase(i->second.idempotency_key);
  unschedule_wake(self, id, i->second);
  st.workflows.erase(i);
}

void arm_wakes(self_ptr self) {
  auto& st = self->state;
  if (st.wakes.empty())
    return;
  auto first = st.wakes.begin()->first;
  if (st.wake_armed != 0 && st.wake_armed <= first)
    return; // a wake message that early is on its way
  st.wake_armed = first;
  auto delay = std::chrono::nanoseconds{first - now_ns(self)};
  if (delay <= std::chrono::nanoseconds::zero())
    self->send(self, wake_atom::value, first); // due already
  else
    self->delayed_send(self, delay, wake_atom::value, first);
}

void unschedule_wake(self_ptr self, const std::string& id, entry& e) {
  if (e.wake_at == 0)
    return;
  auto range = self->state.wakes.equal_range(e.wake_at);
  for (auto i = range.first; i != range.second; ++i)
    if (i->second == id) {
      self->state.wakes.erase(i);
      break;
    }
  e.wake_at = 0;
  e.timer = 0;
}

void schedule_wake(self_ptr self, const std::string& id, entry& e, int64_t at, uint64_t timer) {
  if (e.wake_at == at && at != 0) {
    e.timer = timer;
    return;
  }
  unschedule_wake(self, id, e);
  if (at == 0)
    return;
  e.wake_at = at;
  e.timer = timer;
  self->state.wakes.emplace(at, id);
  arm_wakes(self);
}

// Forgets the actor of a workflow that quits by itself (parked or finished).
// No down message will come for it, so a stop waiting for the live ones may
// be complete now.
void untrack(self_ptr self, entry& e) {
  if (!e.actor)
    return;
  auto& st = self->state;
  st.by_addr.erase(e.actor.address());
  st.env.live->remove(e.actor.address());
  self->demonitor(e.actor);
  e.actor = nullptr;
  if (st.stopping && st.by_addr.empty())
    self->quit(st.stopping);
}

// The first word from a new workflow answers its start calls: the id once
// its first write is durable; an error if it stopped before that, in which
// case the journal never had it and it is forgotten.
bool answer_start(self_ptr self, const std::string& id, entry& e, const info_msg& m) {
  e.durable = true;
  auto starting = std::move(e.starting);
  e.starting.clear();
  if (!m.stopped) {
    for (auto& p : starting)
      p.deliver(id);
    return true;
  }
  auto err = make_error(m.outcome == "journal_write_failed" ? errc::journal_write_failed
                                                            : errc::agent_crashed,
                        "workflow " + id + " did not start: " + m.reason);
  for (auto& p : starting)
    p.deliver(err);
  for (auto& w : e.waiters)
    w.promise.deliver(err);
  e.waiters.clear();
  untrack(self, e);
  forget(self, id);
  return false;
}

void remember_finished(self_ptr self, info_msg m) {
  auto& st = self->state;
  auto id = m.id;
  if (!st.finished_recently.emplace(id, std::move(m)).second)
    return;
  st.finished_order.push_back(std::move(id));
  if (st.finished_order.size() > finished_kept) {
    st.finished_recently.erase(st.finished_order.front());
    st.finished_order.pop_front();
  }
}

void update(self_ptr self, const std::string& id, entry& e, info_msg m) {
  if (!e.durable && !answer_start(self, id, e, m))
    return;
  auto passive = m.passive;
  auto wake_at = m.wake_at_ns;
  e.last = std::move(m);
  auto& ws = e.waiters;
  for (auto i = ws.begin(); i != ws.end();) {
    if (settles(e.last, i->or_parked)) {
      i->promise.deliver(e.last);
      i = ws.erase(i);
    } else {
      ++i;
    }
  }
  if (finished(e.last) || passive)
    untrack(self, e);
  if (finished(e.last)) {
    if (!e.last.stopped) { // else kept: the journal still has it open
      remember_finished(self, std::move(e.last)); // e goes with forget()
      forget(self, id);
    }
    return;
  }
  if (passive) {
    e.last.state_json.clear();
    e.last.passive = false;
    schedule_wake(self, id, e, wake_at, e.timer);
  }
}

info_msg info_of(const workflow_row& row, const persistence::loaded_workflow* wf) {
  info_msg m;
  m.id = row.id;
  m.definition = row.definition;
  m.outcome = row.outcome;
  if (row.status == "parked")
    m.status = static_cast<uint8_t>(workflow_status::parked);
  else if (row.status == "dead_lettered")
    m.status = static_cast<uint8_t>(workflow_status::dead_lettered);
  else if (row.status == "completed")
    m.status = static_cast<uint8_t>(workflow_status::completed);
  else if (row.status == "failed")
    m.status = static_cast<uint8_t>(workflow_status::failed);
  if (wf) {
    m.node = wf->state.node;
    m.outcome = wf->state.outcome;
    m.reason = wf->state.reason;
    m.state_json = wf->state.data.dump();
    m.steps = wf->state.steps;
    m.tokens = wf->state.tokens;
    m.cost_nusd = wf->state.cost_nusd;
  }
  return m;
}

// A workflow's info as the journal has it (not live, not passive in memory).
caf::expected<info_msg> from_journal(self_ptr self, const std::string& id) {
  auto& st = self->state;
  if (auto q = st.quarantined.find(id); q != st.quarantined.end())
    return make_error(errc::journal_corrupt, "workflow '" + id + "' is quarantined: " + q->second);
  if (auto f = st.finished_recently.find(id); f != st.finished_recently.end())
    return f->second;
  auto row = st.env.store->workflow(id);
  if (!row)
    return row.error();
  auto def = st.env.reg->find_definition(row->definition);
  if (!def)
    return info_of(*row, nullptr); // a definition not registered here: the row says enough
  auto wf = persistence::load_workflow(*st.env.store, *def, id);
  if (!wf)
    return wf.error();
  return info_of(*row, &*wf);
}

// Rebuilds a passive workflow's actor from the journal. On a journal error
// the workflow is quarantined and left as the journal has it.
caf::expected<caf::actor> wake(self_ptr self, const std::string& id) {
  auto& st = self->state;
  auto& e = st.workflows.at(id);
  if (e.actor)
    return e.actor;
  auto quarantine = [&](caf::error err) -> caf::error {
    auto why = describe(err);
    log_about({id}, spdlog::level::err, "workflow {}: quarantined: {}", id, why);
    for (auto& w : e.waiters)
      w.promise.deliver(err);
    unschedule_wake(self, id, e);
    st.quarantined.emplace(id, why);
    forget(self, id);
    return err;
  };
  auto def = st.env.reg->find_definition(e.last.definition);
  if (!def)
    return quarantine(make_error(errc::unknown_definition,
                                 "definition '" + e.last.definition + "' is not registered"));
  auto row = st.env.store->workflow(id);
  if (!row)
    return quarantine(row.error());
  auto wf = persistence::load_workflow(*st.env.store, *def, id);
  if (!wf)
    return quarantine(wf.error());
  unschedule_wake(self, id, e);
  track(self, id, e,
        spawn_recovered_workflow(self->system(), env_for(self, def), std::move(*row),
                                 std::move(*wf)));
  self->send(e.actor, resume_atom::value); // before the signal that woke it
  return e.actor;
}

// Rebuilds one open workflow at recovery: passive if parked, else live
// (added to `live`, to be sent resume_atom once every workflow is rebuilt).
caf::error recover_one(self_ptr self, workflow_row& row, recovery_report& rep,
                       std::vector<caf::actor>& live) {
  auto& st = self->state;
  auto def = st.env.reg->find_definition(row.definition);
  if (!def)
    return make_error(errc::unknown_definition,
                      "definition '" + row.definition + "' is not registered");
  if (def->version != row.version)
    return make_error(errc::unknown_definition,
                      "journaled with version " + std::to_string(row.version) + " of '"
                        + row.definition + "', registered is version "
                        + std::to_string(def->version));
  auto wf = persistence::load_workflow(*st.env.store, *def, row.id);
  if (!wf)
    return wf.error();
  auto id = row.id;
  auto& e = st.workflows[id];
  e.last = info_of(row, &*wf);
  e.idempotency_key = row.idempotency_key;
  if (!row.idempotency_key.empty())
    st.by_key.emplace(row.idempotency_key, id);
  if (st.env.passivate
      && (wf->state.at == kernel::phase::at_gate || wf->state.at == kernel::phase::dead_lettered)) {
    e.last.state_json.clear();
    int64_t at = 0;
    for (auto& [tid, t] : wf->state.timers)
      if (at == 0 || t.fire_at.count() < at)
        at = t.fire_at.count();
    schedule_wake(self, id, e, at, 0);
    ++rep.parked;
    return {};
  }
  track(self, id, e,
        spawn_recovered_workflow(self->system(), env_for(self, def), std::move(row),
                                 std::move(*wf)));
  live.push_back(e.actor);
  ++rep.resumed;
  return {};
}

/// Ids minted within one ms of the id clock before it moves on (new_id).
constexpr size_t max_ids_per_ms = 4096;

// "<definition>-<12 hex: ms><8 hex: random>", and the workflow's created_ns.
// The ms is the clock's (since the epoch with the runtime's default clock),
// raised if needed above every row of the journal (created_ns_bound, read
// at the first start) and never below the previous id's. So no row of the
// journal can have the id, ids minted here differ in time or in the random
// part (checked against the others of the same ms), and no start waits for
// a journal read. Time first: the workflows in flight have neighbouring ids
// and their journal writes touch a few index pages, not one page each.
caf::expected<std::pair<std::string, int64_t>> new_id(self_ptr self, const std::string& def) {
  auto& st = self->state;
  if (!st.journal_floor_ms) {
    auto bound = st.env.store->created_ns_bound();
    if (!bound)
      return bound.error();
    st.journal_floor_ms = *bound / 1'000'000;
  }
  auto now = now_ns(self);
  auto ms = std::max({now / 1'000'000, *st.journal_floor_ms + 1, st.id_ms});
  // A clock that stands still, or reads behind the journal, would keep ms
  // (and ids_this_ms) forever: past a bound, ids move on to the next ms.
  if (ms == st.id_ms && st.ids_this_ms.size() >= max_ids_per_ms)
    ++ms;
  if (ms != st.id_ms) {
    st.id_ms = ms;
    st.ids_this_ms.clear();
  }
  for (;;) {
    char buf[21];
    std::snprintf(buf, sizeof(buf), "%012llx%08llx",
                  static_cast<unsigned long long>(ms) & 0xffffffffffffULL,
                  static_cast<unsigned long long>(st.env.random->next() & 0xffffffffULL));
    auto id = def + "-" + buf;
    if (st.ids_this_ms.insert(id).second)
      return std::make_pair(std::move(id), std::max(now, ms * 1'000'000));
  }
}

// A start whose key belongs to a workflow in memory gets that workflow's
// id, now or once its first write is durable. False: the key is not here.
bool join_same_key(self_ptr self, const std::string& key, caf::response_promise& rp) {
  auto& st = self->state;
  auto i = st.by_key.find(key);
  if (i == st.by_key.end())
    return false;
  auto& e = st.workflows.at(i->second);
  if (e.durable)
    rp.deliver(i->second);
  else
    e.starting.push_back(rp);
  return true;
}

// Starts a new workflow; `rp` gets its id once its first write is durable
// (see answer_start), or the reason it cannot start.
void start_new(self_ptr self, const start_msg& m, caf::response_promise& rp) {
  auto& st = self->state;
  auto def = st.env.reg->find_definition(m.definition);
  if (!def) {
    rp.deliver(make_error(errc::unknown_definition,
                          "no definition named '" + m.definition + "' is registered"));
    return;
  }
  auto input = nlohmann::json::parse(m.input_json, nullptr, false);
  if (input.is_discarded() || !input.is_object()) {
    rp.deliver(make_error(errc::invalid_input,
                          "input of a '" + m.definition + "' workflow must be a JSON object"));
    return;
  }
  if (!m.start_node.empty()) { // the kernel would refuse it; say so before spawning
    const node* n = def->find(m.start_node);
    if (n == nullptr || n->kind == node_kind::terminal) {
      rp.deliver(make_error(errc::invalid_input,
                            "a '" + m.definition + "' workflow cannot start at '" + m.start_node
                              + "': " + (n == nullptr ? "no such node" : "it is a terminal")));
      return;
    }
  }
  auto minted = new_id(self, m.definition);
  if (!minted) {
    rp.deliver(minted.error());
    return;
  }
  auto& [id, created_ns] = *minted;
  workflow_row row;
  row.id = id;
  row.definition = m.definition;
  row.version = def->version;
  row.idempotency_key = m.key;
  row.created_ns = created_ns;
  row.user = m.user;
  auto& e = st.workflows[id];
  e.last.id = id;
  e.last.definition = m.definition;
  e.idempotency_key = m.key;
  e.durable = false;
  e.starting.push_back(rp);
  kernel::workflow_started first{{}, std::move(input), st.env.random->next(), m.traceparent};
  first.start_node = m.start_node;
  first.model = m.model;
  first.forked_from = m.forked_from;
  first.forked_at = m.forked_at;
  track(self, id, e,
        spawn_workflow(self->system(), env_for(self, def), std::move(row), std::move(first)));
  if (!m.key.empty())
    st.by_key.emplace(m.key, id);
}

// Asks the journal writer whether a key not in memory is in the journal:
// the store's lock is held through every commit, and the manager must not
// wait on it. Starts with the same key wait for the one answer.
void look_up_key(self_ptr self, keyed_start s) {
  auto& st = self->state;
  auto key = s.m.key;
  auto& waiting = st.key_lookups[key];
  waiting.push_back(std::move(s));
  if (waiting.size() > 1)
    return;
  auto answer = [self, key](caf::expected<std::string> owner) {
    auto& st = self->state;
    auto node = st.key_lookups.extract(key);
    if (node.empty())
      return; // answered shutting_down by the stop
    for (auto& w : node.mapped()) {
      if (!owner)
        w.rp.deliver(owner.error());
      else if (!owner->empty())
        w.rp.deliver(*owner); // in the journal: that workflow, as before a restart
      else if (st.stopping)
        w.rp.deliver(make_error(errc::shutting_down, "the runtime is shutting down"));
      else if (!join_same_key(self, key, w.rp)) // the first one starts it, the rest join
        start_new(self, w.m, w.rp);
    }
  };
  self->request(st.env.journal, caf::infinite, key_atom::value, key)
    .then([answer](std::string& owner) { answer(std::move(owner)); },
          [answer](caf::error& err) { answer(std::move(err)); });
}

// Routes a signal to the workflow's actor, waking it if passive. If the
// actor passivated while the signal was on its way (the signal bounced),
// it is woken and the signal sent again.
void route_signal(self_ptr self, const signal_msg& s, caf::response_promise rp) {
  auto& st = self->state;
  auto i = st.workflows.find(s.workflow_id);
  if (i == st.workflows.end()) {
    auto info = from_journal(self, s.workflow_id);
    if (!info)
      rp.deliver(is(info.error(), errc::unknown_workflow)
                   ? make_error(errc::unknown_workflow, "no workflow '" + s.workflow_id + "'")
                   : info.error());
    else if (finished(*info))
      rp.deliver(make_error(errc::workflow_finished,
                            "workflow '" + s.workflow_id + "' has finished; it takes no signals"));
    else
      rp.deliver(make_error(errc::unknown_workflow, "workflow '" + s.workflow_id
                                                      + "' is in the journal but not recovered"));
    return;
  }
  if (finished(i->second.last)) { // stopped here (see info_msg::stopped)
    rp.deliver(make_error(errc::workflow_finished,
                          "workflow '" + s.workflow_id + "' stopped (" + i->second.last.outcome
                            + "); recover() resumes it from the journal"));
    return;
  }
  auto a = wake(self, s.workflow_id);
  if (!a) {
    rp.deliver(a.error());
    return;
  }
  self->request(*a, caf::infinite, signal_atom::value, s)
    .then([rp]() mutable { rp.deliver(caf::unit); },
          [self, s, rp, sent_to = *a](caf::error& err) mutable {
            auto& st = self->state;
            auto j = st.workflows.find(s.workflow_id);
            if (err == caf::sec::request_receiver_down && j != st.workflows.end()
                && j->second.actor != sent_to) {
              route_signal(self, s, rp); // it passivated meanwhile
              return;
            }
            rp.deliver(std::move(err));
          });
}

// Rebuilds every workflow the journal has open and memory does not hold
// (recover_atom, and a replacement manager at its start).
caf::expected<recovery_report> recover_all(self_ptr self) {
  auto& st = self->state;
  auto rows = st.env.store->open_workflows();
  if (!rows)
    return rows.error();
  recovery_report rep;
  std::vector<caf::actor> live;
  for (auto& row : *rows) {
    if (auto i = st.workflows.find(row.id); i != st.workflows.end()) {
      if (!i->second.last.stopped)
        continue; // live or passive already
      st.workflows.erase(i); // stopped here: resume it from the journal
    }
    if (st.quarantined.count(row.id))
      continue;
    auto id = row.id;
    if (auto err = recover_one(self, row, rep, live)) {
      auto why = describe(err);
      log_about({id}, spdlog::level::err, "workflow {}: quarantined: {}", id, why);
      st.quarantined.emplace(id, why);
      rep.quarantined.push_back(id + ": " + why);
    }
  }
  for (auto& a : live)
    self->send(a, resume_atom::value);
  arm_wakes(self);
  return rep;
}

// A workflow actor crashed (not a journal failure, not a stop): rebuild it
// from the journal, OTP-style, once the journal writer has committed what it
// sent (an empty write is acknowledged after them). Up to restart_intensity
// crashes within restart_period it resumes; past that it is rebuilt only to
// be dead-lettered, so a workflow whose transitions crash for good waits
// for an operator instead of looping. False if it cannot be rebuilt (it
// stays stopped, for recover()).
bool restart_crashed(self_ptr self, const std::string& id, entry& e, const std::string& why) {
  auto& st = self->state;
  auto def = st.env.reg->find_definition(e.last.definition);
  if (!def)
    return false;
  auto now = now_ns(self);
  auto& c = e.crashes;
  while (!c.empty() && c.front() <= now - st.env.restart_period.count())
    c.pop_front();
  c.push_back(now);
  bool give_up = c.size() > st.env.restart_intensity;
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(st.env.restart_period).count();
  auto what = "its actor crashed " + std::to_string(c.size()) + " times within "
              + std::to_string(secs) + " s: " + why;
  self->request(st.env.journal, caf::infinite, append_atom::value, journal_write{})
    .then(
      [self, id, def, give_up, what](uint64_t) {
        auto& st = self->state;
        auto i = st.workflows.find(id);
        if (i == st.workflows.end() || i->second.actor || st.stopping)
          return; // woken or forgotten meanwhile
        auto& e = i->second;
        auto row = st.env.store->workflow(id);
        auto wf = row ? persistence::load_workflow(*st.env.store, *def, id)
                      : caf::expected<persistence::loaded_workflow>{row.error()};
        if (!wf || wf->state.finished()) {
          log_about({id}, spdlog::level::err, "workflow {}: not restarted: {}", id,
                    wf ? "finished" : describe(wf.error()));
          return;
        }
        auto trace = trace_id_of(id, wf->state.traceparent);
        log_context about{id, trace, wf->state.node, wf->state.attempt};
        if (give_up)
          log_about(about, spdlog::level::err, "workflow {}: dead-lettered: {}", id, what);
        else
          log_about(about, spdlog::level::warn, "workflow {}: restarted: {}", id, what);
        track(self, id, e,
              spawn_recovered_workflow(self->system(), env_for(self, def), std::move(*row),
                                       std::move(*wf)));
        if (give_up) {
          self->send(e.actor, crash_atom::value, what);
        } else {
          if (st.env.metrics)
            st.env.metrics->workflow_actor_restarted();
          self->send(e.actor, resume_atom::value);
        }
      },
      [id](caf::error& err) {
        log_about({id}, spdlog::level::err,
                  "workflow {}: not restarted: the journal writer failed: {}", id, describe(err));
      });
  return true;
}

caf::behavior requests(self_ptr self);

// A replacement manager, once the dead one's workflows are all down: waits
// until the journal writer has committed what they sent (an empty write is
// acknowledged after every write queued before it), then recovers them and
// starts answering requests.
void adopt(self_ptr self) {
  self->request(self->state.env.journal, caf::infinite, append_atom::value, journal_write{})
    .then(
      [self](uint64_t) {
        auto rep = recover_all(self);
        if (!rep) {
          spdlog::error("workflow manager (restarted): recovery failed: {}",
                        describe(rep.error()));
          self->quit(rep.error());
          return;
        }
        spdlog::warn("workflow manager (restarted): resumed {}, parked {}, quarantined {}",
                     rep->resumed, rep->parked, rep->quarantined.size());
        self->state.adopted = true;
        self->set_default_handler(caf::print_and_drop);
        self->become(requests(self)); // requests that waited are handled now
      },
      [self](caf::error& err) {
        spdlog::error("workflow manager (restarted): the journal writer did not answer: {}",
                      describe(err));
        self->quit(err);
      });
}

caf::behavior workflow_manager(self_ptr self, manager_env env) {
  self->state.env = std::move(env);
  auto& sys = self->system();
  self->state.runners = std::make_shared<agent_runners>(
    sys, self->state.env.model, self->state.env.journal,
    std::max<size_t>(1, sys.scheduler().num_workers()), self->state.env.models,
    self->state.env.clock);
  // The runners stop with the manager, after every workflow is down.
  self->attach_functor(
    [runners = self->state.runners](const caf::error&) { runners->stop(); });
  // However the manager ends, no workflow actor outlives it: one that did
  // could write beside the workflow a replacement recovers.
  if (!self->state.env.live)
    self->state.env.live = std::make_shared<live_workflows>();
  self->attach_functor([live = self->state.env.live](const caf::error&) {
    for (auto& a : live->all())
      caf::anon_send_exit(a, caf::exit_reason::kill);
  });
  if (auto old = std::move(self->state.env.adopt_from)) {
    auto& st = self->state;
    st.adopted = false;
    for (auto& a : old->all()) {
      st.adopting.insert(a.address());
      self->monitor(a); // a dead one's down message comes at once
    }
    self->set_default_handler(caf::skip); // requests wait until adopt() is done
    if (st.adopting.empty())
      adopt(self);
  }
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    if (st.adopting.erase(dm.source) > 0) {
      if (st.adopting.empty())
        adopt(self);
      return;
    }
    auto i = st.by_addr.find(dm.source);
    if (i == st.by_addr.end())
      return;
    auto id = i->second;
    auto& e = st.workflows[id];
    st.by_addr.erase(i);
    st.env.live->remove(dm.source);
    e.actor = nullptr;
    if (st.stopping) {
      if (st.by_addr.empty())
        self->quit(st.stopping);
      return;
    }
    if (!e.last.stopped && e.durable && !finished(e.last)
        && restart_crashed(self, id, e, describe(dm.reason)))
      return; // its waiters wait on for the new actor
    info_msg m = e.last;
    m.status = static_cast<uint8_t>(workflow_status::failed);
    m.outcome = "crashed";
    m.reason = "workflow actor stopped: " + describe(dm.reason);
    m.stopped = true;
    log_about({m.id}, spdlog::level::err, "workflow {}: {}", m.id, m.reason);
    update(self, id, e, std::move(m));
  });
  // Stops every live workflow and quits once all of them are down, so the
  // journal writer and model outlive every workflow that may still call them.
  self->set_exit_handler([self](caf::exit_msg& em) {
    auto& st = self->state;
    st.stopping = em.reason ? em.reason : caf::error{caf::exit_reason::user_shutdown};
    for (auto& [id, e] : st.workflows) {
      if (e.actor)
        self->send_exit(e.actor, em.reason);
      for (auto& w : e.waiters)
        w.promise.deliver(make_error(errc::shutting_down, "workflow " + id));
      e.waiters.clear();
      for (auto& p : e.starting) // its first write may or may not land: its key tells
        p.deliver(make_error(errc::shutting_down, "workflow " + id + " was starting"));
      e.starting.clear();
    }
    for (auto& [key, waiting] : st.key_lookups)
      for (auto& w : waiting)
        w.rp.deliver(make_error(errc::shutting_down, "the runtime is shutting down"));
    st.key_lookups.clear();
    if (st.by_addr.empty())
      self->quit(st.stopping);
  });
  if (!self->state.adopted)
    return caf::behavior{[](tick_atom) {}}; // adopt() turns to the requests
  return requests(self);
}

// A start (or fork): answered once the workflow_started event is durable
// (see answer_start), so an id returned is an id the journal has, even if
// the process dies next.
caf::result<std::string> take_start(self_ptr self, const start_msg& m) {
  auto& st = self->state;
  if (st.stopping)
    return make_error(errc::shutting_down, "the runtime is shutting down");
  if (!m.traceparent.empty())
    if (auto parent = parse_traceparent(m.traceparent); !parent)
      return make_error(errc::invalid_input,
                        "a '" + m.definition + "' workflow: " + context_of(parent.error()));
  auto rp = self->make_response_promise();
  if (m.key.empty())
    start_new(self, m, rp);
  else if (!join_same_key(self, m.key, rp)) // not in memory: in the journal?
    look_up_key(self, {m, rp});
  return rp;
}

// What the manager answers: the protocol in the header.
caf::behavior requests(self_ptr self) {
  return {
    [self](start_atom, const start_msg& m) { return take_start(self, m); },
    // the plain forms: no options
    [self](start_atom, const std::string& def_name, const std::string& input_json,
           const std::string& key, const std::string& user) {
      start_msg m;
      m.definition = def_name;
      m.input_json = input_json;
      m.key = key;
      m.user = user;
      return take_start(self, m);
    },
    [self](start_atom, const std::string& def_name, const std::string& input_json,
           const std::string& key) {
      start_msg m;
      m.definition = def_name;
      m.input_json = input_json;
      m.key = key;
      return take_start(self, m);
    },
    [self](signal_atom, const signal_msg& s) {
      auto rp = self->make_response_promise();
      route_signal(self, s, rp);
      return rp;
    },
    [self](await_atom, const std::string& id, bool or_parked,
           uint64_t timeout_ms) -> caf::result<info_msg> {
      auto& st = self->state;
      auto i = st.workflows.find(id);
      if (i == st.workflows.end()) {
        auto info = from_journal(self, id);
        if (!info)
          return is(info.error(), errc::unknown_workflow)
                   ? make_error(errc::unknown_workflow, "no workflow '" + id + "'")
                   : info.error();
        if (settles(*info, or_parked))
          return std::move(*info);
        return make_error(errc::unknown_workflow,
                          "workflow '" + id + "' is in the journal but not recovered");
      }
      if (settles(i->second.last, or_parked)) {
        if (i->second.actor || finished(i->second.last))
          return i->second.last;
        auto info = from_journal(self, id); // passive: its state is in the journal
        if (!info)
          return info.error();
        return std::move(*info);
      }
      auto rp = self->make_response_promise<info_msg>();
      auto wid = st.next_waiter++;
      i->second.waiters.push_back({rp, or_parked, wid});
      if (timeout_ms > 0)
        self->delayed_send(self, std::chrono::milliseconds{timeout_ms}, await_atom::value, id,
                           wid);
      return rp;
    },
    // A waiter's time ran out: answer it and forget it.
    [self](await_atom, const std::string& id, uint64_t wid) {
      auto i = self->state.workflows.find(id);
      if (i == self->state.workflows.end())
        return;
      auto& ws = i->second.waiters;
      for (auto w = ws.begin(); w != ws.end(); ++w)
        if (w->id == wid) {
          w->promise.deliver(make_error(errc::await_timeout, "workflow '" + id
                                                                 + "' did not settle in time"));
          ws.erase(w);
          break;
        }

    },
    [self](status_atom, const std::string& id) -> caf::result<caf::message> {
      auto& st = self->state;
      auto i = st.workflows.find(id);
      if (i == st.workflows.end() || (!i->second.actor && !finished(i->second.last))) {
        auto info = from_journal(self, id); // finished and forgotten, or passive
        if (!info)
          return is(info.error(), errc::unknown_workflow)
                   ? make_error(errc::unknown_workflow, "no workflow '" + id + "'")
                   : info.error();
        return caf::make_message(std::move(*info));
      }
      if (!i->second.actor)
        return caf::make_message(i->second.last);
      // Ask the live workflow; if it finished or passivated meanwhile, its
      // last snapshot (sent before it quit) has arrived here first.
      auto rp = self->make_response_promise();
      self->request(i->second.actor, caf::infinite, status_atom::value)
        .then([rp](info_msg& m) mutable { rp.deliver(std::move(m)); },
              [self, rp, id](caf::error&) mutable {
                auto info = from_journal(self, id);
                if (info)
                  rp.deliver(std::move(*info));
                else
                  rp.deliver(info.error());
              });
      return rp;
    },
    [self](status_atom, info_msg& m) {
      auto& st = self->state;
      auto id = m.id; // update() moves m
      auto i = st.workflows.find(id);
      if (i != st.workflows.end())
        update(self, id, i->second, std::move(m));
    },
    // A live workflow's deadline timer: kept here, not in CAF's clock, so the
    // workflow leaves nothing behind when it passivates.
    [self](timer_atom, const std::string& id, uint64_t timer, int64_t fire_at) {
      auto i = self->state.workflows.find(id);
      if (i != self->state.workflows.end())
        schedule_wake(self, id, i->second, fire_at, timer);
    },
    // Fires every due timer: a live workflow's deadline, or a passive
    // workflow's wake-up.
    [self](wake_atom, int64_t armed_for) {
      auto& st = self->state;
      if (armed_for == st.wake_armed)
        st.wake_armed = 0;
      auto now = now_ns(self);
      while (!st.wakes.empty() && st.wakes.begin()->first <= now) {
        auto id = st.wakes.begin()->second;
        st.wakes.erase(st.wakes.begin());
        auto i = st.workflows.find(id);
        if (i == st.workflows.end())
          continue;
        auto& e = i->second;
        auto timer = e.timer;
        e.wake_at = 0;
        e.timer = 0;
        if (e.actor)
          self->send(e.actor, timer_atom::value, timer); // its deadline
        else if (!st.stopping && !finished(e.last))
          (void) wake(self, id); // quarantined (and logged) on error
      }
      arm_wakes(self);
    },
    // Purges through the journal writer, then forgets the finished
    // workflows it remembers: any of them may be gone from the journal now.
    [self](purge_atom, int64_t before_ns) -> caf::result<uint64_t> {
      auto rp = self->make_response_promise<uint64_t>();
      self->request(self->state.env.journal, caf::infinite, purge_atom::value, before_ns)
        .then(
          [self, rp](uint64_t n) mutable {
            self->state.finished_recently.clear();
            self->state.finished_order.clear();
            rp.deliver(n);
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](recover_atom) -> caf::result<recovery_report> {
      if (self->state.stopping)
        return make_error(errc::shutting_down, "the runtime is shutting down");
      auto rep = recover_all(self);
      if (!rep)
        return rep.error();
      return std::move(*rep);
    },
  };
}

} // namespace

caf::actor spawn_workflow_manager(caf::actor_system& sys, manager_env env) {
  return sys.spawn(workflow_manager, std::move(env));
}

void live_workflows::add(const caf::actor& a) {
  std::lock_guard<std::mutex> guard{mtx};
  actors.emplace(a.id(), a);
}

void live_workflows::remove(const caf::actor_addr& a) {
  std::lock_guard<std::mutex> guard{mtx};
  actors.erase(a.id());
}

std::vector<caf::actor> live_workflows::all() {
  std::lock_guard<std::mutex> guard{mtx};
  std::vector<caf::actor> out;
  for (auto& [id, a] : actors)
    out.push_back(a);
  return out;
}

workflow_info to_info(const info_msg& m) {
  workflow_info w;
  w.id = m.id;
  w.definition = m.definition;
  w.status = static_cast<workflow_status>(m.status);
  w.node = m.node;
  w.outcome = m.outcome;
  w.reason = m.reason;
  w.state = nlohmann::json::parse(m.state_json.empty() ? "{}" : m.state_json, nullptr, false);
  w.steps = m.steps;
  w.tokens = m.tokens;
  w.cost_usd = to_usd(m.cost_nusd);
  return w;
}

} // namespace troupe
