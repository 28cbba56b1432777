// The workflow actor: hosts one workflow's state machine. For each message it
// (1) makes an event, (2) applies it with the pure kernel (a refused event
// changes nothing and is answered with the error), (3) journals it and waits
// for the durable ack, (4) carries out the commands. One event is in the
// journal at a time; messages arriving meanwhile wait in order.
// Spawned and monitored by the workflow manager.
#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "runtime/registry.hpp"
#include "troupe/seams.hpp"

namespace troupe {

/// What a workflow actor works with; fixed for its lifetime.
struct workflow_env {
  std::shared_ptr<const definition> def;
  std::shared_ptr<const registry::agent_map> agents;
  caf::actor journal; ///< answers (append_atom, journal_record) -> uint64_t
  caf::actor model;   ///< answers (ask_atom, llm_request) -> llm_reply
  caf::actor manager; ///< receives (status_atom, info_msg) on park and finish; may be null
  std::shared_ptr<clock_source> clock; ///< null: the actor clock (test coordinator in tests)
};

/// Spawns a workflow that starts at once with `input` as its state. Its
/// messages: (signal_atom, signal_msg) -> unit or error; (status_atom) -> info_msg.
caf::actor spawn_workflow(caf::actor_system& sys, workflow_env env, std::string id,
                          nlohmann::json input, uint64_t seed);

} // namespace troupe
