// Names and times of events, commands and phases; backoff; idempotency keys;
// state equality. Pure helpers of the workflow machine.
#include "kernel/workflow_machine.hpp"

#include <algorithm>

#include "troupe/hash.hpp"

namespace troupe::kernel {

const char* kind_of(const event& e) {
  struct {
    const char* operator()(const workflow_started&) const { return "workflow_started"; }
    const char* operator()(const step_scheduled&) const { return "step_scheduled"; }
    const char* operator()(const step_completed&) const { return "step_completed"; }
    const char* operator()(const step_failed&) const { return "step_failed"; }
    const char* operator()(const timer_fired&) const { return "timer_fired"; }
    const char* operator()(const signal_received&) const { return "signal_received"; }
    const char* operator()(const dlq_retried&) const { return "dlq_retried"; }
    const char* operator()(const dlq_dropped&) const { return "dlq_dropped"; }
    const char* operator()(const workflow_cancelled&) const { return "workflow_cancelled"; }
    const char* operator()(const workflow_crashed&) const { return "workflow_crashed"; }
  } name;
  return std::visit(name, e);
}

instant time_of(const event& e) {
  return std::visit([](const auto& ev) { return ev.at; }, e);
}

const char* to_string(timer_kind k) {
  switch (k) {
    case timer_kind::step_timeout: return "step_timeout";
    case timer_kind::retry_backoff: return "retry_backoff";
    case timer_kind::workflow_deadline: return "workflow_deadline";
    case timer_kind::gate_deadline: return "gate_deadline";
    case timer_kind::gate_reminder: return "gate_reminder";
  }
  return "unknown";
}

const char* to_string(phase p) {
  switch (p) {
    case phase::not_started: return "not_started";
    case phase::scheduling: return "scheduling";
    case phase::running: return "running";
    case phase::backoff: return "backoff";
    case phase::at_gate: return "at_gate";
    case phase::completed: return "completed";
    case phase::failed: return "failed";
    case phase::dead_lettered: return "dead_lettered";
  }
  return "unknown";
}

bool workflow_state::operator==(const workflow_state& o) const {
  return at == o.at && node == o.node && attempt == o.attempt && data == o.data
         && steps == o.steps && tokens == o.tokens && cost_nusd == o.cost_nusd && seed == o.seed && started_at == o.started_at
         && deadline == o.deadline && events == o.events && next_timer == o.next_timer
         && timers == o.timers && visits == o.visits && outcome == o.outcome && reason == o.reason
         && granted == o.granted && soft_passed == o.soft_passed
         && resume_node == o.resume_node && resume_attempt == o.resume_attempt
         && undo == o.undo && compensating == o.compensating && undo_terminal == o.undo_terminal
         && undo_reason == o.undo_reason && traceparent == o.traceparent
         && model == o.model;
}

duration backoff_delay(const retry_policy& p, uint64_t seed, const std::string& node,
                       uint32_t failed_attempt) {
  auto base = static_cast<uint64_t>(std::max<int64_t>(p.base_backoff.count(), 0));
  auto cap = static_cast<uint64_t>(std::max<int64_t>(p.max_backoff.count(), 0));
  if (base == 0 || cap == 0)
    return duration::zero();
  uint64_t ceiling = base;
  for (uint32_t i = 1; i < failed_attempt && ceiling < cap; ++i)
    ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
  ceiling = std::min(ceiling, cap);
  uint64_t draw = splitmix64(seed ^ fnv1a(node) ^ splitmix64(failed_attempt));
  return duration{static_cast<int64_t>(draw % (ceiling + 1))};
}

std::string idempotency_key(const std::string& workflow_id, const std::string& node,
                            uint32_t visit) {
  return workflow_id + "/" + node + "#" + std::to_string(visit);
}

} // namespace troupe::kernel
