// W3C traceparent headers and the OTLP/HTTP JSON encoding of spans
// (troupe/trace.hpp). Pure; any thread. The ids and derive_trace() live
// with the trace builder (runtime/trace_builder.cpp).
//
// OTLP JSON (opentelemetry-proto, ExportTraceServiceRequest in the protobuf
// JSON mapping): ids are hex strings, 64-bit integers (times, intValue) are
// decimal strings, enums (kind, status code) numbers, field names lowerCamelCase.
#include "troupe/trace.hpp"

#include <algorithm>
#include <variant>

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

// -- OTLP JSON, written straight into a string --------------------------------
// The exporter encodes every span it sends: building an nlohmann::json tree
// per span first cost several times the rest of the span's way out.

/// `s` as a JSON string; bytes that are not valid UTF-8 become U+FFFD.
void put_string(std::string& out, const std::string& s) {
  bool plain = true;
  for (unsigned char c : s)
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') {
      plain = false;
      break;
    }
  if (plain) {
    out += '"';
    out += s;
    out += '"';
  } else { // escapes and UTF-8 repair: leave them to the library
    out += json(s).dump(-1, ' ', false, json::error_handler_t::replace);
  }
}

void put_key(std::string& out, const char* key) {
  out += '"';
  out += key;
  out += "\":";
}

/// An int64 the protobuf JSON mapping way: a decimal string.
void put_int_string(std::string& out, int64_t x) {
  out += '"';
  out += std::to_string(x);
  out += '"';
}

/// An AnyValue: stringValue, boolValue, intValue (a decimal string) or doubleValue.
void put_value(std::string& out, const attribute_value& v) {
  if (auto s = std::get_if<std::string>(&v)) {
    out += "{\"stringValue\":";
    put_string(out, *s);
  } else if (auto b = std::get_if<bool>(&v)) {
    out += *b ? "{\"boolValue\":true" : "{\"boolValue\":false";
  } else if (auto i = std::get_if<int64_t>(&v)) {
    out += "{\"intValue\":";
    put_int_string(out, *i);
  } else {
    out += "{\"doubleValue\":" + json(std::get<double>(v)).dump();
  }
  out += '}';
}

void put_attributes(std::string& out, const attributes& attrs) {
  out += '[';
  for (size_t i = 0; i < attrs.size(); ++i) {
    out += i == 0 ? "{\"key\":" : ",{\"key\":";
    put_string(out, attrs[i].key);
    out += ",\"value\":";
    put_value(out, attrs[i].value);
    out += '}';
  }
  out += ']';
}

void put_span(std::string& out, const span& s) {
  out += "{\"traceId\":\"" + s.trace_id + "\",\"spanId\":\"" + s.span_id + "\"";
  if (!s.parent_span_id.empty())
    out += ",\"parentSpanId\":\"" + s.parent_span_id + "\"";
  out += ",\"name\":";
  put_string(out, s.name);
  out += ",\"kind\":" + std::to_string(static_cast<int>(s.kind));
  out += ",\"startTimeUnixNano\":";
  put_int_string(out, s.start_ns);
  out += ",\"endTimeUnixNano\":";
  put_int_string(out, s.ended ? s.end_ns : s.start_ns);
  out += ",\"attributes\":";
  put_attributes(out, s.attributes);
  if (!s.events.empty()) {
    out += ",\"events\":[";
    for (size_t i = 0; i < s.events.size(); ++i) {
      const auto& e = s.events[i];
      out += i == 0 ? "{" : ",{";
      put_key(out, "timeUnixNano");
      put_int_string(out, e.at_ns);
      out += ",\"name\":";
      put_string(out, e.name);
      out += ",\"attributes\":";
      put_attributes(out, e.attributes);
      out += '}';
    }
    out += ']';
  }
  out += ",\"status\":{\"code\":" + std::to_string(static_cast<int>(s.status));
  if (!s.status_message.empty()) {
    out += ",\"message\":";
    put_string(out, s.status_message);
  }
  out += "}}";
}

} // namespace

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
  out += "{\"resourceSpans\":[{\"resource\":{\"attributes\":[{\"key\":\"service.name\","
         "\"value\":{\"stringValue\":";
  put_string(out, service_name);
  out += "}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"troupe\"},\"spans\":[";
  for (size_t i = 0; i < spans.size(); ++i) {
    if (i > 0)
      out += ',';
    put_span(out, spans[i]);
  }
  out += "]}]}]}";
  return out;
}

} // namespace troupe
