// `troupe serve`: its flags and token check through the CLI's command
// logic, a served runtime through cli::serve() with a stop hook, and the
// real binary stopped by SIGTERM and SIGINT, its journal recovered by the
// next run. Nothing sleeps: the tests read the server's own output, and
// wait for workflows with the API's long poll.
#include <catch2/catch.hpp>

#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <string>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/child_process.hpp"
#include "support/temp_dir.hpp"
#include "support/cli_run.hpp"
#include "tools/cli.hpp"
#include "tools/serve.hpp"
#include "troupe/hash.hpp"
#include "troupe/journal.hpp"

using namespace troupe;
using json = nlohmann::json;
using Catch::Matchers::Contains;
using troupe::testing::child_process;
using troupe::testing::temp_dir;

namespace {

const std::string token = "serve-test-token";

using troupe::testing::run_cli;

/// A ticket the scripted analyzer rates low: the workflow parks at review.
std::string parking_ticket() {
  for (int i = 0;; ++i) {
    auto t = "Ticket #" + std::to_string(i) + " from acme about the sso login: login loops.";
    if (fnv1a(t) % 85 < 15)
      return t;
  }
}

/// An API client of a served runtime at `port`.
struct api {
  explicit api(uint16_t port) : cli("127.0.0.1", port) {
    cli.set_read_timeout(30, 0);
    headers = {{"Authorization", "Bearer " + token}};
  }
  json get(const std::string& path) {
    auto r = cli.Get(path.c_str(), headers);
    REQUIRE(r);
    INFO(path << " -> " << r->status << " " << r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  }
  json post(const std::string& path, const json& body) {
    auto r = cli.Post(path.c_str(), headers, body.dump(), "application/json");
    REQUIRE(r);
    INFO(path << " -> " << r->status << " " << r->body);
    REQUIRE(r->status == 200);
    return json::parse(r->body);
  }
  /// Waits (long polls on the journal's changes) until workflow `id` has
  /// `status`, for 30 s at most.
  void await_status(const std::string& id, const std::string& status) {
    using namespace std::chrono;
    auto deadline = steady_clock::now() + seconds{30};
    uint64_t version = 0;
    std::string now;
    while (steady_clock::now() < deadline) {
      now = get("/api/workflows/" + id)["status"].get<std::string>();
      if (now == status)
        return;
      auto left = duration_cast<milliseconds>(deadline - steady_clock::now()).count();
      version = get("/api/changes?after=" + std::to_string(version) + "&wait_ms="
                    + std::to_string(std::clamp<long long>(left, 0, 20000)))["version"]
                  .get<uint64_t>();
    }
    FAIL("workflow " << id << " is " << now << " after 30 s, not " << status);
  }
  httplib::Client cli;
  httplib::Headers headers;
};

/// The port in serve's "dashboard and API on http://host:port/" line.
uint16_t port_of(const std::string& line) {
  auto at = line.find("http://127.0.0.1:");
  REQUIRE(at != std::string::npos);
  return static_cast<uint16_t>(std::stoul(line.substr(at + 17)));
}

} // namespace

TEST_CASE("troupe serve refuses bad flags with one line naming the flag", "[tools][serve]") {
  struct bad {
    std::vector<std::string> args;
    const char* flag;
  };
  std::vector<bad> cases = {
    {{"serve"}, "--journal"},
    {{"serve", "--journal", ""}, "--journal"},
    {{"serve", "--journal", "j.db", "--listen", "nope"}, "--listen"},
    {{"serve", "--journal", "j.db", "--listen", "127.0.0.1:70000"}, "--listen"},
    {{"serve", "--journal", "j.db", "--listen", ":8080"}, "--listen"},
    {{"serve", "--journal", "j.db", "--listen", "::1:8080"}, "--listen"},
    {{"serve", "--journal", "j.db", "--example", "ledger"}, "--example"},
    {{"serve", "--journal", "j.db", "--threads", "0"}, "--threads"},
    {{"serve", "--journal", "j.db", "--workflows", "3"}, "--workflows"},
  };
  for (const auto& c : cases) {
    auto r = run_cli(c.args);
    INFO(c.args.back() << " -> " << r.err);
    CHECK(r.code == cli::exit_usage);
    CHECK_THAT(r.err, Contains(c.flag));
    CHECK(std::count(r.err.begin(), r.err.end(), '\n') <= 2); // the error, maybe a help hint
    CHECK_FALSE(std::filesystem::exists("j.db"));
  }
}

TEST_CASE("troupe serve parses HOST:PORT", "[tools][serve]") {
  std::string host;
  uint16_t port = 1;
  CHECK(cli::parse_listen("127.0.0.1:0", host, port).empty());
  CHECK((host == "127.0.0.1" && port == 0));
  CHECK(cli::parse_listen("[::1]:8080", host, port).empty());
  CHECK((host == "::1" && port == 8080));
  CHECK(cli::parse_listen("localhost:65535", host, port).empty());
  CHECK(port == 65535);
  CHECK_THAT(cli::parse_listen("localhost", host, port), Contains("no port"));
  CHECK_THAT(cli::parse_listen("localhost:-1", host, port), Contains("0 to 65535"));
}

TEST_CASE("troupe serve does not start without TROUPE_ADMIN_TOKEN and says so",
          "[tools][serve]") {
  temp_dir dir;
  unsetenv("TROUPE_ADMIN_TOKEN");
  auto r = run_cli({"serve", "--journal", dir.file("j.db")});
  CHECK(r.code == cli::exit_usage);
  CHECK_THAT(r.err, Contains("TROUPE_ADMIN_TOKEN is not set"));
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(dir.files().empty()); // no journal made
  setenv("TROUPE_ADMIN_TOKEN", "", 1);
  r = run_cli({"serve", "--journal", dir.file("j.db")});
  CHECK(r.code == cli::exit_usage);
  CHECK_THAT(r.err, Contains("TROUPE_ADMIN_TOKEN"));
  unsetenv("TROUPE_ADMIN_TOKEN");
}

TEST_CASE("troupe serve serves the triage example on its journal until told to stop",
          "[tools][serve]") {
  temp_dir dir;
  std::string id;
  cli::serve_options o;
  o.journal = dir.file("journal.db");
  o.port = 0;
  o.token = token;
  o.wait = [&](const std::string& url) {
    CHECK_THAT(url, Contains("http://127.0.0.1:"));
    api a{port_of(url)};
    CHECK(a.get("/api/definitions")["definitions"][0]["name"] == "triage");
    id = a.post("/api/workflows", {{"definition", "triage"},
                                   {"input", {{"ticket", parking_ticket()}}}})["id"]
           .get<std::string>();
    a.await_status(id, "parked");
  };
  std::ostringstream out, err;
  CHECK(cli::serve(o, out, err) == cli::exit_ok);
  CHECK(err.str().empty());
  CHECK_THAT(out.str(), Contains("0 resumed, 0 parked at a gate, 0 quarantined"));
  CHECK_THAT(out.str(), Contains("#token=<TROUPE_ADMIN_TOKEN>"));
  CHECK(out.str().find(token) == std::string::npos); // never printed
  CHECK_THAT(out.str(), Contains("troupe serve: stopped"));

  // The next serve recovers the parked workflow from the journal.
  o.wait = [&](const std::string& url) {
    api a{port_of(url)};
    a.post("/api/workflows/" + id + "/signal",
           {{"gate", "review"}, {"verdict", "approve"}, {"by", "tester"}});
    a.await_status(id, "completed");
  };
  std::ostringstream out2, err2;
  CHECK(cli::serve(o, out2, err2) == cli::exit_ok);
  CHECK_THAT(out2.str(), Contains("0 resumed, 1 parked at a gate, 0 quarantined"));

  // A journal another process holds is refused with the journal's error.
  sqlite_journal_options jo;
  jo.path = o.journal;
  auto held = open_sqlite_journal(jo);
  REQUIRE(held);
  std::ostringstream out3, err3;
  CHECK(cli::serve(o, out3, err3) == cli::exit_failed);
  CHECK_THAT(err3.str(), Contains("journal_unusable"));
}

TEST_CASE("the troupe binary serves until SIGTERM, and the next run recovers its journal",
          "[tools][serve]") {
  temp_dir dir;
  auto journal = dir.file("journal.db");
  std::vector<std::string> argv = {TROUPE_CLI_PATH, "serve", "--journal", journal, "--listen",
                                   "127.0.0.1:0"};
  std::string id;
  {
    child_process serve{argv, {"TROUPE_ADMIN_TOKEN=" + token}};
    std::string seen;
    auto line = serve.read_until("dashboard and API on", seen);
    INFO(seen);
    REQUIRE_FALSE(line.empty());
    api a{port_of(line)};
    id = a.post("/api/workflows", {{"definition", "triage"},
                                   {"input", {{"ticket", parking_ticket()}}}})["id"]
           .get<std::string>();
    a.await_status(id, "parked");
    serve.signal(SIGTERM);
    CHECK_FALSE(serve.read_until("SIGTERM: stopping", seen).empty());
    CHECK_FALSE(serve.read_until("stopped", seen).empty());
    CHECK(serve.wait() == 0);
  }
  {
    child_process serve{argv, {"TROUPE_ADMIN_TOKEN=" + token}};
    std::string seen;
    CHECK_FALSE(serve.read_until("1 parked at a gate", seen).empty());
    auto line = serve.read_until("dashboard and API on", seen);
    INFO(seen);
    REQUIRE_FALSE(line.empty());
    api a{port_of(line)};
    a.post("/api/workflows/" + id + "/signal",
           {{"gate", "review"}, {"verdict", "approve"}, {"by", "tester"}});
    a.await_status(id, "completed");
    serve.signal(SIGINT);
    CHECK_FALSE(serve.read_until("SIGINT: stopping", seen).empty());
    CHECK(serve.wait() == 0);
  }
  sqlite_journal_options jo;
  jo.path = journal;
  auto store = open_sqlite_journal(jo);
  REQUIRE(store);
  CHECK((*store)->workflow(id)->status == "completed");
  // Without the token the binary refuses to start, naming the variable.
  child_process refused{argv, {"TROUPE_ADMIN_TOKEN"}};
  CHECK(refused.wait() == cli::exit_usage);
}
