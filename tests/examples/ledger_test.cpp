// Tests of the ledger example in-process: its graph, its deterministic
// orders, the payment ledger's dedupe, a second run on the same files that
// starts and charges nothing new, two clean runs that agree, and the flags
// of `troupe run ledger`. The
// crash-and-restart cases run it as a process (tests/crash/). Real runtime,
// real threads; a run of 20 orders takes well under a second.
#include <catch2/catch.hpp>

#include "support/temp_dir.hpp"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "ledger/ledger.hpp"
#include "tools/cli.hpp"
#include "troupe/errors.hpp"
#include "troupe/journal.hpp"

using namespace troupe;
using namespace troupe::examples;
using json = nlohmann::json;

namespace {

using troupe::testing::temp_dir;

ledger_options small_run(const temp_dir& dir, const char* out) {
  ledger_options opt;
  opt.journal_path = dir.file("journal.db");
  opt.ledger_path = dir.file("ledger.db");
  opt.out_path = dir.file(out);
  opt.workflows = 20;
  opt.seed = 7;
  opt.fail_rate = 0.2; // some retries
  opt.await_timeout = std::chrono::seconds{20};
  return opt;
}

/// The results file as key -> line.
std::map<std::string, json> results_of(const std::string& path) {
  std::map<std::string, json> by_key;
  std::ifstream in{path};
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line);
    by_key[j.at("key").get<std::string>()] = j;
  }
  return by_key;
}

std::vector<ledger_charge> charges_of(const std::string& path) {
  auto ledger = payment_ledger::open(path);
  REQUIRE(ledger);
  auto rows = (*ledger)->charges();
  REQUIRE(rows);
  return *rows;
}

} // namespace

TEST_CASE("ledger definition builds: quote -> charge -> confirm -> done", "[examples][ledger]") {
  auto def = ledger_definition();
  REQUIRE(def);
  CHECK(def->start == "quote");
  CHECK(def->find("quote")->routes.at("ok") == "charge");
  CHECK(def->find("quote")->routes.at("over_limit") == "rejected");
  CHECK(def->find("charge")->routes.at("ok") == "confirm");
  CHECK(def->find("confirm")->routes.at("ok") == "done");
  for (const char* n : {"quote", "charge", "confirm"})
    CHECK(def->find(n)->routes.at(outcome::exhausted) == "failed");
}

TEST_CASE("ledger orders are deterministic per index and seed", "[examples][ledger]") {
  CHECK(ledger_order(3, 7) == ledger_order(3, 7));
  CHECK(ledger_order(3, 7) != ledger_order(4, 7));
  CHECK(ledger_order(3, 7).at("order") == "order-3");
  CHECK_FALSE(ledger_order(3, 7).at("items").empty());
  CHECK(ledger_order_key(12) == "order-12");
}

TEST_CASE("payment ledger charges a key once and counts repeats", "[examples][ledger]") {
  temp_dir dir;
  auto ledger = payment_ledger::open(dir.file("ledger.db"));
  REQUIRE(ledger);
  auto first = (*ledger)->charge("wf-1/charge#1/charge", "wf-1", 1200, "order-1/charge#1/charge");
  REQUIRE(first);
  auto again = (*ledger)->charge("wf-1/charge#1/charge", "wf-1", 9999, "something else");
  REQUIRE(again);
  CHECK(*again == *first); // the stored charge, not a new one
  CHECK(first->at("amount") == 1200);
  CHECK(first->at("receipt").get<std::string>().rfind("rcpt-", 0) == 0);
  auto other = (*ledger)->charge("wf-2/charge#1/charge", "wf-2", 500, "order-2/charge#1/charge");
  REQUIRE(other);
  CHECK(other->at("receipt") != first->at("receipt"));
  ledger->reset();

  auto rows = charges_of(dir.file("ledger.db")); // what a reopen finds
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].key == "wf-1/charge#1/charge");
  CHECK(rows[0].calls == 2);
  CHECK(rows[0].amount == 1200);
  CHECK(rows[1].calls == 1);
}

TEST_CASE("payment ledger refuses a file that is not SQLite, naming it", "[examples][ledger]") {
  temp_dir dir;
  std::ofstream{dir.file("junk.db")} << std::string(4096, 'x');
  auto ledger = payment_ledger::open(dir.file("junk.db"));
  REQUIRE_FALSE(ledger);
  CHECK_THAT(describe(ledger.error()), Catch::Contains("junk.db"));
}

TEST_CASE("ledger run twice on the same files starts nothing new and charges nothing twice",
          "[examples][ledger]") {
  temp_dir dir;
  auto opt = small_run(dir, "first.jsonl");
  std::ostringstream out1;
  REQUIRE(run_ledger(opt, out1) == 0);
  INFO(out1.str());
  CHECK_THAT(out1.str(), Catch::Contains("recovered: resumed=0 parked=0 quarantined=0"));
  auto first = results_of(opt.out_path);
  REQUIRE(first.size() == opt.workflows);
  auto rows = charges_of(opt.ledger_path);

  size_t completed = 0;
  for (const auto& [key, r] : first) {
    INFO(r.dump());
    CHECK((r.at("status") == "completed" || r.at("status") == "failed"));
    if (r.at("status") == "completed") {
      ++completed;
      CHECK(r.at("node") == "done");
      CHECK(r.at("state").at("charge").at("receipt").get<std::string>().rfind("rcpt-", 0) == 0);
      CHECK(r.at("state").at("confirmation").is_string());
    } else {
      CHECK(r.at("node") == "rejected"); // over the price limit, never charged
      CHECK(r.at("state").at("quote").at("price").get<int64_t>() > ledger_price_limit);
      CHECK_FALSE(r.at("state").contains("charge"));
    }
  }
  CHECK(completed > 0);
  CHECK(rows.size() == completed);
  for (const auto& row : rows)
    CHECK(row.calls == 1);

  opt.out_path = dir.file("second.jsonl");
  std::ostringstream out2;
  REQUIRE(run_ledger(opt, out2) == 0);
  INFO(out2.str());
  CHECK_THAT(out2.str(), Catch::Contains("recovered: resumed=0 parked=0 quarantined=0"));
  auto second = results_of(opt.out_path);
  CHECK(second == first); // the same ids, states and outcomes: nothing started again
  auto rows2 = charges_of(opt.ledger_path);
  REQUIRE(rows2.size() == rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    CHECK(rows2[i].key == rows[i].key);
    CHECK(rows2[i].calls == 1);
  }

  auto journal = open_sqlite_journal({opt.journal_path, "full", ""});
  REQUIRE(journal);
  auto open = (*journal)->open_workflows();
  REQUIRE(open);
  CHECK(open->empty());
  for (const auto& [key, r] : first) {
    auto id = (*journal)->find_key(key);
    REQUIRE(id);
    CHECK(*id == r.at("id").get<std::string>());
  }
  for (const auto& row : rows) {
    auto effect = (*journal)->effect(row.key);
    REQUIRE(effect);
    REQUIRE(effect->size() == 1);
    CHECK(json::parse(effect->front().result).at("receipt") == row.receipt);
  }
}

TEST_CASE("two clean ledger runs end every order alike", "[examples][ledger]") {
  temp_dir a, b;
  std::ostringstream out;
  REQUIRE(run_ledger(small_run(a, "results.jsonl"), out) == 0);
  REQUIRE(run_ledger(small_run(b, "results.jsonl"), out) == 0);
  auto ra = results_of(a.file("results.jsonl"));
  auto rb = results_of(b.file("results.jsonl"));
  REQUIRE(ra.size() == rb.size());
  for (auto& [key, r] : ra) {
    INFO(key);
    REQUIRE(rb.count(key) == 1);
    CHECK(r.at("id") != rb.at(key).at("id")); // fresh workflow ids ...
    r.erase("id");
    rb.at(key).erase("id");
    CHECK(r == rb.at(key)); // ... and otherwise the same ending
  }
}

TEST_CASE("troupe run ledger refuses bad flags naming the flag", "[examples][ledger][cli]") {
  struct bad {
    std::vector<std::string> args;
    const char* flag;
  };
  std::vector<bad> cases = {
      {{"run", "ledger", "--ledger", "l.db"}, "--journal"},
      {{"run", "ledger", "--journal", "j.db"}, "--ledger"},
      {{"run", "ledger", "--journal", "", "--ledger", "l.db"}, "--journal"},
      {{"run", "ledger", "--journal", "j.db", "--ledger", "l.db", "--kill-at-sync", "0"},
       "--kill-at-sync"},
      {{"run", "ledger", "--journal", "j.db", "--ledger", "l.db", "--kill-at-sync", "x"},
       "--kill-at-sync"},
      {{"run", "ledger", "--journal", "j.db", "--ledger", "l.db", "--timeout-rate", "0.1"},
       "--timeout-rate"},
      {{"run", "ledger", "--journal", "j.db", "--ledger", "l.db", "--out"}, "--out"},
      {{"run", "triage", "--journal", "j.db"}, "--journal"},
      {{"run", "triage", "--kill-at-sync", "3"}, "--kill-at-sync"},
  };
  for (auto& c : cases) {
    c.args.insert(c.args.begin(), "troupe");
    std::ostringstream out, err;
    int code = troupe::cli::run(c.args, out, err);
    INFO(c.flag << " -> " << err.str());
    CHECK(code == troupe::cli::exit_usage);
    CHECK_THAT(err.str(), Catch::Contains(c.flag));
    CHECK(out.str().empty()); // nothing ran
  }
}

TEST_CASE("troupe run ledger runs a small batch and writes its results",
          "[examples][ledger][cli]") {
  temp_dir dir;
  std::ostringstream out, err;
  int code = troupe::cli::run({"troupe", "run", "ledger", "--journal", dir.file("j.db"),
                               "--ledger", dir.file("l.db"), "--workflows", "3", "--seed", "5",
                               "--out", dir.file("r.jsonl")},
                              out, err);
  INFO(out.str() << err.str());
  CHECK(code == troupe::cli::exit_ok);
  CHECK_THAT(out.str(), Catch::Contains("3 orders"));
  CHECK(err.str().empty());
  CHECK(results_of(dir.file("r.jsonl")).size() == 3);
}
