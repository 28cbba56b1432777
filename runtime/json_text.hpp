// JSON text written straight into a string, for the two writers that run
// per step and so skip building an nlohmann::json document first: the
// journal's event payloads (persistence/event_codec.cpp) and OTLP span
// export (runtime/trace.cpp). Pure; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace troupe {

/// Whether `s` is written as a JSON string as it is, between quotes
/// (printable ASCII, no quote or backslash).
bool json_plain(std::string_view s);

/// Appends `s` as a JSON string, quotes included, byte for byte what
/// nlohmann::json's dump(-1, ' ', false, error_handler_t::replace) writes:
/// bytes that are not valid UTF-8 become U+FFFD.
void append_json_string(std::string& out, std::string_view s);

/// Appends `x` in decimal.
void append_decimal(std::string& out, uint64_t x);
void append_decimal(std::string& out, int64_t x);

/// Appends `x` as nlohmann::json's dump() writes a double (the shortest
/// text that reads back as `x`; "null" for NaN and infinities).
void append_json_number(std::string& out, double x);

} // namespace troupe
