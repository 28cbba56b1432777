// OTLP/HTTP JSON (opentelemetry-proto's ExportTraceServiceRequest in the
// protobuf JSON mapping) written straight into a string, from spans
// borrowed for the call. to_otlp_json() encodes troupe::span values this
// way; the trace exporter encodes each span as the trace builder ends it,
// into the body of the batch it will post, so no span value is ever made
// on the way out. Pure; any thread.
//
// The mapping: ids are hex strings, 64-bit integers (times, intValue) are
// decimal strings, enums (kind, status code) numbers, field names
// lowerCamelCase. An open span's end time is its start time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "troupe/trace.hpp"

namespace troupe::otlp {

/// An attribute's value, borrowed: OTLP's string, int, double or bool.
struct value_ref {
  enum class type : uint8_t { string, integer, real, boolean };
  type t = type::string;
  std::string_view s;
  int64_t i = 0;
  double d = 0;
  bool b = false;
};

struct attribute_ref {
  std::string_view key;
  value_ref value;
};

/// A span, borrowed: everything it points to must outlive the call it is
/// given to. Fields as troupe::span's.
struct span_ref {
  std::string_view trace_id;
  std::string_view span_id;
  std::string_view parent_span_id; ///< "": none
  std::string_view name;
  span_kind kind = span_kind::internal;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  bool ended = false;
  span_status status = span_status::unset;
  std::string_view status_message;
  const attribute_ref* attributes = nullptr;
  size_t attribute_count = 0;
  const std::vector<span_event>* events = nullptr; ///< null: none
};

/// Appends `s` as one element of a ScopeSpans' spans array.
void append_span(std::string& out, const span_ref& s);

/// Appends what comes before the first span of a body whose spans come
/// under one resource (service.name = `service_name`) and scope "troupe".
void append_body_head(std::string& out, const std::string& service_name);

/// What comes after a body's last span.
inline constexpr std::string_view body_tail = "]}]}]}";

/// `s` as a span value, owning its data.
span to_span(const span_ref& s);

} // namespace troupe::otlp
