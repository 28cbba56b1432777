// Per-user session context: the agents of one user's workflows share small
// keyed values that expire after a TTL; another user's agents never see
// them. The store alone, then through the facade.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>

#include "runtime/session_store.hpp"
#include "support/temp_dir.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

/// Time that moves only when a test says so.
struct manual_clock : clock_source {
  std::atomic<int64_t> ns{1'000'000'000};
  std::chrono::nanoseconds now() const override { return std::chrono::nanoseconds{ns.load()}; }
  void advance(std::chrono::nanoseconds d) { ns += d.count(); }
};

} // namespace

TEST_CASE("the session store keeps each user's values apart, expires them and bounds their "
          "size",
          "[session]") {
  auto clock = std::make_shared<manual_clock>();
  session_store s{clock, 10min, 64};
  REQUIRE_FALSE(s.put("alice", "lang", "fr"));
  CHECK(s.get("alice", "lang") == "fr");
  CHECK(s.get("bob", "lang").is_null()); // isolated
  CHECK(s.get("alice", "other").is_null());
  clock->advance(9min);
  REQUIRE_FALSE(s.put("alice", "seen", 3)); // a later write; "lang" keeps its own expiry
  clock->advance(1min);
  CHECK(s.get("alice", "lang").is_null()); // 10 min after its last write
  CHECK(s.get("alice", "seen") == 3);
  CHECK(s.users() == 1);
  clock->advance(10min);
  CHECK(s.users() == 0);

  // at most 64 bytes of keys and JSON text per user; a refused write changes nothing
  REQUIRE_FALSE(s.put("alice", "a", std::string(40, 'x'))); // 1 + 42 bytes
  auto big = s.put("alice", "b", std::string(30, 'y'));
  REQUIRE(big);
  CHECK(is(big, errc::invalid_input));
  CHECK(describe(big).find("would exceed its 64 bytes") != std::string::npos);
  CHECK(s.get("alice", "b").is_null());
  REQUIRE_FALSE(s.put("alice", "a", std::string(50, 'x'))); // a replace frees the old value
  REQUIRE_FALSE(s.put("bob", "b", std::string(50, 'y')));    // bob has his own 64 bytes
  REQUIRE_FALSE(s.put("alice", "a", nullptr));              // null removes
  CHECK(s.get("alice", "a").is_null());
  REQUIRE_FALSE(s.put("alice", "b", std::string(30, 'y')));
  CHECK(is(s.put("", "k", 1), errc::invalid_input));
  CHECK(is(s.put("alice", "", 1), errc::invalid_input));
}

TEST_CASE("agents of one user's workflows share its session context, other users' do not, "
          "and values expire",
          "[session]") {
  auto clock = std::make_shared<manual_clock>();
  config cfg;
  cfg.clock = clock;
  cfg.session_ttl = 30min;
  runtime rt{cfg};
  // remembers the user's language if the input names one, then reports
  // what the context holds
  REQUIRE_FALSE(rt.register_agent("concierge", [](step_context& ctx) {
    if (ctx.state().contains("lang"))
      if (auto err = ctx.session_put("lang", ctx.state()["lang"]))
        return ctx.fail(failure_kind::crashed, describe(err));
    step_outcome o;
    o.patch = {{"remembered", ctx.session_get("lang")}, {"user", ctx.user()}};
    ctx.finish(o);
  }));
  REQUIRE_FALSE(rt.register_definition(
    *definition_builder{"chat"}.agent("talk", "concierge").on("ok", "done")
       .on("exhausted", "failed").completed("done").failed("failed").build()));
  auto run = [&](nlohmann::json input, const std::string& user) {
    auto id = rt.start("chat", std::move(input), {}, user);
    REQUIRE(id);
    auto info = rt.await(*id, patience);
    REQUIRE(info);
    return *info;
  };
  auto first = run({{"lang", "fr"}}, "alice");
  CHECK(first.status == workflow_status::completed);
  CHECK(first.state["user"] == "alice");
  CHECK(run(nlohmann::json::object(), "alice").state["remembered"] == "fr"); // shared
  CHECK(run(nlohmann::json::object(), "bob").state["remembered"].is_null()); // isolated
  clock->advance(31min);
  CHECK(run(nlohmann::json::object(), "alice").state["remembered"].is_null()); // expired

  // a workflow with no user has no context to write to
  auto anonymous = run({{"lang", "de"}}, "");
  CHECK(anonymous.status == workflow_status::failed);
  CHECK(anonymous.reason.find("the workflow has no user") != std::string::npos);
}

TEST_CASE("a workflow's user is journaled with it and comes back with it after a restart",
          "[session][durable]") {
  troupe::testing::temp_dir dir;
  auto path = dir.file("journal.db");
  std::string id;
  auto boot = [&] {
    auto store = open_sqlite_journal({path});
    REQUIRE(store);
    config cfg;
    cfg.journal = *store;
    auto rt = std::make_unique<runtime>(cfg);
    REQUIRE_FALSE(rt->register_agent("whoami", [](step_context& ctx) {
      step_outcome o;
      o.patch = {{"user", ctx.user()}};
      ctx.finish(o);
    }));
    REQUIRE_FALSE(rt->register_definition(*definition_builder{"who"}
                                              .gate("wait").on("approve", "ask")
                                              .on("reject", "done")
                                              .agent("ask", "whoami").on("ok", "done")
                                              .completed("done")
                                              .build()));
    return rt;
  };
  {
    auto rt = boot();
    auto started = rt->start("who", nlohmann::json::object(), "k-1", "carol");
    REQUIRE(started);
    id = *started;
    REQUIRE(rt->await(id, patience, true)->status == workflow_status::parked);
  }
  auto rt = boot();
  REQUIRE(rt->recover()->parked == 1);
  REQUIRE_FALSE(rt->signal(id, "wait", decision::approve("ann")));
  auto info = rt->await(id, patience);
  REQUIRE(info);
  CHECK(info->state["user"] == "carol");
}
