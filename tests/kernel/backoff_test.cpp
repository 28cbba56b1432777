// backoff_delay(): full-jitter exponential backoff drawn from a hash of
// (seed, node, attempt). Golden values pin the jitter function: journaled
// seeds must replay to the same delays forever. Pure; no actor system.
#include <algorithm>
#include <limits>
#include <set>

#include "kernel/kernel_support.hpp"

using namespace troupe;
using namespace troupe::kernel;
using namespace std::chrono_literals;

namespace {

retry_policy policy(duration base, duration max) {
  retry_policy p;
  p.base_backoff = base;
  p.max_backoff = max;
  return p;
}

std::vector<int64_t> sequence(const retry_policy& p, uint64_t seed, const std::string& node,
                              uint32_t n = 6) {
  std::vector<int64_t> out;
  for (uint32_t a = 1; a <= n; ++a)
    out.push_back(backoff_delay(p, seed, node, a).count());
  return out;
}

// min(max, base * 2^(attempt-1)), without overflow.
int64_t ceiling(const retry_policy& p, uint32_t attempt) {
  long double c = static_cast<long double>(p.base_backoff.count());
  for (uint32_t i = 1; i < attempt && c < p.max_backoff.count(); ++i)
    c *= 2;
  return static_cast<int64_t>(std::min<long double>(c, p.max_backoff.count()));
}

} // namespace

TEST_CASE("backoff_delay: golden sequence for a fixed seed", "[backoff]") {
  // Recorded once from the implementation (FNV-1a + splitmix64). A change to
  // the jitter function breaks replay of journaled workflows: it must fail here.
  auto p = policy(100ms, 10s);
  CHECK(sequence(p, 42, "extract") == std::vector<int64_t>{14295879, 190398503, 63841851,
                                                           236824941, 218666145, 2737131191});
  CHECK(sequence(p, 43, "extract") == std::vector<int64_t>{74121211, 9662902, 93688046,
                                                           597631689, 215503158, 2669048238});
}

TEST_CASE("backoff_delay: deterministic for equal arguments", "[backoff]") {
  auto p = policy(100ms, 10s);
  for (uint64_t seed : {0ull, 1ull, 42ull, ~0ull})
    CHECK(sequence(p, seed, "n", 20) == sequence(p, seed, "n", 20));
}

TEST_CASE("backoff_delay: within [0, min(max, base * 2^(n-1))]", "[backoff]") {
  for (auto p : {policy(100ms, 10s), policy(1ms, 5ms), policy(7ns, 1000ns), policy(1s, 1s),
                 policy(3ms, 1min)}) {
    for (uint64_t seed = 0; seed < 200; ++seed) {
      for (uint32_t a = 1; a <= 40; ++a) {
        auto d = backoff_delay(p, seed * 7919, "node-" + std::to_string(seed % 5), a).count();
        INFO("base " << p.base_backoff.count() << "ns max " << p.max_backoff.count()
                     << "ns seed " << seed << " attempt " << a);
        REQUIRE(d >= 0);
        REQUIRE(d <= ceiling(p, a));
      }
    }
  }
}

TEST_CASE("backoff_delay: the ceiling doubles per attempt and caps at max", "[backoff]") {
  // Over many seeds the largest delay seen approaches the ceiling: a delay
  // that ignored the attempt number (or the cap) shows here.
  auto p = policy(100ms, 1s);
  for (uint32_t a = 1; a <= 6; ++a) {
    int64_t largest = 0;
    double sum = 0;
    const int n = 2000;
    for (uint64_t seed = 0; seed < n; ++seed) {
      auto d = backoff_delay(p, seed, "extract", a).count();
      largest = std::max(largest, d);
      sum += static_cast<double>(d);
    }
    auto c = ceiling(p, a);
    INFO("attempt " << a << " ceiling " << c);
    CHECK(largest > c * 95 / 100);
    CHECK(largest <= c);
    auto mean = sum / n; // full jitter: uniform, so about c / 2
    CHECK(mean > c * 0.45);
    CHECK(mean < c * 0.55);
  }
  CHECK(ceiling(p, 4) == 800000000);
  CHECK(ceiling(p, 5) == 1000000000);
}

TEST_CASE("backoff_delay: different seeds and nodes give different sequences", "[backoff]") {
  auto p = policy(100ms, 10s);
  std::set<std::vector<int64_t>> seen;
  for (uint64_t seed = 0; seed < 100; ++seed)
    seen.insert(sequence(p, seed, "extract"));
  CHECK(seen.size() == 100);
  CHECK(sequence(p, 42, "extract") != sequence(p, 42, "analyze"));
  CHECK(sequence(p, 42, "a") != sequence(p, 42, "b"));
  // Attempts of one sequence are drawn independently, not from one number.
  auto s = sequence(policy(1s, 1s), 42, "extract", 10);
  CHECK(std::set<int64_t>(s.begin(), s.end()).size() == s.size());
}

TEST_CASE("backoff_delay: zero base gives zero", "[backoff]") {
  auto p = policy(0ns, 10s);
  for (uint64_t seed = 0; seed < 50; ++seed)
    for (uint32_t a = 1; a <= 64; ++a)
      REQUIRE(backoff_delay(p, seed, "n", a) == 0ns);
  CHECK(backoff_delay(policy(0ns, 0ns), 1, "n", 1) == 0ns);
}

TEST_CASE("backoff_delay: huge attempt numbers do not overflow", "[backoff]") {
  const auto big = std::numeric_limits<uint32_t>::max();
  auto p = policy(100ms, 10s);
  for (uint64_t seed = 0; seed < 50; ++seed) {
    for (uint32_t a : {63u, 64u, 65u, 1000u, big - 1, big}) {
      auto d = backoff_delay(p, seed, "n", a);
      REQUIRE(d >= 0ns);
      REQUIRE(d <= 10s);
    }
  }
  // The largest representable policy: the cap itself must not overflow.
  auto huge = policy(duration::max() / 2, duration::max());
  for (uint32_t a : {1u, 2u, 3u, big}) {
    auto d = backoff_delay(huge, 99, "n", a);
    REQUIRE(d >= 0ns);
    REQUIRE(d <= duration::max());
  }
  // Late attempts draw from the full [0, max] range, not a wrapped ceiling.
  int64_t largest = 0;
  for (uint64_t seed = 0; seed < 500; ++seed)
    largest = std::max<int64_t>(largest, backoff_delay(p, seed, "n", big).count());
  CHECK(largest > (10s).count() * 9 / 10);
}
