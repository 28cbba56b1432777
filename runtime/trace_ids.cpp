// Trace and span ids (troupe/trace.hpp's, and as numbers: see the header).
#include "runtime/trace_ids.hpp"

#include <charconv>

#include "troupe/hash.hpp"
#include "troupe/trace.hpp"

namespace troupe {

namespace {

std::string hex64(uint64_t x) {
  std::string out(16, '0');
  write_hex64(x, out.data());
  return out;
}

uint64_t from_hex(std::string_view s) {
  uint64_t x = 0;
  std::from_chars(s.data(), s.data() + s.size(), x, 16);
  return x;
}

} // namespace

void write_hex64(uint64_t x, char* out) {
  static const char digits[] = "0123456789abcdef";
  for (int i = 15; i >= 0; --i, x >>= 4)
    out[i] = digits[x & 0xf];
}

uint64_t workflow_hash(const std::string& workflow_id) {
  return fnv1a(workflow_id);
}

uint64_t span_number(uint64_t workflow_hash, std::string_view suffix) {
  auto h = splitmix64(fnv1a(suffix, workflow_hash));
  return h == 0 ? 1 : h;
}

uint64_t attempt_span_number(uint64_t workflow_hash, uint64_t step) {
  char suffix[32] = "/step/";
  auto end = std::to_chars(suffix + 6, suffix + sizeof suffix, step).ptr;
  return span_number(workflow_hash, std::string_view{suffix, static_cast<size_t>(end - suffix)});
}

std::string attempt_trace::traceparent() const {
  if (span == 0)
    return {};
  std::string out(55, '-');
  out[0] = '0';
  out[1] = '0';
  write_hex64(trace_hi, out.data() + 3);
  write_hex64(trace_lo, out.data() + 19);
  write_hex64(span, out.data() + 36);
  out[53] = '0';
  out[54] = '1';
  return out;
}

std::string attempt_trace::trace_id() const {
  if (span == 0)
    return {};
  return hex64(trace_hi) + hex64(trace_lo);
}

attempt_trace attempt_trace_of(const std::string& trace_id, uint64_t span) {
  attempt_trace t;
  if (trace_id.size() == 32) {
    t.trace_hi = from_hex(std::string_view{trace_id}.substr(0, 16));
    t.trace_lo = from_hex(std::string_view{trace_id}.substr(16));
    t.span = span;
  }
  return t;
}

// -- the string ids (troupe/trace.hpp) --------------------------------------------

std::string trace_id_of(const std::string& workflow_id, const std::string& traceparent) {
  if (!traceparent.empty())
    if (auto p = parse_traceparent(traceparent))
      return p->trace_id;
  auto hi = splitmix64(fnv1a("troupe.trace/" + workflow_id));
  auto lo = splitmix64(fnv1a(workflow_id, hi));
  return hex64(hi) + hex64(hi == 0 && lo == 0 ? 1 : lo);
}

std::string root_span_id(const std::string& workflow_id) {
  return hex64(span_number(workflow_hash(workflow_id), "/workflow"));
}

std::string attempt_span_id(const std::string& workflow_id, uint64_t step) {
  return hex64(attempt_span_number(workflow_hash(workflow_id), step));
}

} // namespace troupe
