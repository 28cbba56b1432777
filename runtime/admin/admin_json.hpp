// What the admin API answers, as JSON: runtime types rendered for the wire,
// a workflow's history read into agent attempts (the dashboard's timeline),
// and attempt latency per agent from the runtime's histograms. Pure
// functions over values; any thread.
// Called by the admin server (admin_server.cpp) and its tests.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "troupe/definition.hpp"
#include "troupe/gateway.hpp"
#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"

namespace troupe::admin {

using json = nlohmann::json;

json to_json(const workflow_row& r);
json to_json(const workflow_info& i);
json to_json(const lane_stats& l);
json to_json(const workflow_counts& n);
json to_json(const definition& d);
json to_json(const journal_changes& c);

/// One agent attempt as the dashboard shows it: an attempt of
/// derive_attempts() (runtime/attempts.hpp, the trace's attempts too), from
/// its step_scheduled to what ended it.
struct attempt_span {
  std::string node;
  uint32_t attempt = 0;
  int64_t start_ns = 0;
  int64_t end_ns = -1;     ///< -1: not ended (in flight, or cut off by the history's end)
  /// The label it finished with, its failure kind, "timeout", or
  /// "abandoned" (the workflow went on without it: cancelled, crashed, its
  /// deadline passed).
  std::string outcome;
  bool ok = false;         ///< finished (any label), rather than failed
  uint64_t tokens = 0;
  uint64_t cost_nusd = 0;
  std::string reason;      ///< failed: why
  bool ended() const { return end_ns >= 0; }
  double duration_ms() const { return ended() ? static_cast<double>(end_ns - start_ns) / 1e6 : 0; }
};

/// The agent attempts of one workflow's history, in the order they began
/// (derive_attempts, as the dashboard shows them).
std::vector<attempt_span> attempts_of(const std::vector<journal_record>& history);

/// The agent a node of `def` runs ("" for a gate, a terminal or an unknown
/// node, or without a definition).
std::string agent_of(const definition* def, const std::string& node);

/// A history for the API: each event with its payload decoded ("data"),
/// its time since the first event ("t_ms"), and the attempts
/// (attempts_of), each with its agent by `def` (may be null).
json history_json(const std::string& workflow_id, const std::vector<journal_record>& history,
                  const definition* def);

/// The q-quantile (0 < q <= 1) of `a`'s latency histogram, in seconds,
/// estimated as Prometheus' histogram_quantile() does: the rank q * count
/// falls in a bucket, and the estimate lies between the bucket's bounds as
/// the rank lies among the bucket's attempts (the first bucket starts at
/// 0). A rank in the last, unbounded bucket gives the highest bound. 0
/// without timed attempts.
double histogram_quantile(const agent_latency& a, double q);

/// One agent's latency for the API and the dashboard: count (timed
/// attempts), ok and failed (every ended attempt: failed when its outcome
/// is a failure kind), mean, p50, p90 and p99 (histogram_quantile), the
/// bound of the highest bucket with an attempt ("max_le_ms", "+Inf" when
/// above every bound, null when none), and the buckets, all in ms.
json latency_json(const agent_latency& a);

} // namespace troupe::admin
