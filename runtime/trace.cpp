// W3C traceparent headers (troupe/trace.hpp) and the OTLP/HTTP JSON
// encoding of spans (runtime/otlp_json.hpp, troupe/trace.hpp's
// to_otlp_json). Pure; any thread. The ids and derive_trace() live with
// the trace builder (runtime/trace_builder.cpp).
#include "troupe/trace.hpp"

#include <algorithm>
#include <charconv>
#include <cstring>
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

/// Appends to a string through a cursor: room is made ahead and pieces are
/// copied in place (std::string::append is a call into the library per
/// piece, and a span is some 150 pieces). The string has its final size
/// when the writer is destroyed.
class text_writer {
public:
  explicit text_writer(std::string& out) : out_(out), pos_(out.size()) {}
  ~text_writer() { out_.resize(pos_); }
  text_writer(const text_writer&) = delete;
  text_writer& operator=(const text_writer&) = delete;

  text_writer& operator<<(std::string_view v) {
    room(v.size());
    std::memcpy(&out_[pos_], v.data(), v.size());
    pos_ += v.size();
    return *this;
  }
  text_writer& operator<<(char c) {
    room(1);
    out_[pos_++] = c;
    return *this;
  }
  /// `s` as a JSON string (json_text.hpp's escaping when it needs any).
  void string(std::string_view s) {
    if (!json_plain(s)) {
      std::string escaped;
      append_json_string(escaped, s);
      *this << escaped;
      return;
    }
    room(s.size() + 2);
    out_[pos_++] = '"';
    std::memcpy(&out_[pos_], s.data(), s.size());
    pos_ += s.size();
    out_[pos_++] = '"';
  }
  /// An int64 the protobuf JSON way: a decimal string.
  void int_string(int64_t x) {
    room(24);
    out_[pos_++] = '"';
    pos_ = static_cast<size_t>(std::to_chars(&out_[pos_], &out_[pos_] + 21, x).ptr - out_.data());
    out_[pos_++] = '"';
  }
  void number(int64_t x) {
    room(21);
    pos_ = static_cast<size_t>(std::to_chars(&out_[pos_], &out_[pos_] + 21, x).ptr - out_.data());
  }
  void number(double x) {
    std::string text;
    append_json_number(text, x);
    *this << text;
  }

private:
  /// At least `n` more bytes; a span's worth at a time (the string's own
  /// capacity grows geometrically), so little is zeroed in advance.
  void room(size_t n) {
    if (pos_ + n > out_.size())
      out_.resize(pos_ + n + 1024);
  }

  std::string& out_;
  size_t pos_;
};

/// An AnyValue: stringValue, boolValue, intValue (a decimal string) or doubleValue.
void put_value(text_writer& out, const otlp::value_ref& v) {
  using type = otlp::value_ref::type;
  switch (v.t) {
    case type::string:
      out << "{\"stringValue\":";
      out.string(v.s);
      break;
    case type::boolean:
      out << (v.b ? std::string_view{"{\"boolValue\":true"} : "{\"boolValue\":false");
      break;
    case type::integer:
      out << "{\"intValue\":";
      out.int_string(v.i);
      break;
    case type::real:
      out << "{\"doubleValue\":";
      out.number(v.d);
      break;
  }
  out << '}';
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

void put_attribute(text_writer& out, bool first, std::string_view key, const otlp::value_ref& v) {
  out << (first ? std::string_view{"{\"key\":"} : ",{\"key\":");
  out.string(key);
  out << ",\"value\":";
  put_value(out, v);
  out << '}';
}

void put_attributes(text_writer& out, const attributes& attrs) {
  out << '[';
  for (size_t i = 0; i < attrs.size(); ++i)
    put_attribute(out, i == 0, attrs[i].key, ref_of(attrs[i].value));
  out << ']';
}

} // namespace

// -- OTLP JSON (runtime/otlp_json.hpp) ---------------------------------------------
// The exporter encodes every span it sends: building an nlohmann::json tree
// per span first cost several times the rest of the span's way out.

void otlp::append_span(std::string& text, const span_ref& s) {
  text_writer out{text};
  out << "{\"traceId\":\"" << s.trace_id << "\",\"spanId\":\"" << s.span_id << '"';
  if (!s.parent_span_id.empty())
    out << ",\"parentSpanId\":\"" << s.parent_span_id << '"';
  out << ",\"name\":";
  out.string(s.name);
  out << ",\"kind\":";
  out.number(int64_t{static_cast<int>(s.kind)});
  out << ",\"startTimeUnixNano\":";
  out.int_string(s.start_ns);
  out << ",\"endTimeUnixNano\":";
  out.int_string(s.ended ? s.end_ns : s.start_ns);
  out << ",\"attributes\":[";
  for (size_t i = 0; i < s.attribute_count; ++i)
    put_attribute(out, i == 0, s.attributes[i].key, s.attributes[i].value);
  out << ']';
  if (s.events != nullptr && !s.events->empty()) {
    out << ",\"events\":[";
    for (size_t i = 0; i < s.events->size(); ++i) {
      const auto& e = (*s.events)[i];
      out << (i == 0 ? std::string_view{"{\"timeUnixNano\":"} : ",{\"timeUnixNano\":");
      out.int_string(e.at_ns);
      out << ",\"name\":";
      out.string(e.name);
      out << ",\"attributes\":";
      put_attributes(out, e.attributes);
      out << '}';
    }
    out << ']';
  }
  out << ",\"status\":{\"code\":";
  out.number(int64_t{static_cast<int>(s.status)});
  if (!s.status_message.empty()) {
    out << ",\"message\":";
    out.string(s.status_message);
  }
  out << "}}";
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
