// The runtime's metrics: the text format of what is read at scrape time
// (workflows by status, model lanes), and runtime::metrics_text on a live
// runtime (a parked workflow, a model lane, a service restarted). What the
// actors feed is asserted under test time in tests/actors/.
#include <catch2/catch.hpp>

#include <map>
#include <string>
#include <vector>

#include "runtime/metrics.hpp"
#include "support/prometheus_text.hpp"
#include "support/services.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

TEST_CASE("scraped metrics: workflows by status, and per model lane its breaker state one-hot, "
          "queue, requests by result, tokens and cost") {
  runtime_metrics m;
  runtime_metrics::scrape now;
  now.workflows = {{"parked", 2}, {"running", 5}};
  lane_stats l;
  l.lane = "openai/gpt-4o-mini";
  l.breaker = "open";
  l.queued = 3;
  l.in_flight = 1;
  l.succeeded = 10;
  l.failed = 4;
  l.rejected = 2;
  l.rate_limited = 1;
  l.breaker_opened = 1;
  l.prompt_tokens = 1200;
  l.completion_tokens = 300;
  l.cost_usd = 0.25;
  now.lanes.push_back(l);
  auto text = m.text(now);
  INFO(text);
  CHECK(sample(text, R"(troupe_workflows{status="parked"})") == 2);
  CHECK(sample(text, R"(troupe_workflows{status="running"})") == 5);
  const std::string lane = R"(model="gpt-4o-mini",provider="openai")";
  CHECK(sample(text, "troupe_model_breaker_state{" + lane + R"(,state="open"})") == 1);
  CHECK(sample(text, "troupe_model_breaker_state{" + lane + R"(,state="closed"})") == 0);
  CHECK(sample(text, "troupe_model_breaker_state{" + lane + R"(,state="half_open"})") == 0);
  CHECK(sample(text, "troupe_model_queue_depth{" + lane + "}") == 3);
  CHECK(sample(text, "troupe_model_in_flight{" + lane + "}") == 1);
  CHECK(sample(text, "troupe_model_requests_total{" + lane + R"(,result="failed"})") == 4);
  CHECK(sample(text, "troupe_model_requests_total{" + lane + R"(,result="rate_limited"})") == 1);
  CHECK(sample(text, "troupe_model_breaker_opened_total{" + lane + "}") == 1);
  CHECK(sample(text, R"(troupe_model_tokens_total{kind="prompt",)" + lane + "}") == 1200);
  CHECK(sample(text, R"(troupe_model_tokens_total{kind="completion",)" + lane + "}") == 300);
  CHECK(sample(text, "troupe_model_cost_usd_total{" + lane + "}") == 0.25);
  // each family is declared with its type
  CHECK(text.find("# TYPE troupe_model_requests_total counter") != std::string::npos);
  CHECK(text.find("# TYPE troupe_model_breaker_state gauge") != std::string::npos);
}

TEST_CASE("step_latency gives each agent's histogram and outcome counts as values, agents by "
          "name, those with no ended attempt left out") {
  runtime_metrics m;
  m.step_ended("writer", "ok", 3ms);
  m.step_ended("writer", "ok", 40ms);
  m.step_ended("writer", "timeout", 2s);
  m.step_ended("writer", "crashed", -1ns); // cut off by a crash: counted, not timed
  m.step_ended("reader", "ok", 700us);
  m.step_retried("idle"); // a retry scheduled, nothing ended
  auto all = m.step_latency();
  REQUIRE(all.size() == 2);
  CHECK(all[0].agent == "reader");
  const auto& w = all[1];
  CHECK(w.agent == "writer");
  CHECK(w.count == 3);
  CHECK(w.sum_seconds == Approx(2.043));
  REQUIRE(w.counts.size() == w.bounds.size() + 1);
  CHECK(w.bounds.front() == Approx(0.001));
  CHECK(w.bounds.back() == Approx(600));
  std::vector<uint64_t> first(w.counts.begin(), w.counts.begin() + 10);
  CHECK(first == std::vector<uint64_t>{0, 1, 0, 0, 1, 0, 0, 0, 0, 1}); // <=5ms, <=50ms, <=2.5s
  CHECK(w.outcomes == std::map<std::string, uint64_t>{{"crashed", 1}, {"ok", 2}, {"timeout", 1}});
}

TEST_CASE("a label value with quotes, a backslash or a newline is escaped, not written raw") {
  runtime_metrics m;
  m.step_ended("we\"ird\\agent\nname", "ok", 1ms);
  auto text = m.text({});
  CHECK(sample(text, R"(troupe_steps_total{agent="we\"ird\\agent\nname",outcome="ok"})") == 1);
}

TEST_CASE("runtime::metrics_text reports the journal's parked workflow, the model lane it "
          "used, and a service its supervisor restarted") {
  config cfg;
  cfg.log_level = "error";
  cfg.model.rules["json"] = [](const llm_request&) { return std::string{R"({"v": 1})"}; };
  runtime rt{cfg};
  REQUIRE(!rt.register_agent("asker", [](step_context& ctx) {
    llm_request req;
    req.script = "json";
    req.messages.push_back({"user", "hi"});
    ask_json(ctx, req, [](step_context& c, nlohmann::json) { c.finish({}); });
  }));
  REQUIRE(!rt.register_definition(*definition_builder{"gated"}
                                     .agent("a", "asker").on("ok", "review")
                                     .gate("review").on("approve", "done").on("reject", "no")
                                     .completed("done")
                                     .failed("no")
                                     .build()));
  auto id = rt.start("gated", nlohmann::json::object());
  REQUIRE(id);
  auto parked = rt.await(*id, 20000ms, true);
  REQUIRE(parked);
  REQUIRE(parked->status == workflow_status::parked);
  auto text = rt.metrics_text();
  REQUIRE(text);
  CHECK(sample(*text, R"(troupe_workflows{status="parked"})") == 1);
  CHECK(sample(*text, R"(troupe_workflows{status="running"})") == 0);
  CHECK(sample(*text, R"(troupe_steps_total{agent="asker",outcome="ok"})") == 1);
  CHECK(sample(*text, R"(troupe_model_requests_total{model="scripted",provider="scripted",)"
                      R"(result="succeeded"})") == 1);
  CHECK(sample(*text, R"(troupe_restarts_total{what="gateway"})") == -1);
  kill_service(rt, "gateway", 20000ms);
  text = rt.metrics_text();
  REQUIRE(text);
  // rest_for_one: the gateway and the services started after it
  CHECK(sample(*text, R"(troupe_restarts_total{what="gateway"})") == 1);
  CHECK(sample(*text, R"(troupe_restarts_total{what="manager"})") == 1);
  CHECK(sample(*text, R"(troupe_restarts_total{what="journal"})") == -1);
  REQUIRE(!rt.signal(*id, "review", decision::approve("ops")));
  auto done = rt.await(*id, 20000ms);
  REQUIRE(done);
  text = rt.metrics_text();
  REQUIRE(text);
  CHECK(sample(*text, R"(troupe_workflows{status="parked"})") == 0);
  CHECK(sample(*text, R"(troupe_workflows{status="completed"})") == 1);
  CHECK(sample(*text, R"(troupe_workflows_ended_total{status="completed"})") == 1);
}
