// Traces derived from the journal (troupe/trace.hpp): a saga with a retry,
// a gate, effects and compensation gives the spans it should, the same
// ones every time; a workflow started with a W3C traceparent continues the
// caller's trace, keeps it across a restart, and a bad traceparent starts
// nothing; a journal that does not decode is a clear error. Waits are
// awaits, never sleeps.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>
#include <string>
#include <vector>

#include "runtime/trace_support.hpp"
#include "support/temp_dir.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"
#include "troupe/trace.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken
const std::string caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
const std::string caller_span = "00f067aa0ba902b7";
const std::string caller = "00-" + caller_trace + "-" + caller_span + "-01";

struct saga {
  std::shared_ptr<journal_store> journal = make_memory_journal();
  std::unique_ptr<runtime> rt;

  saga() {
    config cfg;
    cfg.journal = journal;
    cfg.random = seeded_random(5);
    rt = std::make_unique<runtime>(std::move(cfg));
    register_saga(*rt);
  }

  /// Runs an order to its review gate, then decides `verdict` there.
  std::string run(const std::string& verdict, start_options opts = {}) {
    auto id = rt->start("order", {{"sku", "A-1"}}, opts);
    REQUIRE(id);
    auto parked = rt->await(*id, patience, true);
    REQUIRE(parked);
    REQUIRE(parked->node == "review");
    REQUIRE_FALSE(rt->signal(*id, "review", decision{verdict, {}, "ann"}));
    REQUIRE(rt->await(*id, patience));
    return *id;
  }
};

const span& named(const std::vector<span>& spans, const std::string& name, int nth = 1) {
  for (const auto& s : spans)
    if (s.name == name && --nth == 0)
      return s;
  FAIL("no span '" << name << "'");
  throw; // not reached
}

std::vector<std::string> names(const std::vector<span>& spans) {
  std::vector<std::string> out;
  for (const auto& s : spans)
    out.push_back(s.name);
  return out;
}

} // namespace

TEST_CASE("a rejected saga's trace: attempts, a retry, a gate, effects and their undos",
          "[trace]") {
  saga s;
  auto id = s.run("reject");
  auto spans = s.rt->trace(id);
  REQUIRE(spans);
  CHECK(names(*spans)
        == std::vector<std::string>{"workflow order", "step reserve", "effect reserve",
                                    "step charge", "step charge", "effect charge",
                                    "gate review", "undo charge", "effect refund",
                                    "undo reserve", "effect release"});
  const auto& root = named(*spans, "workflow order");
  CHECK(root.span_id == root_span_id(id));
  CHECK(root.parent_span_id.empty());
  CHECK(root.status == span_status::error);
  CHECK(root.status_message
        == "compensated: compensated after 'reject': gate 'review': reject by 'ann'");
  CHECK(to_json(root.attributes)["troupe.outcome"] == "compensated");
  CHECK(to_json(root.attributes)["troupe.definition"] == "order");
  CHECK(to_json(root.attributes)["troupe.steps"] == 5);
  REQUIRE(root.events.size() == 1);
  CHECK(root.events[0].name == "compensating");
  for (const auto& sp : *spans) {
    INFO(sp.name);
    CHECK(sp.trace_id == trace_id_of(id, ""));
    CHECK(sp.ended);
    CHECK(sp.end_ns >= sp.start_ns);
    CHECK(sp.start_ns >= root.start_ns);
    CHECK(to_json(sp.attributes)["troupe.workflow.id"] == id);
    if (&sp != &root)
      CHECK_FALSE(sp.parent_span_id.empty());
  }

  const auto& reserve = named(*spans, "step reserve");
  CHECK(reserve.span_id == attempt_span_id(id, 1));
  CHECK(reserve.parent_span_id == root.span_id);
  CHECK(reserve.status == span_status::ok);
  CHECK(to_json(reserve.attributes)["troupe.agent"] == "reserver");
  CHECK(to_json(reserve.attributes)["troupe.label"] == "ok");
  CHECK(to_json(reserve.attributes)["troupe.compensation"] == false);
  CHECK(named(*spans, "effect reserve").parent_span_id == reserve.span_id);
  CHECK(to_json(named(*spans, "effect reserve").attributes)["troupe.effect.key"]
        == id + "/reserve#1/reserve");

  const auto& failed = named(*spans, "step charge", 1);
  CHECK(to_json(failed.attributes)["troupe.attempt"] == 1);
  CHECK(failed.status == span_status::error);
  CHECK(failed.status_message == "crashed: charge service down");
  CHECK(to_json(failed.attributes)["troupe.failure.kind"] == "crashed");
  CHECK(to_json(failed.attributes)["troupe.retry"] == true);
  const auto& charged = named(*spans, "step charge", 2);
  CHECK(to_json(charged.attributes)["troupe.attempt"] == 2);
  CHECK(to_json(charged.attributes)["troupe.step"] == 3);
  CHECK(charged.status == span_status::ok);
  CHECK(named(*spans, "effect charge").parent_span_id == charged.span_id);

  const auto& gate = named(*spans, "gate review");
  CHECK(gate.parent_span_id == root.span_id);
  CHECK(gate.status == span_status::ok);
  CHECK(to_json(gate.attributes)["troupe.decision"] == "reject");
  CHECK(to_json(gate.attributes)["troupe.decided_by"] == "ann");
  CHECK(gate.start_ns == charged.end_ns);

  const auto& refund = named(*spans, "undo charge");
  CHECK(to_json(refund.attributes)["troupe.compensation"] == true);
  CHECK(to_json(refund.attributes)["troupe.agent"] == "refunder");
  CHECK(refund.status == span_status::ok);
  CHECK(named(*spans, "effect refund").parent_span_id == refund.span_id);
  CHECK(named(*spans, "effect release").parent_span_id
        == named(*spans, "undo reserve").span_id);
  CHECK(root.end_ns == named(*spans, "undo reserve").end_ns);
}

TEST_CASE("deriving a trace again gives the same spans and ids", "[trace]") {
  saga s;
  auto id = s.run("approve");
  auto first = s.rt->trace(id);
  REQUIRE(first);
  // from the journal's own records, as a tool reading the file would
  auto row = s.journal->workflow(id);
  REQUIRE(row);
  auto again = derive_trace(saga_definition(), *row, *s.journal->read(id),
                            *s.journal->effects_of(id));
  REQUIRE(again);
  REQUIRE(first->size() == again->size());
  for (size_t i = 0; i < first->size(); ++i) {
    INFO((*first)[i].name);
    CHECK((*first)[i].span_id == (*again)[i].span_id);
    CHECK((*first)[i].parent_span_id == (*again)[i].parent_span_id);
    CHECK((*first)[i].trace_id == (*again)[i].trace_id);
    CHECK((*first)[i].start_ns == (*again)[i].start_ns);
    CHECK(to_json((*first)[i].attributes) == to_json((*again)[i].attributes));
  }
  const auto& root = named(*first, "workflow order");
  CHECK(root.status == span_status::ok);
  CHECK(to_json(root.attributes)["troupe.status"] == "completed");
  CHECK(std::count_if(first->begin(), first->end(),
                      [](const span& x) { return x.name.rfind("undo", 0) == 0; })
        == 0);
}

TEST_CASE("a parked workflow's trace has its root and gate open", "[trace]") {
  saga s;
  auto id = s.rt->start("order", {{"sku", "A-1"}});
  REQUIRE(id);
  REQUIRE(s.rt->await(*id, patience, true));
  auto spans = s.rt->trace(*id);
  REQUIRE(spans);
  CHECK_FALSE(named(*spans, "workflow order").ended);
  CHECK_FALSE(named(*spans, "gate review").ended);
  CHECK(named(*spans, "step reserve").ended);
  CHECK(is(s.rt->trace("order-nobody").error(), errc::unknown_workflow));
}

TEST_CASE("a workflow started with a traceparent continues the caller's trace", "[trace]") {
  saga s;
  start_options opts;
  opts.traceparent = caller;
  auto id = s.run("approve", opts);
  auto history = s.rt->history(id);
  REQUIRE(history);
  CHECK_THAT(history->front().payload, Contains(caller)); // journaled
  auto spans = s.rt->trace(id);
  REQUIRE(spans);
  for (const auto& sp : *spans)
    CHECK(sp.trace_id == caller_trace);
  CHECK(named(*spans, "workflow order").parent_span_id == caller_span);
  CHECK(trace_id_of(id, caller) == caller_trace);
}

TEST_CASE("a bad traceparent is invalid_input naming the problem, and starts nothing",
          "[trace]") {
  saga s;
  const std::string zeros(32, '0');
  std::vector<std::pair<std::string, std::string>> bad = {
    {"00-abc-def-01", "13 characters, not 55"},
    {"00_" + caller_trace + "_" + caller_span + "_01", "not separated by '-'"},
    {"ff-" + caller_trace + "-" + caller_span + "-01", "version 'ff' is not 00"},
    {"00-4BF92F3577B34DA6A3CE929D0E0E4736-" + caller_span + "-01", "trace id is not 32"},
    {"00-" + caller_trace + "-00f067aa0ba9zzzz-01", "parent span id is not 16"},
    {"00-" + caller_trace + "-" + caller_span + "-0g", "flags are not 2"},
    {"00-" + zeros + "-" + caller_span + "-01", "trace id is all zeros"},
    {"00-" + caller_trace + "-0000000000000000-01", "parent span id is all zeros"},
  };
  for (const auto& [header, why] : bad) {
    INFO(header);
    start_options opts;
    opts.traceparent = header;
    opts.idempotency_key = "k-" + header;
    auto id = s.rt->start("order", {{"sku", "A-1"}}, opts);
    REQUIRE_FALSE(id);
    CHECK(is(id.error(), errc::invalid_input));
    CHECK_THAT(describe(id.error()), Contains(why));
    CHECK_FALSE(parse_traceparent(header));
  }
  CHECK(s.journal->open_workflows()->empty());
  auto ok = parse_traceparent(caller);
  REQUIRE(ok);
  CHECK(ok->trace_id == caller_trace);
  CHECK(ok->span_id == caller_span);
  CHECK(ok->flags == 1);
}

TEST_CASE("a recovered workflow keeps its caller's trace", "[trace]") {
  temp_dir dir;
  auto seen = std::make_shared<seen_traceparents>();
  auto open = [&] {
    auto store = open_sqlite_journal({dir.file("journal.db")});
    REQUIRE(store);
    config cfg;
    cfg.journal = *store;
    cfg.random = seeded_random(8);
    cfg.snapshot_every = 2; // the state is rebuilt from a snapshot: it keeps the traceparent
    auto rt = std::make_unique<runtime>(std::move(cfg));
    register_saga(*rt, seen);
    return rt;
  };
  std::string id;
  {
    auto rt = open();
    start_options opts;
    opts.traceparent = caller;
    auto started = rt->start("order", {{"sku", "A-1"}}, opts);
    REQUIRE(started);
    id = *started;
    REQUIRE(rt->await(id, patience, true));
  }
  auto rt = open();
  REQUIRE(rt->recover());
  REQUIRE_FALSE(rt->signal(id, "review", decision::reject("ann")));
  auto done = rt->await(id, patience);
  REQUIRE(done);
  CHECK(done->outcome == "compensated");
  // the undos ran in the second runtime, in the caller's trace, each its span
  auto given = seen->get();
  REQUIRE(given.size() == 5); // reserve, charge twice, refund, release
  for (uint64_t step = 1; step <= 5; ++step)
    CHECK(given[step - 1] == make_traceparent(caller_trace, attempt_span_id(id, step)));
  auto spans = rt->trace(id);
  REQUIRE(spans);
  for (const auto& sp : *spans)
    CHECK(sp.trace_id == caller_trace);
  CHECK(named(*spans, "undo reserve").span_id == attempt_span_id(id, 5));
}

TEST_CASE("a journal that does not decode or fit is a clear error, not a crash", "[trace]") {
  saga s;
  auto id = s.run("approve");
  auto row = *s.journal->workflow(id);
  auto records = *s.journal->read(id);
  auto effects = *s.journal->effects_of(id);
  const auto def = saga_definition();
  SECTION("a payload that is not JSON") {
    records[2].payload = "{not json";
    auto t = derive_trace(def, row, records, effects);
    REQUIRE_FALSE(t);
    CHECK(is(t.error(), errc::journal_corrupt));
    CHECK_THAT(describe(t.error()), Contains(id + " #3 (" + records[2].kind + "): payload is not "
                                                                              "JSON"));
  }
  SECTION("a gap") {
    records.erase(records.begin() + 1);
    auto t = derive_trace(def, row, records, effects);
    REQUIRE_FALSE(t);
    CHECK_THAT(describe(t.error()), Contains("#3 (" + records[1].kind + "): gap in wf_seq"));
  }
  SECTION("an event the definition refuses") {
    auto swapped = records;
    std::swap(swapped[1].payload, swapped[2].payload);
    std::swap(swapped[1].kind, swapped[2].kind);
    auto t = derive_trace(def, row, swapped, effects);
    REQUIRE_FALSE(t);
    CHECK(is(t.error(), errc::journal_corrupt));
    CHECK_THAT(describe(t.error()), Contains("does not fit version 1 of 'order'"));
  }
  SECTION("another definition") {
    auto other = row;
    other.version = 2;
    auto t = derive_trace(def, other, records, effects);
    REQUIRE_FALSE(t);
    CHECK(is(t.error(), errc::unknown_definition));
  }
}

TEST_CASE("OTLP JSON carries ids, times as strings, typed attributes, events and status",
          "[trace]") {
  span s;
  s.trace_id = caller_trace;
  s.span_id = caller_span;
  s.parent_span_id = "1111111111111111";
  s.name = "step extract";
  s.start_ns = 1'700'000'000'000'000'001;
  s.end_ns = 1'700'000'000'000'000'002;
  s.ended = true;
  s.status = span_status::error;
  s.status_message = "timeout: slow";
  s.attributes = {{"a.string", std::string{"x"}}, {"a.int", int64_t{3}},
                  {"a.big", int64_t{INT64_MAX}}, {"a.double", 0.5}, {"a.bool", true},
                  {"a.quoted", std::string{"say \"hi\"\n"}}};
  s.events.push_back({"reminder", 5, {{"troupe.reminder", int64_t{1}}}});
  auto body = nlohmann::json::parse(to_otlp_json({s}, "svc"));
  auto& rs = body["resourceSpans"].at(0);
  CHECK(rs["resource"]["attributes"].at(0)
        == nlohmann::json::parse(R"({"key":"service.name","value":{"stringValue":"svc"}})"));
  CHECK(rs["scopeSpans"].at(0)["scope"]["name"] == "troupe");
  auto& out = rs["scopeSpans"].at(0)["spans"].at(0);
  CHECK(out["traceId"] == caller_trace);
  CHECK(out["spanId"] == caller_span);
  CHECK(out["parentSpanId"] == "1111111111111111");
  CHECK(out["kind"] == 1);
  CHECK(out["startTimeUnixNano"] == "1700000000000000001");
  CHECK(out["endTimeUnixNano"] == "1700000000000000002");
  CHECK(out["status"] == nlohmann::json::parse(R"({"code":2,"message":"timeout: slow"})"));
  std::map<std::string, nlohmann::json> attrs;
  for (auto& a : out["attributes"])
    attrs[a["key"]] = a["value"];
  CHECK(attrs["a.string"] == nlohmann::json::parse(R"({"stringValue":"x"})"));
  CHECK(attrs["a.int"] == nlohmann::json::parse(R"({"intValue":"3"})"));
  CHECK(attrs["a.big"] == nlohmann::json::parse(R"({"intValue":"9223372036854775807"})"));
  CHECK(attrs["a.quoted"] == nlohmann::json{{"stringValue", "say \"hi\"\n"}});
  CHECK(attrs["a.double"] == nlohmann::json::parse(R"({"doubleValue":0.5})"));
  CHECK(attrs["a.bool"] == nlohmann::json::parse(R"({"boolValue":true})"));
  CHECK(out["events"].at(0)["timeUnixNano"] == "5");
  CHECK(out["events"].at(0)["name"] == "reminder");
  CHECK(out["events"].at(0)["attributes"].at(0)
        == nlohmann::json::parse(R"({"key":"troupe.reminder","value":{"intValue":"1"}})"));
  s.parent_span_id.clear();
  auto root = nlohmann::json::parse(to_otlp_json({s}, "svc"));
  CHECK_FALSE(root["resourceSpans"][0]["scopeSpans"][0]["spans"][0].contains("parentSpanId"));
}
