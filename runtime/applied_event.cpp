// What the workflow actor's transitions made of a write's events (see the header).
#include "runtime/applied_event.hpp"

namespace troupe {

void read_facts(const kernel::workflow_state& s, trace_facts& out) {
  out.at = s.at;
  out.steps = s.steps;
  out.tokens = s.tokens;
  out.cost_nusd = s.cost_nusd;
  out.compensating = s.compensating;
  auto v = s.visits.find(s.node);
  out.visit = v != s.visits.end() ? v->second : 0;
  out.outcome = s.outcome;
  out.reason = s.reason;
  out.undo_reason = s.undo_reason;
}

namespace {

/// Whether spans read command `c` (the trace builder's carry_out).
bool kept_for_trace(const kernel::command& c) {
  return std::holds_alternative<kernel::run_agent>(c)
         || std::holds_alternative<kernel::await_signal>(c)
         || std::holds_alternative<kernel::remind>(c)
         || std::holds_alternative<kernel::dead_letter>(c)
         || std::holds_alternative<kernel::complete>(c)
         || std::holds_alternative<kernel::fail>(c);
}

/// Drops what spans do not read and would be freed on another thread.
void drop_payloads(kernel::event& e) {
  if (auto s = std::get_if<kernel::workflow_started>(&e))
    s->input = nullptr;
  else if (auto c = std::get_if<kernel::step_completed>(&e))
    c->patch = nullptr;
  else if (auto g = std::get_if<kernel::signal_received>(&e))
    g->patch = nullptr;
}

} // namespace

bool applied_events::add(kernel::event e, const std::vector<kernel::command>& commands,
                         const kernel::workflow_state& after, std::string problem) {
  if (size_ == capacity)
    return false;
  auto& a = events_[size_];
  a.command.reset();
  for (const auto& c : commands) {
    if (!kept_for_trace(c))
      continue;
    if (a.command)
      return false;
    a.command = c;
  }
  drop_payloads(e);
  a.event = std::move(e);
  read_facts(after, a.after);
  a.problem = std::move(problem);
  ++size_;
  return true;
}

} // namespace troupe
