// The supervisor's decisions, pure: given the flags, the children and how
// one of them exited, which children to stop, which to start again and
// after how long, or whether to give up and escalate. No actors and no
// clock: the time of the exit comes in as an argument. The supervisor actor
// (supervisors/supervisor.cpp) carries a plan out and reports back nothing:
// the state returned already describes the children as the plan leaves them.
//
// Decision table (child C exited with kind K; R = C's restart type):
//
//   R temporary                  C is forgotten; nothing else happens
//   R transient, K normal or     C stays down (kept, so a later one_for_all or
//     shutdown                   rest_for_one does not bring it back); nothing else
//   otherwise (a restart)        drop restart times older than `period`, add now;
//                                more than `intensity` of them -> escalate: stop
//                                every running child, newest first, then exit
//                                with restart_intensity;
//                                else by strategy:
//     one_for_one                start C
//     one_for_all                stop every other running child, newest first;
//                                start C and those, oldest first
//     rest_for_one               stop the running children started after C,
//                                newest first; start C and those, oldest first
//                                -- children stopped for a restart that are
//                                temporary are forgotten, not started again
//                                -- the start waits backoff(n) (supervision.hpp)
//
// A child that fails to start is handled as an abnormal exit of that child
// (start_failed): it counts against the intensity, so a child that can never
// start ends in escalation, not in a loop.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "kernel/workflow_machine.hpp"
#include "troupe/supervision.hpp"

namespace troupe::kernel {

/// How a child ended, as a supervisor sees it.
enum class exit_kind : uint8_t {
  normal,   ///< finished its work
  shutdown, ///< was told to stop (by its supervisor or the runtime)
  abnormal, ///< crashed, was killed, or could not start
};
const char* to_string(exit_kind k);

struct sup_child {
  std::string id;
  restart_type restart = restart_type::permanent;
  bool running = true;
  bool operator==(const sup_child& o) const {
    return id == o.id && restart == o.restart && running == o.running;
  }
};

struct sup_state {
  std::vector<sup_child> children; ///< in start order
  std::vector<instant> restarts;   ///< times of the restarts within the period, oldest first
  uint64_t restarts_total = 0;     ///< every restart so far (seeds the jitter)
  bool escalated = false;          ///< gave up: takes no more exits
  bool operator==(const sup_state& o) const {
    return children == o.children && restarts == o.restarts
           && restarts_total == o.restarts_total && escalated == o.escalated;
  }
};

struct sup_plan {
  enum class action : uint8_t { none, restart, escalate };
  action what = action::none;
  std::vector<std::string> stop;  ///< running children to stop first, in this order
  std::vector<std::string> start; ///< then, after `delay`, start these in this order
  duration delay{0};
  /// What follows, for people: "restart 2 of at most 3 within 5 s
  /// (one_for_all)", "not restarted", "4 restarts within 5 s exceed the
  /// intensity of 3".
  std::string verdict;
  /// "child 'x' (permanent) exited abnormal: " + verdict: logs and the
  /// escalation error.
  std::string reason;
};

struct sup_transition {
  sup_state state;
  sup_plan plan;
};

/// The state of a supervisor whose children, given in start order, have all
/// been started. invalid_definition for an empty or repeated id.
[[nodiscard]] caf::expected<sup_state> initial_state(const std::vector<sup_child>& children);

/// Child `id` exited with `kind` at `now`. A child that is not running (or
/// not known, or a supervisor that escalated) is errc::invalid_transition;
/// the input state is never changed.
[[nodiscard]] caf::expected<sup_transition> on_exit(const supervisor_flags& f,
                                                    const sup_state& s, const std::string& id,
                                                    exit_kind kind, instant now);

/// Stopping the supervisor: every running child, newest first.
std::vector<std::string> shutdown_order(const sup_state& s);

/// The wait before the restart that makes `n` restarts within the period
/// (n >= 1), for child `id` and the supervisor's `total`-th restart.
[[nodiscard]] duration restart_backoff(const supervisor_flags& f, const std::string& id,
                                       uint32_t n, uint64_t total);

} // namespace troupe::kernel
