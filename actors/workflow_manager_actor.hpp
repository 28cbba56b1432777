// The workflow manager: starts workflows (deduplicating idempotency keys),
// routes signals to them, answers status and await requests, recovers
// workflows from the journal, and wakes passivated ones. One per runtime;
// the facade talks to it.
//
// Which workflows it holds in memory: live ones (an actor) and passive ones
// (parked at a gate, no actor: id, definition, last status and wake time).
// A finished workflow is forgotten once its waiters are answered; status and
// await of it are answered from the journal, or for the last 1024 to finish
// from memory (until a purge).
//
// Protocol:
//   (start_atom, start_msg) -> std::string id; invalid_input for a traceparent
//        that does not parse or a start node that is no agent or gate
//   (start_atom, definition, input_json, idempotency_key[, user]): the same
//        without the options
//   (signal_atom, signal_msg)                             -> unit
//   (await_atom, id, or_parked, timeout_ms) -> info_msg once the workflow
//        finishes (or parks, with or_parked); await_timeout after timeout_ms
//   (status_atom, id)            -> info_msg as journaled (a live workflow with
//        a write in flight answers at its ack)
//   (recover_atom)               -> recovery_report: rebuilds every workflow
//        the journal has open and not yet in memory
//   (purge_atom, before_ns)      -> uint64_t: the journal writer's purge
// On restart (manager_env::adopt_from) it recovers the dead manager's
// workflows by itself before it answers anything.
// Errors: unknown_definition, invalid_input, unknown_workflow,
// workflow_finished, bad_signal, journal_corrupt (a quarantined workflow),
// shutting_down, and storage errors from the journal.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "runtime/metrics.hpp"
#include "runtime/registry.hpp"
#include "troupe/gateway.hpp"
#include "troupe/journal.hpp"
#include "troupe/seams.hpp"
#include "runtime/session_store.hpp"

namespace troupe {

/// The workflow actors one manager has running. Shared with the hook that
/// kills them if the manager dies (no workflow outlives its manager) and
/// with the manager that replaces it, which waits until they are all down
/// before it recovers their workflows from the journal.
struct live_workflows {
  std::mutex mtx;
  std::map<caf::actor_id, caf::actor> actors;

  void add(const caf::actor& a);
  void remove(const caf::actor_addr& a);
  std::vector<caf::actor> all();
};

struct manager_env {
  std::shared_ptr<registry> reg;
  caf::actor journal;                    ///< the journal writer
  caf::actor model;
  std::shared_ptr<const gateway_config> models; ///< prices calls for cost budgets; null: free
  std::shared_ptr<clock_source> clock;   ///< null: the actor clock
  std::shared_ptr<random_source> random; ///< ids and jitter seeds
  std::shared_ptr<journal_store> store;  ///< reads only (writes go through `journal`)
  uint32_t snapshot_every = 0;
  bool passivate = true;
  caf::actor timers; ///< the timer service; null: workflows use CAF's clock
  caf::actor notifier; ///< gate webhooks; null: none sent
  /// This manager's running workflows (null: it keeps its own set).
  std::shared_ptr<live_workflows> live;
  /// A manager replacing one that died (under the runtime's supervisor):
  /// the old manager's workflows. It waits until each is down, then until
  /// the journal writer has committed everything sent before (an empty
  /// write, acknowledged in order), then recovers every open workflow as
  /// recover() does. Requests wait until then.
  std::shared_ptr<live_workflows> adopt_from;
  std::shared_ptr<session_store> sessions; ///< per-user session context; null: none
  /// A workflow actor that crashes is rebuilt from the journal up to this
  /// many times within `restart_period`; one more crash dead-letters it
  /// (outcome "crashed").
  uint32_t restart_intensity = 3;
  std::chrono::nanoseconds restart_period = std::chrono::minutes{1};
  std::shared_ptr<runtime_metrics> metrics; ///< for the workflows and restarts; null: none
  bool trace_applied = false; ///< workflow_env::trace_applied
};

caf::actor spawn_workflow_manager(caf::actor_system& sys, manager_env env);

} // namespace troupe
