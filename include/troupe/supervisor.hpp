// OTP-style supervisors: an actor that starts its children in order, watches
// them, and restarts them by their restart type and its strategy, with a
// backoff between restarts and a restart intensity past which it stops them
// all and escalates to its own supervisor (troupe/supervision.hpp has the
// vocabulary, runtime/kernel/supervision.hpp the decisions).
//
//   troupe::supervisor_spec s;
//   s.name = "workers";
//   s.flags.strategy = troupe::restart_strategy::one_for_all;
//   s.children.push_back({"reader", [](caf::actor_system& sys) { return sys.spawn(reader); }});
//   s.children.push_back(troupe::supervisor_child(inner_spec)); // trees
//   auto sup = troupe::spawn_supervisor(sys, std::move(s));
//
// A supervisor monitors each child. Stopping it (an exit message) stops its
// children newest first, each with its shutdown time, then it exits with the
// same reason; killed, it kills them. No child outlives its supervisor.
// Protocol: (children_atom) -> std::vector<child_info>, in start order.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/atom.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

#include "troupe/supervision.hpp"

namespace troupe {

using children_atom = caf::atom_constant<caf::atom("children")>;

struct child_spec {
  std::string id; ///< unique among its siblings
  /// Starts the child and returns its handle. An invalid handle or an
  /// exception is a failure to start: an abnormal exit of the child.
  std::function<caf::actor(caf::actor_system&)> start;
  restart_type restart = restart_type::permanent;
  /// How long a child told to stop (exit reason user_shutdown) has before it
  /// is killed. Zero: killed at once.
  duration shutdown = std::chrono::seconds{5};
};

/// What a supervisor did, as it happened: for logs and for people watching.
struct supervision_event {
  enum class kind : uint8_t {
    started,    ///< a child was started (again)
    exited,     ///< a child exited by itself; `what` says how and what follows
    stopping,   ///< the supervisor told a child to stop
    killed,     ///< a child did not stop within its shutdown time
    escalated,  ///< past its intensity: the supervisor stops all and exits
    stopped,    ///< the supervisor has stopped its children and exits
  };
  kind k = kind::started;
  std::string supervisor;
  std::string child; ///< "" for the supervisor itself
  std::string what;
};
const char* to_string(supervision_event::kind k);

/// Called on the supervisor's own thread for each event; keep it short.
using supervision_observer = std::function<void(const supervision_event&)>;

struct supervisor_spec {
  std::string name; ///< names it in logs, events and its escalation error
  supervisor_flags flags;
  std::vector<child_spec> children; ///< started in this order
  supervision_observer observer;    ///< optional; every event is also logged
};

/// One child, as its supervisor sees it.
struct child_info {
  std::string id;
  caf::actor actor;      ///< null while it is not running
  bool running = false;
  uint64_t started = 0;  ///< times started, the first included
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, child_info& x) {
  return f(caf::meta::type_name("child_info"), x.id, x.actor, x.running, x.started);
}

/// Spawns a supervisor, which starts its children in order. A spec with no
/// name, a child without an id or start function, or a repeated id is
/// invalid_definition. A child that fails to start counts as a crash: a
/// child that can never start ends in escalation (restart_intensity).
caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys, supervisor_spec spec);

/// A child that is itself a supervisor: trees of them. It is permanent and
/// has `shutdown` to stop its own children.
child_spec supervisor_child(supervisor_spec spec,
                            duration shutdown = std::chrono::seconds{30});

} // namespace troupe
