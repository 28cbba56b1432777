// The workflow manager actor (see the header).
#include "actors/workflow_manager_actor.hpp"

#include <cstdio>
#include <unordered_map>
#include <vector>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "actors/workflow_actor.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

struct waiter {
  caf::response_promise promise;
  bool or_parked = false;
  uint64_t id = 0; ///< for expiry
};

struct entry {
  caf::actor actor; ///< null once finished
  info_msg last;
  std::vector<waiter> waiters;
};

struct manager_state {
  manager_env env;
  std::unordered_map<std::string, entry> workflows;
  std::unordered_map<std::string, std::string> by_key;
  std::unordered_map<caf::actor_addr, std::string> by_addr;
  caf::error stopping; ///< set once an exit arrived: quit when by_addr empties
  uint64_t next_waiter = 1;
  static inline const char* name = "troupe.workflow_manager";
};

using self_ptr = caf::stateful_actor<manager_state>*;

bool finished(const info_msg& m) {
  auto s = static_cast<workflow_status>(m.status);
  return s == workflow_status::completed || s == workflow_status::failed;
}

bool settles(const info_msg& m, bool or_parked) {
  return finished(m) || (or_parked && static_cast<workflow_status>(m.status) == workflow_status::parked);
}

void update(self_ptr self, entry& e, info_msg m) {
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
  if (finished(e.last) && e.actor) {
    self->state.by_addr.erase(e.actor.address());
    self->demonitor(e.actor);
    e.actor = nullptr;
  }
}

std::string new_id(self_ptr self, const std::string& def) {
  for (;;) {
    char buf[17];
    std::snprintf(buf, sizeof(buf), "%016llx",
                  static_cast<unsigned long long>(self->state.env.random->next()));
    auto id = def + "-" + std::string{buf, 12};
    if (!self->state.workflows.count(id))
      return id;
  }
}

caf::behavior workflow_manager(self_ptr self, manager_env env) {
  self->state.env = std::move(env);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    auto i = st.by_addr.find(dm.source);
    if (i == st.by_addr.end())
      return;
    auto& e = st.workflows[i->second];
    st.by_addr.erase(i);
    e.actor = nullptr;
    if (st.stopping) {
      if (st.by_addr.empty())
        self->quit(st.stopping);
      return;
    }
    if (finished(e.last))
      return;
    info_msg m = e.last;
    m.status = static_cast<uint8_t>(workflow_status::failed);
    m.outcome = "crashed";
    m.reason = "workflow actor stopped: " + describe(dm.reason);
    spdlog::error("workflow {}: {}", m.id, m.reason);
    update(self, e, std::move(m));
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
    }
    if (st.by_addr.empty())
      self->quit(st.stopping);
  });
  return {
    [self](start_atom, const std::string& def_name, const std::string& input_json,
           const std::string& key) -> caf::result<std::string> {
      auto& st = self->state;
      if (st.stopping)
        return make_error(errc::shutting_down, "the runtime is shutting down");
      if (!key.empty())
        if (auto i = st.by_key.find(key); i != st.by_key.end())
          return i->second;
      auto def = st.env.reg->find_definition(def_name);
      if (!def)
        return make_error(errc::unknown_definition,
                          "no definition named '" + def_name + "' is registered");
      auto input = nlohmann::json::parse(input_json, nullptr, false);
      if (input.is_discarded() || !input.is_object())
        return make_error(errc::invalid_input, "input of a '" + def_name
                                                   + "' workflow must be a JSON object");
      auto id = new_id(self, def_name);
      workflow_env wenv{def, st.env.reg->agents(), st.env.journal, st.env.model,
                        caf::actor_cast<caf::actor>(self), st.env.clock};
      auto a = spawn_workflow(self->system(), std::move(wenv), id, std::move(input),
                              st.env.random->next());
      self->monitor(a);
      auto& e = st.workflows[id];
      e.actor = a;
      e.last.id = id;
      e.last.definition = def_name;
      st.by_addr.emplace(a.address(), id);
      if (!key.empty())
        st.by_key.emplace(key, id);
      return id;
    },
    [self](signal_atom, const signal_msg& s) -> caf::result<caf::message> {
      auto& st = self->state;
      auto i = st.workflows.find(s.workflow_id);
      if (i == st.workflows.end())
        return make_error(errc::unknown_workflow, "no workflow '" + s.workflow_id + "'");
      if (!i->second.actor)
        return make_error(errc::workflow_finished, "workflow '" + s.workflow_id
                                                       + "' has finished; it takes no signals");
      return self->delegate(i->second.actor, signal_atom::value, s);
    },
    [self](await_atom, const std::string& id, bool or_parked,
           uint64_t timeout_ms) -> caf::result<info_msg> {
      auto& st = self->state;
      auto i = st.workflows.find(id);
      if (i == st.workflows.end())
        return make_error(errc::unknown_workflow, "no workflow '" + id + "'");
      if (settles(i->second.last, or_parked))
        return i->second.last;
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
          return;
        }
    },
    [self](status_atom, const std::string& id) -> caf::result<caf::message> {
      auto& st = self->state;
      auto i = st.workflows.find(id);
      if (i == st.workflows.end())
        return make_error(errc::unknown_workflow, "no workflow '" + id + "'");
      if (!i->second.actor)
        return caf::make_message(i->second.last);
      // Ask the live workflow; if it finished meanwhile, its final snapshot
      // (sent before it quit) has arrived here first: answer with that.
      auto rp = self->make_response_promise();
      self->request(i->second.actor, caf::infinite, status_atom::value)
        .then([rp](info_msg& m) mutable { rp.deliver(std::move(m)); },
              [self, rp, id](caf::error&) mutable {
                rp.deliver(self->state.workflows[id].last);
              });
      return rp;
    },
    [self](status_atom, info_msg& m) {
      auto& st = self->state;
      auto i = st.workflows.find(m.id);
      if (i != st.workflows.end())
        update(self, i->second, std::move(m));
    },
  };
}

} // namespace

caf::actor spawn_workflow_manager(caf::actor_system& sys, manager_env env) {
  return sys.spawn(workflow_manager, std::move(env));
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
  return w;
}

} // namespace troupe
