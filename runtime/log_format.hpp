// Structured logs: spdlog lines as JSON objects (config::log_format
// "json"), and the workflow a line is about. Callers that log about a
// workflow use log_about() with a log_context; the JSON formatter adds the
// context's fields to the line it formats, the text pattern ignores them
// (its messages name the workflow already).
//
// The context reaches the formatter through a thread-local set for the
// duration of one log_about() call: spdlog's default logger formats in the
// calling thread. An asynchronous logger would format elsewhere and lose it.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>

#include <spdlog/formatter.h>
#include <spdlog/spdlog.h>

namespace troupe {

/// What a log line is about; empty fields (attempt 0) are left out.
struct log_context {
  std::string_view workflow_id{};
  std::string_view trace_id{};
  std::string_view node{};
  uint32_t attempt = 0;
};

/// One JSON object per line: time (UTC, RFC 3339, microseconds), level,
/// logger, message, then workflow_id, trace_id, node and attempt from the
/// log_context of the line, if any. Strings that are not UTF-8 are repaired.
std::unique_ptr<spdlog::formatter> make_json_formatter();

/// Puts the JSON formatter on every spdlog logger (the default one too).
void use_json_logs();

/// Sets the context of the log lines formatted on this thread while it
/// lives; nests.
class scoped_log_context {
public:
  explicit scoped_log_context(const log_context& ctx);
  ~scoped_log_context();
  scoped_log_context(const scoped_log_context&) = delete;
  scoped_log_context& operator=(const scoped_log_context&) = delete;

private:
  const log_context* outer_;
};

/// spdlog::log(level, fmt, args...) on the default logger, with `ctx`.
template <class... Ts>
void log_about(const log_context& ctx, spdlog::level::level_enum level,
               spdlog::format_string_t<Ts...> fmt, Ts&&... args) {
  if (!spdlog::should_log(level))
    return;
  scoped_log_context scope{ctx};
  spdlog::log(level, fmt, std::forward<Ts>(args)...);
}

} // namespace troupe
