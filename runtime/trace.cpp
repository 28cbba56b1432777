// W3C traceparent headers (troupe/trace.hpp) and the OTLP/HTTP JSON
// encoding of spans (runtime/otlp_json.hpp, troupe/trace.hpp's
// to_otlp_json). Pure; any thread. The ids and derive_trace() live with
// the trace builder (runtime/trace_builder.cpp).
#include "troupe/trace.hpp"

#include <algorithm>
#include <variant>

#include "runtime/json_text.hpp"
#include "runtime/otlp_json.hpp"
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

void put_int_string(std::string& out, int64_t x) { // an int64, the protobuf JSON way
  out += '"';
  append_decimal(out, x);
  out += '"';
}

/// An AnyValue: stringValue, boolValue, intValue (a decimal string) or doubleValue.
void put_value(std::string& out, const otlp::value_ref& v) {
  using type = otlp::value_ref::type;
  switch (v.t) {
    case type::string:
      out += "{\"stringValue\":";
      append_json_string(out, v.s);
      break;
    case type::boolean:
      out += v.b ? "{\"boolValue\":true" : "{\"boolValue\":false";
      break;
    case type::integer:
      out += "{\"intValue\":";
      put_int_string(out, v.i);
      break;
    case type::real:
      out += "{\"doubleValue\":";
      append_json_number(out, v.d);
      break;
  }
  out += '}';
}

otlp::value_ref ref_of(const attribute_value& v) {
  otlp::value_ref r;
  if (auto s = std::get_if<std::string>(&v)) {
    r.s = *s;
  } else if (auto b = std::get_if<bool>(&v)) {
    r.t = otlp::value_ref::type::boolean;
    r.b = *b;
  } else if (auto i = std::get_if<int64_t>(&v)) {
    r.t = otlp::value_ref::type::integer;
    r.i = *i;
  } else {
    r.t = otlp::value_ref::type::real;
    r.d = std::get<double>(v);
  }
  return r;
}

attribute_value value_of(const otlp::value_ref& v) {
  using type = otlp::value_ref::type;
  switch (v.t) {
    case type::boolean: return v.b;
    case type::integer: return v.i;
    case type::real: return v.d;
    case type::string: break;
  }
  return std::string{v.s};
}

void put_attribute(std::string& out, bool first, std::string_view key, const otlp::value_ref& v) {
  out += first ? "{\"key\":" : ",{\"key\":";
  append_json_string(out, key);
  out += ",\"value\":";
  put_value(out, v);
  out += '}';
}

void put_attributes(std::string& out, const attributes& attrs) {
  out += '[';
  for (size_t i = 0; i < attrs.size(); ++i)
    put_attribute(out, i == 0, attrs[i].key, ref_of(attrs[i].value));
  out += ']';
}

} // namespace

// -- OTLP JSON (runtime/otlp_json.hpp) ---------------------------------------------
// The exporter encodes every span it sends: building an nlohmann::json tree
// per span first cost several times the rest of the span's way out.

void otlp::append_span(std::string& out, const span_ref& s) {
  out += "{\"traceId\":\"";
  out += s.trace_id;
  out += "\",\"spanId\":\"";
  out += s.span_id;
  out += '"';
  if (!s.parent_span_id.empty()) {
    out += ",\"parentSpanId\":\"";
    out += s.parent_span_id;
    out += '"';
  }
  out += ",\"name\":";
  append_json_string(out, s.name);
  out += ",\"kind\":";
  append_decimal(out, int64_t{static_cast<int>(s.kind)});
  out += ",\"startTimeUnixNano\":";
  put_int_string(out, s.start_ns);
  out += ",\"endTimeUnixNano\":";
  put_int_string(out, s.ended ? s.end_ns : s.start_ns);
  out += ",\"attributes\":[";
  for (size_t i = 0; i < s.attribute_count; ++i)
    put_attribute(out, i == 0, s.attributes[i].key, s.attributes[i].value);
  out += ']';
  if (s.events != nullptr && !s.events->empty()) {
    out += ",\"events\":[";
    for (size_t i = 0; i < s.events->size(); ++i) {
      const auto& e = (*s.events)[i];
      out += i == 0 ? "{\"timeUnixNano\":" : ",{\"timeUnixNano\":";
      put_int_string(out, e.at_ns);
      out += ",\"name\":";
      append_json_string(out, e.name);
      out += ",\"attributes\":";
      put_attributes(out, e.attributes);
      out += '}';
    }
    out += ']';
  }
  out += ",\"status\":{\"code\":";
  append_decimal(out, int64_t{static_cast<int>(s.status)});
  if (!s.status_message.empty()) {
    out += ",\"message\":";
    append_json_string(out, s.status_message);
  }
  out += "}}";
}

void otlp::append_body_head(std::string& out, const std::string& service_name) {
  out += "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
         "\"value\":{\"stringValue\":";
  append_json_string(out, service_name);
  out += "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"troupe\"},\"spans\":[";
}

span otlp::to_span(const span_ref& s) {
  span out{std::string{s.trace_id}, std::string{s.span_id}, std::string{s.parent_span_id},
           std::string{s.name},     s.kind,  s.start_ns, s.end_ns, s.ended, s.status,
           std::string{s.status_message}, {}, {}};
  out.attributes.reserve(s.attribute_count);
  for (size_t i = 0; i < s.attribute_count; ++i)
    out.attributes.push_back({std::string{s.attributes[i].key}, value_of(s.attributes[i].value)});
  if (s.events != nullptr)
    out.events = *s.events;
  return out;
}

const attribute_value* find_attribute(const attributes& attrs, const std::string& key) {
  for (const auto& a : attrs)
    if (a.key == key)
      return &a.value;
  return nullptr;
}

nlohmann::json to_json(const attributes& attrs) {
  auto out = json::object();
  for (const auto& a : attrs)
    std::visit([&](const auto& v) { out.emplace(a.key, v); }, a.value);
  return out;
}

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
  std::string out;
  out.reserve(256 + spans.size() * 900);
  otlp::append_body_head(out, service_name);
  std::vector<otlp::attribute_ref> attrs;
  for (size_t i = 0; i < spans.size(); ++i) {
    const auto& s = spans[i];
    attrs.clear();
    for (const auto& a : s.attributes)
      attrs.push_back({a.key, ref_of(a.value)});
    if (i > 0)
      out += ',';
    otlp::append_span(out, {s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns,
                            s.end_ns, s.ended, s.status, s.status_message, attrs.data(),
                            attrs.size(), &s.events});
  }
  out += otlp::body_tail;
  return out;
}

} // namespace troupe
