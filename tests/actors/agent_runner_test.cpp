// Agent runners under deterministic time: an attempt reports once, a
// cancelled one never does, and a runner that stops mid-attempt reports its
// attempts crashed and is replaced on the next pick.
#include "actors/actor_fixture.hpp"

#include "actors/agent_actor.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

namespace {

struct fixture : actor_fixture {
  agent_ptr impl = make_agent(json_asker); ///< its model answers after 1 s
  std::unique_ptr<agent_runners> runners;

  fixture() {
    model_cfg.latency = 1s;
    model_cfg.rules["json"] = [](const llm_request&) { return std::string{R"({"v": 1})"}; };
    boot();
    runners = std::make_unique<agent_runners>(sys, model, journal, 2);
  }

  ~fixture() {
    runners->stop();
    sched.run();
  }

  step_input input(uint64_t token) {
    step_input in;
    in.workflow_id = "wf";
    in.node = "ask";
    in.agent = "asker";
    in.attempt = 1;
    in.token = token;
    in.key = "wf/ask#1";
    in.state = nlohmann::json::object();
    return in;
  }

  /// Everything in the test actor's mailbox: reports and usage messages.
  struct inbox {
    std::vector<agent_report> reports;
    size_t usage = 0;
  };
  inbox drain() {
    inbox got;
    bool more = true;
    while (more)
      self->receive([&](agent_report& r) { got.reports.push_back(std::move(r)); },
                    [&](usage_atom, uint64_t, uint64_t, uint64_t) { ++got.usage; },
                    caf::after(std::chrono::seconds(0)) >> [&] { more = false; });
    return got;
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "a runner runs attempts side by side and each reports once") {
  auto r = runners->pick("asker", impl, 1);
  REQUIRE(r);
  self->send(r, run_atom::value, input(1));
  self->send(r, run_atom::value, input(2));
  sched.run();
  CHECK(drain().reports.empty()); // both wait for the model
  advance_time(1s);
  sched.run();
  auto got = drain();
  REQUIRE(got.reports.size() == 2);
  CHECK(got.usage == 2);
  for (auto& rep : got.reports) {
    CHECK(rep.ok);
    CHECK(nlohmann::json::parse(rep.patch_json) == nlohmann::json{{"ask", {{"v", 1}}}});
  }
  CHECK(got.reports[0].token + got.reports[1].token == 3);
  // the same agent and token slot: the same runner, no new actor
  CHECK(runners->pick("asker", impl, 1) == r);
}

TEST_CASE_METHOD(fixture, "a cancelled attempt never reports and its late reply is dropped") {
  auto r = runners->pick("asker", impl, 7);
  self->send(r, run_atom::value, input(7));
  self->send(r, run_atom::value, input(9));
  sched.run();
  self->send(r, cancel_atom::value, uint64_t{7});
  sched.run();
  advance_time(1s);
  sched.run();
  auto got = drain();
  REQUIRE(got.reports.size() == 1); // only the one not cancelled
  CHECK(got.reports[0].token == 9);
  CHECK(got.usage == 1);
}

TEST_CASE_METHOD(fixture, "a runner that stops mid-attempt reports it crashed and is replaced") {
  auto r = runners->pick("asker", impl, 4);
  self->send(r, run_atom::value, input(4));
  sched.run();
  caf::anon_send_exit(r, caf::exit_reason::kill);
  sched.run();
  auto got = drain();
  REQUIRE(got.reports.size() == 1);
  CHECK_FALSE(got.reports[0].ok);
  CHECK(got.reports[0].token == 4);
  CHECK(got.reports[0].kind == static_cast<uint8_t>(failure_kind::crashed));
  CHECK(got.reports[0].reason.find("agent runner stopped") != std::string::npos);
  auto fresh = runners->pick("asker", impl, 4);
  REQUIRE(fresh);
  CHECK(fresh != r);
  self->send(fresh, run_atom::value, input(5));
  advance_time(1s); // the dead runner's model reply arrives too, and goes nowhere
  sched.run();
  advance_time(1s);
  sched.run();
  got = drain();
  REQUIRE(got.reports.size() == 1);
  CHECK(got.reports[0].ok);
  CHECK(got.reports[0].token == 5);
}

TEST_CASE_METHOD(fixture, "stopped runners refuse new attempts: pick returns none") {
  auto r = runners->pick("asker", impl, 1);
  self->send(r, run_atom::value, input(1));
  sched.run();
  runners->stop();
  sched.run();
  auto got = drain();
  REQUIRE(got.reports.size() == 1); // the attempt in flight ends as crashed
  CHECK(got.reports[0].kind == static_cast<uint8_t>(failure_kind::crashed));
  CHECK_FALSE(runners->pick("asker", impl, 1));
}
