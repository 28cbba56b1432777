// The notifier: POSTs JSON to webhooks (gate_policy::notify_url) on the
// gateway's kind of transport (libcurl multi, one I/O thread), retrying a
// failed POST with full-jitter backoff. Fire and forget for its callers: a
// slow or dead webhook never holds up a workflow.
//
// Protocol: (notify_atom, std::string url, std::string json_body) -> nothing.
// Each POST ends in one log line: sent (info), or given up (error) after a
// 4xx other than 408 / 429, or after retry.max_attempts tries. Past
// max_pending POSTs waiting or in flight, a new one is dropped (error log):
// memory stays bounded.
#pragma once

#include <chrono>
#include <cstddef>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "troupe/definition.hpp"

namespace troupe {

struct notifier_config {
  retry_policy retry; ///< max_attempts, base and max backoff (retryable is not used)
  size_t max_pending = 10'000;
  std::chrono::milliseconds timeout{10'000}; ///< per POST
};

caf::actor spawn_notifier(caf::actor_system& sys, notifier_config cfg);

} // namespace troupe
