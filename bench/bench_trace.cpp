// Benchmark (not a test): the CPU the trace exporter spends per step, with
// no workflows running. N copies of a linear workflow of K agent nodes are
// journaled up front (the writes the workflow actor makes with tracing on:
// workflow_started with the first step_scheduled, then each step_completed
// with the next step_scheduled, the last one completing it, each write with
// its events as applied), then fed to the exporter's parts, each timed on
// its own:
//   decode    every record decoded (event_codec's from_record_without_state)
//   replay    decoded and folded through the kernel (apply_in_place)
//   build     a trace_builder per workflow replaying the records, each span
//             encoded as OTLP JSON as it ends (what the exporter does for a
//             workflow it rebuilt from the journal)
//   export    the whole exporter (trace_exporter::committed, its thread,
//             spans from the events as applied, batching, the POST) to a
//             local sink that accepts everything (bench_http_server.hpp in a
//             child process), until flushed
//   replayed  the same, the writes without their applied events: the
//             exporter decodes and replays every record
// The first three are this thread's CPU time; the exports the process's
// (the sink's is not in it, the writes' memory freed by the exporter is).
// Per step: divided by N * K.
#include <sys/resource.h>

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "bench/bench_http_server.hpp"
#include "kernel/workflow_machine.hpp"
#include "persistence/event_codec.hpp"
#include "runtime/applied_event.hpp"
#include "runtime/otlp_json.hpp"
#include "runtime/trace_builder.hpp"
#include "runtime/trace_exporter.hpp"
#include "troupe/errors.hpp"

namespace {

using namespace troupe;

double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

caf::expected<definition> linear_definition(size_t k) {
  agent_policy p;
  p.timeout = std::chrono::seconds{10};
  p.retry.max_attempts = 1;
  p.fallback = "failed";
  definition_builder b{"bench"};
  for (size_t i = 1; i <= k; ++i) {
    auto next = i == k ? std::string{"done"} : "s" + std::to_string(i + 1);
    b.agent("s" + std::to_string(i), "bench", p).on(outcome::ok, next);
  }
  return b.completed("done").failed("failed").build();
}

/// The writes of one workflow, as its actor makes them (row on the first,
/// each with its events as applied, as with tracing on).
caf::expected<std::vector<journal_write>> journal_of(const definition& def,
                                                     const std::string& id) {
  std::vector<journal_write> out;
  auto shared_id = std::make_shared<const std::string>(id);
  kernel::workflow_state st;
  uint64_t seq = 0;
  int64_t t = 1'700'000'000'000'000'000;
  kernel::event next = kernel::workflow_started{kernel::instant{t}, nlohmann::json::object(), 7, ""};
  for (;;) {
    journal_write w;
    auto applied = std::make_shared<applied_events>(shared_id, seq + 1);
    for (;;) { // the event and the step_scheduled its schedule_step asks for
      auto tr = kernel::apply(def, st, next);
      if (!tr)
        return tr.error();
      st = std::move(tr->state);
      w.events.push_back(persistence::to_record(id, ++seq, next));
      applied->add(next, tr->commands, st, {});
      const kernel::schedule_step* s = nullptr;
      for (const auto& c : tr->commands)
        if (auto x = std::get_if<kernel::schedule_step>(&c))
          s = x;
      if (!s)
        break;
      next = kernel::step_scheduled{kernel::instant{t += 1000}, s->node, s->attempt};
    }
    w.applied = std::move(applied);
    if (seq <= 2) {
      workflow_row row;
      row.id = id;
      row.definition = def.name;
      row.version = def.version;
      w.workflow.push_back(row);
    }
    out.push_back(std::move(w));
    if (st.finished())
      return out;
    kernel::step_completed c{kernel::instant{t += 50'000}, st.node, st.attempt, "ok",
                             nlohmann::json::object(), 12};
    c.cost_nusd = 3000;
    next = std::move(c);
  }
}

/// Encodes spans as the exporter does, into batch bodies of 512.
class encoding final : public trace_builder::sink {
public:
  explicit encoding(std::string service) : service_(std::move(service)) {}
  void take(const otlp::span_ref& s) override {
    if (spans % 512 == 0) {
      body_.clear();
      otlp::append_body_head(body_, service_);
    } else {
      body_ += ',';
    }
    otlp::append_span(body_, s);
    ++spans;
  }
  size_t spans = 0;

private:
  std::string service_;
  std::string body_;
};

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"troupe_bench_trace: the trace exporter's CPU per step, fed journal writes "
               "directly"};
  size_t workflows = 10000;
  size_t nodes = 10;
  size_t rounds = 3;
  app.add_option("--workflows", workflows, "workflows per round")->check(CLI::PositiveNumber);
  app.add_option("--nodes", nodes, "agent nodes per workflow")->check(CLI::PositiveNumber);
  app.add_option("--rounds", rounds, "rounds (one line each)")->check(CLI::PositiveNumber);
  bool no_export = false;
  app.add_flag("--no-export", no_export, "decode, replay and build only (for a profiler)");
  bool only_export = false;
  app.add_flag("--only-export", only_export, "the exporter only (for a profiler)");
  CLI11_PARSE(app, argc, argv);

  std::string why;
  auto sink = bench::fake_server::start(bench::server_mode::process, {}, why);
  if (!sink) {
    std::printf("the OTLP sink did not start: %s\n", why.c_str());
    return 1;
  }
  auto def = linear_definition(nodes);
  if (!def) {
    std::printf("definition: %s\n", describe(def.error()).c_str());
    return 1;
  }
  auto shared_def = std::make_shared<const definition>(*def);
  std::vector<std::vector<journal_write>> journals;
  journals.reserve(workflows);
  for (size_t i = 0; i < workflows; ++i) {
    auto j = journal_of(*def, "bench-" + std::to_string(1'000'000 + i) + "0a1b2c3d4e5f6a7b");
    if (!j) {
      std::printf("journal: %s\n", describe(j.error()).c_str());
      return 1;
    }
    journals.push_back(std::move(*j));
  }
  double steps = static_cast<double>(workflows * nodes);
  tracing_config cfg;
  cfg.otlp_endpoint = "http://127.0.0.1:" + std::to_string(sink->port()) + "/v1/traces";
  cfg.buffer_max = 1 << 20;

  std::printf("troupe_bench_trace: %zu workflows of %zu steps per round; us of CPU per step\n",
              workflows, nodes);
  std::printf("%6s %8s %8s %8s %8s %9s %8s %10s %8s\n", "round", "decode", "replay", "build",
              "export", "replayed", "spans", "exported", "skipped");
  const decltype(journals) none;
  const auto& measured = only_export ? none : journals;
  for (size_t round = 1; round <= rounds; ++round) {
    // decode: the records decoded; replay: decoded and folded through the kernel
    auto s0 = bench::thread_cpu_ns();
    for (const auto& j : measured)
      for (const auto& w : j)
        for (const auto& r : w.events)
          if (!persistence::from_record_without_state(r))
            return 1;
    auto s1 = bench::thread_cpu_ns();
    for (const auto& j : measured) {
      kernel::workflow_state st;
      for (const auto& w : j)
        for (const auto& r : w.events)
          if (!kernel::apply_in_place(*def, st, *persistence::from_record_without_state(r)))
            return 1;
    }
    auto s2 = bench::thread_cpu_ns();
    // build: a builder per workflow, each span encoded as it ends
    encoding sink{cfg.service_name};
    for (const auto& j : measured) {
      trace_builder b{*def, j.front().workflow.front()};
      for (const auto& w : j)
        for (const auto& r : w.events)
          if (auto err = b.add(r, sink)) {
            std::printf("build: %s\n", describe(err).c_str());
            return 1;
          }
    }
    auto s3 = bench::thread_cpu_ns();
    // export: the journal writer's hand-over, with the events as applied
    // (a live workflow) and without (the exporter replays them)
    double export_s[2] = {0, 0};
    trace_stats st;
    for (int replayed = 0; replayed < 2 && !no_export; ++replayed) {
      auto copies = journals;
      if (replayed)
        for (auto& j : copies)
          for (auto& w : j)
            w.applied = nullptr;
      auto store = make_memory_journal();
      auto p0 = process_cpu_s();
      trace_exporter ex{cfg, store, [&](const std::string&) { return shared_def; }};
      // 1,000 workflows in flight at a time (the inbox holds 65,536 records),
      // their writes interleaved and handed over 20 at a time, like commits
      std::vector<journal_write> batch;
      for (size_t from = 0; from < copies.size(); from += 1000) {
        auto to = std::min(copies.size(), from + 1000);
        for (size_t step = 0, more = 1; more; ++step) {
          more = 0;
          for (size_t k = from; k < to; ++k) {
            if (step >= copies[k].size())
              continue;
            more = 1;
            batch.push_back(std::move(copies[k][step]));
            if (batch.size() == 20) {
              ex.committed(batch);
              batch.clear();
            }
          }
        }
        ex.committed(batch);
        batch.clear();
        ex.flush(std::chrono::seconds{60});
      }
      st = ex.stats();
      ex.stop();
      export_s[replayed] = process_cpu_s() - p0;
    }
    std::printf("%6zu %8.2f %8.2f %8.2f %8.2f %9.2f %8zu %10llu %8llu\n", round,
                static_cast<double>(s1 - s0) / 1e3 / steps,
                static_cast<double>(s2 - s1) / 1e3 / steps,
                static_cast<double>(s3 - s2) / 1e3 / steps, export_s[0] * 1e6 / steps,
                export_s[1] * 1e6 / steps,
                sink.spans, static_cast<unsigned long long>(st.spans_exported),
                static_cast<unsigned long long>(st.records_skipped));
  }
  return 0;
}
