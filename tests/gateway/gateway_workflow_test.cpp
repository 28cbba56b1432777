// Workflows over real HTTP: the runtime's gateway in front of a fake model
// server. A provider whose circuit opens is routed around to a fallback
// model; a model that keeps asking for another round is stopped by the
// workflow's budget; a provider that refuses the request fails the step
// at once, without retries.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "support/fake_model_server.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

// Asks the model named in the node's state key "model" (default provider
// if absent) and stores the reply's "answer"; routes the reply's "next"
// label when it has one.
void asker(step_context& ctx) {
  llm_request req;
  req.model = ctx.state().value("model_" + ctx.node(), "");
  req.messages.push_back({"user", "question for " + ctx.node()});
  req.max_tokens = ctx.state().value("max_tokens", 1024u);
  ask_json(ctx, req, [](step_context& c, nlohmann::json reply) {
    step_outcome o;
    o.label = reply.value("next", std::string{outcome::ok});
    o.patch = {{c.node(), reply.value("answer", "")}};
    c.finish(o);
  });
}

struct fixture {
  fake_model_server server;
  std::unique_ptr<runtime> rt;

  void boot(provider_config primary) {
    config cfg;
    cfg.random = seeded_random(3);
    cfg.model.rules["asker"] = [](const llm_request&) {
      return std::string{R"({"answer": "from the scripted model"})"};
    };
    cfg.gateway.providers.push_back(std::move(primary));
    rt = std::make_unique<runtime>(cfg);
    REQUIRE(!rt->register_agent("asker", asker));
  }

  provider_config primary() {
    provider_config p;
    p.name = "primary";
    p.protocol = wire_protocol::openai;
    p.base_url = server.base_url();
    p.model = "fake-1";
    p.breaker.consecutive_failures = 2;
    p.breaker.cool_down = 1h; // stays open for the whole test
    return p;
  }

  workflow_info run(const std::string& def, nlohmann::json input = nlohmann::json::object()) {
    auto id = rt->start(def, std::move(input));
    REQUIRE(id);
    auto info = rt->await(*id, patience);
    REQUIRE(info);
    return *info;
  }
};

agent_policy retry_crashes(uint32_t attempts) {
  agent_policy p;
  p.timeout = 5s;
  p.retry.max_attempts = attempts;
  p.retry.base_backoff = 1ms;
  p.retry.max_backoff = 1ms;
  p.retry.retryable = {failure_kind::crashed, failure_kind::timeout};
  p.fallback = "failed"; // what no route names (bad_output, circuit_open)
  return p;
}

} // namespace

TEST_CASE_METHOD(fixture, "a workflow routes circuit_open to a node asking a fallback model",
                 "[gateway]") {
  boot(primary());
  REQUIRE(!rt->register_definition(definition_builder{"answer"}
                                       .agent("ask", "asker", retry_crashes(5))
                                       .on("ok", "done")
                                       .on("circuit_open", "ask_fallback")
                                       .on("exhausted", "failed")
                                       .agent("ask_fallback", "asker", retry_crashes(1))
                                       .on("ok", "done")
                                       .on("exhausted", "failed")
                                       .completed("done")
                                       .failed("failed")
                                       .build()
                                       .value()));
  fake_response down;
  down.status = 503;
  server.set_default(down);
  auto info = run("answer", {{"model_ask", "primary"}, {"model_ask_fallback", "scripted"}});
  CHECK(info.status == workflow_status::completed);
  CHECK(info.state["ask_fallback"] == "from the scripted model");
  CHECK(server.count() == 2); // two 503s opened the circuit; the third attempt failed fast
  auto lanes = rt->model_lanes();
  REQUIRE(lanes);
  bool seen = false;
  for (auto& l : *lanes)
    if (l.lane == "primary/fake-1") {
      seen = true;
      CHECK(l.breaker == "open");
      CHECK(l.failed == 2);
      CHECK(l.rejected == 1);
    }
  CHECK(seen);
  // A second workflow does not even try: the circuit is still open.
  auto again = run("answer", {{"model_ask", "primary"}, {"model_ask_fallback", "scripted"}});
  CHECK(again.status == workflow_status::completed);
  CHECK(server.count() == 2);
}

TEST_CASE_METHOD(fixture, "a model that always asks for another round is stopped by the step "
                          "budget",
                 "[gateway]") {
  boot(primary());
  budgets b;
  b.max_steps = 6;
  REQUIRE(!rt->register_definition(definition_builder{"loop"}
                                       .limits(b)
                                       .agent("think", "asker", retry_crashes(1))
                                       .on("ok", "done")
                                       .on("retry", "think")
                                       .on("exhausted", "failed")
                                       .on("budget", "failed")
                                       .completed("done")
                                       .failed("failed")
                                       .build()
                                       .value()));
  fake_response again;
  again.text = R"({"next": "retry", "answer": "let me call the tool once more"})";
  server.set_default(again);
  auto info = run("loop", {{"model_think", "primary"}});
  CHECK(info.status == workflow_status::failed);
  CHECK(info.outcome == "budget");
  CHECK(info.steps == 6);
  CHECK(server.count() == 6);
}

TEST_CASE_METHOD(fixture, "model cost is charged by the price table, journaled with each step, "
                          "and the cost budget refuses the call that would overspend",
                 "[gateway]") {
  auto p = primary();
  p.prices["fake-1"] = {1000, 1000}; // $0.001 per token either way
  boot(p);
  budgets b;
  b.max_steps = 100;
  b.max_cost_usd = 0.1;
  REQUIRE(!rt->register_definition(definition_builder{"spender"}
                                       .limits(b)
                                       .agent("think", "asker", retry_crashes(1))
                                       .on("ok", "done")
                                       .on("retry", "think")
                                       .on("exhausted", "failed")
                                       .on("budget", "over")
                                       .completed("done")
                                       .failed("failed")
                                       .failed("over")
                                       .build()
                                       .value()));
  fake_response again; // 11 + 7 tokens: $0.018 a call
  again.text = R"({"next": "retry"})";
  server.set_default(again);
  // Each call reserves its estimate first: 7 prompt tokens + 10 max_tokens,
  // $0.017. After five calls $0.090 is spent and the sixth does not fit.
  auto id = rt->start("spender", {{"model_think", "primary"}, {"max_tokens", 10}});
  REQUIRE(id);
  auto info = rt->await(*id, patience);
  REQUIRE(info);
  CHECK(info->status == workflow_status::failed);
  CHECK(info->node == "over");
  CHECK(info->outcome == "budget");
  INFO(info->reason);
  CHECK_THAT(info->reason, Catch::Contains("a model call of up to $0.017000")
                             && Catch::Contains("does not fit the $0.010000 left of the "
                                                "workflow's cost budget"));
  CHECK(server.count() == 5);
  CHECK(info->steps == 6);
  CHECK(info->cost_usd == Approx(0.09));
  CHECK(info->tokens == 5 * 18);
  // The cost is in the journal, per attempt: a replay adds it up again.
  auto history = rt->history(*id);
  REQUIRE(history);
  uint64_t journaled = 0;
  size_t costed_steps = 0;
  for (auto& r : *history)
    if (r.kind == "step_completed") {
      auto payload = nlohmann::json::parse(r.payload);
      CHECK(payload.at("cost_nusd") == 18'000'000);
      journaled += payload.at("cost_nusd").get<uint64_t>();
      ++costed_steps;
    }
  CHECK(costed_steps == 5);
  CHECK(journaled == 90'000'000);
  auto lanes = rt->model_lanes();
  REQUIRE(lanes);
  for (auto& l : *lanes)
    if (l.lane == "primary/fake-1")
      CHECK(l.cost_usd == Approx(0.09));
}

TEST_CASE_METHOD(fixture, "a request the provider refuses fails the step at once as rejected",
                 "[gateway]") {
  boot(primary());
  REQUIRE(!rt->register_definition(definition_builder{"refused"}
                                       .agent("ask", "asker", retry_crashes(5))
                                       .on("ok", "done")
                                       .on("circuit_open", "failed")
                                       .on("exhausted", "failed")
                                       .completed("done")
                                       .failed("failed")
                                       .build()
                                       .value()));
  fake_response unauthorized;
  unauthorized.status = 401;
  unauthorized.error_message = "Invalid API key";
  server.set_default(unauthorized);
  auto info = run("refused", {{"model_ask", "primary"}});
  CHECK(info.status == workflow_status::failed);
  INFO(info.reason);
  CHECK(info.reason.find("Invalid API key") != std::string::npos);
  CHECK(server.count() == 1); // not retried: retrying cannot help
  CHECK(info.steps == 1);
}

TEST_CASE("a runtime whose provider's key variable is not set refuses to start, naming it",
          "[gateway]") {
  unsetenv("TROUPE_TEST_NO_SUCH_KEY");
  config cfg;
  provider_config p;
  p.name = "openai";
  p.base_url = "https://api.openai.com/v1";
  p.model = "gpt-4o-mini";
  p.api_key_env = "TROUPE_TEST_NO_SUCH_KEY";
  cfg.gateway.providers.push_back(p);
  try {
    runtime rt{cfg};
    FAIL("the runtime started without its key");
  } catch (const std::invalid_argument& e) {
    CHECK_THAT(e.what(), Catch::Contains("TROUPE_TEST_NO_SUCH_KEY is not set"));
  }
  cfg.gateway.providers[0].base_url = "api.openai.com";
  CHECK_THROWS_WITH(runtime{cfg}, Catch::Contains("provider 'openai': base_url"));
}

TEST_CASE_METHOD(fixture, "a model call carries the traceparent of its attempt's span",
                 "[gateway][trace]") {
  boot(primary());
  REQUIRE(!rt->register_definition(definition_builder{"two"}
                                       .agent("first", "asker", retry_crashes(1))
                                       .on("ok", "second")
                                       .on("exhausted", "failed")
                                       .agent("second", "asker", retry_crashes(1))
                                       .on("ok", "done")
                                       .on("exhausted", "failed")
                                       .completed("done")
                                       .failed("failed")
                                       .build()
                                       .value()));
  const std::string caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  start_options opts;
  opts.traceparent = "00-" + caller_trace + "-00f067aa0ba902b7-01";
  auto id = rt->start("two", {{"model_first", "primary"}, {"model_second", "primary"}}, opts);
  REQUIRE(id);
  auto info = rt->await(*id, patience);
  REQUIRE(info);
  REQUIRE(info->status == workflow_status::completed);
  auto got = server.received();
  REQUIRE(got.size() == 2);
  auto spans = rt->trace(*id);
  REQUIRE(spans);
  std::vector<std::string> attempts; // the attempt spans, in start order
  for (const auto& s : *spans)
    if (s.name.rfind("step ", 0) == 0)
      attempts.push_back(s.span_id);
  REQUIRE(attempts.size() == 2);
  for (size_t i = 0; i < 2; ++i) {
    INFO("call " << i);
    CHECK(got[i].headers["traceparent"] == "00-" + caller_trace + "-" + attempts[i] + "-01");
    CHECK(attempts[i] == attempt_span_id(*id, i + 1));
  }
  // without a traceparent, the workflow's own trace
  auto own = rt->start("two", {{"model_first", "primary"}, {"model_second", "scripted"}});
  REQUIRE(own);
  REQUIRE(rt->await(*own, patience));
  REQUIRE(server.count() == 3);
  CHECK(server.received()[2].headers["traceparent"]
        == make_traceparent(trace_id_of(*own, ""), attempt_span_id(*own, 1)));
}
