// The trace exporter on its own, fed committed writes by hand (as the
// journal writer does) so that what it holds at each moment is known: past
// buffer_max spans are dropped and counted while a slow collector holds a
// batch; records it missed are caught up from the journal, exporting only
// what ends after them. Waits are the fake collector's condition variable
// and flush(), never sleeps.
#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "runtime/trace_exporter.hpp"
#include "runtime/trace_support.hpp"
#include "support/fake_collector.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

/// A finished saga in a memory journal, for the exporter to read.
struct journaled_saga {
  std::shared_ptr<journal_store> journal = make_memory_journal();
  std::string id;
  std::vector<span> spans; ///< derived from the journal

  explicit journaled_saga(const std::string& verdict) {
    config cfg;
    cfg.journal = journal;
    cfg.random = seeded_random(5);
    runtime rt{std::move(cfg)};
    register_saga(rt);
    auto started = rt.start("order", {{"sku", "A-1"}});
    REQUIRE(started);
    id = *started;
    REQUIRE(rt.await(id, patience, true));
    REQUIRE_FALSE(rt.signal(id, "review", decision{verdict, {}, "ann"}));
    REQUIRE(rt.await(id, patience));
    spans = *rt.trace(id);
  }

  /// The workflow's committed writes: its records from `first_seq` on in
  /// one write (with its row), then each effect in one of its own.
  std::vector<journal_write> writes(uint64_t first_seq = 1) {
    std::vector<journal_write> out(1);
    auto records = journal->read(id, first_seq - 1);
    REQUIRE(records);
    out[0].events = *records;
    out[0].workflow.push_back(*journal->workflow(id));
    auto effects = journal->effects_of(id);
    REQUIRE(effects);
    for (auto& e : *effects) {
      journal_write w;
      w.effect.push_back(e);
      out.push_back(std::move(w));
    }
    return out;
  }

  trace_exporter exporter(tracing_config t) {
    return trace_exporter{std::move(t), journal, [](const std::string& name) {
                            return name == "order"
                                     ? std::make_shared<const definition>(saga_definition())
                                     : nullptr;
                          }};
  }
};

tracing_config to(const fake_collector& c) {
  tracing_config t;
  t.otlp_endpoint = c.url();
  t.flush_interval = 1h;
  t.retry.base_backoff = 1ms;
  t.retry.max_backoff = 1ms;
  return t;
}

std::set<std::string> ids_of(const std::vector<nlohmann::json>& spans) {
  std::set<std::string> out;
  for (const auto& s : spans)
    out.insert(s["spanId"].get<std::string>());
  return out;
}

} // namespace

TEST_CASE("past buffer_max, spans are dropped and counted while a slow collector holds a batch",
          "[trace][export]") {
  journaled_saga saga{"approve"};
  REQUIRE(saga.spans.size() == 7);
  fake_collector collector;
  collector.hold();
  auto t = to(collector);
  t.batch_max = 1; // a span posts at once ...
  t.buffer_max = 3; // ... and three may wait or be in flight
  auto exporter = saga.exporter(t);
  auto writes = saga.writes();
  exporter.committed(writes); // one hand-over: every span is made before the first POST
  REQUIRE(collector.wait_for(1));
  auto held = exporter.stats();
  CHECK(held.spans_dropped == 4);
  CHECK(held.spans_queued == 3);
  CHECK(held.spans_exported == 0);
  collector.release();
  REQUIRE(exporter.flush(patience));
  auto done = exporter.stats();
  CHECK(done.spans_exported == 3);
  CHECK(done.spans_dropped == 4);
  CHECK(done.spans_queued == 0);
  CHECK(collector.count() == 3);
  CHECK(ids_of(collector.spans()).size() == 3);
}

TEST_CASE("records the exporter missed are caught up from the journal", "[trace][export]") {
  journaled_saga saga{"reject"};
  fake_collector collector;
  auto exporter = saga.exporter(to(collector));
  auto start = saga.writes(1);
  // the first three records (started, reserve scheduled and completed) ...
  start[0].events.resize(3);
  std::vector<journal_write> first{start[0]};
  exporter.committed(first);
  // ... then a gap: records 4 and 5 never reach it, the rest do
  auto rest = saga.writes(6);
  exporter.committed(rest);
  REQUIRE(exporter.flush(patience));
  auto got = ids_of(collector.spans());
  std::set<std::string> derived;
  for (const auto& s : saga.spans)
    derived.insert(s.span_id);
  for (const auto& id : got)
    CHECK(derived.count(id) == 1); // the same ids as the journal's
  CHECK(got.count(root_span_id(saga.id)) == 1);
  CHECK(got.count(attempt_span_id(saga.id, 1)) == 1); // reserve, before the gap
  CHECK(got.count(attempt_span_id(saga.id, 2)) == 0); // the failed charge ended in the gap
  CHECK(got.count(attempt_span_id(saga.id, 5)) == 1); // the last undo, after it
  auto stats = exporter.stats();
  CHECK(stats.spans_exported == got.size());
  CHECK(stats.records_skipped == 0);
}

TEST_CASE("a workflow whose definition is not registered is skipped and counted",
          "[trace][export]") {
  journaled_saga saga{"approve"};
  fake_collector collector;
  trace_exporter exporter{to(collector), saga.journal,
                          [](const std::string&) { return nullptr; }};
  auto writes = saga.writes();
  auto records = writes[0].events.size();
  exporter.committed(writes);
  REQUIRE(exporter.flush(patience));
  auto stats = exporter.stats();
  CHECK(stats.spans_exported == 0);
  CHECK(stats.records_skipped == records + 2); // its records and its 2 effects
  CHECK(collector.count() == 0);
}

TEST_CASE("a stopped exporter takes no more writes", "[trace][export]") {
  journaled_saga saga{"approve"};
  fake_collector collector;
  auto exporter = saga.exporter(to(collector));
  exporter.stop();
  auto writes = saga.writes();
  exporter.committed(writes);
  CHECK_FALSE(exporter.flush(1ms));
  CHECK(exporter.stats().spans_exported == 0);
  CHECK(collector.count() == 0);
}
