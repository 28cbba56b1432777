// Agent runners: the actors that run agents. Each registered agent gets a
// few long-lived, stateless runner actors (one per scheduler thread), and a
// workflow hands each attempt of a step to one of them. A runner runs any
// number of attempts at once, each with its own step_context; an attempt
// lives until it reports, and holds nothing afterwards. So a step costs two
// messages (run, report), not an actor spawned, monitored and torn down.
//
// Protocol, workflow -> runner:
//   (run_atom, step_input)       starts an attempt; the sender gets exactly
//                                one agent_report carrying input.token
//   (cancel_atom, uint64_t token) abandons the sender's attempt `token`
//                                (timed out, or the workflow moved on): its
//                                late model replies are dropped, no report
// Runner -> workflow: agent_report, and (usage_atom, token, tokens,
// cost_nusd) after each model reply.
//
// If a runner stops while attempts are in flight (killed, or the runtime
// shutting down), each of them reports `crashed` ("agent runner stopped:
// <reason>") to its workflow, and the next attempt handed to that agent goes
// to a fresh runner.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>

#include "troupe/agent.hpp"
#include "troupe/gateway.hpp"
#include "troupe/seams.hpp"
#include "runtime/session_store.hpp"
#include "runtime/trace_ids.hpp"

namespace troupe {

/// Everything an attempt needs, fixed when it starts.
struct step_input {
  std::string workflow_id;
  std::string node;
  std::string agent;     ///< registered name; the default model script
  uint32_t attempt = 0;
  uint64_t token = 0;    ///< echoed in every message to the workflow
  std::string key;       ///< idempotency key of the visit
  nlohmann::json state;
  budgets_left budget;
  std::string user;                         ///< whose session context it sees
  std::shared_ptr<session_store> sessions;  ///< null: none (session calls fail)
  /// The attempt's span in the workflow's trace: numbers, formatted as a
  /// traceparent only when the agent asks for it or calls a model.
  attempt_trace trace;
  std::string model; ///< the workflow's model override: every call's model ("" none)
};

} // namespace troupe

// Local only: an attempt's input never crosses the network (remote workers
// will carry their own message).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::step_input)

namespace troupe {

/// The runners of one runtime, spawned on first use of each agent. Shared
/// by the manager (which stops them when it stops) and its workflows.
class agent_runners {
public:
  /// Set by a runner as it exits; pick() then replaces it.
  using stop_flag = std::shared_ptr<std::atomic<bool>>;

  /// `width` runners per agent; `model` answers (ask_atom, llm_request);
  /// `journal` is the journal writer (effects); `models` prices a call
  /// before it is sent, for the cost budget (null: every model is free);
  /// `clock` stamps recorded effects, as the workflows stamp their events
  /// (null: the actor clock).
  agent_runners(caf::actor_system& sys, caf::actor model, caf::actor journal, size_t width,
                std::shared_ptr<const gateway_config> models = nullptr,
                std::shared_ptr<clock_source> clock = nullptr);

  /// A runner of `agent` for the attempt `token`: attempts spread over the
  /// agent's runners. A runner that has stopped is replaced first.
  caf::actor pick(const std::string& agent, const agent_ptr& impl, uint64_t token);

  /// Stops every runner (their attempts report crashed) and refuses to
  /// spawn more: pick() returns null afterwards.
  void stop();

private:
  struct slot {
    caf::actor runner;
    stop_flag stopped;
  };

  caf::actor spawn_runner(const agent_ptr& impl, const stop_flag& stopped);

  caf::actor_system& sys_;
  caf::actor model_;
  caf::actor journal_;
  std::shared_ptr<const gateway_config> models_;
  std::shared_ptr<clock_source> clock_;
  size_t width_;
  std::mutex mtx_;
  bool closed_ = false;
  std::map<std::string, std::vector<slot>> runners_;
};

} // namespace troupe
