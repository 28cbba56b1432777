// A soft budget through the facade: at 80% of max_tokens the workflow
// parks at its soft gate before the next attempt; approval resumes that
// attempt, rejection takes the gate's route. Waits are awaits, never sleeps.
#include <catch2/catch.hpp>

#include <string>

#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

/// a -> b -> c -> d -> done, each step spending 30 tokens; max_tokens 200,
/// soft share 0.4 at gate "over" (reject -> stopped).
std::unique_ptr<runtime> soft_runtime() {
  config cfg;
  cfg.random = seeded_random(5);
  auto rt = std::make_unique<runtime>(std::move(cfg));
  REQUIRE_FALSE(rt->register_agent("spender", [](step_context& ctx) {
    step_outcome o;
    o.extra_tokens = 30;
    o.patch = {{ctx.node(), ctx.idempotency_key()}};
    ctx.finish(o);
  }));
  budgets b;
  b.max_tokens = 200;
  b.soft_share = 0.4;
  b.soft_gate = "over";
  REQUIRE_FALSE(rt->register_definition(*definition_builder{"soft"}
                                            .agent("a", "spender").on("ok", "b")
                                            .agent("b", "spender").on("ok", "c")
                                            .agent("c", "spender").on("ok", "d")
                                            .agent("d", "spender").on("ok", "done")
                                            .gate("over").on("approve", "done")
                                            .on("reject", "stopped")
                                            .completed("done")
                                            .failed("stopped")
                                            .limits(b)
                                            .build()));
  return rt;
}

} // namespace

TEST_CASE("at the soft share of its token budget a workflow parks at the soft gate, and "
          "approval resumes the step that waited",
          "[soft_budget]") {
  auto rt = soft_runtime();
  auto id = rt->start("soft", nlohmann::json::object());
  REQUIRE(id);
  auto parked = rt->await(*id, patience, true);
  REQUIRE(parked);
  CHECK(parked->status == workflow_status::parked);
  CHECK(parked->node == "over");
  CHECK(parked->tokens == 90); // a, b, c: 90 >= 40% of 200; d waits
  CHECK(parked->reason == "node 'd': soft budget: 90 tokens used, 40% of 200 reached");
  CHECK(parked->state.count("d") == 0);
  REQUIRE_FALSE(rt->signal(*id, "over", decision::approve("cfo")));
  auto done = rt->await(*id, patience);
  REQUIRE(done);
  CHECK(done->status == workflow_status::completed);
  CHECK(done->node == "done");
  CHECK(done->tokens == 120);
  CHECK(done->state["d"] == *id + "/d#1"); // the visit that waited
}

TEST_CASE("rejecting at the soft gate stops the workflow by the gate's reject route",
          "[soft_budget]") {
  auto rt = soft_runtime();
  auto id = rt->start("soft", nlohmann::json::object());
  REQUIRE(id);
  REQUIRE(rt->await(*id, patience, true)->node == "over");
  REQUIRE_FALSE(rt->signal(*id, "over", decision::reject("cfo")));
  auto done = rt->await(*id, patience);
  REQUIRE(done);
  CHECK(done->status == workflow_status::failed);
  CHECK(done->node == "stopped");
  CHECK(done->outcome == "reject");
  CHECK(done->tokens == 90);
}
