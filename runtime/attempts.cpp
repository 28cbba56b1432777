// Step attempts as a workflow's events tell them (see the header).
#include "runtime/attempts.hpp"

#include "persistence/event_codec.hpp"

namespace troupe {

const step_attempt* attempt_fold::end(attempt_end how, int64_t at) {
  if (!running_)
    return nullptr;
  running_ = false;
  current_.end = how;
  current_.end_ns = at;
  return &current_;
}

const step_attempt* attempt_fold::add(const kernel::event& e) {
  auto at = static_cast<int64_t>(kernel::time_of(e).count());
  auto names_current = [&](const std::string& node, uint32_t attempt) {
    return running_ && node == current_.node && attempt == current_.attempt;
  };
  if (auto s = std::get_if<kernel::step_scheduled>(&e)) {
    const step_attempt* ended = nullptr;
    if (end(attempt_end::abandoned, at) != nullptr) { // one ran still: kept apart from the next
      ended_ = current_;
      ended = &ended_;
    }
    running_ = true;
    current_.node = s->node;
    current_.attempt = s->attempt;
    current_.start_ns = at;
    current_.end_ns = -1;
    current_.end = attempt_end::running;
    current_.label.clear();
    current_.kind = failure_kind::crashed;
    current_.reason.clear();
    current_.tokens = 0;
    current_.cost_nusd = 0;
    return ended;
  }
  auto spent = [&](uint64_t tokens, uint64_t cost_nusd) {
    current_.tokens = tokens;
    current_.cost_nusd = cost_nusd;
  };
  if (auto c = std::get_if<kernel::step_completed>(&e); c && names_current(c->node, c->attempt)) {
    current_.label = c->label;
    spent(c->tokens, c->cost_nusd);
    return end(attempt_end::completed, at);
  }
  if (auto f = std::get_if<kernel::step_failed>(&e); f && names_current(f->node, f->attempt)) {
    current_.kind = f->kind;
    current_.reason = f->reason;
    spent(f->tokens, f->cost_nusd);
    return end(attempt_end::failed, at);
  }
  if (auto t = std::get_if<kernel::timer_fired>(&e)) {
    if (t->kind == kernel::timer_kind::step_timeout)
      return end(attempt_end::timed_out, at);
    if (t->kind == kernel::timer_kind::workflow_deadline)
      return end(attempt_end::abandoned, at);
    return nullptr;
  }
  if (std::holds_alternative<kernel::workflow_cancelled>(e)
      || std::holds_alternative<kernel::workflow_crashed>(e))
    return end(attempt_end::abandoned, at);
  return nullptr;
}

std::vector<step_attempt> derive_attempts(const std::vector<journal_record>& history) {
  std::vector<step_attempt> out;
  attempt_fold fold;
  for (const auto& r : history) {
    auto e = persistence::from_record_without_state(r);
    if (!e)
      continue;
    if (const auto* ended = fold.add(*e))
      out.push_back(*ended);
  }
  if (const auto* running = fold.in_flight())
    out.push_back(*running);
  return out;
}

} // namespace troupe
