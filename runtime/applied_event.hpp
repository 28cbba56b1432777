// What the workflow actor's transitions made of the events of one journal
// write, handed to the trace exporter with the write (journal_write::
// applied) so that it need not decode the records and fold them through
// the kernel again: the same kernel::apply, run once. Written by the
// workflow actor when tracing is on; read on the exporter's thread once
// the write has committed. Pure data.
#pragma once

#include <cstdint>
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

/// Whether spans read command `c` (the trace builder's carry_out); the
/// others need not be kept.
bool kept_for_trace(const kernel::command& c);

/// One event as the workflow actor applied it.
struct applied_event {
  kernel::event event;
  std::vector<kernel::command> commands; ///< its transition's, those kept_for_trace() only
  trace_facts after;                     ///< the state it left
  std::string problem; ///< a step_completed the kernel took as bad_output: why
                       ///< (kernel::completion_problem); else ""
};

/// journal_write::applied: one per event of the write, in its order.
struct applied_events {
  std::vector<applied_event> events;
};

} // namespace troupe
