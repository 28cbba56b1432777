// Time travel: runtime::state_at folds a workflow's journal up to any event,
// from a snapshot only if one was taken by then, and refuses a seq the
// journal does not have. runtime::fork starts a new workflow from such a
// past state, optionally with another model for every model call.
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
    // the scripted model says which model the call named
    cfg.model.rules["asker"] = [](const llm_request& r) {
      return nlohmann::json{{"model", r.model}}.dump();
    };
    return cfg;
  }()};

  fixture() {
    REQUIRE(!rt.register_agent("count", [](step_context& ctx) {
      step_outcome o;
      o.patch = {{ctx.node(), ctx.state().value("n", 0) + 1}, {"n", ctx.state().value("n", 0) + 1}};
      ctx.finish(o);
    }));
    REQUIRE(!rt.register_definition(reviewed("travel", "count")));
    REQUIRE(!rt.register_agent("asker", [](step_context& ctx) {
      llm_request req;
      req.model = "scripted/own"; // the agent's own choice
      req.messages = {{"user", "which model are you?"}};
      req.json_output = true;
      ask_json(ctx, req, [](step_context& c, nlohmann::json reply) {
        step_outcome o;
        o.patch = {{c.node(), reply["model"]}};
        c.finish(o);
      });
    }));
    REQUIRE(!rt.register_definition(reviewed("forky", "asker")));
  }

  /// `agent` at a, a review gate, `agent` again at b.
  static definition reviewed(const char* name, const char* agent) {
    return *definition_builder{name}
              .agent("a", agent).on("ok", "review")
              .gate("review").on("approve", "b").on("reject", "no")
              .agent("b", agent).on("ok", "done")
              .completed("done")
              .failed("no")
              .build();
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

TEST_CASE_METHOD(fixture, "fork starts a new workflow from a past state, at the node it was "
                          "at, with another model if asked") {
  auto id = rt.start("forky", {{"order", 7}});
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  REQUIRE(!rt.signal(*id, "review", decision::approve("ann")));
  auto done = rt.await(*id, patience);
  REQUIRE(done);
  REQUIRE(done->status == workflow_status::completed);
  CHECK(done->state["a"] == "scripted/own");
  CHECK(done->state["b"] == "scripted/own");
  auto original = rt.history(*id);
  REQUIRE(original);
  REQUIRE(original->size() == 6); // started, a, a done, signal, b, b done

  // at #3 it waited at the gate: the fork waits there too, with a's answer
  auto fork = rt.fork(*id, 3, fork_options{"scripted/other"});
  REQUIRE(fork);
  CHECK(*fork != *id);
  auto parked = rt.await(*fork, patience, true);
  REQUIRE(parked);
  CHECK(parked->status == workflow_status::parked);
  CHECK(parked->node == "review");
  CHECK(parked->steps == 0); // its own budgets, from zero
  CHECK(parked->state == nlohmann::json{{"order", 7}, {"a", "scripted/own"}});
  REQUIRE(!rt.signal(*fork, "review", decision::approve("bob")));
  auto forked = rt.await(*fork, patience);
  REQUIRE(forked);
  CHECK(forked->status == workflow_status::completed);
  CHECK(forked->state["b"] == "scripted/other"); // every call took the fork's model
  auto first = rt.history(*fork);
  REQUIRE(first);
  auto started = nlohmann::json::parse(first->front().payload);
  CHECK(started["forked_from"] == *id);
  CHECK(started["forked_at"] == 3);
  CHECK(started["start_node"] == "review");
  CHECK(started["model"] == "scripted/other");
  auto again = rt.history(*id); // the original is untouched
  REQUIRE(again);
  CHECK(again->size() == original->size());

  // at #2 an attempt of a was in flight: the fork runs a again, from attempt 1
  auto rerun = rt.fork(*id, 2);
  REQUIRE(rerun);
  auto rerun_parked = rt.await(*rerun, patience, true);
  REQUIRE(rerun_parked);
  CHECK(rerun_parked->node == "review");
  CHECK(rerun_parked->steps == 1);
  CHECK(rerun_parked->state["a"] == "scripted/own");
}

TEST_CASE_METHOD(fixture, "fork refuses a finished state, a bad model and an unknown "
                          "workflow, and a key makes it once") {
  auto id = rt.start("forky", nlohmann::json::object());
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  REQUIRE(!rt.signal(*id, "review", decision::reject("ann")));
  REQUIRE(rt.await(*id, patience));
  auto n = rt.history(*id);
  REQUIRE(n);
  auto finished = rt.fork(*id, n->size());
  REQUIRE_FALSE(finished);
  CHECK(is(finished.error(), errc::invalid_input));
  CHECK(describe(finished.error()).find("had finished (failed, outcome 'reject')")
        != std::string::npos);
  auto bad_model = rt.fork(*id, 1, fork_options{"nowhere/x"});
  REQUIRE_FALSE(bad_model);
  CHECK(is(bad_model.error(), errc::invalid_input));
  CHECK(describe(bad_model.error()).find("model 'nowhere/x'") != std::string::npos);
  auto unknown = rt.fork("no-such-workflow", 1);
  REQUIRE_FALSE(unknown);
  CHECK(is(unknown.error(), errc::unknown_workflow));
  auto past_end = rt.fork(*id, 99);
  REQUIRE_FALSE(past_end);
  CHECK(is(past_end.error(), errc::invalid_input));

  fork_options keyed;
  keyed.idempotency_key = "fork-once";
  auto once = rt.fork(*id, 1, keyed);
  REQUIRE(once);
  auto twice = rt.fork(*id, 1, keyed);
  REQUIRE(twice);
  CHECK(*once == *twice);

  start_options bad;
  bad.model = "nowhere";
  auto refused = rt.start("forky", nlohmann::json::object(), bad);
  REQUIRE_FALSE(refused);
  CHECK(is(refused.error(), errc::invalid_input));
  auto rows = rt.counts();
  REQUIRE(rows);
  CHECK(rows->total() == 2); // the original and the one keyed fork: nothing else started
}
