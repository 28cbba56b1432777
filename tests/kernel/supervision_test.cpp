// The supervisor's pure decisions: every row of the table in
// kernel/supervision.hpp, restart intensity and its window, escalation,
// and the restart backoff.
#include <catch2/catch.hpp>

#include <functional>
#include <set>
#include <string>
#include <vector>

#include <caf/exit_reason.hpp>

#include "kernel/supervision.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::kernel;
using namespace std::chrono_literals;
using ids = std::vector<std::string>;

namespace {

constexpr auto P = restart_type::permanent;
constexpr auto T = restart_type::transient;
constexpr auto X = restart_type::temporary;

supervisor_flags flags(restart_strategy s, uint32_t intensity = 3, duration period = 5s) {
  supervisor_flags f;
  f.strategy = s;
  f.intensity = intensity;
  f.period = period;
  f.base_backoff = 0s; // the backoff has its own test
  return f;
}

sup_state children(std::vector<sup_child> cs) {
  auto s = initial_state(cs);
  REQUIRE(s);
  return *s;
}

ids running(const sup_state& s) {
  ids out;
  for (auto& c : s.children)
    if (c.running)
      out.push_back(c.id);
  return out;
}

ids known(const sup_state& s) {
  ids out;
  for (auto& c : s.children)
    out.push_back(c.id);
  return out;
}

sup_transition exit_of(const supervisor_flags& f, const sup_state& s, const std::string& id,
                       exit_kind k, instant at = 0s) {
  auto t = on_exit(f, s, id, k, at);
  REQUIRE(t);
  return *t;
}

} // namespace

TEST_CASE("restart types: who is started again after which exit", "[supervision]") {
  struct row {
    restart_type type;
    exit_kind kind;
    bool restarted;
    ids known_after; ///< a temporary child is forgotten
  };
  std::vector<row> rows = {
    {P, exit_kind::normal, true, {"a", "c"}},     {P, exit_kind::shutdown, true, {"a", "c"}},
    {P, exit_kind::abnormal, true, {"a", "c"}},   {T, exit_kind::normal, false, {"a", "c"}},
    {T, exit_kind::shutdown, false, {"a", "c"}},  {T, exit_kind::abnormal, true, {"a", "c"}},
    {X, exit_kind::normal, false, {"c"}},         {X, exit_kind::shutdown, false, {"c"}},
    {X, exit_kind::abnormal, false, {"c"}},
  };
  for (auto& r : rows) {
    DYNAMIC_SECTION(to_string(r.type) << " after " << to_string(r.kind)) {
      auto s = children({{"a", r.type}, {"c", P}});
      auto t = exit_of(flags(restart_strategy::one_for_all), s, "a", r.kind);
      CHECK(known(t.state) == r.known_after);
      if (r.restarted) {
        CHECK(t.plan.what == sup_plan::action::restart);
        CHECK(t.plan.stop == ids{"c"}); // one_for_all takes its sibling along
        CHECK(t.plan.start == (ids{"a", "c"}));
        CHECK(running(t.state) == (ids{"a", "c"}));
        CHECK(t.state.restarts.size() == 1);
      } else {
        CHECK(t.plan.what == sup_plan::action::none);
        CHECK(t.plan.stop.empty()); // a child that is not restarted takes nobody along
        CHECK(t.plan.start.empty());
        CHECK(running(t.state) == ids{"c"});
        CHECK(t.state.restarts.empty()); // only restarts count against the intensity
        CHECK(t.plan.verdict == "not restarted");
      }
    }
  }
}

TEST_CASE("strategies: which siblings are stopped, newest first, and started again, oldest "
          "first",
          "[supervision]") {
  struct row {
    restart_strategy strategy;
    std::string crashed;
    ids stop;
    ids start;
  };
  using S = restart_strategy;
  std::vector<row> rows = {
    {S::one_for_one, "a", {}, {"a"}},
    {S::one_for_one, "b", {}, {"b"}},
    {S::one_for_all, "a", {"d", "c", "b"}, {"a", "b", "c", "d"}},
    {S::one_for_all, "c", {"d", "b", "a"}, {"a", "b", "c", "d"}},
    {S::rest_for_one, "a", {"d", "c", "b"}, {"a", "b", "c", "d"}},
    {S::rest_for_one, "b", {"d", "c"}, {"b", "c", "d"}},
    {S::rest_for_one, "d", {}, {"d"}},
  };
  for (auto& r : rows) {
    DYNAMIC_SECTION(to_string(r.strategy) << ", '" << r.crashed << "' crashes") {
      auto s = children({{"a", P}, {"b", P}, {"c", P}, {"d", P}});
      auto t = exit_of(flags(r.strategy), s, r.crashed, exit_kind::abnormal);
      CHECK(t.plan.what == sup_plan::action::restart);
      CHECK(t.plan.stop == r.stop);
      CHECK(t.plan.start == r.start);
      CHECK(running(t.state) == (ids{"a", "b", "c", "d"}));
      CHECK_THAT(t.plan.reason, Catch::Contains("child '" + r.crashed + "' (permanent) exited "
                                                "abnormal: restart 1 of at most 3 within 5 s")
                                  && Catch::Contains(to_string(r.strategy)));
    }
  }
}

TEST_CASE("a restart leaves children that were down down, and forgets temporary siblings it "
          "stopped",
          "[supervision]") {
  auto f = flags(restart_strategy::one_for_all);
  auto s = children({{"a", P}, {"job", T}, {"tmp", X}, {"d", P}});
  s = exit_of(f, s, "job", exit_kind::normal).state; // finished its work
  REQUIRE(running(s) == (ids{"a", "tmp", "d"}));
  auto t = exit_of(f, s, "d", exit_kind::abnormal);
  CHECK(t.plan.stop == (ids{"tmp", "a"}));
  CHECK(t.plan.start == (ids{"a", "d"}));
  CHECK(known(t.state) == (ids{"a", "job", "d"}));
  CHECK(running(t.state) == (ids{"a", "d"}));

  auto r = exit_of(flags(restart_strategy::rest_for_one),
                   children({{"a", P}, {"tmp", X}, {"c", T}}), "a", exit_kind::abnormal);
  CHECK(r.plan.stop == (ids{"c", "tmp"}));
  CHECK(r.plan.start == (ids{"a", "c"}));
  CHECK(known(r.state) == (ids{"a", "c"}));
}

TEST_CASE("past its intensity a supervisor stops every child, newest first, and escalates",
          "[supervision]") {
  auto f = flags(restart_strategy::one_for_one, 2, 5s);
  auto s = children({{"a", P}, {"b", P}, {"c", T}});
  s = exit_of(f, s, "c", exit_kind::normal, 0s).state; // not a restart: does not count
  s = exit_of(f, s, "b", exit_kind::abnormal, 1s).state;
  s = exit_of(f, s, "a", exit_kind::abnormal, 2s).state;
  REQUIRE(s.restarts.size() == 2);
  auto t = exit_of(f, s, "b", exit_kind::abnormal, 3s);
  CHECK(t.plan.what == sup_plan::action::escalate);
  CHECK(t.plan.stop == ids{"a"}); // b is already down, c was never restarted
  CHECK(t.plan.start.empty());
  CHECK(t.state.escalated);
  CHECK(running(t.state).empty());
  CHECK(t.plan.reason == "child 'b' (permanent) exited abnormal: 3 restarts within 5 s exceed "
                         "the intensity of 2");
  auto late = on_exit(f, t.state, "a", exit_kind::shutdown, 4s);
  REQUIRE(!late);
  CHECK(is(late.error(), errc::invalid_transition));
}

TEST_CASE("restarts older than the period no longer count", "[supervision]") {
  auto f = flags(restart_strategy::one_for_one, 2, 5s);
  auto s = children({{"a", P}});
  s = exit_of(f, s, "a", exit_kind::abnormal, 0s).state;
  s = exit_of(f, s, "a", exit_kind::abnormal, 1s).state;
  // at 6 s the restart at 1 s is exactly a period old: out of the window
  auto t = exit_of(f, s, "a", exit_kind::abnormal, 6s);
  CHECK(t.plan.what == sup_plan::action::restart);
  CHECK(t.state.restarts == std::vector<instant>{6s});
  CHECK(t.state.restarts_total == 3);
  // ... but two more within 5 s of 6 s escalate
  s = exit_of(f, t.state, "a", exit_kind::abnormal, 7s).state;
  CHECK(exit_of(f, s, "a", exit_kind::abnormal, 8s).plan.what == sup_plan::action::escalate);
}

TEST_CASE("an intensity of 0 escalates at the first restart", "[supervision]") {
  auto f = flags(restart_strategy::one_for_one, 0);
  auto t = exit_of(f, children({{"a", P}, {"b", P}}), "b", exit_kind::abnormal);
  CHECK(t.plan.what == sup_plan::action::escalate);
  CHECK(t.plan.stop == ids{"a"});
}

TEST_CASE("the restart backoff doubles its ceiling per restart in the period, with jitter",
          "[supervision]") {
  supervisor_flags f;
  f.base_backoff = 100ms;
  f.max_backoff = 1s;
  f.seed = 7;
  for (uint32_t n = 1; n <= 8; ++n) {
    duration ceiling = std::min<duration>(1s, 100ms * (1 << (n - 1)));
    for (uint64_t total = 0; total < 50; ++total) {
      auto d = restart_backoff(f, "worker", n, total);
      CHECK(d >= 0s);
      CHECK(d <= ceiling);
      CHECK(d == restart_backoff(f, "worker", n, total)); // deterministic
    }
  }
  // jitter: restarts of one child spread out instead of landing together
  std::set<duration> seen;
  for (uint64_t total = 0; total < 20; ++total)
    seen.insert(restart_backoff(f, "worker", 3, total));
  CHECK(seen.size() > 10);
  f.base_backoff = 0s;
  CHECK(restart_backoff(f, "worker", 5, 3) == 0s);

  // the plan carries it
  auto g = flags(restart_strategy::one_for_one, 10);
  g.base_backoff = 100ms;
  g.max_backoff = 1s;
  auto s = children({{"a", P}});
  for (uint32_t n = 1; n <= 5; ++n) {
    auto t = exit_of(g, s, "a", exit_kind::abnormal, std::chrono::milliseconds{n});
    CHECK(t.plan.delay == restart_backoff(g, "a", n, n - 1));
    s = t.state;
  }
}

TEST_CASE("exits that do not fit are refused and change nothing", "[supervision]") {
  auto f = flags(restart_strategy::one_for_one);
  auto s = children({{"a", T}, {"b", P}});
  auto unknown = on_exit(f, s, "ghost", exit_kind::abnormal, 0s);
  REQUIRE(!unknown);
  CHECK(is(unknown.error(), errc::invalid_transition));
  CHECK_THAT(describe(unknown.error()), Catch::Contains("child 'ghost'")
                                          && Catch::Contains("no such child"));
  auto down = exit_of(f, s, "a", exit_kind::normal).state;
  auto again = on_exit(f, down, "a", exit_kind::abnormal, 0s);
  REQUIRE(!again);
  CHECK_THAT(describe(again.error()), Catch::Contains("not running"));
  CHECK(s == children({{"a", T}, {"b", P}}));
}

TEST_CASE("children need distinct, non-empty ids, and stop newest first", "[supervision]") {
  CHECK(is(initial_state({{"a", P}, {"a", T}}).error(), errc::invalid_definition));
  CHECK(is(initial_state({{"", P}}).error(), errc::invalid_definition));
  auto s = children({{"a", P}, {"b", T}, {"c", P}});
  CHECK(shutdown_order(s) == (ids{"c", "b", "a"}));
  s = exit_of(flags(restart_strategy::one_for_one), s, "b", exit_kind::normal).state;
  CHECK(shutdown_order(s) == (ids{"c", "a"}));
}

TEST_CASE("exit reasons render by name", "[supervision]") {
  CHECK(describe(caf::make_error(caf::exit_reason::user_shutdown)) == "user_shutdown");
  CHECK(describe(caf::make_error(caf::exit_reason::kill)) == "kill");
}
