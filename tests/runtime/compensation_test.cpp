// Compensation (saga) through the facade: a workflow that fails after
// side-effecting steps undoes them newest first, each undo an effect run
// once; a cancel compensates too; an undo that keeps failing dead-letters
// the workflow, and a retry finishes the undo. Waits are awaits, never sleeps.
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

/// What the outside world saw, in order: "reserve <key>", "release <key>", ...
struct world {
  std::mutex mu;
  std::vector<std::string> log;
  std::atomic<bool> refunds_down{false};
  void record(const std::string& what) {
    std::lock_guard<std::mutex> g{mu};
    log.push_back(what);
  }
  std::vector<std::string> seen() {
    std::lock_guard<std::mutex> g{mu};
    return log;
  }
};

/// An agent running effect `name` once per visit; with `fails`, the effect
/// call fails while it is set.
agent_fn acting(std::shared_ptr<world> w, std::string name, std::atomic<bool>* fails = nullptr) {
  return [w, name, fails](step_context& ctx) {
    if (fails && *fails)
      return ctx.fail(failure_kind::crashed, name + " service down");
    ctx.effect(
      name,
      [w, name](const std::string& key) {
        w->record(name + " " + key);
        return nlohmann::json{{"done", name}};
      },
      [](step_context& c, caf::expected<nlohmann::json> r) {
        if (!r)
          return c.fail(failure_kind::crashed, describe(r.error()));
        c.finish({});
      });
  };
}

std::unique_ptr<runtime> saga_runtime(std::shared_ptr<world> w) {
  config cfg;
  cfg.random = seeded_random(9);
  auto rt = std::make_unique<runtime>(std::move(cfg));
  REQUIRE_FALSE(rt->register_agent("reserver", acting(w, "reserve")));
  REQUIRE_FALSE(rt->register_agent("releaser", acting(w, "release")));
  REQUIRE_FALSE(rt->register_agent("charger", acting(w, "charge")));
  REQUIRE_FALSE(rt->register_agent("refunder", acting(w, "refund", &w->refunds_down)));
  agent_policy reserve;
  reserve.timeout = 5s;
  reserve.compensate = "releaser";
  agent_policy charge = reserve;
  charge.compensate = "refunder";
  charge.retry.max_attempts = 2;
  charge.retry.base_backoff = 1ms;
  charge.retry.max_backoff = 1ms;
  REQUIRE_FALSE(rt->register_definition(*definition_builder{"order"}
                                            .agent("reserve", "reserver", reserve).on("ok", "charge")
                                            .agent("charge", "charger", charge).on("ok", "review")
                                            .gate("review").on("approve", "done")
                                            .on("reject", "declined")
                                            .completed("done")
                                            .failed("declined")
                                            .build()));
  return rt;
}

workflow_info parked_at_review(runtime& rt, const std::string& id) {
  auto info = rt.await(id, patience, true);
  REQUIRE(info);
  REQUIRE(info->node == "review");
  return *info;
}

} // namespace

TEST_CASE("a workflow rejected after side effects undoes them newest first and ends "
          "compensated",
          "[compensation]") {
  auto w = std::make_shared<world>();
  auto rt = saga_runtime(w);
  auto id = rt->start("order", {{"sku", "A-1"}});
  REQUIRE(id);
  parked_at_review(*rt, *id);
  REQUIRE_FALSE(rt->signal(*id, "review", decision::reject("ann")));
  auto info = rt->await(*id, patience);
  REQUIRE(info);
  CHECK(info->status == workflow_status::failed);
  CHECK(info->node == "declined");
  CHECK(info->outcome == "compensated");
  CHECK(info->reason == "compensated after 'reject': gate 'review': reject by 'ann'");
  CHECK(w->seen() == std::vector<std::string>{
                       "reserve " + *id + "/reserve#1/reserve",
                       "charge " + *id + "/charge#1/charge",
                       "refund " + *id + "/charge~undo#1/refund",
                       "release " + *id + "/reserve~undo#1/release",
                     });
}

TEST_CASE("a cancelled workflow compensates what it did, and takes no second cancel",
          "[compensation]") {
  auto w = std::make_shared<world>();
  auto rt = saga_runtime(w);
  auto id = rt->start("order", {{"sku", "B-2"}});
  REQUIRE(id);
  parked_at_review(*rt, *id); // passive: the cancel wakes it
  REQUIRE_FALSE(rt->cancel(*id, "ops", "customer cancelled"));
  auto info = rt->await(*id, patience);
  REQUIRE(info);
  CHECK(info->outcome == "compensated");
  CHECK(info->reason
        == "compensated after 'cancelled': cancelled by 'ops': customer cancelled");
  CHECK(w->seen().size() == 4);
  CHECK(is(rt->cancel(*id, "ops", "again"), errc::workflow_finished));
  CHECK(is(rt->cancel("order-none", "ops", "x"), errc::unknown_workflow));
}

TEST_CASE("an undo that keeps failing dead-letters the workflow, and a retry finishes the undo",
          "[compensation][dead_letter]") {
  auto w = std::make_shared<world>();
  w->refunds_down = true;
  auto rt = saga_runtime(w);
  auto id = rt->start("order", {{"sku", "C-3"}});
  REQUIRE(id);
  parked_at_review(*rt, *id);
  REQUIRE_FALSE(rt->signal(*id, "review", decision::reject("ann")));
  auto info = rt->await(*id, patience);
  REQUIRE(info);
  CHECK(info->status == workflow_status::dead_lettered);
  CHECK(info->node == "charge");
  CHECK(info->reason == "compensating node 'charge' (agent 'refunder') failed: node 'charge' "
                        "attempt 2: crashed: refund service down");
  CHECK(w->seen().size() == 2); // nothing undone yet, nothing released out of order
  w->refunds_down = false;
  REQUIRE_FALSE(rt->retry_dead_letter(*id, "ops"));
  info = rt->await(*id, patience);
  REQUIRE(info);
  CHECK(info->outcome == "compensated");
  CHECK(w->seen().size() == 4);
  CHECK(w->seen()[2].rfind("refund ", 0) == 0);
  CHECK(w->seen()[3].rfind("release ", 0) == 0);
}

TEST_CASE("a definition naming a compensating agent that is not registered is refused",
          "[compensation]") {
  config cfg;
  runtime rt{cfg};
  REQUIRE_FALSE(rt.register_agent("worker", [](step_context& c) { c.finish({}); }));
  agent_policy p;
  p.compensate = "ghost";
  auto err = rt.register_definition(
    *definition_builder{"x"}.agent("a", "worker", p).on("ok", "done").completed("done").build());
  CHECK(is(err, errc::unknown_agent));
  CHECK(describe(err).find("compensating agent 'ghost'") != std::string::npos);
}
