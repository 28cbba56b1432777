// Structured logs (config::log_format "json"): every line is one JSON object
// with time, level, logger and message, and a line about a workflow carries
// its id, trace id, node and attempt. Lines are captured by a sink on a
// default logger of the test's own, and each one parsed.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>

#include "runtime/log_format.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"
#include "troupe/trace.hpp"

using namespace troupe;
using namespace std::chrono_literals;
using json = nlohmann::json;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

/// Keeps every formatted line; a test can wait for one.
class line_sink final : public spdlog::sinks::base_sink<std::mutex> {
public:
  std::vector<std::string> lines() {
    std::lock_guard<std::mutex> g{mu_};
    return lines_;
  }
  /// Waits until a line contains `text` (a workflow logs after its status
  /// changed, so after an await may return).
  bool wait_for(const std::string& text, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock{mu_};
    return added_.wait_for(lock, timeout, [&] {
      for (const auto& l : lines_)
        if (l.find(text) != std::string::npos)
          return true;
      return false;
    });
  }

protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t formatted;
    formatter_->format(msg, formatted);
    std::lock_guard<std::mutex> g{mu_};
    lines_.emplace_back(formatted.data(), formatted.size());
    added_.notify_all();
  }
  void flush_() override {}

private:
  std::mutex mu_;
  std::condition_variable added_;
  std::vector<std::string> lines_;
};

/// Makes the default logger write into a line_sink for the test's duration.
class captured_logs {
public:
  captured_logs() { spdlog::set_default_logger(std::make_shared<spdlog::logger>("troupe", sink_)); }
  ~captured_logs() {
    spdlog::set_default_logger(previous_);
    spdlog::set_formatter(std::make_unique<spdlog::pattern_formatter>());
    spdlog::set_level(level_);
  }

  /// Every line written so far, each parsed (a line that is not JSON fails).
  std::vector<json> lines() {
    std::vector<json> out;
    for (const auto& line : sink_->lines()) {
      INFO(line);
      REQUIRE(!line.empty());
      REQUIRE(line.back() == '\n'); // one object per line
      auto j = json::parse(line, nullptr, false);
      REQUIRE_FALSE(j.is_discarded());
      out.push_back(std::move(j));
    }
    return out;
  }

  /// The lines whose message contains `text`, once there is one.
  std::vector<json> about(const std::string& text) {
    REQUIRE(sink_->wait_for(text, patience));
    std::vector<json> out;
    for (auto& l : lines())
      if (l["message"].get<std::string>().find(text) != std::string::npos)
        out.push_back(l);
    return out;
  }

private:
  std::shared_ptr<line_sink> sink_ = std::make_shared<line_sink>();
  std::shared_ptr<spdlog::logger> previous_ = spdlog::default_logger();
  spdlog::level::level_enum level_ = spdlog::get_level();
};

} // namespace

TEST_CASE("a JSON log line has time, level, logger, message and the context's fields",
          "[logs]") {
  captured_logs logs;
  spdlog::set_formatter(make_json_formatter());
  spdlog::set_level(spdlog::level::info);
  log_about({"order-1", "4bf92f3577b34da6a3ce929d0e0e4736", "charge", 2}, spdlog::level::warn,
            "attempt {} of '{}' failed: {}", 2, "charge", "quote \" newline \n bad \xff byte");
  spdlog::info("no workflow here");
  log_about({"order-2"}, spdlog::level::err, "only an id");
  log_about({"order-3"}, spdlog::level::debug, "below the level: not written");
  auto lines = logs.lines();
  REQUIRE(lines.size() == 3);
  auto& first = lines[0];
  CHECK(first["level"] == "warning");
  CHECK(first["logger"] == "troupe");
  CHECK(first["message"]
        == "attempt 2 of 'charge' failed: quote \" newline \n bad \xef\xbf\xbd byte");
  CHECK(first["workflow_id"] == "order-1");
  CHECK(first["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(first["node"] == "charge");
  CHECK(first["attempt"] == 2);
  auto time = first["time"].get<std::string>(); // 2024-01-02T03:04:05.123456Z
  CHECK(time.size() == 27);
  CHECK(time[10] == 'T');
  CHECK(time.back() == 'Z');
  CHECK(lines[1]["message"] == "no workflow here");
  CHECK_FALSE(lines[1].contains("workflow_id"));
  CHECK(lines[1]["level"] == "info");
  CHECK(lines[2]["workflow_id"] == "order-2");
  CHECK_FALSE(lines[2].contains("trace_id"));
  CHECK_FALSE(lines[2].contains("attempt"));
}

TEST_CASE("with log_format json the runtime's lines about a workflow carry its context",
          "[logs]") {
  captured_logs logs;
  config cfg;
  cfg.log_format = "json";
  cfg.log_level = "warn";
  runtime rt{std::move(cfg)};
  REQUIRE_FALSE(rt.register_agent("thrower", [](step_context&) -> void {
    throw std::runtime_error("out of paper");
  }));
  agent_policy once;
  once.timeout = 5s;
  REQUIRE_FALSE(rt.register_definition(
    *definition_builder{"print"}.agent("print", "thrower", once).on("ok", "done")
       .completed("done").build()));
  auto id = rt.start("print", json::object());
  REQUIRE(id);
  auto info = rt.await(*id, patience);
  REQUIRE(info);
  REQUIRE(info->status == workflow_status::dead_lettered);
  auto threw = logs.about("out of paper");
  REQUIRE_FALSE(threw.empty());
  CHECK(threw[0]["level"] == "warning");
  CHECK(threw[0]["workflow_id"] == *id);
  CHECK(threw[0]["trace_id"] == trace_id_of(*id, ""));
  CHECK(threw[0]["node"] == "print");
  CHECK(threw[0]["attempt"] == 1);
  auto dead = logs.about("dead-lettered");
  REQUIRE(dead.size() == 1);
  CHECK(dead[0]["workflow_id"] == *id);
  CHECK(dead[0]["trace_id"] == trace_id_of(*id, ""));
  CHECK(dead[0]["node"] == "print");
  for (auto& l : logs.lines()) // every line is JSON, those about nothing too
    CHECK(l.contains("time"));
}

TEST_CASE("an unknown log_format is refused", "[logs]") {
  config cfg;
  cfg.log_format = "xml";
  CHECK_THROWS_AS(runtime{std::move(cfg)}, std::invalid_argument);
}
