// Tests of the triage example: its definition builds, a small batch with
// model faults on settles with tallies that add up, and a fault-free batch
// completes every ticket without a retry. Real runtime, real threads; the
// slowest path is a 200 ms step timeout, so each case takes well under 2 s.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "triage/triage.hpp"
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
