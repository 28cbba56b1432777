// Step attempts folded from events (runtime/attempts.hpp): how each kind of
// event begins or ends one, as the trace and the admin API read them.
#include <catch2/catch.hpp>

#include <vector>

#include "runtime/attempts.hpp"

using namespace troupe;
using namespace troupe::kernel;

namespace {

instant ms(int64_t x) {
  return std::chrono::milliseconds{x};
}

/// Folds `events`, returning every attempt ended and the one running last.
std::vector<step_attempt> fold(const std::vector<event>& events) {
  attempt_fold f;
  std::vector<step_attempt> out;
  for (const auto& e : events)
    if (const auto* a = f.add(e))
      out.push_back(*a);
  if (const auto* a = f.in_flight())
    out.push_back(*a);
  return out;
}

} // namespace

TEST_CASE("an attempt ends with its outcome, its deadline, a cancel, a crash or the next one",
          "[attempts]") {
  step_completed done{ms(5), "a", 1, "ok", nullptr, 7};
  done.cost_nusd = 3;
  auto a = fold({step_scheduled{ms(1), "a", 1}, done});
  REQUIRE(a.size() == 1);
  CHECK(a[0].end == attempt_end::completed);
  CHECK(a[0].label == "ok");
  CHECK(a[0].tokens == 7);
  CHECK(a[0].cost_nusd == 3);
  CHECK(a[0].start_ns == 1'000'000);
  CHECK(a[0].end_ns == 5'000'000);

  a = fold({step_scheduled{ms(1), "a", 1},
            step_failed{ms(2), "a", 1, failure_kind::crashed, "boom", 4}});
  REQUIRE(a.size() == 1);
  CHECK(a[0].end == attempt_end::failed);
  CHECK(a[0].kind == failure_kind::crashed);
  CHECK(a[0].reason == "boom");
  CHECK(a[0].tokens == 4);

  for (event ender : {event{timer_fired{ms(9), 1, timer_kind::workflow_deadline}},
                      event{workflow_cancelled{ms(9), "ann", "no"}},
                      event{workflow_crashed{ms(9), "bug"}}}) {
    a = fold({step_scheduled{ms(1), "a", 1}, ender});
    REQUIRE(a.size() == 1);
    CHECK(a[0].end == attempt_end::abandoned);
    CHECK(a[0].end_ns == 9'000'000);
  }

  // one scheduled while another runs (no journal this runtime writes): both kept
  a = fold({step_scheduled{ms(1), "a", 1}, step_scheduled{ms(3), "b", 1},
            step_completed{ms(4), "b", 1, "ok", nullptr, 0}});
  REQUIRE(a.size() == 2);
  CHECK(a[0].node == "a");
  CHECK(a[0].end == attempt_end::abandoned);
  CHECK(a[0].end_ns == 3'000'000);
  CHECK(a[1].node == "b");
  CHECK(a[1].end == attempt_end::completed);
}

TEST_CASE("a reply naming another attempt changes nothing, and a timer of a step times it out",
          "[attempts]") {
  auto a = fold({step_scheduled{ms(1), "a", 2}, step_completed{ms(2), "a", 1, "ok", nullptr, 5},
                 step_failed{ms(2), "b", 2, failure_kind::timeout, "", 5},
                 timer_fired{ms(3), 2, timer_kind::retry_backoff}});
  REQUIRE(a.size() == 1);
  CHECK_FALSE(a[0].ended());
  CHECK(a[0].tokens == 0);
  a = fold({step_scheduled{ms(1), "a", 1}, timer_fired{ms(3), 2, timer_kind::step_timeout}});
  REQUIRE(a.size() == 1);
  CHECK(a[0].end == attempt_end::timed_out);
}
