// `troupe ls | show | stats | approve | reject | edit` over a journal file
// and over a running node's admin API: what each prints, and the one-line
// errors of a bad flag, an unknown workflow, a wrong token and a node that
// is not there.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/temp_dir.hpp"
#include "support/cli_run.hpp"
#include "tools/cli.hpp"
#include "troupe/admin.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 20000ms; // only reached when a test is broken

using troupe::testing::run_cli;

/// A runtime with one definition that parks at a review gate.
std::unique_ptr<runtime> make_runtime(std::shared_ptr<journal_store> journal) {
  config cfg;
  cfg.log_level = "error";
  cfg.journal = std::move(journal);
  auto rt = std::make_unique<runtime>(cfg);
  REQUIRE(!rt->register_agent("tag", [](step_context& ctx) {
    step_outcome o;
    o.patch = {{"tagged", true}};
    ctx.finish(o);
  }));
  REQUIRE(!rt->register_definition(*definition_builder{"reviewed"}
                                      .agent("tag", "tag").on("ok", "review")
                                      .gate("review").on("approve", "done").on("reject", "no")
                                      .completed("done")
                                      .failed("no")
                                      .build()));
  return rt;
}

std::string start_parked(runtime& rt) {
  auto id = rt.start("reviewed", {{"ticket", 42}});
  REQUIRE(id);
  auto parked = rt.await(*id, patience, true);
  REQUIRE(parked);
  REQUIRE(parked->status == workflow_status::parked);
  return *id;
}

} // namespace

TEST_CASE("ls, show and stats read a journal file", "[tools][inspect]") {
  testing::temp_dir dir;
  auto path = dir.file("j.db");
  std::string id;
  {
    auto store = open_sqlite_journal({path});
    REQUIRE(store);
    auto rt = make_runtime(*store);
    id = start_parked(*rt);
  } // the runtime lets the file go

  auto ls = run_cli({"ls", "--journal", path});
  CHECK(ls.code == 0);
  CHECK(ls.out.find(id) != std::string::npos);
  CHECK(ls.out.find("parked") != std::string::npos);
  CHECK(ls.out.find("1 workflow\n") != std::string::npos);
  auto none = run_cli({"ls", "--journal", path, "--status", "completed"});
  CHECK(none.code == 0);
  CHECK(none.out == "0 workflows\n");
  auto as_json = run_cli({"ls", "--journal", path, "--json"});
  REQUIRE(as_json.code == 0);
  auto rows = nlohmann::json::parse(as_json.out);
  REQUIRE(rows.size() == 1);
  CHECK(rows[0]["id"] == id);
  CHECK(rows[0]["status"] == "parked");

  auto show = run_cli({"show", id, "--journal", path});
  CHECK(show.code == 0);
  CHECK(show.out.find("workflow_started") != std::string::npos);
  CHECK(show.out.find("step_completed") != std::string::npos);
  CHECK(show.out.find("tag#1") != std::string::npos); // the attempt, with its outcome
  CHECK(show.out.find("ok") != std::string::npos);
  auto show_json = run_cli({"show", id, "--journal", path, "--json"});
  REQUIRE(show_json.code == 0);
  auto j = nlohmann::json::parse(show_json.out);
  CHECK(j["history"]["events"].size() == 3); // started, scheduled, completed (to the gate)
  CHECK(j["history"]["attempts"][0]["outcome"] == "ok");

  auto stats = run_cli({"stats", "--journal", path});
  CHECK(stats.code == 0);
  CHECK(stats.out.find("parked         1") != std::string::npos);
  CHECK(stats.out.find("total          1") != std::string::npos);

  auto unknown = run_cli({"show", "no-such-id", "--journal", path});
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("troupe show: ") == 0);
  CHECK(unknown.err.find("no-such-id") != std::string::npos);
  auto missing = run_cli({"ls", "--journal", dir.file("nope.db")});
  CHECK(missing.code == 1);
  CHECK(missing.err.find("troupe ls: ") == 0);
}

TEST_CASE("inspect commands refuse a missing or doubled source and bad flags", "[tools][inspect]") {
  auto neither = run_cli({"ls"});
  CHECK(neither.code == 2);
  CHECK(neither.err.find("--journal FILE or --node HOST:PORT") != std::string::npos);
  auto both = run_cli({"stats", "--journal", "j.db", "--node", "127.0.0.1:1"});
  CHECK(both.code == 2);
  CHECK(both.err.find("--journal") != std::string::npos);
  auto status = run_cli({"ls", "--journal", "j.db", "--status", "sleeping"});
  CHECK(status.code == 2);
  CHECK(status.err.find("--status") != std::string::npos);
  auto no_by = run_cli({"approve", "wf", "review", "--node", "127.0.0.1:1"});
  CHECK(no_by.code == 2);
  CHECK(no_by.err.find("--by") != std::string::npos);
  auto bad_node = run_cli({"ls", "--node", "localhost"});
  CHECK(bad_node.code == 2);
  CHECK(bad_node.err.find("expected host:port") != std::string::npos);
}

TEST_CASE("ls, show, stats and a gate decision go to a running node", "[tools][inspect]") {
  auto rt = make_runtime(make_memory_journal());
  admin_config ac;
  ac.token = "inspect-test-token";
  auto server = admin_server::start(*rt, ac);
  REQUIRE(server);
  auto node = "127.0.0.1:" + std::to_string((*server)->port());
  auto id = start_parked(*rt);

  ::unsetenv("TROUPE_ADMIN_TOKEN");
  auto no_token = run_cli({"ls", "--node", node});
  CHECK(no_token.code == 2);
  CHECK(no_token.err.find("TROUPE_ADMIN_TOKEN is not set") != std::string::npos);
  ::setenv("TROUPE_ADMIN_TOKEN", "wrong", 1);
  auto wrong = run_cli({"ls", "--node", node});
  CHECK(wrong.code == 1);
  CHECK(wrong.err.find("refused the token") != std::string::npos);
  CHECK(wrong.err.find("wrong") == std::string::npos); // the token is never echoed

  ::setenv("TROUPE_ADMIN_TOKEN", "inspect-test-token", 1);
  auto ls = run_cli({"ls", "--node", node, "--status", "parked"});
  CHECK(ls.code == 0);
  CHECK(ls.out.find(id) != std::string::npos);
  auto show = run_cli({"show", id, "--node", node});
  CHECK(show.code == 0);
  CHECK(show.out.find("parked at 'review'") != std::string::npos);
  auto stats = run_cli({"stats", "--node", node, "--json"});
  REQUIRE(stats.code == 0);
  CHECK(nlohmann::json::parse(stats.out)["counts"]["parked"] == 1);

  auto wrong_gate = run_cli({"approve", id, "triage", "--node", node, "--by", "ann"});
  CHECK(wrong_gate.code == 1);
  CHECK(wrong_gate.err.find("HTTP 409") != std::string::npos);
  auto bad_patch = run_cli({"edit", id, "review", "--node", node, "--by", "ann", "--patch", "[1]"});
  CHECK(bad_patch.code == 2);
  auto edit = run_cli({"edit", id, "review", "--node", node, "--by", "ann", "--patch",
                       R"({"priority": "high"})"});
  CHECK(edit.code == 0);
  CHECK(edit.out == id + ": edit at 'review' by ann\n");
  auto done = rt->await(id, patience);
  REQUIRE(done);
  CHECK(done->status == workflow_status::completed);
  CHECK(done->state["priority"] == "high");

  auto port = (*server)->port();
  (*server)->stop();
  auto gone = run_cli({"ls", "--node", "127.0.0.1:" + std::to_string(port)});
  CHECK(gone.code == 1);
  CHECK(gone.err.find("cannot reach node") != std::string::npos);
  ::unsetenv("TROUPE_ADMIN_TOKEN");
}
