// A runtime's service actors (journal writer, scripted model, workflow
// manager) under CAF's deterministic test coordinator: time only passes when
// a test advances it, and messages only run when it says sched.run().
#pragma once

#include <string>
#include <vector>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/messages.hpp"
#include "actors/scripted_model_actor.hpp"
#include "actors/timer_service.hpp"
#include "actors/workflow_manager_actor.hpp"
#include "kernel/workflow_machine.hpp"
#include "persistence/event_codec.hpp"
#include "persistence/journal_writer_actor.hpp"
#include "runtime/registry.hpp"
#include "troupe/errors.hpp"

#include "support/caf_catch.hpp"

namespace troupe::testing {

/// A journal whose appends fail while `failing` is set.
class flaky_journal : public forwarding_journal {
public:
  using forwarding_journal::forwarding_journal;
  bool failing = false;
  caf::error append(std::vector<journal_write>& batch) override {
    if (failing)
      return make_error(errc::journal_write_failed, "injected: disk full");
    return forwarding_journal::append(batch);
  }
};

/// An agent that asks the model for JSON (script "json") and finishes with
/// the default label and the patch {"<node>": reply}.
inline void json_asker(step_context& ctx) {
  llm_request req;
  req.script = "json";
  req.messages.push_back({"user", "hello model"});
  ask_json(ctx, req, [](step_context& c, nlohmann::json reply) {
    step_outcome o;
    o.patch = {{c.node(), reply}};
    c.finish(o);
  });
}

struct actor_fixture : test_coordinator_fixture<> {
  std::shared_ptr<registry> reg = std::make_shared<registry>();
  std::shared_ptr<flaky_journal> store = std::make_shared<flaky_journal>(make_memory_journal());
  scripted_model_config model_cfg;
  caf::actor journal, model, timers, manager;
  caf::actor notifier; ///< gate webhooks go here if a test sets it (before boot)

  /// Spawns the service actors; call after filling reg and model_cfg.
  void boot() {
    journal = persistence::spawn_journal_writer(sys, store, 64, false, metrics);
    model = spawn_scripted_model(sys, model_cfg);
    timers = spawn_timer_service(sys, nullptr);
    manager = spawn_workflow_manager(sys, manager_config());
    sched.run();
  }

  /// The manager's environment over this fixture's actors and store.
  manager_env manager_config() {
    // a new seed per boot, as a restarted process has: ids must not repeat
    return {reg,   journal,        model,     nullptr, nullptr, seeded_random(++boots),
            store, snapshot_every, passivate, timers, notifier, live, nullptr, nullptr,
            restart_intensity, std::chrono::minutes{1}, metrics};
  }

  uint32_t snapshot_every = 0;
  bool passivate = true;
  uint32_t restart_intensity = 3;
  std::shared_ptr<runtime_metrics> metrics = std::make_shared<runtime_metrics>();
  /// The manager's live workflow actors (tests kill them from here).
  std::shared_ptr<live_workflows> live = std::make_shared<live_workflows>();
  uint64_t boots = 0;

  ~actor_fixture() {
    for (auto& a : {manager, model, journal, timers, notifier})
      if (a)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
  }

  /// Sends to the manager, runs every message (no time passes), returns the reply.
  template <class T, class... Ts>
  caf::expected<T> call(Ts&&... xs) {
    self->send(manager, std::forward<Ts>(xs)...);
    sched.run();
    caf::expected<T> result{caf::error{}};
    bool got = false;
    self->receive([&](T& x) { result = std::move(x); got = true; },
                  [&](caf::error& e) { result = std::move(e); got = true; },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    if (!got)
      result = make_error(errc::await_timeout, "no reply");
    return result;
  }

  std::string start(const std::string& def, nlohmann::json input = nlohmann::json::object()) {
    auto id = call<std::string>(start_atom::value, def, input.dump(), std::string{});
    REQUIRE(id);
    return *id;
  }

  caf::error signal(const std::string& id, const std::string& gate, const std::string& verdict,
                    const std::string& patch = {}) {
    self->send(manager, signal_atom::value, signal_msg{id, gate, verdict, patch, "tester"});
    sched.run();
    caf::error result = make_error(errc::await_timeout, "no reply");
    self->receive([&]() { result = caf::error{}; }, [&](caf::error& e) { result = std::move(e); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    return result;
  }

  info_msg status(const std::string& id) {
    auto r = call<info_msg>(status_atom::value, id);
    REQUIRE(r);
    return *r;
  }

  /// The workflow's journal decoded into kernel events.
  std::vector<kernel::event> events(const std::string& id) {
    auto records = store->read(id);
    REQUIRE(records);
    auto evs = persistence::decode_history(*records);
    REQUIRE(evs);
    return *evs;
  }

  /// "kind node#attempt" per event, for compact assertions.
  std::vector<std::string> trace(const std::string& id) {
    std::vector<std::string> out;
    for (auto& e : events(id)) {
      std::string s = kernel::kind_of(e);
      if (auto p = std::get_if<kernel::step_scheduled>(&e))
        s += " " + p->node + "#" + std::to_string(p->attempt);
      else if (auto p = std::get_if<kernel::step_completed>(&e))
        s += " " + p->node + "#" + std::to_string(p->attempt) + " " + p->label;
      else if (auto p = std::get_if<kernel::step_failed>(&e))
        s += " " + p->node + "#" + std::to_string(p->attempt) + " " + to_string(p->kind);
      else if (auto p = std::get_if<kernel::timer_fired>(&e))
        s += std::string{" "} + kernel::to_string(p->kind);
      else if (auto p = std::get_if<kernel::signal_received>(&e))
        s += " " + p->gate + " " + p->decision;
      out.push_back(s);
    }
    return out;
  }

  /// Time since the test clock's start, for asserting event times.
  kernel::instant now() const {
    return std::chrono::duration_cast<kernel::instant>(sched.clock().now().time_since_epoch());
  }
};

} // namespace troupe::testing
