// The gateway's pure decisions: the circuit breaker's transitions and the
// token bucket's waits, with time passed in.
#include <catch2/catch.hpp>

#include "kernel/breaker.hpp"

using namespace troupe;
using namespace troupe::kernel;
using namespace std::chrono_literals;

namespace {

breaker_policy policy(uint32_t run, uint32_t window = 0, double rate = 0.5,
                      duration cool_down = 10s, uint32_t probes = 1) {
  breaker_policy p;
  p.consecutive_failures = run;
  p.window = window;
  p.failure_rate = rate;
  p.cool_down = cool_down;
  p.half_open_probes = probes;
  return p;
}

} // namespace

TEST_CASE("a breaker opens after a run of failures and a success breaks the run", "[breaker]") {
  circuit_breaker b{policy(3)};
  REQUIRE(b.admit(0s));
  CHECK(!b.record(false, 1s));
  CHECK(!b.record(false, 2s));
  CHECK(!b.record(true, 3s)); // the run starts over
  CHECK(!b.record(false, 4s));
  CHECK(!b.record(false, 5s));
  auto changed = b.record(false, 6s);
  REQUIRE(changed);
  CHECK(*changed == breaker_state::open);
  CHECK(!b.admit(6s));
  CHECK(!b.admit(15s)); // cool-down is 10 s from 6 s
  CHECK(b.retry_at() == 16s);
}

TEST_CASE("a breaker opens when the failure share of its window reaches the rate", "[breaker]") {
  circuit_breaker b{policy(0, 4, 0.5)}; // no run rule
  CHECK(!b.record(false, 1s));
  CHECK(!b.record(true, 2s));
  CHECK(!b.record(true, 3s)); // 1 of 3: the window is not full yet
  auto changed = b.record(false, 4s); // 2 of 4 = 0.5
  REQUIRE(changed);
  CHECK(*changed == breaker_state::open);

  circuit_breaker c{policy(0, 4, 0.75)};
  for (bool ok : {false, true, false, true, true, false, true})
    CHECK(!c.record(ok, 1s)); // never 3 failures among the last 4
  CHECK(c.state() == breaker_state::closed);
}

TEST_CASE("after the cool-down one probe goes through and its result closes or reopens",
          "[breaker]") {
  circuit_breaker b{policy(1, 0, 0.5, 10s)};
  REQUIRE(b.record(false, 0s) == breaker_state::open);
  CHECK(!b.admit(9s));
  CHECK(b.admit(10s));
  CHECK(b.state() == breaker_state::half_open);
  CHECK(!b.admit(10s)); // one probe at a time
  CHECK(b.record(false, 11s) == breaker_state::open); // failed probe: a new cool-down
  CHECK(!b.admit(20s));
  CHECK(b.admit(21s));
  CHECK(b.record(true, 22s) == breaker_state::closed);
  CHECK(b.admit(22s));
  CHECK(b.failure_run() == 0);
}

TEST_CASE("a half-open breaker lets as many probes as configured and takes back unused ones",
          "[breaker]") {
  circuit_breaker b{policy(1, 0, 0.5, 1s, 2)};
  b.record(false, 0s);
  CHECK(b.admit(1s));
  CHECK(b.admit(1s));
  CHECK(!b.admit(1s));
  b.release_probe(); // refused before sending: its slot is free again
  CHECK(b.admit(1s));
}

TEST_CASE("results of calls made before the circuit opened do not move an open breaker",
          "[breaker]") {
  circuit_breaker b{policy(2, 0, 0.5, 5s)};
  b.record(false, 0s);
  REQUIRE(b.record(false, 1s) == breaker_state::open);
  CHECK(!b.record(true, 2s)); // a slow call from before: still open
  CHECK(!b.admit(3s));
  CHECK(b.state() == breaker_state::open);
}

TEST_CASE("a closed breaker forgets its window when it closes after a probe", "[breaker]") {
  circuit_breaker b{policy(0, 2, 0.5, 1s)};
  b.record(true, 0s);
  REQUIRE(b.record(false, 0s) == breaker_state::open);
  REQUIRE(b.admit(1s));
  REQUIRE(b.record(true, 1s) == breaker_state::closed);
  CHECK(!b.record(true, 2s)); // 0 of 1 since closing: the old failure is gone
  CHECK(!b.record(true, 2s));
  CHECK(b.state() == breaker_state::closed);
}

TEST_CASE("a token bucket starts full, refills at its rate and lets a debt be waited out",
          "[bucket]") {
  token_bucket t{2.0, 4.0}; // 2 tokens/s, 4 at most
  CHECK(t.wait_for(4, 0s) == 0s);
  t.take(4, 0s);
  CHECK(t.wait_for(1, 0s) == 500ms);
  CHECK(t.wait_for(1, 500ms) == 0s);
  CHECK(t.wait_for(4, 1s) == 1s); // 2 there, 2 to go
  CHECK(t.level(10s) == Approx(4.0)); // never above capacity
  // A call larger than the bucket waits for a full bucket, goes, and its
  // debt delays the next.
  CHECK(t.wait_for(10, 10s) == 0s);
  t.take(10, 10s);
  CHECK(t.level(10s) == Approx(-6.0));
  CHECK(t.wait_for(1, 10s) == 3500ms);
  t.give_back(3, 10s);
  CHECK(t.level(10s) == Approx(-3.0));
}

TEST_CASE("a token bucket with rate 0 never waits", "[bucket]") {
  token_bucket t;
  CHECK(t.unlimited());
  t.take(1e9, 0s);
  CHECK(t.wait_for(1e9, 0s) == 0s);
}
