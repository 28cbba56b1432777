// Replay and determinism, property style: for many seeds a small PRNG drives
// the machine through a random but valid history (the way the workflow actor
// would: timers fire in time order, agents answer with routed or junk labels,
// fail, time out, people decide at gates), checking the invariants of
// workflow_machine.cpp after every event; then replay() and a second
// event-by-event application must reproduce every state and command. Plus
// one golden journal. Pure; no actor system.
#include <functional>
#include <optional>
#include <set>

#include "kernel/kernel_support.hpp"

using namespace troupe;
using namespace troupe::kernel;
using namespace troupe::kernel::test;
using namespace std::chrono_literals;

namespace {

// splitmix64: a tiny deterministic PRNG, independent of the library's.
struct prng {
  uint64_t s;
  uint64_t next() {
    uint64_t z = (s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  uint64_t below(uint64_t n) { return next() % n; }
  int64_t between(int64_t lo, int64_t hi) { return lo + static_cast<int64_t>(below(hi - lo + 1)); }
  bool chance(int percent) { return below(100) < static_cast<uint64_t>(percent); }
};

struct journal {
  std::vector<event> events;
  std::vector<std::vector<std::string>> commands; // per event
  workflow_state final;
};

// What the generated histories exercised, over all seeds.
struct coverage {
  std::set<std::string> outcomes;
  std::set<std::string> fired;       // timer kinds
  std::set<std::string> phases_seen;
};

bool is_builtin(const std::string& label) {
  for (auto l : {outcome::timeout, outcome::crashed, outcome::bad_output, outcome::circuit_open,
                 outcome::exhausted, outcome::budget})
    if (label == l)
      return true;
  return false;
}

class driver {
public:
  driver(const definition& def, uint64_t seed, coverage& cov)
      : def_(def), rng_{seed}, cov_(cov) {}

  // Generates and applies events until the workflow finishes or `limit`.
  journal run(size_t limit) {
    while (!s_.finished() && j_.events.size() < limit) {
      auto e = choose();
      now_ = std::max(now_, time_of(e));
      if (auto t = std::get_if<timer_fired>(&e)) {
        cov_.fired.insert(to_string(s_.timers.at(t->timer).kind));
        REQUIRE(armed_.erase(t->timer) == 1);
      }
      if (std::holds_alternative<step_scheduled>(e))
        ++scheduled_;
      if (auto c = std::get_if<step_completed>(&e))
        tokens_ += c->tokens;
      if (auto f = std::get_if<step_failed>(&e))
        tokens_ += f->tokens;
      auto t = apply(def_, s_, e);
      if (!t)
        FAIL("generated " << kind_of(e) << " refused: " << describe(t.error()) << "\nstate "
                          << render(s_));
      j_.events.push_back(e);
      j_.commands.push_back(render(t->commands));
      s_ = t->state;
      cov_.phases_seen.insert(to_string(s_.at));
      check(e, t->commands);
    }
    if (s_.finished())
      cov_.outcomes.insert(s_.outcome);
    j_.final = s_;
    return j_;
  }

private:
  std::optional<std::pair<uint64_t, pending_timer>> earliest() const {
    std::optional<std::pair<uint64_t, pending_timer>> out;
    for (auto& [id, t] : s_.timers)
      if (!out || t.fire_at < out->second.fire_at)
        out = std::make_pair(id, t);
    return out;
  }

  json random_patch() {
    return {{"k" + std::to_string(rng_.below(3)), static_cast<int64_t>(rng_.below(100))}};
  }

  event choose() {
    if (s_.at == phase::not_started)
      return workflow_started{now_, {{"ticket", rng_.below(1000)}}, rng_.next()};
    auto lo = s_.at == phase::scheduling ? 0 : 20;
    auto hi = s_.at == phase::scheduling ? 20 : 1500;
    auto at = now_ + ms(rng_.between(lo, hi));
    auto due = earliest();
    // A timer due before the next thing would happen fires first; in backoff
    // nothing but a timer can happen.
    if (due && (due->second.fire_at <= at || s_.at == phase::backoff)) {
      auto when = std::max(now_, due->second.fire_at);
      if (due->second.kind != timer_kind::step_timeout)
        return fired(when, due->first, due->second.kind);
      cov_.fired.insert("step_timeout"); // journaled as the attempt's failure
      return step_failed{when, s_.node, s_.attempt, failure_kind::timeout, "no outcome in time",
                         rng_.below(40)};
    }
    const node& n = *def_.find(s_.node);
    switch (s_.at) {
      case phase::scheduling:
        return step_scheduled{at, s_.node, s_.attempt};
      case phase::running: {
        auto roll = rng_.below(100);
        auto tokens = rng_.below(80);
        if (roll < 60) {
          std::vector<std::string> labels;
          for (auto& r : n.routes)
            if (!is_builtin(r.first))
              labels.push_back(r.first);
          return step_completed{at, s_.node, s_.attempt, labels[rng_.below(labels.size())],
                                random_patch(), tokens};
        }
        if (roll < 70)
          return step_completed{at, s_.node, s_.attempt, "junk", random_patch(), tokens};
        if (roll < 75)
          return step_completed{at, s_.node, s_.attempt, "ok", json::array({1}), tokens};
        auto kind = static_cast<failure_kind>(rng_.below(4));
        return step_failed{at, s_.node, s_.attempt, kind, "generated", tokens / 2};
      }
      case phase::at_gate: {
        auto roll = rng_.below(100);
        if (roll < 50)
          return signal_received{at, s_.node, outcome::approve, nullptr, "ann"};
        if (roll < 75)
          return signal_received{at, s_.node, outcome::edit, random_patch(), "bob"};
        return signal_received{at, s_.node, outcome::reject, nullptr, "cy"};
      }
      case phase::dead_lettered: {
        auto roll = rng_.below(100);
        if (roll < 60 && retries_ < 2) { // bounded: a history must end
          ++retries_;
          budget_grant g;
          g.steps = rng_.below(3);
          g.tokens = rng_.below(100);
          g.time = ms(static_cast<int64_t>(rng_.below(2000)));
          return dlq_retried{at, "ops", g};
        }
        return dlq_dropped{at, "ops", "generated"};
      }
      default:
        FAIL("no event for phase " << to_string(s_.at));
    }
    return {};
  }

  // The numbered invariants of workflow_machine.cpp, after every event.
  void check(const event& e, const std::vector<command>& cs) {
    INFO("after event #" << j_.events.size() << " " << kind_of(e) << ": " << render(s_));
    for (auto& c : cs) {
      if (auto st = std::get_if<start_timer>(&c)) {
        REQUIRE(ever_.insert(st->id).second); // ids are never reused
        armed_.insert(st->id);
      } else if (auto ct = std::get_if<cancel_timer>(&c)) {
        REQUIRE(armed_.erase(ct->id) == 1); // only armed timers are cancelled
      } else if (auto ra = std::get_if<run_agent>(&c)) {
        REQUIRE(std::holds_alternative<step_scheduled>(e));
        CHECK(ra->visit == s_.visits.at(ra->node));
        CHECK(ra->attempt == s_.attempt);
      } else if (auto ss = std::get_if<schedule_step>(&c)) {
        CHECK(s_.at == phase::scheduling);
        CHECK(ss->node == s_.node);
        CHECK(ss->attempt == s_.attempt);
      } else if (std::holds_alternative<await_signal>(c)) {
        CHECK(s_.at == phase::at_gate);
      }
    }
    // 1. a timer id is in state.timers exactly while it is armed
    std::set<uint64_t> in_state;
    std::map<timer_kind, int> kinds;
    for (auto& [id, t] : s_.timers) {
      in_state.insert(id);
      ++kinds[t.kind];
    }
    REQUIRE(in_state == armed_);
    // 2. only `running` has an attempt in flight, with one step timeout
    CHECK(kinds[timer_kind::step_timeout] == (s_.at == phase::running ? 1 : 0));
    CHECK(kinds[timer_kind::retry_backoff] == (s_.at == phase::backoff ? 1 : 0));
    CHECK(kinds[timer_kind::workflow_deadline] <= 1);
    // 3. steps counts step_scheduled events; tokens counts every attempt's
    CHECK(s_.steps == scheduled_);
    CHECK(s_.tokens == tokens_);
    CHECK(s_.events == j_.events.size());
    if (def_.limits.max_steps > 0)
      CHECK(s_.steps <= def_.limits.max_steps + s_.granted.steps);
    // 4b. a dead-lettered state has no timers; the command that put it there says so
    if (s_.at == phase::dead_lettered) {
      CHECK(s_.timers.empty());
      REQUIRE_FALSE(cs.empty());
      auto d = std::get_if<dead_letter>(&cs.back());
      REQUIRE(d);
      CHECK(d->outcome == s_.outcome);
    }
    // 4. a finished state has no timers; its last command says how it ended
    if (s_.finished()) {
      CHECK(s_.timers.empty());
      REQUIRE_FALSE(cs.empty());
      if (s_.at == phase::completed) {
        CHECK(std::holds_alternative<complete>(cs.back()));
      } else {
        auto f = std::get_if<fail>(&cs.back());
        REQUIRE(f);
        CHECK(f->outcome == s_.outcome);
        CHECK(f->reason == s_.reason);
      }
    }
  }

  const definition& def_;
  prng rng_;
  coverage& cov_;
  workflow_state s_;
  instant now_ = ms(1000);
  std::set<uint64_t> armed_, ever_;
  uint64_t scheduled_ = 0, tokens_ = 0;
  int retries_ = 0; // dead-letter retries so far
  journal j_;
};

// draft <-> critic is a cycle of agents, bounded by max_steps.
definition loop_def() {
  agent_policy draft;
  draft.timeout = 500ms;
  draft.retry.max_attempts = 2;
  draft.retry.retryable = {failure_kind::timeout, failure_kind::crashed,
                           failure_kind::bad_output};
  draft.retry.base_backoff = 50ms;
  draft.retry.max_backoff = 400ms;
  agent_policy critic;
  critic.timeout = 800ms;
  critic.fallback = "review";
  budgets b;
  b.max_steps = 6;
  b.max_tokens = 250;
  b.deadline = 3s;
  return built(definition_builder{"loop"}
               .agent("draft", "writer", draft)
               .on("ok", "critic")
               .on("exhausted", "failed")
               .on("circuit_open", "review")
               .on("budget", "review")
               .agent("critic", "critic", critic)
               .on("ok", "review")
               .on("revise", "draft")
               .on("budget", "review")
               .gate("review")
               .on("approve", "done")
               .on("reject", "failed")
               .on("edit", "draft")
               .on("budget", "gave_up")
               .completed("done")
               .failed("failed")
               .failed("gave_up")
               .limits(b)
               .build());
}

void check_replay(const definition& def, const journal& j) {
  // replay() reproduces the final state and the last event's commands
  auto r = replay(def, j.events);
  REQUIRE(r);
  CHECK(r->state == j.final);
  CHECK(render(r->commands) == j.commands.back());
  // event by event, a second time: identical commands and states
  workflow_state s;
  for (size_t i = 0; i < j.events.size(); ++i) {
    auto t = apply(def, s, j.events[i]);
    REQUIRE(t);
    INFO("event #" << i + 1);
    REQUIRE(render(t->commands) == j.commands[i]);
    s = t->state;
  }
  CHECK(s == j.final);
  // a history that goes on after the end does not replay
  auto longer = j.events;
  longer.push_back(fired(time_of(j.events.back()), 1, timer_kind::step_timeout));
  auto bad = replay(def, longer);
  REQUIRE_FALSE(bad);
  CHECK(is(bad.error(), errc::invalid_transition));
  auto text = describe(bad.error());
  CHECK(text.find("event #" + std::to_string(longer.size()) + ":") != std::string::npos);
  CHECK(text.find("workflow_finished") != std::string::npos);
}

} // namespace

TEST_CASE("random valid histories replay to the same states and commands", "[replay]") {
  struct subject {
    std::string name;
    definition def;
    size_t bound; // most events a history may need to finish
    bool dead_letters = true; // some failure or budget has no route
  };
  std::vector<subject> subjects = {
    // <= 4 events per step (scheduled, outcome, retry timer, signal) plus start/end,
    // plus up to 2 dead-letter retries granting up to 2 steps each, and a drop
    {"triage, 5 steps and 6 s", triage([] { auto b = with_steps(5); b.deadline = 6s;
                                            return b; }()), 4 * (5 + 4) + 4 + 3},
    {"loop, 6 steps, 250 tokens, 3 s", loop_def(), 4 * (6 + 4) + 4 + 3, false},
    // only the deadline bounds edits at signoff; running and gates advance
    // time by >= 20 ms, so at most 5000 / 20 steps of <= 4 events each
    // (each retry may grant up to 2 s more: 2 x 2000 / 20 steps)
    {"triage, 5 s deadline only", triage(with_deadline(5000)), 4 * (250 + 200) + 4 + 3},
  };
  for (auto& sub : subjects) {
    DYNAMIC_SECTION(sub.name) {
      coverage cov;
      size_t longest = 0;
      for (uint64_t seed = 1; seed <= 200; ++seed) {
        INFO("seed " << seed);
        driver d{sub.def, seed, cov};
        auto j = d.run(sub.bound + 1);
        REQUIRE(j.final.finished());
        REQUIRE(j.events.size() <= sub.bound);
        longest = std::max(longest, j.events.size());
        check_replay(sub.def, j);
      }
      // The generator reached every phase, timer kind and kind of ending.
      INFO("longest history: " << longest << " events");
      std::set<std::string> phases{"scheduling", "running", "backoff",
                                   "at_gate",    "completed", "failed"};
      if (sub.dead_letters)
        phases.insert("dead_lettered");
      CHECK(cov.phases_seen == phases);
      CHECK(cov.fired == std::set<std::string>{"step_timeout", "retry_backoff",
                                               "workflow_deadline"});
      for (auto o : {"approve", "reject", "exhausted", "budget"}) {
        CAPTURE(o);
        CHECK(cov.outcomes.count(o) == 1);
      }
      CHECK(cov.outcomes.count("dropped") == (sub.dead_letters ? 1 : 0));
      CHECK(longest > 8);
    }
  }
}

TEST_CASE("golden journal: a retry, a gate edit and an approval", "[replay]") {
  const auto def = triage();
  const std::vector<event> history = {
    started(0, {{"ticket", "T-1"}}, 42),
    scheduled(10, "extract", 1),                                     // timer 1
    failed(500, "extract", 1, failure_kind::crashed, 30, "agent died"), // timer 2 (retry)
    retry_fired(600, 2),
    scheduled(610, "extract", 2),                                    // timer 3
    completed(900, "extract", 2, "ok", {{"fields", {{"a", 1}}}}, 120),
    scheduled(910, "analyze", 1),                                    // timer 4
    completed(1500, "analyze", 1, "ok", {{"score", 9}}, 200),
    signal(5000, "signoff", "edit", {{"score", nullptr}, {"note", "checked"}}, "ann"),
    scheduled(5010, "extract", 1),                                   // timer 5, visit 2
    completed(5200, "extract", 1, "ok", {{"fields", {{"b", 2}}}}, 40),
    scheduled(5210, "analyze", 1),                                   // timer 6
    completed(5400, "analyze", 1, "ok", {{"score", 10}}, 60),
    signal(9000, "signoff", "approve", nullptr, "bob"),
  };
  auto r = replay(def, history);
  REQUIRE(r);
  const auto& s = r->state;
  CHECK(s.at == phase::completed);
  CHECK(s.node == "done");
  CHECK(s.data == json{{"ticket", "T-1"}, {"fields", {{"a", 1}, {"b", 2}}}, {"note", "checked"},
                       {"score", 10}});
  CHECK(s.steps == 5);
  CHECK(s.tokens == 450);
  CHECK(s.outcome == "approve");
  CHECK(s.reason.empty());
  CHECK(s.seed == 42);
  CHECK(s.started_at == ms(0));
  CHECK(s.events == history.size());
  CHECK(s.next_timer == 7);
  CHECK(s.timers.empty());
  CHECK(s.visits == std::map<std::string, uint32_t>{{"extract", 2}, {"analyze", 2},
                                                   {"signoff", 2}});
  CHECK(render(r->commands) == std::vector<std::string>{"complete(done)"});

  // What was pending at each point of the journal.
  auto upto = [&](size_t n) {
    auto t = replay(def, std::vector<event>(history.begin(), history.begin() + n));
    REQUIRE(t);
    return render(t->commands);
  };
  CHECK(upto(3) == std::vector<std::string>{
                       "cancel_timer(1)",
                       "start_timer(2,retry_backoff,"
                           + render_time(ms(500) + backoff_delay(def.find("extract")->policy.retry,
                                                                 42, "extract", 1))
                           + ")"});
  CHECK(upto(9) == std::vector<std::string>{"schedule_step(extract,1)"});
  CHECK(upto(10) == std::vector<std::string>{"start_timer(5,step_timeout,6010ms)",
                                             "run_agent(extract,extractor,1,2)"});
  CHECK(replay(def, {})->state == workflow_state{});
}

TEST_CASE("workflow_state equality sees every field", "[replay]") {
  // Crash tests compare live state with the replayed journal through ==.
  auto base = replay(triage(with_deadline(60000)), {started(0, {{"a", 1}}, 5),
                                                    scheduled(1, "extract", 1)});
  REQUIRE(base);
  const workflow_state s = base->state;
  REQUIRE(s == s);
  std::vector<std::pair<const char*, std::function<void(workflow_state&)>>> edits = {
    {"at", [](workflow_state& x) { x.at = phase::backoff; }},
    {"node", [](workflow_state& x) { x.node = "analyze"; }},
    {"attempt", [](workflow_state& x) { ++x.attempt; }},
    {"data", [](workflow_state& x) { x.data["a"] = 2; }},
    {"steps", [](workflow_state& x) { ++x.steps; }},
    {"tokens", [](workflow_state& x) { ++x.tokens; }},
    {"seed", [](workflow_state& x) { ++x.seed; }},
    {"started_at", [](workflow_state& x) { x.started_at += 1ns; }},
    {"deadline", [](workflow_state& x) { x.deadline += 1ns; }},
    {"events", [](workflow_state& x) { ++x.events; }},
    {"next_timer", [](workflow_state& x) { ++x.next_timer; }},
    {"timer id", [](workflow_state& x) { x.timers.erase(2); }},
    {"timer kind", [](workflow_state& x) { x.timers.at(2).kind = timer_kind::retry_backoff; }},
    {"timer fire_at", [](workflow_state& x) { x.timers.at(2).fire_at += 1ns; }},
    {"visits", [](workflow_state& x) { ++x.visits["extract"]; }},
    {"outcome", [](workflow_state& x) { x.outcome = "ok"; }},
    {"reason", [](workflow_state& x) { x.reason = "why"; }},
  };
  for (auto& [field, edit] : edits) {
    auto other = s;
    edit(other);
    INFO("field " << field);
    CHECK_FALSE(other == s);
    CHECK(other != s);
  }
}
