// Trace and span ids as numbers (troupe/trace.hpp's ids are these in
// lower-case hex), for the paths that run per attempt and should neither
// format nor allocate: the workflow actor dispatching an attempt, its agent
// (which formats the attempt's traceparent only when it is asked for), and
// the trace builder. Pure; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe {

/// Where a workflow's span ids continue: FNV-1a of its id. Span ids hash
/// "<workflow id><suffix>" byte by byte, so the id is hashed once.
uint64_t workflow_hash(const std::string& workflow_id);

/// The span id named "<workflow id><suffix>" (never 0, which OTLP reads as
/// none), from workflow_hash().
uint64_t span_number(uint64_t workflow_hash, std::string_view suffix);

/// attempt_span_id(workflow_id, step) as a number.
uint64_t attempt_span_number(uint64_t workflow_hash, uint64_t step);

/// Writes `x` as 16 lower-case hex digits at `out`.
void write_hex64(uint64_t x, char* out);

/// An attempt's W3C trace context, kept as numbers until it is asked for.
struct attempt_trace {
  uint64_t trace_hi = 0; ///< the trace id's first 16 hex digits
  uint64_t trace_lo = 0; ///< ... and its last 16
  uint64_t span = 0;     ///< the attempt's span; 0: no context

  /// "00-<trace id>-<span id>-01", as make_traceparent(); "" without a context.
  std::string traceparent() const;
  /// The 32 hex digits of the trace id; "" without a context.
  std::string trace_id() const;
};

/// The context of the attempt whose span is `span`, in trace `trace_id`
/// (32 lower-case hex digits, as trace_id_of() gives).
attempt_trace attempt_trace_of(const std::string& trace_id, uint64_t span);

} // namespace troupe
