// One attempt of one step: the actor a workflow spawns (monitored) to run an
// agent. It hands the agent a step_context, forwards model calls to the
// model actor without blocking, reports token usage as it goes, and ends
// with exactly one agent_report to the workflow, then quits. If it throws
// or dies first, the workflow sees the down message: the attempt "crashed".
#pragma once

#include <cstdint>
#include <string>

#include <caf/actor.hpp>
#include <caf/fwd.hpp>

#include "troupe/agent.hpp"

namespace troupe {

/// Everything an attempt needs, fixed when it is spawned.
struct step_input {
  std::string workflow_id;
  std::string node;
  std::string agent;     ///< registered name; the default model script
  uint32_t attempt = 0;
  uint64_t token = 0;    ///< echoed in every message to the workflow
  std::string key;       ///< idempotency key of the visit
  nlohmann::json state;
  budgets_left budget;
};

/// Spawns the attempt's actor from inside the workflow actor `self`,
/// monitored by it. `model` answers (ask_atom, llm_request); `journal` is
/// the journal writer (effects).
caf::actor spawn_agent_attempt(caf::local_actor* self, caf::actor model, caf::actor journal,
                               agent_ptr impl, step_input input);

} // namespace troupe
