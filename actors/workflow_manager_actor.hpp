// The workflow manager: starts workflows (deduplicating idempotency keys),
// routes signals to them, answers status and await requests, and holds the
// final snapshot of finished ones. One per runtime; the facade talks to it.
//
// Protocol:
//   (start_atom, definition, input_json, idempotency_key) -> std::string id
//   (signal_atom, signal_msg)                             -> unit
//   (await_atom, id, or_parked)  -> info_msg once the workflow finishes or parks
//   (status_atom, id)            -> info_msg now
// Errors: unknown_definition, invalid_input, unknown_workflow,
// workflow_finished, bad_signal, shutting_down.
#pragma once

#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "runtime/registry.hpp"
#include "troupe/seams.hpp"

namespace troupe {

struct manager_env {
  std::shared_ptr<registry> reg;
  caf::actor journal;
  caf::actor model;
  std::shared_ptr<clock_source> clock;   ///< null: the actor clock
  std::shared_ptr<random_source> random; ///< ids and jitter seeds
};

caf::actor spawn_workflow_manager(caf::actor_system& sys, manager_env env);

} // namespace troupe
