// The journal's record format: kernel events to journal_records and back.
// Pure (no I/O, no actors). The workflow actor encodes each event before it
// is journaled; recovery, tests and the CLI decode a workflow's history.
//
// FORMAT. A record carries the event's kind in `kind`, its time in `at_ns`
// (instant::count()) and every other field in `payload`, a compact JSON
// object (UTF-8, no whitespace):
//
//   kind               payload fields (JSON type)
//   ----------------   ------------------------------------------------------
//   workflow_started   v (3), input (any JSON), seed (unsigned 64),
//                      traceparent (string, since v2: the caller's W3C
//                      traceparent), start_node, model, forked_from
//                      (strings), forked_at (unsigned 64) (since v3: where
//                      it starts, its model override, and the workflow
//                      and event it was forked from). Each is written at
//                      the oldest version that holds it: v1 without a
//                      traceparent or v3 fields, v2 with a traceparent
//                      only, so older builds read what they can.
//   step_scheduled     v (1), node (string), attempt (unsigned 32)
//   step_completed     v (2), node (string), attempt (unsigned 32),
//                      label (string), patch (any JSON), tokens (unsigned 64),
//                      cost_nusd (unsigned 64: nano-dollars)
//   step_failed        v (2), node (string), attempt (unsigned 32),
//                      kind (string: a failure_kind name, to_string()),
//                      reason (string), tokens (unsigned 64),
//                      cost_nusd (unsigned 64: nano-dollars)
//   timer_fired        v (1), timer (unsigned 64), kind (string: step_timeout |
//                      retry_backoff | workflow_deadline | gate_deadline |
//                      gate_reminder)
//   signal_received    v (1), gate (string), decision (string),
//                      patch (any JSON, null when not an edit), by (string)
//   dlq_retried        v (1), by (string), grant_steps, grant_tokens,
//                      grant_cost_nusd (unsigned 64), grant_time_ns
//                      (unsigned 63: nanoseconds)
//   dlq_dropped        v (1), by (string), reason (string)
//   workflow_cancelled v (1), by (string), reason (string)
//   workflow_crashed   v (1), reason (string)
//
//   e.g. kind "step_scheduled", payload {"attempt":1,"node":"extract","v":1}
//
// Invariants (decoding enforces each; a violation is errc::journal_corrupt
// with context "<workflow id> #<wf_seq> (<kind>): <what is wrong>"):
//   (1) `kind` is one of the ten names above.
//   (2) `payload` parses as a JSON object.
//   (3) `v` is a version of that kind this build knows: 1 up to the one
//       above. A format change bumps `v` of the kinds it touches and edits
//       this comment first; old versions stay decodable. History: v1 of
//       step_completed and step_failed had no cost_nusd (it decodes as 0);
//       v1 of workflow_started has no traceparent (it decodes as ""),
//       v1 and v2 no start_node, model, forked_from, forked_at ("", 0).
//   (4) Every field listed for the kind (and version) is present with its type; "any JSON"
//       includes null but the key must exist. Nothing is defaulted.
//   (5) No field other than those listed is present.
//   (6) Unsigned fields are non-negative integers within their width.
//   (7) The failure kind is one of the listed names.
//   (8) A history's records belong to one workflow and have wf_seq 1, 2, 3,
//       ... in order, without gaps or duplicates (decode_history only).
// Encoding replaces bytes that are not valid UTF-8 by U+FFFD; all other
// values round-trip exactly.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <caf/expected.hpp>

#include "kernel/workflow_machine.hpp"
#include "troupe/journal.hpp"

namespace troupe::persistence {

/// Encodes `e` as record number `wf_seq` of workflow `workflow_id`. The
/// record's global `seq` is left 0: the store assigns it. Never fails.
journal_record to_record(const std::string& workflow_id, uint64_t wf_seq,
                         const kernel::event& e);

/// Decodes one record, enforcing invariants (1)-(7) above.
caf::expected<kernel::event> from_record(const journal_record& r);

/// from_record() for readers that need no workflow state (traces): a
/// step_completed's patch and a workflow_started's input come back as
/// empty objects (a patch that is not an object is kept, so the kernel
/// still sees bad_output). The records written per step (step_scheduled,
/// step_completed, step_failed) are scanned without building a JSON
/// document, several times faster; anything unusual (an escape in a
/// string, a field out of place) takes from_record's strict path, so the
/// errors are the same.
caf::expected<kernel::event> from_record_without_state(const journal_record& r);

/// Decodes a workflow's whole history (as journal_store::read returns it),
/// enforcing invariants (1)-(8). An empty history decodes to no events.
caf::expected<std::vector<kernel::event>>
decode_history(const std::vector<journal_record>& records);

} // namespace troupe::persistence
