// The admin API's JSON (see admin_json.hpp).
#include "runtime/admin/admin_json.hpp"

#include <utility>

namespace troupe::admin {

namespace {

const char* node_kind_name(node_kind k) {
  switch (k) {
    case node_kind::agent: return "agent";
    case node_kind::gate: return "gate";
    case node_kind::terminal: return "terminal";
  }
  return "unknown";
}

json payload_of(const journal_record& r) {
  auto p = json::parse(r.payload, nullptr, false);
  return p.is_object() ? p : json::object();
}

std::string str(const json& p, const char* key) {
  auto it = p.find(key);
  return it != p.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

uint64_t uint(const json& p, const char* key) {
  auto it = p.find(key);
  return it != p.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

} // namespace

json to_json(const workflow_row& r) {
  return {{"id", r.id},           {"definition", r.definition},
          {"version", r.version}, {"status", r.status},
          {"outcome", r.outcome}, {"idempotency_key", r.idempotency_key},
          {"user", r.user},       {"created_ns", r.created_ns},
          {"updated_ns", r.updated_ns}};
}

json to_json(const workflow_info& i) {
  json j = {{"id", i.id},         {"definition", i.definition},
            {"status", to_string(i.status)}, {"node", i.node},
            {"outcome", i.outcome}, {"reason", i.reason},
            {"state", i.state},   {"steps", i.steps},
            {"tokens", i.tokens}, {"cost_usd", i.cost_usd}};
  j["gate"] = i.status == workflow_status::parked ? json(i.node) : json(nullptr);
  return j;
}

json to_json(const lane_stats& l) {
  return {{"lane", l.lane},
          {"breaker", l.breaker},
          {"queued", l.queued},
          {"in_flight", l.in_flight},
          {"sent", l.sent},
          {"succeeded", l.succeeded},
          {"failed", l.failed},
          {"rejected", l.rejected},
          {"rate_limited", l.rate_limited},
          {"breaker_opened", l.breaker_opened},
          {"held_for_ms", l.held_for_ms},
          {"prompt_tokens", l.prompt_tokens},
          {"completion_tokens", l.completion_tokens},
          {"cost_usd", l.cost_usd}};
}

json to_json(const workflow_counts& n) {
  return {{"running", n.running},     {"parked", n.parked}, {"dead_lettered", n.dead_lettered},
          {"completed", n.completed}, {"failed", n.failed}, {"total", n.total()}};
}

json to_json(const definition& d) {
  json nodes = json::array();
  for (const auto& n : d.nodes) {
    json node = {{"name", n.name}, {"kind", node_kind_name(n.kind)}, {"routes", n.routes}};
    if (n.kind == node_kind::agent)
      node["agent"] = n.agent;
    if (n.kind == node_kind::terminal)
      node["terminal"] = n.terminal == terminal_kind::completed ? "completed" : "failed";
    nodes.push_back(std::move(node));
  }
  return {{"name", d.name}, {"version", d.version}, {"start", d.start}, {"nodes", nodes}};
}

json to_json(const journal_changes& c) {
  return {{"version", c.version},
          {"workflows", c.workflows},
          {"all", c.all},
          {"last_seq", c.last_seq}};
}

std::vector<attempt_span> attempts_of(const std::vector<journal_record>& history) {
  std::vector<attempt_span> out;
  // The attempt in flight, if any: one at a time (the kernel runs one step).
  auto open = [&]() -> attempt_span* {
    return !out.empty() && !out.back().ended() ? &out.back() : nullptr;
  };
  auto close = [](attempt_span& a, int64_t at, std::string outcome) {
    a.end_ns = at;
    a.outcome = std::move(outcome);
  };
  for (const auto& r : history) {
    if (r.kind == "step_scheduled") {
      if (auto* a = open())
        close(*a, r.at_ns, "abandoned");
      auto p = payload_of(r);
      attempt_span a;
      a.node = str(p, "node");
      a.attempt = static_cast<uint32_t>(uint(p, "attempt"));
      a.start_ns = r.at_ns;
      out.push_back(std::move(a));
      continue;
    }
    auto* a = open();
    if (a == nullptr)
      continue;
    if (r.kind == "step_completed" || r.kind == "step_failed") {
      auto p = payload_of(r);
      if (str(p, "node") != a->node || uint(p, "attempt") != a->attempt)
        continue; // not this attempt's (a late reply of an abandoned one)
      a->ok = r.kind == "step_completed";
      a->tokens = uint(p, "tokens");
      a->cost_nusd = uint(p, "cost_nusd");
      a->reason = str(p, "reason");
      close(*a, r.at_ns, a->ok ? str(p, "label") : str(p, "kind"));
    } else if (r.kind == "timer_fired") {
      if (str(payload_of(r), "kind") == "step_timeout")
        close(*a, r.at_ns, "timeout");
    } else if (r.kind == "workflow_cancelled" || r.kind == "workflow_crashed") {
      close(*a, r.at_ns, "abandoned");
    }
  }
  return out;
}

std::string agent_of(const definition* def, const std::string& node) {
  if (def == nullptr)
    return {};
  const auto* n = def->find(node);
  return n != nullptr && n->kind == node_kind::agent ? n->agent : std::string{};
}

json history_json(const std::string& workflow_id, const std::vector<journal_record>& history,
                  const definition* def) {
  json events = json::array();
  int64_t t0 = history.empty() ? 0 : history.front().at_ns;
  for (const auto& r : history) {
    json e = {{"seq", r.seq},     {"wf_seq", r.wf_seq},
              {"kind", r.kind},   {"at_ns", r.at_ns},
              {"t_ms", static_cast<double>(r.at_ns - t0) / 1e6}};
    auto p = json::parse(r.payload, nullptr, false);
    if (p.is_discarded())
      e["payload"] = r.payload; // not JSON: shown as it is
    else
      e["data"] = std::move(p);
    events.push_back(std::move(e));
  }
  json attempts = json::array();
  for (const auto& a : attempts_of(history)) {
    attempts.push_back({{"node", a.node},
                        {"agent", agent_of(def, a.node)},
                        {"attempt", a.attempt},
                        {"start_ms", static_cast<double>(a.start_ns - t0) / 1e6},
                        {"duration_ms", a.ended() ? json(a.duration_ms()) : json(nullptr)},
                        {"outcome", a.ended() ? a.outcome : std::string{"in_flight"}},
                        {"ok", a.ok},
                        {"tokens", a.tokens},
                        {"cost_usd", to_usd(a.cost_nusd)},
                        {"reason", a.reason}});
  }
  return {{"workflow", workflow_id},
          {"definition", def != nullptr ? json(def->name) : json(nullptr)},
          {"started_ns", t0},
          {"events", std::move(events)},
          {"attempts", std::move(attempts)}};
}

double histogram_quantile(const agent_latency& a, double q) {
  if (a.count == 0)
    return 0;
  auto rank = q * static_cast<double>(a.count);
  uint64_t below = 0;
  for (size_t i = 0; i < a.counts.size(); ++i) {
    auto in = a.counts[i];
    if (in == 0 || static_cast<double>(below + in) < rank) {
      below += in;
      continue;
    }
    if (i >= a.bounds.size()) // above every bound: the highest is all we know
      return a.bounds.empty() ? 0 : a.bounds.back();
    double lo = i == 0 ? 0 : a.bounds[i - 1];
    double hi = a.bounds[i];
    return lo + (hi - lo) * (rank - static_cast<double>(below)) / static_cast<double>(in);
  }
  return a.bounds.empty() ? 0 : a.bounds.back();
}

json latency_json(const agent_latency& a) {
  auto ms = [](double seconds) { return seconds * 1000; };
  uint64_t ok = 0, failed = 0;
  for (const auto& [outcome, n] : a.outcomes) {
    bool failure = false;
    for (auto k : all_failure_kinds)
      failure = failure || outcome == to_string(k);
    (failure ? failed : ok) += n;
  }
  json buckets = json::array();
  json max_le = nullptr;
  for (size_t i = 0; i < a.counts.size(); ++i) {
    json le = i < a.bounds.size() ? json(ms(a.bounds[i])) : json("+Inf");
    if (a.counts[i] > 0)
      max_le = le;
    buckets.push_back({{"le_ms", le}, {"count", a.counts[i]}});
  }
  auto n = static_cast<double>(a.count);
  return {{"agent", a.agent},
          {"count", a.count},
          {"ok", ok},
          {"failed", failed},
          {"mean_ms", a.count > 0 ? ms(a.sum_seconds) / n : 0.0},
          {"p50_ms", ms(histogram_quantile(a, 0.5))},
          {"p90_ms", ms(histogram_quantile(a, 0.9))},
          {"p99_ms", ms(histogram_quantile(a, 0.99))},
          {"max_le_ms", max_le},
          {"buckets", std::move(buckets)}};
}

} // namespace troupe::admin
