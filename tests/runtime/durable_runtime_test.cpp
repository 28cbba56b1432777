// The facade over a real SQLite journal on real threads: a runtime stops, a
// new one opens the same file and carries on. Nothing sleeps: every wait is
// an await on the workflow's own settlement.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "support/temp_dir.hpp"
#include "troupe/errors.hpp"
#include "troupe/fault_vfs.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

using troupe::testing::temp_dir;

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

definition reviewed() {
  agent_policy p;
  p.timeout = 5s;
  p.retry.max_attempts = 2;
  p.retry.base_backoff = 1ms;
  p.retry.max_backoff = 2ms;
  return *definition_builder{"reviewed"}
            .agent("draft", "echoer", p).on("ok", "review").on("exhausted", "failed")
            .gate("review").on("approve", "publish").on("reject", "failed")
            .agent("publish", "echoer", p).on("ok", "done").on("exhausted", "failed")
            .completed("done")
            .failed("failed")
            .build();
}

/// A runtime over the SQLite journal at `path`, with the agents and
/// definition registered.
std::unique_ptr<runtime> open_runtime(const std::string& path, uint64_t seed,
                                      const std::string& vfs = {}) {
  auto store = open_sqlite_journal({path, "full", vfs});
  REQUIRE(store);
  config cfg;
  cfg.journal = *store;
  cfg.random = seeded_random(seed);
  cfg.snapshot_every = 3;
  cfg.model.rules["echo"] = [](const llm_request& r) {
    return nlohmann::json{{"echo", r.messages.back().content}}.dump();
  };
  auto rt = std::make_unique<runtime>(std::move(cfg));
  REQUIRE(!rt->register_agent("echoer", echoer));
  REQUIRE(!rt->register_definition(reviewed()));
  return rt;
}

} // namespace

TEST_CASE("workflows parked in a SQLite journal are recovered by a new runtime and finish there",
          "[durable]") {
  temp_dir dir;
  auto path = dir.file("journal.db");
  std::vector<std::string> ids;
  {
    auto rt = open_runtime(path, 1);
    for (int i = 0; i < 10; ++i) {
      auto id = rt->start("reviewed", {{"n", i}}, "post-" + std::to_string(i));
      REQUIRE(id);
      ids.push_back(*id);
    }
    for (auto& id : ids) {
      auto s = rt->await(id, patience, true);
      REQUIRE(s);
      REQUIRE(s->status == workflow_status::parked);
      CHECK(s->state["draft"] == "draft"); // a passive workflow's state comes from the journal
      CHECK(s->node == "review");
    }
    REQUIRE(!rt->signal(ids[0], "review", decision::approve("ann")));
    auto done = rt->await(ids[0], patience);
    REQUIRE(done);
    CHECK(done->status == workflow_status::completed);
  } // the runtime and its journal close

  auto rt = open_runtime(path, 2);
  auto rep = rt->recover();
  REQUIRE(rep);
  CHECK(rep->parked == 9);
  CHECK(rep->resumed == 0);
  CHECK(rep->quarantined.empty());
  // the same keys give the same workflows, the finished one included
  for (int i = 0; i < 10; ++i) {
    auto id = rt->start("reviewed", {{"n", i}}, "post-" + std::to_string(i));
    REQUIRE(id);
    CHECK(*id == ids[static_cast<size_t>(i)]);
  }
  auto first = rt->status(ids[0]);
  REQUIRE(first);
  CHECK(first->status == workflow_status::completed);
  CHECK(first->state["publish"] == "publish");
  for (size_t i = 1; i < ids.size(); ++i) {
    REQUIRE(!rt->signal(ids[i], "review", decision::approve("bob")));
    auto s = rt->await(ids[i], patience);
    REQUIRE(s);
    CHECK(s->status == workflow_status::completed);
    CHECK(s->state["n"] == i);
    CHECK(s->state["draft"] == "draft");
    CHECK(s->state["publish"] == "publish");
  }
  auto history = rt->history(ids[5]);
  REQUIRE(history);
  CHECK(history->size() == 6); // started, draft scheduled + completed, the signal, publish x2
  size_t completed_publish = 0;
  for (auto& r : *history)
    if (r.kind == "step_completed" && r.payload.find("\"publish\"") != std::string::npos)
      ++completed_publish;
  CHECK(completed_publish == 1);
}

TEST_CASE("purge removes finished workflows from the SQLite journal and keeps open ones",
          "[durable]") {
  temp_dir dir;
  auto rt = open_runtime(dir.file("journal.db"), 3);
  auto a = rt->start("reviewed", nlohmann::json::object());
  auto b = rt->start("reviewed", nlohmann::json::object());
  REQUIRE(a);
  REQUIRE(b);
  REQUIRE(rt->await(*a, patience, true));
  REQUIRE(rt->await(*b, patience, true));
  REQUIRE(!rt->signal(*a, "review", decision::reject("ann")));
  REQUIRE(rt->await(*a, patience));
  CHECK(*rt->purge(1h) == 0); // finished too recently
  auto purged = rt->purge(0ns);
  REQUIRE(purged);
  CHECK(*purged == 1);
  CHECK(is(rt->history(*a).error(), errc::unknown_workflow));
  CHECK(is(rt->status(*a).error(), errc::unknown_workflow));
  CHECK(rt->history(*b)->size() == 3);
  CHECK(is(rt->purge(-1ns).error(), errc::invalid_config));
}

TEST_CASE("a failed fsync stops the workflow whose commit it was, and recover() resumes it from "
          "what the journal holds", "[durable]") {
  REQUIRE(!fault_vfs::install());
  temp_dir dir;
  auto rt = open_runtime(dir.file("journal.db"), 4, fault_vfs::name);
  auto id = rt->start("reviewed", nlohmann::json::object());
  REQUIRE(id);
  REQUIRE(rt->await(*id, patience, true));
  fault_vfs::fault f;
  f.what = fault_vfs::op::sync;
  f.where = fault_vfs::file::wal;
  fault_vfs::arm(f);
  auto err = rt->signal(*id, "review", decision::approve("ann"));
  fault_vfs::disarm();
  REQUIRE(err);
  CHECK(is(err, errc::journal_write_failed));
  auto stopped = rt->status(*id);
  REQUIRE(stopped);
  CHECK(stopped->status == workflow_status::failed);
  CHECK(stopped->outcome == "journal_write_failed");
  CHECK(is(rt->signal(*id, "review", decision::approve("ann")), errc::workflow_finished));
  auto rep = rt->recover();
  REQUIRE(rep);
  // the failed commit is either wholly in the journal (the signal took
  // effect: the workflow runs on) or wholly absent (parked again)
  CHECK(rep->resumed + rep->parked == 1);
  if (rep->parked == 1)
    REQUIRE(!rt->signal(*id, "review", decision::approve("ann")));
  auto done = rt->await(*id, patience);
  REQUIRE(done);
  CHECK(done->status == workflow_status::completed);
}
