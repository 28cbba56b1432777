// The snapshot format: a kernel::workflow_state as text and back. Pure (no
// I/O, no actors). The workflow actor encodes its state every N events and
// journals it as snapshot_record{workflow_id, wf_seq, state}; recovery decodes
// the latest snapshot and replays only the events after wf_seq.
//
// FORMAT (version 4). One compact JSON object (UTF-8, no whitespace, keys in
// the alphabetical order json::dump writes), one key per workflow_state field:
//
//   key              JSON type                       workflow_state field
//   ---------------  ------------------------------  ----------------------
//   attempt          unsigned 32                     attempt
//   compensating     boolean                         compensating (since v3)
//   cost_nusd        unsigned 64 (nano-dollars)      cost_nusd (since v2)
//   data             object                          data
//   deadline_ns      signed 64 (instant::count())    deadline (0 = none)
//   events           unsigned 64                     events
//   granted          grant object                    granted (since v3)
//   model            string                          model (since v5)
//   next_timer       unsigned 64                     next_timer
//   node             string                          node
//   outcome          string                          outcome
//   phase            string: not_started |           at
//                    scheduling | running | backoff |
//                    at_gate | completed | failed |
//                    dead_lettered
//   reason           string                          reason
//   resume_attempt   unsigned 32                     resume_attempt (since v3)
//   resume_node      string                          resume_node (since v3)
//   seed             unsigned 64                     seed
//   soft_passed      boolean                         soft_passed (since v3)
//   started_at_ns    signed 64 (instant::count())    started_at
//   steps            unsigned 64                     steps
//   timers           array of timer objects,         timers
//                    ascending by id
//   tokens           unsigned 64                     tokens
//   traceparent      string                          traceparent (since v4)
//   undo             array of undo objects, oldest   undo (since v3)
//                    first
//   undo_reason      string                          undo_reason (since v3)
//   undo_terminal    string                          undo_terminal (since v3)
//   v                unsigned (4)                    -
//   visits           object: node name -> unsigned   visits
//                    32
//
//   timer object     fire_at_ns (signed 64), id (unsigned 64),
//                    kind (string: step_timeout | retry_backoff |
//                    workflow_deadline | gate_deadline | gate_reminder)
//   grant object     cost_nusd, steps, tokens (unsigned 64), time_ns
//                    (unsigned 63)
//   undo object      node (string), visit (unsigned 32)
//
//   e.g. {"attempt":1,"compensating":false,"cost_nusd":0,"data":{"ticket":"T-1"},
//         "deadline_ns":0,"events":2,
//         "granted":{"cost_nusd":0,"steps":0,"time_ns":0,"tokens":0},"model":"","next_timer":2,
//         "node":"extract","outcome":"","phase":"running","reason":"",
//         "resume_attempt":0,"resume_node":"","seed":7,"soft_passed":false,
//         "started_at_ns":1000000,"steps":1,"timers":
//         [{"fire_at_ns":1001000000,"id":1,"kind":"step_timeout"}],
//         "tokens":0,"traceparent":"","undo":[],"undo_reason":"","undo_terminal":"","v":5,
//         "visits":{"extract":1}}
//   (one line in the journal)
//
// Invariants (decoding enforces each; a violation is errc::journal_corrupt
// with context "<workflow id> snapshot @<wf_seq>: <what is wrong>"):
//   (1) The text parses as JSON and is an object.
//   (2) No object anywhere in the text has the same key twice.
//   (3) `v` is a version this build knows (1 to 5), checked before any other
//       field. A format change bumps `v` and edits this comment first; old
//       versions stay decodable. Version 1 had no cost_nusd (it decodes as 0),
//       versions 1 and 2 no granted, resume_attempt, resume_node,
//       soft_passed, compensating, undo, undo_reason or undo_terminal (they
//       decode as 0, "", false and empty), versions 1 to 3 no traceparent
//       and 1 to 4 no model (they decode as "").
//   (4) Every key listed above (for the snapshot's version) is present with its type, in the snapshot and
//       in each timer object. Nothing is defaulted.
//   (5) No other key is present, in the snapshot or in a timer object.
//   (6) Unsigned values are non-negative integers within their width; signed
//       64 values are integers within int64_t.
//   (7) `phase` and each timer's `kind` are one of the names listed.
//   (8) Timer ids strictly increase along `timers` (so none repeats).
//   (9) `data` is an object, as the kernel's state always is.
// The decoder checks the format, not the kernel's own invariants (a timer id
// below next_timer, no timers once finished, ...): replaying the tail checks
// those. Every state whose data is an object round-trips exactly, except that
// bytes which are not valid UTF-8 are replaced by U+FFFD when encoding.
#pragma once

#include <cstdint>
#include <string>

#include <caf/expected.hpp>

#include "kernel/workflow_machine.hpp"

namespace troupe::persistence {

/// Encodes `s` as a version 4 snapshot (see FORMAT above). Equal states give
/// equal text. Never fails. Pure; any thread.
std::string encode_state(const kernel::workflow_state& s);

/// Decodes a snapshot that encode_state wrote, enforcing invariants (1)-(9).
/// `workflow_id` and `wf_seq` only name the snapshot in errors. Pure; any
/// thread.
caf::expected<kernel::workflow_state> decode_state(const std::string& text,
                                                   const std::string& workflow_id,
                                                   uint64_t wf_seq);

} // namespace troupe::persistence
