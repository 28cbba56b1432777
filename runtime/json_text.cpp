// JSON text written straight into a string (see the header).
#include "runtime/json_text.hpp"

#include <charconv>
#include <cmath>

#include <nlohmann/json.hpp>

namespace troupe {

namespace {

template <class Int>
void append_int(std::string& out, Int x) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

} // namespace

void append_json_string(std::string& out, std::string_view s) {
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
    return;
  }
  // escapes and UTF-8 repair: leave them to the library
  using json = nlohmann::json;
  out += json(std::string{s}).dump(-1, ' ', false, json::error_handler_t::replace);
}

void append_decimal(std::string& out, uint64_t x) {
  append_int(out, x);
}

void append_decimal(std::string& out, int64_t x) {
  append_int(out, x);
}

void append_json_number(std::string& out, double x) {
  if (!std::isfinite(x)) {
    out += "null";
    return;
  }
  // what json's serializer does for a double, without making one (and its
  // string) per number
  char buf[64];
  auto* end = nlohmann::detail::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, static_cast<size_t>(end - buf));
}

} // namespace troupe
