// The snapshot format: workflow states in every phase round-trip exactly,
// a replayed state resumes from its snapshot as if never stored, and every
// kind of corruption is journal_corrupt naming the workflow, the wf_seq and
// the problem. Pure; no actor system.
#include <cstddef>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernel/kernel_support.hpp"
#include "persistence/state_codec.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::kernel;
using namespace troupe::kernel::test;
using troupe::persistence::decode_state;
using troupe::persistence::encode_state;
using Catch::Matchers::Contains;

namespace {

constexpr auto i64_max = std::numeric_limits<int64_t>::max();
constexpr auto i64_min = std::numeric_limits<int64_t>::min();
constexpr auto u64_max = std::numeric_limits<uint64_t>::max();
constexpr auto u32_max = std::numeric_limits<uint32_t>::max();

const json nested_data = json::parse(R"({
  "résumé": {"naïve": ["😀", null, 1.5, -3, true, {"深い": {"x": [], "y": {}}}]},
  "n": 18446744073709551615, "neg": -9223372036854775808, "f": 0.1,
  "esc": "quote \" backslash \\ nl \n ctl \u0001", "": ""})");

/// Every field set, none to its default; `p` as the phase.
workflow_state full_state(phase p) {
  workflow_state s;
  s.at = p;
  s.node = "extract_ステップ";
  s.attempt = u32_max;
  s.data = nested_data;
  s.steps = 12;
  s.tokens = u64_max;
  s.cost_nusd = u64_max - 1;
  s.seed = 0x9e3779b97f4a7c15ull;
  s.started_at = instant{-1'500};
  s.deadline = instant{i64_max};
  s.events = 33;
  s.next_timer = 8;
  s.timers = {{2, {timer_kind::workflow_deadline, instant{i64_max}}},
              {5, {timer_kind::retry_backoff, instant{i64_min}}},
              {7, {timer_kind::step_timeout, instant{0}}}};
  s.visits = {{"extract_ステップ", u32_max}, {"review", 1}, {"", 0}, {"a.b\"c", 2}};
  s.outcome = "low_confidence";
  s.reason = "node 'extract': crashed: tab \t and \"quotes\"";
  s.granted = {3, u64_max, 7, duration{i64_max}};
  s.soft_passed = true;
  s.resume_node = "analyze";
  s.resume_attempt = u32_max;
  s.compensating = true;
  s.undo = {{"reserve", 1}, {"charge_ステップ", u32_max}};
  s.undo_terminal = "declined";
  s.undo_reason = "'reject': gate 'review'";
  s.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  return s;
}

/// Every value of T that to_string names (the enums have no list of values).
template <class T>
std::vector<T> named_values() {
  std::vector<T> out;
  for (int i = 0; i <= std::numeric_limits<uint8_t>::max(); ++i)
    if (std::string{to_string(static_cast<T>(i))} != "unknown")
      out.push_back(static_cast<T>(i));
  return out;
}

/// A valid snapshot to corrupt: one timer, one visit, an object as data.
json valid_snapshot() {
  workflow_state s;
  s.at = phase::backoff;
  s.node = "extract";
  s.attempt = 2;
  s.data = {{"ticket", "T-1"}};
  s.events = 5;
  s.next_timer = 4;
  s.timers = {{3, {timer_kind::retry_backoff, instant{250}}}};
  s.visits = {{"extract", 1}};
  return json::parse(encode_state(s));
}

caf::expected<workflow_state> decode(const json& snapshot) {
  return decode_state(snapshot.dump(), "wf-7", 12);
}

void check_corrupt(const caf::expected<workflow_state>& got, const std::string& what) {
  REQUIRE_FALSE(got);
  CHECK(is(got.error(), errc::journal_corrupt));
  CHECK_THAT(describe(got.error()), Contains("wf-7 snapshot @12: " + what));
}

} // namespace

TEST_CASE("a state in every phase round-trips with timers, visits and nested data") {
  std::set<std::string> names;
  for (auto p : named_values<phase>()) {
    names.insert(to_string(p));
    auto s = full_state(p);
    auto text = encode_state(s);
    INFO(text);
    // canonical: sorted keys, compact, exactly what json::dump writes
    CHECK(json::parse(text).dump() == text);
    CHECK(json::parse(text).at("phase") == to_string(p));
    auto back = decode_state(text, "wf-1", 1);
    REQUIRE(back);
    CHECK(*back == s);
  }
  CHECK(names == std::set<std::string>{"not_started", "scheduling", "running", "backoff",
                                       "at_gate", "completed", "failed", "dead_lettered"});
}

TEST_CASE("every timer kind round-trips") {
  std::set<std::string> names;
  for (auto k : named_values<timer_kind>()) {
    names.insert(to_string(k));
    workflow_state s;
    s.next_timer = 10;
    s.timers = {{9, {k, instant{42}}}};
    auto back = decode_state(encode_state(s), "wf-1", 1);
    REQUIRE(back);
    CHECK(*back == s);
  }
  CHECK(names == std::set<std::string>{"step_timeout", "retry_backoff", "workflow_deadline",
                                       "gate_deadline", "gate_reminder"});
}

TEST_CASE("the initial state round-trips") {
  auto text = encode_state(workflow_state{});
  CHECK(text == R"({"attempt":0,"compensating":false,"cost_nusd":0,"data":{},"deadline_ns":0,"events":0,)"
                R"("granted":{"cost_nusd":0,"steps":0,"time_ns":0,"tokens":0},"model":"","next_timer":1,)"
                R"("node":"","outcome":"","phase":"not_started","reason":"","resume_attempt":0,)"
                R"("resume_node":"","seed":0,"soft_passed":false,)"
                R"("started_at_ns":0,"steps":0,"timers":[],"tokens":0,"traceparent":"","undo":[],)"
                R"("undo_reason":"","undo_terminal":"","v":5,"visits":{}})");
  auto back = decode_state(text, "wf-1", 0);
  REQUIRE(back);
  CHECK(*back == workflow_state{});
}

TEST_CASE("a snapshot is the documented one-line JSON") {
  // The example in state_codec.hpp's FORMAT comment.
  auto t = replay(triage(), {started(1, {{"ticket", "T-1"}}), scheduled(1, "extract", 1)});
  REQUIRE(t);
  const std::string expected =
    R"({"attempt":1,"compensating":false,"cost_nusd":0,"data":{"ticket":"T-1"},)"
    R"("deadline_ns":0,"events":2,)"
    R"("granted":{"cost_nusd":0,"steps":0,"time_ns":0,"tokens":0},"model":"",)"
    R"("next_timer":2,"node":"extract","outcome":"","phase":"running",)"
    R"("reason":"","resume_attempt":0,"resume_node":"","seed":7,"soft_passed":false,)"
    R"("started_at_ns":1000000,"steps":1,"timers":)"
    R"([{"fire_at_ns":1001000000,"id":1,"kind":"step_timeout"}],)"
    R"("tokens":0,"traceparent":"","undo":[],"undo_reason":"","undo_terminal":"","v":5,)"
    R"("visits":{"extract":1}})";
  CHECK(encode_state(t->state) == expected);
  auto back = decode_state(expected, "wf-1", 2);
  REQUIRE(back);
  CHECK(*back == t->state);
}

TEST_CASE("bytes that are not UTF-8 are replaced on encode instead of throwing") {
  workflow_state s;
  s.node = "a\xff" "b";
  s.visits = {{"c\xfe", 1}};
  auto back = decode_state(encode_state(s), "wf-1", 1);
  REQUIRE(back);
  CHECK(back->node == "a\xEF\xBF\xBD" "b");
  CHECK(back->visits == std::map<std::string, uint32_t>{{"c\xEF\xBF\xBD", 1}});
}

TEST_CASE("a replayed state resumes from its snapshot as from the full history") {
  // triage with a deadline: retry backoff, a gate edit, a second agent, a
  // completed terminal; the deadline timer is armed throughout.
  auto def = triage(with_deadline(60'000));
  std::vector<event> history;
  workflow_state now;
  auto add = [&](event e) {
    auto t = apply(def, now, e);
    if (!t)
      FAIL(kind_of(e) << " refused: " << describe(t.error()));
    now = std::move(t->state);
    history.push_back(std::move(e));
  };
  auto armed = [&](timer_kind k) {
    for (const auto& [id, t] : now.timers)
      if (t.kind == k)
        return std::make_pair(id, t.fire_at);
    FAIL("no " << to_string(k) << " timer armed in " << render(now));
    return std::make_pair(uint64_t{0}, instant{});
  };
  add(started(0, {{"ticket", {{"id", "T-1"}, {"body", "naïve 😀"}}}, {"tags", {"a"}}}, 42));
  add(scheduled(5, "extract", 1));
  add(failed(50, "extract", 1, failure_kind::crashed, 11));
  auto [retry, retry_at] = armed(timer_kind::retry_backoff);
  add(fired(retry_at, retry, timer_kind::retry_backoff));
  add(scheduled(400, "extract", 2));
  add(completed(900, "extract", 2, "low_confidence",
                {{"confidence", 0.4}, {"fields", {{"a", {1, 2}}}}}, 120));
  add(signal(2'000, "review", "edit", {{"confidence", nullptr}, {"note", "checked"}}));
  add(scheduled(2'010, "analyze", 1));
  add(completed(2'500, "analyze", 1, "ok", {{"verdict", "refund"}}, 300));
  add(signal(3'000, "signoff", "approve"));
  REQUIRE(now.at == phase::completed);

  auto full = replay(def, history);
  REQUIRE(full);
  std::set<std::string> phases;
  for (size_t n = 0; n <= history.size(); ++n) {
    INFO("snapshot after event #" << n);
    auto prefix = replay(def, std::vector<event>(history.begin(),
                                                 history.begin() + static_cast<ptrdiff_t>(n)));
    REQUIRE(prefix);
    phases.insert(to_string(prefix->state.at));
    auto back = decode_state(encode_state(prefix->state), "wf-1", n);
    REQUIRE(back);
    CHECK(*back == prefix->state);
    // recovery: the snapshot, then only the tail
    transition resumed{*back, {}};
    for (size_t i = n; i < history.size(); ++i) {
      auto next = apply(def, resumed.state, history[i]);
      REQUIRE(next);
      resumed = std::move(*next);
    }
    CHECK(resumed.state == full->state);
  }
  CHECK(phases == std::set<std::string>{"not_started", "scheduling", "running", "backoff",
                                        "at_gate", "completed"});
}

// -- refusals, one per invariant of state_codec.hpp ---------------------------

TEST_CASE("(1) text that is not a JSON object is journal_corrupt") {
  for (std::string text : {std::string{""}, std::string{"{"}, std::string{R"({"v":1,)"},
                           std::string{"{\"v\":1,\"node\":\"\xff\"}"}, std::string{"{} {}"}}) {
    INFO(text);
    check_corrupt(decode_state(text, "wf-7", 12), "not JSON: ");
  }
  check_corrupt(decode_state("[1,2]", "wf-7", 12), "a JSON array, not an object");
  check_corrupt(decode_state("null", "wf-7", 12), "a JSON null, not an object");
}

TEST_CASE("(2) a key repeated in any object is journal_corrupt") {
  auto text = valid_snapshot().dump();
  auto top = R"({"phase":"failed",)" + text.substr(1);
  check_corrupt(decode_state(top, "wf-7", 12), "duplicate key 'phase'");
  auto in_timer = text;
  auto at = in_timer.find(R"("id":3)");
  REQUIRE(at != std::string::npos);
  in_timer.insert(at, R"("id":1,)");
  check_corrupt(decode_state(in_timer, "wf-7", 12), "duplicate key 'id'");
  auto in_data = text;
  at = in_data.find(R"("ticket":"T-1")");
  REQUIRE(at != std::string::npos);
  in_data.insert(at, R"("ticket":"T-0",)");
  check_corrupt(decode_state(in_data, "wf-7", 12), "duplicate key 'ticket'");
}

TEST_CASE("(3) an unknown version is journal_corrupt, whatever else the snapshot holds") {
  auto v6 = valid_snapshot();
  v6["v"] = 6;
  check_corrupt(decode(v6), "unknown version 6 (this build reads 1 to 5)");
  check_corrupt(decode(json{{"v", 6}, {"shape", "new"}}), "unknown version 6");
  auto v0 = valid_snapshot();
  v0["v"] = 0;
  check_corrupt(decode(v0), "unknown version 0");
}

TEST_CASE("(4) a missing field is journal_corrupt, never defaulted") {
  const auto base = valid_snapshot();
  REQUIRE(decode(base));
  for (const auto& item : base.items()) {
    INFO(item.key());
    auto snapshot = base;
    snapshot.erase(item.key());
    check_corrupt(decode(snapshot), "missing field '" + item.key() + "'");
  }
  CHECK(base.size() == 27);
  for (const char* key : {"fire_at_ns", "id", "kind"}) {
    INFO(key);
    auto snapshot = base;
    snapshot["timers"][0].erase(key);
    check_corrupt(decode(snapshot), std::string{"missing field 'timers[0]."} + key + "'");
  }
}

TEST_CASE("a version 3 snapshot, written before traces, decodes without a traceparent") {
  auto v3 = valid_snapshot();
  v3.erase("traceparent");
  v3.erase("model");
  v3["v"] = 3;
  auto s = decode(v3);
  REQUIRE(s);
  CHECK(s->traceparent.empty());
  CHECK(s->node == "extract");
  v3["traceparent"] = "00-ab-cd-01"; // not a field of version 3
  check_corrupt(decode(v3), "unexpected field 'traceparent'");
  auto v5 = valid_snapshot();
  v5["traceparent"] = 1;
  check_corrupt(decode(v5), "field 'traceparent': expected a string");
}

TEST_CASE("a version 4 snapshot, written before model overrides, decodes without one") {
  auto v4 = valid_snapshot();
  v4.erase("model");
  v4["v"] = 4;
  auto s = decode(v4);
  REQUIRE(s);
  CHECK(s->model.empty());
  v4["model"] = "local/qwen"; // not a field of version 4
  check_corrupt(decode(v4), "unexpected field 'model'");
  auto v5 = valid_snapshot();
  v5["model"] = 7;
  check_corrupt(decode(v5), "field 'model': expected a string");
  v5["model"] = "local/qwen";
  auto back = decode(v5);
  REQUIRE(back);
  CHECK(back->model == "local/qwen");
}

TEST_CASE("a version 2 snapshot, written before dead-letter grants, decodes with none") {
  auto v2 = valid_snapshot();
  v2.erase("traceparent");
  v2.erase("model");
  for (auto key : {"granted", "resume_attempt", "resume_node", "soft_passed", "compensating",
                   "undo", "undo_reason", "undo_terminal"})
    v2.erase(key);
  v2["v"] = 2;
  auto s = decode(v2);
  REQUIRE(s);
  CHECK(s->granted == budget_grant{});
  CHECK_FALSE(s->soft_passed);
  CHECK(s->resume_node.empty());
  CHECK(s->node == "extract");
  v2["granted"] = {{"cost_nusd", 0}, {"steps", 0}, {"time_ns", 0}, {"tokens", 0}};
  check_corrupt(decode(v2), "unexpected field 'granted'");
}

TEST_CASE("a grant's fields are checked like the snapshot's") {
  auto snap = valid_snapshot();
  snap["granted"].erase("steps");
  check_corrupt(decode(snap), "missing field 'granted.steps'");
  snap = valid_snapshot();
  snap["granted"]["time_ns"] = -1;
  check_corrupt(decode(snap), "field 'granted.time_ns': -1 is negative");
  snap = valid_snapshot();
  snap["granted"]["extra"] = 1;
  check_corrupt(decode(snap), "unexpected field 'granted.extra'");
  snap = valid_snapshot();
  snap["granted"] = 3;
  check_corrupt(decode(snap), "field 'granted': expected an object");
  snap = valid_snapshot();
  snap["undo"] = json::array({{{"node", "a"}}});
  check_corrupt(decode(snap), "missing field 'undo[0].visit'");
  snap = valid_snapshot();
  snap["undo"] = json::array({1});
  check_corrupt(decode(snap), "field 'undo[0]': expected an object");
  snap = valid_snapshot();
  snap["soft_passed"] = 1;
  check_corrupt(decode(snap), "field 'soft_passed': expected a boolean, got number 1");
}

TEST_CASE("a version 1 snapshot, written before costs were kept, decodes with cost 0") {
  auto v1 = valid_snapshot();
  v1.erase("cost_nusd");
  v1.erase("traceparent");
  v1.erase("model");
  for (auto key : {"granted", "resume_attempt", "resume_node", "soft_passed", "compensating",
                   "undo", "undo_reason", "undo_terminal"})
    v1.erase(key);
  v1["v"] = 1;
  auto s = decode(v1);
  REQUIRE(s);
  CHECK(s->cost_nusd == 0);
  CHECK(s->node == "extract");
  v1["cost_nusd"] = 5; // not a field of version 1
  check_corrupt(decode(v1), "unexpected field 'cost_nusd'");
}

TEST_CASE("(4) a wrongly typed field is journal_corrupt") {
  struct wrong {
    json::json_pointer where;
    json value;
    std::string what;
  };
  std::vector<wrong> cases = {
    {"/v"_json_pointer, "1", "field 'v': expected an unsigned integer, got string \"1\""},
    {"/attempt"_json_pointer, "2", "field 'attempt': expected an unsigned integer, got string"},
    {"/attempt"_json_pointer, -1, "field 'attempt': expected an unsigned integer, got number -1"},
    {"/steps"_json_pointer, 2.5, "field 'steps': expected an unsigned integer, got number 2.5"},
    {"/tokens"_json_pointer, nullptr, "field 'tokens': expected an unsigned integer, got null"},
    {"/node"_json_pointer, 42, "field 'node': expected a string, got number 42"},
    {"/reason"_json_pointer, json::array(), "field 'reason': expected a string, got array []"},
    {"/outcome"_json_pointer, json{{"long", std::string(100, 'x')}},
     "field 'outcome': expected a string, got object {\"long\":\"" + std::string(28, 'x')
       + "..."},
    {"/phase"_json_pointer, 3, "field 'phase': expected a string, got number 3"},
    {"/deadline_ns"_json_pointer, 1.5, "field 'deadline_ns': expected an integer, got number 1.5"},
    {"/started_at_ns"_json_pointer, "0",
     "field 'started_at_ns': expected an integer, got string \"0\""},
    {"/timers"_json_pointer, json::object(), "field 'timers': expected an array, got object {}"},
    {"/timers/0"_json_pointer, 3, "field 'timers[0]': expected an object, got number 3"},
    {"/timers/0/id"_json_pointer, "3",
     "field 'timers[0].id': expected an unsigned integer, got string \"3\""},
    {"/timers/0/fire_at_ns"_json_pointer, true,
     "field 'timers[0].fire_at_ns': expected an integer, got boolean true"},
    {"/timers/0/kind"_json_pointer, 1, "field 'timers[0].kind': expected a string, got number 1"},
    {"/visits"_json_pointer, json::array(), "field 'visits': expected an object, got array []"},
    {"/visits/extract"_json_pointer, "1",
     "field 'visits.extract': expected an unsigned integer, got string \"1\""},
    {"/visits/extract"_json_pointer, -2,
     "field 'visits.extract': expected an unsigned integer, got number -2"},
  };
  for (const auto& c : cases) {
    INFO(c.where.to_string() << " = " << c.value.dump());
    auto snapshot = valid_snapshot();
    snapshot[c.where] = c.value;
    check_corrupt(decode(snapshot), c.what);
  }
}

TEST_CASE("(5) a field not in the format is journal_corrupt") {
  auto top = valid_snapshot();
  top["colour"] = "blue";
  check_corrupt(decode(top), "unexpected field 'colour'");
  auto in_timer = valid_snapshot();
  in_timer["timers"][0]["colour"] = "blue";
  check_corrupt(decode(in_timer), "unexpected field 'timers[0].colour'");
  auto renamed = valid_snapshot(); // "at" instead of "phase": missing wins, it comes first
  renamed["at"] = renamed["phase"];
  renamed.erase("phase");
  check_corrupt(decode(renamed), "missing field 'phase'");
}

TEST_CASE("(6) an integer out of its field's range is journal_corrupt") {
  struct wrong {
    json::json_pointer where;
    json value;
    std::string what;
  };
  std::vector<wrong> cases = {
    {"/attempt"_json_pointer, uint64_t{u32_max} + 1, "field 'attempt': 4294967296 is out of range"},
    {"/visits/extract"_json_pointer, uint64_t{u32_max} + 1,
     "field 'visits.extract': 4294967296 is out of range"},
    {"/started_at_ns"_json_pointer, uint64_t{i64_max} + 1,
     "field 'started_at_ns': 9223372036854775808 is out of range"},
    {"/timers/0/fire_at_ns"_json_pointer, uint64_t{i64_max} + 1,
     "field 'timers[0].fire_at_ns': 9223372036854775808 is out of range"},
  };
  for (const auto& c : cases) {
    INFO(c.where.to_string() << " = " << c.value.dump());
    auto snapshot = valid_snapshot();
    snapshot[c.where] = c.value;
    check_corrupt(decode(snapshot), c.what);
  }
  // Beyond 64 bits the parser yields a float: out of range shows as mistyped.
  auto text = valid_snapshot().dump();
  auto at = text.find(R"("tokens":0,"traceparent")");
  REQUIRE(at != std::string::npos);
  text.replace(at, 10, R"("tokens":18446744073709551616)");
  check_corrupt(decode_state(text, "wf-7", 12),
                "field 'tokens': expected an unsigned integer, got number");
  text = valid_snapshot().dump();
  at = text.find(R"("deadline_ns":0)");
  REQUIRE(at != std::string::npos);
  text.replace(at, 15, R"("deadline_ns":-9223372036854775809)");
  check_corrupt(decode_state(text, "wf-7", 12),
                "field 'deadline_ns': expected an integer, got number");
}

TEST_CASE("(7) an unknown phase or timer kind is journal_corrupt") {
  auto paused = valid_snapshot();
  paused["phase"] = "paused";
  check_corrupt(decode(paused), "field 'phase': unknown phase 'paused'");
  auto unknown = valid_snapshot();
  unknown["phase"] = "unknown"; // what to_string gives for a value it does not know
  check_corrupt(decode(unknown), "field 'phase': unknown phase 'unknown'");
  auto alarm = valid_snapshot();
  alarm["timers"][0]["kind"] = "alarm_clock";
  check_corrupt(decode(alarm), "field 'timers[0].kind': unknown timer kind 'alarm_clock'");
}

TEST_CASE("(8) timer ids that do not increase are journal_corrupt") {
  auto timer = [](uint64_t id) {
    return json{{"fire_at_ns", 1}, {"id", id}, {"kind", "retry_backoff"}};
  };
  auto twice = valid_snapshot();
  twice["timers"] = {timer(3), timer(3)};
  check_corrupt(decode(twice), "field 'timers[1].id': 3 does not follow 3 (timer ids must increase)");
  auto backwards = valid_snapshot();
  backwards["timers"] = {timer(2), timer(5), timer(4)};
  check_corrupt(decode(backwards), "field 'timers[2].id': 4 does not follow 5");
  auto ascending = valid_snapshot();
  ascending["timers"] = {timer(0), timer(5), timer(6)};
  auto ok = decode(ascending);
  REQUIRE(ok);
  CHECK(ok->timers.size() == 3);
}

TEST_CASE("(9) data that is not an object is journal_corrupt") {
  for (const json& data : {json(nullptr), json::array({1}), json("text"), json(0)}) {
    INFO(data.dump());
    auto snapshot = valid_snapshot();
    snapshot["data"] = data;
    check_corrupt(decode(snapshot), std::string{"field 'data': expected an object, got "}
                                      + data.type_name());
  }
}
