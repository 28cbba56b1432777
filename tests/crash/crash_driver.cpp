// The crash test driver: runs the ledger example (`troupe run ledger`) as a
// child process, SIGKILLs it at random instants, restarts it until a run
// finishes by itself, and then checks what survived against a clean run.
//
// For each seed:
//   1. a clean run in a fresh directory gives the reference results; a
//      second one in another must end every order alike (ids aside);
//   2. a crash run in another fresh directory: start the binary; either
//      SIGKILL it at an instant drawn from [0, 1.2 x the clean run's
//      duration], or pass --kill-at-sync N so that it kills itself at the
//      journal's Nth fsync (exactly mid-commit; always so for the first run,
//      so that every seed has a kill); wait; repeat until a run exits 0 by
//      itself. After --max-kills kills the run is left to finish.
//   3. the checks, each a violation when broken:
//      a. every workflow is terminal (results, and nothing open in the journal);
//      b. the results equal the clean run's key by key (status, node,
//         outcome, state);
//      c. the payment ledger has exactly one row per workflow whose final
//         state holds a charge (every completed one does), and no other;
//      d. the troupe journal holds exactly one effect under each row's key,
//         of that workflow, with the ledger's receipt;
//      e. the receipt and amount in each final state are the ledger's;
//      f. recovery quarantined nothing; the clean run charged nothing twice.
// Kill instants come from real time (the point of the harness); the verdict
// never depends on timing. Exit code: 0 when every seed passed, 1 on any
// violation, 2 on bad usage. A failing seed keeps its directory.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "ledger/ledger.hpp"
#include "troupe/errors.hpp"
#include "troupe/journal.hpp"

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using steady = std::chrono::steady_clock;

// -- options and tallies -------------------------------------------------------------

struct options {
  std::string troupe;         ///< the troupe binary
  uint64_t first_seed = 1;
  uint64_t seeds = 4;
  size_t workflows = 40;
  size_t max_kills = 30;      ///< per seed; then the run is left to finish
  double sync_share = 0.3;    ///< share of kills made by --kill-at-sync
  double fail_rate = 0.05;    ///< the example's model failure rate (retries)
  double hang_limit_s = 120;  ///< one run taking longer is a violation
  std::string dir;            ///< where seed directories go ("" = system temp)
  bool keep = false;          ///< keep the directories of passing seeds too
};

struct tally {
  size_t kills = 0;
  size_t mid_commit = 0; ///< kills by --kill-at-sync
  size_t restarts = 0;
  uint64_t resumed = 0;  ///< workflows recover() resumed, all restarts
  uint64_t quarantined = 0;
  size_t rows = 0;
  size_t repeats = 0;    ///< ledger rows with calls > 1
  size_t completed = 0;
  size_t failed = 0;
  double clean_s = 0;
  double crash_s = 0;
};

/// Everything wrong with one seed; empty when it passed.
using violations = std::vector<std::string>;

// -- running the child -----------------------------------------------------------------

struct run_end {
  bool killed = false; ///< died by SIGKILL (ours or its own)
  bool hung = false;   ///< we killed it for taking too long
  int code = -1;       ///< exit code, if it exited
  int signal = 0;      ///< the signal that ended it, if any
  double seconds = 0;
};

/// Runs `troupe args...` with stdout and stderr appended to `log`; SIGKILLs
/// it at `kill_after` seconds if that is >= 0 and it is still running.
run_end run_child(const options& opt, const std::vector<std::string>& args,
                  const fs::path& log, double kill_after) {
  std::vector<char*> argv;
  argv.push_back(const_cast<char*>(opt.troupe.c_str()));
  for (const auto& a : args)
    argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  auto begin = steady::now();
  pid_t pid = fork();
  if (pid < 0) {
    std::perror("fork");
    std::exit(1);
  }
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execv(opt.troupe.c_str(), argv.data());
    std::perror("execv");
    _exit(127);
  }
  auto elapsed = [&] { return std::chrono::duration<double>(steady::now() - begin).count(); };
  run_end end;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid)
      break;
    if (r < 0 && errno != EINTR) {
      std::perror("waitpid");
      std::exit(1);
    }
    double t = elapsed();
    if ((kill_after >= 0 && t >= kill_after) || t >= opt.hang_limit_s) {
      end.hung = !(kill_after >= 0 && t >= kill_after);
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      break;
    }
    std::this_thread::sleep_for(std::chrono::microseconds{200});
  }
  end.seconds = elapsed();
  if (WIFEXITED(status))
    end.code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) {
    end.signal = WTERMSIG(status);
    end.killed = end.signal == SIGKILL;
  }
  return end;
}

std::vector<std::string> ledger_args(const options& opt, uint64_t seed, const fs::path& dir) {
  return {"run", "ledger", "--journal", (dir / "journal.db").string(), "--ledger",
          (dir / "ledger.db").string(), "--workflows", std::to_string(opt.workflows), "--seed",
          std::to_string(seed), "--fail-rate", std::to_string(opt.fail_rate), "--out",
          (dir / "results.jsonl").string()};
}

std::string describe_end(const run_end& e) {
  if (e.hung)
    return "hung (killed after " + std::to_string(e.seconds) + " s)";
  if (e.signal != 0)
    return std::string{"died by signal "} + strsignal(e.signal);
  return "exited with code " + std::to_string(e.code);
}

// -- reading what the runs left ---------------------------------------------------------

std::string slurp(const fs::path& p) {
  std::ifstream in{p};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// The number after `name=` in `line`, or 0.
uint64_t field(const std::string& line, const std::string& name) {
  auto at = line.find(name + "=");
  return at == std::string::npos ? 0 : std::strtoull(line.c_str() + at + name.size() + 1,
                                                     nullptr, 10);
}

/// Sums the "recovered:" lines of a log; quarantine lines are violations.
void read_log(const fs::path& log, tally& t, violations& v) {
  std::istringstream in{slurp(log)};
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("recovered:", 0) == 0) {
      t.resumed += field(line, "resumed");
      t.quarantined += field(line, "quarantined");
    } else if (line.rfind("quarantined:", 0) == 0) {
      v.push_back("recovery " + line);
    }
  }
}

/// Results by key, or a violation naming the file.
std::map<std::string, json> read_results(const fs::path& p, violations& v) {
  std::map<std::string, json> by_key;
  std::ifstream in{p};
  if (!in) {
    v.push_back("no results file " + p.string());
    return by_key;
  }
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    if (!j.is_object() || !j.contains("key")) {
      v.push_back(p.string() + ": unreadable line: " + line.substr(0, 200));
      continue;
    }
    by_key[j["key"].get<std::string>()] = j;
  }
  return by_key;
}

std::string short_dump(const json& j) {
  auto s = j.dump();
  return s.size() > 300 ? s.substr(0, 300) + "..." : s;
}

bool terminal(const json& r) {
  auto s = r.value("status", "");
  return s == "completed" || s == "failed";
}

// -- the checks ----------------------------------------------------------------------------

/// (a) and (b): every workflow terminal; equal to the reference key by key.
void check_results(const options& opt, const std::map<std::string, json>& ref,
                   const std::map<std::string, json>& got, tally& t, violations& v) {
  if (got.size() != opt.workflows)
    v.push_back("crash run has " + std::to_string(got.size()) + " results, expected " +
                std::to_string(opt.workflows));
  for (const auto& [key, r] : got) {
    if (!terminal(r))
      v.push_back(key + " is not terminal: " + short_dump(r));
    t.completed += r.value("status", "") == "completed";
    t.failed += r.value("status", "") == "failed";
    auto i = ref.find(key);
    if (i == ref.end()) {
      v.push_back(key + " is not in the clean run's results");
      continue;
    }
    for (const char* f : {"status", "node", "outcome", "state"})
      if (r.value(f, json{}) != i->second.value(f, json{}))
        v.push_back(key + ": " + f + " differs from the clean run: " +
                    short_dump(r.value(f, json{})) + " vs clean " +
                    short_dump(i->second.value(f, json{})));
  }
}

/// (a) in the journal, (c), (d), (e). `clean` also requires calls == 1.
void check_ledger(const fs::path& dir, const std::map<std::string, json>& results, bool clean,
                  tally& t, violations& v) {
  auto where = std::string{clean ? "clean run: " : ""};
  auto ledger = troupe::examples::payment_ledger::open((dir / "ledger.db").string());
  if (!ledger) {
    v.push_back(where + troupe::describe(ledger.error()));
    return;
  }
  auto rows = (*ledger)->charges();
  if (!rows) {
    v.push_back(where + troupe::describe(rows.error()));
    return;
  }
  auto journal = troupe::open_sqlite_journal({(dir / "journal.db").string(), "full", ""});
  if (!journal) {
    v.push_back(where + troupe::describe(journal.error()));
    return;
  }
  if (auto open = (*journal)->open_workflows(); !open || !open->empty())
    v.push_back(where + "the journal still has " +
                (open ? std::to_string(open->size()) + " open workflows"
                      : troupe::describe(open.error())));

  std::map<std::string, std::vector<troupe::examples::ledger_charge>> by_workflow;
  for (const auto& row : *rows) {
    by_workflow[row.workflow].push_back(row);
    if (!clean) {
      ++t.rows;
      t.repeats += row.calls > 1;
    } else if (row.calls != 1) {
      v.push_back(where + "charge " + row.key + " was called " + std::to_string(row.calls) +
                  " times without any crash");
    }
  }
  for (const auto& [key, r] : results) {
    auto id = r.value("id", "");
    auto state = r.value("state", json::object());
    auto charged = state.is_object() && state.contains("charge");
    auto rows_of = by_workflow.count(id) ? by_workflow[id]
                                         : std::vector<troupe::examples::ledger_charge>{};
    by_workflow.erase(id);
    if (r.value("status", "") == "completed" && !charged)
      v.push_back(where + key + " completed without a charge in its state");
    if (!charged) {
      if (!rows_of.empty())
        v.push_back(where + key + " (" + id + ") has no charge in its state but " +
                    std::to_string(rows_of.size()) + " ledger rows, first " + rows_of[0].key);
      continue;
    }
    if (rows_of.size() != 1) {
      v.push_back(where + key + " (" + id + ") charged " + std::to_string(rows_of.size()) +
                  " times in the ledger, expected once");
      if (rows_of.empty())
        continue;
    }
    const auto& row = rows_of.front();
    const auto& charge = state["charge"];
    if (charge.value("receipt", "") != row.receipt || charge.value("amount", int64_t{-1}) != row.amount)
      v.push_back(where + key + ": state's charge " + short_dump(charge) + " is not the ledger's (" +
                  row.receipt + ", " + std::to_string(row.amount) + ")");
    auto effects = (*journal)->effect(row.key);
    if (!effects) {
      v.push_back(where + key + ": effect(" + row.key + "): " + troupe::describe(effects.error()));
      continue;
    }
    if (effects->size() != 1) {
      v.push_back(where + key + ": the journal has " + std::to_string(effects->size()) +
                  " effects under " + row.key + ", expected 1");
      continue;
    }
    const auto& e = effects->front();
    auto result = json::parse(e.result, nullptr, false);
    if (e.workflow_id != id || !result.is_object() || result.value("receipt", "") != row.receipt)
      v.push_back(where + key + ": journaled effect " + e.key + " of " + e.workflow_id + " = " +
                  e.result + " does not match the ledger's receipt " + row.receipt);
  }
  for (const auto& [workflow, orphans] : by_workflow)
    v.push_back(where + "ledger rows of a workflow with no result: " + workflow + " (" +
                orphans.front().key + ")");
}

// -- one seed --------------------------------------------------------------------------------

fs::path make_dir(const options& opt, uint64_t seed) {
  auto base = opt.dir.empty() ? fs::temp_directory_path() : fs::path{opt.dir};
  fs::create_directories(base);
  auto templ = (base / ("troupe-crash-" + std::to_string(seed) + "-XXXXXX")).string();
  if (mkdtemp(templ.data()) == nullptr) {
    std::perror("mkdtemp");
    std::exit(1);
  }
  return templ;
}

/// The journal fsyncs the clean run reported ("journal syncs: S"), at least 1.
uint64_t syncs_of(const fs::path& log) {
  std::istringstream in{slurp(log)};
  uint64_t s = 1;
  for (std::string line; std::getline(in, line);)
    if (line.rfind("journal syncs: ", 0) == 0)
      s = std::max<uint64_t>(1, std::strtoull(line.c_str() + 15, nullptr, 10));
  return s;
}

/// Runs the example cleanly in `dir`: the run's end, and a violation if it failed.
run_end clean_run(const options& opt, uint64_t seed, const fs::path& dir, violations& v) {
  fs::create_directories(dir);
  auto e = run_child(opt, ledger_args(opt, seed, dir), dir / "log", -1);
  if (e.code != 0)
    v.push_back("a clean run " + describe_end(e) + " (see " + (dir / "log").string() + ")");
  return e;
}

/// Two clean runs must end every order alike (workflow ids aside): the
/// example is deterministic, or no crash run could be compared with one.
void check_clean_runs_agree(const fs::path& a, const fs::path& b, violations& v) {
  auto ra = read_results(a / "results.jsonl", v);
  auto rb = read_results(b / "results.jsonl", v);
  for (auto& [key, r] : ra) {
    auto i = rb.find(key);
    if (i == rb.end()) {
      v.push_back("clean runs: " + key + " is missing from the second");
      continue;
    }
    auto x = r, y = i->second;
    x.erase("id");
    y.erase("id");
    if (x != y)
      v.push_back("clean runs differ (the example is not deterministic): " + short_dump(x) +
                  " vs " + short_dump(y));
  }
  if (ra.size() != rb.size())
    v.push_back("clean runs have " + std::to_string(ra.size()) + " and " +
                std::to_string(rb.size()) + " results");
}

violations run_seed(const options& opt, uint64_t seed, const fs::path& root, tally& t) {
  violations v;
  auto clean = root / "clean";
  auto crash = root / "crash";
  fs::create_directories(crash);
  auto c1 = clean_run(opt, seed, clean, v);
  auto c2 = clean_run(opt, seed, root / "clean2", v);
  if (!v.empty())
    return v;
  check_clean_runs_agree(clean, root / "clean2", v);
  // The faster clean run bounds the kill instants (the slower one was
  // probably slowed down by a busy machine).
  t.clean_s = std::min(c1.seconds, c2.seconds);
  auto clean_syncs = syncs_of(clean / "log");

  std::mt19937_64 rng{seed * 0x9e3779b97f4a7c15ull + 1};
  std::uniform_real_distribution<double> instant{0, 1.2 * t.clean_s};
  std::bernoulli_distribution by_sync{opt.sync_share};
  std::uniform_int_distribution<uint64_t> sync_n{1, clean_syncs};
  // The first run always dies mid-commit in the first half of its work, so
  // that no seed goes without a kill (a timed one may come too late).
  std::uniform_int_distribution<uint64_t> first_sync_n{1, std::max<uint64_t>(1, clean_syncs / 2)};
  auto begin = steady::now();
  for (size_t run = 0;; ++run) {
    auto args = ledger_args(opt, seed, crash);
    double kill_after = -1;
    bool sync_kill = false;
    if (t.kills < opt.max_kills) {
      if (run == 0 || by_sync(rng)) {
        sync_kill = true;
        args.push_back("--kill-at-sync");
        args.push_back(std::to_string(run == 0 ? first_sync_n(rng) : sync_n(rng)));
      } else {
        kill_after = instant(rng);
      }
    }
    auto e = run_child(opt, args, crash / "log", kill_after);
    if (run > 0)
      ++t.restarts;
    if (e.code == 0)
      break;
    if (e.killed && !e.hung) {
      ++t.kills;
      t.mid_commit += sync_kill;
      continue;
    }
    v.push_back("crash run " + std::to_string(run) + " " + describe_end(e) + " (see " +
                (crash / "log").string() + ")");
    return v;
  }
  t.crash_s = std::chrono::duration<double>(steady::now() - begin).count();

  read_log(crash / "log", t, v);
  auto ref = read_results(clean / "results.jsonl", v);
  auto got = read_results(crash / "results.jsonl", v);
  for (const auto& [key, r] : ref)
    if (!terminal(r))
      v.push_back("clean run: " + key + " is not terminal: " + short_dump(r));
  check_results(opt, ref, got, t, v);
  tally ignored;
  check_ledger(clean, ref, true, ignored, v);
  check_ledger(crash, got, false, t, v);
  return v;
}

} // namespace

int main(int argc, char** argv) {
  options opt;
  CLI::App app{"Crash tests: SIGKILLs `troupe run ledger` at random instants, restarts it "
               "until it finishes, and checks the outcome against a clean run.",
               "troupe_crash_driver"};
  app.add_option("--troupe", opt.troupe, "The troupe binary")->required()->check(CLI::ExistingFile);
  app.add_option("--first-seed", opt.first_seed, "First seed")->capture_default_str();
  app.add_option("--seeds", opt.seeds, "How many seeds, from --first-seed on")
      ->check(CLI::Range(uint64_t{1}, uint64_t{100000}))
      ->capture_default_str();
  app.add_option("--workflows", opt.workflows, "Workflows per run")
      ->check(CLI::Range(size_t{1}, size_t{100000}))
      ->capture_default_str();
  app.add_option("--max-kills", opt.max_kills, "Kills per seed at most")->capture_default_str();
  app.add_option("--sync-share", opt.sync_share, "Share of kills made mid-commit (--kill-at-sync)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--fail-rate", opt.fail_rate, "Share of model calls failing (then retried)")
      ->check(CLI::Range(0.0, 0.5))
      ->capture_default_str();
  app.add_option("--hang-limit", opt.hang_limit_s, "Seconds one run may take")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str();
  app.add_option("--dir", opt.dir, "Where the seeds' directories go (default: system temp)");
  app.add_flag("--keep", opt.keep, "Keep the directories of passing seeds too");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  opt.troupe = fs::absolute(opt.troupe).string();

  tally total;
  size_t failed = 0;
  auto begin = steady::now();
  for (uint64_t seed = opt.first_seed; seed < opt.first_seed + opt.seeds; ++seed) {
    auto root = make_dir(opt, seed);
    tally t;
    auto v = run_seed(opt, seed, root, t);
    std::printf("seed %llu: %zu workflows (%zu completed, %zu failed), kills %zu (mid-commit %zu), "
                "restarts %zu, recovered %llu (quarantined %llu), ledger rows %zu (calls>1: "
                "%zu), clean %.2f s, crash %.2f s: %s\n",
                static_cast<unsigned long long>(seed), opt.workflows, t.completed, t.failed,
                t.kills, t.mid_commit, t.restarts, static_cast<unsigned long long>(t.resumed),
                static_cast<unsigned long long>(t.quarantined), t.rows, t.repeats, t.clean_s,
                t.crash_s, v.empty() ? "ok" : "FAILED");
    for (const auto& what : v)
      std::printf("  violation: %s\n", what.c_str());
    if (!v.empty()) {
      ++failed;
      std::printf("  kept %s\n", root.c_str());
    } else if (!opt.keep) {
      std::error_code ec;
      fs::remove_all(root, ec);
    }
    std::fflush(stdout);
    total.kills += t.kills;
    total.mid_commit += t.mid_commit;
    total.restarts += t.restarts;
    total.resumed += t.resumed;
    total.quarantined += t.quarantined;
    total.rows += t.rows;
    total.repeats += t.repeats;
  }
  std::printf("%llu seeds x %zu workflows: %zu failed; kills %zu (mid-commit %zu), restarts %zu, "
              "recovered %llu, ledger rows %zu (calls>1: %zu), %.1f s\n",
              static_cast<unsigned long long>(opt.seeds), opt.workflows, failed, total.kills,
              total.mid_commit, total.restarts, static_cast<unsigned long long>(total.resumed),
              total.rows, total.repeats,
              std::chrono::duration<double>(steady::now() - begin).count());
  return failed == 0 ? 0 : 1;
}
