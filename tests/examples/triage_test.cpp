// Tests of the triage example: its definition builds, a small batch with
// model faults on settles with tallies that add up, a fault-free batch
// completes every ticket without a retry, and a batch whose process is
// SIGKILLed part-way is recovered from its SQLite journal with no completed
// step run twice. Real runtime, real threads, a real child process; the
// slowest path is a 200 ms step timeout, so each case takes well under 2 s.
#include <catch2/catch.hpp>

#include <stdlib.h>

#include <filesystem>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "triage/triage.hpp"
#include "triage/triage_crash.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::examples;

namespace {

triage_options small_batch(double fail, double timeout, double malformed) {
  triage_options opt;
  opt.workflows = 20;
  opt.seed = 7;
  opt.fail_rate = fail;
  opt.timeout_rate = timeout;
  opt.malformed_rate = malformed;
  opt.await_timeout = std::chrono::seconds{10};
  return opt;
}

size_t failures_total(const triage_summary& s) {
  size_t n = 0;
  for (const auto& f : s.failures)
    n += f.second;
  return n;
}

} // namespace

TEST_CASE("triage definition builds and starts at extract", "[examples][triage]") {
  auto def = triage_definition();
  REQUIRE(def);
  CHECK(def->start == "extract");
  for (const char* name : {"extract", "review", "analyze", "report", "done", "rejected", "failed"})
    CHECK(def->find(name) != nullptr);
  CHECK(def->find("review")->routes.at(outcome::approve) == "analyze");
  CHECK(def->find("analyze")->routes.at("low_confidence") == "review");
}

TEST_CASE("triage tickets are deterministic", "[examples][triage]") {
  CHECK(triage_ticket(17) == triage_ticket(17));
  CHECK(triage_ticket(17) != triage_ticket(18));
  CHECK(triage_ticket(3).find(" from ") != std::string::npos);
}

TEST_CASE("triage with model faults settles every workflow and the tallies add up",
          "[examples][triage]") {
  auto opt = small_batch(0.1, 0.05, 0.1);
  auto s = run_triage(opt);
  REQUIRE(s);
  INFO("errors: " << (s->errors.empty() ? std::string{} : s->errors.front()));
  CHECK(s->errors.empty());
  CHECK(s->ok());
  CHECK(s->started == opt.workflows);
  CHECK(s->unsettled == 0);
  CHECK(s->completed + s->failed == s->started);
  CHECK(failures_total(*s) == s->failed);
  CHECK(s->approved == s->parked);
  CHECK(s->signals == s->approved); // every approval is journaled once
  CHECK(s->retried <= s->started);
  CHECK(s->interrupted == 0); // nothing stopped the runtime
  CHECK(s->repeated_steps == 0);
  // Faults at these rates over ~60 model calls: some attempt failed.
  CHECK(s->timeouts + s->crashes + s->bad_outputs > 0);
  CHECK(s->steps >= 3 * s->completed);
  CHECK(s->tokens > 0);
  REQUIRE_FALSE(s->sample_history.empty());
  CHECK(s->sample_history.front().kind == "workflow_started");

  std::ostringstream out;
  print_triage_summary(opt, *s, out);
  CHECK_THAT(out.str(), Catch::Contains("workflows started"));
  CHECK_THAT(out.str(), Catch::Contains("timeline of " + s->sample_id));
  CHECK_THAT(out.str(), Catch::Contains("step_scheduled"));
}

TEST_CASE("triage without faults completes every workflow with no retries",
          "[examples][triage]") {
  auto opt = small_batch(0, 0, 0);
  auto s = run_triage(opt);
  REQUIRE(s);
  CHECK(s->ok());
  CHECK(s->completed == opt.workflows);
  CHECK(s->failed == 0);
  CHECK(s->retried == 0);
  CHECK(s->timeouts == 0);
  CHECK(s->crashes == 0);
  CHECK(s->bad_outputs == 0);
  CHECK(s->approved == s->parked);
  // Three agent steps each, plus one analyze step per approval.
  CHECK(s->steps == 3 * opt.workflows + s->approved);
}

TEST_CASE("a low-confidence ticket parks at review and ends with a reviewed report",
          "[examples][triage]") {
  auto opt = small_batch(0, 0, 0);
  runtime rt{triage_config(opt)};
  REQUIRE_FALSE(register_triage(rt));
  // Ticket 30's analysis has a confidence below the threshold (a pure
  // function of its text), so it parks once; a reviewed ticket is accepted.
  auto id = rt.start("triage", nlohmann::json{{"ticket", triage_ticket(30)}}, "t30");
  REQUIRE(id);
  auto parked = rt.await(*id, std::chrono::seconds{10}, /*or_parked=*/true);
  REQUIRE(parked);
  REQUIRE(parked->status == workflow_status::parked);
  CHECK(parked->node == "review");
  CHECK(parked->state["needs_review"] == true);
  REQUIRE_FALSE(rt.signal(*id, "review", decision::approve("test")));
  auto info = rt.await(*id, std::chrono::seconds{10});
  REQUIRE(info);
  REQUIRE(info->status == workflow_status::completed);
  CHECK(info->node == "done");
  CHECK(info->steps == 4); // extract, analyze, analyze again, report
  REQUIRE(info->state.contains("report"));
  CHECK_THAT(info->state["report"].get<std::string>(), Catch::Contains(", reviewed] "));
  CHECK(info->state["fields"]["customer"] == "wayne");
  CHECK_FALSE(info->state.contains("needs_review"));
  // The same idempotency key names the same workflow.
  auto again = rt.start("triage", nlohmann::json{{"ticket", triage_ticket(30)}}, "t30");
  REQUIRE(again);
  CHECK(*again == *id);
}

// -- killed and recovered -------------------------------------------------------
//
// The kill comes when the child's journal reports the kill_after-th
// committed workflow end on the progress pipe; whatever else was in flight
// then differs run to run, so these cases assert only what must hold
// wherever the kill lands.

namespace {

crash_options crash_batch(double fail, double timeout, double malformed, size_t kill_after) {
  crash_options opt;
  opt.triage = small_batch(fail, timeout, malformed);
  opt.triage.workflows = 30;
  opt.kill_after = kill_after;
  return opt;
}

/// The invariants of a run killed after `opt.kill_after` finished workflows.
void check_recovered(const crash_options& opt, const crash_summary& s) {
  const auto& t = s.total;
  INFO("errors: " << (t.errors.empty() ? std::string{} : t.errors.front()));
  CHECK(s.killed);
  CHECK(s.child_pid > 0);
  CHECK(s.reported >= opt.kill_after);
  // Every end the child's journal reported committed is there after the kill.
  CHECK(s.finished_before >= s.reported);
  CHECK(s.finished_before + s.open_before == s.journaled);
  // recover() rebuilt exactly the open workflows, and none was lost.
  CHECK(s.recovery.quarantined.empty());
  CHECK(s.recovery.resumed + s.recovery.parked == s.open_before);
  // Keys "ticket-<i>" found every journaled ticket: no ticket ran twice.
  CHECK(s.journaled + s.started_again == opt.triage.workflows);
  CHECK(t.started == opt.triage.workflows);
  CHECK(t.errors.empty());
  CHECK(t.unsettled == 0);
  CHECK(t.completed + t.failed == opt.triage.workflows);
  CHECK(t.ok());
  // Each attempt in flight at the kill failed once as interrupted, and no
  // (node, visit) that had completed ran again.
  CHECK(t.interrupted == s.mid_attempt);
  CHECK(t.repeated_steps == 0);
  CHECK(t.approved == t.parked);
  CHECK(t.approved <= t.signals); // the kill may beat an approval's report
  CHECK(s.ok());
}

} // namespace

TEST_CASE("triage killed part-way with model faults recovers every workflow from its journal",
          "[examples][triage][crash]") {
  auto opt = crash_batch(0.1, 0.05, 0.1, 10);
  auto s = run_triage_crash(opt);
  REQUIRE(s);
  check_recovered(opt, *s);
  // The temporary directory is gone with the journal in it.
  CHECK_FALSE(std::filesystem::exists(std::filesystem::path{s->journal_path}.parent_path()));

  std::ostringstream out;
  print_crash_summary(opt, *s, out);
  CHECK_THAT(out.str(), Catch::Contains("SIGKILL once its journal has committed"));
  CHECK_THAT(out.str(), Catch::Contains("calls recover()"));
  CHECK_THAT(out.str(), Catch::Contains("workflows started"));
  CHECK_THAT(out.str(), Catch::Contains("timeline of " + s->total.sample_id));
}

TEST_CASE("a fault-free triage killed after one finished workflow recovers the rest",
          "[examples][triage][crash]") {
  auto opt = crash_batch(0, 0, 0, 1);
  auto s = run_triage_crash(opt);
  REQUIRE(s);
  check_recovered(opt, *s);
  // The model never fails, so every failed attempt is an interruption (or a
  // step timeout, if a loaded machine stalls a commit past 200 ms).
  CHECK(s->total.crashes == 0);
  CHECK(s->total.bad_outputs == 0);
  CHECK(s->total.completed + s->total.failed == opt.triage.workflows);
}

TEST_CASE("a crash run keeps the journal in a directory it was given",
          "[examples][triage][crash]") {
  auto templ = (std::filesystem::temp_directory_path() / "troupe-crash-test-XXXXXX").string();
  REQUIRE(mkdtemp(templ.data()) != nullptr);
  std::filesystem::path dir{templ};
  auto opt = crash_batch(0, 0, 0, 5);
  opt.dir = dir.string();
  auto s = run_triage_crash(opt);
  REQUIRE(s);
  check_recovered(opt, *s);
  CHECK(s->journal_path == (dir / "journal.db").string());
  CHECK(std::filesystem::exists(s->journal_path));
  // The journal is reusable: a third runtime finds nothing left to recover.
  sqlite_journal_options jo;
  jo.path = s->journal_path;
  auto store = open_sqlite_journal(jo);
  REQUIRE(store);
  auto open = (*store)->open_workflows();
  REQUIRE(open);
  CHECK(open->empty());
  store->reset();
  std::filesystem::remove_all(dir);
}
