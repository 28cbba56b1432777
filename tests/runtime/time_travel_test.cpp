// Time travel: runtime::state_at folds a workflow's journal up to any event,
// from a snapshot only if one was taken by then, and refuses a seq the
// journal does not have.
#include <catch2/catch.hpp>

#include <string>

#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 20000ms; // only reached when a test is broken

struct fixture {
  runtime rt{[] {
    config cfg;
    cfg.log_level = "error";
    cfg.snapshot_every = 3; // the latest snapshot is later than most seqs asked for
    return cfg;
  }()};

  fixture() {
    REQUIRE(!rt.register_agent("count", [](step_context& ctx) {
      step_outcome o;
      o.patch = {{ctx.node(), ctx.state().value("n", 0) + 1}, {"n", ctx.state().value("n", 0) + 1}};
      ctx.finish(o);
    }));
    REQUIRE(!rt.register_definition(*definition_builder{"travel"}
                                       .agent("a", "count").on("ok", "review")
                                       .gate("review").on("approve", "b").on("reject", "no")
                                       .agent("b", "count").on("ok", "done")
                                       .completed("done")
                                       .failed("no")
                                       .build()));
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "state_at shows the workflow right after each of its events") {
  auto id = rt.start("travel", {{"order", 7}});
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  REQUIRE(!rt.signal(*id, "review", decision::edit(R"({"note": "checked"})", "ann")));
  auto done = rt.await(*id, patience);
  REQUIRE(done);
  REQUIRE(done->status == workflow_status::completed);
  auto events = rt.history(*id);
  REQUIRE(events);
  // started, scheduled a, completed a (to the gate), signal, scheduled b, completed b
  REQUIRE(events->size() == 6);

  auto first = rt.state_at(*id, 1);
  REQUIRE(first);
  CHECK(first->status == workflow_status::running);
  CHECK(first->node == "a");
  CHECK(first->state == nlohmann::json{{"order", 7}});
  CHECK(first->steps == 0);

  auto parked = rt.state_at(*id, 3);
  REQUIRE(parked);
  CHECK(parked->status == workflow_status::parked);
  CHECK(parked->node == "review");
  CHECK(parked->state == nlohmann::json{{"order", 7}, {"a", 1}, {"n", 1}});
  CHECK(parked->steps == 1);

  auto edited = rt.state_at(*id, 4);
  REQUIRE(edited);
  CHECK(edited->status == workflow_status::running);
  CHECK(edited->node == "b");
  CHECK(edited->state["note"] == "checked");
  CHECK(edited->state.count("b") == 0);

  auto last = rt.state_at(*id, 6);
  REQUIRE(last);
  CHECK(last->status == workflow_status::completed);
  CHECK(last->outcome == done->outcome);
  CHECK(last->state == done->state);
  CHECK(last->steps == 2);
}

TEST_CASE_METHOD(fixture, "state_at refuses a seq the journal does not have, and an unknown "
                          "workflow") {
  auto id = rt.start("travel", nlohmann::json::object());
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  auto none = rt.state_at(*id, 0);
  REQUIRE_FALSE(none);
  CHECK(is(none.error(), errc::invalid_input));
  auto past = rt.state_at(*id, 99);
  REQUIRE_FALSE(past);
  CHECK(is(past.error(), errc::invalid_input));
  CHECK(describe(past.error()).find("has events #1 to #3: there is no #99") != std::string::npos);
  auto unknown = rt.state_at("no-such-workflow", 1);
  REQUIRE_FALSE(unknown);
  CHECK(is(unknown.error(), errc::unknown_workflow));
}
