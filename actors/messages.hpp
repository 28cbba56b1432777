// Messages exchanged between troupe's actors. Every element is inspectable
// (CAF requires it even for local sends, and it keeps remote nodes possible):
// JSON travels as text.
#pragma once

#include <cstdint>
#include <string>

#include <caf/meta/type_name.hpp>

#include "troupe/runtime.hpp"

namespace troupe {

/// Agent -> workflow: the end of one attempt.
struct agent_report {
  uint64_t token = 0;     ///< which spawn this is; stale tokens are dropped
  bool ok = false;
  std::string label;      ///< ok: the outcome label
  std::string patch_json; ///< ok: merge patch
  uint8_t kind = 0;       ///< !ok: failure_kind
  std::string reason;     ///< !ok
  uint64_t tokens = 0;    ///< tokens not already reported by usage messages
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, agent_report& x) {
  return f(caf::meta::type_name("agent_report"), x.token, x.ok, x.label, x.patch_json, x.kind,
           x.reason, x.tokens);
}

/// Workflow -> manager (and to callers): a workflow_info as text.
struct info_msg {
  std::string id;
  std::string definition;
  uint8_t status = 0;
  std::string node;
  std::string outcome;
  std::string reason;
  std::string state_json;
  uint64_t steps = 0;
  uint64_t tokens = 0;
  uint64_t cost_nusd = 0;
  /// Workflow -> manager: the workflow parked and its actor quits; wake it
  /// (from the journal) on a signal, or at `wake_at_ns` if not 0.
  bool passive = false;
  int64_t wake_at_ns = 0;
  /// The actor stopped short of what the journal says (a failed journal
  /// write, a crash): `status` is failed here, the journal still has the
  /// workflow open, and recover() resumes it from there.
  bool stopped = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, info_msg& x) {
  return f(caf::meta::type_name("info_msg"), x.id, x.definition, x.status, x.node, x.outcome,
           x.reason, x.state_json, x.steps, x.tokens, x.cost_nusd, x.passive, x.wake_at_ns, x.stopped);
}

workflow_info to_info(const info_msg& m);

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, recovery_report& x) {
  return f(caf::meta::type_name("recovery_report"), x.resumed, x.parked, x.quarantined);
}

/// Caller -> manager -> workflow: a gate decision, or an operator's
/// dead-letter retry or drop, or a cancel.
struct signal_msg {
  /// Verdicts that are not a gate's: an operator's dead-letter actions.
  static constexpr const char* dlq_retry = "dlq_retry";
  static constexpr const char* dlq_drop = "dlq_drop";
  static constexpr const char* cancel = "cancel";
  std::string workflow_id;
  std::string gate;       ///< "" for a dead-letter action
  std::string verdict;    ///< approve | reject | edit | dlq_retry | dlq_drop | cancel
  std::string patch_json; ///< edit: the patch; dlq_drop, cancel: the reason
  std::string by;
  uint64_t grant_steps = 0; ///< dlq_retry: budget added
  uint64_t grant_tokens = 0;
  uint64_t grant_cost_nusd = 0;
  int64_t grant_time_ns = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, signal_msg& x) {
  return f(caf::meta::type_name("signal_msg"), x.workflow_id, x.gate, x.verdict, x.patch_json,
           x.by, x.grant_steps, x.grant_tokens, x.grant_cost_nusd, x.grant_time_ns);
}

/// Caller -> manager: start a workflow (runtime::start), or fork one
/// (runtime::fork: a state, a node to start at, a model override, the origin).
struct start_msg {
  std::string definition;
  std::string input_json;  ///< a JSON object: the initial state
  std::string key;         ///< idempotency key, "" none
  std::string user;
  std::string traceparent; ///< "" none; the manager checks it
  std::string start_node;  ///< "" the definition's start; else an agent or gate node
  std::string model;       ///< model override for every model call, "" none
  std::string forked_from; ///< a fork's origin, "" none
  uint64_t forked_at = 0;  ///< ... and the origin's event whose state it starts from
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, start_msg& x) {
  return f(caf::meta::type_name("start_msg"), x.definition, x.input_json, x.key, x.user,
           x.traceparent, x.start_node, x.model, x.forked_from, x.forked_at);
}

} // namespace troupe
