#include "kernel/breaker.hpp"

#include <algorithm>
#include <cmath>

namespace troupe::kernel {

const char* to_string(breaker_state s) {
  switch (s) {
    case breaker_state::closed: return "closed";
    case breaker_state::open: return "open";
    case breaker_state::half_open: return "half_open";
  }
  return "unknown";
}

// -- circuit_breaker ----------------------------------------------------------

circuit_breaker::circuit_breaker(breaker_policy p) : policy_(p) {
  policy_.half_open_probes = std::max<uint32_t>(policy_.half_open_probes, 1);
}

bool circuit_breaker::admit(duration now) {
  switch (state_) {
    case breaker_state::closed:
      return true;
    case breaker_state::open:
      if (now < retry_at())
        return false;
      state_ = breaker_state::half_open;
      probes_out_ = 1;
      return true;
    case breaker_state::half_open:
      if (probes_out_ >= policy_.half_open_probes)
        return false;
      ++probes_out_;
      return true;
  }
  return false;
}

void circuit_breaker::release_probe() {
  if (state_ == breaker_state::half_open && probes_out_ > 0)
    --probes_out_;
}

std::optional<breaker_state> circuit_breaker::record(bool success, duration now) {
  if (state_ == breaker_state::half_open) {
    if (success)
      close();
    else
      open(now);
    return state_;
  }
  if (state_ == breaker_state::open)
    return std::nullopt; // a late result of a call from before it opened
  run_ = success ? 0 : run_ + 1;
  if (policy_.window > 0) {
    recent_.push_back(!success);
    recent_failures_ += success ? 0 : 1;
    if (recent_.size() > policy_.window) {
      recent_failures_ -= recent_.front() ? 1 : 0;
      recent_.pop_front();
    }
  }
  bool by_run = policy_.consecutive_failures > 0 && run_ >= policy_.consecutive_failures;
  bool by_rate = policy_.window > 0 && recent_.size() >= policy_.window
                 && recent_failures_ >= policy_.failure_rate * static_cast<double>(recent_.size());
  if (!success && (by_run || by_rate)) {
    open(now);
    return state_;
  }
  return std::nullopt;
}

void circuit_breaker::open(duration now) {
  state_ = breaker_state::open;
  opened_at_ = now;
  probes_out_ = 0;
}

void circuit_breaker::close() {
  state_ = breaker_state::closed;
  run_ = 0;
  recent_.clear();
  recent_failures_ = 0;
  probes_out_ = 0;
}

// -- token_bucket -------------------------------------------------------------

token_bucket::token_bucket(double per_second, double capacity)
    : rate_(per_second), capacity_(std::max(capacity, 1.0)), level_(capacity_) {
}

void token_bucket::refill(duration now) {
  if (!started_) {
    started_ = true;
    last_ = now;
    return;
  }
  if (now <= last_)
    return;
  auto seconds = std::chrono::duration<double>(now - last_).count();
  level_ = std::min(capacity_, level_ + seconds * rate_);
  last_ = now;
}

duration token_bucket::wait_for(double n, duration now) {
  if (unlimited())
    return duration::zero();
  refill(now);
  // A call larger than the bucket waits for a full bucket, then goes (and
  // leaves a debt), rather than never.
  auto need = std::min(n, capacity_) - level_;
  if (need <= 0)
    return duration::zero();
  return std::chrono::duration_cast<duration>(std::chrono::duration<double>(need / rate_));
}

void token_bucket::take(double n, duration now) {
  if (unlimited())
    return;
  refill(now);
  level_ -= n;
}

void token_bucket::give_back(double n, duration now) {
  if (unlimited())
    return;
  refill(now);
  level_ = std::min(capacity_, level_ + n);
}

double token_bucket::level(duration now) {
  refill(now);
  return level_;
}

} // namespace troupe::kernel
