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

bool kept_for_trace(const kernel::command& c) {
  return std::holds_alternative<kernel::run_agent>(c)
         || std::holds_alternative<kernel::await_signal>(c)
         || std::holds_alternative<kernel::remind>(c)
         || std::holds_alternative<kernel::dead_letter>(c)
         || std::holds_alternative<kernel::complete>(c)
         || std::holds_alternative<kernel::fail>(c);
}

} // namespace troupe
