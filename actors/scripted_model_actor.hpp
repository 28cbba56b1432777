// The embedded scripted model: answers (ask_atom, llm_request) with an
// llm_reply or an error, after the configured latency, with faults injected
// deterministically from (seed, request_id). Runs as one event-based actor;
// latency uses the actor clock, so CAF's test coordinator controls it.
#pragma once

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "troupe/model.hpp"

namespace troupe {

/// What the fault dice say for one request (pure; exposed for tests).
enum class scripted_fault : uint8_t { none, fail, timeout, malformed };
scripted_fault roll_fault(const scripted_model_config& cfg, const std::string& request_id);

/// Text the scripted model returns as malformed output (not JSON).
constexpr const char* malformed_reply = "Sure! Here is the JSON you asked for: {\"fields\": [";

caf::actor spawn_scripted_model(caf::actor_system& sys, scripted_model_config cfg);

} // namespace troupe
