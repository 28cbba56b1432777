// The admin API's JSON (see admin_json.hpp).
#include "runtime/admin/admin_json.hpp"

#include <utility>

#include "runtime/attempts.hpp"

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
  for (auto& a : derive_attempts(history)) { // the trace's attempts too
    attempt_span s;
    s.node = std::move(a.node);
    s.attempt = a.attempt;
    s.start_ns = a.start_ns;
    s.end_ns = a.end_ns;
    s.ok = a.end == attempt_end::completed;
    switch (a.end) {
      case attempt_end::completed: s.outcome = std::move(a.label); break;
      case attempt_end::failed: s.outcome = to_string(a.kind); break;
      case attempt_end::timed_out: s.outcome = outcome::timeout; break;
      case attempt_end::abandoned: s.outcome = "abandoned"; break;
      case attempt_end::running: break;
    }
    s.tokens = a.tokens;
    s.cost_nusd = a.cost_nusd;
    s.reason = std::move(a.reason);
    out.push_back(std::move(s));
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
