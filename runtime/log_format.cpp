// The JSON log formatter and the thread-local log context (see the header).
#include "runtime/log_format.hpp"

#include <cstdio>
#include <ctime>

#include <nlohmann/json.hpp>

namespace troupe {

namespace {

thread_local const log_context* current = nullptr;

std::string utc_time(spdlog::log_clock::time_point t) {
  auto since = t.time_since_epoch();
  auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(since - secs).count();
  std::time_t tt = secs.count();
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<long>(micros));
  return buf;
}

class json_formatter final : public spdlog::formatter {
public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    nlohmann::ordered_json line;
    line["time"] = utc_time(msg.time);
    auto level = spdlog::level::to_string_view(msg.level);
    line["level"] = std::string(level.data(), level.size());
    line["logger"] = std::string(msg.logger_name.data(), msg.logger_name.size());
    line["message"] = std::string(msg.payload.data(), msg.payload.size());
    if (const auto* c = current) {
      if (!c->workflow_id.empty())
        line["workflow_id"] = std::string{c->workflow_id};
      if (!c->trace_id.empty())
        line["trace_id"] = std::string{c->trace_id};
      if (!c->node.empty())
        line["node"] = std::string{c->node};
      if (c->attempt > 0)
        line["attempt"] = c->attempt;
    }
    auto text = line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
    dest.append(text.data(), text.data() + text.size());
    dest.push_back('\n');
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<json_formatter>();
  }
};

} // namespace

std::unique_ptr<spdlog::formatter> make_json_formatter() {
  return std::make_unique<json_formatter>();
}

void use_json_logs() {
  spdlog::set_formatter(make_json_formatter());
}

scoped_log_context::scoped_log_context(const log_context& ctx) : outer_(current) {
  current = &ctx;
}

scoped_log_context::~scoped_log_context() {
  current = outer_;
}

} // namespace troupe
