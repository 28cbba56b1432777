// Benchmark (not a test): end-to-end steps/s and per-step overhead of a
// linear workflow of K agent nodes over an instant scripted model (latency
// 0, no faults, in-memory journal), at several concurrency levels. Each
// level keeps that many workflows in flight on a fresh runtime for about
// --seconds, then prints one row of a table. With --waiting N it instead
// holds N agents on a slow model at once and reports the process's threads
// and memory while they wait (agents must not need a thread each).
#include <chrono>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "troupe/errors.hpp"
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
  size_t waiting = 0;   ///< >0: the waiting-agents run instead of the levels
  double hold_s = 2.0;  ///< model latency in the waiting run
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

struct level_result {
  size_t concurrency = 0;
  size_t workflows = 0;
  uint64_t steps = 0;
  double wall_s = 0;
  size_t failed = 0;
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

/// Asks the model once and finishes ok.
void bench_agent(troupe::step_context& ctx) {
  troupe::llm_request req;
  req.json_output = true;
  req.max_tokens = 16;
  req.messages = {{"user", "step"}};
  troupe::ask_json(ctx, std::move(req), [](troupe::step_context& ctx, json) { ctx.finish({}); });
}

level_result run_level(const bench_options& opt, size_t concurrency) {
  level_result r;
  r.concurrency = concurrency;
  troupe::config cfg;
  cfg.threads = opt.threads;
  cfg.journal_batch = opt.journal_batch;
  cfg.model.rules["bench"] = [](const troupe::llm_request&) { return std::string{R"({"ok":1})"}; };
  cfg.log_level = "error";
  try {
    troupe::runtime rt{cfg};
    auto def = linear_definition(opt.nodes);
    if (!def) {
      r.error = troupe::describe(def.error());
      return r;
    }
    if (auto err = rt.register_agent("bench", troupe::agent_fn{bench_agent}))
      r.error = troupe::describe(err);
    else if (auto err = rt.register_definition(std::move(*def)))
      r.error = troupe::describe(err);
    if (!r.error.empty())
      return r;

    auto t0 = steady::now();
    size_t started = 0;
    auto want_more = [&] {
      if (opt.workflows > 0)
        return started < opt.workflows;
      return std::chrono::duration<double>(steady::now() - t0).count() < opt.seconds;
    };
    std::deque<std::string> in_flight;
    auto start_one = [&] {
      auto id = rt.start("bench", json::object());
      ++started;
      if (id)
        in_flight.push_back(std::move(*id));
      else if (r.error.empty())
        r.error = "start: " + troupe::describe(id.error());
    };
    while (in_flight.size() < concurrency && want_more() && r.error.empty())
      start_one();
    // Await in start order; each workflow that settles is replaced at once.
    while (!in_flight.empty()) {
      auto id = std::move(in_flight.front());
      in_flight.pop_front();
      auto info = rt.await(id, std::chrono::seconds{60});
      if (!info) {
        if (r.error.empty())
          r.error = "await: " + troupe::describe(info.error());
        continue;
      }
      ++r.workflows;
      r.steps += info->steps;
      if (info->status != troupe::workflow_status::completed)
        ++r.failed;
      if (r.error.empty() && want_more())
        start_one();
    }
    r.wall_s = std::chrono::duration<double>(steady::now() - t0).count();
    rt.shutdown();
  } catch (const std::invalid_argument& e) {
    r.error = e.what();
  }
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
  app.add_option("--waiting", opt.waiting,
                 "Instead of the levels: hold this many agents on a slow model at once")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}));
  app.add_option("--hold", opt.hold_s, "Model latency in seconds for --waiting")
      ->check(CLI::Range(0.0, 60.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (opt.waiting > 0)
    return run_waiting(opt);

  std::string cmd;
  for (int i = 0; i < argc; ++i)
    cmd += (i > 0 ? " " : "") + std::string{argv[i]};
  std::printf("troupe_bench: linear workflow of %zu agent nodes, scripted model (latency 0, no "
              "faults), in-memory journal, %zu threads\n",
              opt.nodes, opt.threads);
  std::printf("command: %s\n\n", cmd.c_str());
  std::printf("%11s %10s %10s %8s %10s %12s %12s\n", "concurrency", "workflows", "steps",
              "wall s", "steps/s", "us/step", "latency us");
  std::fflush(stdout);

  int rc = 0;
  for (auto c : opt.levels) {
    auto r = run_level(opt, c);
    double rate = r.wall_s > 0 ? static_cast<double>(r.steps) / r.wall_s : 0;
    double us_per_step = r.steps > 0 ? r.wall_s * 1e6 / static_cast<double>(r.steps) : 0;
    std::printf("%11zu %10zu %10llu %8.2f %10.0f %12.2f %12.1f\n", c, r.workflows,
                static_cast<unsigned long long>(r.steps), r.wall_s, rate, us_per_step,
                us_per_step * static_cast<double>(c));
    if (r.failed > 0)
      std::printf("  %zu workflows did not complete\n", r.failed);
    if (!r.error.empty())
      std::printf("  error: %s\n", r.error.c_str());
    if (r.failed > 0 || !r.error.empty())
      rc = 1;
    std::fflush(stdout);
  }
  std::printf("\nus/step = wall / steps (runtime cost per step at that concurrency); latency us "
              "= wall x concurrency / steps (mean time from one step's start to the next's, as "
              "each workflow has one step in flight)\n");
  return rc;
}
