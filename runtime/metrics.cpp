// The runtime's metrics (see the header), on prometheus-cpp's core library:
// its registry keeps the fed families, its serializer writes the text.
#include "runtime/metrics.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <unordered_map>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace troupe {

namespace {

using prometheus::Counter;
using prometheus::Family;
using prometheus::Gauge;
using prometheus::Histogram;

double seconds(std::chrono::nanoseconds d) {
  return std::chrono::duration<double>(d).count();
}

/// From a millisecond to ten minutes: model calls dominate step latency.
const Histogram::BucketBoundaries& step_buckets() {
  static const Histogram::BucketBoundaries b = {0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                1,     2.5,   5,    10,    30,   60,  120, 600};
  return b;
}

/// From 50 microseconds (a memory journal) to a second (a stalled disk).
const Histogram::BucketBoundaries& commit_buckets() {
  static const Histogram::BucketBoundaries b = {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                0.005,   0.01,   0.025,   0.05,   0.1,   0.25,
                                                0.5,     1};
  return b;
}

const Histogram::BucketBoundaries& batch_buckets() {
  static const Histogram::BucketBoundaries b = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};
  return b;
}

prometheus::MetricFamily family(std::string name, std::string help, prometheus::MetricType t) {
  prometheus::MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = t;
  return f;
}

prometheus::ClientMetric sample(std::vector<prometheus::ClientMetric::Label> labels, double v,
                                prometheus::MetricType t) {
  prometheus::ClientMetric m;
  std::sort(labels.begin(), labels.end()); // by name, as the registry's own series
  m.label = std::move(labels);
  if (t == prometheus::MetricType::Counter)
    m.counter.value = v;
  else
    m.gauge.value = v;
  return m;
}

/// "provider/model" as two labels; a lane is always named so by the gateway.
std::vector<prometheus::ClientMetric::Label> lane_labels(const std::string& lane) {
  auto slash = lane.find('/');
  if (slash == std::string::npos)
    return {{"provider", lane}, {"model", ""}};
  return {{"provider", lane.substr(0, slash)}, {"model", lane.substr(slash + 1)}};
}

/// The gauges and counters read at scrape time.
std::vector<prometheus::MetricFamily> scraped(const runtime_metrics::scrape& now) {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  auto wf = family("troupe_workflows", "Workflows in the journal by status (finished ones until purged).", MetricType::Gauge);
  for (auto& [status, n] : now.workflows)
    wf.metric.push_back(sample({{"status", status}}, static_cast<double>(n), MetricType::Gauge));
  out.push_back(std::move(wf));

  auto breaker = family("troupe_model_breaker_state",
                        "Circuit breaker of each model lane: 1 for its current state.",
                        MetricType::Gauge);
  auto queued = family("troupe_model_queue_depth",
                       "Model requests waiting in a lane for a concurrency slot.",
                       MetricType::Gauge);
  auto in_flight = family("troupe_model_in_flight", "Model requests sent and not yet answered.",
                          MetricType::Gauge);
  auto requests = family("troupe_model_requests_total",
                         "Model requests by result: succeeded, failed (counts against the "
                         "breaker), rejected (never sent), rate_limited (429).",
                         MetricType::Counter);
  auto opened = family("troupe_model_breaker_opened_total", "Times a lane's circuit opened.",
                       MetricType::Counter);
  auto tokens = family("troupe_model_tokens_total", "Tokens used per model, by kind.",
                       MetricType::Counter);
  auto cost = family("troupe_model_cost_usd_total",
                     "Model cost per model in US dollars, by the gateway's price tables.",
                     MetricType::Counter);
  for (auto& l : now.lanes) {
    auto labels = lane_labels(l.lane);
    auto with = [&](const char* name, const std::string& value) {
      auto x = labels;
      x.push_back({name, value});
      return x;
    };
    for (const char* state : {"closed", "half_open", "open"})
      breaker.metric.push_back(
        sample(with("state", state), l.breaker == state ? 1 : 0, MetricType::Gauge));
    queued.metric.push_back(sample(labels, static_cast<double>(l.queued), MetricType::Gauge));
    in_flight.metric.push_back(
      sample(labels, static_cast<double>(l.in_flight), MetricType::Gauge));
    std::pair<const char*, uint64_t> results[] = {{"succeeded", l.succeeded},
                                                 {"failed", l.failed},
                                                 {"rejected", l.rejected},
                                                 {"rate_limited", l.rate_limited}};
    for (auto& [result, n] : results)
      requests.metric.push_back(
        sample(with("result", result), static_cast<double>(n), MetricType::Counter));
    opened.metric.push_back(
      sample(labels, static_cast<double>(l.breaker_opened), MetricType::Counter));
    tokens.metric.push_back(sample(with("kind", "prompt"), static_cast<double>(l.prompt_tokens),
                                   MetricType::Counter));
    tokens.metric.push_back(sample(with("kind", "completion"),
                                   static_cast<double>(l.completion_tokens), MetricType::Counter));
    cost.metric.push_back(sample(labels, l.cost_usd, MetricType::Counter));
  }
  for (auto* f : {&breaker, &queued, &in_flight, &requests, &opened, &tokens, &cost})
    out.push_back(std::move(*f));
  return out;
}

} // namespace

struct runtime_metrics::families {
  explicit families(prometheus::Registry& r)
    : started(prometheus::BuildCounter()
                .Name("troupe_workflows_started_total")
                .Help("Workflows started by this runtime.")
                .Register(r)),
      ended(prometheus::BuildCounter()
              .Name("troupe_workflows_ended_total")
              .Help("Workflows that completed, failed or were dead-lettered in this runtime.")
              .Register(r)),
      steps(prometheus::BuildCounter()
              .Name("troupe_steps_total")
              .Help("Step attempts ended, by agent and outcome (a label, or a failure kind).")
              .Register(r)),
      retries(prometheus::BuildCounter()
                .Name("troupe_step_retries_total")
                .Help("Attempts after the first, by agent.")
                .Register(r)),
      step_latency(prometheus::BuildHistogram()
                     .Name("troupe_step_duration_seconds")
                     .Help("How long an attempt ran, from dispatch to its outcome, by agent.")
                     .Register(r)),
      restarts(prometheus::BuildCounter()
                 .Name("troupe_restarts_total")
                 .Help("Actors restarted: crashed workflow actors rebuilt from the journal "
                       "(what=\"workflow\"), and the runtime's services (what=<service>).")
                 .Register(r)),
      commit(prometheus::BuildHistogram()
               .Name("troupe_journal_commit_seconds")
               .Help("Time to commit one journal batch (durable on return).")
               .Register(r)
               .Add({}, commit_buckets())),
      batch(prometheus::BuildHistogram()
              .Name("troupe_journal_batch_writes")
              .Help("Writes committed per journal batch (group commit).")
              .Register(r)
              .Add({}, batch_buckets())),
      commit_failures(prometheus::BuildCounter()
                        .Name("troupe_journal_failures_total")
                        .Help("Journal batches that failed to commit.")
                        .Register(r)
                        .Add({})),
      queue(prometheus::BuildGauge()
              .Name("troupe_journal_queue_depth")
              .Help("Writes waiting for the next journal batch.")
              .Register(r)
              .Add({})),
      started_total(started.Add({})) {}

  Family<Counter>& started;
  Family<Counter>& ended;
  Family<Counter>& steps;
  Family<Counter>& retries;
  Family<Histogram>& step_latency;
  Family<Counter>& restarts;
  Histogram& commit;
  Histogram& batch;
  Counter& commit_failures;
  Gauge& queue;
  Counter& started_total;

  // prometheus-cpp's Family::Add allocates a new series before it looks the
  // labels up, so each agent's series are looked up once and kept here.
  struct agent_series {
    Histogram* latency = nullptr;
    Counter* retries = nullptr;
    std::map<std::string, Counter*, std::less<>> outcomes;
  };
  std::mutex mtx;
  std::unordered_map<std::string, agent_series> agents;

  /// The series of `agent` (made on first use). Call with `mtx` held.
  agent_series& of(const std::string& agent) {
    auto i = agents.find(agent);
    if (i != agents.end())
      return i->second;
    auto& s = agents[agent];
    s.latency = &step_latency.Add({{"agent", agent}}, step_buckets());
    s.retries = &retries.Add({{"agent", agent}});
    return s;
  }
};

runtime_metrics::runtime_metrics()
  : registry_(std::make_shared<prometheus::Registry>()),
    f_(std::make_unique<families>(*registry_)) {}

runtime_metrics::~runtime_metrics() = default;

void runtime_metrics::workflow_started() {
  f_->started_total.Increment();
}

void runtime_metrics::workflow_ended(const std::string& status) {
  f_->ended.Add({{"status", status}}).Increment();
}

void runtime_metrics::step_ended(const std::string& agent, const std::string& outcome,
                                 std::chrono::nanoseconds took) {
  std::lock_guard<std::mutex> guard{f_->mtx};
  auto& s = f_->of(agent);
  auto i = s.outcomes.find(outcome);
  if (i == s.outcomes.end())
    i = s.outcomes.emplace(outcome, &f_->steps.Add({{"agent", agent}, {"outcome", outcome}}))
          .first;
  i->second->Increment();
  if (took >= std::chrono::nanoseconds::zero())
    s.latency->Observe(seconds(took));
}

void runtime_metrics::step_retried(const std::string& agent) {
  std::lock_guard<std::mutex> guard{f_->mtx};
  f_->of(agent).retries->Increment();
}

void runtime_metrics::workflow_actor_restarted() {
  f_->restarts.Add({{"what", "workflow"}}).Increment();
}

void runtime_metrics::service_restarted(const std::string& service) {
  f_->restarts.Add({{"what", service}}).Increment();
}

void runtime_metrics::journal_committed(size_t writes, std::chrono::nanoseconds took) {
  f_->commit.Observe(seconds(took));
  f_->batch.Observe(static_cast<double>(writes));
}

void runtime_metrics::journal_failed() {
  f_->commit_failures.Increment();
}

void runtime_metrics::journal_queue(size_t depth) {
  f_->queue.Set(static_cast<double>(depth));
}

std::vector<agent_latency> runtime_metrics::step_latency() const {
  std::vector<agent_latency> out;
  std::lock_guard<std::mutex> guard{f_->mtx};
  for (const auto& [agent, s] : f_->agents) {
    if (s.outcomes.empty())
      continue; // a retry scheduled, nothing ended yet
    agent_latency a;
    a.agent = agent;
    auto h = s.latency->Collect().histogram;
    uint64_t below = 0;
    for (const auto& b : h.bucket) { // cumulative, the last one +Inf
      if (std::isfinite(b.upper_bound))
        a.bounds.push_back(b.upper_bound);
      a.counts.push_back(b.cumulative_count - below);
      below = b.cumulative_count;
    }
    a.count = h.sample_count;
    a.sum_seconds = h.sample_sum;
    for (const auto& [outcome, c] : s.outcomes)
      a.outcomes.emplace(outcome, static_cast<uint64_t>(c->Value()));
    out.push_back(std::move(a));
  }
  std::sort(out.begin(), out.end(),
            [](const agent_latency& x, const agent_latency& y) { return x.agent < y.agent; });
  return out;
}

std::string runtime_metrics::text(const scrape& now) const {
  auto all = registry_->Collect();
  for (auto& f : scraped(now))
    all.push_back(std::move(f));
  return prometheus::TextSerializer{}.Serialize(all);
}

} // namespace troupe
