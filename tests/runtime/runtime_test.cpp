// The embedding facade end to end on real threads: registration errors,
// start/await, gates, idempotency keys, bad input. Nothing sleeps: every
// wait is an await on the workflow's own settlement.
#include <catch2/catch.hpp>

#include <atomic>
#include <thread>

#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

config quiet_config() {
  config cfg;
  cfg.random = seeded_random(7);
  cfg.model.rules["echo"] = [](const llm_request& r) {
    return nlohmann::json{{"echo", r.messages.empty() ? "" : r.messages.back().content}}.dump();
  };
  return cfg;
}

definition two_steps() {
  agent_policy p;
  p.timeout = 5s;
  p.retry.max_attempts = 2;
  p.retry.base_backoff = 1ms;
  p.retry.max_backoff = 2ms;
  return *definition_builder{"two"}
            .agent("first", "echoer", p).on("ok", "review").on("exhausted", "failed")
            .gate("review").on("approve", "second").on("reject", "failed")
            .agent("second", "echoer", p).on("ok", "done").on("exhausted", "failed")
            .completed("done")
            .failed("failed")
            .build();
}

void echoer(step_context& ctx) {
  llm_request req;
  req.script = "echo";
  req.messages.push_back({"user", ctx.node()});
  ask_json(ctx, req, [](step_context& c, nlohmann::json reply) {
    step_outcome o;
    o.patch = {{c.node(), reply["echo"]}};
    c.finish(o);
  });
}

struct fixture {
  runtime rt{quiet_config()};
  fixture() {
    REQUIRE(!rt.register_agent("echoer", echoer));
    REQUIRE(!rt.register_definition(two_steps()));
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "a workflow runs, parks at its gate and completes once approved") {
  auto id = rt.start("two", {{"ticket", 1}});
  REQUIRE(id);
  auto parked = rt.await(*id, patience, true);
  REQUIRE(parked);
  CHECK(parked->status == workflow_status::parked);
  CHECK(parked->node == "review");
  CHECK(parked->state["first"] == "first");
  REQUIRE(!rt.signal(*id, "review", decision::approve("alice")));
  auto done = rt.await(*id, patience);
  REQUIRE(done);
  CHECK(done->status == workflow_status::completed);
  CHECK(done->node == "done");
  CHECK(done->state == nlohmann::json{{"ticket", 1}, {"first", "first"}, {"second", "second"}});
  CHECK(done->steps == 2);
  CHECK(done->tokens > 0);
  auto h = rt.history(*id);
  REQUIRE(h);
  std::vector<std::string> kinds;
  for (auto& r : *h)
    kinds.push_back(r.kind);
  CHECK(kinds == std::vector<std::string>{"workflow_started", "step_scheduled", "step_completed",
                                          "signal_received", "step_scheduled", "step_completed"});
}

TEST_CASE_METHOD(fixture, "a rejected gate ends the workflow failed at the failed terminal") {
  auto id = rt.start("two", nlohmann::json::object());
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  REQUIRE(!rt.signal(*id, "review", decision::reject("bob")));
  auto done = rt.await(*id, patience);
  REQUIRE(done);
  CHECK(done->status == workflow_status::failed);
  CHECK(done->node == "failed");
  CHECK(done->outcome == "reject");
  CHECK(done->reason.find("bob") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "an edit merges its patch into the state") {
  auto id = rt.start("two", {{"amount", 10}});
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  REQUIRE(!rt.signal(*id, "review", decision::edit(R"({"amount": 12})", "carol")));
  auto done = rt.await(*id, patience);
  REQUIRE(done);
  CHECK(done->status == workflow_status::completed);
  CHECK(done->state["amount"] == 12);
}

TEST_CASE_METHOD(fixture, "bad signals are refused and change nothing") {
  auto id = rt.start("two", nlohmann::json::object());
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  auto unknown = rt.signal("two-nonexistent", "review", decision::approve());
  CHECK(is(unknown, errc::unknown_workflow));
  auto wrong_gate = rt.signal(*id, "elsewhere", decision::approve());
  CHECK(is(wrong_gate, errc::bad_signal));
  CHECK(describe(wrong_gate).find("waits at gate 'review'") != std::string::npos);
  auto bad_json = rt.signal(*id, "review", decision::edit("{not json"));
  CHECK(is(bad_json, errc::bad_signal));
  CHECK(describe(bad_json).find("JSON object") != std::string::npos);
  auto bad_verdict = rt.signal(*id, "review", decision{"maybe", "", ""});
  CHECK(is(bad_verdict, errc::bad_signal));
  auto still = rt.status(*id);
  REQUIRE(still);
  CHECK(still->status == workflow_status::parked);
  CHECK(still->node == "review");
  CHECK(rt.history(*id)->size() == 3); // nothing journaled for the refused signals
  REQUIRE(!rt.signal(*id, "review", decision::approve()));
  REQUIRE(rt.await(*id, patience)->status == workflow_status::completed);
  CHECK(is(rt.signal(*id, "review", decision::approve()), errc::workflow_finished));
}

TEST_CASE_METHOD(fixture, "an await on a parked workflow times out with await_timeout") {
  auto id = rt.start("two", nlohmann::json::object());
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true)); // parked at review
  auto r = rt.await(*id, 20ms);           // waits for the end, which needs a signal
  REQUIRE(!r);
  CHECK(is(r.error(), errc::await_timeout));
  CHECK(is_retryable(errc::await_timeout));
}

TEST_CASE_METHOD(fixture, "an idempotency key starts a workflow once") {
  auto a = rt.start("two", nlohmann::json::object(), "order-17");
  auto b = rt.start("two", {{"other", true}}, "order-17");
  REQUIRE(a);
  REQUIRE(b);
  CHECK(*a == *b);
  auto c = rt.start("two", nlohmann::json::object(), "order-18");
  REQUIRE(c);
  CHECK(*c != *a);
}

TEST_CASE_METHOD(fixture, "registration and start refuse bad input with a clear error") {
  CHECK(is(rt.register_agent("echoer", echoer), errc::unknown_agent));
  CHECK(is(rt.register_agent("", echoer), errc::unknown_agent));
  CHECK(is(rt.register_agent("nil", agent_ptr{}), errc::unknown_agent));
  CHECK(is(rt.register_definition(two_steps()), errc::unknown_definition));
  auto needs_ghost = *definition_builder{"ghostly"}
                        .agent("a", "ghost").on("ok", "done").on("exhausted", "done")
                        .completed("done")
                        .build();
  auto err = rt.register_definition(needs_ghost);
  CHECK(is(err, errc::unknown_agent));
  CHECK(describe(err).find("'ghost'") != std::string::npos);
  auto unknown = rt.start("nope", nlohmann::json::object());
  REQUIRE(!unknown);
  CHECK(is(unknown.error(), errc::unknown_definition));
  auto not_object = rt.start("two", nlohmann::json::array());
  REQUIRE(!not_object);
  CHECK(is(not_object.error(), errc::invalid_input));
  auto not_utf8 = rt.start("two", {{"name", "bad \xff byte"}});
  REQUIRE(!not_utf8);
  CHECK(is(not_utf8.error(), errc::invalid_input));
  CHECK(is(rt.await("two-missing", 10ms).error(), errc::unknown_workflow));
  CHECK(is(rt.history("two-missing").error(), errc::unknown_workflow));
}

TEST_CASE("an invalid config is refused before anything starts") {
  auto with = [](auto edit) {
    config cfg;
    edit(cfg);
    return cfg;
  };
  CHECK_THROWS_WITH(runtime{with([](config& c) { c.threads = 0; })},
                    Catch::Contains("threads"));
  CHECK_THROWS_WITH(runtime{with([](config& c) { c.model.fail_rate = 1.5; })},
                    Catch::Contains("fail_rate"));
  CHECK_THROWS_WITH(runtime{with([](config& c) { c.log_level = "loud"; })},
                    Catch::Contains("log_level"));
  CHECK_THROWS_WITH(runtime{with([](config& c) { c.scheduler = "fastest"; })},
                    Catch::Contains("scheduler") && Catch::Contains("'fastest'"));
  CHECK_THROWS_WITH(runtime{with([](config& c) { c.notify_retry.max_attempts = 0; })},
                    Catch::Contains("notify_retry"));
  CHECK_THROWS_WITH(runtime{with([](config& c) {
                      c.notify_retry.base_backoff = std::chrono::seconds{2};
                      c.notify_retry.max_backoff = std::chrono::seconds{1};
                    })},
                    Catch::Contains("notify_retry"));
}

TEST_CASE("both scheduler policies run workflows to the end") {
  auto policy = GENERATE(as<std::string>{}, "sharing", "stealing");
  CAPTURE(policy);
  auto cfg = quiet_config();
  cfg.scheduler = policy;
  runtime rt{cfg};
  REQUIRE(!rt.register_agent("echoer", echoer));
  REQUIRE(!rt.register_definition(two_steps()));
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i) {
    auto id = rt.start("two", {{"ticket", i}});
    REQUIRE(id);
    ids.push_back(*id);
  }
  for (auto& id : ids) {
    REQUIRE(rt.await(id, patience, true));
    REQUIRE(!rt.signal(id, "review", decision::approve("alice")));
  }
  for (auto& id : ids) {
    auto done = rt.await(id, patience);
    REQUIRE(done);
    CHECK(done->status == workflow_status::completed);
  }
}

TEST_CASE("after shutdown every call says so") {
  runtime rt{quiet_config()};
  rt.shutdown();
  auto id = rt.start("two", nlohmann::json::object());
  REQUIRE(!id);
  CHECK(is(id.error(), errc::shutting_down));
  rt.shutdown(); // idempotent
}

namespace {

/// A clock the test moves by hand, from the system clock onwards.
class jumping_clock final : public clock_source {
public:
  std::chrono::nanoseconds now() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
           + std::chrono::nanoseconds{skew.load()};
  }
  std::atomic<int64_t> skew{0};
};

} // namespace

TEST_CASE("a rule's no_reply hangs the call and clock_changed fires the step timeout and "
          "then the retry at once") {
  auto clock = std::make_shared<jumping_clock>();
  std::atomic<int> asked{0};
  config cfg = quiet_config();
  cfg.clock = clock;
  cfg.model.rules["silent_once"] = [&asked](const llm_request& r) {
    // request ids end in ":<attempt>:<call>": the first attempt hangs
    ++asked;
    return r.request_id.find(":1:0") != std::string::npos ? scripted_model_config::no_reply
                                                           : std::string{R"({"ok":true})"};
  };
  runtime rt{cfg};
  REQUIRE(!rt.register_agent("waiter", [](step_context& ctx) {
    llm_request req;
    req.script = "silent_once";
    req.messages.push_back({"user", "anyone there?"});
    ask_json(ctx, req, [](step_context& c, nlohmann::json) { c.finish({}); });
  }));
  agent_policy p;
  p.timeout = 1h; // never reached in real time
  p.retry.max_attempts = 2;
  p.retry.base_backoff = 1ms; // armed after the jump, behind a wake-up due in 1 h
  p.retry.max_backoff = 2ms;
  REQUIRE(!rt.register_definition(*definition_builder{"hang"}
                                     .agent("wait", "waiter", p).on("ok", "done")
                                     .on("exhausted", "gave_up")
                                     .completed("done").failed("gave_up")
                                     .build()));
  auto id = rt.start("hang", nlohmann::json::object());
  REQUIRE(id);
  while (asked.load() == 0) // the call is out, its timer armed before it
    std::this_thread::yield();
  auto still = rt.status(*id);
  REQUIRE(still);
  CHECK(still->status == workflow_status::running);
  clock->skew += std::chrono::nanoseconds{1h + 1s}.count();
  REQUIRE(!rt.clock_changed());
  auto info = rt.await(*id, patience);
  REQUIRE(info);
  CHECK(info->node == "done");
  auto events = rt.history(*id);
  REQUIRE(events);
  int timeouts = 0;
  for (const auto& r : *events)
    timeouts += r.kind == "step_failed"
                && r.payload.find("no outcome within 3600000 ms") != std::string::npos;
  CHECK(timeouts == 1);
}
