// The workflow actor: hosts one workflow's state machine. For each message it
// (1) makes an event, (2) applies it with the pure kernel (a refused event
// changes nothing and is answered with the error), (3) journals it and waits
// for the durable ack, (4) carries out the commands. One write is in the
// journal at a time; messages arriving meanwhile wait in order.
//
// A write holds the event, and with it what it implies at once: the
// step_scheduled of a schedule_step command (so a completed step and the
// scheduling of the next are one atomic write), the workflow's row when its
// status changes, a snapshot every `snapshot_every` events, a dead letter
// when retries ran out.
//
// Parked at a gate with nothing in flight, the actor passivates: it tells
// the manager (info_msg with `passive`, and when to wake it for a timer) and
// quits. The journal holds everything needed to wake it.
// Spawned and monitored by the workflow manager.
#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/agent_actor.hpp"
#include "persistence/recovery.hpp"
#include "runtime/registry.hpp"
#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"
#include "troupe/seams.hpp"
#include "runtime/session_store.hpp"
#include "runtime/metrics.hpp"

namespace troupe {

/// What a workflow actor works with; fixed for its lifetime.
struct workflow_env {
  std::shared_ptr<const definition> def;
  std::shared_ptr<const registry::agent_map> agents;
  std::shared_ptr<agent_runners> runners; ///< where attempts run
  caf::actor journal; ///< the journal writer
  caf::actor model;   ///< answers (ask_atom, llm_request) -> llm_reply
  caf::actor manager; ///< receives (status_atom, info_msg) on park and finish; may be null
  caf::actor timers;  ///< the timer service (step and retry timers); null: CAF's clock
  caf::actor notifier; ///< POSTs gate webhooks (notifier_actor.hpp); null: none sent
  std::shared_ptr<session_store> sessions; ///< per-user session context; null: none
  std::shared_ptr<runtime_metrics> metrics; ///< fed once each event is durable; null: none
  std::shared_ptr<clock_source> clock; ///< null: the actor clock (test coordinator in tests)
  uint32_t snapshot_every = 0; ///< 0: no snapshots
  bool passivate = true;       ///< quit when parked at a gate
  /// Spans are exported: each write carries the transitions of its events
  /// (journal_write::applied) for the trace exporter.
  bool trace_applied = false;
};

/// The status a workflow in state `s` reports (parked at a gate, ...).
workflow_status status_of(const kernel::workflow_state& s);

/// Spawns a new workflow that starts at once with `input` as its state;
/// `row` names it (id, definition, version, idempotency key, created);
/// `traceparent` (checked by the caller, "" none) is journaled with it.
/// Its messages: (signal_atom, signal_msg) -> unit or error;
/// (status_atom) -> info_msg as journaled (asked while a write is in
/// flight, answered at its ack; an error if the actor stops first).
caf::actor spawn_workflow(caf::actor_system& sys, workflow_env env, workflow_row row,
                          nlohmann::json input, uint64_t seed, std::string traceparent = {});
/// The same, starting with `first` (its time is stamped when the actor
/// runs): where it starts, its model override, a fork's origin.
caf::actor spawn_workflow(caf::actor_system& sys, workflow_env env, workflow_row row,
                          kernel::workflow_started first);

/// Spawns a workflow rebuilt from the journal. On (resume_atom) it
/// re-issues what was pending: timers are re-armed at their journaled
/// instants, a step being scheduled is scheduled, an attempt that was
/// running when the journal ends failed as `crashed` (so its retries count
/// down across restarts), a gate waits again. The manager sends resume_atom
/// once recovery has rebuilt every workflow, so recover() returns without
/// the resumed work competing with it.
caf::actor spawn_recovered_workflow(caf::actor_system& sys, workflow_env env, workflow_row row,
                                    persistence::loaded_workflow loaded);

} // namespace troupe
