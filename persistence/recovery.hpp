// Rebuilding a workflow from the journal: its latest snapshot, then the
// events after it folded through the pure kernel. Used by the manager at
// recovery, to wake a passivated workflow, and to answer status() for a
// workflow that has no live actor. Reads only; changes nothing.
#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>

#include "kernel/workflow_machine.hpp"
#include "troupe/definition.hpp"
#include "troupe/journal.hpp"

namespace troupe::persistence {

/// A workflow's kernel state as the journal has it.
struct loaded_workflow {
  kernel::workflow_state state;
  uint64_t wf_seq = 0; ///< the last event folded in
};

/// Loads workflow `id` of definition `def` from `store`. A snapshot or event
/// that does not decode, a gap in the events, an event the kernel refuses,
/// or a workflow with no events is errc::journal_corrupt naming the
/// workflow; a storage error is passed through.
caf::expected<loaded_workflow> load_workflow(const journal_store& store, const definition& def,
                                             const std::string& id);

/// The workflow as it was right after its event `wf_seq` (time travel: what
/// `troupe replay --until` shows): the events up to it folded through the
/// kernel, from a snapshot only if one was taken at or before it. An
/// `wf_seq` of 0 or past the last event is invalid_input saying how many
/// events there are; otherwise the errors of load_workflow.
caf::expected<loaded_workflow> load_workflow_at(const journal_store& store,
                                                const definition& def, const std::string& id,
                                                uint64_t wf_seq);

} // namespace troupe::persistence
