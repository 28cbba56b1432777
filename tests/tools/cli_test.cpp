// Tests of the `troupe` CLI's argument handling: every bad flag is refused
// with exit code 2 and a message naming it, before anything runs; help and
// version print and exit 0; one tiny fault-free run succeeds.
#include <catch2/catch.hpp>

#include <atomic>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "support/fake_model_server.hpp"
#include "support/temp_dir.hpp"
#include "support/cli_run.hpp"
#include "tools/cli.hpp"
#include "troupe/errors.hpp"
#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"

namespace {

using troupe::testing::run_cli;

} // namespace

TEST_CASE("cli refuses out-of-range flags naming the flag", "[tools][cli]") {
  struct bad {
    std::vector<std::string> args;
    const char* flag;
  };
  std::vector<bad> cases = {
      {{"run", "triage", "--workflows", "0"}, "--workflows"},
      {{"run", "triage", "--workflows", "many"}, "--workflows"},
      {{"run", "triage", "--fail-rate=-0.1"}, "--fail-rate"},
      {{"run", "triage", "--fail-rate", "-0.1"}, "--fail-rate"},
      {{"run", "triage", "--fail-rate", "1.5"}, "--fail-rate"},
      {{"run", "triage", "--timeout-rate", "2"}, "--timeout-rate"},
      {{"run", "triage", "--malformed-rate", "-1"}, "--malformed-rate"},
      {{"run", "triage", "--threads", "0"}, "--threads"},
      {{"run", "triage", "--seed", "-1"}, "--seed"},
      {{"run", "triage", "--seed", "abc"}, "--seed"},
      {{"run", "triage", "--fail-rate", "0.6", "--malformed-rate", "0.6"}, "--malformed-rate"},
      {{"run", "triage", "--no-such-flag"}, "--no-such-flag"},
  };
  for (const auto& c : cases) {
    auto r = run_cli(c.args);
    INFO(c.args.back() << " -> " << r.err);
    CHECK(r.code == troupe::cli::exit_usage);
    CHECK_THAT(r.err, Catch::Contains(c.flag));
    CHECK(r.out.empty()); // nothing ran
  }
}

TEST_CASE("cli names the known examples when given an unknown one", "[tools][cli]") {
  auto r = run_cli({"run", "nope"});
  CHECK(r.code == troupe::cli::exit_usage);
  CHECK_THAT(r.err, Catch::Contains("unknown example 'nope'"));
  for (const auto& name : troupe::cli::example_names())
    CHECK_THAT(r.err, Catch::Contains(name));
  CHECK(r.out.empty());
}

TEST_CASE("cli needs a command", "[tools][cli]") {
  auto r = run_cli({});
  CHECK(r.code == troupe::cli::exit_usage);
  CHECK_FALSE(r.err.empty());
  CHECK(run_cli({"frobnicate"}).code == troupe::cli::exit_usage);
}

TEST_CASE("cli prints help on every command and its version", "[tools][cli]") {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--help"}, {"demo", "--help"}, {"run", "--help"}}) {
    auto r = run_cli(args);
    INFO(args.front());
    CHECK(r.code == troupe::cli::exit_ok);
    CHECK_THAT(r.out, Catch::Contains("Usage"));
  }
  CHECK_THAT(run_cli({"run", "--help"}).out, Catch::Contains("--fail-rate"));
  auto v = run_cli({"--version"});
  CHECK(v.code == troupe::cli::exit_ok);
  CHECK_THAT(v.out, Catch::StartsWith("troupe "));
}

TEST_CASE("cli runs a small fault-free triage", "[tools][cli]") {
  auto r = run_cli({"run", "triage", "--workflows", "3", "--seed", "1", "--fail-rate", "0",
                    "--timeout-rate", "0", "--malformed-rate", "0"});
  INFO(r.out << r.err);
  CHECK(r.code == troupe::cli::exit_ok);
  CHECK_THAT(r.out, Catch::Contains("3 tickets"));
  CHECK(r.err.empty());
}

TEST_CASE("cli runs order_processing with a restart and no duplicate shipment",
          "[tools][cli]") {
  auto r = run_cli({"run", "order_processing", "--workflows", "12", "--seed", "5"});
  INFO(r.out << r.err);
  CHECK(r.code == troupe::cli::exit_ok);
  CHECK_THAT(r.out, Catch::Contains("order_processing: 12 orders"));
  CHECK_THAT(r.out, Catch::Contains("run 2: a new runtime on the same journal"));
  CHECK_THAT(r.out, Catch::Contains("order-11"));
  CHECK_THAT(r.out, Catch::Contains("duplicate fulfillments    0"));
  CHECK_THAT(r.out, Catch::Contains("unsettled               0"));
  CHECK(r.err.empty());
}

TEST_CASE("cli runs loan_approval through its timeouts and fallback and gate", "[tools][cli]") {
  auto r = run_cli({"run", "loan_approval", "--workflows", "8"});
  INFO(r.out << r.err);
  CHECK(r.code == troupe::cli::exit_ok);
  CHECK_THAT(r.out, Catch::Contains("loan_approval: 8 applications"));
  CHECK_THAT(r.out, Catch::Contains("credit_check(1 timeout) -> credit_fallback(1)"));
  CHECK_THAT(r.out, Catch::Contains("approval["));
  CHECK_THAT(r.out, Catch::Contains("unsettled         0"));
  CHECK(r.err.empty());
}

TEST_CASE("cli runs triage against a real model server with --provider", "[tools][cli]") {
  troupe::testing::fake_model_server server;
  troupe::testing::fake_response answer; // fits all three agents
  answer.text = R"({"customer": "Ada", "product": "router", "category": "network",)"
                R"( "problem": "drops", "severity": "high", "confidence": 0.9,)"
                R"( "headline": "Router drops connections"})";
  server.set_default(answer);
  auto r = run_cli({"run", "triage", "--workflows", "2", "--provider", "openai", "--base-url",
                    server.base_url(), "--model", "fake-1", "--api-key-env", "", "--price",
                    "1000,2000"});
  INFO(r.out << r.err);
  CHECK(r.code == troupe::cli::exit_ok);
  CHECK_THAT(r.out, Catch::Contains("2 tickets"));
  CHECK(server.count() == 6); // extract, analyze, report per ticket
  // each reply: 11 prompt tokens at $1000/M + 7 completion tokens at $2000/M
  CHECK_THAT(r.out, Catch::Contains("$0.150000"));
  auto first = server.received().at(0);
  CHECK(first.path == "/v1/chat/completions");
  CHECK(first.headers.count("authorization") == 0);
}

TEST_CASE("cli refuses provider flags that do not fit together", "[tools][cli]") {
  struct bad {
    std::vector<std::string> args;
    const char* says;
  };
  std::vector<bad> cases = {
      {{"run", "triage", "--model", "m"}, "need --provider"},
      {{"run", "triage", "--price", "1,2"}, "need --provider"},
      {{"run", "triage", "--provider", "openai", "--model", "m", "--price", "1"},
       "--price takes two numbers"},
      {{"run", "triage", "--provider", "openai", "--model", "m", "--price", "1,-2"}, "--price"},
      {{"run", "triage", "--provider", "openai"}, "--provider needs --model"},
      {{"run", "triage", "--provider", "mistral", "--model", "m"}, "--provider"},
      {{"run", "triage", "--provider", "openai", "--model", "m", "--base-url", "localhost:1"},
       "base_url must start with http"},
      {{"run", "supervision_tree", "--workflows", "3"},
       "--workflows does not apply to the supervision_tree example"},
      {{"run", "ledger", "--journal", "j", "--ledger", "l", "--provider", "openai", "--model",
        "m"},
       "triage example only"},
      {{"run", "order_processing", "--journal", "j"},
       "--journal does not apply to the order_processing example"},
      {{"run", "order_processing", "--provider", "openai", "--model", "m"},
       "does not apply to the order_processing example"},
      {{"run", "loan_approval", "--fail-rate", "0.1"},
       "--fail-rate does not apply to the loan_approval example"},
      {{"run", "loan_approval", "--ledger", "l"},
       "--ledger does not apply to the loan_approval example"},
      {{"run", "loan_approval", "--workflows", "0"}, "--workflows"},
  };
  for (const auto& c : cases) {
    auto r = run_cli(c.args);
    INFO(r.err);
    CHECK(r.code == troupe::cli::exit_usage);
    CHECK_THAT(r.err, Catch::Contains(c.says));
    CHECK(r.out.empty());
  }
}

namespace {

/// A journal with one workflow finished long ago, one finished just now and
/// one still open; returns the path.
std::string seeded_journal(const troupe::testing::temp_dir& dir) {
  using namespace troupe;
  auto path = dir.file("journal.db");
  auto store = open_sqlite_journal({path});
  REQUIRE(store);
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::system_clock::now().time_since_epoch())
                 .count();
  auto write = [&](const std::string& id, const std::string& status, int64_t updated) {
    journal_write w;
    workflow_row r;
    r.id = id;
    r.definition = "triage";
    r.status = status;
    r.created_ns = updated;
    r.updated_ns = updated;
    w.workflow.push_back(r);
    journal_record e;
    e.workflow_id = id;
    e.wf_seq = 1;
    e.kind = "workflow_started";
    e.at_ns = updated;
    e.payload = R"({"input":{},"seed":1})";
    w.events.push_back(e);
    return w;
  };
  int64_t day = 86'400'000'000'000;
  std::vector<journal_write> batch{write("old", "completed", now - 40 * day),
                                   write("recent", "completed", now - day),
                                   write("open", "running", now - 40 * day)};
  REQUIRE_FALSE((*store)->append(batch));
  return path; // the store closes here, releasing the file
}

} // namespace

TEST_CASE("journal purge deletes finished workflows older than the age and keeps the rest",
          "[tools][cli]") {
  troupe::testing::temp_dir dir;
  auto path = seeded_journal(dir);
  auto r = run_cli({"journal", "purge", "--journal", path, "--older-than", "30d"});
  INFO(r.out << r.err);
  REQUIRE(r.code == troupe::cli::exit_ok);
  CHECK_THAT(r.out, Catch::Contains("purged 1 finished workflow "));
  auto store = troupe::open_sqlite_journal({path});
  REQUIRE(store);
  CHECK(troupe::is((*store)->workflow("old").error(), troupe::errc::unknown_workflow));
  CHECK((*store)->workflow("recent"));
  CHECK((*store)->workflow("open"));
  store->reset();
  auto all = run_cli({"journal", "purge", "--journal", path, "--older-than", "0s"});
  CHECK(all.code == troupe::cli::exit_ok);
  CHECK_THAT(all.out, Catch::Contains("purged 1 finished workflow ")); // recent; open stays
}

TEST_CASE("troupe purge deletes in batches, oldest first, and says how many went after each",
          "[tools][cli]") {
  troupe::testing::temp_dir dir;
  auto path = dir.file("journal.db");
  {
    auto store = troupe::open_sqlite_journal({path});
    REQUIRE(store);
    std::vector<troupe::journal_write> batch;
    for (int i = 0; i < 5; ++i) {
      troupe::journal_write w;
      troupe::workflow_row r;
      r.id = "done-" + std::to_string(i);
      r.definition = "triage";
      r.status = "completed";
      r.created_ns = r.updated_ns = 1000 + i;
      w.workflow.push_back(r);
      troupe::journal_record e;
      e.workflow_id = r.id;
      e.wf_seq = 1;
      e.kind = "workflow_started";
      e.payload = R"({"input":{},"seed":1})";
      w.events.push_back(e);
      batch.push_back(std::move(w));
    }
    REQUIRE_FALSE((*store)->append(batch));
  }
  auto r = run_cli({"purge", "--journal", path, "--older-than", "0s", "--batch", "2"});
  INFO(r.out << r.err);
  REQUIRE(r.code == troupe::cli::exit_ok);
  CHECK(r.err == "troupe purge: 2 purged so far\ntroupe purge: 4 purged so far\n");
  CHECK_THAT(r.out, Catch::StartsWith("purged 5 finished workflows "));
  auto store = troupe::open_sqlite_journal({path});
  REQUIRE(store);
  auto n = (*store)->count_workflows();
  REQUIRE(n);
  CHECK(n->total() == 0);
  store->reset();
  auto bad = run_cli({"purge", "--journal", path, "--older-than", "0s", "--batch", "0"});
  CHECK(bad.code == troupe::cli::exit_usage);
  CHECK_THAT(bad.err, Catch::Contains("--batch"));
}

TEST_CASE("journal purge refuses a bad age, a missing file and a journal in use, changing "
          "nothing", "[tools][cli]") {
  troupe::testing::temp_dir dir;
  auto path = seeded_journal(dir);
  for (const char* bad : {"30", "d", "-1d", "1w", "1.5h", "99999999d", ""}) {
    auto r = run_cli({"journal", "purge", "--journal", path, "--older-than", bad});
    CAPTURE(bad);
    CHECK(r.code == troupe::cli::exit_usage);
    CHECK_THAT(r.err, Catch::Contains("--older-than"));
  }
  auto missing = run_cli({"journal", "purge", "--journal", dir.file("nope.db"), "--older-than",
                          "1d"});
  CHECK(missing.code == troupe::cli::exit_failed);
  CHECK_THAT(missing.err, Catch::Contains("nope.db") && Catch::Contains("does not exist"));
  CHECK(dir.files() == std::vector<std::string>{"journal.db"}); // nothing created
  {
    auto held = troupe::open_sqlite_journal({path}); // a runtime has it open
    REQUIRE(held);
    auto locked = run_cli({"journal", "purge", "--journal", path, "--older-than", "0s"});
    CHECK(locked.code == troupe::cli::exit_failed);
    CHECK_THAT(locked.err, Catch::Contains("locked"));
  }
  auto store = troupe::open_sqlite_journal({path});
  REQUIRE(store);
  CHECK((*store)->workflow("old")); // every refusal above left it alone
  auto usage = run_cli({"journal", "purge", "--older-than", "1d"});
  CHECK(usage.code == troupe::cli::exit_usage);
  CHECK_THAT(usage.err, Catch::Contains("--journal"));
}

namespace {

/// Registers agent "flaky" (crashes while `broken`) and definition "flaky"
/// (node "call", 2 attempts, no route for a failure: it dead-letters).
void register_flaky(troupe::runtime& rt, std::atomic<bool>& broken) {
  using namespace troupe;
  REQUIRE_FALSE(rt.register_agent("flaky", [&broken](step_context& ctx) {
    if (broken)
      return ctx.fail(failure_kind::crashed, "upstream down");
    ctx.finish({});
  }));
  agent_policy p;
  p.retry.max_attempts = 2;
  p.retry.base_backoff = std::chrono::milliseconds{1};
  p.retry.max_backoff = std::chrono::milliseconds{1};
  REQUIRE_FALSE(rt.register_definition(
    *definition_builder{"flaky"}.agent("call", "flaky", p).on("ok", "done").completed("done")
       .build()));
}

/// A journal at `dir`/dlq.db with two workflows of "flaky" dead-lettered
/// (their agent crashes while `broken`). Returns the path and their ids.
std::pair<std::string, std::vector<std::string>> dead_lettered_journal(
    troupe::testing::temp_dir& dir, std::atomic<bool>& broken) {
  using namespace troupe;
  auto path = dir.file("dlq.db");
  auto store = open_sqlite_journal({path});
  REQUIRE(store);
  config cfg;
  cfg.journal = *store;
  runtime rt{cfg};
  register_flaky(rt, broken);
  std::vector<std::string> ids;
  for (int i = 0; i < 2; ++i) {
    auto id = rt.start("flaky", {{"n", i}});
    REQUIRE(id);
    REQUIRE(rt.await(*id, std::chrono::seconds{10})->status == workflow_status::dead_lettered);
    ids.push_back(*id);
  }
  return {path, ids};
}

} // namespace

TEST_CASE("dlq list and show print the dead letters of a journal, as text or JSON",
          "[tools][cli][dead_letter]") {
  troupe::testing::temp_dir dir;
  std::atomic<bool> broken{true};
  auto [path, ids] = dead_lettered_journal(dir, broken);
  auto list = run_cli({"dlq", "list", "--journal", path});
  INFO(list.out << list.err);
  REQUIRE(list.code == troupe::cli::exit_ok);
  CHECK_THAT(list.out, Catch::Contains(ids[0] + "  flaky  at 'call'  exhausted")
                         && Catch::Contains(ids[1])
                         && Catch::Contains("node 'call' attempt 2: crashed: upstream down")
                         && Catch::Contains("2 workflows in dead letter"));
  auto json = run_cli({"dlq", "list", "--journal", path, "--json"});
  REQUIRE(json.code == troupe::cli::exit_ok);
  std::istringstream lines{json.out};
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    CHECK(j.at("outcome") == "exhausted");
    CHECK(j.at("node") == "call");
    ++n;
  }
  CHECK(n == 2);
  auto show = run_cli({"dlq", "show", ids[0], "--journal", path});
  REQUIRE(show.code == troupe::cli::exit_ok);
  CHECK_THAT(show.out, Catch::Contains(ids[0] + " (flaky v1): dead_lettered")
                         && Catch::Contains("dead-lettered ")
                         && Catch::Contains("#1  ") && Catch::Contains("workflow_started"));
  auto show_json = run_cli({"dlq", "show", ids[0], "--journal", path, "--json"});
  REQUIRE(show_json.code == troupe::cli::exit_ok);
  auto j = nlohmann::json::parse(show_json.out);
  CHECK(j.at("status") == "dead_lettered");
  CHECK(j.at("dead_letters").size() == 1);
  CHECK(j.at("events").size() >= 5);
}

TEST_CASE("dlq retry and drop journal the operator's action, and a runtime recovering the journal "
          "carries the retry out",
          "[tools][cli][dead_letter]") {
  troupe::testing::temp_dir dir;
  std::atomic<bool> broken{true};
  auto [path, ids] = dead_lettered_journal(dir, broken);
  auto retry = run_cli({"dlq", "retry", ids[0], "--journal", path, "--by", "ann", "--steps",
                        "3", "--time", "1h"});
  INFO(retry.out << retry.err);
  REQUIRE(retry.code == troupe::cli::exit_ok);
  CHECK_THAT(retry.out, Catch::Contains("will retry when a runtime next recovers"));
  auto drop = run_cli({"dlq", "drop", ids[1], "--journal", path, "--by", "ann", "--reason",
                       "obsolete"});
  REQUIRE(drop.code == troupe::cli::exit_ok);
  auto twice = run_cli({"dlq", "drop", ids[1], "--journal", path, "--by", "ann", "--reason",
                        "again"});
  CHECK(twice.code == troupe::cli::exit_failed);
  CHECK_THAT(twice.err, Catch::Contains("is failed, not dead-lettered"));
  auto list = run_cli({"dlq", "list", "--journal", path});
  CHECK_THAT(list.out, Catch::Contains("0 workflows in dead letter"));

  using namespace troupe;
  broken = false;
  auto store = open_sqlite_journal({path});
  REQUIRE(store);
  config cfg;
  cfg.journal = *store;
  runtime rt{cfg};
  register_flaky(rt, broken);
  REQUIRE(rt.recover()->resumed == 1);
  auto done = rt.await(ids[0], std::chrono::seconds{10});
  REQUIRE(done);
  CHECK(done->status == workflow_status::completed);
  auto history = rt.history(ids[0]);
  REQUIRE(history);
  bool by_ann = false;
  for (auto& r : *history)
    by_ann = by_ann || (r.kind == "dlq_retried" && r.payload.find("\"by\":\"ann\"") != std::string::npos
                        && r.payload.find("\"grant_steps\":3") != std::string::npos
                        && r.payload.find("\"grant_time_ns\":3600000000000") != std::string::npos);
  CHECK(by_ann);
  CHECK(rt.status(ids[1])->outcome == "dropped");
}

TEST_CASE("dlq refuses bad flags, unknown ids and missing files, changing nothing",
          "[tools][cli][dead_letter]") {
  troupe::testing::temp_dir dir;
  std::atomic<bool> broken{true};
  auto [path, ids] = dead_lettered_journal(dir, broken);
  struct bad {
    std::vector<std::string> args;
    const char* says;
  };
  std::vector<bad> usage = {
      {{"dlq", "retry", ids[0], "--journal", path}, "--by"},
      {{"dlq", "retry", ids[0], "--journal", path, "--by", "a", "--cost", "-1"}, "--cost"},
      {{"dlq", "retry", ids[0], "--journal", path, "--by", "a", "--time", "soon"}, "--time"},
      {{"dlq", "retry", ids[0], "--journal", path, "--by", "a", "--steps", "-2"}, "--steps"},
      {{"dlq", "drop", ids[0], "--journal", path, "--by", "a"}, "--reason"},
      {{"dlq", "list"}, "--journal"},
      {{"dlq", "show", "--journal", path}, "id"},
      {{"dlq"}, "subcommand"},
  };
  for (auto& c : usage) {
    auto r = run_cli(c.args);
    CAPTURE(c.says, r.err);
    CHECK(r.code == troupe::cli::exit_usage);
    CHECK_THAT(r.err, Catch::Contains(c.says));
  }
  auto unknown = run_cli({"dlq", "retry", "flaky-none", "--journal", path, "--by", "a"});
  CHECK(unknown.code == troupe::cli::exit_failed);
  CHECK_THAT(unknown.err, Catch::Contains("flaky-none"));
  auto missing = run_cli({"dlq", "list", "--journal", dir.file("nope.db")});
  CHECK(missing.code == troupe::cli::exit_failed);
  CHECK_THAT(missing.err, Catch::Contains("does not exist"));
  auto list = run_cli({"dlq", "list", "--journal", path});
  CHECK_THAT(list.out, Catch::Contains("2 workflows in dead letter"));
}
