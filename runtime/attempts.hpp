// Step attempts as a workflow's events tell them: the one derivation that
// the trace builder (a span per attempt, runtime/trace_builder.cpp) and the
// admin API (the dashboard's timeline and latency per agent,
// runtime/admin/admin_json.cpp) share. Pure; one thread at a time.
//
// An attempt begins with its step_scheduled and ends with the first of:
//   step_completed naming it            completed: its label, tokens and cost
//   step_failed naming it               failed: its kind, reason, tokens and cost
//   timer_fired{step_timeout}           timed_out (journals older than
//                                       step_failed{timeout} wrote this)
//   timer_fired{workflow_deadline},     abandoned: the workflow went on
//   workflow_cancelled,                 without it (the kernel cancels the
//   workflow_crashed, or another        attempt in flight on each of these)
//   step_scheduled
// A completion or failure naming another attempt (a late reply of an
// abandoned one) changes nothing.
//
// What the kernel alone knows about an attempt (its agent, visit and step
// number, whether it undoes a step, whether a retry follows) is not here:
// the trace builder reads it from the kernel's run_agent command and state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kernel/workflow_machine.hpp"
#include "troupe/journal.hpp"

namespace troupe {

/// How an attempt ended (see the file comment).
enum class attempt_end : uint8_t { running, completed, failed, timed_out, abandoned };

/// One attempt of a step.
struct step_attempt {
  std::string node;
  uint32_t attempt = 0;
  int64_t start_ns = 0;
  int64_t end_ns = -1;   ///< -1: not ended
  attempt_end end = attempt_end::running;
  std::string label;     ///< completed: the label it finished with
  failure_kind kind = failure_kind::crashed; ///< failed: how
  std::string reason;    ///< failed: why
  uint64_t tokens = 0;   ///< completed or failed: what it spent
  uint64_t cost_nusd = 0;
  bool ended() const { return end != attempt_end::running; }
};

/// Folds a workflow's events, in journal order, into its attempts.
class attempt_fold {
public:
  /// Folds `e`. Returns the attempt it ended, if any (valid until the next
  /// add); the attempt it began, if any, is then in_flight().
  const step_attempt* add(const kernel::event& e);

  /// The attempt running now, or null.
  const step_attempt* in_flight() const { return running_ ? &current_ : nullptr; }

private:
  const step_attempt* end(attempt_end how, int64_t at);

  step_attempt current_; ///< running, or the last one (which ended)
  step_attempt ended_;   ///< one that another step_scheduled abandoned
  bool running_ = false;
};

/// Every attempt of a history (as journal_store::read returns it), in the
/// order they began; the last may still run. A record that does not decode
/// is passed over.
std::vector<step_attempt> derive_attempts(const std::vector<journal_record>& history);

} // namespace troupe
