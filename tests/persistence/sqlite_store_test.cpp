// The SQLite journal as a file: what survives close and reopen, the header
// and schema it writes, and the files it refuses (each left byte for byte
// as it was): not SQLite, another application's, a newer troupe's, locked by
// another store or process, read-only. The store contract shared with the
// memory store is in store_contract_test.cpp.
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
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

extern char** environ;

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

std::string bytes_of(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream out{path, std::ios::binary | std::ios::trunc};
  out << content;
}

/// Runs `sql` on `path` with a plain SQLite connection (not the store);
/// returns the first column of the last row it produced.
std::string sql_on(const std::string& path, const std::string& sql, bool checkpoint = true) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  if (!checkpoint)
    sqlite3_db_config(db, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, nullptr);
  std::string last;
  char* err = nullptr;
  auto keep = [](void* out, int, char** values, char**) {
    *static_cast<std::string*>(out) = values[0] ? values[0] : "";
    return 0;
  };
  int rc = sqlite3_exec(db, sql.c_str(), keep, &last, &err);
  std::string what = err ? err : "";
  sqlite3_free(err);
  sqlite3_close(db);
  INFO(what);
  REQUIRE(rc == SQLITE_OK);
  return last;
}

uint32_t be32(const std::string& bytes, size_t offset) {
  uint32_t v = 0;
  for (size_t i = 0; i < 4; ++i)
    v = (v << 8) | static_cast<uint8_t>(bytes.at(offset + i));
  return v;
}

journal_write start(const std::string& id, const std::string& key = "") {
  journal_write w;
  workflow_row r;
  r.id = id;
  r.definition = "triage";
  r.idempotency_key = key;
  w.workflow.push_back(r);
  w.events.push_back({0, id, 1, "workflow_started", 1, R"({"input":{}})"});
  return w;
}

journal_write step(const std::string& id, uint64_t wf_seq) {
  journal_write w;
  w.events.push_back({0, id, wf_seq, "step_completed", 2, R"({"label":"ok"})"});
  return w;
}

std::shared_ptr<journal_store> open_ok(const sqlite_journal_options& opts) {
  auto store = open_sqlite_journal(opts);
  INFO((store ? std::string{} : describe(store.error())));
  REQUIRE(store);
  return *store;
}

/// A closed troupe journal at `path` holding one workflow "a" with one event.
void make_journal(const std::string& path) {
  auto store = open_ok(at(path));
  std::vector<journal_write> batch{start("a")};
  REQUIRE_FALSE(store->append(batch));
}

/// Opening `path` must fail with journal_unusable naming the file and
/// saying `why`, and leave the file as it was.
void check_refused(const std::string& path, const std::string& why,
                   const std::string& vfs = "") {
  auto before = bytes_of(path);
  auto store = open_sqlite_journal(at(path, "full", vfs));
  REQUIRE_FALSE(store);
  CHECK(is(store.error(), errc::journal_unusable));
  CHECK_THAT(describe(store.error()), Contains(path) && Contains(why));
  CHECK(bytes_of(path) == before);
}

} // namespace

TEST_CASE("a SQLite journal keeps every record across close and reopen", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  uint64_t last_seq = 0;
  {
    auto store = open_ok(at(path));
    auto a = start("a", "key-a");
    a.snapshot.push_back({"a", 1, "state"});
    a.effect.push_back({"a/n#1/e", "a", "result", 5});
    a.dead_letter.push_back({"x", "n", "exhausted", "why", 6});
    std::vector<journal_write> b1{a, start("b"), step("a", 2)};
    REQUIRE_FALSE(store->append(b1));
    last_seq = b1.back().events.back().seq;
    CHECK(last_seq == 3);
  }
  auto store = open_ok(at(path));
  auto events = store->read("a");
  REQUIRE(events);
  REQUIRE(events->size() == 2);
  CHECK(events->at(0).seq == 1);
  CHECK(events->at(1).seq == 3);
  CHECK(events->at(1).payload == R"({"label":"ok"})");
  CHECK(store->workflow("b")->definition == "triage");
  CHECK(*store->find_key("key-a") == "a");
  CHECK(store->snapshot("a")->at(0).state == "state");
  CHECK(store->effect("a/n#1/e")->at(0).result == "result");
  CHECK(store->dead_letters()->at(0).reason == "why");
  CHECK(store->open_workflows()->size() == 2);
  std::vector<journal_write> more{step("a", 3)};
  REQUIRE_FALSE(store->append(more));
  CHECK(more[0].events[0].seq == last_seq + 1);
  std::vector<journal_write> repeat{step("a", 3)};
  CHECK(is(store->append(repeat), errc::journal_write_failed));
}

TEST_CASE("a SQLite journal never reuses a seq, even after purging the highest and reopening",
          "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  uint64_t highest = 0;
  {
    auto store = open_ok(at(path));
    auto done = start("done");
    done.workflow[0].status = "completed";
    std::vector<journal_write> batch{start("a"), done};
    REQUIRE_FALSE(store->append(batch));
    highest = batch[1].events[0].seq;
    REQUIRE(*store->purge(1, 0) == 1);
  }
  auto store = open_ok(at(path));
  std::vector<journal_write> next{start("c")};
  REQUIRE_FALSE(store->append(next));
  CHECK(next[0].events[0].seq == highest + 1);
}

TEST_CASE("a SQLite journal is WAL mode, marked as troupe's, schema 2, held exclusively",
          "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  {
    auto store = open_ok(at(path));
    // The WAL index lives in heap memory under locking_mode=EXCLUSIVE.
    CHECK_FALSE(std::filesystem::exists(path + "-shm"));
    std::vector<journal_write> batch{start("a")};
    REQUIRE_FALSE(store->append(batch));
  }
  auto header = bytes_of(path); // checkpointed on close
  REQUIRE(header.size() >= 100);
  CHECK(header.compare(0, 16, std::string{"SQLite format 3", 16}) == 0);
  CHECK(header[18] == 2); // WAL read and write versions
  CHECK(header[19] == 2);
  CHECK(be32(header, 60) == 4);          // user_version
  CHECK(be32(header, 68) == 0x54525550); // application_id
  auto tables = sql_on(path, "SELECT group_concat(name, ' ') FROM (SELECT name FROM"
                             " sqlite_master WHERE type = 'table' ORDER BY name)");
  CHECK(tables == "dead_letters effects events journal_state snapshots workflows");
  auto indexes = sql_on(path, "SELECT group_concat(name, ' ') FROM (SELECT name FROM"
                              " sqlite_master WHERE type = 'index' AND name NOT LIKE"
                              " 'sqlite_%' ORDER BY name)");
  CHECK(indexes == "effects_workflow workflows_done workflows_key workflows_open workflows_status");
}

TEST_CASE("a missing or empty file becomes a journal, as does an empty SQLite database",
          "[persistence]") {
  temp_dir dir;
  auto path = GENERATE(as<std::string>{}, "missing", "empty", "empty sqlite");
  CAPTURE(path);
  auto file = dir.file(path);
  if (path == "empty")
    write_file(file, "");
  if (path == "empty sqlite") {
    sql_on(file, "PRAGMA page_size = 4096; VACUUM");
    REQUIRE(std::filesystem::file_size(file) > 0);
  }
  {
    auto store = open_ok(at(file));
    std::vector<journal_write> batch{start("a")};
    REQUIRE_FALSE(store->append(batch));
  }
  auto store = open_ok(at(file));
  CHECK(store->read("a")->size() == 1);
}

TEST_CASE("a file that is not a SQLite database is refused untouched", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("notes.txt");
  std::string text;
  for (int i = 0; i < 200; ++i)
    text += "this is a text file, line " + std::to_string(i) + "\n";
  write_file(path, text);
  check_refused(path, "is not a troupe journal");
  CHECK(dir.files() == std::vector<std::string>{"notes.txt"});
}

TEST_CASE("another application's SQLite database is refused untouched", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("other.db");
  SECTION("one with tables and no application id") {
    sql_on(path, "CREATE TABLE t (x); INSERT INTO t VALUES (1)");
    check_refused(path, "is not a troupe journal (application_id 0x00000000, 1 schema objects)");
  }
  SECTION("an empty one with another application id") {
    sql_on(path, "PRAGMA application_id = 1234");
    check_refused(path, "is not a troupe journal (application_id 0x000004d2");
  }
  SECTION("one in WAL mode with data only in its WAL") {
    sql_on(path, "PRAGMA journal_mode = WAL; CREATE TABLE t (x); INSERT INTO t VALUES (1)",
           false);
    REQUIRE(std::filesystem::file_size(path + "-wal") > 0);
    auto wal = bytes_of(path + "-wal");
    check_refused(path, "is not a troupe journal");
    CHECK(bytes_of(path + "-wal") == wal);
  }
  CHECK(sql_on(path, "SELECT count(*) FROM sqlite_master WHERE name = 'events'") == "0");
}

TEST_CASE("a journal written by a newer troupe is refused untouched", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  make_journal(path);
  sql_on(path, "PRAGMA user_version = 5");
  check_refused(path, "was written by a newer troupe (schema 5, this build knows up to 4)");
}

// tests/persistence/data/journal-v1.db: written by the schema 1 build
// (`troupe run ledger --workflows 8`, SIGKILLed at its 25th fsync, then
// opened and closed once to checkpoint it): 8 workflows with idempotency
// keys, 7 open and 1 failed, 48 events, recorded effects.
TEST_CASE("a schema 1 journal opens as schema 4 with every record intact, and takes appends",
          "[persistence]") {
  temp_dir dir;
  auto path = dir.file("v1.db");
  std::filesystem::copy_file(std::string{TROUPE_TEST_DATA} + "/journal-v1.db", path);
  REQUIRE(sql_on(path, "PRAGMA user_version") == "1");
  auto all = [&](const std::string& events_from) {
    return sql_on(path, "SELECT group_concat(x, '|') FROM (SELECT id || ' ' || seq || ' '"
                        " || wf_seq || ' ' || kind || ' ' || at_ns || ' ' || payload AS x FROM "
                        + events_from + " ORDER BY seq)");
  };
  const std::string rows_sql =
    "SELECT group_concat(x, '|') FROM (SELECT id || ' ' || definition || ' ' || version"
    " || ' ' || ifnull(idempotency_key, '-') || ' ' || status || ' ' || outcome || ' '"
    " || created_ns || ' ' || updated_ns AS x FROM workflows ORDER BY id)";
  const std::string effects_sql =
    "SELECT group_concat(x, '|') FROM (SELECT key || ' ' || workflow_id || ' ' || result"
    " AS x FROM effects ORDER BY key)";
  auto events_1 = all("(SELECT workflow_id AS id, * FROM events)");
  auto rows_1 = sql_on(path, rows_sql);
  auto effects_1 = sql_on(path, effects_sql);
  REQUIRE(std::count(events_1.begin(), events_1.end(), '|') == 47);
  std::string open_id;
  {
    auto store = open_ok(at(path));
    auto open = store->open_workflows();
    REQUIRE(open);
    CHECK(open->size() == 7);
    open_id = open->front().id;
    auto before = store->read(open_id);
    REQUIRE(before);
    REQUIRE(!before->empty());
    CHECK(store->find_key("order-0").value() == "ledger-01a2024ed0dcdf6d1da8");
    std::vector<journal_write> more{step(open_id, before->back().wf_seq + 1)};
    REQUIRE_FALSE(store->append(more));
    CHECK(more[0].events[0].seq == 49); // after the 48 of schema 1
    auto after = store->read(open_id);
    REQUIRE(after);
    CHECK(after->size() == before->size() + 1);
    CHECK(after->back().kind == "step_completed");
  }
  CHECK(sql_on(path, "PRAGMA user_version") == "4");
  CHECK(sql_on(path, "SELECT count(*) FROM sqlite_master WHERE name = 'workflows_status'") == "1");
  auto events_2 = all("(SELECT w.id AS id, e.* FROM events e JOIN workflows w ON w.n = e.workflow"
                      " WHERE e.seq <= 48)");
  CHECK(events_2 == events_1);
  CHECK(sql_on(path, rows_sql) == rows_1);
  CHECK(sql_on(path, effects_sql) == effects_1);
  // schema 3: a row may be dead-lettered (an open status)
  auto store = open_ok(at(path));
  auto row = store->workflow(open_id);
  REQUIRE(row);
  row->status = "dead_lettered";
  auto last = store->read(open_id);
  REQUIRE(last);
  std::vector<journal_write> dead{step(open_id, last->back().wf_seq + 1)};
  dead[0].workflow = {*row};
  REQUIRE_FALSE(store->append(dead));
  CHECK(store->workflow(open_id)->status == "dead_lettered");
  auto still_open = store->open_workflows();
  REQUIRE(still_open);
  CHECK(still_open->size() == 7);
  // schema 4: listed and counted through workflows_status
  auto counts = store->count_workflows();
  REQUIRE(counts);
  CHECK(counts->dead_lettered == 1);
  CHECK(counts->total() == 8);
  workflow_query q;
  q.status = "dead_lettered";
  auto listed = store->list_workflows(q);
  REQUIRE(listed);
  REQUIRE(listed->size() == 1);
  CHECK(listed->front().id == open_id);
}

TEST_CASE("a schema 1 journal with events but no row for their workflow is refused, not "
          "migrated at a loss", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("v1.db");
  std::filesystem::copy_file(std::string{TROUPE_TEST_DATA} + "/journal-v1.db", path);
  sql_on(path, "DELETE FROM workflows WHERE id = 'ledger-01a2024ed0dcdf6d1da8'");
  check_refused(path, "has 6 events without a workflow row");
  CHECK(sql_on(path, "PRAGMA user_version") == "1");
  CHECK(sql_on(path, "SELECT count(*) FROM events") == "48");
}

TEST_CASE("a journal open in one store is refused to a second, until the first closes",
          "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  auto first = open_ok(at(path));
  auto second = open_sqlite_journal(at(path));
  REQUIRE_FALSE(second);
  CHECK(is(second.error(), errc::journal_unusable));
  CHECK_THAT(describe(second.error()), Contains(path) && Contains("is locked by another process"));
  std::vector<journal_write> batch{start("a")};
  CHECK_FALSE(first->append(batch)); // the refused opener did not disturb the holder
  first.reset();
  auto third = open_ok(at(path));
  CHECK(third->read("a")->size() == 1);
}

// Run by the next test in a process of its own (the test binary again):
// POSIX locks belong to processes, and a forked child would inherit
// SQLite's in-process view of them. Hidden: without the variable it has
// nothing to probe.
TEST_CASE("lock probe: the journal named by TROUPE_LOCK_PROBE is locked", "[.][lock-probe]") {
  const char* path = std::getenv("TROUPE_LOCK_PROBE");
  REQUIRE(path != nullptr);
  auto store = open_sqlite_journal(at(path));
  REQUIRE_FALSE(store);
  CHECK(is(store.error(), errc::journal_unusable));
  CHECK_THAT(describe(store.error()), Contains("is locked by another process"));
}

TEST_CASE("a journal open in one process is refused to another process", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  auto holder = open_ok(at(path));
  std::vector<std::string> env{"TROUPE_LOCK_PROBE=" + path};
  for (char** e = environ; *e != nullptr; ++e)
    env.emplace_back(*e);
  std::vector<char*> envp;
  for (auto& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  std::string exe = "/proc/self/exe";
  std::string filter = "[lock-probe]";
  std::string warn = "-w"; // a probe that matched no test fails
  std::string no_tests = "NoTests";
  std::string out = "-o";
  std::string null = "/dev/null";
  std::vector<char*> argv{exe.data(), filter.data(), warn.data(), no_tests.data(),
                          out.data(),  null.data(),   nullptr};
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, exe.c_str(), nullptr, nullptr, argv.data(), envp.data()) == 0);
  int status = 0;
  REQUIRE(waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0); // Catch2: failed assertions, or 2 if no test ran
}

TEST_CASE("a journal the process may not write is refused as read-only, untouched",
          "[persistence]") {
  // Tests run as root, which ignores file modes. The fault VFS does what
  // SQLite's unix VFS does for a file the process may not write: it opens
  // the file O_RDONLY and reports SQLITE_OPEN_READONLY.
  REQUIRE_FALSE(fault_vfs::install());
  temp_dir dir;
  auto path = dir.file("j.db");
  make_journal(path);
  fault_vfs::arm({fault_vfs::op::open_read_only, fault_vfs::file::database});
  check_refused(path, "is read-only", fault_vfs::name);
  CHECK(fault_vfs::fired() == 1);
  fault_vfs::disarm();
  auto store = open_ok(at(path, "full", fault_vfs::name));
  CHECK(store->read("a")->size() == 1);
}

TEST_CASE("a journal whose WAL cannot be created is refused untouched", "[persistence]") {
  // As in a directory the process may not write to (which root ignores).
  REQUIRE_FALSE(fault_vfs::install());
  temp_dir dir;
  auto path = dir.file("j.db");
  make_journal(path);
  fault_vfs::arm({fault_vfs::op::open, fault_vfs::file::wal, 0, SQLITE_CANTOPEN, true});
  check_refused(path, "cannot be opened", fault_vfs::name);
  CHECK(fault_vfs::fired() >= 1);
  CHECK_FALSE(std::filesystem::exists(path + "-wal"));
  fault_vfs::disarm();
}

TEST_CASE("a journal whose file cannot be read at open is refused untouched", "[persistence]") {
  REQUIRE_FALSE(fault_vfs::install());
  temp_dir dir;
  auto path = dir.file("j.db");
  make_journal(path);
  fault_vfs::arm({fault_vfs::op::read, fault_vfs::file::database, 0, 0, true});
  check_refused(path, "cannot be read", fault_vfs::name);
  CHECK(fault_vfs::fired() >= 1);
  fault_vfs::disarm();
}

TEST_CASE("the journal options are checked before any file is touched", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  auto bad_sync = open_sqlite_journal(at(path, "fast"));
  REQUIRE_FALSE(bad_sync);
  CHECK(is(bad_sync.error(), errc::invalid_config));
  CHECK_THAT(describe(bad_sync.error()), Contains("'fast'"));
  auto no_vfs = open_sqlite_journal(at(path, "full", "no-such-vfs"));
  REQUIRE_FALSE(no_vfs);
  CHECK(is(no_vfs.error(), errc::invalid_config));
  CHECK_THAT(describe(no_vfs.error()), Contains("'no-such-vfs'"));
  auto no_path = open_sqlite_journal(at(""));
  CHECK(is(no_path.error(), errc::invalid_config));
  CHECK(dir.files().empty());
  CHECK(open_sqlite_journal(at(path, "normal")));
}

TEST_CASE("synchronous=full fsyncs the WAL at every commit, normal does not", "[persistence]") {
  REQUIRE_FALSE(fault_vfs::install());
  temp_dir dir;
  auto sync = GENERATE(as<std::string>{}, "full", "normal");
  CAPTURE(sync);
  auto store = open_ok(at(dir.file(sync + ".db"), sync, fault_vfs::name));
  fault_vfs::disarm(); // resets the counters
  std::vector<journal_write> first{start("a")};
  REQUIRE_FALSE(store->append(first));
  for (uint64_t i = 2; i <= 5; ++i) {
    std::vector<journal_write> batch{step("a", i)};
    REQUIRE_FALSE(store->append(batch));
  }
  auto syncs = fault_vfs::calls(fault_vfs::op::sync, fault_vfs::file::wal);
  if (sync == "full")
    CHECK(syncs >= 5);
  else
    CHECK(syncs == 0);
  CHECK(fault_vfs::calls(fault_vfs::op::write, fault_vfs::file::wal) >= 5);
}

TEST_CASE("a damaged page of a journal reads as journal_corrupt", "[persistence]") {
  temp_dir dir;
  auto path = dir.file("j.db");
  {
    auto store = open_ok(at(path));
    std::vector<journal_write> batch{start("a"), step("a", 2)};
    REQUIRE_FALSE(store->append(batch));
  }
  auto page_size = std::stoul(sql_on(path, "PRAGMA page_size"));
  auto damage = [&](const std::string& object) {
    auto page = std::stoul(sql_on(path, "SELECT rootpage FROM sqlite_master WHERE name = '"
                                          + object + "'"));
    std::fstream f{path, std::ios::binary | std::ios::in | std::ios::out};
    f.seekp(static_cast<std::streamoff>((page - 1) * page_size));
    std::string junk(page_size, '\xff');
    f.write(junk.data(), static_cast<std::streamsize>(junk.size()));
  };
  SECTION("the index read() walks: the read fails") {
    damage("sqlite_autoindex_events_1");
    auto store = open_ok(at(path));
    auto events = store->read("a");
    REQUIRE_FALSE(events);
    CHECK(is(events.error(), errc::journal_corrupt));
    CHECK_THAT(describe(events.error()), Contains(path) && Contains("read events"));
  }
  SECTION("the events table, whose last seq opening reads: the open fails") {
    damage("events");
    auto store = open_sqlite_journal(at(path));
    REQUIRE_FALSE(store);
    CHECK(is(store.error(), errc::journal_corrupt));
    CHECK_THAT(describe(store.error()), Contains(path) && Contains("open"));
  }
}
