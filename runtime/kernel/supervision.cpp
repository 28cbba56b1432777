// The supervisor's decisions (the table is in supervision.hpp).
#include "kernel/supervision.hpp"

#include <algorithm>
#include <set>

#include "troupe/errors.hpp"

namespace troupe {

const char* to_string(restart_type t) {
  switch (t) {
    case restart_type::permanent: return "permanent";
    case restart_type::transient: return "transient";
    case restart_type::temporary: return "temporary";
  }
  return "?";
}

const char* to_string(restart_strategy s) {
  switch (s) {
    case restart_strategy::one_for_one: return "one_for_one";
    case restart_strategy::one_for_all: return "one_for_all";
    case restart_strategy::rest_for_one: return "rest_for_one";
  }
  return "?";
}

} // namespace troupe

namespace troupe::kernel {

namespace {

std::string seconds(duration d) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms % 1000 == 0 ? std::to_string(ms / 1000) + " s" : std::to_string(ms) + " ms";
}

/// Whether a child of type `r` that ended with `k` is started again.
bool restarts(restart_type r, exit_kind k) {
  switch (r) {
    case restart_type::permanent: return true;
    case restart_type::transient: return k == exit_kind::abnormal;
    case restart_type::temporary: return false;
  }
  return false;
}

} // namespace

const char* to_string(exit_kind k) {
  switch (k) {
    case exit_kind::normal: return "normal";
    case exit_kind::shutdown: return "shutdown";
    case exit_kind::abnormal: return "abnormal";
  }
  return "?";
}

caf::expected<sup_state> initial_state(const std::vector<sup_child>& children) {
  std::set<std::string> ids;
  sup_state s;
  for (auto c : children) {
    if (c.id.empty())
      return make_error(errc::invalid_definition, "supervisor: a child has an empty id");
    if (!ids.insert(c.id).second)
      return make_error(errc::invalid_definition,
                        "supervisor: child id '" + c.id + "' is given twice");
    c.running = true;
    s.children.push_back(std::move(c));
  }
  return s;
}

std::vector<std::string> shutdown_order(const sup_state& s) {
  std::vector<std::string> out;
  for (auto i = s.children.rbegin(); i != s.children.rend(); ++i)
    if (i->running)
      out.push_back(i->id);
  return out;
}

duration restart_backoff(const supervisor_flags& f, const std::string& id, uint32_t n,
                         uint64_t total) {
  retry_policy p;
  p.base_backoff = f.base_backoff;
  p.max_backoff = f.max_backoff;
  return backoff_delay(p, f.seed ^ (total * 0x9e3779b97f4a7c15ULL), id, std::max<uint32_t>(n, 1));
}

caf::expected<sup_transition> on_exit(const supervisor_flags& f, const sup_state& s,
                                      const std::string& id, exit_kind kind, instant now) {
  auto refuse = [&](const std::string& why) {
    return make_error(errc::invalid_transition,
                      "supervisor: exit of child '" + id + "' (" + to_string(kind) + "): " + why);
  };
  if (s.escalated)
    return refuse("the supervisor has escalated and takes no more exits");
  auto at = std::find_if(s.children.begin(), s.children.end(),
                         [&](const sup_child& c) { return c.id == id; });
  if (at == s.children.end())
    return refuse("no such child");
  if (!at->running)
    return refuse("the child is not running");
  auto pos = static_cast<size_t>(at - s.children.begin());
  sup_transition t{s, {}};
  auto& st = t.state;
  auto& plan = t.plan;
  auto& child = st.children[pos];
  auto what = "child '" + id + "' (" + to_string(child.restart) + ") exited " + to_string(kind);

  if (!restarts(child.restart, kind)) {
    plan.verdict = "not restarted";
    plan.reason = what + ": " + plan.verdict;
    if (child.restart == restart_type::temporary)
      st.children.erase(st.children.begin() + static_cast<std::ptrdiff_t>(pos));
    else
      child.running = false;
    return t;
  }

  auto horizon = now - f.period;
  st.restarts.erase(std::remove_if(st.restarts.begin(), st.restarts.end(),
                                   [&](instant r) { return r <= horizon; }),
                    st.restarts.end());
  st.restarts.push_back(now);
  child.running = false;
  if (st.restarts.size() > f.intensity) {
    plan.what = sup_plan::action::escalate;
    plan.stop = shutdown_order(st);
    plan.verdict = std::to_string(st.restarts.size()) + " restarts within " + seconds(f.period)
                   + " exceed the intensity of " + std::to_string(f.intensity);
    plan.reason = what + ": " + plan.verdict;
    for (auto& c : st.children)
      c.running = false;
    st.escalated = true;
    return t;
  }

  // Which running siblings go down with it, by strategy.
  std::vector<size_t> with; // indexes, in start order
  if (f.strategy == restart_strategy::one_for_all) {
    for (size_t i = 0; i < st.children.size(); ++i)
      if (i != pos && st.children[i].running)
        with.push_back(i);
  } else if (f.strategy == restart_strategy::rest_for_one) {
    for (size_t i = pos + 1; i < st.children.size(); ++i)
      if (st.children[i].running)
        with.push_back(i);
  }
  for (auto i = with.rbegin(); i != with.rend(); ++i)
    plan.stop.push_back(st.children[*i].id);
  std::vector<size_t> again = with;
  again.push_back(pos);
  std::sort(again.begin(), again.end());
  std::vector<sup_child> kept;
  for (size_t i = 0; i < st.children.size(); ++i) {
    auto c = st.children[i];
    bool in_restart = std::find(again.begin(), again.end(), i) != again.end();
    if (in_restart && i != pos && c.restart == restart_type::temporary)
      continue; // stopped for the restart, and never restarted: forgotten
    if (in_restart) {
      c.running = true;
      plan.start.push_back(c.id);
    }
    kept.push_back(std::move(c));
  }
  st.children = std::move(kept);
  plan.what = sup_plan::action::restart;
  plan.delay = restart_backoff(f, id, static_cast<uint32_t>(st.restarts.size()),
                               st.restarts_total);
  ++st.restarts_total;
  plan.verdict = "restart " + std::to_string(st.restarts.size()) + " of at most "
                 + std::to_string(f.intensity) + " within " + seconds(f.period) + " ("
                 + to_string(f.strategy) + ")";
  plan.reason = what + ": " + plan.verdict;
  return t;
}

} // namespace troupe::kernel
