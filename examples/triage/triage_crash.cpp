// The crash demo driver (see triage_crash.hpp): fork a child that runs the
// runtime on a SQLite journal, SIGKILL it once enough workflows finished,
// then recover the journal in a second runtime here and check what it holds.
// Runs on the caller's thread and blocks. POSIX only.
#include "triage/triage_crash.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <caf/sec.hpp>

#include "troupe/errors.hpp"
#include "troupe/journal.hpp"
#include "troupe/seams.hpp"

namespace troupe::examples {

namespace {

namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

/// An operating-system call failed (troupe's errc has no code for it).
caf::error os_error(const std::string& what) {
  return caf::make_error(caf::sec::runtime_error, what + ": " + std::strerror(errno));
}

// -- the progress pipe, child to parent: one byte per event ------------------

constexpr char finished_byte = 'f'; ///< a workflow's end is durable in the journal
constexpr char approved_byte = 'a'; ///< a park at review and its approval, journaled

/// The directory the journal lives in; removes it at the end if it made it.
class journal_dir {
public:
  /// Uses `dir`, or makes a fresh temporary directory when it is "".
  static caf::expected<journal_dir> open(const std::string& dir) {
    journal_dir d;
    if (!dir.empty()) {
      d.path_ = dir;
      return d;
    }
    std::error_code ec;
    auto tmp = fs::temp_directory_path(ec);
    if (ec)
      return caf::make_error(caf::sec::runtime_error, "no temporary directory: " + ec.message());
    std::string templ = (tmp / "troupe-demo-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr)
      return os_error("cannot make a directory like " + templ);
    d.path_ = templ;
    d.owned_ = true;
    return d;
  }
  journal_dir(journal_dir&& o) noexcept : path_(std::move(o.path_)), owned_(o.owned_) {
    o.owned_ = false;
  }
  journal_dir& operator=(journal_dir&&) = delete;
  ~journal_dir() {
    std::error_code ec;
    if (owned_)
      fs::remove_all(path_, ec);
  }
  std::string file(const char* name) const { return (fs::path{path_} / name).string(); }

private:
  journal_dir() = default;
  std::string path_;
  bool owned_ = false;
};

// -- the child: the first runtime ----------------------------------------------

bool write_byte(int fd, char c) {
  for (;;) {
    auto n = ::write(fd, &c, 1);
    if (n == 1)
      return true;
    if (n < 0 && errno != EINTR)
      return false;
  }
}

/// The child's journal: reports on the pipe each workflow whose end (a
/// completed or failed row) the store has just made durable. Called by the
/// journal writer's thread only.
class progress_journal : public forwarding_journal {
public:
  progress_journal(std::shared_ptr<journal_store> target, int fd)
    : forwarding_journal(std::move(target)), fd_(fd) {}
  caf::error append(std::vector<journal_write>& batch) override {
    auto err = forwarding_journal::append(batch);
    if (!err)
      for (const auto& w : batch)
        for (const auto& row : w.workflow)
          if (row.finished())
            write_byte(fd_, finished_byte);
    return err;
  }

private:
  int fd_;
};

/// Runs the tickets on a runtime over the journal at `path`, reporting on
/// `fd`. Returns only if the runtime could not be set up (an exit code);
/// otherwise settles the tickets until killed.
int child_main(const crash_options& opt, const std::string& path, int fd) {
  sqlite_journal_options jo;
  jo.path = path;
  auto store = open_sqlite_journal(jo);
  if (!store)
    return 2;
  auto cfg = triage_config(opt.triage);
  cfg.journal = std::make_shared<progress_journal>(std::move(*store), fd);
  runtime rt{std::move(cfg)};
  if (register_triage(rt))
    return 3;
  triage_summary s;
  auto tickets = start_tickets(rt, opt.triage.workflows, s);
  // Finished workflows are the journal's to report (in commit order); a park
  // counts once its approval is journaled: if the kill comes first, the
  // second run finds the workflow parked and approves it.
  settle_tickets(rt, tickets, opt.triage.await_timeout, s, [fd](settle_event e) {
    if (e == settle_event::approved)
      write_byte(fd, approved_byte);
  });
  // Settled before the kill point (it is past the last ticket, or some
  // failed to start): say so with EOF, and wait for the kill all the same.
  rt.shutdown();
  ::close(fd);
  for (;;)
    ::pause();
}

[[noreturn]] void run_child(const crash_options& opt, const std::string& path, int fd) {
  int code = 4;
  try {
    code = child_main(opt, path, fd);
  } catch (const std::exception&) {
    code = 5; // invalid config: the parent sees the pipe close early
  }
  ::_exit(code);
}

// -- the parent: kill, then look at the journal the kill left -----------------

std::string describe_status(int status) {
  if (WIFSIGNALED(status))
    return std::string{"killed by signal "} + std::to_string(WTERMSIG(status));
  if (WIFEXITED(status))
    return "exited with " + std::to_string(WEXITSTATUS(status));
  return "status " + std::to_string(status);
}

/// Reads progress from `fd` until `kill_after` workflows finished, the pipe
/// closes or `quiet` passes without a byte; counts into `s`.
void watch(int fd, size_t kill_after, std::chrono::milliseconds quiet, crash_summary& s) {
  char buf[256];
  while (s.reported < kill_after) {
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(quiet.count()));
    if (ready < 0 && errno == EINTR)
      continue;
    if (ready <= 0)
      return;
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return;
    for (ssize_t i = 0; i < n; ++i) {
      if (buf[i] == finished_byte) {
        ++s.reported;
      } else if (buf[i] == approved_byte) {
        ++s.total.parked;
        ++s.total.approved;
      }
    }
  }
}

/// Forks the child, kills it once it reported `kill_after` workflows
/// finished, and reaps it.
caf::error run_and_kill(const crash_options& opt, const std::string& path, size_t kill_after,
                        crash_summary& s) {
  int fds[2];
  if (::pipe(fds) != 0)
    return os_error("pipe");
  auto t0 = steady::now();
  pid_t pid = ::fork();
  if (pid < 0) {
    auto err = os_error("fork");
    ::close(fds[0]);
    ::close(fds[1]);
    return err;
  }
  if (pid == 0) {
    ::close(fds[0]);
    run_child(opt, path, fds[1]);
  }
  ::close(fds[1]);
  s.child_pid = static_cast<int>(pid);
  watch(fds[0], kill_after, opt.triage.await_timeout, s);
  // The kill is what the demo is about: no warning, no shutdown, no flush.
  ::kill(pid, SIGKILL);
  s.killed_at = steady::now() - t0;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::close(fds[0]);
  s.killed = s.reported >= kill_after && WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  if (!s.killed)
    return caf::make_error(caf::sec::runtime_error,
                      "the runtime's process " + std::to_string(pid) + " stopped after "
                        + std::to_string(s.reported) + " of " + std::to_string(kill_after)
                        + " finished workflows (" + describe_status(status) + ")");
  return {};
}

/// The tickets' workflows as the kill left them.
struct before_kill {
  std::set<std::string> journaled;      ///< every workflow the journal had
  std::map<std::string, uint64_t> open; ///< not finished: id -> events journaled
};

/// Reads the journal the kill left, counting into `s`.
caf::expected<before_kill> inspect_journal(const journal_store& store, size_t tickets,
                                           crash_summary& s) {
  before_kill b;
  for (size_t i = 0; i < tickets; ++i) {
    auto id = store.find_key("ticket-" + std::to_string(i));
    if (!id)
      return std::move(id.error());
    if (id->empty())
      continue; // started, but the kill came before its first event was durable
    b.journaled.insert(*id);
    auto row = store.workflow(*id);
    if (!row)
      return std::move(row.error());
    if (row->finished()) {
      ++s.finished_before;
      continue;
    }
    auto events = store.read(*id);
    if (!events)
      return std::move(events.error());
    if (ends_mid_attempt(*events))
      ++s.mid_attempt;
    b.open.emplace(*id, events->size());
  }
  s.journaled = b.journaled.size();
  s.open_before = b.open.size();
  return b;
}

/// The second runtime: recovers the journal in `store`, starts the tickets
/// again by key, settles and tallies them.
caf::error recover_and_finish(const crash_options& opt, std::shared_ptr<journal_store> store,
                              const before_kill& before, crash_summary& s) {
  auto cfg = triage_config(opt.triage);
  cfg.journal = std::move(store);
  // A restarted process draws fresh randomness; a reseeded source would
  // repeat the first run's workflow ids for any ticket it starts anew.
  cfg.random = seeded_random(opt.triage.seed + 1);
  std::unique_ptr<runtime> rt;
  try {
    rt = std::make_unique<runtime>(std::move(cfg));
  } catch (const std::invalid_argument& e) {
    return make_error(errc::invalid_config, e.what());
  }
  if (auto err = register_triage(*rt))
    return err;
  auto rep = rt->recover();
  if (!rep)
    return std::move(rep.error());
  s.recovery = std::move(*rep);
  auto tickets = start_tickets(*rt, opt.triage.workflows, s.total);
  for (const auto& t : tickets)
    if (before.journaled.count(t.id) == 0)
      ++s.started_again;
  settle_tickets(*rt, tickets, opt.triage.await_timeout, s.total);
  tally_tickets(*rt, tickets, s.total);
  rt->shutdown();
  return {};
}

} // namespace

caf::expected<crash_summary> run_triage_crash(const crash_options& opt) {
  size_t n = opt.triage.workflows;
  size_t kill_after = opt.kill_after > 0 ? opt.kill_after : std::max<size_t>(1, n / 3);
  kill_after = std::min(kill_after, n);
  auto dir = journal_dir::open(opt.dir);
  if (!dir)
    return std::move(dir.error());
  crash_summary s;
  s.journal_path = dir->file("journal.db");
  auto t0 = steady::now();
  if (auto err = run_and_kill(opt, s.journal_path, kill_after, s))
    return err;

  sqlite_journal_options jo;
  jo.path = s.journal_path;
  auto store = open_sqlite_journal(jo);
  if (!store)
    return std::move(store.error());
  auto before = inspect_journal(**store, n, s);
  if (!before)
    return std::move(before.error());
  if (auto err = recover_and_finish(opt, std::move(*store), *before, s))
    return err;
  s.total.wall = steady::now() - t0;
  if (auto i = before->open.find(s.total.sample_id); i != before->open.end())
    s.sample_cut = i->second;
  return s;
}

void print_crash_summary(const crash_options& opt, const crash_summary& s, std::ostream& out) {
  const auto n = opt.triage.workflows;
  const auto& t = s.total;
  out << "troupe demo: " << n << " triage tickets on a SQLite journal, "
      << (opt.dir.empty() ? "in a fresh temporary directory" : "in " + opt.dir) << "\n  "
      << s.journal_path << "\n\n";
  char ms[32];
  std::snprintf(ms, sizeof ms, "%.0f ms",
                std::chrono::duration<double, std::milli>(s.killed_at).count());
  out << "run 1: process " << s.child_pid << " runs the runtime and starts the tickets;\n"
      << "       SIGKILL once its journal has committed " << s.reported
      << " finished workflows (" << ms << " in)\n";
  summary_row(out, "finished before the kill", s.finished_before, "(read back from the journal)");
  summary_row(out, "open at the kill", s.open_before);
  summary_row(out, "  an agent attempt in flight", s.mid_attempt);
  if (s.journaled < n)
    summary_row(out, "tickets not in the journal", n - s.journaled,
         "(start() not yet called, or not returned, at the kill)");
  out << "run 2: process " << ::getpid() << " opens the same journal and calls recover()\n";
  summary_row(out, "resumed", s.recovery.resumed, "(pending steps re-issued, timers re-armed)");
  summary_row(out, "parked at review", s.recovery.parked, "(approved below, like the rest)");
  summary_row(out, "quarantined", s.recovery.quarantined.size());
  for (const auto& q : s.recovery.quarantined)
    out << "    " << q << '\n';
  summary_row(out, "tickets found by key", s.journaled,
       "(start() with key \"ticket-<i>\" returned the journaled workflow)");
  if (s.started_again > 0)
    summary_row(out, "tickets started now", s.started_again, "(the rest: not in the journal)");
  summary_row(out, "finished", std::to_string(t.completed + t.failed) + "/" + std::to_string(n));
  summary_row(out, "attempts cut off by the kill", t.interrupted,
       "(journaled as crashed \"interrupted\", then retried)");
  summary_row(out, "completed steps that ran again", t.repeated_steps,
       "(no (node, visit) completed twice)");
  out << '\n';

  auto tallies = t;
  tallies.sample_id.clear();
  print_triage_summary(opt.triage, tallies, out);
  if (!t.sample_id.empty()) {
    out << "\ntimeline of " << t.sample_id << ": " << t.sample_ticket << '\n';
    print_timeline(t.sample_history, out, s.sample_cut,
                   "SIGKILL: process " + std::to_string(s.child_pid) + " dies; process "
                     + std::to_string(::getpid()) + " recovers the workflow from the journal");
  }
}

int run_triage_crash_demo(const crash_options& opt, std::ostream& out) {
  out.flush(); // the child must not inherit unwritten output
  auto s = run_triage_crash(opt);
  if (!s) {
    out << "troupe demo: " << describe(s.error()) << '\n';
    return 1;
  }
  print_crash_summary(opt, *s, out);
  return s->ok() ? 0 : 1;
}

} // namespace troupe::examples
