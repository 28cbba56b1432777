// The journal record format: every event kind round-trips, every kind of
// corruption is journal_corrupt naming the workflow, seq and kind.
#include <limits>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "persistence/event_codec.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::kernel;
using troupe::persistence::decode_history;
using troupe::persistence::from_record;
using troupe::persistence::from_record_without_state;
using troupe::persistence::to_record;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

// Field-by-field equality; the kernel's events have no operator==.
bool same(const workflow_started& a, const workflow_started& b) {
  return a.at == b.at && a.input == b.input && a.seed == b.seed
         && a.traceparent == b.traceparent && a.start_node == b.start_node
         && a.model == b.model && a.forked_from == b.forked_from
         && a.forked_at == b.forked_at;
}
bool same(const step_scheduled& a, const step_scheduled& b) {
  return a.at == b.at && a.node == b.node && a.attempt == b.attempt;
}
bool same(const step_completed& a, const step_completed& b) {
  return a.at == b.at && a.node == b.node && a.attempt == b.attempt && a.label == b.label &&
         a.patch == b.patch && a.tokens == b.tokens && a.cost_nusd == b.cost_nusd;
}
bool same(const step_failed& a, const step_failed& b) {
  return a.at == b.at && a.node == b.node && a.attempt == b.attempt && a.kind == b.kind &&
         a.reason == b.reason && a.tokens == b.tokens && a.cost_nusd == b.cost_nusd;
}
bool same(const timer_fired& a, const timer_fired& b) {
  return a.at == b.at && a.timer == b.timer && a.kind == b.kind;
}
bool same(const signal_received& a, const signal_received& b) {
  return a.at == b.at && a.gate == b.gate && a.decision == b.decision && a.patch == b.patch &&
         a.by == b.by;
}
bool same(const dlq_retried& a, const dlq_retried& b) {
  return a.at == b.at && a.by == b.by && a.grant == b.grant;
}
bool same(const dlq_dropped& a, const dlq_dropped& b) {
  return a.at == b.at && a.by == b.by && a.reason == b.reason;
}
bool same(const workflow_cancelled& a, const workflow_cancelled& b) {
  return a.at == b.at && a.by == b.by && a.reason == b.reason;
}
bool same(const workflow_crashed& a, const workflow_crashed& b) {
  return a.at == b.at && a.reason == b.reason;
}
bool same(const event& a, const event& b) {
  if (a.index() != b.index())
    return false;
  return std::visit([&b](const auto& x) { return same(x, std::get<std::decay_t<decltype(x)>>(b)); },
                    a);
}

const json nested_patch = json::parse(R"({
  "résumé": {"naïve": ["😀", null, 1.5, -3, true, {"深い": {"x": []}}]},
  "remove_me": null, "n": 18446744073709551615})");

step_failed costly_failure() {
  step_failed e{instant{3'000}, "extract_ステップ", 1, failure_kind::circuit_open,
                "quote \" backslash \\ newline \n tab \t ctl \x01", 17};
  e.cost_nusd = std::numeric_limits<uint64_t>::max();
  return e;
}

step_completed costly_completion() {
  step_completed e{instant{5'000}, "extract_ステップ", std::numeric_limits<uint32_t>::max(),
                   "low_confidence", nested_patch, 1234};
  e.cost_nusd = 4'560;
  return e;
}

/// One event of every kind, with every field set to a non-default value.
std::vector<event> sample_history() {
  return {
    workflow_started{instant{1'000}, json{{"ticket", "Größe: 42 — ✓"}, {"tags", {"a", "b"}}},
                     std::numeric_limits<uint64_t>::max(),
                     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"},
    step_scheduled{instant{2'000}, "extract_ステップ", 1},
    costly_failure(),
    step_scheduled{instant{4'000}, "extract_ステップ", std::numeric_limits<uint32_t>::max()},
    costly_completion(),
    timer_fired{instant{-6}, std::numeric_limits<uint64_t>::max()},
    timer_fired{instant{6}, 2, troupe::kernel::timer_kind::retry_backoff},
    timer_fired{instant{7}, 3, troupe::kernel::timer_kind::workflow_deadline},
    timer_fired{instant{8}, 4, troupe::kernel::timer_kind::gate_deadline},
    timer_fired{instant{9}, 5, troupe::kernel::timer_kind::gate_reminder},
    signal_received{instant{7'000}, "review", "edit", nested_patch, "Zoë <zoe@example.org>"},
    signal_received{instant{8'000}, "review", "approve", nullptr, ""},
    dlq_retried{instant{9'000}, "ops ✓",
                {std::numeric_limits<uint64_t>::max(), 2, 3,
                 duration{std::numeric_limits<int64_t>::max()}}},
    dlq_dropped{instant{10'000}, "", "no \"longer\" needed"},
    workflow_cancelled{instant{11'000}, "Zoë", "customer ✓ asked"},
    workflow_crashed{instant{12'000}, "its actor crashed 4 times: kill"},
  };
}

/// A valid record to corrupt: workflow "wf-7", #3, step_failed.
journal_record valid_failed() {
  return to_record("wf-7", 3,
                   step_failed{instant{9}, "analyze", 2, failure_kind::timeout, "slow", 5});
}

journal_record with_payload(journal_record r, const json& payload) {
  r.payload = payload.dump();
  return r;
}

template <class T>
void check_corrupt(const caf::expected<T>& got, const std::string& where,
                   const std::string& what) {
  REQUIRE_FALSE(got);
  CHECK(is(got.error(), errc::journal_corrupt));
  CHECK_THAT(describe(got.error()), Contains(where + ": " + what));
}

} // namespace

TEST_CASE("every event kind round-trips with all its fields") {
  auto history = sample_history();
  uint64_t wf_seq = 0;
  std::vector<journal_record> records;
  for (const auto& e : history) {
    auto r = to_record("wf-ü/1", ++wf_seq, e);
    INFO(r.kind << " " << r.payload);
    CHECK(r.seq == 0);
    CHECK(r.workflow_id == "wf-ü/1");
    CHECK(r.wf_seq == wf_seq);
    CHECK(r.kind == kind_of(e));
    CHECK(r.at_ns == time_of(e).count());
    bool v2 = r.kind == "step_completed" || r.kind == "step_failed"
              || r.kind == "workflow_started"; // with a traceparent
    CHECK(json::parse(r.payload).at("v") == (v2 ? 2 : 1));
    // canonical: sorted keys, compact, exactly what json::dump writes
    CHECK(json::parse(r.payload).dump() == r.payload);
    auto back = from_record(r);
    REQUIRE(back);
    CHECK(same(*back, e));
    records.push_back(std::move(r));
  }
  auto decoded = decode_history(records);
  REQUIRE(decoded);
  REQUIRE(decoded->size() == history.size());
  for (size_t i = 0; i < history.size(); ++i)
    CHECK(same((*decoded)[i], history[i]));
}

TEST_CASE("strings that need escaping or UTF-8 repair encode like json::dump") {
  for (std::string odd : {std::string{"quote \" backslash \\ tab \t nl \n"},
                          std::string{"\x01\x1f ctrl"}, std::string{"caf\xc3\xa9 \xe2\x82\xac"},
                          std::string{"bad \xff byte"}, std::string{""}}) {
    INFO(odd);
    auto r = to_record("wf", 1, step_failed{instant{1}, odd, 1, failure_kind::crashed, odd, 0});
    auto expect = json{{"attempt", 1}, {"cost_nusd", 0}, {"kind", "crashed"}, {"node", odd},
                       {"reason", odd}, {"tokens", 0}, {"v", 2}}
                    .dump(-1, ' ', false, json::error_handler_t::replace);
    CHECK(r.payload == expect);
  }
}

TEST_CASE("payloads are compact JSON with exactly the documented fields") {
  auto r = to_record("wf", 1, step_scheduled{instant{5}, "extract", 2});
  CHECK(r.kind == "step_scheduled");
  CHECK(r.payload == R"({"attempt":2,"node":"extract","v":1})");
  step_failed sf{instant{6}, "x", 1, failure_kind::bad_output, "r", 3};
  sf.cost_nusd = 70;
  auto f = to_record("wf", 2, sf);
  CHECK(f.payload == R"({"attempt":1,"cost_nusd":70,"kind":"bad_output","node":"x","reason":"r",)"
                     R"("tokens":3,"v":2})");
  step_completed sc{instant{6}, "x", 1, "ok", json::object(), 3};
  sc.cost_nusd = 9;
  CHECK(to_record("wf", 2, sc).payload
        == R"({"attempt":1,"cost_nusd":9,"label":"ok","node":"x","patch":{},"tokens":3,"v":2})");
  CHECK(to_record("wf", 3, timer_fired{instant{7}, 9}).payload
        == R"({"kind":"step_timeout","timer":9,"v":1})");
  auto s = to_record("wf", 4, workflow_started{instant{8}, json::object(), 5});
  CHECK(s.payload == R"({"input":{},"seed":5,"v":1})"); // no traceparent: v1, as before
  auto traced = to_record("wf", 4, workflow_started{instant{8}, json::object(), 5, "00-ab-cd-01"});
  CHECK(traced.payload == R"({"input":{},"seed":5,"traceparent":"00-ab-cd-01","v":2})");
  auto u = to_record("wf", 5, signal_received{instant{9}, "g", "edit", {{"ü", 1}}, "bø"});
  CHECK(u.payload == R"({"by":"bø","decision":"edit","gate":"g","patch":{"ü":1},"v":1})");
  auto rt = to_record("wf", 6, dlq_retried{instant{10}, "ops", {1, 2, 3, duration{4}}});
  CHECK(rt.kind == "dlq_retried");
  CHECK(rt.payload == R"({"by":"ops","grant_cost_nusd":3,"grant_steps":1,"grant_time_ns":4,)"
                      R"("grant_tokens":2,"v":1})");
  auto dr = to_record("wf", 7, dlq_dropped{instant{11}, "ops", "why"});
  CHECK(dr.kind == "dlq_dropped");
  CHECK(dr.payload == R"({"by":"ops","reason":"why","v":1})");
  auto wc = to_record("wf", 8, workflow_cancelled{instant{12}, "ops", "why"});
  CHECK(wc.kind == "workflow_cancelled");
  CHECK(wc.payload == R"({"by":"ops","reason":"why","v":1})");
  auto too_long = with_payload(rt, {{"by", "ops"}, {"grant_cost_nusd", 0}, {"grant_steps", 0},
                                    {"grant_time_ns", std::numeric_limits<uint64_t>::max()},
                                    {"grant_tokens", 0}, {"v", 1}});
  check_corrupt(from_record(too_long), "wf #6 (dlq_retried)", "field 'grant_time_ns'");
}

TEST_CASE("invalid UTF-8 is replaced on encode instead of throwing") {
  auto r = to_record("wf", 1, step_failed{instant{1}, "n", 1, failure_kind::crashed, "a\xff" "b", 0});
  auto back = from_record(r);
  REQUIRE(back);
  CHECK(std::get<step_failed>(*back).reason == "a\xEF\xBF\xBD" "b");
}

TEST_CASE("an unknown kind is journal_corrupt") {
  auto r = valid_failed();
  r.kind = "step_exploded";
  check_corrupt(from_record(r), "wf-7 #3 (step_exploded)", "unknown event kind");
}

TEST_CASE("an unknown timer kind is journal_corrupt") {
  auto r = to_record("wf-5", 2, timer_fired{instant{1}, 4});
  r.payload = R"({"kind":"alarm_clock","timer":4,"v":1})";
  check_corrupt(from_record(r), "wf-5 #2 (timer_fired)",
                "field 'kind': unknown timer kind 'alarm_clock'");
}

TEST_CASE("a payload that is not JSON is journal_corrupt") {
  auto r = valid_failed();
  r.payload = R"({"v":1,"node":)";
  check_corrupt(from_record(r), "wf-7 #3 (step_failed)", "payload is not JSON");
  r.payload = "";
  check_corrupt(from_record(r), "wf-7 #3 (step_failed)", "payload is not JSON");
  r.payload = "{\"v\":1,\"node\":\"\xff\"}"; // invalid UTF-8 inside a string
  check_corrupt(from_record(r), "wf-7 #3 (step_failed)", "payload is not JSON");
  r.payload = "[1,2]";
  check_corrupt(from_record(r), "wf-7 #3 (step_failed)", "payload is a JSON array, not an object");
}

TEST_CASE("a missing field is journal_corrupt, never defaulted") {
  auto base = json::parse(valid_failed().payload);
  for (const char* key : {"v", "node", "attempt", "kind", "reason", "tokens", "cost_nusd"}) {
    INFO(key);
    auto payload = base;
    payload.erase(key);
    check_corrupt(from_record(with_payload(valid_failed(), payload)), "wf-7 #3 (step_failed)",
                  std::string{"missing field '"} + key + "'");
  }
  // "any JSON" fields must be present too (null is a value, absence is not).
  auto sig = to_record("wf-8", 2, signal_received{instant{1}, "g", "approve", nullptr, "me"});
  auto payload = json::parse(sig.payload);
  payload.erase("patch");
  check_corrupt(from_record(with_payload(sig, payload)), "wf-8 #2 (signal_received)",
                "missing field 'patch'");
}

TEST_CASE("a wrongly typed field is journal_corrupt") {
  auto base = json::parse(valid_failed().payload);
  struct wrong {
    const char* key;
    json value;
    std::string what;
  };
  std::vector<wrong> cases = {
    {"attempt", "2", "field 'attempt': expected an unsigned integer, got string \"2\""},
    {"attempt", -1, "field 'attempt': expected an unsigned integer, got number -1"},
    {"attempt", 2.5, "field 'attempt': expected an unsigned integer, got number 2.5"},
    {"attempt", 4294967296ULL, "field 'attempt': 4294967296 is out of range"},
    {"tokens", nullptr, "field 'tokens': expected an unsigned integer, got null"},
    {"node", 42, "field 'node': expected a string, got number 42"},
    {"reason", json::array(), "field 'reason': expected a string, got array []"},
    {"node", json{{"long", std::string(100, 'x')}},
     "field 'node': expected a string, got object {\"long\":\"" + std::string(28, 'x') + "..."},
    {"node", json{{"lon", "éééééééééééééééééééé"}}, // byte 37 is inside the 15th é
     "field 'node': expected a string, got object {\"lon\":\"éééééééééééééé..."},
    {"kind", 1, "field 'kind': expected a string, got number 1"},
    {"v", "1", "field 'v': expected an unsigned integer, got string \"1\""},
  };
  for (const auto& c : cases) {
    INFO(c.key << " = " << c.value.dump());
    auto payload = base;
    payload[c.key] = c.value;
    check_corrupt(from_record(with_payload(valid_failed(), payload)), "wf-7 #3 (step_failed)",
                  c.what);
  }
}

TEST_CASE("an unknown version, failure kind or extra field is journal_corrupt") {
  auto base = json::parse(valid_failed().payload);
  auto v3 = base;
  v3["v"] = 3;
  check_corrupt(from_record(with_payload(valid_failed(), v3)), "wf-7 #3 (step_failed)",
                "unknown version 3 (this build reads 1 to 2)");
  auto v0 = base;
  v0["v"] = 0;
  check_corrupt(from_record(with_payload(valid_failed(), v0)), "wf-7 #3 (step_failed)",
                "unknown version 0");
  auto sched = to_record("wf-7", 1, step_scheduled{instant{1}, "a", 1});
  auto sched_v2 = json::parse(sched.payload);
  sched_v2["v"] = 2;
  check_corrupt(from_record(with_payload(sched, sched_v2)), "wf-7 #1 (step_scheduled)",
                "unknown version 2 (this build reads 1)");
  // v1 of step_failed has no cost_nusd: the field is unexpected there.
  auto v1_with_cost = base;
  v1_with_cost["v"] = 1;
  check_corrupt(from_record(with_payload(valid_failed(), v1_with_cost)), "wf-7 #3 (step_failed)",
                "unexpected field 'cost_nusd'");
  auto melted = base;
  melted["kind"] = "melted";
  check_corrupt(from_record(with_payload(valid_failed(), melted)), "wf-7 #3 (step_failed)",
                "field 'kind': unknown failure kind 'melted'");
  auto extra = base;
  extra["colour"] = "blue";
  check_corrupt(from_record(with_payload(valid_failed(), extra)), "wf-7 #3 (step_failed)",
                "unexpected field 'colour'");
}

TEST_CASE("version 1 step records, written before costs were journaled, decode with cost 0") {
  journal_record done;
  done.workflow_id = "wf-old";
  done.wf_seq = 4;
  done.kind = "step_completed";
  done.at_ns = 11;
  done.payload = R"({"attempt":1,"label":"ok","node":"a","patch":{"x":1},"tokens":7,"v":1})";
  auto e = from_record(done);
  REQUIRE(e);
  auto& c = std::get<step_completed>(*e);
  CHECK(c.tokens == 7);
  CHECK(c.patch == json{{"x", 1}});
  CHECK(c.cost_nusd == 0);
  journal_record failed = done;
  failed.kind = "step_failed";
  failed.payload = R"({"attempt":2,"kind":"timeout","node":"a","reason":"slow","tokens":3,"v":1})";
  auto f = from_record(failed);
  REQUIRE(f);
  CHECK(std::get<step_failed>(*f).kind == failure_kind::timeout);
  CHECK(std::get<step_failed>(*f).cost_nusd == 0);
}

TEST_CASE("a workflow_started record keeps its traceparent only from version 2 on") {
  journal_record old;
  old.workflow_id = "wf-old";
  old.wf_seq = 1;
  old.kind = "workflow_started";
  old.at_ns = 3;
  old.payload = R"({"input":{"a":1},"seed":9,"v":1})"; // written before traces
  auto e = from_record(old);
  REQUIRE(e);
  CHECK(std::get<workflow_started>(*e).traceparent.empty());
  CHECK(std::get<workflow_started>(*e).seed == 9);
  auto v1_with_parent = old;
  v1_with_parent.payload = R"({"input":{},"seed":9,"traceparent":"00-ab-cd-01","v":1})";
  check_corrupt(from_record(v1_with_parent), "wf-old #1 (workflow_started)",
                "unexpected field 'traceparent'");
  auto v2_without = old;
  v2_without.payload = R"({"input":{},"seed":9,"v":2})";
  check_corrupt(from_record(v2_without), "wf-old #1 (workflow_started)",
                "missing field 'traceparent'");
  auto v2_number = old;
  v2_number.payload = R"({"input":{},"seed":9,"traceparent":7,"v":2})";
  check_corrupt(from_record(v2_number), "wf-old #1 (workflow_started)",
                "field 'traceparent': expected a string");
  auto v4 = old;
  v4.payload = R"({"input":{},"seed":9,"traceparent":"x","v":4})";
  check_corrupt(from_record(v4), "wf-old #1 (workflow_started)", "unknown version 4");
}

TEST_CASE("a forked workflow_started is version 3, with its start node, model and origin") {
  workflow_started fork{instant{5}, json{{"n", 1}}, 3};
  fork.start_node = "analyze";
  fork.model = "local/qwen2.5:7b";
  fork.forked_from = "triage-01";
  fork.forked_at = 7;
  auto r = to_record("wf-fork", 1, fork);
  CHECK(r.payload == R"({"forked_at":7,"forked_from":"triage-01","input":{"n":1},)"
                     R"("model":"local/qwen2.5:7b","seed":3,"start_node":"analyze",)"
                     R"("traceparent":"","v":3})");
  auto back = from_record(r);
  REQUIRE(back);
  CHECK(same(std::get<workflow_started>(*back), fork));
  // a model override alone is version 3 too
  workflow_started other{instant{5}, json::object(), 3};
  other.model = "scripted";
  CHECK(json::parse(to_record("wf", 1, other).payload).at("v") == 3);
  auto missing = r;
  missing.payload = R"({"forked_at":7,"forked_from":"triage-01","input":{"n":1},"seed":3,)"
                    R"("start_node":"analyze","traceparent":"","v":3})";
  check_corrupt(from_record(missing), "wf-fork #1 (workflow_started)", "missing field 'model'");
  auto v2_with_start = r;
  v2_with_start.payload = R"({"input":{},"seed":9,"start_node":"x","traceparent":"","v":2})";
  check_corrupt(from_record(v2_with_start), "wf-fork #1 (workflow_started)",
                "unexpected field 'start_node'");
}

namespace {

std::vector<journal_record> records_of(const std::string& id, size_t n) {
  std::vector<journal_record> out;
  for (size_t i = 1; i <= n; ++i)
    out.push_back(to_record(id, i, timer_fired{instant{static_cast<int64_t>(i)}, i}));
  return out;
}

} // namespace

TEST_CASE("decode_history rejects gaps, duplicates and mixed workflows") {
  CHECK(decode_history({})->empty());
  SECTION("a gap names the missing seq") {
    auto rs = records_of("wf-9", 4);
    rs.erase(rs.begin() + 2); // drop #3
    check_corrupt(decode_history(rs), "wf-9 #4 (timer_fired)", "gap in wf_seq: #3 is missing");
  }
  SECTION("a wider gap names the missing range") {
    auto rs = records_of("wf-9", 5);
    rs.erase(rs.begin() + 1, rs.begin() + 3); // drop #2 and #3
    check_corrupt(decode_history(rs), "wf-9 #4 (timer_fired)",
                  "gap in wf_seq: #2 to #3 are missing");
  }
  SECTION("a history must start at #1") {
    auto rs = records_of("wf-9", 3);
    rs.erase(rs.begin());
    check_corrupt(decode_history(rs), "wf-9 #2 (timer_fired)", "gap in wf_seq: #1 is missing");
    rs = records_of("wf-9", 1);
    rs[0].wf_seq = 0;
    check_corrupt(decode_history(rs), "wf-9 #0 (timer_fired)", "wf_seq 0 is invalid");
  }
  SECTION("a duplicate") {
    auto rs = records_of("wf-9", 3);
    rs.insert(rs.begin() + 2, rs[1]); // #1 #2 #2 #3
    check_corrupt(decode_history(rs), "wf-9 #2 (timer_fired)", "duplicate wf_seq (expected #3)");
  }
  SECTION("records of two workflows") {
    auto rs = records_of("wf-9", 3);
    rs[2].workflow_id = "wf-10";
    check_corrupt(decode_history(rs), "wf-10 #3 (timer_fired)",
                  "record of another workflow in the history of 'wf-9'");
  }
  SECTION("a corrupt record inside a history") {
    auto rs = records_of("wf-9", 3);
    rs[1].payload = R"({"v":1})";
    check_corrupt(decode_history(rs), "wf-9 #2 (timer_fired)", "missing field 'timer'");
  }
}

TEST_CASE("from_record_without_state decodes like from_record, without inputs and patches") {
  uint64_t wf_seq = 0;
  for (auto e : sample_history()) {
    auto r = to_record("wf-1", ++wf_seq, e);
    INFO(r.kind << " " << r.payload);
    auto lean = from_record_without_state(r);
    REQUIRE(lean);
    if (auto s = std::get_if<workflow_started>(&e))
      s->input = json::object();
    if (auto c = std::get_if<step_completed>(&e))
      c->patch = json::object();
    CHECK(same(*lean, e));
  }
  // the scanned step records, plain and with every field at its edge
  step_completed plain{instant{5}, "extract", 3, "ok", json{{"a", {{"b", "}"}}}, {"c", "[\\\""}},
                       7};
  plain.cost_nusd = 11;
  step_failed failed{instant{6}, "x", 4, failure_kind::timeout, "slow", 2};
  std::vector<event> steps = {step_scheduled{instant{4}, "extract", 3}, plain, failed,
                              step_scheduled{instant{4}, "ünïcödé", UINT32_MAX}};
  for (auto e : steps) {
    auto r = to_record("wf-1", 9, e);
    INFO(r.payload);
    auto lean = from_record_without_state(r);
    REQUIRE(lean);
    if (auto c = std::get_if<step_completed>(&e))
      c->patch = json::object();
    CHECK(same(*lean, e));
  }
  // a patch that is not an object stays: the kernel must still see bad_output
  step_completed odd{instant{5}, "x", 1, "ok", json::array({1}), 0};
  auto kept = from_record_without_state(to_record("wf-1", 2, odd));
  REQUIRE(kept);
  CHECK(std::get<step_completed>(*kept).patch == json::array({1}));
  // a record that does not decode fails as from_record fails
  for (const char* payload :
       {R"({"attempt":1,"node":"a"})", R"({"attempt":1,"node":"a","v":1,"x":2})",
        R"({"attempt":99999999999,"node":"a","v":1})", R"({"attempt":1,"node":"a","v":9})",
        R"({"attempt":-1,"node":"a","v":1})", "{not json"}) {
    INFO(payload);
    journal_record r = to_record("wf-1", 3, step_scheduled{instant{1}, "a", 1});
    r.payload = payload;
    auto strict = from_record(r);
    auto lean = from_record_without_state(r);
    REQUIRE_FALSE(strict);
    REQUIRE_FALSE(lean);
    CHECK(describe(lean.error()) == describe(strict.error()));
  }
}
