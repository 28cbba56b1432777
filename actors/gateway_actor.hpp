// The model gateway: one actor in front of every provider. Agents send it
// (ask_atom, llm_request) and get an llm_reply or an error, exactly as from
// the scripted model, which is one of its providers.
//
// Per lane (provider + model), in this order, a request is:
//   1. refused llm_rejected if it names no configured provider, or if it
//      does not fit the model's context window (or trimmed to fit, by the
//      provider's overflow policy);
//   2. refused circuit_open at once while the lane's breaker is open;
//   3. refused overloaded when the lane's queue is full (back-pressure);
//   4. queued, then sent when the lane has a free slot (max_concurrent),
//      its breaker admits it (one probe at a time when half-open), no 429
//      hold is on, and the request and token buckets allow it;
//   5. answered with the decoded reply (usage, latency, cost) or the
//      classified error (runtime/gateway/wire.hpp); its result moves the
//      breaker, and a 429 holds the lane for Retry-After and requeues it.
// Every breaker change is logged (warn) and counted in the lane's stats.
// The decisions are the pure kernel::circuit_breaker and token_bucket;
// this actor only carries them out.
//
// Protocol:
//   (ask_atom, llm_request) -> llm_reply
//   (status_atom)           -> std::vector<lane_stats>, one per lane used
//                              (troupe/gateway.hpp)
//   (tick_atom)             -> (nothing) every lane sends what its limits
//        allow now: for an injected clock that moved (tests); the gateway
//        arms its own timers for its waits otherwise
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/expected.hpp>

#include "troupe/gateway.hpp"
#include "troupe/seams.hpp"

namespace troupe {

struct gateway_env {
  gateway_config cfg;
  /// The embedded scripted model, provider "scripted" (its breaker is off
  /// unless cfg configures a provider of protocol scripted).
  caf::actor scripted;
  /// Breaker cool-downs, rate limits and 429 holds are decided on this
  /// clock; null: a steady clock.
  std::shared_ptr<clock_source> clock;
};

/// Validates the config, reads each provider's API key from its
/// environment variable, starts the HTTP transport if any provider needs
/// it. invalid_config names the provider and what is wrong (a key variable
/// that is not set included).
caf::expected<caf::actor> spawn_gateway(caf::actor_system& sys, gateway_env env);

/// What spawn_gateway checks before it spawns anything: the config, and
/// that each key variable is set (the key is not kept).
caf::error check_gateway(const gateway_config& cfg);

} // namespace troupe

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<troupe::lane_stats>)
