// The admin server's HTTP API end to end: a runtime with an in-memory
// journal (the triage example, and a definition that dead-letters on
// demand) behind an admin server on an ephemeral port, driven by a
// cpp-httplib client. Auth, every endpoint, the error mapping, and the
// live channel. Nothing sleeps: waits are awaits on a workflow's own
// settlement, or a long poll that the change itself answers.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "triage/triage.hpp"
#include "troupe/admin.hpp"
#include "troupe/errors.hpp"
#include "troupe/hash.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;
using json = nlohmann::json;
using Catch::Matchers::Contains;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken
const std::string token = "test-token-3f9a";

/// A triage ticket that the scripted analyzer rates below the confidence
/// threshold (so the workflow parks at review), or above it.
std::string ticket(bool parks, int n = 0) {
  for (int i = 0;; ++i) {
    auto t = "Ticket #" + std::to_string(n) + "." + std::to_string(i)
             + " from acme about the public api: webhooks arrive twice.";
    // triage_agents.cpp: confidence = 0.15 + (fnv1a(ticket) % 85) / 100
    bool low = fnv1a(t) % 85 < 15;
    if (low == parks)
      return t;
  }
}

/// An HTTP answer: status and body parsed as JSON (null if not JSON).
struct answer {
  int status = 0;
  json body;
  std::string text;
  std::string content_type;
};

struct fixture {
  fixture() {
    examples::triage_options o;
    o.fail_rate = o.timeout_rate = o.malformed_rate = 0;
    rt = std::make_unique<runtime>(examples::triage_config(o));
    REQUIRE_FALSE(examples::register_triage(*rt, 5000ms));
    REQUIRE_FALSE(rt->register_agent("fragile", [this](step_context& ctx) {
      if (broken)
        return ctx.fail(failure_kind::crashed, "the service is down");
      ctx.finish({});
    }));
    agent_policy p;
    p.timeout = 5s;
    p.retry.max_attempts = 1;
    // no "exhausted" route: a failure dead-letters the workflow
    REQUIRE_FALSE(rt->register_definition(
      *definition_builder{"fragile"}.agent("call", "fragile", p).on("ok", "done")
         .completed("done").build()));
    admin_config ac;
    ac.token = token;
    ac.metrics = [this] { return metrics_text; };
    auto s = admin_server::start(*rt, ac);
    REQUIRE(s);
    server = std::move(*s);
  }
  ~fixture() {
    server->stop(); // before the runtime it serves
    rt->shutdown();
  }

  answer call(const std::string& method, const std::string& path, const std::string& body = "",
              const std::string& auth = "Bearer " + token) {
    httplib::Client cli{"127.0.0.1", server->port()};
    cli.set_read_timeout(30, 0);
    httplib::Headers headers;
    if (!auth.empty())
      headers.emplace("Authorization", auth);
    auto res = method == "GET" ? cli.Get(path.c_str(), headers)
                               : cli.Post(path.c_str(), headers, body, "application/json");
    REQUIRE(res);
    answer a;
    a.status = res->status;
    a.text = res->body;
    a.content_type = res->get_header_value("Content-Type");
    a.body = json::parse(res->body, nullptr, false);
    return a;
  }
  answer get(const std::string& path) { return call("GET", path); }
  answer post(const std::string& path, const json& body) { return call("POST", path, body.dump()); }

  /// Starts a triage workflow through the API and waits until it parks
  /// (or finishes).
  std::string start_triage(bool parks, int n = 0) {
    auto a = post("/api/workflows", {{"definition", "triage"},
                                     {"input", {{"ticket", ticket(parks, n)}}},
                                     {"user", "ann"}});
    REQUIRE(a.status == 200);
    auto id = a.body["id"].get<std::string>();
    auto info = rt->await(id, patience, true);
    REQUIRE(info);
    REQUIRE(info->status == (parks ? workflow_status::parked : workflow_status::completed));
    return id;
  }

  /// Starts a "fragile" workflow while the agent is broken: it dead-letters.
  std::string start_dead_letter() {
    broken = true;
    auto id = rt->start("fragile", json::object());
    REQUIRE(id);
    auto info = rt->await(*id, patience);
    REQUIRE(info);
    REQUIRE(info->status == workflow_status::dead_lettered);
    return *id;
  }

  std::atomic<bool> broken{false};
  std::string metrics_text = "# TYPE troupe_up gauge\ntroupe_up 1\n";
  std::unique_ptr<runtime> rt;
  std::unique_ptr<admin_server> server;
};

/// The events of a workflow's history of `kind`, as the API gives them.
std::vector<json> events_of(const json& history, const std::string& kind) {
  std::vector<json> out;
  for (const auto& e : history["events"])
    if (e["kind"] == kind)
      out.push_back(e);
  return out;
}

} // namespace

TEST_CASE("an admin server does not start without a token or on a port it cannot have",
          "[admin]") {
  runtime rt{config{}};
  admin_config ac;
  auto none = admin_server::start(rt, ac);
  REQUIRE_FALSE(none);
  CHECK(is(none.error(), errc::invalid_config));
  CHECK_THAT(describe(none.error()), Contains("token is empty"));

  ac.token = token;
  auto first = admin_server::start(rt, ac);
  REQUIRE(first);
  CHECK((*first)->port() > 0);
  CHECK((*first)->url() == "http://127.0.0.1:" + std::to_string((*first)->port()) + "/");
  ac.port = (*first)->port(); // taken
  auto second = admin_server::start(rt, ac);
  REQUIRE_FALSE(second);
  CHECK(is(second.error(), errc::invalid_config));
  CHECK_THAT(describe(second.error()), Contains("cannot listen on 127.0.0.1:" + std::to_string(ac.port)));
  (*first)->stop();
  (*first)->stop(); // idempotent
}

TEST_CASE_METHOD(fixture, "the admin API refuses every data request without the right token",
                 "[admin]") {
  for (const char* path : {"/api/summary", "/api/workflows", "/api/workflows/x",
                           "/api/dead-letters", "/api/lanes", "/api/changes?wait_ms=0",
                           "/metrics", "/api/no-such-thing"}) {
    CAPTURE(path);
    auto missing = call("GET", path, "", "");
    CHECK(missing.status == 401);
    CHECK(missing.body["error"] == "unauthorized");
    CHECK_THAT(missing.body["message"].get<std::string>(), Contains("no bearer token"));
    auto wrong = call("GET", path, "", "Bearer " + token + "x");
    CHECK(wrong.status == 401);
    CHECK(wrong.body["message"] == "the bearer token is wrong");
    auto basic = call("GET", path, "", "Basic " + token);
    CHECK(basic.status == 401);
    CHECK_THAT(basic.body["message"].get<std::string>(), Contains("must be 'Bearer <token>'"));
    CHECK(wrong.text.find(token) == std::string::npos); // never echoed
  }
  // A refused mutation changes nothing.
  auto refused = call("POST", "/api/workflows",
                      json{{"definition", "triage"}, {"input", {{"ticket", "t"}}}}.dump(),
                      "Bearer nope");
  CHECK(refused.status == 401);
  CHECK(rt->counts()->total() == 0);
  // The page itself needs no token and holds no data.
  auto page = call("GET", "/", "", "");
  CHECK(page.status == 200);
  CHECK_THAT(page.content_type, Contains("text/html"));
  CHECK_THAT(page.text, Contains("<title>troupe</title>"));
  CHECK_THAT(page.text, Contains("/api/changes"));
  CHECK(page.text.find("http://") == std::string::npos); // nothing fetched from elsewhere
  CHECK(page.text.find("https://") == std::string::npos);
  // With the token: an unknown route is a JSON 404.
  auto unknown = get("/api/no-such-thing");
  CHECK(unknown.status == 404);
  CHECK(unknown.body["error"] == "not_found");
  CHECK(unknown.body["message"] == "no route GET /api/no-such-thing");
}

TEST_CASE_METHOD(fixture, "the admin API starts, lists and shows workflows with their timelines",
                 "[admin]") {
  auto parked = start_triage(true, 1);
  auto done = start_triage(false, 2);

  auto list = get("/api/workflows");
  REQUIRE(list.status == 200);
  REQUIRE(list.body["workflows"].size() == 2);
  CHECK(list.body["workflows"][0]["id"] == done); // newest first
  CHECK(list.body["workflows"][1]["id"] == parked);
  CHECK(list.body["workflows"][1]["status"] == "parked");
  CHECK(list.body["workflows"][1]["user"] == "ann");
  CHECK(list.body["next"].is_null());
  auto only_parked = get("/api/workflows?status=parked");
  REQUIRE(only_parked.body["workflows"].size() == 1);
  CHECK(only_parked.body["workflows"][0]["id"] == parked);
  // pages
  auto first = get("/api/workflows?limit=1");
  REQUIRE(first.body["workflows"].size() == 1);
  REQUIRE(first.body["next"].is_string());
  auto second = get("/api/workflows?limit=1&before=" + first.body["next"].get<std::string>());
  REQUIRE(second.body["workflows"].size() == 1);
  CHECK(second.body["workflows"][0]["id"] == parked);
  CHECK(second.body["next"].is_null());

  auto info = get("/api/workflows/" + parked);
  REQUIRE(info.status == 200);
  CHECK(info.body["status"] == "parked");
  CHECK(info.body["gate"] == "review");
  CHECK(info.body["definition"] == "triage");
  CHECK(info.body["state"]["needs_review"] == true);

  auto h = get("/api/workflows/" + done + "/history");
  REQUIRE(h.status == 200);
  CHECK(h.body["definition"] == "triage");
  CHECK(h.body["events"][0]["kind"] == "workflow_started");
  CHECK(h.body["events"][0]["data"]["input"]["ticket"].is_string());
  const auto& attempts = h.body["attempts"];
  REQUIRE(attempts.size() == 3);
  std::vector<std::string> agents, outcomes;
  for (const auto& a : attempts) {
    agents.push_back(a["agent"]);
    outcomes.push_back(a["outcome"]);
    CHECK(a["duration_ms"].get<double>() >= 0);
    CHECK(a["tokens"].get<uint64_t>() > 0);
    CHECK(a["ok"] == true);
  }
  CHECK(agents == std::vector<std::string>{"extractor", "analyzer", "reporter"});
  CHECK(outcomes == std::vector<std::string>{"ok", "ok", "ok"});

  auto gates = get("/api/gates");
  REQUIRE(gates.body["gates"].size() == 1);
  CHECK(gates.body["gates"][0]["id"] == parked);
  CHECK(gates.body["gates"][0]["gate"] == "review");

  auto summary = get("/api/summary");
  CHECK(summary.body["counts"]["parked"] == 1);
  CHECK(summary.body["counts"]["completed"] == 1);
  CHECK(summary.body["counts"]["total"] == 2);
  CHECK(summary.body["pending_gates"] == 1);
  CHECK(summary.body["dead_letters"] == 0);
  CHECK(summary.body["version"].get<uint64_t>() > 0);

  auto lanes = get("/api/lanes");
  REQUIRE(lanes.body["lanes"].size() >= 1);
  CHECK(lanes.body["lanes"][0]["breaker"] == "closed");
  CHECK(lanes.body["lanes"][0]["succeeded"].get<uint64_t>() >= 5);

  auto latency = get("/api/latency");
  REQUIRE(latency.status == 200);
  CHECK(latency.body["attempts"] == 5); // 3 + extract and analyze of the parked one
  std::map<std::string, uint64_t> per_agent;
  for (const auto& a : latency.body["agents"])
    per_agent[a["agent"]] = a["count"];
  CHECK(per_agent == std::map<std::string, uint64_t>{{"analyzer", 2}, {"extractor", 2},
                                                     {"reporter", 1}});

  auto defs = get("/api/definitions");
  REQUIRE(defs.body["definitions"].size() == 2);
  CHECK(defs.body["definitions"][1]["name"] == "triage");
  CHECK(defs.body["definitions"][1]["start"] == "extract");

  // The same idempotency key gives back the same workflow.
  json start = {{"definition", "triage"},
                {"input", {{"ticket", ticket(false, 3)}}},
                {"idempotency_key", "k-1"}};
  auto once = post("/api/workflows", start);
  auto again = post("/api/workflows", start);
  CHECK(once.status == 200);
  CHECK(again.body["id"] == once.body["id"]);
}

TEST_CASE_METHOD(fixture, "a gate decided through the admin API goes on", "[admin]") {
  auto id = start_triage(true);
  auto wrong_gate = post("/api/workflows/" + id + "/signal",
                         {{"gate", "analyze"}, {"verdict", "approve"}, {"by", "bob"}});
  CHECK(wrong_gate.status == 409);
  CHECK(wrong_gate.body["error"] == "bad_signal");
  CHECK(rt->status(id)->status == workflow_status::parked);

  auto ok = post("/api/workflows/" + id + "/signal",
                 {{"gate", "review"}, {"verdict", "approve"}, {"by", "bob"}});
  REQUIRE(ok.status == 200);
  CHECK(ok.body["verdict"] == "approve");
  auto info = rt->await(id, patience);
  REQUIRE(info);
  CHECK(info->status == workflow_status::completed);
  auto signals = events_of(get("/api/workflows/" + id + "/history").body, "signal_received");
  REQUIRE(signals.size() == 1);
  CHECK(signals[0]["data"]["decision"] == "approve");
  CHECK(signals[0]["data"]["by"] == "bob");
  CHECK(signals[0]["data"]["gate"] == "review");

  auto late = post("/api/workflows/" + id + "/signal",
                   {{"gate", "review"}, {"verdict", "approve"}, {"by", "bob"}});
  CHECK(late.status == 409);
  CHECK(late.body["error"] == "workflow_finished");

  // An edit merges its patch into the state.
  auto edited = start_triage(true, 5);
  auto e = post("/api/workflows/" + edited + "/signal",
                {{"gate", "review"}, {"verdict", "edit"}, {"patch", {{"note", "checked"}}},
                 {"by", "cy"}});
  REQUIRE(e.status == 200);
  auto after = rt->await(edited, patience);
  REQUIRE(after);
  CHECK(after->state["note"] == "checked");
}

TEST_CASE_METHOD(fixture, "a workflow cancelled through the admin API fails cancelled",
                 "[admin]") {
  auto id = start_triage(true);
  auto missing_by = post("/api/workflows/" + id + "/cancel", json::object());
  CHECK(missing_by.status == 400);
  CHECK(missing_by.body["message"] == "field 'by' is required");
  auto ok = post("/api/workflows/" + id + "/cancel", {{"by", "dee"}, {"reason", "duplicate"}});
  REQUIRE(ok.status == 200);
  auto info = rt->await(id, patience);
  REQUIRE(info);
  CHECK(info->status == workflow_status::failed);
  CHECK(info->outcome == "cancelled");
  auto again = post("/api/workflows/" + id + "/cancel", {{"by", "dee"}});
  CHECK(again.status == 409);
  CHECK(again.body["error"] == "workflow_finished");
}

TEST_CASE_METHOD(fixture, "dead letters are listed, retried and dropped through the admin API",
                 "[admin]") {
  auto retried = start_dead_letter();
  auto dropped = start_dead_letter();
  auto list = get("/api/dead-letters");
  REQUIRE(list.status == 200);
  REQUIRE(list.body["dead_letters"].size() == 2);
  CHECK(list.body["dead_letters"][0]["id"] == dropped); // newest first
  CHECK(list.body["dead_letters"][1]["id"] == retried);
  CHECK(list.body["dead_letters"][1]["node"] == "call");
  CHECK_THAT(list.body["dead_letters"][1]["reason"].get<std::string>(),
             Contains("the service is down"));
  CHECK(list.body["dead_letters"][1]["since_ns"].get<int64_t>() > 0);
  CHECK(get("/api/summary").body["dead_letters"] == 2);

  broken = false;
  auto r = post("/api/dead-letters/" + retried + "/retry", {{"by", "eve"}, {"steps", 2}});
  REQUIRE(r.status == 200);
  auto info = rt->await(retried, patience);
  REQUIRE(info);
  CHECK(info->status == workflow_status::completed);

  auto no_reason = post("/api/dead-letters/" + dropped + "/drop", {{"by", "eve"}});
  CHECK(no_reason.status == 400);
  CHECK(no_reason.body["message"] == "field 'reason' is required");
  auto d = post("/api/dead-letters/" + dropped + "/drop", {{"by", "eve"}, {"reason", "obsolete"}});
  REQUIRE(d.status == 200);
  info = rt->await(dropped, patience);
  REQUIRE(info);
  CHECK(info->status == workflow_status::failed);
  CHECK(info->outcome == "dropped");

  // Neither is dead-lettered any more: a second retry or drop is refused.
  auto twice = post("/api/dead-letters/" + retried + "/retry", {{"by", "eve"}});
  CHECK(twice.status == 409);
  CHECK(get("/api/dead-letters").body["dead_letters"].empty());
}

TEST_CASE_METHOD(fixture, "bad input to the admin API is refused naming the problem, changing "
                          "nothing", "[admin]") {
  auto parked = start_triage(true);
  struct bad {
    std::string method, path, body;
    int status;
    std::string error, message;
  };
  auto sig = "/api/workflows/" + parked + "/signal";
  std::vector<bad> cases = {
    {"POST", "/api/workflows", "{not json", 400, "invalid_input", "the body is not valid JSON"},
    {"POST", "/api/workflows", "", 400, "invalid_input", "the body is empty: expected a JSON object"},
    {"POST", "/api/workflows", "[1]", 400, "invalid_input", "the body must be a JSON object"},
    {"POST", "/api/workflows", R"({"input": {}})", 400, "invalid_input",
     "field 'definition' is required"},
    {"POST", "/api/workflows", R"({"definition": 7})", 400, "invalid_input",
     "field 'definition' must be a string"},
    {"POST", "/api/workflows", R"({"definition": "triage", "input": [1]})", 400, "invalid_input",
     "field 'input' must be a JSON object"},
    {"POST", "/api/workflows", R"({"definition": "triage", "inptu": {}})", 400, "invalid_input",
     "unknown field 'inptu' (expected definition, input, idempotency_key, user, model)"},
    {"POST", "/api/workflows", R"({"definition": "triage", "model": "nowhere/x"})", 400,
     "invalid_input", ""},
    {"POST", "/api/workflows", R"({"definition": "nope", "input": {}})", 400,
     "unknown_definition", ""},
    {"POST", sig, R"({"gate": "review", "verdict": "maybe", "by": "x"})", 400, "invalid_input",
     "field 'verdict' must be approve, reject or edit, got 'maybe'"},
    {"POST", sig, R"({"gate": "review", "verdict": "edit", "by": "x"})", 400, "invalid_input",
     "field 'patch' is required by an edit (a JSON object merged into the state)"},
    {"POST", sig, R"({"gate": "review", "verdict": "approve", "by": "x", "patch": {}})", 400,
     "invalid_input", "field 'patch' is taken by an edit only"},
    {"POST", sig, R"({"gate": "review", "verdict": "approve"})", 400, "invalid_input",
     "field 'by' is required"},
    {"POST", sig, R"({"gate": "review", "verdict": "approve", "by": ""})", 400, "invalid_input",
     "field 'by' must not be empty"},
    {"POST", "/api/workflows/nope/signal", R"({"gate": "review", "verdict": "approve", "by": "x"})",
     404, "unknown_workflow", ""},
    {"POST", "/api/workflows/nope/cancel", R"({"by": "x"})", 404, "unknown_workflow", ""},
    {"POST", "/api/dead-letters/" + parked + "/retry", R"({"by": "x", "steps": -1})", 400,
     "invalid_input", "field 'steps' must be a whole number >= 0"},
    {"POST", "/api/dead-letters/" + parked + "/retry", R"({"by": "x"})", 409, "bad_signal", ""},
    {"POST", "/api/dead-letters/nope/drop", R"({"by": "x", "reason": "r"})", 404,
     "unknown_workflow", ""},
    {"GET", "/api/workflows/nope", "", 404, "unknown_workflow", ""},
    {"GET", "/api/workflows/nope/history", "", 404, "unknown_workflow", ""},
    {"GET", "/api/workflows?status=sleeping", "", 400, "invalid_input", ""},
    {"GET", "/api/workflows?limit=0", "", 400, "invalid_input",
     "query parameter 'limit': expected a whole number from 1 to 1000, got '0'"},
    {"GET", "/api/workflows?before=12", "", 400, "invalid_input",
     "query parameter 'before': expected a cursor from an answer's \"next\", got '12'"},
    {"GET", "/api/workflows?colour=red", "", 400, "invalid_input",
     "unknown query parameter 'colour'"},
    {"GET", "/api/changes?wait_ms=999999999", "", 400, "invalid_input", ""},
    {"GET", "/api/workflows/" + parked + "/state", "", 400, "invalid_input",
     "query parameter 'at' is required: the event (wf_seq) to show the state after"},
    {"GET", "/api/workflows/" + parked + "/state?at=0", "", 400, "invalid_input", ""},
    {"GET", "/api/workflows/" + parked + "/state?at=99", "", 400, "invalid_input", ""},
    {"GET", "/api/workflows/nope/state?at=1", "", 404, "unknown_workflow", ""},
    {"GET", "/api/workflows/" + parked + "/await?parked=maybe", "", 400, "invalid_input",
     "query parameter 'parked': expected true or false, got 'maybe'"},
    {"GET", "/api/workflows/" + parked + "/await?timeout_ms=0", "", 504, "await_timeout", ""},
    {"GET", "/api/workflows/nope/await?timeout_ms=0", "", 404, "unknown_workflow", ""},
    {"POST", "/api/workflows/" + parked + "/fork", "{}", 400, "invalid_input",
     "field 'at' is required: the event (wf_seq) whose state the fork starts from"},
    {"POST", "/api/workflows/" + parked + "/fork", R"({"at": 1, "model": "nowhere/x"})", 400,
     "invalid_input", ""},
    {"POST", "/api/workflows/" + parked + "/fork", R"({"at": 1, "colour": "red"})", 400,
     "invalid_input", "unknown field 'colour' (expected at, model, idempotency_key)"},
    {"POST", "/api/workflows/nope/fork", R"({"at": 1})", 404, "unknown_workflow", ""},
  };
  for (const auto& c : cases) {
    CAPTURE(c.method, c.path, c.body);
    auto a = call(c.method, c.path, c.body);
    CHECK(a.status == c.status);
    CHECK(a.body["error"] == c.error);
    REQUIRE(a.body["message"].is_string());
    if (!c.message.empty())
      CHECK(a.body["message"] == c.message);
    else
      CHECK_FALSE(a.body["message"].get<std::string>().empty());
  }
  auto n = rt->counts();
  REQUIRE(n);
  CHECK(n->total() == 1);
  CHECK(n->parked == 1);
  auto h = rt->history(parked);
  REQUIRE(h);
  for (const auto& r : *h)
    CHECK(r.kind != "signal_received");
}

TEST_CASE_METHOD(fixture, "the live channel answers a long poll when the journal changes",
                 "[admin]") {
  auto now = get("/api/changes?wait_ms=0");
  REQUIRE(now.status == 200);
  auto v0 = now.body["version"].get<uint64_t>();
  // Nothing new: a poll without waiting answers the same version.
  auto idle = get("/api/changes?after=" + std::to_string(v0) + "&wait_ms=0");
  CHECK(idle.body["version"] == v0);
  CHECK(idle.body["workflows"].empty());
  // A poll waiting for news is answered by the start's commit (whether it
  // arrives before or after the commit).
  auto poll = std::async(std::launch::async, [this, v0] {
    return get("/api/changes?after=" + std::to_string(v0) + "&wait_ms=20000");
  });
  auto id = rt->start("triage", {{"ticket", ticket(false)}});
  REQUIRE(id);
  auto news = poll.get();
  REQUIRE(news.status == 200);
  CHECK(news.body["version"].get<uint64_t>() > v0);
  CHECK(news.body["all"] == false);
  CHECK(news.body["workflows"][0] == *id);
  // A version from another runtime (beyond this one's) gets "all".
  auto stale = get("/api/changes?after=999999&wait_ms=0");
  CHECK(stale.body["all"] == true);
  REQUIRE(rt->await(*id, patience));
}

TEST_CASE_METHOD(fixture, "a long poll in progress ends when the server stops", "[admin]") {
  auto v = get("/api/changes?wait_ms=0").body["version"].get<uint64_t>();
  auto poll = std::async(std::launch::async, [this, v] {
    httplib::Client cli{"127.0.0.1", server->port()};
    return cli.Get(("/api/changes?after=" + std::to_string(v) + "&wait_ms=25000").c_str(),
                   httplib::Headers{{"Authorization", "Bearer " + token}});
  });
  server->stop(); // answers the poll at once if it arrived, refuses it if not
  auto status = poll.wait_for(5s); // bounded: the check, not a wait for something to happen
  CHECK(status == std::future_status::ready);
}

TEST_CASE_METHOD(fixture, "GET /metrics answers the provider's text, or 404 without one",
                 "[admin]") {
  auto m = get("/metrics");
  CHECK(m.status == 200);
  CHECK_THAT(m.content_type, Contains("text/plain; version=0.0.4"));
  CHECK(m.text == metrics_text);
  server->stop();
  admin_config ac;
  ac.token = token;
  auto bare = admin_server::start(*rt, ac);
  REQUIRE(bare);
  server = std::move(*bare);
  auto none = get("/metrics");
  CHECK(none.status == 404);
  CHECK(none.body["message"] == "no metrics are configured on this server");
  server->stop();
  ac.metrics = []() -> caf::expected<std::string> {
    return make_error(errc::shutting_down, "the runtime is shut down");
  };
  auto failing = admin_server::start(*rt, ac);
  REQUIRE(failing);
  server = std::move(*failing);
  auto down = get("/metrics");
  CHECK(down.status == 503);
  CHECK(down.body["message"] == "the runtime is shut down");
}

TEST_CASE_METHOD(fixture, "GET /metrics can serve the runtime's own metrics", "[admin]") {
  server->stop();
  admin_config ac;
  ac.token = token;
  ac.metrics = [this] { return rt->metrics_text(); };
  auto s = admin_server::start(*rt, ac);
  REQUIRE(s);
  server = std::move(*s);
  auto m = get("/metrics");
  CHECK(m.status == 200);
  CHECK_THAT(m.text, Contains("# TYPE troupe_workflows gauge"));
  CHECK_THAT(m.text, Contains("troupe_journal_commit_seconds_count"));
}

namespace {

/// Time that moves only when told to.
struct manual_clock final : clock_source {
  std::atomic<int64_t> ns{1'000'000'000};
  std::chrono::nanoseconds now() const override { return std::chrono::nanoseconds{ns.load()}; }
  void advance(std::chrono::nanoseconds d) { ns += d.count(); }
};

} // namespace

TEST_CASE("the latency endpoint reports the runtime's histogram of a known run of attempts",
          "[admin]") {
  // Each attempt moves the injected clock by its input's "ms" and ends, so
  // it lasts exactly that long in the runtime's clock; workflows run one
  // after another, so no attempt sees another's time.
  auto clock = std::make_shared<manual_clock>();
  config cfg;
  cfg.clock = clock;
  runtime rt{cfg};
  REQUIRE_FALSE(rt.register_agent("sleeper", [clock](step_context& ctx) {
    clock->advance(std::chrono::milliseconds{ctx.state().value("ms", 0)});
    if (ctx.state().value("fail", false))
      return ctx.fail(failure_kind::crashed, "told to");
    ctx.finish({});
  }));
  agent_policy p;
  p.timeout = 1h;
  p.retry.max_attempts = 1;
  REQUIRE_FALSE(rt.register_definition(*definition_builder{"nap"}
                                           .agent("sleep", "sleeper", p).on("ok", "done")
                                           .on("exhausted", "gave_up")
                                           .completed("done").failed("gave_up").build()));
  admin_config ac;
  ac.token = token;
  auto server = admin_server::start(rt, ac);
  REQUIRE(server);
  for (int ms : {3, 3, 7, 40, 40, 40, 200, 700, 2000}) {
    auto id = rt.start("nap", {{"ms", ms}, {"fail", ms == 700}});
    REQUIRE(id);
    REQUIRE(rt.await(*id, patience));
  }
  httplib::Client cli{"127.0.0.1", (*server)->port()};
  auto res = cli.Get("/api/latency", {{"Authorization", "Bearer " + token}});
  REQUIRE(res);
  REQUIRE(res->status == 200);
  auto body = json::parse(res->body);
  CHECK(body["attempts"] == 9);
  REQUIRE(body["agents"].size() == 1);
  const auto& a = body["agents"][0];
  CHECK(a["agent"] == "sleeper");
  CHECK(a["count"] == 9);
  CHECK(a["ok"] == 8);
  CHECK(a["failed"] == 1);
  CHECK(a["mean_ms"] == Approx(3033.0 / 9));
  CHECK(a["p50_ms"] == Approx(37.5));  // rank 4.5 of 9: in (25, 50] ms, 1.5 of its 3
  CHECK(a["p90_ms"] == Approx(1150));  // rank 8.1: in (1, 2.5] s, its only one
  CHECK(a["p99_ms"] == Approx(2365));
  CHECK(a["max_le_ms"] == Approx(2500));
  std::vector<uint64_t> counts;
  for (const auto& b : a["buckets"])
    counts.push_back(b["count"]);
  CHECK(counts == std::vector<uint64_t>{0, 2, 1, 0, 3, 0, 1, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0});
  auto refused = cli.Get("/api/latency?workflows=10", {{"Authorization", "Bearer " + token}});
  REQUIRE(refused);
  CHECK(refused->status == 400); // the histogram covers the runtime's life, not N workflows
  (*server)->stop();
  rt.shutdown();
}
