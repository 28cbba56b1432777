// The runtime's metrics, in Prometheus' text format (runtime::metrics_text,
// served on /metrics by `troupe serve`). Two kinds:
//   fed     counters and histograms the actors update as work happens: steps
//           by agent and outcome, retries, step latency per agent, workflows
//           started and ended, actor restarts, journal commits;
//   scraped gauges and counters read when the text is made, from where the
//           truth already lives: workflows by status (the journal), the model
//           gateway's lanes (breaker, queue, tokens, cost).
// Thread-safe: actors on any scheduler thread feed it concurrently. Feeding
// is a hash of the labels and an atomic add; nothing on the step path waits
// for a scrape.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "troupe/gateway.hpp"
#include "troupe/runtime.hpp"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
} // namespace prometheus

namespace troupe {

class runtime_metrics {
public:
  runtime_metrics();
  ~runtime_metrics();
  runtime_metrics(const runtime_metrics&) = delete;
  runtime_metrics& operator=(const runtime_metrics&) = delete;

  // -- fed by the actors --

  void workflow_started();
  /// A workflow reached `status`: "completed", "failed" or "dead_lettered".
  void workflow_ended(const std::string& status);
  /// An attempt of `agent` ended with `outcome`: its label ("ok" or the
  /// agent's own) or its failure kind ("timeout", "crashed", ...). `took`
  /// is negative when unknown (an attempt cut off by a crash of the
  /// process): the outcome counts, the latency histogram does not.
  void step_ended(const std::string& agent, const std::string& outcome,
                  std::chrono::nanoseconds took);
  /// An attempt after the first was scheduled at a node running `agent`.
  void step_retried(const std::string& agent);
  /// The manager rebuilt a crashed workflow actor from the journal.
  void workflow_actor_restarted();
  /// The runtime's supervisor restarted service `service` (journal, gateway...).
  void service_restarted(const std::string& service);
  /// One journal batch of `writes` writes committed in `took`.
  void journal_committed(size_t writes, std::chrono::nanoseconds took);
  /// One journal batch failed.
  void journal_failed();
  /// Writes waiting for the next journal batch.
  void journal_queue(size_t depth);

  // -- read when scraped --

  struct scrape {
    /// Workflows in the journal by row status (running, parked, dead_lettered,
    /// completed, failed).
    std::vector<std::pair<std::string, uint64_t>> workflows;
    std::vector<lane_stats> lanes;
  };
  /// Everything, in Prometheus' text exposition format 0.0.4.
  std::string text(const scrape& now) const;
  /// Each agent's step latency histogram and outcome counts, by agent name
  /// (agents with no ended attempt left out).
  std::vector<agent_latency> step_latency() const;

private:
  struct families;
  std::shared_ptr<prometheus::Registry> registry_;
  std::unique_ptr<families> f_;
};

} // namespace troupe
