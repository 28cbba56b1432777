// The supervisor actor (troupe/supervisor.hpp). It decides nothing itself:
// kernel::on_exit says what an exit leads to, and this actor carries the
// plan out one step at a time (stop a child and wait for its down message
// or its shutdown time, wait the backoff, start a child). Exits that arrive
// while a plan runs wait their turn; an exit of a child instance that a plan
// has since replaced is dropped.
#include "troupe/supervisor.hpp"

#include <deque>
#include <map>
#include <memory>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/atoms.hpp"
#include "kernel/supervision.hpp"
#include "troupe/errors.hpp"

namespace troupe {

const char* to_string(supervision_event::kind k) {
  using K = supervision_event::kind;
  switch (k) {
    case K::started: return "started";
    case K::exited: return "exited";
    case K::stopping: return "stopping";
    case K::killed: return "killed";
    case K::escalated: return "escalated";
    case K::stopped: return "stopped";
  }
  return "?";
}

namespace {

using stop_late_atom = caf::atom_constant<caf::atom("stoplate")>;
using backoff_atom = caf::atom_constant<caf::atom("backoff")>;

kernel::exit_kind kind_of(const caf::error& reason) {
  if (!reason || reason == caf::exit_reason::normal)
    return kernel::exit_kind::normal;
  if (reason == caf::exit_reason::user_shutdown)
    return kernel::exit_kind::shutdown;
  return kernel::exit_kind::abnormal;
}

class supervisor_actor final : public caf::event_based_actor {
public:
  supervisor_actor(caf::actor_config& cfg, supervisor_spec spec, kernel::sup_state initial)
    : caf::event_based_actor(cfg), spec_(std::move(spec)), state_(std::move(initial)) {
    for (auto& c : spec_.children)
      kids_[c.id].spec = c;
  }

  const char* name() const override { return "troupe.supervisor"; }

  caf::behavior make_behavior() override {
    set_down_handler([this](caf::down_msg& dm) { on_down(dm); });
    set_exit_handler([this](caf::exit_msg& em) { shut_down(em.reason); });
    // However it ends (killed too), no child outlives it.
    attach_functor([live = live_](const caf::error&) {
      for (auto& [id, h] : *live)
        caf::anon_send_exit(h, caf::exit_reason::kill);
    });
    for (auto& c : spec_.children)
      work_.push_back({step::start, c.id});
    run();
    return {
      [this](children_atom) {
        std::vector<child_info> out;
        for (auto& c : state_.children) {
          auto& k = kids_[c.id];
          out.push_back({c.id, k.alive ? k.handle : caf::actor{}, k.alive, k.starts});
        }
        return out;
      },
      [this](stop_late_atom, uint64_t gen) {
        if (gen == gen_ && awaiting_) {
          auto& k = kids_[awaiting_id_];
          emit(supervision_event::kind::killed, awaiting_id_,
               "did not stop within its shutdown time");
          send_exit(k.handle, caf::exit_reason::kill);
        }
      },
      [this](backoff_atom, uint64_t gen) {
        if (gen == gen_ && waiting_) {
          waiting_ = false;
          run();
        }
      },
    };
  }

private:
  struct kid {
    child_spec spec;
    caf::actor handle;
    bool alive = false;
    uint64_t starts = 0;
  };

  struct step {
    enum op_t { stop, wait, start, quit } op;
    std::string id;         ///< stop, start
    duration delay{0};      ///< wait
    caf::error reason{};    ///< quit
    bool escalation = false; ///< quit
  };

  kernel::instant now() {
    return std::chrono::duration_cast<kernel::instant>(clock().now().time_since_epoch());
  }

  void emit(supervision_event::kind k, const std::string& child, const std::string& what) {
    supervision_event e{k, spec_.name, child, what};
    auto level = k == supervision_event::kind::started || k == supervision_event::kind::stopping
                   ? spdlog::level::info
                   : spdlog::level::warn;
    spdlog::log(level, "supervisor '{}': {}{}{}", spec_.name,
                child.empty() ? "" : "child '" + child + "' ", to_string(k),
                what.empty() ? "" : ": " + what);
    if (spec_.observer)
      spec_.observer(e);
  }

  /// Carries out queued steps until one has to wait (a child stopping, a
  /// backoff); then the queued exits, one plan at a time.
  void run() {
    while (!awaiting_ && !waiting_) {
      if (work_.empty()) {
        if (exits_.empty())
          return;
        auto [addr, reason] = exits_.front();
        exits_.pop_front();
        handle_exit(addr, reason);
        continue;
      }
      auto s = std::move(work_.front());
      work_.pop_front();
      switch (s.op) {
        case step::stop: stop_child(s.id); break;
        case step::wait:
          if (s.delay > duration::zero()) {
            waiting_ = true;
            delayed_send(this, s.delay, backoff_atom::value, ++gen_);
          }
          break;
        case step::start: start_child(s.id); break;
        case step::quit:
          emit(s.escalation ? supervision_event::kind::escalated
                            : supervision_event::kind::stopped,
               "", s.reason ? describe(s.reason) : "");
          quit(s.reason);
          return;
      }
    }
  }

  void start_child(const std::string& id) {
    auto& k = kids_[id];
    caf::actor h;
    std::string why;
    try {
      h = k.spec.start(system());
      if (!h)
        why = "its start function returned no actor";
    } catch (const std::exception& e) {
      why = std::string{"its start function threw: "} + e.what();
    } catch (...) {
      why = "its start function threw";
    }
    ++k.starts;
    if (!h) { // a crash at birth: decided like any other abnormal exit
      k.alive = false;
      apply(id, kernel::exit_kind::abnormal, "failed to start: " + why);
      return;
    }
    if (k.handle)
      by_addr_.erase(k.handle.address());
    k.handle = h;
    k.alive = true;
    by_addr_[h.address()] = id;
    (*live_)[id] = h;
    monitor(h);
    emit(supervision_event::kind::started, id, k.starts > 1 ? "restart" : "");
  }

  void stop_child(const std::string& id) {
    auto& k = kids_[id];
    if (!k.alive)
      return; // already down: its queued exit is moot now
    emit(supervision_event::kind::stopping, id, "");
    awaiting_ = k.handle.address();
    awaiting_id_ = id;
    if (k.spec.shutdown <= duration::zero()) {
      send_exit(k.handle, caf::exit_reason::kill);
      return;
    }
    send_exit(k.handle, caf::exit_reason::user_shutdown);
    delayed_send(this, k.spec.shutdown, stop_late_atom::value, ++gen_);
  }

  void on_down(caf::down_msg& dm) {
    auto i = by_addr_.find(dm.source);
    if (i == by_addr_.end())
      return; // an instance already replaced
    auto& k = kids_[i->second];
    if (k.handle.address() == dm.source) {
      k.alive = false;
      live_->erase(i->second);
    }
    if (awaiting_ && dm.source == awaiting_) {
      awaiting_ = nullptr;
      ++gen_;
      run();
      return;
    }
    exits_.emplace_back(dm.source, std::move(dm.reason));
    run();
  }

  void handle_exit(const caf::actor_addr& addr, const caf::error& reason) {
    auto i = by_addr_.find(addr);
    if (i == by_addr_.end())
      return;
    auto id = i->second;
    if (kids_[id].handle.address() != addr)
      return; // replaced by a restart since
    apply(id, kind_of(reason), describe(reason));
  }

  /// Asks the kernel what child `id` exiting means and queues the plan.
  void apply(const std::string& id, kernel::exit_kind kind, const std::string& how) {
    auto t = kernel::on_exit(spec_.flags, state_, id, kind, now());
    if (!t) { // a child we stopped on purpose, or after escalating: nothing to decide
      spdlog::debug("supervisor '{}': {}", spec_.name, describe(t.error()));
      return;
    }
    state_ = std::move(t->state);
    auto& plan = t->plan;
    emit(supervision_event::kind::exited, id, how + " -> " + plan.verdict);
    for (auto& s : plan.stop)
      work_.push_back({step::stop, s});
    if (plan.what == kernel::sup_plan::action::escalate) {
      work_.push_back({step::quit, {}, {},
                       make_error(errc::restart_intensity,
                                  "supervisor '" + spec_.name + "': " + plan.reason),
                       true});
      return;
    }
    if (plan.what == kernel::sup_plan::action::restart) {
      work_.push_back({step::wait, {}, plan.delay});
      for (auto& s : plan.start)
        work_.push_back({step::start, s});
    }
  }

  /// Told to stop: whatever was planned, stop every running child newest
  /// first, then exit with `reason`.
  void shut_down(const caf::error& reason) {
    if (stopping_)
      return;
    stopping_ = true;
    work_.clear();
    exits_.clear();
    waiting_ = false;
    ++gen_;
    for (auto i = state_.children.rbegin(); i != state_.children.rend(); ++i)
      if (kids_[i->id].alive && kids_[i->id].handle.address() != awaiting_)
        work_.push_back({step::stop, i->id});
    work_.push_back({step::quit, {}, {}, reason});
    run();
  }

  supervisor_spec spec_;
  kernel::sup_state state_;
  std::map<std::string, kid> kids_;
  std::map<caf::actor_addr, std::string> by_addr_;
  /// The running children, shared with the exit hook that kills them.
  std::shared_ptr<std::map<std::string, caf::actor>> live_ =
    std::make_shared<std::map<std::string, caf::actor>>();
  std::deque<step> work_;
  std::deque<std::pair<caf::actor_addr, caf::error>> exits_;
  caf::actor_addr awaiting_; ///< the child being stopped
  std::string awaiting_id_;
  bool waiting_ = false;     ///< a backoff is running
  bool stopping_ = false;
  uint64_t gen_ = 0;         ///< invalidates timers of steps that are over
};

} // namespace

caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys, supervisor_spec spec) {
  if (spec.name.empty())
    return make_error(errc::invalid_definition, "supervisor: no name");
  std::vector<kernel::sup_child> cs;
  for (auto& c : spec.children) {
    if (!c.start)
      return make_error(errc::invalid_definition,
                        "supervisor '" + spec.name + "': child '" + c.id + "' has no start function");
    cs.push_back({c.id, c.restart, true});
  }
  auto initial = kernel::initial_state(cs);
  if (!initial)
    return make_error(errc::invalid_definition,
                      spec.name + ": " + context_of(initial.error()));
  return sys.spawn<supervisor_actor>(std::move(spec), std::move(*initial));
}

child_spec supervisor_child(supervisor_spec spec, duration shutdown) {
  child_spec c;
  c.id = spec.name;
  c.restart = restart_type::permanent;
  c.shutdown = shutdown;
  c.start = [spec = std::move(spec)](caf::actor_system& sys) {
    auto s = spawn_supervisor(sys, spec);
    return s ? *s : caf::actor{};
  };
  return c;
}

} // namespace troupe
