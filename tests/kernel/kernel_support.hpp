// Helpers shared by the kernel tests: terse event constructors, commands
// rendered as strings ("schedule_step(extract,1)") so that expected
// transitions read as tables and failures print readably, and the test
// definition "triage" most tables run against. Header-only; no actor system.
#pragma once

#include <chrono>
#include <cstdint>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "kernel/workflow_machine.hpp"
#include "troupe/errors.hpp"

namespace troupe::kernel::test {

using nlohmann::json;

/// `n` milliseconds after the clock's epoch.
inline instant ms(int64_t n) {
  return std::chrono::milliseconds{n};
}

// -- events -------------------------------------------------------------------

inline event started(int64_t at, json input = json::object(), uint64_t seed = 7) {
  return workflow_started{ms(at), std::move(input), seed};
}
inline event scheduled(int64_t at, std::string node, uint32_t attempt) {
  return step_scheduled{ms(at), std::move(node), attempt};
}
inline event completed(int64_t at, std::string node, uint32_t attempt, std::string label,
                       json patch = json::object(), uint64_t tokens = 0) {
  return step_completed{ms(at), std::move(node), attempt, std::move(label), std::move(patch),
                        tokens};
}
inline event failed(int64_t at, std::string node, uint32_t attempt, failure_kind kind,
                    uint64_t tokens = 0, std::string reason = "boom") {
  return step_failed{ms(at), std::move(node), attempt, kind, std::move(reason), tokens};
}
/// An attempt that cost `usd` (and `tokens`).
inline event completed_costing(int64_t at, std::string node, uint32_t attempt, double usd,
                               uint64_t tokens = 0) {
  step_completed e{ms(at), std::move(node), attempt, "ok", json::object(), tokens};
  e.cost_nusd = to_nano_usd(usd);
  return e;
}
inline event failed_costing(int64_t at, std::string node, uint32_t attempt, failure_kind kind,
                            double usd) {
  step_failed e{ms(at), std::move(node), attempt, kind, "boom", 0};
  e.cost_nusd = to_nano_usd(usd);
  return e;
}
inline event fired(instant at, uint64_t timer, timer_kind kind) {
  timer_fired e{at, timer};
  e.kind = kind;
  return e;
}
/// How the workflow actor journals a step timeout that fired.
inline event timed_out(int64_t at, std::string node, uint32_t attempt, uint64_t tokens = 0) {
  return step_failed{ms(at), std::move(node), attempt, failure_kind::timeout,
                     "no outcome within 1000 ms", tokens};
}
inline event timeout_fired(int64_t at, uint64_t timer) {
  return fired(ms(at), timer, timer_kind::step_timeout);
}
inline event retry_fired(int64_t at, uint64_t timer) {
  return fired(ms(at), timer, timer_kind::retry_backoff);
}
inline event deadline_fired(int64_t at, uint64_t timer) {
  return fired(ms(at), timer, timer_kind::workflow_deadline);
}
inline event signal(int64_t at, std::string gate, std::string decision, json patch = nullptr,
                    std::string by = "ann") {
  return signal_received{ms(at), std::move(gate), std::move(decision), std::move(patch),
                         std::move(by)};
}

inline event cancel(int64_t at, std::string reason = "customer asked", std::string by = "ops") {
  return workflow_cancelled{ms(at), std::move(by), std::move(reason)};
}
inline event dlq_retry(int64_t at, budget_grant grant = {}, std::string by = "ops") {
  return dlq_retried{ms(at), std::move(by), grant};
}
inline event dlq_drop(int64_t at, std::string reason = "obsolete", std::string by = "ops") {
  return dlq_dropped{ms(at), std::move(by), std::move(reason)};
}

// -- rendering ----------------------------------------------------------------

/// "1500ms" when whole milliseconds, else "1500123ns".
inline std::string render_time(instant t) {
  if (t.count() % 1000000 == 0)
    return std::to_string(t.count() / 1000000) + "ms";
  return std::to_string(t.count()) + "ns";
}

/// One command as "name(args)". fail's reason is left out (asserted apart).
inline std::string render(const command& c) {
  struct {
    std::string operator()(const schedule_step& x) const {
      return "schedule_step(" + x.node + "," + std::to_string(x.attempt) + ")";
    }
    std::string operator()(const run_agent& x) const {
      return "run_agent(" + x.node + "," + x.agent + "," + std::to_string(x.attempt) + ","
             + std::to_string(x.visit) + (x.compensation ? ",undo" : "") + ")";
    }
    std::string operator()(const cancel_step& x) const {
      return "cancel_step(" + x.node + "," + std::to_string(x.attempt) + ")";
    }
    std::string operator()(const start_timer& x) const {
      return "start_timer(" + std::to_string(x.id) + "," + to_string(x.kind) + ","
             + render_time(x.fire_at) + ")";
    }
    std::string operator()(const cancel_timer& x) const {
      return "cancel_timer(" + std::to_string(x.id) + ")";
    }
    std::string operator()(const await_signal& x) const {
      return "await_signal(" + x.gate + ")";
    }
    std::string operator()(const remind& x) const {
      return "remind(" + x.gate + "," + std::to_string(x.n) + ")";
    }
    std::string operator()(const dead_letter& x) const {
      return "dead_letter(" + x.node + "," + x.outcome + ")";
    }
    std::string operator()(const complete& x) const { return "complete(" + x.terminal + ")"; }
    std::string operator()(const fail& x) const {
      return "fail(" + x.terminal + "," + x.outcome + ")";
    }
  } r;
  return std::visit(r, c);
}

inline std::vector<std::string> render(const std::vector<command>& cs) {
  std::vector<std::string> out;
  for (auto& c : cs)
    out.push_back(render(c));
  return out;
}

inline std::string render(const workflow_state& s) {
  std::ostringstream o;
  o << "{" << to_string(s.at) << " node=" << s.node << " attempt=" << s.attempt
    << " data=" << s.data.dump() << " steps=" << s.steps << " tokens=" << s.tokens
    << " events=" << s.events << " next_timer=" << s.next_timer << " timers=[";
  for (auto& [id, t] : s.timers)
    o << id << ":" << to_string(t.kind) << "@" << render_time(t.fire_at) << " ";
  o << "] visits=[";
  for (auto& [n, v] : s.visits)
    o << n << ":" << v << " ";
  o << "] outcome=" << s.outcome << " reason=" << s.reason << "}";
  return o.str();
}

// -- definitions --------------------------------------------------------------

/// The built definition; fails the test with the refusal otherwise.
inline definition built(caf::expected<definition> d) {
  if (!d)
    FAIL("definition does not build: " << describe(d.error()));
  return std::move(*d);
}

/// The graph most tests run against (times in ms; timeout, crashed and
/// bad_output are retryable, circuit_open is not):
///
///   extract (extractor; timeout 1000, 3 attempts, backoff 100..1000)
///     ok -> analyze, low_confidence -> review, circuit_open -> review,
///     exhausted -> broken; no budget route
///   analyze (analyzer; timeout 2000, 1 attempt, fallback broken)
///     ok -> signoff, budget -> signoff
///   review  (gate) approve -> analyze, reject -> rejected (edit takes approve's)
///   signoff (gate) approve -> done, reject -> rejected, edit -> extract,
///     budget -> expired
///   done (completed); rejected, broken, expired (failed)
inline definition triage(budgets limits = {}, std::string start = {}) {
  // Explicit, not the default: circuit_open routes at once.
  const std::set<failure_kind> retryable = {failure_kind::timeout, failure_kind::crashed,
                                            failure_kind::bad_output};
  agent_policy extract;
  extract.retry.retryable = retryable;
  extract.timeout = std::chrono::milliseconds{1000};
  extract.retry.max_attempts = 3;
  extract.retry.base_backoff = std::chrono::milliseconds{100};
  extract.retry.max_backoff = std::chrono::milliseconds{1000};
  agent_policy analyze;
  analyze.retry.retryable = retryable;
  analyze.timeout = std::chrono::milliseconds{2000};
  analyze.fallback = "broken";
  definition_builder b{"triage"};
  b.agent("extract", "extractor", extract)
      .on("ok", "analyze")
      .on("low_confidence", "review")
      .on("circuit_open", "review")
      .on("exhausted", "broken")
      .agent("analyze", "analyzer", analyze)
      .on("ok", "signoff")
      .on("budget", "signoff")
      .gate("review")
      .on("approve", "analyze")
      .on("reject", "rejected")
      .gate("signoff")
      .on("approve", "done")
      .on("reject", "rejected")
      .on("edit", "extract")
      .on("budget", "expired")
      .completed("done")
      .failed("rejected")
      .failed("broken")
      .failed("expired")
      .limits(limits);
  if (!start.empty())
    b.start(start);
  return built(b.build());
}

inline budgets with_steps(uint64_t n) {
  budgets b;
  b.max_steps = n;
  return b;
}
inline budgets with_tokens(uint64_t n) {
  budgets b;
  b.max_tokens = n;
  return b;
}
inline budgets with_cost(double usd) {
  budgets b;
  b.max_cost_usd = usd;
  return b;
}
inline budgets with_deadline(int64_t ms_) {
  budgets b;
  b.deadline = std::chrono::milliseconds{ms_};
  return b;
}

/// Folds `history` from the initial state; every event must be accepted.
inline transition run(const definition& def, const std::vector<event>& history) {
  transition t;
  for (size_t i = 0; i < history.size(); ++i) {
    auto next = apply(def, t.state, history[i]);
    if (!next)
      FAIL("history event #" << i + 1 << " (" << kind_of(history[i])
                             << ") refused: " << describe(next.error()));
    t = std::move(*next);
  }
  return t;
}

} // namespace troupe::kernel::test

namespace Catch {
template <>
struct StringMaker<troupe::kernel::workflow_state> {
  static std::string convert(const troupe::kernel::workflow_state& s) {
    return troupe::kernel::test::render(s);
  }
};
} // namespace Catch
