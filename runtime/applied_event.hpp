// What the workflow actor's transitions made of the events of one journal
// write, handed to the trace exporter with the write (journal_write::
// applied) so that it need not decode the records and fold them through
// the kernel again: the same kernel::apply, run once. Written by the
// workflow actor when tracing is on; read on the exporter's thread once
// the write has committed. Pure data.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernel/workflow_machine.hpp"

namespace troupe {

/// What spans read of a workflow's state after an event: a few of
/// kernel::workflow_state's fields.
struct trace_facts {
  kernel::phase at = kernel::phase::not_started;
  uint64_t steps = 0;
  uint64_t tokens = 0;
  uint64_t cost_nusd = 0;
  bool compensating = false;
  uint32_t visit = 0;      ///< entries into `node` so far (a gate's wait)
  std::string outcome;
  std::string reason;
  std::string undo_reason;
};

/// Sets `out` to the facts of `s` (reusing its strings' memory).
void read_facts(const kernel::workflow_state& s, trace_facts& out);

/// One event as the workflow actor applied it.
struct applied_event {
  kernel::event event; ///< its payloads (input, patches) left out: spans do not read them
  std::optional<kernel::command> command; ///< the one command of its transition spans read
  trace_facts after;   ///< the state it left
  std::string problem; ///< a step_completed the kernel took as bad_output: why
                       ///< (kernel::completion_problem); else ""
};

/// journal_write::applied: the events of one write as applied, in order.
/// Made on a workflow actor's thread and let go of on the exporter's, so
/// it is one allocation whatever it holds (memory freed on another thread
/// than the one that took it is what costs most there). A write has at
/// most two events: one, and the step_scheduled its schedule_step asks for.
class applied_events {
public:
  static constexpr size_t capacity = 2;

  /// The events of workflow `workflow_id` from its record `first_seq` on.
  applied_events(std::shared_ptr<const std::string> workflow_id, uint64_t first_seq)
    : workflow_id_(std::move(workflow_id)), first_seq_(first_seq) {}

  /// Adds `e` (its payloads dropped), the commands of its transition and
  /// the state `after` it. False, and nothing added, if it is full or the
  /// transition has more than one command spans read (the kernel makes at
  /// most one): that write then goes without, and the exporter replays it.
  bool add(kernel::event e, const std::vector<kernel::command>& commands,
           const kernel::workflow_state& after, std::string problem);

  const std::string& workflow_id() const { return *workflow_id_; }
  uint64_t first_seq() const { return first_seq_; }
  size_t size() const { return size_; }
  const applied_event& operator[](size_t i) const { return events_[i]; }

private:
  std::shared_ptr<const std::string> workflow_id_;
  uint64_t first_seq_ = 0;
  std::array<applied_event, capacity> events_;
  size_t size_ = 0;
};

} // namespace troupe
