// The seams through which time and randomness enter the runtime. Production
// implementations are the defaults; tests substitute deterministic ones.
// Implementations must be thread-safe: actors on any scheduler thread call them.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

namespace troupe {

/// Source of "now", in nanoseconds since the clock's epoch.
class clock_source {
public:
  virtual ~clock_source() = default;
  virtual std::chrono::nanoseconds now() const = 0;
};

/// Source of random 64-bit numbers (workflow jitter seeds).
class random_source {
public:
  virtual ~random_source() = default;
  virtual uint64_t next() = 0;
};

/// Wall-clock time (std::chrono::system_clock).
std::shared_ptr<clock_source> system_clock_source();
/// A deterministic generator: the same seed gives the same sequence.
std::shared_ptr<random_source> seeded_random(uint64_t seed);
/// Seeded from std::random_device.
std::shared_ptr<random_source> system_random();

} // namespace troupe
