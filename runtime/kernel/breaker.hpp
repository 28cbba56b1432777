// Circuit breaker and token bucket: the gateway's decisions about one lane
// (provider + model), as pure values. Time is an argument, never read: the
// gateway actor passes its clock's now, tests pass whatever they like.
//
// Breaker transitions (policy in troupe/gateway.hpp, breaker_policy):
//
//   closed     failure, run >= consecutive_failures          -> open
//   closed     failure, >= window results and failure share
//              of the last `window` >= failure_rate          -> open
//   open       admit() at or after opened + cool_down        -> half_open (admitted:
//                                                                the first probe)
//   half_open  admit() with fewer than half_open_probes out  -> admitted (a probe)
//   half_open  success                                       -> closed (counts reset)
//   half_open  failure                                       -> open (cool-down anew)
//
// A result that arrives for a call admitted in an earlier state (a slow
// call from before the circuit opened) is still counted in the current one:
// the breaker judges the provider as it is now.
#pragma once

#include <cstdint>
#include <deque>
#include <optional>

#include "troupe/gateway.hpp"

namespace troupe::kernel {

enum class breaker_state : uint8_t { closed, open, half_open };
const char* to_string(breaker_state s);

class circuit_breaker {
public:
  explicit circuit_breaker(breaker_policy p = {});

  /// May a call go now? Open before the cool-down ends: no. Counts the
  /// probes it lets through when half-open.
  bool admit(duration now);
  /// A call's result. Returns the new state when it changed.
  std::optional<breaker_state> record(bool success, duration now);
  /// A call admitted but never made (refused before sending): gives back
  /// its probe slot.
  void release_probe();

  breaker_state state() const { return state_; }
  /// When an open circuit lets the next probe through.
  duration retry_at() const { return opened_at_ + policy_.cool_down; }
  uint32_t failure_run() const { return run_; }

private:
  void open(duration now);
  void close();

  breaker_policy policy_;
  breaker_state state_ = breaker_state::closed;
  uint32_t run_ = 0;               ///< consecutive failures
  std::deque<bool> recent_;        ///< the last `window` results, true = failure
  uint32_t recent_failures_ = 0;
  duration opened_at_{0};
  uint32_t probes_out_ = 0;
};

/// A token bucket: `capacity` tokens, refilled at `per_second`. A rate of 0
/// is unlimited.
class token_bucket {
public:
  token_bucket() = default;
  token_bucket(double per_second, double capacity);

  /// How long until `n` tokens are there (0: now). Does not take them.
  duration wait_for(double n, duration now);
  /// Takes `n` tokens (the level may go below zero: a debt later calls wait
  /// out, so one large call cannot be starved forever).
  void take(double n, duration now);
  /// Gives back `n` tokens (an estimate that was too high), up to capacity.
  void give_back(double n, duration now);
  double level(duration now);
  bool unlimited() const { return rate_ <= 0; }

private:
  void refill(duration now);

  double rate_ = 0;
  double capacity_ = 0;
  double level_ = 0;
  duration last_{0};
  bool started_ = false;
};

} // namespace troupe::kernel
