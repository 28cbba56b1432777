// A fault-injecting SQLite VFS: the storage seam of the SQLite journal, for
// tests of what a deployment does when its disk fails. It wraps the
// platform's default VFS and forwards every call, except that one armed
// fault makes a chosen file operation fail (or an open come back read-only)
// after a given number of successful calls.
//
//   troupe::fault_vfs::install();
//   auto store = troupe::open_sqlite_journal({path, "full", troupe::fault_vfs::name});
//   troupe::fault_vfs::arm({fault_vfs::op::sync, fault_vfs::file::wal});
//   store->append(batch);   // fails: journal_write_failed "...: commit: disk I/O error"
//   troupe::fault_vfs::disarm();
//
// The control is process-global and thread-safe: any thread may arm, disarm
// and read counters while connections on any thread use the VFS. A fault
// applies to every connection opened through the VFS; tests that run in
// parallel in one process must not arm faults concurrently.
//
// What a fault does: the call does nothing and returns the fault's code
// (a failed read also zeroes the buffer), or, with `kill`, the process dies
// by SIGKILL inside the call. A write is not torn: data already written
// stays in the OS cache, as after a real process crash (not a power loss).
#pragma once

#include <cstdint>

#include <caf/error.hpp>

namespace troupe::fault_vfs {

/// The name the VFS is registered under: pass it as
/// sqlite_journal_options::vfs.
constexpr const char* name = "troupe-fault";

/// Registers the VFS over the default one (the first call; later calls do
/// nothing). Thread-safe. Fails only if SQLite has no default VFS or refuses
/// the registration.
caf::error install();

/// The file operation a fault hits. Numbers are stable.
enum class op : uint8_t {
  /// xOpen: the open fails with the fault's code (default SQLITE_CANTOPEN).
  open = 1,
  /// xOpen: the file opens read-only, as SQLite's unix VFS does when the
  /// process may not write it (it retries O_RDONLY and reports
  /// SQLITE_OPEN_READONLY). The code is unused. Counted as `open`.
  open_read_only = 2,
  /// xRead (default SQLITE_IOERR_READ).
  read = 3,
  /// xWrite (default SQLITE_IOERR_WRITE; SQLITE_FULL for a full disk).
  write = 4,
  /// xSync, i.e. fsync (default SQLITE_IOERR_FSYNC).
  sync = 5,
  /// xTruncate (default SQLITE_IOERR_TRUNCATE).
  truncate = 6,
};

/// Which files a fault hits, by the role SQLite opens them in.
enum class file : uint8_t {
  any = 0,      ///< every file, including temporary ones
  database = 1, ///< main database files
  wal = 2,      ///< write-ahead logs (where a WAL-mode commit writes and syncs)
  journal = 3,  ///< rollback journals
};

/// One fault to inject.
struct fault {
  op what = op::write;
  file where = file::any;
  /// Calls of `what` on `where` that succeed after arming, before the fault.
  uint64_t after = 0;
  /// The SQLite result code returned, e.g. SQLITE_IOERR_WRITE or SQLITE_FULL;
  /// 0 = the operation's default (see `op`).
  int code = 0;
  /// false: fail once, then let calls through again (a transient error);
  /// true: fail every call from then on until disarm() (a dead disk).
  bool sticky = false;
  /// true: instead of failing, the process SIGKILLs itself inside the call,
  /// before forwarding it (crash tests: op::sync kills exactly mid-commit,
  /// after the commit's writes and before its fsync returns).
  bool kill = false;
};

/// Replaces any armed fault with `f` and resets the counters.
void arm(const fault& f);

/// Removes the armed fault (if any) and resets the counters.
void disarm();

/// Calls of `what` on files of role `where` since the last arm() or
/// disarm(), counting failed ones. op::open_read_only counts opens.
uint64_t calls(op what, file where = file::any);

/// How many calls the armed fault has failed since it was armed.
uint64_t fired();

} // namespace troupe::fault_vfs
