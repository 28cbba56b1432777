// Dead letters end to end through the facade: a failure no route covers or
// a spent budget parks the workflow durably; an operator lists it, retries
// it (with more budget) or drops it, through the runtime API or, with the
// runtime down, through the journal itself. Nothing sleeps: every wait is
// an await on the workflow's own settlement.
#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "support/temp_dir.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

using troupe::testing::temp_dir;

/// A flaky service the "ship" agent calls: it fails while `broken`, and
/// counts every shipment by its idempotency key.
struct warehouse {
  std::atomic<bool> broken{true};
  std::mutex mu;
  std::map<std::string, int> shipped; // effect key -> times the effect ran
  int total() {
    std::lock_guard<std::mutex> g{mu};
    int n = 0;
    for (auto& [k, v] : shipped)
      n += v;
    return n;
  }
};

/// Ships (an effect, once per visit), then confirms with the carrier, which
/// fails while the warehouse is broken: the failure comes after the effect.
agent_fn shipper(std::shared_ptr<warehouse> w) {
  return [w](step_context& ctx) {
    ctx.effect(
      "ship",
      [w](const std::string& key) {
        std::lock_guard<std::mutex> g{w->mu};
        ++w->shipped[key];
        return nlohmann::json{{"parcel", key}};
      },
      [w](step_context& c, caf::expected<nlohmann::json> r) {
        if (!r)
          return c.fail(failure_kind::crashed, describe(r.error()));
        if (w->broken)
          return c.fail(failure_kind::crashed, "carrier unreachable");
        step_outcome o;
        o.patch = {{"parcel", (*r)["parcel"]}};
        c.finish(o);
      });
  };
}

/// ship (3 attempts, no exhausted route, no fallback) ok -> done. With
/// `max_steps`, a budget and no budget route.
definition shipping(uint64_t max_steps = 0) {
  agent_policy p;
  p.timeout = 5s;
  p.retry.max_attempts = 3;
  p.retry.base_backoff = 1ms;
  p.retry.max_backoff = 2ms;
  budgets b;
  b.max_steps = max_steps;
  return *definition_builder{"shipping"}
            .agent("ship", "shipper", p).on("ok", "done")
            .completed("done")
            .limits(b)
            .build();
}

std::unique_ptr<runtime> open_runtime(std::shared_ptr<journal_store> journal,
                                      std::shared_ptr<warehouse> w, uint64_t max_steps = 0) {
  config cfg;
  cfg.journal = std::move(journal);
  cfg.random = seeded_random(3);
  auto rt = std::make_unique<runtime>(std::move(cfg));
  REQUIRE(!rt->register_agent("shipper", shipper(w)));
  REQUIRE(!rt->register_definition(shipping(max_steps)));
  return rt;
}

std::shared_ptr<journal_store> sqlite_at(const std::string& path) {
  auto store = open_sqlite_journal({path});
  REQUIRE(store);
  return *store;
}

workflow_info settled(runtime& rt, const std::string& id) {
  auto info = rt.await(id, patience);
  REQUIRE(info);
  return *info;
}

} // namespace

TEST_CASE("retries exhausted with no route dead-letter the workflow: listed with why, retried "
          "in the same visit, its effect not run again",
          "[dead_letter]") {
  auto w = std::make_shared<warehouse>();
  auto journal = make_memory_journal();
  auto rt = open_runtime(journal, w);
  auto id = rt->start("shipping", {{"order", 7}});
  REQUIRE(id);
  auto info = settled(*rt, *id);
  CHECK(info.status == workflow_status::dead_lettered);
  CHECK(info.node == "ship");
  CHECK(info.outcome == "exhausted");
  CHECK(info.reason == "node 'ship' attempt 3: crashed: carrier unreachable");
  CHECK(info.steps == 3);
  CHECK(w->total() == 1); // three attempts, one visit: the effect ran once

  auto listed = rt->dead_letters();
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK(listed->at(0).id == *id);
  CHECK(listed->at(0).state == nlohmann::json{{"order", 7}});
  auto records = journal->dead_letters();
  REQUIRE(records);
  REQUIRE(records->size() == 1);
  CHECK(records->at(0).node == "ship");
  CHECK(records->at(0).outcome == "exhausted");
  CHECK(journal->workflow(*id)->status == "dead_lettered");

  w->broken = false;
  REQUIRE_FALSE(rt->retry_dead_letter(*id, "ops@example.org"));
  info = settled(*rt, *id);
  CHECK(info.status == workflow_status::completed);
  CHECK(info.state["parcel"] == *id + "/ship#1/ship"); // the first visit's key
  CHECK(info.steps == 4);
  CHECK(w->total() == 1);
  CHECK(rt->dead_letters()->empty());
  auto history = rt->history(*id);
  REQUIRE(history);
  bool journaled = false;
  for (auto& r : *history)
    journaled = journaled || (r.kind == "dlq_retried"
                              && r.payload.find("ops@example.org") != std::string::npos);
  CHECK(journaled);
}

TEST_CASE("a dropped dead letter fails with outcome dropped, and takes no more retries",
          "[dead_letter]") {
  auto w = std::make_shared<warehouse>();
  auto rt = open_runtime(make_memory_journal(), w);
  auto id = rt->start("shipping", {{"order", 1}});
  REQUIRE(id);
  REQUIRE(settled(*rt, *id).status == workflow_status::dead_lettered);
  REQUIRE_FALSE(rt->drop_dead_letter(*id, "ops", "customer cancelled"));
  auto info = settled(*rt, *id);
  CHECK(info.status == workflow_status::failed);
  CHECK(info.outcome == "dropped");
  CHECK(info.reason.find("dropped from dead letter by 'ops': customer cancelled") == 0);
  auto again = rt->retry_dead_letter(*id, "ops");
  REQUIRE(again);
  CHECK(is(again, errc::workflow_finished));
}

TEST_CASE("dead-letter calls on the wrong workflow are refused and change nothing",
          "[dead_letter]") {
  auto w = std::make_shared<warehouse>();
  w->broken = false;
  auto rt = open_runtime(make_memory_journal(), w);
  auto unknown = rt->retry_dead_letter("shipping-nope", "ops");
  CHECK(is(unknown, errc::unknown_workflow));
  auto id = rt->start("shipping", {{"order", 2}});
  REQUIRE(id);
  REQUIRE(settled(*rt, *id).status == workflow_status::completed);
  CHECK(is(rt->drop_dead_letter(*id, "ops", "x"), errc::workflow_finished));

  // a workflow parked at a gate is not dead-lettered
  REQUIRE_FALSE(rt->register_definition(*definition_builder{"held"}
                                            .gate("hold").on("approve", "done")
                                            .on("reject", "done")
                                            .completed("done")
                                            .build()));
  auto held = rt->start("held", nlohmann::json::object());
  REQUIRE(held);
  REQUIRE(rt->await(*held, patience, true)->status == workflow_status::parked);
  auto err = rt->retry_dead_letter(*held, "ops");
  CHECK(is(err, errc::bad_signal));
  CHECK(describe(err).find("not dead-lettered") != std::string::npos);
  CHECK(rt->status(*held)->status == workflow_status::parked);

  extra_budget negative;
  negative.cost_usd = -1;
  CHECK(is(rt->retry_dead_letter(*held, "ops", negative), errc::invalid_input));
  extra_budget backwards;
  backwards.time = -1s;
  CHECK(is(rt->retry_dead_letter(*held, "ops", backwards), errc::invalid_input));
}

TEST_CASE("a spent budget with no budget route dead-letters: a retry without more budget "
          "stops again, one with more runs",
          "[dead_letter]") {
  auto w = std::make_shared<warehouse>();
  auto rt = open_runtime(make_memory_journal(), w, 2);
  auto id = rt->start("shipping", {{"order", 3}});
  REQUIRE(id);
  auto info = settled(*rt, *id);
  REQUIRE(info.status == workflow_status::dead_lettered);
  CHECK(info.outcome == "budget");
  CHECK(info.reason == "node 'ship': max_steps budget of 2 spent");

  w->broken = false;
  REQUIRE_FALSE(rt->retry_dead_letter(*id, "ops"));
  info = settled(*rt, *id);
  CHECK(info.status == workflow_status::dead_lettered);
  CHECK(info.steps == 2); // nothing ran

  extra_budget more;
  more.steps = 1;
  REQUIRE_FALSE(rt->retry_dead_letter(*id, "ops", more));
  info = settled(*rt, *id);
  CHECK(info.status == workflow_status::completed);
  CHECK(info.steps == 3);
  CHECK(w->total() == 1);
}

TEST_CASE("a dead letter survives a restart: listed by the new runtime and retried there",
          "[dead_letter][durable]") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto w = std::make_shared<warehouse>();
  std::string id;
  {
    auto rt = open_runtime(sqlite_at(path), w);
    auto started = rt->start("shipping", {{"order", 4}});
    REQUIRE(started);
    id = *started;
    REQUIRE(settled(*rt, id).status == workflow_status::dead_lettered);
  }
  w->broken = false;
  auto rt = open_runtime(sqlite_at(path), w);
  auto rep = rt->recover();
  REQUIRE(rep);
  CHECK(rep->parked == 1); // waits for an operator, holding no actor
  CHECK(rep->resumed == 0);
  auto listed = rt->dead_letters();
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK(listed->at(0).reason == "node 'ship' attempt 3: crashed: carrier unreachable");
  REQUIRE_FALSE(rt->retry_dead_letter(id, "ops"));
  auto info = settled(*rt, id);
  CHECK(info.status == workflow_status::completed);
  CHECK(w->total() == 1);
}

TEST_CASE("with the runtime down, a retry journaled into the file runs at the next recovery, "
          "a drop ends the workflow there",
          "[dead_letter][durable]") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  auto w = std::make_shared<warehouse>();
  std::string retried, dropped;
  {
    auto rt = open_runtime(sqlite_at(path), w);
    retried = *rt->start("shipping", {{"order", 5}});
    dropped = *rt->start("shipping", {{"order", 6}});
    REQUIRE(settled(*rt, retried).status == workflow_status::dead_lettered);
    REQUIRE(settled(*rt, dropped).status == workflow_status::dead_lettered);
  }
  {
    auto store = sqlite_at(path);
    dead_letter_action retry;
    retry.by = "ops";
    retry.extra_steps = 5;
    REQUIRE_FALSE(apply_dead_letter_action(*store, retried, retry, 1));
    dead_letter_action drop;
    drop.retry = false;
    drop.by = "ops";
    drop.reason = "duplicate order";
    REQUIRE_FALSE(apply_dead_letter_action(*store, dropped, drop, 1));
    CHECK(store->workflow(dropped)->status == "failed");
    CHECK(store->workflow(dropped)->outcome == "dropped");
    // a second drop, or a retry of a workflow no longer dead-lettered, is refused
    auto again = apply_dead_letter_action(*store, dropped, drop, 2);
    CHECK(is(again, errc::bad_signal));
    CHECK(describe(again).find("is failed, not dead-lettered") != std::string::npos);
    CHECK(is(apply_dead_letter_action(*store, "shipping-none", drop, 2),
             errc::unknown_workflow));
  }
  w->broken = false;
  auto rt = open_runtime(sqlite_at(path), w);
  auto rep = rt->recover();
  REQUIRE(rep);
  CHECK(rep->resumed == 1);
  CHECK(rep->quarantined.empty());
  auto info = settled(*rt, retried);
  CHECK(info.status == workflow_status::completed);
  auto gone = rt->status(dropped);
  REQUIRE(gone);
  CHECK(gone->status == workflow_status::failed);
  CHECK(gone->outcome == "dropped");
  CHECK(w->total() == 2); // one shipment per order, retry or not
}
