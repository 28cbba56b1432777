// Storage faults under the SQLite journal, injected with the fault VFS: a
// write, an fsync or a full disk in the middle of a commit fails append()
// with the named error, and the journal stays what the recovery rule in
// persistence/sqlite_store.cpp promises: every acknowledged batch present,
// the failed one entirely present or entirely absent, no gaps. Also the
// fault VFS's own contract, which users rely on for their storage tests.
#include <cstdlib>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "support/temp_dir.hpp"
#include <sqlite3.h>

#include "troupe/errors.hpp"
#include "troupe/fault_vfs.hpp"
#include "troupe/journal.hpp"

// Failed assertions print troupe errors readably.
namespace Catch {
template <>
struct StringMaker<caf::error> {
  static std::string convert(const caf::error& err) { return troupe::describe(err); }
};
} // namespace Catch

using namespace troupe;
using Catch::Matchers::Contains;

namespace {

using troupe::testing::temp_dir;

/// Options for the journal at `path`.
sqlite_journal_options at(const std::string& path, const std::string& synchronous = "full",
                          const std::string& vfs = "") {
  sqlite_journal_options o;
  o.path = path;
  o.synchronous = synchronous;
  o.vfs = vfs;
  return o;
}

/// Disarms the fault VFS however the test ends.
struct disarm_on_exit {
  ~disarm_on_exit() { fault_vfs::disarm(); }
};

/// Event `wf_seq` of workflow `id`, with a payload big enough that a batch
/// spans several pages (so a commit makes several writes).
journal_record event(const std::string& id, uint64_t wf_seq) {
  return {0, id, wf_seq, "step_completed", static_cast<int64_t>(wf_seq),
          id + "#" + std::to_string(wf_seq) + ":" + std::string(1500, 'p')};
}

journal_write start(const std::string& id) {
  journal_write w;
  workflow_row r;
  r.id = id;
  r.definition = "triage";
  w.workflow.push_back(r);
  w.events.push_back(event(id, 1));
  return w;
}

journal_write step(const std::string& id, uint64_t wf_seq) {
  journal_write w;
  w.events.push_back(event(id, wf_seq));
  return w;
}

/// The last wf_seq of each workflow a test knows to be acknowledged.
using acked_map = std::map<std::string, uint64_t>;

/// The recovery rule: every acknowledged event is there, each workflow's
/// events run 1..n, and the failed batch is entirely there or entirely not.
/// Returns whether the failed batch is there.
bool check_consistent(journal_store& store, const acked_map& acked,
                      const std::vector<journal_write>& failed) {
  size_t failed_events = 0;
  size_t failed_present = 0;
  std::map<std::string, uint64_t> failed_from;
  for (const auto& w : failed)
    for (const auto& e : w.events) {
      ++failed_events;
      failed_from.emplace(e.workflow_id, e.wf_seq);
    }
  auto ids = failed_from;
  ids.insert(acked.begin(), acked.end());
  for (const auto& [id, unused] : ids) {
    CAPTURE(id);
    auto events = store.read(id);
    REQUIRE(events);
    for (size_t i = 0; i < events->size(); ++i) {
      CHECK(events->at(i).wf_seq == i + 1);
      CHECK(events->at(i).payload == event(id, i + 1).payload);
    }
    auto it = acked.find(id);
    auto acked_n = it == acked.end() ? 0 : it->second;
    CHECK(events->size() >= acked_n);
    if (auto f = failed_from.find(id); f != failed_from.end())
      for (const auto& e : *events)
        if (e.wf_seq >= f->second)
          ++failed_present;
    if (!events->empty())
      CHECK(store.workflow(id)); // I3
  }
  CHECK((failed_present == 0 || failed_present == failed_events));
  return failed_present == failed_events;
}

struct fault_case {
  const char* name;
  fault_vfs::fault fault;
  errc expected;
};

} // namespace

TEST_CASE("a storage fault in the middle of a commit fails the append and keeps the journal "
          "consistent",
          "[persistence]") {
  using fault_vfs::file;
  using fault_vfs::op;
  REQUIRE_FALSE(fault_vfs::install());
  disarm_on_exit guard;
  auto c = GENERATE(
    fault_case{"first WAL write fails", {op::write, file::wal, 0, 0, false},
               errc::journal_write_failed},
    fault_case{"a later WAL write fails", {op::write, file::wal, 3, 0, false},
               errc::journal_write_failed},
    fault_case{"the WAL fsync fails", {op::sync, file::wal, 0, 0, false},
               errc::journal_write_failed},
    fault_case{"the disk is full", {op::write, file::wal, 2, SQLITE_FULL, false},
               errc::journal_full},
    fault_case{"the disk dies", {op::write, file::any, 1, 0, true}, errc::journal_write_failed});
  CAPTURE(c.name);
  temp_dir dir;
  auto path = dir.file("j.db");
  acked_map acked;
  std::vector<journal_write> failed{step("a", 3), step("b", 3), start("c"), step("a", 4)};
  {
    auto store = *open_sqlite_journal(at(path, "full", fault_vfs::name));
    std::vector<journal_write> b1{start("a"), start("b")};
    std::vector<journal_write> b2{step("a", 2), step("b", 2)};
    REQUIRE_FALSE(store->append(b1));
    REQUIRE_FALSE(store->append(b2));
    acked = {{"a", 2}, {"b", 2}};

    fault_vfs::arm(c.fault);
    auto err = store->append(failed);
    REQUIRE(err);
    CHECK(is(err, c.expected));
    CHECK_THAT(describe(err), Contains(path + ": commit: "));
    CHECK(fault_vfs::fired() >= 1);
    for (const auto& w : failed)
      for (const auto& e : w.events)
        CHECK(e.seq == 0);
    fault_vfs::disarm();

    // The store goes on: nothing of the failed batch shows, and the same
    // writes succeed now.
    CHECK_FALSE(check_consistent(*store, acked, failed));
    auto retry = failed;
    REQUIRE_FALSE(store->append(retry));
    CHECK(retry.front().events.front().seq == 5);
    CHECK(check_consistent(*store, {{"a", 4}, {"b", 3}, {"c", 1}}, {}) == true);
    acked = {{"a", 4}, {"b", 3}, {"c", 1}};
  }
  auto reopened = open_sqlite_journal(at(path));
  REQUIRE(reopened);
  check_consistent(**reopened, acked, {});
  CHECK((*reopened)->open_workflows()->size() == 3);
}

TEST_CASE("after a failed commit a fresh store finds the batch entirely or not at all",
          "[persistence]") {
  using fault_vfs::file;
  using fault_vfs::op;
  REQUIRE_FALSE(fault_vfs::install());
  disarm_on_exit guard;
  auto c = GENERATE(
    fault_case{"a later WAL write fails", {op::write, file::wal, 3, 0, false},
               errc::journal_write_failed},
    fault_case{"the WAL fsync fails", {op::sync, file::wal, 0, 0, false},
               errc::journal_write_failed},
    fault_case{"the disk is full", {op::write, file::wal, 1, SQLITE_FULL, false},
               errc::journal_full});
  // "closed": the store is destroyed (and checkpoints); "crashed": the files
  // are copied while the store still holds them, as a process that died
  // right after the failure would leave them. (SQLite 3.40 finds the batch
  // after a failed fsync and a crash: its commit frame was written.)
  auto how = GENERATE(as<std::string>{}, "closed", "crashed");
  CAPTURE(c.name, how);
  temp_dir dir;
  auto path = dir.file("j.db");
  auto crashed = dir.file("crashed.db");
  std::vector<journal_write> failed{step("a", 2), start("c"), step("a", 3)};
  {
    auto store = *open_sqlite_journal(at(path, "full", fault_vfs::name));
    std::vector<journal_write> b1{start("a"), start("b")};
    REQUIRE_FALSE(store->append(b1));
    fault_vfs::arm(c.fault);
    CHECK(is(store->append(failed), c.expected));
    fault_vfs::disarm();
    if (how == "crashed") {
      std::filesystem::copy_file(path, crashed);
      if (std::filesystem::exists(path + "-wal"))
        std::filesystem::copy_file(path + "-wal", crashed + "-wal");
    }
  }
  auto reopened = open_sqlite_journal(at(how == "crashed" ? crashed : path));
  REQUIRE(reopened);
  bool present = check_consistent(**reopened, {{"a", 1}, {"b", 1}}, failed);
  // Either way the journal continues where it stands.
  auto a_next = present ? 4u : 2u;
  std::vector<journal_write> next{step("a", a_next), step("b", 2)};
  CHECK_FALSE((*reopened)->append(next));
}

TEST_CASE("the fault VFS fails the armed operation after the given number of calls",
          "[persistence]") {
  REQUIRE_FALSE(fault_vfs::install());
  REQUIRE_FALSE(fault_vfs::install()); // idempotent
  disarm_on_exit guard;
  temp_dir dir;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open_v2(dir.file("raw.db").c_str(), &db,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, fault_vfs::name)
          == SQLITE_OK);
  sqlite3_extended_result_codes(db, 1);
  auto run = [&](const char* sql) { return sqlite3_exec(db, sql, nullptr, nullptr, nullptr); };
  REQUIRE(run("CREATE TABLE t (x)") == SQLITE_OK);
  int rows = 0;
  auto insert = [&] {
    int rc = run("INSERT INTO t VALUES (1)");
    rows += rc == SQLITE_OK;
    return rc;
  };

  fault_vfs::disarm();
  CHECK(fault_vfs::calls(fault_vfs::op::write) == 0);
  REQUIRE(insert() == SQLITE_OK);
  CHECK(fault_vfs::calls(fault_vfs::op::write, fault_vfs::file::database) >= 1);
  CHECK(fault_vfs::calls(fault_vfs::op::write, fault_vfs::file::journal) >= 1);
  CHECK(fault_vfs::calls(fault_vfs::op::sync) >= 1);
  CHECK(fault_vfs::calls(fault_vfs::op::write) >= 2);

  SECTION("a one-shot fault fails one call") {
    fault_vfs::arm({fault_vfs::op::write, fault_vfs::file::database});
    CHECK(fault_vfs::calls(fault_vfs::op::write) == 0); // arm resets the counters
    CHECK(insert() == SQLITE_IOERR_WRITE);
    CHECK(insert() == SQLITE_OK);
    CHECK(fault_vfs::fired() == 1);
  }
  SECTION("a sticky fault fails every call until disarmed, after the given successes") {
    fault_vfs::arm({fault_vfs::op::sync, fault_vfs::file::any, 1, SQLITE_IOERR_FSYNC, true});
    CHECK(insert() == SQLITE_IOERR_FSYNC); // the journal's sync passes, the next fails
    CHECK(insert() == SQLITE_IOERR_FSYNC);
    CHECK(fault_vfs::fired() >= 2);
    fault_vfs::disarm();
    CHECK(fault_vfs::fired() == 0);
    CHECK(insert() == SQLITE_OK);
  }
  SECTION("a fault on one kind of file spares the others") {
    fault_vfs::arm({fault_vfs::op::write, fault_vfs::file::wal}); // rollback mode: no WAL
    CHECK(insert() == SQLITE_OK);
    CHECK(fault_vfs::fired() == 0);
  }
  SECTION("a failed open reports the fault's code") {
    fault_vfs::arm({fault_vfs::op::open, fault_vfs::file::database});
    sqlite3* other = nullptr;
    CHECK(sqlite3_open_v2(dir.file("other.db").c_str(), &other,
                          SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, fault_vfs::name)
          == SQLITE_CANTOPEN);
    sqlite3_close(other);
    CHECK(fault_vfs::calls(fault_vfs::op::open) == 1);
  }
  fault_vfs::disarm();
  sqlite3_stmt* count = nullptr;
  REQUIRE(sqlite3_prepare_v2(db, "SELECT count(*) FROM t", -1, &count, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(count) == SQLITE_ROW);
  CHECK(sqlite3_column_int(count, 0) == rows); // failed inserts left nothing
  sqlite3_finalize(count);
  sqlite3_close(db);
}
