// The admin API's pure parts: a history read into agent attempts (the
// dashboard's timeline; the same attempts as the trace's spans) and attempt
// latency per agent.
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

TEST_CASE("latency per agent: nearest-rank percentiles and a histogram", "[admin]") {
  latency_table t;
  for (int i = 1; i <= 100; ++i) {
    attempt_span a;
    a.node = "n";
    a.start_ns = 0;
    a.end_ns = int64_t{i} * 1'000'000; // 1 .. 100 ms
    a.ok = i % 10 != 0;
    a.outcome = a.ok ? "ok" : "crashed";
    t.add("worker", a);
  }
  attempt_span open; // not ended: not a sample
  open.node = "n";
  t.add("worker", open);
  attempt_span other;
  other.node = "gatekeeper";
  other.end_ns = 40'000'000;
  other.ok = true;
  other.outcome = "ok";
  t.add("", other); // no agent known: named by its node

  auto j = t.to_json();
  REQUIRE(j.size() == 2);
  CHECK(j[0]["agent"] == "gatekeeper");
  const auto& w = j[1];
  CHECK(w["agent"] == "worker");
  CHECK(w["count"] == 100);
  CHECK(w["ok"] == 90);
  CHECK(w["failed"] == 10);
  CHECK(w["p50_ms"] == Approx(50));
  CHECK(w["p90_ms"] == Approx(90));
  CHECK(w["p99_ms"] == Approx(99));
  CHECK(w["max_ms"] == Approx(100));
  CHECK(w["mean_ms"] == Approx(50.5));
  // buckets: <=1, <=2, <=5, <=10, <=20, <=50, <=100, ...
  std::vector<uint64_t> counts;
  for (const auto& b : w["buckets"])
    counts.push_back(b["count"]);
  REQUIRE(counts.size() == latency_buckets_ms.size() + 1);
  CHECK(std::vector<uint64_t>(counts.begin(), counts.begin() + 8)
        == std::vector<uint64_t>{1, 1, 3, 5, 10, 30, 50, 0});
  CHECK(w["buckets"].back()["le_ms"] == "+Inf");
}
