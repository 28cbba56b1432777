// Definition building and validation: every refusal is invalid_definition and
// names the node at fault and the problem; the failure routing rule
// (failure_route) as a table. Pure; no actor system.
#include <cmath>
#include <functional>
#include <limits>

#include "kernel/kernel_support.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

// `n` attempts; timeout, crashed and bad_output are retried, circuit_open is
// not (set explicitly: the default set is not what these tests are about).
agent_policy attempts(uint32_t n) {
  agent_policy p;
  p.retry.max_attempts = n;
  p.retry.retryable = {failure_kind::timeout, failure_kind::crashed, failure_kind::bad_output};
  return p;
}

agent_policy with_fallback(std::string target) {
  agent_policy p;
  p.fallback = std::move(target);
  return p;
}

// An agent node "a" whose every failure is covered; callers add "ok".
definition_builder& covered(definition_builder& b, const std::string& name,
                            agent_policy p = with_fallback("done")) {
  return b.agent(name, "worker", std::move(p));
}

struct refusal {
  std::string name;
  std::function<caf::expected<definition>()> build;
  std::vector<std::string> expected; // substrings of describe(err)
};

} // namespace

TEST_CASE("a valid definition builds and starts at its first node", "[definition]") {
  auto d = definition_builder{"triage", 3}
               .agent("extract", "extractor", with_fallback("failed"))
               .on("ok", "review")
               .gate("review")
               .on("approve", "done")
               .on("reject", "failed")
               .completed("done")
               .failed("failed")
               .build();
  REQUIRE(d);
  CHECK(d->name == "triage");
  CHECK(d->version == 3);
  CHECK(d->start == "extract");
  REQUIRE(d->nodes.size() == 4);
  REQUIRE(d->find("review"));
  CHECK(d->find("review")->kind == node_kind::gate);
  CHECK(d->find("failed")->terminal == terminal_kind::failed);
  CHECK(d->find("extract")->routes == std::map<std::string, std::string>{{"ok", "review"}});
  CHECK(d->find("nowhere") == nullptr);
  CHECK_FALSE(validate(*d));
}

TEST_CASE("an explicit start node overrides the first node", "[definition]") {
  auto d = definition_builder{"t"}
               .completed("done")
               .agent("a", "worker", with_fallback("done"))
               .on("ok", "done")
               .start("a")
               .build();
  REQUIRE(d);
  CHECK(d->start == "a");
}

TEST_CASE("validation refuses a broken definition, naming node and problem", "[definition]") {
  using B = definition_builder;
  std::vector<refusal> table = {
    {"unknown route target",
     [] { B b{"t"}; return covered(b, "a").on("ok", "nowhere").completed("done").build(); },
     {"node 'a'", "route 'ok' leads to unknown node 'nowhere'"}},
    {"unknown fallback target",
     [] { B b{"t"}; return covered(b, "a", with_fallback("ghost")).on("ok", "done")
                             .completed("done").build(); },
     {"node 'a'", "fallback leads to unknown node 'ghost'"}},
    {"unreachable node",
     [] { B b{"t"}; return covered(b, "a").on("ok", "done").completed("done")
                             .completed("orphan").build(); },
     {"node 'orphan' is unreachable from start node 'a'"}},
    {"no terminal",
     [] { return B{"t"}.agent("a", "worker", with_fallback("g")).on("ok", "g")
                   .gate("g").on("approve", "a").on("reject", "a").build(); },
     {"no terminal node"}},
    {"'ok' without route",
     [] { B b{"t"}; return covered(b, "a").on("low_confidence", "done").completed("done")
                             .build(); },
     {"node 'a'", "outcome 'ok' has no route"}},
    {"a gate's timeout route without a deadline",
     [] { return B{"t"}.gate("g").on("approve", "done").on("reject", "done")
                   .on("timeout", "done").completed("done").build(); },
     {"node 'g'", "route 'timeout' needs a gate deadline"}},
    {"a gate reminder without a webhook",
     [] { gate_policy p; p.remind_after = 1ms;
          return B{"t"}.gate("g", p).on("approve", "done").on("reject", "done")
                   .completed("done").build(); },
     {"node 'g'", "remind_after needs a notify_url"}},
    {"a gate reminder count of 0",
     [] { gate_policy p; p.remind_after = 1ms; p.reminders = 0; p.notify_url = "http://x/";
          return B{"t"}.gate("g", p).on("approve", "done").on("reject", "done")
                   .completed("done").build(); },
     {"node 'g'", "reminders = 0"}},
    {"a negative gate deadline",
     [] { gate_policy p; p.deadline = -1ms;
          return B{"t"}.gate("g", p).on("approve", "done").on("reject", "done")
                   .completed("done").build(); },
     {"node 'g'", "must not be negative"}},
    {"a soft share out of range",
     [] { budgets b; b.max_tokens = 10; b.soft_share = 1.0; b.soft_gate = "g";
          return B{"t"}.gate("g").on("approve", "done").on("reject", "done")
                   .completed("done").limits(b).build(); },
     {"soft_share must be between 0 and 1"}},
    {"a soft budget without a budget to be a share of",
     [] { budgets b; b.soft_share = 0.8; b.soft_gate = "g";
          return B{"t"}.gate("g").on("approve", "done").on("reject", "done")
                   .completed("done").limits(b).build(); },
     {"needs a max_tokens or max_cost_usd"}},
    {"a soft gate that is not a gate",
     [] { budgets b; b.max_tokens = 10; b.soft_share = 0.8; b.soft_gate = "done";
          return B{"t"}.gate("g").on("approve", "done").on("reject", "done")
                   .completed("done").limits(b).build(); },
     {"soft_gate 'done' is not a gate node"}},
    {"an agent compensating itself",
     [] { agent_policy p; p.compensate = "worker";
          return B{"t"}.agent("a", "worker", p).on("ok", "done").completed("done").build(); },
     {"node 'a'", "an agent cannot compensate itself"}},
    {"zero max_attempts",
     [] { B b{"t"}; return covered(b, "a", [] { auto p = with_fallback("done");
                             p.retry.max_attempts = 0; return p; }()).on("ok", "done")
                             .completed("done").build(); },
     {"node 'a'", "zero attempts"}},
    {"negative base backoff",
     [] { auto p = with_fallback("done"); p.retry.base_backoff = -1ms;
          B b{"t"}; return covered(b, "a", p).on("ok", "done").completed("done").build(); },
     {"node 'a'", "backoff must satisfy 0 <= base <= max"}},
    {"inverted backoff (base > max)",
     [] { auto p = with_fallback("done"); p.retry.base_backoff = 2s; p.retry.max_backoff = 1s;
          B b{"t"}; return covered(b, "a", p).on("ok", "done").completed("done").build(); },
     {"node 'a'", "backoff must satisfy 0 <= base <= max"}},
    {"zero timeout",
     [] { auto p = with_fallback("done"); p.timeout = 0s;
          B b{"t"}; return covered(b, "a", p).on("ok", "done").completed("done").build(); },
     {"node 'a'", "timeout must be positive"}},
    {"negative timeout",
     [] { auto p = with_fallback("done"); p.timeout = -5s;
          B b{"t"}; return covered(b, "a", p).on("ok", "done").completed("done").build(); },
     {"node 'a'", "timeout must be positive"}},
    {"agent node without agent name",
     [] { return B{"t"}.agent("a", "", with_fallback("done")).on("ok", "done")
                   .completed("done").build(); },
     {"node 'a'", "no agent named"}},
    {"duplicate node",
     [] { B b{"t"}; return covered(b, "a").on("ok", "done").completed("done")
                             .completed("a").build(); },
     {"node 'a' is defined twice"}},
    {"unnamed node",
     [] { B b{"t"}; return covered(b, "a").on("ok", "done").completed("done").failed("")
                             .build(); },
     {"node #3 has no name"}},
    {"unknown start",
     [] { B b{"t"}; return covered(b, "a").on("ok", "done").completed("done").start("ghost")
                             .build(); },
     {"start node 'ghost' does not exist"}},
    {"no nodes", [] { return B{"t"}.build(); }, {"definition 't'", "no nodes"}},
    {"no name", [] { return B{""}.completed("done").build(); }, {"definition has no name"}},
    {"gate missing approve",
     [] { return B{"t"}.gate("g").on("reject", "done").completed("done").build(); },
     {"node 'g'", "gate has no route for 'approve'"}},
    {"gate missing reject",
     [] { return B{"t"}.gate("g").on("approve", "done").completed("done").build(); },
     {"node 'g'", "gate has no route for 'reject'"}},
    {"gate with a foreign label",
     [] { return B{"t"}.gate("g").on("approve", "done").on("reject", "done").on("ok", "done")
                   .completed("done").build(); },
     {"node 'g'", "not 'ok'"}},
    {"terminal with routes",
     [] { B b{"t"}; return covered(b, "a").on("ok", "done").completed("done").on("ok", "a")
                             .build(); },
     {"node 'done'", "a terminal node takes no routes"}},
    {"'budget' route to an agent node",
     [] { B b{"t"}; covered(b, "a").on("ok", "b").on("budget", "b");
          return covered(b, "b").on("ok", "done").completed("done").build(); },
     {"node 'a'", "route 'budget' must lead to a gate or terminal, not agent node 'b'"}},
    {"'budget' route from a gate to an agent node",
     [] { B b{"t"}; b.gate("g").on("approve", "a").on("reject", "done").on("budget", "a");
          return covered(b, "a").on("ok", "done").completed("done").build(); },
     {"node 'g'", "not agent node 'a'"}},
    {"cycle of agent nodes without budgets",
     [] { B b{"t"}; covered(b, "a").on("ok", "b");
          return covered(b, "b").on("ok", "done").on("again", "a").completed("done").build(); },
     {"node 'a' is on a cycle of agent nodes", "no max_steps or deadline budget"}},
    {"agent looping on itself through its fallback",
     [] { return B{"t"}.agent("a", "worker", with_fallback("a")).on("ok", "done")
                   .completed("done").build(); },
     {"node 'a' is on a cycle of agent nodes"}},
    {"negative cost budget",
     [] { budgets b; b.max_cost_usd = -1; B d{"t"};
          return covered(d, "a").on("ok", "done").completed("done").limits(b).build(); },
     {"budget max_cost_usd must be a finite number >= 0"}},
    {"NaN cost budget",
     [] { budgets b; b.max_cost_usd = std::nan(""); B d{"t"};
          return covered(d, "a").on("ok", "done").completed("done").limits(b).build(); },
     {"budget max_cost_usd must be a finite number >= 0"}},
    {"route given twice",
     [] { B b{"t"}; return covered(b, "a").on("ok", "done").on("ok", "other")
                             .completed("done").completed("other").build(); },
     {"node 'a'", "route 'ok' given twice"}},
    {"route before any node",
     [] { B b{"t"}; b.on("ok", "done"); return covered(b, "a").on("ok", "done")
                             .completed("done").build(); },
     {"route 'ok' added before any node"}},
  };
  for (auto& row : table) {
    DYNAMIC_SECTION(row.name) {
      auto d = row.build();
      REQUIRE_FALSE(d);
      CHECK(is(d.error(), errc::invalid_definition));
      auto text = describe(d.error());
      CHECK(text.rfind("invalid_definition: ", 0) == 0);
      for (auto& part : row.expected) {
        INFO("describe: " << text);
        CHECK(text.find(part) != std::string::npos);
      }
    }
  }
}

TEST_CASE("a failure no route covers is accepted: it dead-letters the workflow", "[definition]") {
  using B = definition_builder;
  auto p = attempts(2);
  p.retry.retryable = {failure_kind::crashed};
  // no exhausted route, no fallback; circuit_open routed but nothing else;
  // a kind made non-retryable without its own route
  auto none = B{"t"}.agent("a", "worker", attempts(3)).on("ok", "done").completed("done").build();
  auto some = B{"t"}.agent("a", "worker", attempts(3)).on("ok", "done")
                .on("circuit_open", "done").completed("done").build();
  auto strict = B{"t"}.agent("a", "worker", p).on("ok", "done").on("exhausted", "done")
                  .completed("done").build();
  REQUIRE(none);
  REQUIRE(some);
  REQUIRE(strict);
  // what the kernel then does: no target
  CHECK(failure_route(none->nodes[0], failure_kind::timeout, 3).target.empty());
  CHECK(failure_route(some->nodes[0], failure_kind::timeout, 3).target.empty());
  CHECK(failure_route(strict->nodes[0], failure_kind::timeout, 1).target.empty());
  CHECK(failure_route(strict->nodes[0], failure_kind::crashed, 2).target == "done");
}

TEST_CASE("an agent cycle is accepted with a budget or through a gate", "[definition]") {
  auto cycle = [](budgets limits) {
    definition_builder b{"t"};
    covered(b, "a").on("ok", "b");
    return covered(b, "b").on("ok", "done").on("again", "a").completed("done").limits(limits)
        .build();
  };
  CHECK_FALSE(cycle({}));
  budgets steps;
  steps.max_steps = 10;
  CHECK(cycle(steps));
  budgets deadline;
  deadline.deadline = 1min;
  CHECK(cycle(deadline));
  budgets tokens; // tokens alone do not bound a loop of zero-token failures
  tokens.max_tokens = 1000;
  CHECK_FALSE(cycle(tokens));

  definition_builder g{"t"};
  covered(g, "a").on("ok", "check");
  g.gate("check").on("approve", "done").on("reject", "a").completed("done");
  CHECK(g.build());
}

TEST_CASE("validate() checks a definition made by hand", "[definition]") {
  definition d;
  d.name = "hand";
  node done;
  done.name = "done";
  done.kind = node_kind::terminal;
  d.nodes.push_back(done);
  d.start = "done";
  CHECK_FALSE(validate(d));
  d.start = ""; // build() defaults start, validate() does not
  auto err = validate(d);
  CHECK(is(err, errc::invalid_definition));
  CHECK(describe(err).find("start node '' does not exist") != std::string::npos);
}

TEST_CASE("failure_route: retry, specific route, exhausted route, fallback", "[definition]") {
  node full; // 3 attempts, every kind of route
  full.name = "full";
  full.policy = attempts(3);
  full.policy.fallback = "fb";
  full.routes = {{"exhausted", "ex"}, {"crashed", "cr"}, {"circuit_open", "co"}};
  node own = full; // no exhausted route
  own.name = "own";
  own.routes.erase("exhausted");
  node bare = full; // nothing
  bare.name = "bare";
  bare.routes.clear();
  bare.policy.fallback.clear();
  node once = full;
  once.name = "once";
  once.policy.retry.max_attempts = 1;
  node strict = full; // nothing retryable
  strict.name = "strict";
  strict.policy.retry.retryable.clear();

  struct row {
    const node* n;
    failure_kind kind;
    uint32_t attempt;
    failure_decision expected;
  };
  const auto timeout = failure_kind::timeout, crashed = failure_kind::crashed,
             bad = failure_kind::bad_output, circuit = failure_kind::circuit_open,
             rejected = failure_kind::rejected;
  std::vector<row> table = {
    {&full, crashed, 1, {true, "", ""}},
    {&full, crashed, 2, {true, "", ""}},
    {&full, timeout, 2, {true, "", ""}},
    {&full, crashed, 3, {false, "ex", "exhausted"}},
    {&full, bad, 3, {false, "ex", "exhausted"}},
    {&full, crashed, 7, {false, "ex", "exhausted"}},
    {&full, circuit, 1, {false, "co", "circuit_open"}},
    {&own, crashed, 3, {false, "cr", "crashed"}},
    {&own, timeout, 3, {false, "fb", "exhausted"}},
    {&own, circuit, 1, {false, "co", "circuit_open"}},
    {&bare, timeout, 1, {true, "", ""}},
    {&bare, timeout, 3, {false, "", "exhausted"}},
    {&bare, circuit, 1, {false, "", "circuit_open"}},
    {&once, crashed, 1, {false, "ex", "exhausted"}},
    {&strict, crashed, 1, {false, "cr", "crashed"}},
    {&strict, timeout, 1, {false, "fb", "timeout"}},
    // rejected is never retried by default: its own route, else exhausted's,
    // else the fallback
    {&full, rejected, 1, {false, "ex", "rejected"}},
    {&own, rejected, 1, {false, "fb", "rejected"}},
    {&bare, rejected, 1, {false, "", "rejected"}},
  };
  for (auto& r : table) {
    INFO(r.n->name << "/" << to_string(r.kind) << "/attempt " << r.attempt << " (max "
                   << r.n->policy.retry.max_attempts << ")");
    auto d = failure_route(*r.n, r.kind, r.attempt);
    CHECK(d.retry == r.expected.retry);
    CHECK(d.target == r.expected.target);
    CHECK(d.label == r.expected.label);
  }
}

TEST_CASE("costs convert to whole nano-dollars, rounding to nearest", "[definition]") {
  CHECK(to_nano_usd(0) == 0);
  CHECK(to_nano_usd(-3) == 0);
  CHECK(to_nano_usd(std::nan("")) == 0);
  CHECK(to_nano_usd(1) == 1'000'000'000);
  CHECK(to_nano_usd(0.0000000014) == 1);
  CHECK(to_nano_usd(0.0000000016) == 2);
  CHECK(to_nano_usd(1e30) == std::numeric_limits<uint64_t>::max());
  CHECK(to_usd(2'500'000'000) == 2.5);
}
