// The workflow actor under deterministic time: timeouts, backoff, crashes,
// bad output, budgets, gates, stale replies and journal failures, each
// caused on purpose and asserted against the journal.
#include "actors/actor_fixture.hpp"
#include "actors/workflow_actor.hpp"
#include "support/prometheus_text.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

namespace {

agent_policy policy(duration timeout, uint32_t attempts, duration base = 1s, duration max = 4s) {
  agent_policy p;
  p.timeout = timeout;
  p.retry.max_attempts = attempts;
  p.retry.base_backoff = base;
  p.retry.max_backoff = max;
  return p;
}

std::vector<std::string> seen_keys; // agents run on the test's only thread

struct fixture : actor_fixture {
  fixture() {
    seen_keys.clear();
    model_cfg.rules["json"] = [](const llm_request&) { return std::string{R"({"v": 1})"}; };
    REQUIRE(!reg->add_agent("asker", make_agent(json_asker)));
    REQUIRE(!reg->add_agent("thrower", make_agent([](step_context&) -> void {
      throw std::runtime_error("boom");
    })));
    REQUIRE(!reg->add_agent("forgetful", make_agent([](step_context&) {})));
    REQUIRE(!reg->add_agent("weird", make_agent([](step_context& c) { c.finish({"weird"}); })));
    REQUIRE(!reg->add_agent("again", make_agent([](step_context& c) {
      seen_keys.push_back(c.idempotency_key());
      c.finish({"again"});
    })));
    REQUIRE(!reg->add_agent("twice", make_agent([](step_context& c) { // two calls in a row
      llm_request req;
      req.script = "json";
      req.messages.push_back({"user", "first"});
      c.ask(req, [](step_context& c, caf::expected<llm_reply>) {
        llm_request again;
        again.script = "json";
        again.messages.push_back({"user", "second"});
        c.ask(again, [](step_context& c, caf::expected<llm_reply>) { c.finish({}); });
      });
    })));
    REQUIRE(!reg->add_agent("flaky_once", make_agent([](step_context& c) {
      seen_keys.push_back(c.idempotency_key());
      if (c.attempt() == 1)
        return c.fail(failure_kind::crashed, "first attempt fails");
      c.finish({});
    })));
  }

  void define(caf::expected<definition> d) {
    REQUIRE(d);
    REQUIRE(!reg->add_definition(std::move(*d)));
  }

  // Runs messages and fires timers in order until the workflow finishes or
  // is dead-lettered.
  info_msg run_to_end(const std::string& id, int max_timers = 50) {
    sched.run();
    for (int i = 0; i < max_timers; ++i) {
      auto s = status(id);
      auto st = static_cast<workflow_status>(s.status);
      if (st == workflow_status::completed || st == workflow_status::failed
          || st == workflow_status::dead_lettered)
        return s;
      REQUIRE(trigger_timeout());
      sched.run();
    }
    FAIL("workflow " << id << " did not finish");
    return {};
  }

  kernel::instant at(const std::string& id, size_t i) { return kernel::time_of(events(id).at(i)); }
  uint64_t seed(const std::string& id) {
    return std::get<kernel::workflow_started>(events(id).at(0)).seed;
  }
};

definition_builder retry_then_gate(const char* agent) {
  return std::move(definition_builder{"retry"}
                     .agent("a", agent, policy(5s, 3)).on("ok", "done").on("exhausted", "review")
                     .gate("review").on("approve", "done").on("reject", "rejected")
                     .completed("done")
                     .failed("rejected"));
}

} // namespace

TEST_CASE_METHOD(fixture, "a silent model times out at exactly the step timeout, retries after "
                          "the seeded backoff, and exhausted attempts park at the gate") {
  model_cfg.timeout_rate = 1.0;
  define(retry_then_gate("asker").build());
  boot();
  auto id = start("retry");
  auto t0 = now();
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "step_scheduled a#1"});
  CHECK(advance_time(5s - 1ns) == 0);
  sched.run();
  CHECK(trace(id).size() == 2);
  CHECK(advance_time(1ns) == 1);
  sched.run();
  CHECK(trace(id).back() == "step_failed a#1 timeout");
  CHECK(at(id, 2) == t0 + 5s);
  auto p = policy(5s, 3);
  auto b1 = kernel::backoff_delay(p.retry, seed(id), "a", 1);
  auto b2 = kernel::backoff_delay(p.retry, seed(id), "a", 2);
  if (b1 > 0ns) {
    advance_time(b1 - 1ns);
    sched.run();
    CHECK(trace(id).size() == 3);
  }
  for (int i = 0; i < 8 && static_cast<workflow_status>(status(id).status)
                               != workflow_status::parked; ++i) {
    REQUIRE(trigger_timeout());
    sched.run();
  }
  CHECK(trace(id) == std::vector<std::string>{
    "workflow_started", "step_scheduled a#1", "step_failed a#1 timeout",
    "timer_fired retry_backoff", "step_scheduled a#2", "step_failed a#2 timeout",
    "timer_fired retry_backoff", "step_scheduled a#3", "step_failed a#3 timeout"});
  auto ev = events(id);
  CHECK(kernel::time_of(ev.at(4)) == t0 + 5s + b1);       // attempt 2 starts after backoff 1
  CHECK(kernel::time_of(ev.at(7)) == t0 + 10s + b1 + b2); // attempt 3 after backoff 2
  CHECK(kernel::time_of(ev.at(8)) == t0 + 15s + b1 + b2); // and times out 5 s later
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::parked);
  CHECK(s.node == "review");
  CHECK(s.steps == 3);
  CHECK(s.reason == "node 'a' attempt 3: timeout: no outcome within 5000 ms"); // why it parked
  REQUIRE(!signal(id, "review", "approve"));
  auto done = status(id);
  CHECK(static_cast<workflow_status>(done.status) == workflow_status::completed);
  CHECK(done.reason.empty());
}

TEST_CASE_METHOD(fixture, "metrics count each attempt by agent and outcome with its latency in "
                          "the runtime's time, each retry, and the workflow's start and end") {
  model_cfg.timeout_rate = 1.0;
  define(retry_then_gate("asker").build());
  boot();
  auto id = start("retry");
  auto before = metrics->text({});
  CHECK(sample(before, "troupe_workflows_started_total") == 1);
  CHECK(sample(before, R"(troupe_steps_total{agent="asker",outcome="timeout"})") == -1);
  for (int i = 0; i < 8 && static_cast<workflow_status>(status(id).status)
                               != workflow_status::parked; ++i) {
    REQUIRE(trigger_timeout());
    sched.run();
  }
  REQUIRE(!signal(id, "review", "approve"));
  REQUIRE(static_cast<workflow_status>(status(id).status) == workflow_status::completed);
  auto text = metrics->text({});
  CHECK(sample(text, R"(troupe_steps_total{agent="asker",outcome="timeout"})") == 3);
  CHECK(sample(text, R"(troupe_step_retries_total{agent="asker"})") == 2);
  // each attempt timed out after exactly its 5 s, in test time
  CHECK(sample(text, R"(troupe_step_duration_seconds_count{agent="asker"})") == 3);
  CHECK(sample(text, R"(troupe_step_duration_seconds_sum{agent="asker"})") == 15);
  CHECK(sample(text, R"(troupe_step_duration_seconds_bucket{agent="asker",le="2.5"})") == 0);
  CHECK(sample(text, R"(troupe_step_duration_seconds_bucket{agent="asker",le="5"})") == 3);
  CHECK(sample(text, R"(troupe_workflows_ended_total{status="completed"})") == 1);
  CHECK(sample(text, R"(troupe_workflows_ended_total{status="failed"})") == -1);
  // every write of the workflow went through a committed batch
  CHECK(sample(text, "troupe_journal_commit_seconds_count") >= 1);
  CHECK(sample(text, "troupe_journal_batch_writes_sum") == static_cast<double>(events(id).size())
                                                            - 3); // 3 step_scheduled chained
  CHECK(sample(text, "troupe_journal_failures_total") == 0);
}

TEST_CASE_METHOD(fixture, "an agent that throws is a crashed attempt, never a crashed workflow") {
  define(definition_builder{"throws"}
           .agent("a", "thrower", policy(5s, 2)).on("ok", "done").on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("throws");
  auto s = run_to_end(id);
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "step_scheduled a#1",
                                              "step_failed a#1 crashed",
                                              "timer_fired retry_backoff",
                                              "step_scheduled a#2", "step_failed a#2 crashed"});
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.node == "gave_up");
  CHECK(s.outcome == "exhausted");
  CHECK(s.reason.find("agent threw: boom") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "an agent that returns without an outcome is crashed at once") {
  define(definition_builder{"forgets"}
           .agent("a", "forgetful", policy(1h, 1)).on("ok", "done").on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("forgets");
  sched.run(); // no time passes: the crash is not a timeout
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(trace(id).back() == "step_failed a#1 crashed");
  CHECK(s.reason.find("without finish() or fail()") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "malformed model output is bad_output") {
  model_cfg.malformed_rate = 1.0;
  define(retry_then_gate("asker").build());
  boot();
  auto id = start("retry");
  sched.run();
  CHECK(trace(id).back() == "step_failed a#1 bad_output");
  auto failed = std::get<kernel::step_failed>(events(id).back());
  CHECK(failed.reason.find("not a JSON object") != std::string::npos);
  CHECK(failed.tokens > 0); // the malformed reply still cost tokens
}

TEST_CASE_METHOD(fixture, "a model error fails the attempt as crashed with the model's reason") {
  std::string why;
  SECTION("drawn by fail_rate") {
    model_cfg.fail_rate = 1.0;
    why = "injected failure";
  }
  SECTION("a rule's error_reply") {
    model_cfg.rules["json"] = [](const llm_request&) { return scripted_model_config::error_reply; };
    why = "the rule failed";
  }
  define(retry_then_gate("asker").build());
  boot();
  auto id = start("retry");
  sched.run();
  auto failed = std::get<kernel::step_failed>(events(id).back());
  CHECK(failed.kind == failure_kind::crashed);
  CHECK(failed.reason.find("llm_unavailable") != std::string::npos);
  CHECK(failed.reason.find(why) != std::string::npos);
}

TEST_CASE_METHOD(fixture, "an outcome label the node does not route is bad_output") {
  define(definition_builder{"weird"}
           .agent("a", "weird", policy(5s, 1)).on("ok", "done").on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("weird");
  sched.run();
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.reason.find("outcome 'weird'") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "max_steps stops a looping agent with the budget outcome") {
  budgets b;
  b.max_steps = 4;
  define(definition_builder{"loop"}
           .agent("a", "again", policy(5s, 1)).on("again", "a").on("ok", "done")
           .on("exhausted", "done")
           .completed("done")
           .limits(b)
           .build());
  boot();
  auto id = start("loop");
  auto s = run_to_end(id); // no budget route: dead-lettered, for an operator
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::dead_lettered);
  CHECK(s.outcome == "budget");
  CHECK(s.steps == 4);
  CHECK(s.reason.find("max_steps") != std::string::npos);
  // each visit has its own idempotency key
  CHECK(seen_keys == std::vector<std::string>{id + "/a#1", id + "/a#2", id + "/a#3", id + "/a#4"});
}

TEST_CASE_METHOD(fixture, "an idempotency key is stable across the attempts of one visit") {
  define(definition_builder{"flaky"}
           .agent("a", "flaky_once", policy(5s, 2)).on("ok", "done").on("exhausted", "done")
           .completed("done")
           .build());
  boot();
  auto id = start("flaky");
  run_to_end(id);
  CHECK(seen_keys == std::vector<std::string>{id + "/a#1", id + "/a#1"});
}

namespace {

// A linear workflow of four asker steps under token budget `max_tokens`.
definition spender(uint64_t max_tokens) {
  budgets b;
  b.max_tokens = max_tokens;
  b.max_steps = 100;
  return definition_builder{"spend"}
    .agent("a", "asker", policy(5s, 1)).on("ok", "b").on("exhausted", "done")
    .agent("b", "asker", policy(5s, 1)).on("ok", "c").on("exhausted", "done")
    .agent("c", "asker", policy(5s, 1)).on("ok", "d").on("exhausted", "done")
    .agent("d", "asker", policy(5s, 1)).on("ok", "done").on("exhausted", "done")
    .completed("done")
    .limits(b)
    .build()
    .value();
}

} // namespace

TEST_CASE_METHOD(fixture, "a model call whose estimate does not fit the token budget is never "
                          "sent and the workflow takes its budget outcome") {
  size_t calls = 0;
  model_cfg.rules["json"] = [&calls](const llm_request&) {
    ++calls;
    return std::string{R"({"v": 1})"};
  };
  define(spender(20)); // an asker call reserves its prompt + max_tokens 1024
  boot();
  auto id = start("spend");
  auto s = run_to_end(id); // no budget route: dead-lettered, for an operator
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::dead_lettered);
  CHECK(s.outcome == "budget");
  CHECK(calls == 0);
  CHECK(s.tokens == 0);
  CHECK(s.steps == 1);
  INFO(s.reason);
  CHECK(s.reason.find("over_budget: a model call of about 1030 tokens") != std::string::npos);
  CHECK(s.reason.find("does not fit the 20 tokens left") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "tokens granted with a dead-letter retry reach the agent's model "
                          "calls") {
  define(spender(20)); // the first call's reservation does not fit: dead-lettered
  boot();
  auto id = start("spend");
  REQUIRE(static_cast<workflow_status>(run_to_end(id).status)
          == workflow_status::dead_lettered);
  signal_msg retry{id, "", signal_msg::dlq_retry, "", "ops"};
  retry.grant_tokens = 10'000; // room for every step's reservation
  self->send(manager, signal_atom::value, retry);
  auto s = run_to_end(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::completed);
  CHECK(s.tokens > 0);
  CHECK(s.steps == 5); // the refused attempt, then a, b, c and d
}

TEST_CASE_METHOD(fixture, "max_tokens stops a workflow once its model calls spent the budget, "
                          "without ever spending past it") {
  // Room for the first call's reservation and a little more: each call
  // spends a few tokens, so a later call's reservation no longer fits.
  uint64_t limit = 1030 + 12;
  define(spender(limit));
  boot();
  auto id = start("spend");
  auto s = run_to_end(id); // no budget route: dead-lettered, for an operator
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::dead_lettered);
  CHECK(s.outcome == "budget");
  CHECK(s.tokens > 0);
  CHECK(s.tokens <= limit); // reserved before, charged after: never past it
  CHECK(s.steps >= 2);
  CHECK(s.steps < 4);
  CHECK(s.reason.find("max_tokens") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "a deadline reached while parked takes the gate's budget route") {
  budgets b;
  b.deadline = 1min;
  define(definition_builder{"expiring"}
           .gate("g").on("approve", "done").on("reject", "done").on("budget", "expired")
           .completed("done")
           .failed("expired")
           .limits(b)
           .build());
  boot();
  auto id = start("expiring");
  CHECK(static_cast<workflow_status>(status(id).status) == workflow_status::parked);
  CHECK(advance_time(1min - 1ns) == 0);
  // one timer: the manager's wake-up of the passive workflow (the actor
  // left nothing in CAF's clock when it passivated)
  CHECK(advance_time(1ns) == 1);
  sched.run();
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.node == "expired");
  CHECK(s.outcome == "budget");
  CHECK(is(signal(id, "g", "approve"), errc::workflow_finished));
}

TEST_CASE_METHOD(fixture, "a deadline reached mid-attempt abandons the attempt") {
  model_cfg.timeout_rate = 1.0;
  budgets b;
  b.deadline = 1min;
  define(definition_builder{"slow"}
           .agent("a", "asker", policy(10min, 1)).on("ok", "done").on("exhausted", "done")
           .completed("done")
           .limits(b)
           .build());
  boot();
  auto id = start("slow");
  advance_time(1min);
  sched.run();
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::dead_lettered);
  CHECK(s.outcome == "budget");
  CHECK(s.reason.find("deadline") != std::string::npos);
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "step_scheduled a#1",
                                              "timer_fired workflow_deadline"});
}

TEST_CASE_METHOD(fixture, "the late reply of a timed-out attempt never reaches the workflow") {
  model_cfg.latency = 7s; // every reply comes after the 5 s step timeout
  define(definition_builder{"late"}
           .agent("a", "asker", policy(5s, 2, 0s, 0s)).on("ok", "done").on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("late");
  CHECK(advance_time(5s) == 1); // attempt 1 times out; attempt 2 starts at once (no backoff)
  sched.run();
  CHECK(trace(id).back() == "step_scheduled a#2");
  advance_time(2s); // attempt 1's reply is due now: its actor was stopped
  sched.run();
  CHECK(trace(id).back() == "step_scheduled a#2");
  advance_time(3s); // attempt 2 times out too
  sched.run();
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "step_scheduled a#1",
                                              "step_failed a#1 timeout",
                                              "timer_fired retry_backoff", "step_scheduled a#2",
                                              "step_failed a#2 timeout"});
  auto s = status(id);
  CHECK(s.node == "gave_up");
  CHECK(s.outcome == "exhausted");
}

TEST_CASE_METHOD(fixture, "a gate refuses bad signals without journaling them, then takes an edit") {
  define(definition_builder{"gated"}
           .gate("g").on("approve", "a").on("reject", "rejected").on("edit", "a")
           .agent("a", "asker", policy(5s, 1)).on("ok", "done").on("exhausted", "rejected")
           .completed("done")
           .failed("rejected")
           .build());
  boot();
  auto id = start("gated", {{"amount", 1}});
  REQUIRE(static_cast<workflow_status>(status(id).status) == workflow_status::parked);
  auto other = signal(id, "other", "approve");
  CHECK(is(other, errc::bad_signal));
  CHECK(describe(other).find("waits at gate 'g'") != std::string::npos);
  CHECK(is(signal(id, "g", "maybe"), errc::bad_signal));
  CHECK(is(signal(id, "g", "edit", "{bad"), errc::bad_signal));
  CHECK(is(signal(id, "g", "edit", "[1]"), errc::bad_signal));
  CHECK(is(signal("gated-unknown", "g", "approve"), errc::unknown_workflow));
  CHECK(trace(id) == std::vector<std::string>{"workflow_started"});
  REQUIRE(!signal(id, "g", "edit", R"({"amount": 2})"));
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::completed);
  CHECK(nlohmann::json::parse(s.state_json)["amount"] == 2);
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "signal_received g edit",
                                              "step_scheduled a#1", "step_completed a#1 ok"});
  CHECK(is(signal(id, "g", "approve"), errc::workflow_finished));
}

TEST_CASE_METHOD(fixture, "await with or_parked answers when the workflow parks") {
  define(definition_builder{"parks"}
           .gate("g").on("approve", "done").on("reject", "done")
           .completed("done")
           .build());
  boot();
  auto id = start("parks");
  auto parked = call<info_msg>(await_atom::value, id, true, uint64_t{0});
  REQUIRE(parked);
  CHECK(static_cast<workflow_status>(parked->status) == workflow_status::parked);
  self->send(manager, await_atom::value, id, false, uint64_t{0}); // waits for the end
  sched.run();
  REQUIRE(!signal(id, "g", "approve"));
  bool done = false;
  self->receive([&](info_msg& m) {
    done = static_cast<workflow_status>(m.status) == workflow_status::completed;
  }, caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(done);
}

TEST_CASE_METHOD(fixture, "a failing journal stops the workflow with journal_write_failed and "
                          "nothing after the failure is carried out") {
  model_cfg.latency = 1s;
  define(retry_then_gate("asker").build());
  boot();
  auto id = start("retry");
  CHECK(trace(id).size() == 2); // started, scheduled
  store->failing = true;
  advance_time(1s); // the model answers; journaling step_completed fails
  sched.run();
  store->failing = false;
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.outcome == "journal_write_failed");
  CHECK(s.reason.find("disk full") != std::string::npos);
  CHECK(trace(id).size() == 2); // nothing after the failed write
  CHECK(is(signal(id, "review", "approve"), errc::workflow_finished));
  auto text = metrics->text({});
  CHECK(sample(text, "troupe_journal_failures_total") == 1);
  // the attempt's outcome never became durable: it is not counted
  CHECK(sample(text, R"(troupe_steps_total{agent="asker",outcome="ok"})") == -1);
}

TEST_CASE_METHOD(fixture, "a signal whose event cannot be journaled is answered with the "
                          "journal's error") {
  define(definition_builder{"gate_only"}
           .gate("g").on("approve", "done").on("reject", "done")
           .completed("done")
           .build());
  boot();
  auto id = start("gate_only");
  store->failing = true;
  auto err = signal(id, "g", "approve");
  store->failing = false;
  CHECK(is(err, errc::journal_write_failed));
  CHECK(describe(err).find("disk full") != std::string::npos);
  CHECK(status(id).outcome == "journal_write_failed");
}

namespace {

using hold_atom = caf::atom_constant<caf::atom("hold")>;

struct held_journal_state {
  caf::actor writer;
  bool holding = false;
  std::vector<std::pair<caf::response_promise, journal_write>> held;
};

// Stands in front of the journal writer; while holding, appends wait for
// the test to release them (a journal that is slow to acknowledge).
caf::behavior held_journal(caf::stateful_actor<held_journal_state>* self, caf::actor writer) {
  self->state.writer = std::move(writer);
  auto forward = [self](caf::response_promise rp, journal_write r) {
    self->request(self->state.writer, caf::infinite, append_atom::value, std::move(r))
      .then([rp](uint64_t seq) mutable { rp.deliver(seq); },
            [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
  };
  return {
    [self, forward](append_atom, journal_write& r) {
      auto rp = self->make_response_promise();
      if (self->state.holding)
        self->state.held.emplace_back(rp, std::move(r));
      else
        forward(rp, std::move(r));
      return rp;
    },
    [self, forward](hold_atom, bool on) {
      self->state.holding = on;
      if (!on) {
        for (auto& [rp, r] : self->state.held)
          forward(rp, std::move(r));
        self->state.held.clear();
      }
    },
  };
}

/// The services with held_journal in front of the journal writer.
struct held_fixture : fixture {
  caf::actor writer;

  void boot_held() {
    writer = persistence::spawn_journal_writer(sys, store, 64);
    journal = sys.spawn(held_journal, writer);
    model = spawn_scripted_model(sys, model_cfg);
    timers = spawn_timer_service(sys, nullptr);
    manager = spawn_workflow_manager(sys, manager_config());
    sched.run();
  }
  ~held_fixture() { caf::anon_send_exit(writer, caf::exit_reason::user_shutdown); }

  /// While on, appends wait for the test.
  void hold(bool on) {
    self->send(journal, hold_atom::value, on);
    sched.run();
  }

  /// A workflow whose agent has answered and whose park at gate "g" waits
  /// for its ack, and a status asked of it meanwhile.
  std::string park_held_and_ask_status() {
    model_cfg.latency = 1s;
    define(definition_builder{"to_gate"}
             .agent("a", "asker", policy(5s, 2)).on("ok", "g").on("exhausted", "done")
             .gate("g").on("approve", "done").on("reject", "done")
             .completed("done")
             .build());
    boot_held();
    auto id = start("to_gate");
    hold(true);
    advance_time(1s); // a's reply: parked in memory, its write held
    sched.run();
    REQUIRE(trace(id) == std::vector<std::string>{"workflow_started", "step_scheduled a#1"});
    self->send(manager, status_atom::value, id);
    sched.run();
    return id;
  }

  /// The info the test's actor has been sent, if any.
  caf::optional<info_msg> answer() {
    caf::optional<info_msg> got;
    self->receive([&](info_msg& m) { got = std::move(m); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
    return got;
  }
};

} // namespace

TEST_CASE_METHOD(held_fixture, "a deadline that fires while a completed step's write waits for "
                               "its ack wins: the next attempt, scheduled in the same write, is "
                               "abandoned") {
  model_cfg.latency = 59s;
  budgets b;
  b.deadline = 60s;
  define(definition_builder{"race"}
           .agent("a", "asker", policy(5min, 1)).on("ok", "b").on("exhausted", "done")
           .agent("b", "asker", policy(5min, 1)).on("ok", "done").on("exhausted", "done")
           .on("budget", "hold")
           .gate("hold").on("approve", "done").on("reject", "done")
           .completed("done")
           .limits(b)
           .build());
  boot_held();
  auto id = start("race");
  hold(true);
  advance_time(59s); // a's reply: step_completed and b's step_scheduled wait for their ack
  sched.run();
  advance_time(1s); // the deadline fires meanwhile
  sched.run();
  hold(false);
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::parked);
  CHECK(s.node == "hold");
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "step_scheduled a#1",
                                              "step_completed a#1 ok", "step_scheduled b#1",
                                              "timer_fired workflow_deadline"});
}

TEST_CASE_METHOD(held_fixture, "regression: a status asked while a park's write waits for its "
                               "ack is answered once the park is durable and never before") {
  // troupe serve's test saw "parked" while the write was in flight, stopped
  // the runtime, which dropped the write, and its approve after the restart
  // was refused: the workflow was in backoff at the node before the gate.
  auto id = park_held_and_ask_status();
  CHECK_FALSE(answer());
  hold(false);
  auto m = answer();
  REQUIRE(m);
  CHECK(static_cast<workflow_status>(m->status) == workflow_status::parked);
  CHECK(m->node == "g");
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "step_scheduled a#1",
                                              "step_completed a#1 ok"});
}

TEST_CASE_METHOD(held_fixture, "a status ask waiting for an ack is answered from the journal "
                               "when the write fails") {
  park_held_and_ask_status();
  store->failing = true;
  hold(false);
  auto m = answer();
  REQUIRE(m);
  CHECK(m->node == "a"); // the journal's: step_scheduled a#1 is the last it has
}

TEST_CASE_METHOD(fixture, "regression: after a signal, await(or_parked) waits for the next park "
                          "instead of answering with the old one") {
  model_cfg.latency = 1s;
  define(definition_builder{"two_gates"}
           .gate("g1").on("approve", "a").on("reject", "done")
           .agent("a", "asker", policy(5s, 1)).on("ok", "g2").on("exhausted", "done")
           .gate("g2").on("approve", "done").on("reject", "done")
           .completed("done")
           .build());
  boot();
  auto id = start("two_gates");
  REQUIRE(!signal(id, "g1", "approve"));
  self->send(manager, await_atom::value, id, true, uint64_t{0});
  sched.run();
  bool early = false;
  self->receive([&](info_msg&) { early = true; }, caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK_FALSE(early); // running: a is waiting for the model
  advance_time(1s);
  sched.run();
  std::string node;
  self->receive([&](info_msg& m) { node = m.node; }, caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(node == "g2");
}

TEST_CASE_METHOD(fixture, "a timed-out attempt's tokens count against the workflow") {
  model_cfg.latency = 2s; // the second call would answer at 4 s, past the 3 s timeout
  define(definition_builder{"slow_pair"}
           .agent("a", "twice", policy(3s, 1)).on("ok", "done").on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("slow_pair");
  advance_time(2s);
  sched.run();
  advance_time(1s);
  sched.run();
  auto failed = std::get<kernel::step_failed>(events(id).back());
  CHECK(failed.kind == failure_kind::timeout);
  CHECK(failed.reason == "no outcome within 3000 ms");
  CHECK(failed.tokens == count_tokens("first") + count_tokens(R"({"v": 1})"));
  CHECK(status(id).tokens == failed.tokens);
}

TEST_CASE_METHOD(fixture, "an await that runs out of time is answered await_timeout and forgotten") {
  define(definition_builder{"waits"}
           .gate("g").on("approve", "done").on("reject", "done")
           .completed("done")
           .build());
  boot();
  auto id = start("waits");
  self->send(manager, await_atom::value, id, false, uint64_t{5000});
  sched.run();
  CHECK(advance_time(5s) == 1);
  sched.run();
  caf::error got;
  self->receive([](info_msg&) {}, [&](caf::error& e) { got = e; },
                caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(is(got, errc::await_timeout));
  REQUIRE(!signal(id, "g", "approve"));
  bool stray = false; // the expired waiter must not be answered again
  self->receive([&](info_msg&) { stray = true; }, caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK_FALSE(stray);
}

TEST_CASE_METHOD(fixture, "a journal writer that dies stops its workflows with "
                          "journal_write_failed, not a hang") {
  model_cfg.latency = 1s;
  define(retry_then_gate("asker").build());
  boot();
  auto id = start("retry");
  caf::anon_send_exit(journal, caf::exit_reason::kill);
  sched.run();
  advance_time(1s); // the model answers; the write of step_completed has no writer
  sched.run();
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.outcome == "journal_write_failed");
  CHECK(s.reason.find("request_receiver_down") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "an attempt whose agent's runners have stopped fails as crashed and is "
                          "routed like any crash") {
  define(retry_then_gate("asker").build());
  boot();
  // A workflow spawned over a pool already stopped (the manager stops its
  // pool only after every workflow is down, so this is the guard's case).
  auto runners = std::make_shared<agent_runners>(sys, model, journal, 1);
  runners->stop();
  workflow_env env;
  env.def = reg->find_definition("retry");
  env.agents = reg->agents();
  env.runners = runners;
  env.journal = journal;
  env.model = model;
  env.timers = timers;
  workflow_row row;
  row.id = "retry-orphan";
  row.definition = "retry";
  row.version = env.def->version;
  auto wf = spawn_workflow(sys, env, row, nlohmann::json::object(), 1);
  sched.run();
  while (trigger_timeout()) // the retries' backoff
    sched.run();
  CHECK(trace(row.id) == std::vector<std::string>{
                           "workflow_started", "step_scheduled a#1", "step_failed a#1 crashed",
                           "timer_fired retry_backoff", "step_scheduled a#2",
                           "step_failed a#2 crashed", "timer_fired retry_backoff",
                           "step_scheduled a#3", "step_failed a#3 crashed"});
  auto failed = std::get<kernel::step_failed>(events(row.id).at(2));
  CHECK_THAT(failed.reason, Catch::Contains("agent runners stopped"));
  caf::anon_send_exit(wf, caf::exit_reason::user_shutdown);
  sched.run();
}

namespace {

/// Records every webhook a workflow asks for: (url, JSON body).
struct posted {
  std::vector<std::pair<std::string, nlohmann::json>> all;
};

caf::behavior recording_notifier(caf::event_based_actor*, std::shared_ptr<posted> log) {
  return {
    [log](notify_atom, const std::string& url, const std::string& body) {
      log->all.emplace_back(url, nlohmann::json::parse(body));
    },
  };
}

definition escalating() {
  gate_policy g;
  g.notify_url = "http://hooks.example/approve";
  g.deadline = 10min;
  g.remind_after = 4min;
  g.reminders = 5; // only 2 fit before the deadline
  return *definition_builder{"escalating"}
            .gate("first", g).on("approve", "done").on("reject", "no").on("timeout", "boss")
            .gate("boss").on("approve", "done").on("reject", "no")
            .completed("done")
            .failed("no")
            .build();
}

} // namespace

TEST_CASE_METHOD(fixture, "a parked gate reminds at its times and escalates at its deadline, "
                          "woken from the journal each time") {
  auto log = std::make_shared<posted>();
  notifier = sys.spawn(recording_notifier, log);
  define(escalating());
  boot();
  auto id = start("escalating");
  CHECK(static_cast<workflow_status>(status(id).status) == workflow_status::parked);
  REQUIRE(log->all.size() == 1); // parked: told once
  CHECK(log->all[0].second.count("reminder") == 0);
  CHECK(advance_time(4min - 1ns) == 0);
  advance_time(1ns); // the manager wakes the passive workflow; its reminder fires
  sched.run();
  REQUIRE(log->all.size() == 2);
  CHECK(log->all[1].first == "http://hooks.example/approve");
  CHECK(log->all[1].second.at("reminder") == 1);
  CHECK(log->all[1].second.at("text").get<std::string>().find("troupe: reminder: workflow " + id
                                                               + " (escalating) still waits "
                                                                 "at gate 'first'")
        == 0);
  advance_time(4min);
  sched.run();
  REQUIRE(log->all.size() == 3);
  CHECK(log->all[2].second.at("reminder") == 2);
  advance_time(2min); // 10 min: no decision
  sched.run();
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::parked);
  CHECK(s.node == "boss");
  CHECK(s.reason == "gate 'first': no decision within 600000 ms");
  CHECK(log->all.size() == 3); // boss has no webhook
  CHECK(trace(id) == std::vector<std::string>{"workflow_started", "timer_fired gate_reminder",
                                              "timer_fired gate_reminder",
                                              "timer_fired gate_deadline"});
  CHECK(is(signal(id, "first", "approve"), errc::bad_signal)); // too late for that gate
  REQUIRE_FALSE(signal(id, "boss", "approve"));
  CHECK(static_cast<workflow_status>(status(id).status) == workflow_status::completed);
}

TEST_CASE_METHOD(fixture, "a decision before the deadline cancels the reminders and the "
                          "deadline") {
  auto log = std::make_shared<posted>();
  notifier = sys.spawn(recording_notifier, log);
  define(escalating());
  boot();
  auto id = start("escalating");
  advance_time(1min);
  sched.run();
  REQUIRE_FALSE(signal(id, "first", "reject"));
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.outcome == "reject");
  advance_time(20min);
  sched.run();
  CHECK(log->all.size() == 1); // no reminder after the decision
  CHECK(trace(id).back() == "signal_received first reject");
}

TEST_CASE_METHOD(fixture, "a workflow actor that keeps crashing is rebuilt from the journal, "
                          "then dead-lettered past the restart intensity") {
  model_cfg.latency = 1h; // each attempt is still running when its actor dies
  define(definition_builder{"slow"}
           .agent("a", "asker", policy(2h, 10)).on("ok", "done")
           .completed("done")
           .build());
  boot();
  auto id = start("slow");
  auto kill_it = [&] {
    auto actors = live->all();
    REQUIRE(actors.size() == 1);
    caf::anon_send_exit(actors[0], caf::exit_reason::kill);
    sched.run();
    return actors[0];
  };
  for (int crash = 1; crash <= 3; ++crash) {
    INFO("crash " << crash);
    auto old = kill_it();
    auto s = status(id);
    CHECK(static_cast<workflow_status>(s.status) == workflow_status::running);
    REQUIRE(live->all().size() == 1);
    CHECK(live->all()[0] != old); // a new actor, from the journal
  }
  // the interrupted attempt was failed as crashed after the first restart
  CHECK(trace(id)[2] == "step_failed a#1 crashed");
  kill_it(); // the fourth within a minute: restart intensity 3 is passed
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::dead_lettered);
  CHECK(s.outcome == "crashed");
  CHECK(s.reason.find("its actor crashed 4 times within 60 s: ") == 0);
  CHECK(trace(id).back() == "workflow_crashed");
  CHECK(live->all().empty()); // passive in dead letter
  auto dead = store->dead_letters();
  REQUIRE(dead);
  REQUIRE(dead->size() == 1);
  CHECK(dead->front().outcome == "crashed");
  auto text = metrics->text({});
  CHECK(sample(text, R"(troupe_restarts_total{what="workflow"})") == 3);
  CHECK(sample(text, R"(troupe_workflows_ended_total{status="dead_lettered"})") == 1);
  // an operator's retry runs it again
  REQUIRE_FALSE(signal(id, "", signal_msg::dlq_retry));
  CHECK(static_cast<workflow_status>(status(id).status) == workflow_status::running);
  CHECK(trace(id).back() == "step_scheduled a#1");
}
