// The admin API's pure parts: a history read into agent attempts (the
// dashboard's timeline; the same attempts as the trace's spans) and attempt
// latency per agent from a histogram.
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "runtime/admin/admin_json.hpp"
#include "runtime/trace_support.hpp"
#include "troupe/runtime.hpp"
#include "troupe/trace.hpp"

using namespace troupe;
using namespace troupe::admin;

namespace {

journal_record rec(uint64_t wf_seq, const std::string& kind, int64_t at_ms, json payload) {
  journal_record r;
  r.workflow_id = "w";
  r.wf_seq = wf_seq;
  r.kind = kind;
  r.at_ns = at_ms * 1'000'000;
  r.payload = payload.dump();
  return r;
}

json sched(const char* node, int attempt) {
  return {{"node", node}, {"attempt", attempt}, {"v", 1}};
}

} // namespace

TEST_CASE("a history reads into agent attempts with their outcome and duration", "[admin]") {
  std::vector<journal_record> h = {
    rec(1, "workflow_started", 0, {{"input", json::object()}, {"seed", 1}, {"v", 1}}),
    rec(2, "step_scheduled", 1, sched("extract", 1)),
    rec(3, "step_failed", 4, {{"node", "extract"}, {"attempt", 1}, {"kind", "bad_output"},
                              {"reason", "not JSON"}, {"tokens", 10}, {"cost_nusd", 5}, {"v", 2}}),
    rec(4, "timer_fired", 10, {{"kind", "retry_backoff"}, {"timer", 1}, {"v", 1}}),
    rec(5, "step_scheduled", 10, sched("extract", 2)),
    rec(6, "step_completed", 12, {{"node", "extract"}, {"attempt", 2}, {"label", "ok"},
                                  {"patch", json::object()}, {"tokens", 75}, {"cost_nusd", 0},
                                  {"v", 2}}),
    rec(7, "step_scheduled", 12, sched("analyze", 1)),
    rec(8, "timer_fired", 212, {{"kind", "step_timeout"}, {"timer", 2}, {"v", 1}}),
    // a late reply of the timed-out attempt belongs to no attempt in flight
    rec(9, "step_completed", 213, {{"node", "analyze"}, {"attempt", 1}, {"label", "ok"},
                                   {"patch", json::object()}, {"tokens", 1}, {"cost_nusd", 0},
                                   {"v", 2}}),
    rec(10, "step_scheduled", 220, sched("analyze", 2)),
    rec(11, "workflow_cancelled", 230, {{"by", "x"}, {"reason", "r"}, {"v", 1}}),
    rec(12, "step_scheduled", 240, sched("report", 1)),
  };
  auto a = attempts_of(h);
  REQUIRE(a.size() == 5);
  CHECK(a[0].node == "extract");
  CHECK(a[0].outcome == "bad_output");
  CHECK_FALSE(a[0].ok);
  CHECK(a[0].reason == "not JSON");
  CHECK(a[0].tokens == 10);
  CHECK(a[0].duration_ms() == Approx(3.0));
  CHECK(a[1].attempt == 2);
  CHECK(a[1].outcome == "ok");
  CHECK(a[1].ok);
  CHECK(a[1].tokens == 75);
  CHECK(a[1].duration_ms() == Approx(2.0));
  CHECK(a[2].outcome == "timeout");
  CHECK(a[2].duration_ms() == Approx(200.0));
  CHECK(a[2].tokens == 0); // the late reply did not count
  CHECK(a[3].outcome == "abandoned");
  CHECK_FALSE(a[4].ended());

  definition def = *definition_builder{"d"}
                      .agent("extract", "extractor").on("ok", "analyze")
                      .agent("analyze", "analyzer").on("ok", "report")
                      .agent("report", "reporter").on("ok", "done")
                      .completed("done").build();
  CHECK(agent_of(&def, "analyze") == "analyzer");
  CHECK(agent_of(&def, "done").empty());
  CHECK(agent_of(nullptr, "analyze").empty());

  auto j = history_json("w", h, &def);
  CHECK(j["events"].size() == h.size());
  CHECK(j["events"][2]["t_ms"] == Approx(4.0));
  CHECK(j["events"][2]["data"]["kind"] == "bad_output");
  CHECK(j["attempts"][1]["agent"] == "extractor");
  CHECK(j["attempts"][4]["outcome"] == "in_flight");
  CHECK(j["attempts"][4]["duration_ms"].is_null());
}

TEST_CASE("an attempt cut off by the workflow's deadline is abandoned, not in flight",
          "[admin]") {
  // regression: the dashboard showed it running for ever (the trace ended it)
  std::vector<journal_record> h = {
    rec(1, "workflow_started", 0, {{"input", json::object()}, {"seed", 1}, {"v", 1}}),
    rec(2, "step_scheduled", 1, sched("extract", 1)),
    rec(3, "timer_fired", 500, {{"kind", "workflow_deadline"}, {"timer", 1}, {"v", 1}}),
  };
  auto a = attempts_of(h);
  REQUIRE(a.size() == 1);
  CHECK(a[0].ended());
  CHECK(a[0].outcome == "abandoned");
  CHECK(a[0].duration_ms() == Approx(499.0));
}

TEST_CASE("the dashboard's attempts are the trace's", "[admin]") {
  auto journal = make_memory_journal();
  config cfg;
  cfg.journal = journal;
  cfg.random = seeded_random(5);
  runtime rt{std::move(cfg)};
  testing::register_saga(rt);
  auto id = rt.start("order", {{"sku", "A-1"}});
  REQUIRE(id);
  REQUIRE(rt.await(*id, std::chrono::seconds{10}, true));
  REQUIRE_FALSE(rt.signal(*id, "review", decision::reject("ann")));
  REQUIRE(rt.await(*id, std::chrono::seconds{10}));
  auto history = rt.history(*id);
  REQUIRE(history);
  auto spans = rt.trace(*id);
  REQUIRE(spans);
  std::vector<const span*> tried; // "step charge", "undo reserve", ...
  for (const auto& s : *spans)
    if (s.name.rfind("step ", 0) == 0 || s.name.rfind("undo ", 0) == 0)
      tried.push_back(&s);
  auto attempts = attempts_of(*history);
  REQUIRE(attempts.size() == 5); // reserve, charge twice, both undos
  REQUIRE(tried.size() == attempts.size());
  for (size_t i = 0; i < attempts.size(); ++i) {
    INFO(tried[i]->name);
    auto attrs = to_json(tried[i]->attributes);
    CHECK(attrs["troupe.node"] == attempts[i].node);
    CHECK(attrs["troupe.attempt"] == attempts[i].attempt);
    CHECK(tried[i]->start_ns == attempts[i].start_ns);
    CHECK(tried[i]->end_ns == attempts[i].end_ns);
    CHECK((tried[i]->status == span_status::ok) == attempts[i].ok);
  }
}

namespace {

/// An agent's histogram over the runtime's step buckets (ms: 1, 5, 10, 25,
/// 50, 100, 250, 500, 1000, 2500, ...) with `counts` in its first buckets.
agent_latency histogram(std::vector<uint64_t> counts, double sum_seconds) {
  agent_latency a;
  a.agent = "worker";
  a.bounds = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
              1,     2.5,   5,    10,    30,   60,  120, 600};
  counts.resize(a.bounds.size() + 1, 0);
  a.counts = counts;
  for (auto n : counts)
    a.count += n;
  a.sum_seconds = sum_seconds;
  return a;
}

} // namespace

TEST_CASE("latency percentiles are estimated from the histogram's buckets as Prometheus does",
          "[admin]") {
  // 3 ms x2, 7 ms, 40 ms x3, 200 ms, 700 ms, 2 s
  auto a = histogram({0, 2, 1, 0, 3, 0, 1, 0, 1, 1}, 3.033);
  // rank 4.5 falls among the 3 attempts of (25, 50] ms, 1.5 past the 3 below
  CHECK(histogram_quantile(a, 0.5) == Approx(0.0375));
  // rank 8.1 and 8.91 in the one attempt of (1, 2.5] s
  CHECK(histogram_quantile(a, 0.9) == Approx(1.15));
  CHECK(histogram_quantile(a, 0.99) == Approx(2.365));
  CHECK(histogram_quantile(a, 1.0) == Approx(2.5));
  // the first bucket starts at 0; above every bound the highest bound is all there is
  CHECK(histogram_quantile(histogram({4}, 0.002), 0.5) == Approx(0.0005));
  auto slow = histogram({}, 1000);
  slow.counts.back() = 1;
  slow.count = 1;
  CHECK(histogram_quantile(slow, 0.5) == Approx(600));
  CHECK(histogram_quantile(histogram({}, 0), 0.5) == 0);
}

TEST_CASE("latency per agent for the API: counts by outcome, percentiles and buckets in ms",
          "[admin]") {
  auto a = histogram({0, 2, 1, 0, 3, 0, 1, 0, 1, 1}, 3.033);
  a.outcomes = {{"ok", 6}, {"approved", 1}, {"crashed", 1}, {"timeout", 2}};
  auto j = latency_json(a);
  CHECK(j["agent"] == "worker");
  CHECK(j["count"] == 9);
  CHECK(j["ok"] == 7); // labels, whatever they are
  CHECK(j["failed"] == 3); // failure kinds, timed or not
  CHECK(j["mean_ms"] == Approx(337));
  CHECK(j["p50_ms"] == Approx(37.5));
  CHECK(j["p90_ms"] == Approx(1150));
  CHECK(j["p99_ms"] == Approx(2365));
  CHECK(j["max_le_ms"] == Approx(2500));
  REQUIRE(j["buckets"].size() == 17);
  CHECK(j["buckets"][1]["le_ms"] == Approx(5));
  CHECK(j["buckets"][1]["count"] == 2);
  CHECK(j["buckets"][4]["count"] == 3);
  CHECK(j["buckets"].back()["le_ms"] == "+Inf");
  CHECK(j["buckets"].back()["count"] == 0);
  auto none = latency_json(histogram({}, 0));
  CHECK(none["max_le_ms"].is_null());
  CHECK(none["mean_ms"] == 0);
}
