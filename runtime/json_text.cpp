// JSON text written straight into a string (see the header).
#include "runtime/json_text.hpp"

#include <charconv>
#include <cmath>
#include <cstring>

#include <nlohmann/json.hpp>

namespace troupe {

namespace {

template <class Int>
void append_int(std::string& out, Int x) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, x);
  out.append(buf, static_cast<size_t>(r.ptr - buf));
}

/// For each byte: whether it can stand in a JSON string as it is.
struct plain_bytes {
  bool ok[256] = {};
  constexpr plain_bytes() {
    for (int c = 0x20; c < 0x80; ++c)
      ok[c] = c != '"' && c != '\\';
  }
};

constexpr plain_bytes plain_table;

} // namespace

bool json_plain(std::string_view s) {
  // eight bytes at a time while all are plain (spans are mostly ids and names)
  size_t i = 0;
  for (; i + 8 <= s.size(); i += 8) {
    uint64_t x;
    std::memcpy(&x, s.data() + i, 8);
    constexpr uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    auto zero_byte = [&](uint64_t v) { return (v - ones) & ~v & highs; };
    // a byte >= 0x80, or < 0x20 (adding 0x60 leaves its high bit clear;
    // no carry crosses bytes unless one is >= 0x80), a quote, a backslash:
    // the exact loop below says which
    if (((x | ~(x + 0x6060606060606060ull)) & highs) != 0
        || zero_byte(x ^ (ones * '"')) != 0 || zero_byte(x ^ (ones * '\\')) != 0)
      break;
  }
  for (; i < s.size(); ++i)
    if (!plain_table.ok[static_cast<unsigned char>(s[i])])
      return false;
  return true;
}

void append_json_string(std::string& out, std::string_view s) {
  if (json_plain(s)) {
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
