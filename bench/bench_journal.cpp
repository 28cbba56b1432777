// Benchmark (not a test): durable appends to the SQLite journal store, the
// floor under every step of a workflow. For each batch size it appends
// --events events (one write per event, spread over --workflows workflows,
// each workflow's first event with its row, payloads like a step_completed)
// to a fresh journal, batch after batch, and prints events/s, batches/s,
// mean and p99 latency of one append() (one commit, an fsync with
// synchronous=full), CPU time per event and the bytes on disk per event
// after closing.
//
// Neighbouring writes belong to different workflows (round robin), as in
// the runtime, where a workflow has one write in flight at a time: a batch
// of B events then touches up to B pages of the (workflow_id, wf_seq)
// index. With fewer workflows than B it is cheaper. On a shared machine
// trust the CPU column more than the rates.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "troupe/errors.hpp"
#include "troupe/journal.hpp"

namespace {

using steady = std::chrono::steady_clock;

struct bench_options {
  std::vector<size_t> batches = {1, 16, 100, 256};
  size_t events = 200'000;
  size_t workflows = 1000;
  std::string synchronous = "full";
  std::string dir;         ///< "" = a fresh temp dir, removed afterwards
  double max_seconds = 20; ///< per batch size; stops early past this
};

struct level_result {
  size_t events = 0;
  size_t batches = 0;
  double wall_s = 0;
  double mean_us = 0;
  double p99_us = 0;
  double cpu_s = 0; ///< user + system time of the appends
  double bytes_per_event = 0;
  std::string error;
};

/// User plus system CPU time of this process so far, in seconds.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(u.ru_utime) + s(u.ru_stime);
}

/// About 80 bytes, the size of a typical step_completed payload.
std::string payload(size_t i) {
  return R"({"node":"extract","attempt":1,"label":"ok","patch":{"n":)" + std::to_string(i % 1000)
         + R"(},"tokens":412})";
}

/// The writes of `n` events over `workflows` workflows, round robin.
std::vector<troupe::journal_write> make_writes(size_t n, size_t workflows) {
  std::vector<troupe::journal_write> out(n);
  for (size_t i = 0; i < n; ++i) {
    auto id = "wf-" + std::to_string(i % workflows);
    auto wf_seq = i / workflows + 1;
    auto at = static_cast<int64_t>(i) * 1000;
    if (wf_seq == 1) {
      troupe::workflow_row row;
      row.id = id;
      row.definition = "bench";
      row.created_ns = row.updated_ns = at;
      out[i].workflow.push_back(std::move(row));
    }
    out[i].events.push_back(
      {0, id, wf_seq, wf_seq == 1 ? "workflow_started" : "step_completed", at, payload(i)});
  }
  return out;
}

level_result run_level(const bench_options& opt, size_t batch, const std::string& path) {
  level_result r;
  troupe::sqlite_journal_options o;
  o.path = path;
  o.synchronous = opt.synchronous;
  auto writes = make_writes(opt.events, opt.workflows);
  std::vector<std::vector<troupe::journal_write>> batches;
  for (size_t i = 0; i < writes.size(); i += batch) {
    auto from = writes.begin() + static_cast<ptrdiff_t>(i);
    auto to = writes.begin() + static_cast<ptrdiff_t>(std::min(i + batch, writes.size()));
    batches.emplace_back(std::make_move_iterator(from), std::make_move_iterator(to));
  }
  std::vector<double> latencies_us;
  latencies_us.reserve(batches.size());
  {
    auto store = troupe::open_sqlite_journal(o);
    if (!store) {
      r.error = troupe::describe(store.error());
      return r;
    }
    auto cpu_start = cpu_seconds();
    auto start = steady::now();
    for (auto& b : batches) {
      auto t0 = steady::now();
      if (auto err = (*store)->append(b)) {
        r.error = troupe::describe(err);
        break;
      }
      auto t1 = steady::now();
      latencies_us.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
      r.events += b.size();
      ++r.batches;
      if (std::chrono::duration<double>(t1 - start).count() > opt.max_seconds)
        break;
    }
    r.wall_s = std::chrono::duration<double>(steady::now() - start).count();
    r.cpu_s = cpu_seconds() - cpu_start;
  } // closing checkpoints the WAL into the file
  if (!latencies_us.empty()) {
    double sum = 0;
    for (auto l : latencies_us)
      sum += l;
    r.mean_us = sum / static_cast<double>(latencies_us.size());
    auto nth = latencies_us.begin() + static_cast<ptrdiff_t>(latencies_us.size() * 99 / 100);
    std::nth_element(latencies_us.begin(), nth, latencies_us.end());
    r.p99_us = *nth;
  }
  uintmax_t bytes = 0;
  for (const auto* suffix : {"", "-wal"})
    if (std::filesystem::exists(path + suffix))
      bytes += std::filesystem::file_size(path + suffix);
  r.bytes_per_event = r.events > 0 ? static_cast<double>(bytes) / static_cast<double>(r.events) : 0;
  return r;
}

} // namespace

int main(int argc, char** argv) {
  bench_options opt;
  CLI::App app{"troupe_bench_journal: durable appends/s of the SQLite journal store"};
  app.add_option("--batch", opt.batches, "Events per append (one commit), comma-separated sizes")
      ->delimiter(',')
      ->check(CLI::Range(size_t{1}, size_t{100'000}))
      ->capture_default_str();
  app.add_option("--events", opt.events, "Events per batch size")
      ->check(CLI::Range(size_t{1}, size_t{100'000'000}))
      ->capture_default_str();
  app.add_option("--workflows", opt.workflows, "Workflows the events are spread over")
      ->check(CLI::Range(size_t{1}, size_t{10'000'000}))
      ->capture_default_str();
  app.add_option("--synchronous", opt.synchronous, "PRAGMA synchronous")
      ->check(CLI::IsMember({"full", "normal"}))
      ->capture_default_str();
  app.add_option("--path", opt.dir,
                 "Directory for the journal files, on the disk to measure (default: a fresh "
                 "temp dir, removed afterwards)");
  app.add_option("--max-seconds", opt.max_seconds, "Stop a batch size early after this long")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  bool own_dir = opt.dir.empty();
  if (own_dir) {
    auto pattern = (std::filesystem::temp_directory_path() / "troupe-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("mkdtemp");
      return 1;
    }
    opt.dir = pattern;
  }
  std::string cmd;
  for (int i = 0; i < argc; ++i)
    cmd += (i > 0 ? " " : "") + std::string{argv[i]};
  std::printf("troupe_bench_journal: SQLite journal in %s, synchronous=%s, %zu events over %zu "
              "workflows, one write per event\n",
              opt.dir.c_str(), opt.synchronous.c_str(), opt.events, opt.workflows);
  std::printf("command: %s\n\n", cmd.c_str());
  std::printf("%7s %9s %11s %10s %11s %11s %13s %11s\n", "batch", "events", "events/s",
              "batches/s", "mean us", "p99 us", "cpu us/event", "bytes/event");
  int rc = 0;
  for (auto b : opt.batches) {
    auto path = opt.dir + "/journal-" + std::to_string(::getpid()) + "-b" + std::to_string(b)
                + ".db";
    auto r = run_level(opt, b, path);
    auto per_s = [&](size_t n) { return r.wall_s > 0 ? static_cast<double>(n) / r.wall_s : 0; };
    std::printf("%7zu %9zu %11.0f %10.0f %11.1f %11.1f %13.2f %11.1f\n", b, r.events,
                per_s(r.events), per_s(r.batches), r.mean_us, r.p99_us,
                r.events > 0 ? r.cpu_s * 1e6 / static_cast<double>(r.events) : 0,
                r.bytes_per_event);
    if (!r.error.empty()) {
      std::printf("  error: %s\n", r.error.c_str());
      rc = 1;
    }
    std::fflush(stdout);
    for (const auto* suffix : {"", "-wal"})
      std::filesystem::remove(path + suffix);
  }
  if (own_dir)
    std::filesystem::remove_all(opt.dir);
  std::printf("\nlatency = one append(): BEGIN IMMEDIATE, the inserts, COMMIT (with its fsync "
              "when synchronous=full, and a WAL checkpoint now and then); cpu = the process's "
              "user + system time during the appends; bytes/event = file size after close / "
              "events\n");
  return rc;
}
