// OTP's supervision vocabulary, as plain values: how a child is restarted,
// which siblings go with it, and how many restarts a supervisor tolerates
// before it gives up and escalates. The supervisor actor
// (troupe/supervisor.hpp) carries these out; the decisions themselves are
// the pure kernel::supervision functions.
#pragma once

#include <chrono>
#include <cstdint>

#include "troupe/definition.hpp"

namespace troupe {

/// When a child that exited is started again.
enum class restart_type : uint8_t {
  permanent, ///< always
  transient, ///< only after an abnormal exit (not normal, not shutdown)
  temporary, ///< never; the child is forgotten when it exits
};

/// Which children a restart takes with it.
enum class restart_strategy : uint8_t {
  one_for_one,  ///< the child that exited, alone
  one_for_all,  ///< every running child: all are stopped, then started again
  rest_for_one, ///< the child and those started after it
};

const char* to_string(restart_type t);
const char* to_string(restart_strategy s);

/// A supervisor's flags. Restart intensity: if a restart would make more than
/// `intensity` restarts within the last `period`, the supervisor stops all
/// its children (in reverse start order) and exits with restart_intensity,
/// escalating to its own supervisor. Before a restart it waits a backoff
/// drawn with full jitter from [0, min(max_backoff, base_backoff * 2^(n-1))],
/// n being the restarts within `period` so far (this one included): a child
/// that keeps crashing is restarted ever more slowly, and restarts of many
/// children do not all land at once. A zero base_backoff restarts at once.
struct supervisor_flags {
  restart_strategy strategy = restart_strategy::one_for_one;
  uint32_t intensity = 3;
  duration period = std::chrono::seconds{5};
  duration base_backoff = std::chrono::milliseconds{10};
  duration max_backoff = std::chrono::seconds{1};
  uint64_t seed = 0; ///< seeds the jitter: equal seeds, equal delays
};

} // namespace troupe
