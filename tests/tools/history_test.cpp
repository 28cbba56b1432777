// `troupe tail | replay | fork` on a running node and on a journal file:
// what each prints, following events as they commit (a hook says when the
// follow began, so no sleeping), the fork's diff with its original, and
// the one-line errors.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <future>
#include <sstream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "support/cli_run.hpp"
#include "support/temp_dir.hpp"
#include "tools/history.hpp"
#include "triage/triage.hpp"
#include "troupe/admin.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;
using nlohmann::json;
using troupe::testing::run_cli;

namespace {

constexpr auto patience = 20000ms; // only reached when a test is broken
const std::string token = "history-test-token";

/// A runtime whose "tag" agent asks the model which model it is, then parks
/// at a review gate.
std::unique_ptr<runtime> make_runtime() {
  config cfg;
  cfg.log_level = "error";
  cfg.model.rules["tag"] = [](const llm_request& r) { return json{{"model", r.model}}.dump(); };
  auto rt = std::make_unique<runtime>(cfg);
  REQUIRE(!rt->register_agent("tag", [](step_context& ctx) {
    llm_request req;
    req.model = "scripted/own";
    req.messages = {{"user", "which model?"}};
    req.json_output = true;
    ask_json(ctx, req, [](step_context& c, json reply) {
      step_outcome o;
      o.patch = {{"tagged", reply["model"]}};
      c.finish(o);
    });
  }));
  REQUIRE(!rt->register_definition(*definition_builder{"reviewed"}
                                      .agent("tag", "tag").on("ok", "review")
                                      .gate("review").on("approve", "done").on("reject", "no")
                                      .completed("done")
                                      .failed("no")
                                      .build()));
  return rt;
}

struct node_fixture {
  std::unique_ptr<runtime> rt = make_runtime();
  std::unique_ptr<admin_server> server;
  std::string node;
  node_fixture() {
    admin_config ac;
    ac.token = token;
    auto s = admin_server::start(*rt, ac);
    REQUIRE(s);
    server = std::move(*s);
    node = "127.0.0.1:" + std::to_string(server->port());
    ::setenv("TROUPE_ADMIN_TOKEN", token.c_str(), 1);
  }
  ~node_fixture() {
    ::unsetenv("TROUPE_ADMIN_TOKEN");
    server->stop();
  }
  std::string start_parked() {
    auto id = rt->start("reviewed", {{"ticket", 42}});
    REQUIRE(id);
    auto parked = rt->await(*id, patience, true);
    REQUIRE(parked);
    REQUIRE(parked->status == workflow_status::parked);
    return *id;
  }
};

size_t count_of(const std::string& text, const std::string& part) {
  size_t n = 0;
  for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1))
    ++n;
  return n;
}

} // namespace

TEST_CASE_METHOD(node_fixture, "replay shows a workflow right after any of its events",
                 "[tools][history]") {
  auto id = start_parked(); // #1 started, #2 scheduled, #3 completed: at the gate
  auto first = run_cli({"replay", id, "--until", "1", "--node", node});
  CHECK(first.code == 0);
  CHECK(first.out.find(id + " right after event #1: running at 'tag'") == 0);
  CHECK(first.out.find("\"ticket\": 42") != std::string::npos);
  CHECK(first.out.find("tagged") == std::string::npos);
  auto parked = run_cli({"replay", id, "--until", "3", "--node", node, "--json"});
  REQUIRE(parked.code == 0);
  auto j = json::parse(parked.out);
  CHECK(j["at"] == 3);
  CHECK(j["status"] == "parked");
  CHECK(j["state"]["tagged"] == "scripted/own");
  auto beyond = run_cli({"replay", id, "--until", "99", "--node", node});
  CHECK(beyond.code == 1);
  CHECK(beyond.err.find("troupe replay: ") == 0);
  CHECK(beyond.err.find("#99") != std::string::npos);
  auto no_seq = run_cli({"replay", id, "--node", node});
  CHECK(no_seq.code == 2);
  CHECK(no_seq.err.find("--until") != std::string::npos);
}

TEST_CASE_METHOD(node_fixture, "tail prints a workflow's last events, and -f follows it to "
                               "its end", "[tools][history]") {
  auto id = start_parked();
  auto last2 = run_cli({"tail", id, "-n", "2", "--node", node});
  CHECK(last2.code == 0);
  CHECK(count_of(last2.out, "\n") == 2);
  CHECK(last2.out.find("#2    step_scheduled") != std::string::npos);
  CHECK(last2.out.find("#3    step_completed") != std::string::npos);

  // Follow: the hook says the tail has taken its marks and polls.
  cli::inspect_source src;
  src.node = node;
  cli::tail_options opt;
  opt.id = id;
  opt.follow = true;
  opt.last = 0;
  std::promise<void> following;
  opt.on_following = [&] { following.set_value(); };
  std::ostringstream out, err;
  auto tailing = std::async(std::launch::async, [&] { return cli::tail(src, opt, out, err); });
  following.get_future().wait();
  REQUIRE(!rt->signal(id, "review", decision::approve("ann")));
  REQUIRE(tailing.wait_for(patience) == std::future_status::ready);
  CHECK(tailing.get() == 0); // ended by itself: the workflow finished
  INFO(out.str() << err.str());
  CHECK(err.str().empty());
  CHECK(out.str().find("step_scheduled") == std::string::npos); // only what came after
  CHECK(count_of(out.str(), "signal_received") == 1);
  CHECK(out.str().find("review approve by ann") != std::string::npos);
}

TEST_CASE_METHOD(node_fixture, "tail -f of every workflow prints only events newer than its "
                               "start, in commit order", "[tools][history]") {
  auto before = start_parked();
  cli::inspect_source src;
  src.node = node;
  cli::tail_options opt;
  opt.follow = true;
  opt.count = 4; // the new workflow's started, scheduled, completed; the old one's signal
  opt.json = true;
  std::promise<void> following;
  opt.on_following = [&] { following.set_value(); };
  std::ostringstream out, err;
  auto tailing = std::async(std::launch::async, [&] { return cli::tail(src, opt, out, err); });
  following.get_future().wait();
  auto after = start_parked();
  REQUIRE(!rt->signal(before, "review", decision::approve("bob")));
  REQUIRE(tailing.wait_for(patience) == std::future_status::ready);
  CHECK(tailing.get() == 0);
  std::istringstream lines{out.str()};
  std::vector<json> events;
  for (std::string line; std::getline(lines, line);)
    events.push_back(json::parse(line));
  REQUIRE(events.size() == 4);
  CHECK(events[0]["workflow"] == after);
  CHECK(events[0]["kind"] == "workflow_started");
  CHECK(events[3]["workflow"] == before);
  CHECK(events[3]["kind"] == "signal_received");
  for (size_t i = 1; i < events.size(); ++i)
    CHECK(events[i - 1]["seq"].get<uint64_t>() < events[i]["seq"].get<uint64_t>());
}

TEST_CASE_METHOD(node_fixture, "fork --wait follows the fork and shows how it differs from "
                               "the original", "[tools][history]") {
  auto id = start_parked();
  auto forked = run_cli({"fork", id, "--at", "1", "--model", "scripted/other", "--wait",
                         "--node", node});
  INFO(forked.out << forked.err);
  REQUIRE(forked.code == 0);
  CHECK(forked.out.find("forked " + id + " at #1 as ") == 0);
  CHECK(forked.out.find("workflow_started") != std::string::npos); // its events, as progress
  CHECK(forked.out.find("model scripted/other") != std::string::npos);
  CHECK(forked.out.find("step_completed") != std::string::npos);
  CHECK(forked.out.find("states differ at 1 path") != std::string::npos);
  CHECK(forked.out.find(R"(~ /tagged: "scripted/own" -> "scripted/other")") != std::string::npos);

  auto as_json = run_cli({"fork", id, "--at", "3", "--wait", "--json", "--node", node});
  REQUIRE(as_json.code == 0);
  auto j = json::parse(as_json.out);
  CHECK(j["fork"]["status"] == "parked");
  CHECK(j["fork"]["node"] == "review");
  CHECK(j["diff"].empty()); // forked at the gate: the same state

  REQUIRE(!rt->signal(id, "review", decision::reject("ann")));
  REQUIRE(rt->await(id, patience));
  auto finished = run_cli({"fork", id, "--at", "4", "--node", node}); // #4: rejected
  CHECK(finished.code == 1);
  CHECK(finished.err.find("had finished") != std::string::npos);
  CHECK(count_of(finished.err, "\n") == 1);
  auto unknown = run_cli({"fork", "no-such-id", "--at", "1", "--node", node});
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("no-such-id") != std::string::npos);
  auto bad_model = run_cli({"fork", id, "--at", "1", "--model", "nowhere/x", "--node", node});
  CHECK(bad_model.code == 1);
  CHECK(bad_model.err.find("model 'nowhere/x'") != std::string::npos);
  auto no_at = run_cli({"fork", id, "--node", node});
  CHECK(no_at.code == 2);
}

TEST_CASE("tail and replay read a journal file, and refuse what needs a node",
          "[tools][history]") {
  testing::temp_dir dir;
  auto path = dir.file("j.db");
  std::string id, other;
  {
    auto store = open_sqlite_journal({path});
    REQUIRE(store);
    examples::triage_options to;
    to.fail_rate = to.timeout_rate = to.malformed_rate = 0;
    auto cfg = examples::triage_config(to);
    cfg.journal = *store;
    cfg.log_level = "error";
    runtime rt{cfg};
    REQUIRE(!examples::register_triage(rt, 5000ms));
    auto started = rt.start("triage", {{"ticket", "Ticket #1 from acme: login loops."}});
    REQUIRE(started);
    id = *started;
    REQUIRE(rt.await(id, patience, true));
    REQUIRE(!rt.register_agent("noop", [](step_context& ctx) { ctx.finish({}); }));
    REQUIRE(!rt.register_definition(
      *definition_builder{"private"}.agent("a", "noop").on("ok", "done").completed("done").build()));
    auto p = rt.start("private", json::object());
    REQUIRE(p);
    other = *p;
    REQUIRE(rt.await(other, patience));
  } // the runtime lets the file go

  auto replayed = run_cli({"replay", id, "--until", "1", "--journal", path});
  INFO(replayed.err);
  CHECK(replayed.code == 0);
  CHECK(replayed.out.find(id + " right after event #1: running at 'extract'") == 0);
  auto unknown_def = run_cli({"replay", other, "--until", "1", "--journal", path});
  CHECK(unknown_def.code == 1);
  CHECK(unknown_def.err.find("'private'") != std::string::npos);
  CHECK(unknown_def.err.find("--node") != std::string::npos);

  auto tailed = run_cli({"tail", other, "--journal", path});
  CHECK(tailed.code == 0);
  CHECK(tailed.out.find("workflow_started") != std::string::npos);
  CHECK(count_of(tailed.out, "\n") == 3); // started, scheduled, completed
  auto follow = run_cli({"tail", other, "-f", "--journal", path});
  CHECK(follow.code == 2);
  CHECK(follow.err.find("-f needs a running node") != std::string::npos);
  auto no_id = run_cli({"tail", "--journal", path});
  CHECK(no_id.code == 2);
  auto unknown = run_cli({"tail", "no-such-id", "--journal", path});
  CHECK(unknown.code == 1);
  CHECK(unknown.err.find("no-such-id") != std::string::npos);
}

TEST_CASE("diff_json lists changed, added and removed leaves by path", "[tools][history]") {
  json a = {{"n", 1}, {"tags", {"x", "y"}}, {"gone", true}, {"same", {{"k", "v"}}}};
  json b = {{"n", 2}, {"tags", {"x"}}, {"new", "here"}, {"same", {{"k", "v"}}}};
  auto d = cli::diff_json(a, b);
  REQUIRE(d.size() == 4);
  CHECK(d[0].path == "/gone");
  CHECK((d[0].in_a && !d[0].in_b));
  CHECK(d[1].path == "/n");
  CHECK((d[1].a == 1 && d[1].b == 2));
  CHECK(d[2].path == "/new");
  CHECK((!d[2].in_a && d[2].in_b));
  CHECK(d[3].path == "/tags/1");
  CHECK(d[3].a == "y");
  CHECK(cli::diff_json(a, a).empty());
}
