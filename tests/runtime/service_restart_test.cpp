// The runtime's service actors under their supervisor, on real threads:
// each one killed while workflows are in flight is restarted (with the
// services that depend on it), the new manager recovers the workflows from
// the journal, and every workflow finishes. An effect cut off between its
// run and its journal commit runs again under the same key (documented:
// external systems dedupe by it), so the test checks the keys, not counts.
// Nothing sleeps: waits are awaits on workflows and round trips to the
// supervisor.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "support/services.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 20000ms; // only reached when a test is broken

config test_config() {
  config cfg;
  cfg.random = seeded_random(11);
  cfg.log_level = "error";
  cfg.model.rules["echo"] = [](const llm_request& r) {
    return nlohmann::json{{"echo", r.messages.back().content}}.dump();
  };
  return cfg;
}

/// Counts each (workflow, node) effect that actually ran.
struct effect_counter {
  std::mutex mtx;
  std::map<std::string, int> runs;
};

definition flow() {
  agent_policy p;
  p.timeout = 5s;
  p.retry.max_attempts = 20; // an attempt cut off by a restart is retried
  p.retry.base_backoff = 1ms;
  p.retry.max_backoff = 5ms;
  p.retry.retryable.insert(failure_kind::crashed);
  return *definition_builder{"flow"}
            .agent("work", "worker", p).on("ok", "review").on("exhausted", "failed")
            .gate("review").on("approve", "finish").on("reject", "failed")
            .agent("finish", "worker", p).on("ok", "done").on("exhausted", "failed")
            .completed("done")
            .failed("failed")
            .build();
}

struct fixture {
  std::shared_ptr<effect_counter> effects = std::make_shared<effect_counter>();
  runtime rt{test_config()};

  fixture() {
    REQUIRE(!rt.register_agent("worker", [fx = effects](step_context& ctx) {
      llm_request req;
      req.script = "echo";
      req.messages.push_back({"user", ctx.node()});
      ask_json(ctx, req, [fx](step_context& c, nlohmann::json reply) {
        c.effect("record", [fx](const std::string& key) {
          std::lock_guard<std::mutex> guard{fx->mtx};
          ++fx->runs[key];
          return nlohmann::json{{"ok", true}};
        }, [reply](step_context& c2, caf::expected<nlohmann::json> r) {
          if (!r)
            return c2.fail(failure_kind::crashed, describe(r.error()));
          step_outcome o;
          o.patch = {{c2.node(), reply["echo"]}};
          c2.finish(o);
        });
      });
    }));
    REQUIRE(!rt.register_definition(flow()));
  }

  child_info service(const std::string& id) { return testing::service(rt, id); }

  /// Kills service `id` and waits until its supervisor has started it, and
  /// those it took along, again.
  void kill(const std::string& id) { testing::kill_service(rt, id, patience); }

  /// Runs `n` workflows to the end with `id` killed while they are in
  /// flight; every workflow completes and each step's effect ran under its
  /// one stable key.
  void survive(const std::string& id, int n = 20) {
    std::vector<std::string> ids;
    for (int i = 0; i < n; ++i) {
      auto w = rt.start("flow", {{"n", i}}, "wf-" + std::to_string(i));
      REQUIRE(w);
      ids.push_back(*w);
    }
    kill(id); // some first steps are running, some workflows are parked
    for (auto& w : ids) {
      auto parked = rt.await(w, patience, true);
      REQUIRE(parked);
      INFO(w << ": " << parked->reason);
      REQUIRE(parked->status == workflow_status::parked);
      for (int tries = 0;; ++tries) { // a signal may meet a manager restart
        auto err = rt.signal(w, "review", decision::approve("tester"));
        if (!err)
          break;
        REQUIRE(is(err, errc::interrupted));
        REQUIRE(tries < 5);
      }
    }
    for (auto& w : ids) {
      auto done = rt.await(w, patience);
      REQUIRE(done);
      INFO(w << ": " << done->reason);
      CHECK(done->status == workflow_status::completed);
      CHECK(done->state["work"] == "work");
      CHECK(done->state["finish"] == "finish");
    }
    std::lock_guard<std::mutex> guard{effects->mtx};
    std::set<std::string> expected;
    for (auto& w : ids)
      for (const char* node : {"work", "finish"})
        expected.insert(w + "/" + node + "#1/record");
    std::set<std::string> seen;
    for (auto& [key, count] : effects->runs)
      seen.insert(key);
    CHECK(seen == expected);
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "the services start under one supervisor, in dependency order",
                 "[services]") {
  auto all = rt.services();
  REQUIRE(all);
  std::vector<std::string> ids;
  for (auto& c : *all) {
    ids.push_back(c.id);
    CHECK(c.running);
    CHECK(c.started == 1);
  }
  CHECK(ids == std::vector<std::string>{"journal", "timers", "scripted", "gateway", "notifier",
                                       "manager"});
}

TEST_CASE_METHOD(fixture, "a killed journal writer is restarted and workflows in flight carry on",
                 "[services]") {
  survive("journal");
  CHECK(service("manager").started == 2); // rest_for_one took the manager along
}

TEST_CASE_METHOD(fixture, "a killed timer service is restarted and workflows in flight carry on",
                 "[services]") {
  survive("timers");
}

TEST_CASE_METHOD(fixture, "a killed scripted model is restarted and workflows in flight carry on",
                 "[services]") {
  survive("scripted");
}

TEST_CASE_METHOD(fixture, "a killed gateway is restarted and workflows in flight carry on",
                 "[services]") {
  survive("gateway");
  CHECK(service("journal").started == 1); // started before it: left alone
}

TEST_CASE_METHOD(fixture, "a killed notifier is restarted and workflows in flight carry on",
                 "[services]") {
  survive("notifier");
}

TEST_CASE_METHOD(fixture, "a killed workflow manager is restarted, recovers the workflows and "
                          "they carry on",
                 "[services]") {
  survive("manager");
  CHECK(service("gateway").started == 1);
}

TEST_CASE_METHOD(fixture, "an await in progress when the manager dies is answered by its "
                          "replacement",
                 "[services]") {
  auto w = rt.start("flow", nlohmann::json::object());
  REQUIRE(w);
  REQUIRE(rt.await(*w, patience, true)->status == workflow_status::parked);
  std::atomic<bool> answered{false};
  caf::expected<workflow_info> got{caf::error{}};
  std::thread waiter{[&] {
    got = rt.await(*w, patience);
    answered = true;
  }};
  kill("manager");
  REQUIRE(!rt.signal(*w, "review", decision::approve("tester")));
  waiter.join();
  REQUIRE(got);
  CHECK(got->status == workflow_status::completed);
}

TEST_CASE_METHOD(fixture, "a service that keeps dying makes the supervisor give up, and every "
                          "call then says so",
                 "[services]") {
  // 5 restarts within 30 s are tolerated; the sixth death is one too many.
  for (int i = 0; i < 5; ++i)
    kill("journal");
  auto last = service("journal");
  caf::anon_send_exit(last.actor, caf::exit_reason::kill);
  auto until = std::chrono::steady_clock::now() + patience;
  for (;;) { // the supervisor stops the others, then itself
    auto w = rt.start("flow", nlohmann::json::object());
    // meanwhile a start may meet the manager stopping (shutting_down,
    // "was starting") or dying (interrupted)
    if (!w && is(w.error(), errc::shutting_down)
        && describe(w.error()).find("gave up after too many restarts") != std::string::npos)
      break;
    REQUIRE(std::chrono::steady_clock::now() < until);
    std::this_thread::yield();
  }
  CHECK(is(rt.status("anything").error(), errc::shutting_down));
  rt.shutdown(); // and shutting down a runtime whose services are gone returns
}
