// Recovery, passivation, idempotency and effects under deterministic time.
// A "restart" stops every actor of the runtime (nothing is written on the
// way down) and boots new ones over the same journal store, then recovers.
#include <set>

#include "actors/actor_fixture.hpp"
#include "persistence/recovery.hpp"

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

// Every effect function call, in order (agents run on the test's only thread).
std::vector<std::string> effect_calls;

// A store that counts calls and can corrupt one workflow's events on read.
class counting_journal : public flaky_journal {
public:
  using flaky_journal::flaky_journal;
  mutable size_t records_read = 0;
  mutable size_t rows_read = 0;
  size_t appends = 0;
  std::string corrupt_workflow;
  caf::error append(std::vector<journal_write>& batch) override {
    ++appends;
    return flaky_journal::append(batch);
  }
  caf::expected<std::vector<journal_record>> read(const std::string& id,
                                                  uint64_t after) const override {
    auto r = flaky_journal::read(id, after);
    if (r) {
      records_read += r->size();
      if (id == corrupt_workflow && !r->empty())
        r->back().payload = "{not json";
    }
    return r;
  }
  caf::expected<workflow_row> workflow(const std::string& id) const override {
    ++rows_read;
    return flaky_journal::workflow(id);
  }
  bool keys_failing = false;
  caf::expected<std::string> find_key(const std::string& key) const override {
    if (keys_failing)
      return make_error(errc::journal_unusable, "injected: cannot read keys");
    return flaky_journal::find_key(key);
  }
};

struct fixture : actor_fixture {
  std::shared_ptr<counting_journal> counted =
    std::make_shared<counting_journal>(make_memory_journal());

  fixture() {
    effect_calls.clear();
    store = counted;
    model_cfg.rules["json"] = [](const llm_request&) { return std::string{R"({"v": 1})"}; };
    REQUIRE(!reg->add_agent("asker", make_agent(json_asker)));
    // Charges a card once per visit, then asks the model (which may be slow).
    REQUIRE(!reg->add_agent("charger", make_agent([](step_context& ctx) {
      ctx.effect(
        "charge",
        [](const std::string& key) {
          effect_calls.push_back(key);
          return nlohmann::json{{"receipt", "r-" + std::to_string(effect_calls.size())}};
        },
        [](step_context& c, caf::expected<nlohmann::json> receipt) {
          if (!receipt)
            return c.fail(failure_kind::crashed, describe(receipt.error()));
          llm_request req;
          req.script = "json";
          req.messages.push_back({"user", "charged"});
          auto r = *receipt;
          ask_json(c, req, [r](step_context& c, nlohmann::json) {
            step_outcome o;
            o.patch = {{"receipt", r["receipt"]}};
            c.finish(o);
          });
        });
    })));
    // Records its effect, then throws on the first attempt.
    REQUIRE(!reg->add_agent("charge_then_throw", make_agent([](step_context& ctx) {
      ctx.effect(
        "charge",
        [](const std::string& key) {
          effect_calls.push_back(key);
          return nlohmann::json{{"receipt", "r-" + std::to_string(effect_calls.size())}};
        },
        [](step_context& c, caf::expected<nlohmann::json> receipt) {
          if (c.attempt() == 1)
            throw std::runtime_error("crash after the charge");
          step_outcome o;
          o.patch = {{"receipt", (*receipt)["receipt"]}};
          c.finish(o);
        });
    })));
  }

  void define(caf::expected<definition> d) {
    REQUIRE(d);
    REQUIRE(!reg->add_definition(std::move(*d)));
  }

  /// Stops every actor (no writes on the way down) and boots new ones over
  /// the same store: what a killed process sees when it starts again.
  recovery_report restart() {
    caf::anon_send_exit(manager, caf::exit_reason::user_shutdown);
    sched.run();
    for (auto& a : {model, journal, timers})
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched.run();
    boot();
    auto rep = call<recovery_report>(recover_atom::value);
    REQUIRE(rep);
    return *rep;
  }

  workflow_status status_of(const std::string& id) {
    return static_cast<workflow_status>(status(id).status);
  }

  size_t running_actors() { return sys.registry().running(); }

  /// Runs messages and fires timers one by one, in time order, until the
  /// workflow finishes (or nothing is left to fire).
  void run_to_end(const std::string& id) {
    sched.run();
    for (int i = 0; i < 50; ++i) {
      auto s = status_of(id);
      if (s == workflow_status::completed || s == workflow_status::failed)
        return;
      if (!sched.trigger_timeout())
        return;
      sched.run();
    }
  }
};

auto two_steps(const char* agent = "asker", uint32_t attempts = 3) {
  return definition_builder{"pair"}
    .agent("a", agent, policy(10s, attempts)).on("ok", "b").on("exhausted", "gave_up")
    .agent("b", "asker", policy(10s, attempts)).on("ok", "done").on("exhausted", "gave_up")
    .completed("done")
    .failed("gave_up")
    .build();
}

auto gate_then_step() {
  return definition_builder{"approval"}
    .gate("review").on("approve", "a").on("reject", "rejected")
    .agent("a", "asker", policy(10s, 1)).on("ok", "done").on("exhausted", "rejected")
    .completed("done")
    .failed("rejected")
    .build();
}

} // namespace

TEST_CASE_METHOD(fixture, "an attempt running when the process died fails as crashed at "
                          "recovery and its retry runs, and completed steps never run again") {
  model_cfg.latency = 5s;
  define(two_steps());
  boot();
  auto id = start("pair");
  advance_time(5s); // a completes; b#1 is waiting for the model
  sched.run();
  REQUIRE(trace(id).back() == "step_scheduled b#1");
  auto rep = restart();
  CHECK(rep.resumed == 1);
  CHECK(rep.parked == 0);
  CHECK(rep.quarantined.empty());
  auto failed = std::get<kernel::step_failed>(events(id).back());
  CHECK(failed.node == "b");
  CHECK(failed.kind == failure_kind::crashed);
  CHECK(failed.reason == "interrupted: the runtime stopped during attempt 1");
  run_to_end(id);
  CHECK(status_of(id) == workflow_status::completed);
  CHECK(trace(id) == std::vector<std::string>{
                       "workflow_started", "step_scheduled a#1", "step_completed a#1 ok",
                       "step_scheduled b#1", "step_failed b#1 crashed",
                       "timer_fired retry_backoff", "step_scheduled b#2",
                       "step_completed b#2 ok"});
}

TEST_CASE_METHOD(fixture, "attempt counts survive restarts: a step that dies with the process "
                          "every time exhausts its retries and takes its exhausted route") {
  model_cfg.latency = 5s;
  define(two_steps("asker", 2));
  boot();
  auto id = start("pair");
  restart(); // a#1 interrupted
  sched.trigger_timeout(); // backoff: a#2 starts
  sched.run();
  REQUIRE(trace(id).back() == "step_scheduled a#2");
  restart(); // a#2 interrupted: the last attempt
  sched.run();
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.node == "gave_up");
  CHECK(s.outcome == "exhausted");
  auto row = store->workflow(id);
  REQUIRE(row);
  CHECK(row->status == "failed");
  auto open = store->open_workflows();
  REQUIRE(open);
  CHECK(open->empty());
  CHECK(s.reason.find("interrupted") != std::string::npos);
  // routed to a failed terminal: ended by the definition, not dead-lettered
  auto dead = store->dead_letters();
  REQUIRE(dead);
  CHECK(dead->empty());
}

TEST_CASE_METHOD(fixture, "a retry timer is re-armed at its journaled instant after a restart") {
  model_cfg.fail_rate = 1.0; // every call fails: crashed, retried after backoff
  define(two_steps("asker", 3));
  boot();
  auto id = start("pair");
  auto evs = events(id);
  REQUIRE(std::holds_alternative<kernel::step_failed>(evs.back()));
  auto wf = persistence::load_workflow(*store, *reg->find_definition("pair"), id);
  REQUIRE(wf);
  REQUIRE(wf->state.at == kernel::phase::backoff);
  auto due = std::prev(wf->state.timers.end())->second.fire_at;
  restart();
  auto before = trace(id).size();
  auto wait = due - now();
  REQUIRE(wait > 0ns);
  advance_time(wait - 1ns);
  sched.run();
  CHECK(trace(id).size() == before); // not a nanosecond early
  advance_time(1ns);
  sched.run();
  CHECK(trace(id).at(before) == "timer_fired retry_backoff");
}

TEST_CASE_METHOD(fixture, "a workflow parked at a gate has no actor, survives a restart parked, "
                          "and a signal wakes it from the journal") {
  define(gate_then_step());
  boot();
  auto baseline = running_actors();
  std::vector<std::string> ids;
  for (int i = 0; i < 20; ++i)
    ids.push_back(start("approval"));
  sched.run();
  CHECK(running_actors() == baseline); // 20 parked workflows, no actors
  for (auto& id : ids)
    CHECK(status_of(id) == workflow_status::parked);
  auto rep = restart();
  CHECK(rep.parked == 20);
  CHECK(rep.resumed == 0);
  CHECK(running_actors() == baseline);
  REQUIRE(!signal(ids[3], "review", "approve"));
  sched.run();
  CHECK(status_of(ids[3]) == workflow_status::completed);
  CHECK(status_of(ids[4]) == workflow_status::parked);
  auto woken = running_actors();
  CHECK(woken == baseline + 1); // the step's agent runner, shared by every workflow
  CHECK(is(signal(ids[5], "nope", "approve"), errc::bad_signal));
  sched.run();
  CHECK(running_actors() == woken); // the refused signal left it passive again
}

TEST_CASE_METHOD(fixture, "a passive workflow's deadline wakes it from the journal on time") {
  budgets b;
  b.deadline = 1h;
  define(definition_builder{"timed"}
           .gate("review").on("approve", "done").on("reject", "done").on("budget", "late")
           .completed("done")
           .failed("late")
           .limits(b)
           .build());
  boot();
  auto id = start("timed");
  auto baseline = running_actors();
  restart();
  advance_time(1h - 1ns);
  sched.run();
  CHECK(status_of(id) == workflow_status::parked);
  advance_time(1ns);
  sched.run();
  auto s = status(id);
  CHECK(static_cast<workflow_status>(s.status) == workflow_status::failed);
  CHECK(s.node == "late");
  CHECK(running_actors() <= baseline);
}

TEST_CASE_METHOD(fixture, "a signal that reaches a workflow as it passivates is re-sent to a "
                          "woken one, not lost") {
  define(definition_builder{"two_gates"}
           .gate("g1").on("approve", "g2").on("reject", "done")
           .gate("g2").on("approve", "done").on("reject", "done")
           .completed("done")
           .build());
  boot();
  auto id = start("two_gates");
  REQUIRE(status_of(id) == workflow_status::parked);
  // Route approve@g1 (wakes the workflow) and stop once its write is in the
  // store: the ack is in the workflow's mailbox, it has not run yet.
  self->send(manager, signal_atom::value, signal_msg{id, "g1", "approve", "", "tester"});
  auto appends = counted->appends;
  while (counted->appends == appends)
    REQUIRE(sched.try_run_once());
  // The next signal reaches the manager before the workflow's "passive" news:
  // the manager routes it to the actor that is about to quit.
  self->send(manager, signal_atom::value, signal_msg{id, "g2", "approve", "", "tester"});
  sched.run();
  int answered = 0;
  for (int i = 0; i < 2; ++i)
    self->receive([&]() { ++answered; }, [&](caf::error& e) { FAIL(describe(e)); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(answered == 2);
  CHECK(status_of(id) == workflow_status::completed);
}

TEST_CASE_METHOD(fixture, "an idempotency key returns the same workflow across restarts, "
                          "and its result once done") {
  define(gate_then_step());
  boot();
  auto first = call<std::string>(start_atom::value, std::string{"approval"}, std::string{"{}"},
                                 std::string{"order-7"});
  REQUIRE(first);
  restart();
  auto again = call<std::string>(start_atom::value, std::string{"approval"}, std::string{"{}"},
                                 std::string{"order-7"});
  REQUIRE(again);
  CHECK(*again == *first);
  REQUIRE(!signal(*first, "review", "approve"));
  sched.run();
  restart();
  auto third = call<std::string>(start_atom::value, std::string{"approval"}, std::string{"{}"},
                                 std::string{"order-7"});
  REQUIRE(third);
  CHECK(*third == *first);
  auto done = call<info_msg>(await_atom::value, *first, false, uint64_t{0});
  REQUIRE(done);
  CHECK(static_cast<workflow_status>(done->status) == workflow_status::completed);
  CHECK(nlohmann::json::parse(done->state_json).at("a") == nlohmann::json{{"v", 1}});
  auto other = call<std::string>(start_atom::value, std::string{"approval"}, std::string{"{}"},
                                 std::string{"order-8"});
  REQUIRE(other);
  CHECK(*other != *first);
}

TEST_CASE_METHOD(fixture, "a workflow whose journal does not decode is quarantined at recovery "
                          "and the others go on") {
  model_cfg.latency = 5s;
  define(two_steps());
  boot();
  auto bad = start("pair");
  auto good = start("pair");
  counted->corrupt_workflow = bad;
  auto rep = restart();
  CHECK(rep.resumed == 1);
  REQUIRE(rep.quarantined.size() == 1);
  CHECK(rep.quarantined[0].rfind(bad + ": journal_corrupt", 0) == 0);
  auto st = call<info_msg>(status_atom::value, bad);
  CHECK(is(st.error(), errc::journal_corrupt));
  CHECK(describe(st.error()).find("quarantined") != std::string::npos);
  run_to_end(good);
  CHECK(status_of(good) == workflow_status::completed);
  CHECK(store->workflow(bad)->status == "running"); // left as the journal has it
}

TEST_CASE_METHOD(fixture, "a workflow whose definition is not registered after a restart is "
                          "quarantined, not guessed at") {
  define(gate_then_step());
  boot();
  auto id = start("approval");
  reg = std::make_shared<registry>(); // the new process registers nothing
  auto rep = restart();
  REQUIRE(rep.quarantined.size() == 1);
  CHECK(rep.quarantined[0].find("definition 'approval' is not registered")
        != std::string::npos);
  CHECK(is(signal(id, "review", "approve"), errc::journal_corrupt));
}

TEST_CASE_METHOD(fixture, "with snapshots, recovery replays only the events after the latest") {
  snapshot_every = 4;
  model_cfg.latency = 5s;
  define(definition_builder{"long"}
           .agent("a", "asker", policy(10s, 1)).on("ok", "b").on("exhausted", "gave_up")
           .agent("b", "asker", policy(10s, 1)).on("ok", "c").on("exhausted", "gave_up")
           .agent("c", "asker", policy(10s, 2)).on("ok", "done").on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("long");
  advance_time(5s);
  sched.run();
  advance_time(5s);
  sched.run(); // 6 events: started, a sched/done, b sched/done, c sched
  auto snap = store->snapshot(id);
  REQUIRE(snap);
  REQUIRE(snap->size() == 1);
  CHECK(snap->front().wf_seq == 4);
  counted->records_read = 0;
  restart();
  CHECK(counted->records_read == 2); // events 5 and 6, not all six
  run_to_end(id);
  CHECK(status_of(id) == workflow_status::completed);
}

TEST_CASE_METHOD(fixture, "an effect journaled before a crash of its attempt is not done again "
                          "by the retry, which gets the recorded result") {
  define(definition_builder{"pay"}
           .agent("charge", "charge_then_throw", policy(10s, 2)).on("ok", "done")
           .on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("pay");
  run_to_end(id); // the backoff after attempt 1 threw, then attempt 2
  CHECK(status_of(id) == workflow_status::completed);
  REQUIRE(effect_calls.size() == 1);
  CHECK(effect_calls[0] == id + "/charge#1/charge");
  CHECK(nlohmann::json::parse(status(id).state_json).at("receipt") == "r-1");
  auto rec = store->effect(effect_calls[0]);
  REQUIRE(rec);
  REQUIRE(rec->size() == 1);
  CHECK(rec->front().result == R"({"receipt":"r-1"})");
}

TEST_CASE_METHOD(fixture, "an effect journaled before the process died is not done again after "
                          "recovery") {
  model_cfg.latency = 5s;
  define(definition_builder{"pay"}
           .agent("charge", "charger", policy(10s, 3)).on("ok", "done").on("exhausted", "gave_up")
           .completed("done")
           .failed("gave_up")
           .build());
  boot();
  auto id = start("pay");
  REQUIRE(effect_calls.size() == 1); // charged; now waiting for the model
  restart();
  run_to_end(id);
  CHECK(status_of(id) == workflow_status::completed);
  CHECK(effect_calls.size() == 1);
  CHECK(nlohmann::json::parse(status(id).state_json).at("receipt") == "r-1");
}

TEST_CASE_METHOD(fixture, "a workflow stopped by a failed journal write is resumed from the "
                          "journal by recover()") {
  model_cfg.latency = 1s;
  define(two_steps());
  boot();
  auto id = start("pair");
  store->failing = true;
  advance_time(1s);
  sched.run();
  store->failing = false;
  auto s = status(id);
  REQUIRE(s.outcome == "journal_write_failed");
  auto rep = call<recovery_report>(recover_atom::value);
  REQUIRE(rep);
  CHECK(rep->resumed == 1);
  run_to_end(id);
  CHECK(status_of(id) == workflow_status::completed);
}

TEST_CASE_METHOD(fixture, "regression: a restarted process with the same random seed does not "
                          "reuse the id of a finished workflow that only the journal holds") {
  define(gate_then_step());
  boot();
  auto first = start("approval");
  REQUIRE(!signal(first, "review", "approve"));
  sched.run();
  REQUIRE(status_of(first) == workflow_status::completed);
  boots = 0; // the next boot draws ids from the same seed as the first
  restart();
  auto second = start("approval");
  CHECK(second != first);
  CHECK(status_of(second) == workflow_status::parked);
  CHECK(status_of(first) == workflow_status::completed);
}

TEST_CASE_METHOD(fixture, "start() answers only once the workflow_started event is in the "
                          "journal, so an id it returns survives a crash right after") {
  define(gate_then_step());
  boot();
  self->send(manager, start_atom::value, std::string{"approval"}, std::string{"{}"},
             std::string{});
  std::string id;
  size_t steps = 0;
  while (id.empty() && sched.try_run_once()) {
    ++steps;
    self->receive([&](std::string& x) { id = x; },
                  caf::after(std::chrono::seconds(0)) >> [] {});
  }
  REQUIRE(!id.empty());
  CHECK(steps > 1); // the reply waited for the workflow's write
  auto row = store->workflow(id);
  REQUIRE(row);
  auto records = store->read(id);
  REQUIRE(records);
  REQUIRE(!records->empty());
  CHECK(records->front().wf_seq == 1);
  CHECK(records->front().kind == "workflow_started");
}

TEST_CASE_METHOD(fixture, "a start whose first journal write fails returns "
                          "journal_write_failed and leaves no workflow behind") {
  define(gate_then_step());
  boot();
  store->failing = true;
  auto id = call<std::string>(start_atom::value, std::string{"approval"}, std::string{"{}"},
                              std::string{"order-1"});
  REQUIRE(!id);
  CHECK(is(id.error(), errc::journal_write_failed));
  CHECK(describe(id.error()).find("did not start") != std::string::npos);
  store->failing = false;
  auto open = store->open_workflows();
  REQUIRE(open);
  CHECK(open->empty());
  // the key was not taken: the caller's retry starts the workflow
  auto again = call<std::string>(start_atom::value, std::string{"approval"}, std::string{"{}"},
                                 std::string{"order-1"});
  REQUIRE(again);
  CHECK(status_of(*again) == workflow_status::parked);
}

TEST_CASE_METHOD(fixture, "two starts with one key before the first is durable both get its id "
                          "once it is") {
  define(gate_then_step());
  boot();
  for (int i = 0; i < 2; ++i)
    self->send(manager, start_atom::value, std::string{"approval"}, std::string{"{}"},
               std::string{"order-2"});
  sched.run();
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i)
    self->receive([&](std::string& x) { ids.push_back(x); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
  REQUIRE(ids.size() == 2);
  CHECK(ids[0] == ids[1]);
  auto open = store->open_workflows();
  REQUIRE(open);
  CHECK(open->size() == 1);
}

TEST_CASE_METHOD(fixture, "under a clock that stands still, ids stay unique and move on to "
                          "the next ms after 4096 of them") {
  define(gate_then_step());
  boot();
  // The test clock does not move: every start reads the same ms.
  std::vector<std::string> ids;
  for (int i = 0; i < 4102; ++i)
    self->send(manager, start_atom::value, std::string{"approval"}, std::string{"{}"},
               std::string{});
  sched.run();
  bool more = true;
  while (more)
    self->receive([&](std::string& id) { ids.push_back(id); },
                  caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
  REQUIRE(ids.size() == 4102);
  auto ms_of = [](const std::string& id) { return id.substr(id.size() - 20, 12); };
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(unique.size() == ids.size());
  std::set<std::string> ms;
  for (auto& id : ids)
    ms.insert(ms_of(id));
  CHECK(ms.size() == 2); // 4096 ids in the clock's ms, the rest in the next
}

TEST_CASE_METHOD(fixture, "starts whose key the journal cannot look up get the error and "
                          "start nothing, and the key works once the journal does") {
  define(gate_then_step());
  boot();
  counted->keys_failing = true;
  for (int i = 0; i < 2; ++i) // the second joins the first's lookup
    self->send(manager, start_atom::value, std::string{"approval"}, std::string{"{}"},
               std::string{"order-4"});
  sched.run();
  for (int i = 0; i < 2; ++i) {
    caf::error err;
    self->receive([&](std::string&) { FAIL("started without knowing the key is new"); },
                  [&](caf::error& e) { err = e; },
                  caf::after(std::chrono::seconds(0)) >> [] { FAIL("start never answered"); });
    CHECK(is(err, errc::journal_unusable));
  }
  CHECK(store->open_workflows()->empty());
  counted->keys_failing = false;
  auto id = call<std::string>(start_atom::value, std::string{"approval"}, std::string{"{}"},
                              std::string{"order-4"});
  REQUIRE(id);
  CHECK(store->find_key("order-4").value() == *id);
}

TEST_CASE_METHOD(fixture, "workflow ids lead with their start time, so later workflows sort "
                          "after earlier ones in the journal's index") {
  define(gate_then_step());
  boot();
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    ids.push_back(start("approval"));
    advance_time(1ms);
  }
  for (auto& id : ids)
    CHECK(id.size() == std::string{"approval-"}.size() + 20);
  CHECK(std::is_sorted(ids.begin(), ids.end()));
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
}

TEST_CASE_METHOD(fixture, "a restarted process with the same random seed and clock mints ids "
                          "the journal has never seen, without reading it per start") {
  define(gate_then_step());
  boot();
  std::vector<std::string> first;
  for (int i = 0; i < 3; ++i)
    first.push_back(start("approval"));
  boots = 0; // the next boot draws the same random numbers as the first
  restart();   // and the test clock has not moved
  auto reads = counted->rows_read;
  std::vector<std::string> second;
  for (int i = 0; i < 3; ++i)
    second.push_back(start("approval"));
  CHECK(counted->rows_read == reads); // starting reads no workflow row
  for (auto& id : second) {
    CHECK(std::find(first.begin(), first.end(), id) == first.end());
    CHECK(id > first.back()); // later than every row of the journal
    CHECK(status_of(id) == workflow_status::parked);
  }
}

TEST_CASE_METHOD(fixture, "a workflow that just finished is answered from memory without a "
                          "journal read, until a purge removes it from the journal") {
  define(gate_then_step());
  boot();
  auto id = start("approval");
  REQUIRE(!signal(id, "review", "approve"));
  sched.run();
  auto reads = counted->rows_read;
  auto done = call<info_msg>(await_atom::value, id, false, uint64_t{0});
  REQUIRE(done);
  CHECK(static_cast<workflow_status>(done->status) == workflow_status::completed);
  CHECK(status(id).outcome == done->outcome);
  CHECK(counted->rows_read == reads); // answered from the manager's memory
  advance_time(1s);
  auto purged = call<uint64_t>(purge_atom::value, now().count());
  REQUIRE(purged);
  CHECK(*purged == 1);
  auto gone = call<info_msg>(status_atom::value, id);
  REQUIRE(!gone);
  CHECK(is(gone.error(), errc::unknown_workflow));
  CHECK(counted->rows_read == reads + 1); // forgotten by the purge: asked the journal
}

TEST_CASE_METHOD(fixture, "a start still waiting for its first write when the runtime stops "
                          "answers shutting_down, and its key tells later whether it landed") {
  define(gate_then_step());
  boot();
  self->send(manager, start_atom::value, std::string{"approval"}, std::string{"{}"},
             std::string{"order-9"});
  REQUIRE(sched.try_run_once()); // the manager takes the start; the write is not done
  caf::anon_send_exit(manager, caf::exit_reason::user_shutdown);
  sched.run();
  caf::error err;
  self->receive([&](std::string&) { FAIL("start answered with an id after the stop"); },
                [&](caf::error& e) { err = e; },
                caf::after(std::chrono::seconds(0)) >> [] { FAIL("start never answered"); });
  CHECK(is(err, errc::shutting_down));
  auto key = store->find_key("order-9");
  REQUIRE(key);
  if (!key->empty()) { // the write landed before the workflow stopped
    auto row = store->workflow(*key);
    CHECK(row);
  }
}

// Regression: the manager waited forever for a down message it had
// demonitored, and the runtime's shutdown hung.
TEST_CASE_METHOD(fixture, "the manager stops even when a workflow passivates as the stop "
                          "arrives") {
  define(gate_then_step());
  boot();
  auto baseline = running_actors();
  self->send(manager, start_atom::value, std::string{"approval"}, std::string{"{}"},
             std::string{});
  // Run until the workflow has parked and quit: its last status (passive)
  // and its down message now wait in the manager's mailbox, unread.
  bool spawned = false;
  while (sched.try_run_once()) {
    if (running_actors() > baseline)
      spawned = true;
    else if (spawned)
      break;
  }
  REQUIRE(spawned);
  REQUIRE(running_actors() == baseline);
  // The stop overtakes them (exit messages are urgent): the manager still
  // counts the workflow as live when it starts stopping.
  self->monitor(manager);
  manager->enqueue(nullptr, caf::make_message_id(caf::message_priority::high),
                   caf::make_message(caf::exit_msg{manager.address(),
                                                   caf::exit_reason::user_shutdown}),
                   nullptr);
  sched.run();
  bool down = false;
  self->receive([&](caf::down_msg& dm) { down = dm.source == manager.address(); },
                caf::after(std::chrono::seconds(0)) >> [] {});
  CHECK(down);
}
