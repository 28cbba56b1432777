// Definition building and validation. Pure: runs once when a definition is
// built; every refusal names the node at fault.
#include "troupe/definition.hpp"

#include <algorithm>
#include <cmath>
#include <deque>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "troupe/errors.hpp"

namespace troupe {

const char* to_string(failure_kind k) {
  switch (k) {
    case failure_kind::timeout: return "timeout";
    case failure_kind::crashed: return "crashed";
    case failure_kind::bad_output: return "bad_output";
    case failure_kind::circuit_open: return "circuit_open";
    case failure_kind::rejected: return "rejected";
    case failure_kind::budget: return "budget";
  }
  return "unknown";
}

const node* definition::find(const std::string& name) const {
  auto i = std::find_if(nodes.begin(), nodes.end(), [&](const node& n) { return n.name == name; });
  return i == nodes.end() ? nullptr : &*i;
}

failure_decision failure_route(const node& n, failure_kind kind, uint32_t attempt) {
  const auto& retry = n.policy.retry;
  bool retryable = retry.retryable.count(kind) > 0;
  if (retryable && attempt < retry.max_attempts)
    return {true, {}, {}};
  auto route = [&](const char* label) -> const std::string* {
    auto i = n.routes.find(label);
    return i == n.routes.end() ? nullptr : &i->second;
  };
  std::string label = retryable ? outcome::exhausted : to_string(kind);
  if (retryable)
    if (auto r = route(outcome::exhausted))
      return {false, *r, label};
  if (auto r = route(to_string(kind)))
    return {false, *r, to_string(kind)};
  if (kind == failure_kind::rejected)
    if (auto r = route(outcome::exhausted))
      return {false, *r, label};
  if (!n.policy.fallback.empty())
    return {false, n.policy.fallback, label};
  return {false, {}, label};
}

// -- builder ------------------------------------------------------------------

definition_builder::definition_builder(std::string name, uint32_t version) {
  def_.name = std::move(name);
  def_.version = version;
}

namespace {

node make_node(std::string name, node_kind kind) {
  node n;
  n.name = std::move(name);
  n.kind = kind;
  return n;
}

} // namespace

definition_builder& definition_builder::agent(std::string name, std::string agent,
                                              agent_policy policy) {
  auto n = make_node(std::move(name), node_kind::agent);
  n.agent = std::move(agent);
  n.policy = std::move(policy);
  def_.nodes.push_back(std::move(n));
  return *this;
}

definition_builder& definition_builder::gate(std::string name, gate_policy p) {
  def_.nodes.push_back(make_node(std::move(name), node_kind::gate));
  def_.nodes.back().gate = std::move(p);
  return *this;
}

definition_builder& definition_builder::completed(std::string name) {
  def_.nodes.push_back(make_node(std::move(name), node_kind::terminal));
  def_.nodes.back().terminal = terminal_kind::completed;
  return *this;
}

definition_builder& definition_builder::failed(std::string name) {
  def_.nodes.push_back(make_node(std::move(name), node_kind::terminal));
  def_.nodes.back().terminal = terminal_kind::failed;
  return *this;
}

definition_builder& definition_builder::on(std::string label, std::string target) {
  if (def_.nodes.empty()) {
    if (error_.empty())
      error_ = "route '" + label + "' added before any node";
    return *this;
  }
  auto& n = def_.nodes.back();
  if (!n.routes.emplace(label, target).second && error_.empty())
    error_ = "node '" + n.name + "': route '" + label + "' given twice";
  return *this;
}

definition_builder& definition_builder::start(std::string name) {
  def_.start = std::move(name);
  return *this;
}

uint64_t to_nano_usd(double usd) {
  if (!(usd > 0)) // negative, zero or NaN
    return 0;
  double nano = std::round(usd * 1e9);
  if (nano >= 18446744073709551615.0)
    return std::numeric_limits<uint64_t>::max();
  return static_cast<uint64_t>(nano);
}

definition_builder& definition_builder::limits(budgets b) {
  def_.limits = b;
  return *this;
}

caf::expected<definition> definition_builder::build() const {
  if (!error_.empty())
    return make_error(errc::invalid_definition, def_.name + ": " + error_);
  definition d = def_;
  if (d.start.empty() && !d.nodes.empty())
    d.start = d.nodes.front().name;
  if (auto err = validate(d))
    return err;
  return d;
}

// -- validation ---------------------------------------------------------------

namespace {

std::string check_node(const definition& d, const node& n) {
  auto where = "node '" + n.name + "': ";
  for (auto& [label, target] : n.routes) {
    auto t = d.find(target);
    if (!t)
      return where + "route '" + label + "' leads to unknown node '" + target + "'";
    if (label == outcome::budget && t->kind == node_kind::agent)
      return where + "route 'budget' must lead to a gate or terminal, not agent node '" + target
             + "'";
  }
  auto& url = n.gate.notify_url;
  if (!url.empty() && url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0)
    return where + "notify_url must start with http:// or https:// (got '" + url + "')";
  switch (n.kind) {
    case node_kind::terminal:
      if (!n.routes.empty())
        return where + "a terminal node takes no routes";
      return {};
    case node_kind::gate:
      for (auto& [label, target] : n.routes)
        if (label != outcome::approve && label != outcome::reject && label != outcome::edit
            && label != outcome::budget && label != outcome::timeout)
          return where + "a gate routes only approve, reject, edit, budget and timeout, not '"
                 + label + "'";
      if (n.gate.deadline < duration::zero() || n.gate.remind_after < duration::zero())
        return where + "gate deadline and remind_after must not be negative";
      if (n.routes.count(outcome::timeout) && n.gate.deadline == duration::zero())
        return where + "route 'timeout' needs a gate deadline (gate_policy::deadline)";
      if (n.gate.remind_after > duration::zero() && n.gate.notify_url.empty())
        return where + "remind_after needs a notify_url to send the reminder to";
      if (n.gate.remind_after > duration::zero() && n.gate.reminders == 0)
        return where + "remind_after with reminders = 0 (at least 1)";
      if (!n.routes.count(outcome::approve))
        return where + "gate has no route for 'approve'";
      if (!n.routes.count(outcome::reject))
        return where + "gate has no route for 'reject'";
      return {};
    case node_kind::agent:
      break;
  }
  const auto& p = n.policy;
  if (n.agent.empty())
    return where + "no agent named";
  if (p.retry.max_attempts == 0)
    return where + "retry policy allows zero attempts (max_attempts must be >= 1)";
  if (p.timeout <= duration::zero())
    return where + "timeout must be positive";
  if (p.retry.base_backoff < duration::zero() || p.retry.max_backoff < p.retry.base_backoff)
    return where + "backoff must satisfy 0 <= base <= max";
  if (!p.fallback.empty() && !d.find(p.fallback))
    return where + "fallback leads to unknown node '" + p.fallback + "'";
  if (!n.routes.count(outcome::ok))
    return where + "outcome 'ok' has no route";
  if (p.compensate == n.agent)
    return where + "an agent cannot compensate itself ('" + n.agent + "')";
  // a failure no route covers is not refused: it dead-letters the workflow
  return {};
}

std::vector<std::string> successors(const node& n) {
  std::vector<std::string> out;
  for (auto& r : n.routes)
    out.push_back(r.second);
  if (!n.policy.fallback.empty())
    out.push_back(n.policy.fallback);
  return out;
}

// Finds a cycle made of agent nodes only (no gate for a human to break it).
// Returns a node on it, or "".
std::string agent_cycle(const definition& d) {
  enum mark { white, grey, black };
  std::map<std::string, mark> marks;
  std::string found;
  std::function<bool(const node&)> visit = [&](const node& n) {
    marks[n.name] = grey;
    for (auto& s : successors(n)) {
      auto t = d.find(s);
      if (!t || t->kind != node_kind::agent)
        continue;
      if (marks[s] == grey) {
        found = s;
        return true;
      }
      if (marks[s] == white && visit(*t))
        return true;
    }
    marks[n.name] = black;
    return false;
  };
  for (auto& n : d.nodes)
    if (n.kind == node_kind::agent && marks[n.name] == white && visit(n))
      return found;
  return {};
}

} // namespace

caf::error validate(const definition& d) {
  auto refuse = [&](const std::string& what) {
    return make_error(errc::invalid_definition, "definition '" + d.name + "': " + what);
  };
  if (d.name.empty())
    return make_error(errc::invalid_definition, "definition has no name");
  if (d.nodes.empty())
    return refuse("no nodes");
  for (size_t i = 0; i < d.nodes.size(); ++i) {
    if (d.nodes[i].name.empty())
      return refuse("node #" + std::to_string(i + 1) + " has no name");
    for (size_t j = 0; j < i; ++j)
      if (d.nodes[j].name == d.nodes[i].name)
        return refuse("node '" + d.nodes[i].name + "' is defined twice");
  }
  if (!(d.limits.max_cost_usd >= 0) || !std::isfinite(d.limits.max_cost_usd))
    return refuse("budget max_cost_usd must be a finite number >= 0 (got "
                  + std::to_string(d.limits.max_cost_usd) + ")");
  if (!d.find(d.start))
    return refuse("start node '" + d.start + "' does not exist");
  bool has_terminal = std::any_of(d.nodes.begin(), d.nodes.end(),
                                  [](const node& n) { return n.kind == node_kind::terminal; });
  if (!has_terminal)
    return refuse("no terminal node (add a completed or failed node)");
  for (auto& n : d.nodes)
    if (auto why = check_node(d, n); !why.empty())
      return refuse(why);
  if (d.limits.soft_share != 0 || !d.limits.soft_gate.empty()) {
    const auto& b = d.limits;
    if (!(b.soft_share > 0 && b.soft_share < 1))
      return refuse("budget soft_share must be between 0 and 1, exclusive (got "
                    + std::to_string(b.soft_share) + ")");
    if (b.max_tokens == 0 && b.max_cost_usd == 0)
      return refuse("a soft budget needs a max_tokens or max_cost_usd budget to be a share of");
    auto g = d.find(b.soft_gate);
    if (!g || g->kind != node_kind::gate)
      return refuse("soft_gate '" + b.soft_gate + "' is not a gate node");
  }
  std::set<std::string> seen{d.start};
  std::deque<std::string> todo{d.start};
  if (!d.limits.soft_gate.empty() && seen.insert(d.limits.soft_gate).second)
    todo.push_back(d.limits.soft_gate); // reached by the soft budget
  while (!todo.empty()) {
    auto n = d.find(todo.front());
    todo.pop_front();
    for (auto& s : successors(*n))
      if (seen.insert(s).second)
        todo.push_back(s);
  }
  for (auto& n : d.nodes)
    if (!seen.count(n.name))
      return refuse("node '" + n.name + "' is unreachable from start node '" + d.start + "'");
  if (auto n = agent_cycle(d); !n.empty() && d.limits.max_steps == 0
                                   && d.limits.deadline <= duration::zero())
    return refuse("node '" + n + "' is on a cycle of agent nodes but the definition has no "
                  "max_steps or deadline budget: it could loop forever");
  return {};
}

} // namespace troupe
