// A clock that can jump: the system clock plus an offset that only grows.
// The order_processing and loan_approval examples and their tests give it to
// the runtime (config::clock) and advance it past a step's timeout instead
// of waiting for the timeout in real time; runtime::clock_changed() then
// makes the timers that fell due fire at once. Thread-safe: the runtime's
// actors read it on any thread while a driver thread advances it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

#include "troupe/seams.hpp"

namespace troupe::examples {

class virtual_clock final : public clock_source {
public:
  std::chrono::nanoseconds now() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
           + std::chrono::nanoseconds{offset_.load()};
  }
  /// Moves the clock `d` ahead at once (d >= 0). Call
  /// runtime::clock_changed() afterwards so that due timers fire.
  void advance(std::chrono::nanoseconds d) { offset_ += d.count(); }
  /// How far the clock has been moved ahead of the system clock.
  std::chrono::nanoseconds skew() const { return std::chrono::nanoseconds{offset_.load()}; }

private:
  std::atomic<int64_t> offset_{0};
};

} // namespace troupe::examples
