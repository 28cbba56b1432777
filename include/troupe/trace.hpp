// Traces: what a workflow did, as spans in OpenTelemetry's model, derived
// from its journal. Every workflow is one trace (the caller's, when it was
// started with a W3C traceparent) with a root span; each attempt of a step,
// each wait at a gate and each recorded effect is a span under it. Ids are
// hashes of the workflow id and journaled numbers, so deriving a workflow's
// trace twice, or after a crash, gives the same ids.
//
// derive_trace() is pure: a journal read, no clock. The runtime exports the
// same spans as their events commit (config::tracing, runtime::trace_stats)
// and answers runtime::trace() with derive_trace().
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "troupe/definition.hpp"
#include "troupe/journal.hpp"

namespace troupe {

/// OTLP's status codes.
enum class span_status : uint8_t { unset = 0, ok = 1, error = 2 };

/// OTLP's span kinds (troupe's spans are all internal).
enum class span_kind : uint8_t { internal = 1, server = 2, client = 3, producer = 4, consumer = 5 };

/// An attribute's value: OTLP's string, int, double or bool.
using attribute_value = std::variant<std::string, int64_t, double, bool>;

/// A named value on a span or span event ("troupe.node", ...). A plain list,
/// in the order set: every committed span is built, so cheap beats a map.
struct attribute {
  std::string key;
  attribute_value value;
};
using attributes = std::vector<attribute>;

/// The value of `key` in `attrs` (the first one), or null.
const attribute_value* find_attribute(const attributes& attrs, const std::string& key);

/// `attrs` as a JSON object (key -> string, number or boolean): for tools
/// and tests that read spans.
nlohmann::json to_json(const attributes& attrs);

/// Something that happened at one instant of a span.
struct span_event {
  std::string name;
  int64_t at_ns = 0;
  troupe::attributes attributes;
};

/// One span. Times are the runtime clock's (ns since its epoch: the Unix
/// epoch with the default clock).
struct span {
  std::string trace_id;       ///< 32 lower-case hex digits
  std::string span_id;        ///< 16 lower-case hex digits
  std::string parent_span_id; ///< "" for a root started without a traceparent
  std::string name;           ///< "workflow triage", "step extract", ...
  span_kind kind = span_kind::internal;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  bool ended = false;         ///< false: still open (a live workflow)
  span_status status = span_status::unset;
  std::string status_message; ///< error: why
  troupe::attributes attributes;
  std::vector<span_event> events;
};

/// A W3C traceparent header, parsed.
struct trace_parent {
  std::string trace_id; ///< 32 lower-case hex digits, not all zero
  std::string span_id;  ///< 16 lower-case hex digits, not all zero
  uint8_t flags = 0;    ///< bit 0: sampled
};

/// Parses "00-<32 hex>-<16 hex>-<2 hex>" (lower-case hex, as the W3C
/// recommendation requires). invalid_input naming what is wrong: the
/// length, the version (only 00 is known), a field that is not hex, an
/// all-zero trace or span id.
caf::expected<trace_parent> parse_traceparent(const std::string& header);

/// "00-<trace_id>-<span_id>-01": the header troupe sends with a model call.
std::string make_traceparent(const std::string& trace_id, const std::string& span_id);

/// The trace of workflow `workflow_id`: the one `traceparent` names, or
/// (none, or one that does not parse) a hash of the workflow id.
std::string trace_id_of(const std::string& workflow_id, const std::string& traceparent);

/// The span of a workflow's `step`th attempt (1 for the first attempt
/// scheduled, counting every node: kernel workflow_state::steps).
std::string attempt_span_id(const std::string& workflow_id, uint64_t step);

/// The root span of workflow `workflow_id`.
std::string root_span_id(const std::string& workflow_id);

/// Every span of one workflow: its row, its journal records (all of them,
/// as journal_store::read returns them) and its effects
/// (journal_store::effects_of), folded through `def`, the definition it
/// runs (the row's name and version). Spans still open (a live workflow)
/// come with ended false. Ordered by start time. journal_corrupt naming the
/// record if one does not decode, skips or repeats a wf_seq, or does not
/// fit the definition; unknown_definition if `def` is not the row's.
caf::expected<std::vector<span>> derive_trace(const definition& def, const workflow_row& row,
                                              const std::vector<journal_record>& records,
                                              const std::vector<effect_record>& effects);

/// An OTLP/HTTP JSON body (ExportTraceServiceRequest) carrying `spans`
/// under one resource (service.name = `service_name`) and scope "troupe".
std::string to_otlp_json(const std::vector<span>& spans, const std::string& service_name);

/// Where and how spans are exported (config::tracing).
struct tracing_config {
  /// The collector's OTLP/HTTP traces URL, e.g. "http://127.0.0.1:4318/v1/traces";
  /// "" turns export off.
  std::string otlp_endpoint;
  std::string service_name = "troupe";
  size_t batch_max = 512;   ///< spans per POST at most
  /// Spans waiting or in flight at most; past it new spans are dropped
  /// (and counted): a dead or slow collector never slows a workflow.
  size_t buffer_max = 8192;
  /// A batch smaller than batch_max waits at most this long.
  std::chrono::milliseconds flush_interval{1000};
  /// Tries per batch in all, and the full-jitter backoff between them; a
  /// batch that runs out of tries is dropped (and counted).
  retry_policy retry = {4, std::chrono::milliseconds{100}, std::chrono::seconds{5}, {}};
  std::chrono::milliseconds post_timeout{5000}; ///< per POST
  /// At shutdown, how long the runtime waits for what is left to export.
  std::chrono::milliseconds shutdown_timeout{2000};
};

/// What the exporter has done so far (runtime::trace_stats).
struct trace_stats {
  uint64_t spans_exported = 0; ///< accepted by the collector (2xx)
  uint64_t spans_dropped = 0;  ///< the buffer was full, or their batch ran out of tries
  uint64_t spans_queued = 0;   ///< waiting or in flight now
  uint64_t posts = 0;          ///< POSTs answered 2xx
  uint64_t posts_failed = 0;   ///< POSTs that failed (each try): no answer, or not 2xx
  /// Committed records not traced: they did not decode or fit their
  /// definition (unknown or another version), or the exporter could not
  /// read the journal to catch up.
  uint64_t records_skipped = 0;
};

} // namespace troupe
