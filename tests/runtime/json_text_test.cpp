// JSON text written straight into a string (runtime/json_text.hpp), which
// the journal's payloads and OTLP export share: the same bytes as
// nlohmann::json's dump() for strings (escapes, UTF-8 repair) and numbers.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/json_text.hpp"

using namespace troupe;
using json = nlohmann::json;

namespace {

std::string dumped(const json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

} // namespace

TEST_CASE("strings are written as json::dump writes them, escapes and repairs included",
          "[json]") {
  std::vector<std::string> strings = {"",
                                      "plain ascii",
                                      "say \"hi\"\n\tand \\ go",
                                      std::string{"nul \0 inside", 12},
                                      "\x01\x1f control",
                                      "caf\xc3\xa9 \xe2\x82\xac",     // valid UTF-8
                                      "bad \xff\xfe bytes",          // not UTF-8: U+FFFD
                                      "cut \xe2\x82"};              // truncated sequence
  for (const auto& s : strings) {
    INFO(dumped(s));
    std::string out = "x";
    append_json_string(out, s);
    CHECK(out == "x" + dumped(s));
  }
}

TEST_CASE("a byte that needs escaping is found wherever it is in a long string", "[json]") {
  for (char special : {'"', '\\', '\x01', '\x1f', '\x7f', ' ', '~'})
    for (unsigned char high : {0x00, 0x80, 0xc3, 0xff})
      for (size_t at = 0; at < 24; ++at) {
        std::string s(24, 'a');
        s[at] = special;
        if (high != 0)
          s[(at + 5) % 24] = static_cast<char>(high);
        INFO(dumped(s) << " at " << at);
        std::string out;
        append_json_string(out, s);
        CHECK(out == dumped(s));
        CHECK(json_plain(s) == (out == "\"" + s + "\""));
      }
}

TEST_CASE("numbers are written as json::dump writes them", "[json]") {
  for (double d : {0.0, -0.0, 1.0, 0.1, 3e-06, 1e-09, 123456789.125, 1e21, -2.5e-300,
                   std::numeric_limits<double>::max(), std::numeric_limits<double>::min(),
                   std::nan(""), std::numeric_limits<double>::infinity()}) {
    INFO(d);
    std::string out;
    append_json_number(out, d);
    CHECK(out == dumped(d));
  }
  for (int64_t i : {int64_t{0}, int64_t{-1}, INT64_MAX, INT64_MIN}) {
    std::string out;
    append_decimal(out, i);
    CHECK(out == dumped(i));
  }
  std::string out;
  append_decimal(out, UINT64_MAX);
  CHECK(out == dumped(UINT64_MAX));
}
