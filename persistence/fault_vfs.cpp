// The fault-injecting SQLite VFS (troupe/fault_vfs.hpp). A wrapped file is
// our sqlite3_file header followed by the real VFS's file; every method
// forwards to the real one, and the five that can fail on purpose (open,
// read, write, sync, truncate) first ask the control whether to fail (or,
// for a kill fault, to end the process there).
// Tests and users' storage-fault suites call it; SQLite calls the methods
// on whatever thread uses a connection, so the control takes a mutex.
#include "troupe/fault_vfs.hpp"

#include <array>
#include <csignal>
#include <cstring>
#include <mutex>

#include <sqlite3.h>

#include "troupe/errors.hpp"

namespace troupe::fault_vfs {

namespace {

// -- the control ---------------------------------------------------------------

constexpr size_t n_ops = 7;   // indexed by op's value; 0 unused
constexpr size_t n_files = 4; // indexed by file's value

struct control {
  std::mutex mtx;
  bool armed = false;
  fault armed_fault;
  uint64_t seen = 0;  ///< calls matching the armed fault
  uint64_t fired = 0;
  std::array<std::array<uint64_t, n_files>, n_ops> calls{};
};

control& ctl() {
  static control instance;
  return instance;
}

int default_code(op what) {
  switch (what) {
    case op::open: return SQLITE_CANTOPEN;
    case op::open_read_only: return SQLITE_READONLY; // only "fire"
    case op::read: return SQLITE_IOERR_READ;
    case op::write: return SQLITE_IOERR_WRITE;
    case op::sync: return SQLITE_IOERR_FSYNC;
    case op::truncate: return SQLITE_IOERR_TRUNCATE;
  }
  return SQLITE_IOERR;
}

/// Counts a call of `what` on a file of role `where`; returns the code to
/// fail it with, or SQLITE_OK to let it through.
int check(op what, file where) {
  auto& c = ctl();
  std::lock_guard<std::mutex> guard{c.mtx};
  if (what != op::open_read_only) { // x_open asks for both; count it once
    ++c.calls[static_cast<size_t>(what)][static_cast<size_t>(where)];
    if (where != file::any)
      ++c.calls[static_cast<size_t>(what)][static_cast<size_t>(file::any)];
  }
  const auto& f = c.armed_fault;
  if (!c.armed || f.what != what || (f.where != file::any && f.where != where))
    return SQLITE_OK;
  if (c.seen++ < f.after || (!f.sticky && c.fired > 0))
    return SQLITE_OK;
  ++c.fired;
  if (f.kill)
    std::raise(SIGKILL); // does not return
  return f.code != 0 ? f.code : default_code(what);
}

/// Forgets the armed fault and every count. The caller holds the mutex.
void reset(control& c) {
  c.armed = false;
  c.armed_fault = {};
  c.seen = 0;
  c.fired = 0;
  c.calls = {};
}

// -- the wrapped file -----------------------------------------------------------

struct wrapped_file {
  sqlite3_file base; // must come first: SQLite sees this
  sqlite3_file* real;
  file role;
};

sqlite3_file* real(sqlite3_file* f) {
  return reinterpret_cast<wrapped_file*>(f)->real;
}

file role(sqlite3_file* f) {
  return reinterpret_cast<wrapped_file*>(f)->role;
}

int x_close(sqlite3_file* f) {
  return real(f)->pMethods->xClose(real(f));
}

int x_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 offset) {
  if (int rc = check(op::read, role(f)); rc != SQLITE_OK) {
    std::memset(buf, 0, static_cast<size_t>(n));
    return rc;
  }
  return real(f)->pMethods->xRead(real(f), buf, n, offset);
}

int x_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 offset) {
  if (int rc = check(op::write, role(f)); rc != SQLITE_OK)
    return rc;
  return real(f)->pMethods->xWrite(real(f), buf, n, offset);
}

int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
  if (int rc = check(op::truncate, role(f)); rc != SQLITE_OK)
    return rc;
  return real(f)->pMethods->xTruncate(real(f), size);
}

int x_sync(sqlite3_file* f, int flags) {
  if (int rc = check(op::sync, role(f)); rc != SQLITE_OK)
    return rc;
  return real(f)->pMethods->xSync(real(f), flags);
}

int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
  return real(f)->pMethods->xFileSize(real(f), size);
}

int x_lock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xLock(real(f), level);
}

int x_unlock(sqlite3_file* f, int level) {
  return real(f)->pMethods->xUnlock(real(f), level);
}

int x_check_reserved_lock(sqlite3_file* f, int* out) {
  return real(f)->pMethods->xCheckReservedLock(real(f), out);
}

int x_file_control(sqlite3_file* f, int opcode, void* arg) {
  return real(f)->pMethods->xFileControl(real(f), opcode, arg);
}

int x_sector_size(sqlite3_file* f) {
  return real(f)->pMethods->xSectorSize(real(f));
}

int x_device_characteristics(sqlite3_file* f) {
  return real(f)->pMethods->xDeviceCharacteristics(real(f));
}

int x_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
  return real(f)->pMethods->xShmMap(real(f), region, size, extend, out);
}

int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
  return real(f)->pMethods->xShmLock(real(f), offset, n, flags);
}

void x_shm_barrier(sqlite3_file* f) {
  real(f)->pMethods->xShmBarrier(real(f));
}

int x_shm_unmap(sqlite3_file* f, int delete_flag) {
  return real(f)->pMethods->xShmUnmap(real(f), delete_flag);
}

int x_fetch(sqlite3_file* f, sqlite3_int64 offset, int n, void** out) {
  return real(f)->pMethods->xFetch(real(f), offset, n, out);
}

int x_unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
  return real(f)->pMethods->xUnfetch(real(f), offset, p);
}

/// Our methods for a real file of iVersion v (1..3): the same version, so
/// SQLite never calls a method the real file lacks.
const sqlite3_io_methods* methods_for(int version) {
  static const auto table = [] {
    std::array<sqlite3_io_methods, 4> t{};
    for (int v = 1; v <= 3; ++v) {
      auto& m = t[static_cast<size_t>(v)];
      m.iVersion = v;
      m.xClose = x_close;
      m.xRead = x_read;
      m.xWrite = x_write;
      m.xTruncate = x_truncate;
      m.xSync = x_sync;
      m.xFileSize = x_file_size;
      m.xLock = x_lock;
      m.xUnlock = x_unlock;
      m.xCheckReservedLock = x_check_reserved_lock;
      m.xFileControl = x_file_control;
      m.xSectorSize = x_sector_size;
      m.xDeviceCharacteristics = x_device_characteristics;
      if (v >= 2) {
        m.xShmMap = x_shm_map;
        m.xShmLock = x_shm_lock;
        m.xShmBarrier = x_shm_barrier;
        m.xShmUnmap = x_shm_unmap;
      }
      if (v >= 3) {
        m.xFetch = x_fetch;
        m.xUnfetch = x_unfetch;
      }
    }
    return t;
  }();
  return &table[static_cast<size_t>(version < 1 ? 1 : version > 3 ? 3 : version)];
}

// -- the VFS ----------------------------------------------------------------

sqlite3_vfs* real_vfs(sqlite3_vfs* vfs) {
  return static_cast<sqlite3_vfs*>(vfs->pAppData);
}

file role_of(int flags) {
  if (flags & SQLITE_OPEN_MAIN_DB)
    return file::database;
  if (flags & SQLITE_OPEN_WAL)
    return file::wal;
  if (flags & SQLITE_OPEN_MAIN_JOURNAL)
    return file::journal;
  return file::any;
}

int x_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  auto* w = reinterpret_cast<wrapped_file*>(f);
  w->base.pMethods = nullptr;
  w->real = reinterpret_cast<sqlite3_file*>(w + 1);
  w->role = role_of(flags);
  if (int rc = check(op::open, w->role); rc != SQLITE_OK)
    return rc;
  if (check(op::open_read_only, w->role) != SQLITE_OK)
    flags = (flags & ~(SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) | SQLITE_OPEN_READONLY;
  int rc = real_vfs(vfs)->xOpen(real_vfs(vfs), name, w->real, flags, out_flags);
  // If the real file has methods, SQLite calls our xClose even after a
  // failed open, so it must find them.
  if (w->real->pMethods)
    w->base.pMethods = methods_for(w->real->pMethods->iVersion);
  return rc;
}

int x_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  return real_vfs(vfs)->xDelete(real_vfs(vfs), name, sync_dir);
}

int x_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
  return real_vfs(vfs)->xAccess(real_vfs(vfs), name, flags, out);
}

int x_full_pathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
  return real_vfs(vfs)->xFullPathname(real_vfs(vfs), name, n, out);
}

void* x_dl_open(sqlite3_vfs* vfs, const char* name) {
  return real_vfs(vfs)->xDlOpen(real_vfs(vfs), name);
}

void x_dl_error(sqlite3_vfs* vfs, int n, char* out) {
  real_vfs(vfs)->xDlError(real_vfs(vfs), n, out);
}

void (*x_dl_sym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
  return real_vfs(vfs)->xDlSym(real_vfs(vfs), handle, symbol);
}

void x_dl_close(sqlite3_vfs* vfs, void* handle) {
  real_vfs(vfs)->xDlClose(real_vfs(vfs), handle);
}

int x_randomness(sqlite3_vfs* vfs, int n, char* out) {
  return real_vfs(vfs)->xRandomness(real_vfs(vfs), n, out);
}

int x_sleep(sqlite3_vfs* vfs, int us) {
  return real_vfs(vfs)->xSleep(real_vfs(vfs), us);
}

int x_current_time(sqlite3_vfs* vfs, double* out) {
  return real_vfs(vfs)->xCurrentTime(real_vfs(vfs), out);
}

int x_get_last_error(sqlite3_vfs* vfs, int n, char* out) {
  return real_vfs(vfs)->xGetLastError(real_vfs(vfs), n, out);
}

int x_current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* out) {
  return real_vfs(vfs)->xCurrentTimeInt64(real_vfs(vfs), out);
}

int x_set_system_call(sqlite3_vfs* vfs, const char* name, sqlite3_syscall_ptr p) {
  return real_vfs(vfs)->xSetSystemCall(real_vfs(vfs), name, p);
}

sqlite3_syscall_ptr x_get_system_call(sqlite3_vfs* vfs, const char* name) {
  return real_vfs(vfs)->xGetSystemCall(real_vfs(vfs), name);
}

const char* x_next_system_call(sqlite3_vfs* vfs, const char* name) {
  return real_vfs(vfs)->xNextSystemCall(real_vfs(vfs), name);
}

/// Our VFS over `base`, with the same version (so the same optional methods).
sqlite3_vfs make_vfs(sqlite3_vfs* base) {
  sqlite3_vfs v{};
  v.iVersion = base->iVersion;
  v.szOsFile = static_cast<int>(sizeof(wrapped_file)) + base->szOsFile;
  v.mxPathname = base->mxPathname;
  v.zName = name;
  v.pAppData = base;
  v.xOpen = x_open;
  v.xDelete = x_delete;
  v.xAccess = x_access;
  v.xFullPathname = x_full_pathname;
  v.xDlOpen = base->xDlOpen ? x_dl_open : nullptr;
  v.xDlError = base->xDlError ? x_dl_error : nullptr;
  v.xDlSym = base->xDlSym ? x_dl_sym : nullptr;
  v.xDlClose = base->xDlClose ? x_dl_close : nullptr;
  v.xRandomness = x_randomness;
  v.xSleep = x_sleep;
  v.xCurrentTime = x_current_time;
  v.xGetLastError = x_get_last_error;
  if (base->iVersion >= 2)
    v.xCurrentTimeInt64 = base->xCurrentTimeInt64 ? x_current_time_int64 : nullptr;
  if (base->iVersion >= 3) {
    v.xSetSystemCall = base->xSetSystemCall ? x_set_system_call : nullptr;
    v.xGetSystemCall = base->xGetSystemCall ? x_get_system_call : nullptr;
    v.xNextSystemCall = base->xNextSystemCall ? x_next_system_call : nullptr;
  }
  return v;
}

} // namespace

caf::error install() {
  static std::once_flag once;
  static sqlite3_vfs vfs;
  static int rc = SQLITE_OK;
  std::call_once(once, [] {
    if (sqlite3_initialize() != SQLITE_OK || sqlite3_vfs_find(nullptr) == nullptr) {
      rc = SQLITE_ERROR;
      return;
    }
    vfs = make_vfs(sqlite3_vfs_find(nullptr));
    rc = sqlite3_vfs_register(&vfs, 0);
  });
  if (rc != SQLITE_OK)
    return make_error(errc::invalid_config, std::string{"cannot register the SQLite VFS "} + name);
  return {};
}

void arm(const fault& f) {
  auto& c = ctl();
  std::lock_guard<std::mutex> guard{c.mtx};
  reset(c);
  c.armed = true;
  c.armed_fault = f;
}

void disarm() {
  auto& c = ctl();
  std::lock_guard<std::mutex> guard{c.mtx};
  reset(c);
}

uint64_t calls(op what, file where) {
  auto& c = ctl();
  std::lock_guard<std::mutex> guard{c.mtx};
  auto counted = what == op::open_read_only ? op::open : what;
  return c.calls[static_cast<size_t>(counted)][static_cast<size_t>(where)];
}

uint64_t fired() {
  auto& c = ctl();
  std::lock_guard<std::mutex> guard{c.mtx};
  return c.fired;
}

} // namespace troupe::fault_vfs
