// W3C traceparent headers and the OTLP/HTTP JSON encoding of spans
// (troupe/trace.hpp). Pure; any thread. The ids and derive_trace() live
// with the trace builder (runtime/trace_builder.cpp).
//
// OTLP JSON (opentelemetry-proto, ExportTraceServiceRequest in the protobuf
// JSON mapping): ids are hex strings, 64-bit integers (times, intValue) are
// decimal strings, enums (kind, status code) numbers, field names lowerCamelCase.
#include "troupe/trace.hpp"

#include <algorithm>

#include "troupe/errors.hpp"

namespace troupe {

namespace {

using json = nlohmann::json;

bool lower_hex(const std::string& s, size_t from, size_t n) {
  for (size_t i = from; i < from + n; ++i) {
    char c = s[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  }
  return true;
}

bool all_zero(const std::string& s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

caf::error bad_traceparent(const std::string& header, const std::string& what) {
  auto shown = header.size() > 64 ? header.substr(0, 61) + "..." : header;
  return make_error(errc::invalid_input, "traceparent '" + shown + "': " + what
                                           + " (expected 00-<32 hex>-<16 hex>-<2 hex>, lower-case)");
}

json any_value(const json& v) {
  if (v.is_string())
    return {{"stringValue", v}};
  if (v.is_boolean())
    return {{"boolValue", v}};
  if (v.is_number_integer()) // int64 as a decimal string (protobuf JSON mapping)
    return {{"intValue", v.is_number_unsigned() ? std::to_string(v.get<uint64_t>())
                                                : std::to_string(v.get<int64_t>())}};
  if (v.is_number_float())
    return {{"doubleValue", v}};
  return {{"stringValue", v.dump(-1, ' ', false, json::error_handler_t::replace)}};
}

json attributes(const json& object) {
  auto out = json::array();
  for (const auto& item : object.items())
    out.push_back({{"key", item.key()}, {"value", any_value(item.value())}});
  return out;
}

json encode(const span& s) {
  json out = {
    {"traceId", s.trace_id},
    {"spanId", s.span_id},
    {"name", s.name},
    {"kind", static_cast<int>(s.kind)},
    {"startTimeUnixNano", std::to_string(s.start_ns)},
    {"endTimeUnixNano", std::to_string(s.ended ? s.end_ns : s.start_ns)},
    {"attributes", attributes(s.attributes)},
    {"status", {{"code", static_cast<int>(s.status)}}},
  };
  if (!s.parent_span_id.empty())
    out["parentSpanId"] = s.parent_span_id;
  if (!s.status_message.empty())
    out["status"]["message"] = s.status_message;
  if (!s.events.empty()) {
    auto events = json::array();
    for (const auto& e : s.events)
      events.push_back({{"timeUnixNano", std::to_string(e.at_ns)},
                        {"name", e.name},
                        {"attributes", attributes(e.attributes)}});
    out["events"] = std::move(events);
  }
  return out;
}

} // namespace

caf::expected<trace_parent> parse_traceparent(const std::string& header) {
  if (header.size() != 55)
    return bad_traceparent(header, std::to_string(header.size()) + " characters, not 55");
  if (header[2] != '-' || header[35] != '-' || header[52] != '-')
    return bad_traceparent(header, "fields not separated by '-' at 3, 36 and 53");
  if (header.compare(0, 2, "00") != 0)
    return bad_traceparent(header, "version '" + header.substr(0, 2) + "' is not 00");
  trace_parent p;
  p.trace_id = header.substr(3, 32);
  p.span_id = header.substr(36, 16);
  if (!lower_hex(header, 3, 32))
    return bad_traceparent(header, "the trace id is not 32 lower-case hex digits");
  if (!lower_hex(header, 36, 16))
    return bad_traceparent(header, "the parent span id is not 16 lower-case hex digits");
  if (!lower_hex(header, 53, 2))
    return bad_traceparent(header, "the flags are not 2 lower-case hex digits");
  if (all_zero(p.trace_id))
    return bad_traceparent(header, "the trace id is all zeros");
  if (all_zero(p.span_id))
    return bad_traceparent(header, "the parent span id is all zeros");
  p.flags = static_cast<uint8_t>(std::stoul(header.substr(53, 2), nullptr, 16));
  return p;
}

std::string make_traceparent(const std::string& trace_id, const std::string& span_id) {
  return "00-" + trace_id + "-" + span_id + "-01";
}

std::string to_otlp_json(const std::vector<span>& spans, const std::string& service_name) {
  auto encoded = json::array();
  for (const auto& s : spans)
    encoded.push_back(encode(s));
  json resource = {{"attributes", attributes({{"service.name", service_name}})}};
  json scope = {{"scope", {{"name", "troupe"}}}, {"spans", std::move(encoded)}};
  json body = {{"resourceSpans", json::array({{{"resource", std::move(resource)},
                                                {"scopeSpans", json::array({std::move(scope)})}}})}};
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace troupe
