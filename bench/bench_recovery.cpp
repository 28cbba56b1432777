// Benchmark (not a test): how long a durable runtime takes to recover its
// journal, and what a workflow at rest costs in memory and on disk. For
// each N of --workflows, two scenarios, each on a fresh SQLite journal in
// --dir (deleted afterwards):
//
//   in-flight  N one-node workflows whose agent is waiting on the model (a
//              scripted model that answers after an hour) when the runtime
//              shuts down: every journal ends with step_scheduled.
//   parked     N workflows parked at a gate (passivated: no actor).
//
// Each scenario runs in child processes, so that every memory figure
// starts from a fresh process: the first builds the journal (starts the N
// workflows, waits until every agent has started or every workflow has
// parked, measures, and dies with _exit, as in a crash); a second opens and
// closes the file (a checkpoint) for its size at rest; a third recovers it
// and dies the same way once measured. The parent only forks, waits and
// prints.
//
// Figures:
//   recovery s    opening the journal + constructing the runtime and
//                 registering + recover() until it returns: the time before
//                 the runtime serves again (its parts are printed too)
//   re-issued s   in-flight: from the start of recovery until every
//                 recovered workflow's step has started again as a new
//                 attempt (each is journaled first: step_failed{crashed},
//                 then, after a zero backoff, step_scheduled)
//   mem B/wf      (RSS after - RSS before) / N, from /proc/self/statm;
//                 heap B/wf the same from malloc's bytes in use (mallinfo2),
//                 sqlite B/wf SQLite's own heap (its page cache, at most
//                 32 MiB) within it. Built: before the first start to after
//                 the last agent started / workflow parked; recovered:
//                 after the runtime is constructed to after recover().
//   disk B/wf     (journal file + -wal) / N, when the building runtime died
//                 and after a later open and close (checkpointed).
#include <malloc.h>
#include <sqlite3.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "troupe/errors.hpp"
#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"

namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

struct bench_options {
  std::vector<size_t> workflows = {10'000, 100'000};
  std::string dir = "/tmp";
  std::string synchronous = "full";
  size_t threads = 2;
  size_t journal_batch = 256;
  double timeout_s = 120; ///< for each wait
};

enum class scenario { in_flight, parked };

const char* name_of(scenario s) {
  return s == scenario::in_flight ? "in-flight" : "parked";
}

// -- what the children report (in memory shared with the parent) -------------

struct memory_use {
  int64_t rss = 0;    ///< bytes
  int64_t heap = 0;   ///< malloc's bytes in use
  int64_t sqlite = 0; ///< SQLite's heap
};

memory_use memory_now() {
  memory_use m;
  long pages = 0, resident = 0;
  if (FILE* f = std::fopen("/proc/self/statm", "r")) {
    if (std::fscanf(f, "%ld %ld", &pages, &resident) != 2)
      resident = 0;
    std::fclose(f);
  }
  m.rss = static_cast<int64_t>(resident) * sysconf(_SC_PAGESIZE);
  auto mi = mallinfo2();
  m.heap = static_cast<int64_t>(mi.uordblks + mi.hblkhd);
  m.sqlite = sqlite3_memory_used();
  return m;
}

struct build_result {
  bool ok = false;
  double start_s = 0; ///< starting the N workflows (rt.start calls)
  double ready_s = 0; ///< until every agent started / workflow parked
  memory_use before, after;
  int64_t disk_open = 0;   ///< file + -wal, runtime still open
  int64_t disk_closed = 0; ///< after closing
  char error[512] = {};
};

struct recover_result {
  bool ok = false;
  double open_s = 0;      ///< open_sqlite_journal
  double construct_s = 0; ///< runtime + register
  double recover_s = 0;   ///< recover()
  double reissued_s = -1; ///< in-flight: recovery start to every step started again
  uint64_t reissued = 0;  ///< in-flight: steps started again (N unless the wait timed out)
  uint64_t resumed = 0, parked = 0, quarantined = 0;
  memory_use before, after;
  char error[512] = {};
};

struct result {
  size_t n = 0;
  scenario kind = scenario::in_flight;
  build_result build;
  recover_result recover;
};

template <size_t K>
void set_error(char (&to)[K], const std::string& what) {
  std::snprintf(to, K, "%s", what.c_str());
}

double since(steady::time_point t0) {
  return std::chrono::duration<double>(steady::now() - t0).count();
}

int64_t file_size(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<int64_t>(n);
}

int64_t journal_bytes(const std::string& path) {
  return file_size(path) + file_size(path + "-wal");
}

void remove_journal(const std::string& path) {
  std::error_code ec;
  for (auto suffix : {"", "-wal", "-shm", "-journal"})
    std::filesystem::remove(path + suffix, ec);
}

// -- the workflows --------------------------------------------------------------

/// Agent runs so far in this process.
std::atomic<uint64_t> agent_runs{0};

/// Counts its run and asks the model, which answers in an hour.
void waiting_agent(troupe::step_context& ctx) {
  agent_runs.fetch_add(1, std::memory_order_relaxed);
  troupe::llm_request req;
  req.max_tokens = 16;
  req.messages = {{"user", "wait"}};
  troupe::ask_json(ctx, std::move(req), [](troupe::step_context& ctx, json) { ctx.finish({}); });
}

/// The runtime both children build: "inflight" (one agent node that waits
/// on the model; an interrupted attempt is retried at once) and "parked"
/// (a gate). Throws only on an invalid config.
std::unique_ptr<troupe::runtime> make_runtime(const bench_options& opt,
                                              std::shared_ptr<troupe::journal_store> store,
                                              std::string& error) {
  troupe::config cfg;
  cfg.threads = opt.threads;
  cfg.journal_batch = opt.journal_batch;
  cfg.journal = std::move(store);
  cfg.model.latency = std::chrono::hours{1};
  cfg.model.rules["wait"] = [](const troupe::llm_request&) { return std::string{"{}"}; };
  cfg.log_level = "error";
  auto rt = std::make_unique<troupe::runtime>(cfg);
  troupe::agent_policy p;
  p.timeout = std::chrono::hours{2};
  p.retry.max_attempts = 3;
  p.retry.base_backoff = troupe::duration::zero();
  p.retry.max_backoff = troupe::duration::zero();
  p.fallback = "failed";
  auto inflight = troupe::definition_builder{"inflight"}
                    .agent("work", "wait", p).on(troupe::outcome::ok, "done")
                    .completed("done").failed("failed")
                    .build();
  auto parked = troupe::definition_builder{"parked"}
                  .gate("review")
                  .on(troupe::outcome::approve, "done")
                  .on(troupe::outcome::reject, "failed")
                  .completed("done").failed("failed")
                  .build();
  caf::error err;
  if (!inflight)
    err = inflight.error();
  else if (!parked)
    err = parked.error();
  else if (auto e = rt->register_agent("wait", troupe::agent_fn{waiting_agent}))
    err = e;
  else if (auto e = rt->register_definition(std::move(*inflight)))
    err = e;
  else if (auto e = rt->register_definition(std::move(*parked)))
    err = e;
  if (err) {
    error = troupe::describe(err);
    return nullptr;
  }
  return rt;
}

caf::expected<std::shared_ptr<troupe::journal_store>> open_journal(const bench_options& opt,
                                                                   const std::string& path) {
  return troupe::open_sqlite_journal({path, opt.synchronous, {}});
}

/// Polls `done` every millisecond until it holds or `timeout_s` passes.
template <class F>
bool wait_until(F done, double timeout_s) {
  auto t0 = steady::now();
  while (!done()) {
    if (since(t0) > timeout_s)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{1});
  }
  return true;
}

// -- the children -------------------------------------------------------------

void build(const bench_options& opt, scenario kind, size_t n, const std::string& path,
           build_result& out) {
  auto store = open_journal(opt, path);
  if (!store)
    return set_error(out.error, troupe::describe(store.error()));
  std::string error;
  auto rt = make_runtime(opt, *store, error);
  if (!rt)
    return set_error(out.error, error);
  auto def = kind == scenario::in_flight ? "inflight" : "parked";
  out.before = memory_now();
  auto t0 = steady::now();
  std::vector<std::string> ids;
  ids.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    auto id = rt->start(def, json::object());
    if (!id)
      return set_error(out.error, "start: " + troupe::describe(id.error()));
    ids.push_back(std::move(*id));
  }
  out.start_s = since(t0);
  if (kind == scenario::in_flight) {
    if (!wait_until([&] { return agent_runs.load() >= n; }, opt.timeout_s))
      return set_error(out.error, std::to_string(agent_runs.load()) + " of " + std::to_string(n)
                                    + " agents started in time");
  } else {
    for (auto& id : ids) {
      auto info = rt->await(id, std::chrono::milliseconds{static_cast<int64_t>(opt.timeout_s * 1e3)},
                            true);
      if (!info)
        return set_error(out.error, "await: " + troupe::describe(info.error()));
      if (info->status != troupe::workflow_status::parked)
        return set_error(out.error, id + " is " + troupe::to_string(info->status));
    }
  }
  out.ready_s = since(t0);
  ids = {};
  out.after = memory_now();
  out.disk_open = journal_bytes(path);
  out.ok = true;
  // The process dies here, as in a crash: no shutdown, nothing more written
  // (and no teardown of N live workflows to wait for).
  std::fflush(stdout);
  _exit(0);
}

/// Opens and closes the journal (a checkpoint), for its size at rest.
int64_t closed_journal_bytes(const bench_options& opt, const std::string& path) {
  {
    auto store = open_journal(opt, path);
    if (!store)
      return -1;
  }
  return journal_bytes(path);
}

void recover(const bench_options& opt, scenario kind, size_t n, const std::string& path,
             recover_result& out) {
  out.before = memory_now();
  auto t0 = steady::now();
  auto store = open_journal(opt, path);
  if (!store)
    return set_error(out.error, troupe::describe(store.error()));
  out.open_s = since(t0);
  auto t1 = steady::now();
  std::string error;
  auto rt = make_runtime(opt, *store, error);
  if (!rt)
    return set_error(out.error, error);
  out.construct_s = since(t1);
  auto before_recover = memory_now();
  auto t2 = steady::now();
  auto rep = rt->recover();
  if (!rep)
    return set_error(out.error, "recover: " + troupe::describe(rep.error()));
  out.recover_s = since(t2);
  out.resumed = rep->resumed;
  out.parked = rep->parked;
  out.quarantined = rep->quarantined.size();
  if (kind == scenario::parked) { // passive entries only: nothing runs
    out.before = before_recover;
    out.after = memory_now();
  }
  if (kind == scenario::in_flight) {
    bool all = wait_until([&] { return agent_runs.load() >= n; }, opt.timeout_s);
    out.reissued = agent_runs.load();
    out.before = before_recover;
    out.after = memory_now();
    if (!all) {
      out.reissued_s = since(t0);
      return set_error(out.error, "only " + std::to_string(out.reissued) + " of "
                                    + std::to_string(n) + " steps re-issued within "
                                    + std::to_string(out.reissued_s) + " s");
    }
    out.reissued_s = since(t0);
  }
  out.ok = out.quarantined == 0;
  if (!out.ok)
    set_error(out.error, std::to_string(out.quarantined) + " workflows quarantined, first: "
                           + rep->quarantined.front());
  std::fflush(stdout);
  _exit(0); // measured: no teardown of N live workflows
}

/// Runs `f` in a child process; true if it exited normally.
template <class F>
bool in_child(F f) {
  std::fflush(stdout);
  pid_t pid = fork();
  if (pid < 0)
    return false;
  if (pid == 0) {
    f();
    std::fflush(stdout);
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

double per_wf(int64_t bytes, size_t n) {
  return static_cast<double>(bytes) / static_cast<double>(n);
}

void print(const result& r) {
  auto& b = r.build;
  auto& c = r.recover;
  std::printf("%-9s %7zu | %7.2f %7.2f | %8.0f %8.0f %8.0f | %8.0f %8.0f |", name_of(r.kind), r.n,
              b.start_s, b.ready_s, per_wf(b.after.rss - b.before.rss, r.n),
              per_wf(b.after.heap - b.before.heap, r.n),
              per_wf(b.after.sqlite - b.before.sqlite, r.n), per_wf(b.disk_open, r.n),
              per_wf(b.disk_closed, r.n));
  if (!b.ok) {
    std::printf(" build failed: %s\n", b.error[0] != '\0' ? b.error : "the building process died");
    return;
  }
  std::printf(" %6.3f %6.3f %6.3f %7.3f", c.open_s, c.construct_s, c.recover_s,
              c.open_s + c.construct_s + c.recover_s);
  if (c.reissued_s >= 0 && c.reissued < r.n)
    std::printf(" %8s", (">" + std::to_string(static_cast<int>(c.reissued_s))).c_str());
  else if (c.reissued_s >= 0)
    std::printf(" %8.3f", c.reissued_s);
  else
    std::printf(" %8s", "-");
  std::printf(" %7llu %7llu | %8.0f %8.0f %8.0f\n", static_cast<unsigned long long>(c.resumed),
              static_cast<unsigned long long>(c.parked), per_wf(c.after.rss - c.before.rss, r.n),
              per_wf(c.after.heap - c.before.heap, r.n),
              per_wf(c.after.sqlite - c.before.sqlite, r.n));
  if (!c.ok)
    std::printf("  recovery failed: %s\n",
                c.error[0] != '\0' ? c.error : "the recovering process died");
}

} // namespace

int main(int argc, char** argv) {
  bench_options opt;
  CLI::App app{"troupe_bench_recovery: recovery time and the footprint of workflows at rest"};
  app.add_option("--workflows", opt.workflows, "Workflows per journal (N)")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--dir", opt.dir, "Where the journals go (each deleted afterwards)")
      ->check(CLI::ExistingDirectory)
      ->capture_default_str();
  app.add_option("--synchronous", opt.synchronous, "PRAGMA synchronous of the journals")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--threads", opt.threads, "Scheduler worker threads")
      ->check(CLI::Range(size_t{1}, size_t{256}))
      ->capture_default_str();
  app.add_option("--journal-batch", opt.journal_batch, "Journal records per batch at most")
      ->check(CLI::Range(size_t{1}, size_t{1'000'000}))
      ->capture_default_str();
  app.add_option("--timeout", opt.timeout_s, "Seconds each wait may take at most")
      ->check(CLI::Range(1.0, 36'000.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::string cmd;
  for (int i = 0; i < argc; ++i)
    cmd += (i > 0 ? " " : "") + std::string{argv[i]};
  std::printf("troupe_bench_recovery: SQLite journals in %s (synchronous=%s), %zu threads, "
              "journal_batch %zu\n",
              opt.dir.c_str(), opt.synchronous.c_str(), opt.threads, opt.journal_batch);
  std::printf("command: %s\n\n", cmd.c_str());
  std::printf("%-17s | %15s | %26s | %17s | %58s | %26s\n", "", "build s",
              "built, in memory B/wf", "disk B/wf", "recovery s",
              "recovered, in memory B/wf");
  std::printf("%-9s %7s | %7s %7s | %8s %8s %8s | %8s %8s | %6s %6s %6s %7s %8s %7s %7s | "
              "%8s %8s %8s\n",
              "scenario", "N", "start", "ready", "rss", "heap", "sqlite", "open", "closed",
              "open", "rt", "recov", "total", "reissued", "resumed", "parked", "rss", "heap",
              "sqlite");

  auto* shared = static_cast<result*>(mmap(nullptr, sizeof(result), PROT_READ | PROT_WRITE,
                                           MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  if (shared == MAP_FAILED) {
    std::perror("mmap");
    return 1;
  }
  int rc = 0;
  for (auto n : opt.workflows)
    for (auto kind : {scenario::in_flight, scenario::parked}) {
      auto path = opt.dir + "/troupe-bench-recovery-" + std::to_string(getpid()) + "-"
                  + name_of(kind) + "-" + std::to_string(n) + ".db";
      remove_journal(path);
      new (shared) result{};
      shared->n = n;
      shared->kind = kind;
      bool built = in_child([&] { build(opt, kind, n, path, shared->build); });
      if (built && shared->build.ok) {
        in_child([&] { shared->build.disk_closed = closed_journal_bytes(opt, path); });
        in_child([&] { recover(opt, kind, n, path, shared->recover); });
      }
      print(*shared);
      if (!shared->build.ok || !shared->recover.ok)
        rc = 1;
      std::fflush(stdout);
      remove_journal(path);
    }
  munmap(shared, sizeof(result));
  std::printf(
    "\nbuild s: start = the N rt.start() calls, ready = until every agent has started "
    "(in-flight) or every workflow is parked.\n"
    "recovery s: open = open_sqlite_journal, rt = constructing the runtime and registering, "
    "recov = recover() until it returns, total = the three; reissued = from the start of "
    "recovery until every in-flight workflow's step has started again (a new attempt, "
    "journaled).\n"
    "in memory B/wf: (after - before) / N of the RSS (/proc/self/statm), of malloc's bytes in "
    "use (mallinfo2), and of SQLite's heap (page cache, at most 32 MiB); built: before the "
    "first start to all ready (in-flight: live actors waiting; parked: passivated); "
    "recovered: after the runtime is constructed to after recover() (in-flight: after every "
    "step was re-issued).\n"
    "disk B/wf: (journal + -wal) / N, open = when the building runtime died, closed = after "
    "a later open and close (checkpointed).\n");
  return rc;
}
