// The gateway actor over real HTTP: a fake model server on 127.0.0.1, the
// libcurl transport, and a manual clock for breaker cool-downs, rate limits
// and 429 holds. Nothing sleeps: a test waits for a reply, for the fake
// server to have received a request, or re-asks the gateway for its lane
// stats until they show what the test waits for.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <future>
#include <thread>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/atoms.hpp"
#include "actors/gateway_actor.hpp"
#include "actors/scripted_model_actor.hpp"
#include "support/fake_model_server.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10s; // only reached when a test is broken

class manual_clock final : public clock_source {
public:
  std::chrono::nanoseconds now() const override { return std::chrono::nanoseconds{ns_.load()}; }
  void advance(std::chrono::nanoseconds d) { ns_ += d.count(); }

private:
  std::atomic<int64_t> ns_{1'000'000'000};
};

provider_config provider(const std::string& name, wire_protocol p, const std::string& url) {
  provider_config c;
  c.name = name;
  c.protocol = p;
  c.base_url = url;
  c.model = "fake-1";
  c.request_timeout = 5s;
  return c;
}

llm_request question(const std::string& model = "", const std::string& text = "hello") {
  llm_request r;
  r.model = model;
  r.messages = {{"system", "be brief"}, {"user", text}};
  r.max_tokens = 64;
  r.idempotency_key = "wf-1/ask#1";
  r.request_id = "wf-1/ask#1:1:0";
  return r;
}

struct fixture {
  caf::actor_system_config sys_cfg;
  std::unique_ptr<caf::actor_system> sys;
  fake_model_server server;
  std::shared_ptr<manual_clock> clock = std::make_shared<manual_clock>();
  caf::actor scripted;
  caf::actor gateway;

  fixture() {
    sys_cfg.set("scheduler.max-threads", 2);
    sys = std::make_unique<caf::actor_system>(sys_cfg);
    scripted_model_config m;
    m.rules["scripted"] = [](const llm_request&) { return std::string{R"({"from": "scripted"})"}; };
    scripted = spawn_scripted_model(*sys, m);
  }

  ~fixture() {
    for (auto& a : {gateway, scripted})
      if (a)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    server.release();
  }

  caf::error boot(std::vector<provider_config> providers) {
    gateway_config cfg;
    cfg.providers = std::move(providers);
    auto gw = spawn_gateway(*sys, {cfg, scripted, clock});
    if (!gw)
      return gw.error();
    gateway = *gw;
    return {};
  }

  caf::expected<llm_reply> ask(llm_request req) {
    caf::scoped_actor self{*sys};
    caf::expected<llm_reply> out{caf::error{}};
    self->request(gateway, patience, ask_atom::value, std::move(req))
      .receive([&](llm_reply& r) { out = std::move(r); },
               [&](caf::error& e) { out = std::move(e); });
    return out;
  }

  std::future<caf::expected<llm_reply>> ask_later(llm_request req) {
    return std::async(std::launch::async, [this, req] { return ask(req); });
  }

  /// Tells the gateway the manual clock moved: waiting lanes go on.
  void tick() { caf::anon_send(gateway, tick_atom::value); }

  lane_stats lane(const std::string& name) {
    caf::scoped_actor self{*sys};
    lane_stats out;
    self->request(gateway, patience, status_atom::value)
      .receive(
        [&](std::vector<lane_stats>& all) {
          for (auto& l : all)
            if (l.lane == name)
              out = l;
        },
        [&](caf::error& e) { FAIL(describe(e)); });
    return out;
  }

  /// Re-asks for the lane's stats until `pred` holds (each ask is a message
  /// round trip to the gateway; no sleeping).
  template <class Pred>
  lane_stats lane_when(const std::string& name, Pred pred) {
    auto until = std::chrono::steady_clock::now() + patience;
    for (;;) {
      auto s = lane(name);
      if (pred(s) || std::chrono::steady_clock::now() > until)
        return s;
      std::this_thread::yield();
    }
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "an OpenAI-compatible provider answers through the gateway with usage, "
                          "latency, cost and the key from the environment",
                 "[gateway]") {
  setenv("TROUPE_TEST_KEY", "sk-test-123", 1);
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.api_key_env = "TROUPE_TEST_KEY";
  p.prices["fake-1"] = {2.0, 8.0};
  REQUIRE(!boot({p}));
  fake_response r;
  r.text = "Paris";
  r.prompt_tokens = 1000;
  r.completion_tokens = 500;
  server.push(r);
  auto reply = ask(question());
  REQUIRE(reply);
  CHECK(reply->text == "Paris");
  CHECK(reply->provider == "openai");
  CHECK(reply->model == "fake-1");
  CHECK(reply->prompt_tokens == 1000);
  CHECK(reply->completion_tokens == 500);
  CHECK(reply->cost_usd == Approx((1000 * 2.0 + 500 * 8.0) / 1e6));
  CHECK(reply->latency_us > 0);
  auto got = server.received();
  REQUIRE(got.size() == 1);
  CHECK(got[0].path == "/v1/chat/completions");
  CHECK(got[0].headers["authorization"] == "Bearer sk-test-123");
  CHECK(got[0].headers["idempotency-key"] == "wf-1/ask#1");
  CHECK(got[0].body.find("sk-test-123") == std::string::npos);
  auto s = lane("openai/fake-1");
  CHECK(s.succeeded == 1);
  CHECK(s.prompt_tokens == 1000);
  CHECK(s.cost_usd == Approx(reply->cost_usd));
}

TEST_CASE_METHOD(fixture, "an Anthropic provider and a model named in the request",
                 "[gateway]") {
  REQUIRE(!boot({provider("claude", wire_protocol::anthropic, server.base_url())}));
  fake_response r;
  r.text = "Bonjour";
  server.push(r);
  auto reply = ask(question("claude/fake-large"));
  REQUIRE(reply);
  CHECK(reply->text == "Bonjour");
  CHECK(reply->provider == "claude");
  auto got = server.received();
  REQUIRE(got.size() == 1);
  CHECK(got[0].path == "/v1/messages");
  CHECK(got[0].headers.count("x-api-key") == 0); // no key configured: none sent
  CHECK(nlohmann::json::parse(got[0].body)["model"] == "fake-large");
  CHECK(lane("claude/fake-large").succeeded == 1);
}

TEST_CASE_METHOD(fixture, "the scripted model is always a provider, and unknown providers are "
                          "refused naming the configured ones",
                 "[gateway]") {
  REQUIRE(!boot({provider("openai", wire_protocol::openai, server.base_url())}));
  auto req = question("scripted");
  req.script = "scripted";
  auto reply = ask(req);
  REQUIRE(reply);
  CHECK(reply->provider == "scripted");
  auto bad = ask(question("gpt-5"));
  REQUIRE(!bad);
  CHECK(is(bad.error(), errc::llm_rejected));
  CHECK(describe(bad.error()).find("openai, scripted") != std::string::npos);
  CHECK(server.count() == 0);
}

TEST_CASE_METHOD(fixture, "a provider name with an empty model part asks the provider's default "
                          "model",
                 "[gateway]") {
  REQUIRE(!boot({provider("openai", wire_protocol::openai, server.base_url())}));
  REQUIRE(ask(question("openai/")));
  CHECK(nlohmann::json::parse(server.received().at(0).body)["model"] == "fake-1");
  CHECK(lane("openai/fake-1").succeeded == 1);
}

TEST_CASE_METHOD(fixture, "a scripted model that never answers is llm_timeout after the "
                          "provider's request timeout",
                 "[gateway]") {
  // A fresh scripted model whose every call is a timeout fault.
  caf::anon_send_exit(scripted, caf::exit_reason::user_shutdown);
  scripted_model_config m;
  m.timeout_rate = 1.0;
  scripted = spawn_scripted_model(*sys, m);
  provider_config p;
  p.name = "mock";
  p.protocol = wire_protocol::scripted;
  p.request_timeout = 100ms;
  REQUIRE(!boot({p}));
  auto r = ask(question());
  REQUIRE(!r);
  CHECK(is(r.error(), errc::llm_timeout));
  CHECK(describe(r.error()).find("mock/scripted") != std::string::npos);
  CHECK(lane("mock/scripted").failed == 1);
}

TEST_CASE_METHOD(fixture, "a key variable that is not set stops the gateway from starting, "
                          "naming the variable",
                 "[gateway]") {
  unsetenv("TROUPE_TEST_MISSING_KEY");
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.api_key_env = "TROUPE_TEST_MISSING_KEY";
  auto err = boot({p});
  REQUIRE(is(err, errc::invalid_config));
  CHECK(describe(err).find("TROUPE_TEST_MISSING_KEY is not set") != std::string::npos);
  auto bad = provider("openai", wire_protocol::openai, "ftp://nowhere");
  err = boot({bad});
  REQUIRE(is(err, errc::invalid_config));
  CHECK(describe(err).find("provider 'openai': base_url") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "the breaker opens after consecutive failures, fails fast, probes "
                          "after the cool-down and closes on success",
                 "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.breaker.consecutive_failures = 3;
  p.breaker.cool_down = 10s;
  REQUIRE(!boot({p}));
  fake_response unavailable;
  unavailable.status = 503;
  server.push(unavailable, 3);
  for (int i = 0; i < 3; ++i) {
    auto r = ask(question());
    REQUIRE(!r);
    CHECK(is(r.error(), errc::llm_unavailable));
  }
  auto fast = ask(question());
  REQUIRE(!fast);
  CHECK(is(fast.error(), errc::circuit_open));
  CHECK(server.count() == 3); // failed fast: never sent
  auto s = lane("openai/fake-1");
  CHECK(s.breaker == "open");
  CHECK(s.breaker_opened == 1);
  CHECK(s.failed == 3);
  clock->advance(9s);
  CHECK(is(ask(question()).error(), errc::circuit_open));
  clock->advance(1s);
  auto probe = ask(question()); // the default reply: 200
  REQUIRE(probe);
  CHECK(lane("openai/fake-1").breaker == "closed");
  CHECK(ask(question()));
  CHECK(server.count() == 5);
}

TEST_CASE_METHOD(fixture, "a failed probe opens the circuit for another cool-down",
                 "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.breaker.consecutive_failures = 1;
  p.breaker.cool_down = 5s;
  REQUIRE(!boot({p}));
  fake_response unavailable;
  unavailable.status = 502;
  server.push(unavailable, 2);
  CHECK(is(ask(question()).error(), errc::llm_unavailable));
  clock->advance(5s);
  CHECK(is(ask(question()).error(), errc::llm_unavailable)); // the probe fails
  CHECK(is(ask(question()).error(), errc::circuit_open));
  CHECK(lane("openai/fake-1").breaker_opened == 2);
  clock->advance(5s);
  CHECK(ask(question()));
}

TEST_CASE_METHOD(fixture, "refused requests and bad output do not count against the breaker",
                 "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.breaker.consecutive_failures = 1;
  REQUIRE(!boot({p}));
  fake_response unauthorized;
  unauthorized.status = 401;
  unauthorized.error_message = "Incorrect API key provided";
  fake_response prose;
  prose.text = "Sure! Here it is:";
  server.push(unauthorized);
  server.push(prose);
  auto r = ask(question());
  REQUIRE(!r);
  CHECK(is(r.error(), errc::llm_rejected));
  CHECK(describe(r.error()).find("Incorrect API key provided") != std::string::npos);
  auto req = question();
  req.json_output = true;
  auto b = ask(req);
  REQUIRE(!b);
  CHECK(is(b.error(), errc::bad_output));
  CHECK(lane("openai/fake-1").breaker == "closed");
  CHECK(ask(question()));
}

TEST_CASE_METHOD(fixture, "malformed, cut-off and reset replies end as bad_output or "
                          "llm_unavailable, never as a reply",
                 "[gateway]") {
  REQUIRE(!boot({provider("openai", wire_protocol::openai, server.base_url())}));
  fake_response malformed;
  malformed.kind = fake_response::fault::malformed;
  fake_response truncated;
  truncated.kind = fake_response::fault::truncated;
  fake_response cut;
  cut.kind = fake_response::fault::cut_off;
  fake_response reset;
  reset.kind = fake_response::fault::reset;
  server.push(malformed);
  server.push(truncated);
  server.push(cut);
  server.push(reset);
  CHECK(is(ask(question()).error(), errc::bad_output));
  CHECK(is(ask(question()).error(), errc::bad_output));
  CHECK(is(ask(question()).error(), errc::llm_unavailable));
  CHECK(is(ask(question()).error(), errc::llm_unavailable));
}

TEST_CASE_METHOD(fixture, "a reply held past the request timeout is llm_timeout",
                 "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.request_timeout = 200ms;
  REQUIRE(!boot({p}));
  fake_response slow;
  slow.hold = true; // answers only when released, after the test
  server.push(slow);
  auto r = ask(question());
  REQUIRE(!r);
  CHECK(is(r.error(), errc::llm_timeout));
  CHECK(describe(r.error()).find("within 200 ms") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "requests a stopping gateway still holds, sent or queued, are "
                          "answered shutting_down",
                 "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.max_concurrent = 1;
  REQUIRE(!boot({p}));
  fake_response held;
  held.hold = true;
  server.set_default(held);
  auto sent = ask_later(question());
  REQUIRE(server.wait_for(1));
  auto queued = ask_later(question());
  REQUIRE(lane_when("openai/fake-1", [](const lane_stats& l) { return l.queued == 1; }).queued
          == 1); // the second waits behind the first
  caf::anon_send_exit(gateway, caf::exit_reason::user_shutdown);
  for (auto* f : {&sent, &queued}) {
    REQUIRE(f->wait_for(patience) == std::future_status::ready);
    auto r = f->get();
    REQUIRE(!r);
    CHECK(is(r.error(), errc::shutting_down));
  }
  gateway = nullptr;
}

TEST_CASE_METHOD(fixture, "a 429 holds the lane for its Retry-After and the request is sent "
                          "again once the hold is over",
                 "[gateway]") {
  REQUIRE(!boot({provider("openai", wire_protocol::openai, server.base_url())}));
  fake_response limited;
  limited.status = 429;
  limited.retry_after = "5";
  server.push(limited);
  auto first = ask_later(question());
  auto held = lane_when("openai/fake-1", [](auto& s) { return s.rate_limited == 1; });
  CHECK(held.queued == 1); // requeued, waiting for the hold
  CHECK(held.held_for_ms == 5000);
  CHECK(server.count() == 1);
  clock->advance(5s);
  tick();
  auto r = first.get();
  REQUIRE(r);
  CHECK(server.count() == 2);
}

TEST_CASE_METHOD(fixture, "a 429 past the requeue limit fails the request", "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.max_requeues = 0;
  REQUIRE(!boot({p}));
  fake_response limited;
  limited.status = 429;
  server.push(limited);
  auto r = ask(question());
  REQUIRE(!r);
  CHECK(is(r.error(), errc::llm_unavailable));
  CHECK(describe(r.error()).find("429") != std::string::npos);
}

TEST_CASE_METHOD(fixture, "a full lane queue refuses with overloaded and the queued requests "
                          "go when slots free up",
                 "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.max_concurrent = 1;
  p.max_queue = 1;
  REQUIRE(!boot({p}));
  fake_response slow;
  slow.hold = true;
  server.set_default(slow);
  auto a = ask_later(question());
  REQUIRE(server.wait_for(1));
  auto b = ask_later(question());
  auto s = lane_when("openai/fake-1", [](auto& x) { return x.queued == 1; });
  CHECK(s.in_flight == 1);
  auto c = ask(question());
  REQUIRE(!c);
  CHECK(is(c.error(), errc::overloaded));
  server.release();
  CHECK(a.get());
  CHECK(b.get());
  CHECK(server.count() == 2);
}

TEST_CASE_METHOD(fixture, "requests per minute: past the bucket a request waits for its refill",
                 "[gateway]") {
  auto p = provider("openai", wire_protocol::openai, server.base_url());
  p.requests_per_minute = 1;
  REQUIRE(!boot({p}));
  CHECK(ask(question()));
  auto later = ask_later(question());
  auto s = lane_when("openai/fake-1", [](auto& x) { return x.queued == 1; });
  CHECK(s.sent == 1);
  clock->advance(60s);
  tick();
  CHECK(later.get());
  CHECK(server.count() == 2);
}

TEST_CASE_METHOD(fixture, "a request larger than the context window is refused before sending, "
                          "or its oldest messages dropped by policy",
                 "[gateway]") {
  auto strict = provider("strict", wire_protocol::openai, server.base_url());
  strict.context_window = 100;
  auto trim = strict;
  trim.name = "trim";
  trim.overflow = overflow_policy::truncate_oldest;
  REQUIRE(!boot({strict, trim}));
  std::string long_text;
  for (int i = 0; i < 90; ++i)
    long_text += "word ";
  auto req = question("strict");
  req.messages = {{"system", "be brief"}, {"user", long_text}, {"user", "and now?"}};
  req.max_tokens = 20;
  auto r = ask(req);
  REQUIRE(!r);
  CHECK(is(r.error(), errc::llm_rejected));
  CHECK(describe(r.error()).find("context window of 100") != std::string::npos);
  CHECK(server.count() == 0);
  req.model = "trim";
  REQUIRE(ask(req));
  auto sent = nlohmann::json::parse(server.received().at(0).body);
  REQUIRE(sent["messages"].size() == 2); // the system prompt and the last message
  CHECK(sent["messages"][1]["content"] == "and now?");
  req.messages = {{"user", long_text}};
  CHECK(is(ask(req).error(), errc::llm_rejected)); // even the last message alone is too big
}
