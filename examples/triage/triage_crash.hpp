// Shows the triage pipeline surviving the death of its process: the runtime
// runs on a SQLite journal in a child process, which is SIGKILLed part-way;
// a new runtime opens the same journal, recovers, and finishes every ticket.
//
// run_triage_crash() forks once. The child builds the runtime, starts the
// tickets and settles them as run_triage() does. Its journal store is
// wrapped (a forwarding_journal) to write one byte to a pipe for each
// workflow end it has just committed; the parent reads the pipe and sends
// SIGKILL once `kill_after` workflows are durably finished, wherever the
// other workflows are at that instant. The parent then reads the journal as
// the kill left it, runs a second runtime on it (recover(), start the same
// tickets by idempotency key, settle), and checks from the journal that no
// completed step ran again. Called by `troupe demo` and by tests; blocking,
// from a plain thread of a process with no other thread running (fork).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>

#include <caf/expected.hpp>

#include "triage/triage.hpp"
#include "troupe/runtime.hpp"

namespace troupe::examples {

/// Knobs of a crash run; every field has a usable default.
struct crash_options {
  triage_options triage;
  /// The child is killed once its journal committed the end of this many
  /// workflows; 0 means a third of them. At most triage.workflows.
  size_t kill_after = 0;
  /// Where the journal goes ("journal.db", which must not exist yet); ""
  /// makes a fresh temporary directory and removes it at the end. A given
  /// directory is kept.
  std::string dir;
};

/// What a crash run did.
struct crash_summary {
  std::string journal_path;
  int child_pid = 0;
  bool killed = false;        ///< the child died of our SIGKILL (not on its own)
  size_t reported = 0;        ///< workflow ends the child reported committed before the kill
  std::chrono::nanoseconds killed_at{0}; ///< since the child was forked
  // -- the journal as the kill left it --
  size_t journaled = 0;       ///< tickets whose workflow the journal had
  size_t finished_before = 0; ///< of those, completed or failed
  size_t open_before = 0;     ///< not finished (what recover() should rebuild)
  size_t mid_attempt = 0;     ///< open with an agent attempt in flight
  // -- the second runtime --
  recovery_report recovery;
  size_t started_again = 0;   ///< tickets the journal did not have, started anew
  /// Both runs: the first one's parks and approvals (reported on the pipe)
  /// plus the second one's, everything else counted from the journal.
  triage_summary total;
  /// The sample's last record written before the kill (0: none).
  uint64_t sample_cut = 0;

  /// Killed for real, nothing quarantined, every workflow settled, no
  /// completed step ran again, and every interrupted attempt accounted for.
  bool ok() const {
    return killed && recovery.quarantined.empty() && total.ok()
           && total.repeated_steps == 0 && total.interrupted == mid_attempt
           && finished_before >= reported;
  }
};

/// Runs `opt.triage.workflows` tickets, killing the runtime's process
/// part-way and recovering in this one. An error only when the run could
/// not be set up (temporary directory, pipe, fork, journal, runtime) or the
/// child died before the kill; per-workflow trouble lands in the summary.
caf::expected<crash_summary> run_triage_crash(const crash_options& opt);

/// Prints `s` for people: the kill and the recovery, the tallies, then the
/// sample's timeline with the kill marked.
void print_crash_summary(const crash_options& opt, const crash_summary& s, std::ostream& out);

/// run_triage_crash() then print_crash_summary(); 0 when s.ok().
int run_triage_crash_demo(const crash_options& opt, std::ostream& out);

} // namespace troupe::examples
