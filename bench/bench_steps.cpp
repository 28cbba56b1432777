// Benchmark (not a test): end-to-end steps/s and per-step overhead of a
// linear workflow of K agent nodes over an instant scripted model (latency
// 0, no faults), at several concurrency levels. Each level keeps that many
// workflows in flight on a fresh runtime for about --seconds, then prints
// one row of a table. The journal is in memory, or with --journal PATH a
// fresh SQLite journal per level (PATH.c<level>, deleted afterwards) with
// --synchronous full (the default) or normal. With --waiting N it instead
// holds N agents on a slow model at once and reports the process's threads
// and memory while they wait (agents must not need a thread each).
//
// Added latency per step. For every step but a workflow's first, the time
// from the moment the previous step's agent hands its outcome to the
// runtime (the call to finish()) to the moment the next step's agent starts
// (its run() is entered). Everything the runtime does between two steps
// falls in it and nothing else: the report's trip to the workflow actor,
// kernel::apply, the journal write of step_completed + step_scheduled and
// its wait for the durable commit (group commit, fsync with
// synchronous=full), the ack's trip back, handing the next attempt to its agent's
// runner actor and that runner's scheduling, and every wait for a scheduler thread in between.
// The model's own time (here an instant scripted reply) lies between an
// agent's start and its finish, outside the gap. The journal's at_ns cannot
// measure it: the workflow actor stamps step_completed and step_scheduled
// before the write that carries both is committed, so neither the commit
// nor the next agent's spawn shows. Agents take both timestamps
// (steady_clock) and keep the gaps
// in a preallocated array claimed with one atomic increment: no lock and
// no allocation on the measured path.
//
// With --export, the runtime exports every span (config::tracing) to a
// local OTLP sink that accepts everything (bench_http_server.hpp, in a
// child process), and each row is followed by the exporter's counters:
// run with and without it to see what tracing costs.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "bench/bench_http_server.hpp"
#include "troupe/errors.hpp"
#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"

namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

struct bench_options {
  size_t nodes = 10;
  std::vector<size_t> levels = {1, 64, 1024};
  double seconds = 1.5;
  size_t workflows = 0; ///< per level; 0 = as many as fit in `seconds`
  size_t threads = 2;
  size_t journal_batch = 256;
  size_t drivers = 16; ///< threads calling start/await (at most the concurrency)
  std::string journal;              ///< "" = in-memory journal
  std::string synchronous = "full"; ///< with `journal`
  bool keyed = false; ///< every start() with its own idempotency key
  size_t waiting = 0;   ///< >0: the waiting-agents run instead of the levels
  double hold_s = 2.0;  ///< model latency in the waiting run
  bool export_spans = false; ///< export spans to `sink`
  std::string sink;          ///< the local OTLP sink's URL, with export_spans
};

/// A field of /proc/self/status ("Threads", "VmRSS"), as printed there.
std::string proc_status(const std::string& key) {
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key + ":", 0) == 0) {
      auto v = line.substr(key.size() + 1);
      return v.substr(v.find_first_not_of(" \t"));
    }
  return "?";
}

/// User plus system CPU time of the whole process so far, in seconds.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

/// Bytes this process has handed to write() and friends so far (wchar of
/// /proc/self/io): the journal's WAL frames and checkpoints; 0 if unknown.
uint64_t bytes_written() {
  std::ifstream in{"/proc/self/io"};
  std::string key;
  uint64_t v = 0;
  while (in >> key >> v)
    if (key == "wchar:")
      return v;
  return 0;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now().time_since_epoch())
    .count();
}

// -- what agents record ------------------------------------------------------

/// Per-step timings taken by the agents (see the file comment). Each
/// workflow in flight owns a slot (its input's "slot"), so the agent of its
/// next step finds when the previous one finished. Samples beyond the
/// capacity are counted, not kept. Any thread may record concurrently.
class step_timings {
public:
  static constexpr size_t capacity = size_t{1} << 23; ///< 64 MiB each, touched as used

  step_timings()
    : gaps_(new int64_t[capacity]), asks_(new int64_t[capacity]) {}

  /// Readies the recorder for a level with `slots` workflows in flight.
  void reset(size_t slots) {
    finished_ = std::make_unique<std::atomic<int64_t>[]>(slots);
    first_ = std::make_unique<std::atomic<int64_t>[]>(slots);
    n_gaps_ = 0;
    n_asks_ = 0;
    busy_ns_ = 0;
  }
  /// An agent of `slot` starts; `first` if it is its workflow's first step.
  void started(size_t slot, bool first, int64_t at) {
    if (first)
      first_[slot].store(at, std::memory_order_relaxed);
    else
      put(gaps_.get(), n_gaps_, at - finished_[slot].load(std::memory_order_relaxed));
  }
  /// The agent of `slot`, started at `began`, hands over its outcome;
  /// `last` if it is its workflow's last step.
  void finishing(size_t slot, bool last, int64_t began, int64_t at) {
    put(asks_.get(), n_asks_, at - began);
    finished_[slot].store(at, std::memory_order_relaxed);
    if (last)
      busy_ns_.fetch_add(static_cast<uint64_t>(at - first_[slot].load(std::memory_order_relaxed)),
                         std::memory_order_relaxed);
  }
  /// Summed over workflows: first step's start to last step's finish, s.
  double busy_s() const { return static_cast<double>(busy_ns_.load()) / 1e9; }
  /// Gaps recorded (only read after the level's runtime has shut down).
  std::vector<int64_t> gaps() const { return take(gaps_.get(), n_gaps_); }
  std::vector<int64_t> asks() const { return take(asks_.get(), n_asks_); }
  /// Gaps recorded in all, including those past the capacity.
  uint64_t gaps_seen() const { return n_gaps_.load(); }

private:
  static void put(int64_t* to, std::atomic<uint64_t>& n, int64_t v) {
    auto i = n.fetch_add(1, std::memory_order_relaxed);
    if (i < capacity)
      to[i] = v;
  }
  static std::vector<int64_t> take(const int64_t* from, const std::atomic<uint64_t>& n) {
    auto k = std::min<uint64_t>(n.load(), capacity);
    return std::vector<int64_t>(from, from + k);
  }

  std::unique_ptr<int64_t[]> gaps_;
  std::unique_ptr<int64_t[]> asks_;
  std::unique_ptr<std::atomic<int64_t>[]> finished_;
  std::unique_ptr<std::atomic<int64_t>[]> first_;
  std::atomic<uint64_t> busy_ns_{0};
  std::atomic<uint64_t> n_gaps_{0};
  std::atomic<uint64_t> n_asks_{0};
};

/// p50, p99 and max of `v` in microseconds (v is reordered).
struct spread {
  double p50 = 0, p99 = 0, max = 0;
};

spread spread_of(std::vector<int64_t>& v) {
  spread s;
  if (v.empty())
    return s;
  auto at = [&](double q) {
    auto k = static_cast<size_t>(q * static_cast<double>(v.size() - 1));
    std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(k), v.end());
    return static_cast<double>(v[k]) / 1e3;
  };
  s.p50 = at(0.50);
  s.p99 = at(0.99);
  s.max = static_cast<double>(*std::max_element(v.begin(), v.end())) / 1e3;
  return s;
}

/// Counts what the journal writer asks of the store: commits, writes and
/// the time spent inside append() (SQLite's work and the fsync). Written by
/// the writer's thread; read after the runtime has shut down.
class counting_journal final : public troupe::forwarding_journal {
public:
  using forwarding_journal::forwarding_journal;
  caf::error append(std::vector<troupe::journal_write>& batch) override {
    auto t0 = now_ns();
    auto err = forwarding_journal::append(batch);
    ns_ += static_cast<uint64_t>(now_ns() - t0);
    ++calls_;
    writes_ += batch.size();
    return err;
  }
  uint64_t calls() const { return calls_; }
  uint64_t writes() const { return writes_; }
  double seconds() const { return static_cast<double>(ns_.load()) / 1e9; }

private:
  std::atomic<uint64_t> calls_{0}, writes_{0}, ns_{0};
};

struct level_result {
  size_t concurrency = 0;
  size_t workflows = 0;
  uint64_t steps = 0;
  double wall_s = 0;
  double cpu_s = 0; ///< the process's CPU time over the same span
  uint64_t written = 0; ///< bytes written over the same span
  size_t failed = 0;
  spread added;      ///< added latency per step, us
  spread ask;        ///< agent start to finish (the model round trip), us
  uint64_t gaps = 0; ///< added-latency samples
  double busy_s = 0; ///< summed over workflows: first step's start to last one's finish
  uint64_t commits = 0, writes = 0;
  double append_s = 0;
  troupe::trace_stats traced; ///< with --export, after the runtime's shutdown
  std::string error;
};

/// s1 -> s2 -> ... -> sK -> done; every node runs agent "bench" once.
caf::expected<troupe::definition> linear_definition(size_t k) {
  troupe::agent_policy p;
  p.timeout = std::chrono::seconds{10};
  p.retry.max_attempts = 1;
  p.fallback = "failed";
  troupe::definition_builder b{"bench"};
  for (size_t i = 1; i <= k; ++i) {
    auto next = i == k ? std::string{"done"} : "s" + std::to_string(i + 1);
    b.agent("s" + std::to_string(i), "bench", p).on(troupe::outcome::ok, next);
  }
  return b.completed("done").failed("failed").build();
}

troupe::llm_request step_request() {
  troupe::llm_request req;
  req.json_output = true;
  req.max_tokens = 16;
  req.messages = {{"user", "step"}};
  return req;
}

/// Asks the model once and finishes ok.
void bench_agent(troupe::step_context& ctx) {
  troupe::ask_json(ctx, step_request(), [](troupe::step_context& ctx, json) { ctx.finish({}); });
}

/// bench_agent, timed into `rec` under the workflow's slot; `last` names
/// the last node.
troupe::agent_fn timed_agent(step_timings* rec, std::string last) {
  return [rec, last](troupe::step_context& ctx) {
    auto began = now_ns();
    auto slot = ctx.state().at("slot").get<size_t>();
    rec->started(slot, ctx.node() == "s1", began);
    bool is_last = ctx.node() == last;
    troupe::ask_json(ctx, step_request(),
                     [rec, slot, is_last, began](troupe::step_context& ctx, json) {
                       rec->finishing(slot, is_last, began, now_ns());
                       ctx.finish({});
                     });
  };
}

/// The level's journal file: PATH.c<level>, and SQLite's companions.
std::vector<std::string> journal_files(const bench_options& opt, size_t concurrency) {
  auto path = opt.journal + ".c" + std::to_string(concurrency);
  return {path, path + "-wal", path + "-shm", path + "-journal"};
}

void remove_files(const std::vector<std::string>& files) {
  std::error_code ec;
  for (auto& f : files)
    std::filesystem::remove(f, ec);
}

level_result run_level(const bench_options& opt, size_t concurrency, step_timings& rec) {
  level_result r;
  r.concurrency = concurrency;
  rec.reset(concurrency);
  troupe::config cfg;
  cfg.threads = opt.threads;
  cfg.journal_batch = opt.journal_batch;
  cfg.model.rules["bench"] = [](const troupe::llm_request&) { return std::string{R"({"ok":1})"}; };
  cfg.log_level = "error";
  if (opt.export_spans)
    cfg.tracing.otlp_endpoint = opt.sink;
  std::shared_ptr<troupe::journal_store> store = troupe::make_memory_journal();
  auto files = journal_files(opt, concurrency);
  if (!opt.journal.empty()) {
    remove_files(files); // a fresh journal per level
    auto opened = troupe::open_sqlite_journal({files[0], opt.synchronous, {}});
    if (!opened) {
      r.error = troupe::describe(opened.error());
      return r;
    }
    store = std::move(*opened);
  }
  auto counter = std::make_shared<counting_journal>(std::move(store));
  cfg.journal = counter;
  try {
    troupe::runtime rt{cfg};
    auto def = linear_definition(opt.nodes);
    if (!def) {
      r.error = troupe::describe(def.error());
      return r;
    }
    if (auto err = rt.register_agent("bench", timed_agent(&rec, "s" + std::to_string(opt.nodes))))
      r.error = troupe::describe(err);
    else if (auto err = rt.register_definition(std::move(*def)))
      r.error = troupe::describe(err);
    if (!r.error.empty())
      return r;

    auto t0 = steady::now();
    auto cpu0 = cpu_seconds();
    auto written0 = bytes_written();
    // Driver threads: start() and await() block until the runtime answers
    // (start: until the workflow's first write is durable), so one thread
    // could keep only a few workflows in flight. Each driver owns every
    // D-th slot, starts its workflows, awaits them in start order and
    // replaces each that settles at once, in its slot.
    std::atomic<size_t> started{0};
    auto want_more = [&] {
      if (opt.workflows > 0)
        return started.fetch_add(1) < opt.workflows;
      return std::chrono::duration<double>(steady::now() - t0).count() < opt.seconds;
    };
    auto drivers = std::min(concurrency, opt.drivers);
    std::vector<level_result> part(drivers);
    std::vector<std::thread> threads;
    for (size_t d = 0; d < drivers; ++d)
      threads.emplace_back([&, d] {
        auto& p = part[d];
        std::deque<std::pair<std::string, size_t>> in_flight; // id, slot
        size_t starts = 0;
        auto start_one = [&](size_t slot) {
          auto key = opt.keyed ? "k" + std::to_string(d) + "-" + std::to_string(starts) : "";
          ++starts;
          auto id = rt.start("bench", json{{"slot", slot}}, key);
          if (id)
            in_flight.emplace_back(std::move(*id), slot);
          else if (p.error.empty())
            p.error = "start: " + troupe::describe(id.error());
        };
        for (size_t slot = d; slot < concurrency && p.error.empty() && want_more();
             slot += drivers)
          start_one(slot);
        while (!in_flight.empty()) {
          auto [id, slot] = std::move(in_flight.front());
          in_flight.pop_front();
          auto info = rt.await(id, std::chrono::seconds{60});
          if (!info) {
            if (p.error.empty())
              p.error = "await: " + troupe::describe(info.error());
            continue;
          }
          ++p.workflows;
          p.steps += info->steps;
          if (info->status != troupe::workflow_status::completed)
            ++p.failed;
          if (p.error.empty() && want_more())
            start_one(slot);
        }
      });
    for (auto& t : threads)
      t.join();
    for (auto& p : part) {
      r.workflows += p.workflows;
      r.steps += p.steps;
      r.failed += p.failed;
      if (r.error.empty())
        r.error = p.error;
    }
    r.wall_s = std::chrono::duration<double>(steady::now() - t0).count();
    r.cpu_s = cpu_seconds() - cpu0;
    r.written = bytes_written() - written0;
    rt.shutdown(); // exports what is left, outside the measured span
    r.traced = rt.trace_stats();
  } catch (const std::invalid_argument& e) {
    r.error = e.what();
  }
  auto gaps = rec.gaps();
  auto asks = rec.asks();
  r.gaps = rec.gaps_seen();
  r.busy_s = rec.busy_s();
  r.added = spread_of(gaps);
  r.ask = spread_of(asks);
  r.commits = counter->calls();
  r.writes = counter->writes();
  r.append_s = counter->seconds();
  counter.reset();
  cfg.journal.reset(); // closes the file
  if (!opt.journal.empty())
    remove_files(files);
  return r;
}

/// Starts `n` one-step workflows whose model answers after `hold_s`, samples
/// threads and memory while every agent waits, then awaits them all.
int run_waiting(const bench_options& opt) {
  troupe::config cfg;
  cfg.threads = opt.threads;
  cfg.model.latency = std::chrono::milliseconds{static_cast<int64_t>(opt.hold_s * 1000)};
  cfg.model.rules["bench"] = [](const troupe::llm_request&) { return std::string{R"({"ok":1})"}; };
  cfg.log_level = "error";
  troupe::runtime rt{cfg};
  troupe::agent_policy p;
  p.timeout = std::chrono::seconds{60};
  auto def = troupe::definition_builder{"wait"}
               .agent("ask", "bench", p).on("ok", "done").on("exhausted", "done")
               .completed("done")
               .build();
  if (!def || rt.register_agent("bench", troupe::agent_fn{bench_agent})
      || rt.register_definition(std::move(*def))) {
    std::printf("setup failed\n");
    return 1;
  }
  std::printf("threads before start: %s, RSS %s\n", proc_status("Threads").c_str(),
              proc_status("VmRSS").c_str());
  auto t0 = steady::now();
  std::vector<std::string> ids;
  for (size_t i = 0; i < opt.waiting; ++i)
    if (auto id = rt.start("wait", json::object()))
      ids.push_back(std::move(*id));
  auto started_s = std::chrono::duration<double>(steady::now() - t0).count();
  // a benchmark, not a test: sample halfway through the model's latency,
  // when every agent has asked and none has had its reply
  std::this_thread::sleep_until(t0 + std::chrono::duration<double>(opt.hold_s / 2));
  std::printf("%zu agents waiting on the model (all started in %.2f s): threads %s, RSS %s\n",
              ids.size(), started_s, proc_status("Threads").c_str(),
              proc_status("VmRSS").c_str());
  size_t completed = 0;
  for (auto& id : ids)
    if (auto info = rt.await(id, std::chrono::seconds{120}))
      completed += info->status == troupe::workflow_status::completed;
  auto wall = std::chrono::duration<double>(steady::now() - t0).count();
  std::printf("%zu of %zu completed in %.2f s (model latency %.2f s)\n", completed, ids.size(),
              wall, opt.hold_s);
  return completed == ids.size() ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  bench_options opt;
  CLI::App app{"troupe_bench: steps/s of a linear workflow over an instant scripted model"};
  app.add_option("--nodes", opt.nodes, "Agent nodes per workflow (K)")
      ->check(CLI::Range(size_t{1}, size_t{1000}))
      ->capture_default_str();
  app.add_option("--levels", opt.levels, "Concurrency levels (workflows in flight)")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}))
      ->capture_default_str();
  app.add_option("--seconds", opt.seconds, "Target run time per level")
      ->check(CLI::Range(0.01, 3600.0))
      ->capture_default_str();
  app.add_option("--workflows", opt.workflows,
                 "Workflows per level (0: as many as --seconds allows)")
      ->capture_default_str();
  app.add_option("--threads", opt.threads, "Scheduler worker threads")
      ->check(CLI::Range(size_t{1}, size_t{256}))
      ->capture_default_str();
  app.add_option("--journal-batch", opt.journal_batch, "Journal records per batch at most")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}))
      ->capture_default_str();
  app.add_option("--drivers", opt.drivers,
                 "Threads calling start() and await(), at most the concurrency level")
      ->check(CLI::Range(size_t{1}, size_t{1024}))
      ->capture_default_str();
  app.add_option("--journal", opt.journal,
                 "SQLite journal: level c uses a fresh file PATH.c<c>, deleted afterwards "
                 "(default: the in-memory journal)");
  app.add_flag("--keyed", opt.keyed,
               "Start every workflow with an idempotency key of its own (each start then "
               "looks its key up in the journal)");
  app.add_option("--synchronous", opt.synchronous, "PRAGMA synchronous of --journal")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--waiting", opt.waiting,
                 "Instead of the levels: hold this many agents on a slow model at once")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  app.add_option("--hold", opt.hold_s, "Model latency in seconds for --waiting")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  app.add_flag("--export", opt.export_spans,
               "Export every span (OTLP/HTTP JSON) to a local sink that accepts everything");
  CLI11_PARSE(app, argc, argv);
  if (opt.waiting > 0)
    return run_waiting(opt);
  std::unique_ptr<troupe::bench::fake_server> sink;
  if (opt.export_spans) { // forked while this process has one thread
    std::string why;
    sink = troupe::bench::fake_server::start(troupe::bench::server_mode::process,
                                             std::chrono::milliseconds{0}, why);
    if (!sink) {
      std::printf("the OTLP sink did not start: %s\n", why.c_str());
      return 1;
    }
    opt.sink = "http://127.0.0.1:" + std::to_string(sink->port()) + "/v1/traces";
  }

  std::string cmd;
  for (int i = 0; i < argc; ++i)
    cmd += (i > 0 ? " " : "") + std::string{argv[i]};
  auto journal = opt.journal.empty()
                   ? std::string{"in-memory journal"}
                   : "SQLite journal " + opt.journal + ".c<level> (synchronous="
                       + opt.synchronous + ", fresh per level)";
  std::printf("troupe_bench: linear workflow of %zu agent nodes, scripted model (latency 0, no "
              "faults), %s, %zu scheduler threads, %zu driver threads, journal_batch %zu, "
              "span export %s\n",
              opt.nodes, journal.c_str(), opt.threads, opt.drivers, opt.journal_batch,
              opt.export_spans ? ("on, to " + opt.sink).c_str() : "off");
  std::printf("command: %s\n\n", cmd.c_str());
  std::printf("%11s %10s %10s %8s %10s %9s %9s %7s | %25s | %9s | %8s %7s %9s %8s\n", "", "",
              "", "", "", "", "cpu", "", "added latency/step (us)", "model", "journal",
              "writes/", "append", "written");
  std::printf("%11s %10s %10s %8s %10s %9s %9s %7s | %8s %8s %7s | %9s | %8s %7s %9s %8s\n",
              "concurrency", "workflows", "steps", "wall s", "steps/s", "us/step", "us/step",
              "running", "p50", "p99", "max", "p50 us", "commits", "commit", "us/commit",
              "B/step");
  std::fflush(stdout);

  step_timings rec;
  int rc = 0;
  for (auto c : opt.levels) {
    auto sink_cpu_ns = sink ? sink->stats().cpu_ns.load() : 0;
    auto r = run_level(opt, c, rec);
    sink_cpu_ns = sink ? sink->stats().cpu_ns.load() - sink_cpu_ns : 0;
    double rate = r.wall_s > 0 ? static_cast<double>(r.steps) / r.wall_s : 0;
    double us_per_step = r.steps > 0 ? r.wall_s * 1e6 / static_cast<double>(r.steps) : 0;
    double per_commit = r.commits > 0 ? static_cast<double>(r.writes) / r.commits : 0;
    double us_commit = r.commits > 0 ? r.append_s * 1e6 / r.commits : 0;
    double running = r.wall_s > 0 ? r.busy_s / r.wall_s : 0;
    double cpu_per_step = r.steps > 0 ? r.cpu_s * 1e6 / static_cast<double>(r.steps) : 0;
    double written = r.steps > 0 ? static_cast<double>(r.written) / static_cast<double>(r.steps)
                                 : 0;
    std::printf("%11zu %10zu %10llu %8.2f %10.0f %9.2f %9.2f %7.1f | %8.1f %8.1f %7.0f | %9.1f | "
                "%8llu %7.1f %9.1f %8.0f\n",
                c, r.workflows, static_cast<unsigned long long>(r.steps), r.wall_s, rate,
                us_per_step, cpu_per_step, running, r.added.p50, r.added.p99, r.added.max, r.ask.p50,
                static_cast<unsigned long long>(r.commits), per_commit, us_commit, written);
    if (r.gaps > step_timings::capacity)
      std::printf("  latency over the first %zu of %llu steps\n", step_timings::capacity,
                  static_cast<unsigned long long>(r.gaps));
    if (opt.export_spans)
      std::printf("  spans: %llu exported, %llu dropped, %llu records skipped; posts: %llu, "
                  "%llu failed; the sink's own process: %.1f cpu us/step\n",
                  static_cast<unsigned long long>(r.traced.spans_exported),
                  static_cast<unsigned long long>(r.traced.spans_dropped),
                  static_cast<unsigned long long>(r.traced.records_skipped),
                  static_cast<unsigned long long>(r.traced.posts),
                  static_cast<unsigned long long>(r.traced.posts_failed),
                  r.steps > 0 ? static_cast<double>(sink_cpu_ns) / 1e3
                                  / static_cast<double>(r.steps)
                              : 0.0);
    if (r.failed > 0)
      std::printf("  %zu workflows did not complete\n", r.failed);
    if (!r.error.empty())
      std::printf("  error: %s\n", r.error.c_str());
    if (r.failed > 0 || !r.error.empty())
      rc = 1;
    std::fflush(stdout);
  }
  std::printf(
    "\nsteps/s = steps / wall, wall from the first start to the last workflow settled; "
    "us/step = wall / steps; cpu us/step = the process's CPU time (user + system, every "
    "thread, the driver's included) / steps; running = mean workflows between their first step's start and "
    "their last step's finish (below the concurrency: the rest of the time is the start, the "
    "first step's scheduling, the final write and the await).\n"
    "added latency/step = time from a step's agent handing over its outcome (finish()) to the "
    "next step's agent starting (run()), over every step but a workflow's first: the runtime's "
    "whole cost between two steps (report to the workflow, apply, journal write and durable "
    "commit, ack, spawning the next agent), the model excluded.\n"
    "model p50 = an agent's start to its finish (the scripted model's round trip).\n"
    "commits = the journal store's append() calls (one transaction each, an fsync with "
    "synchronous=full); writes/commit = workflow writes grouped per commit; us/commit = mean "
    "time inside append(); written B/step = bytes the process wrote (wchar of /proc/self/io: "
    "WAL frames, checkpoints) / steps.\n");
  return rc;
}
