// The journal_store contract, run against both stores (in-memory and SQLite):
// what append() assigns, accepts and refuses (all or nothing), and what each
// read returns. Store-specific behaviour lives in sqlite_store_test.cpp.
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <caf/sec.hpp>
#include <catch2/catch.hpp>

#include <algorithm>

#include "support/temp_dir.hpp"

#include "troupe/errors.hpp"
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

/// The store under test, named by GENERATE; a SQLite store lives in `dir`.
struct store_fixture {
  explicit store_fixture(const std::string& kind) {
    if (kind == "memory") {
      store = make_memory_journal();
      return;
    }
    auto opened = open_sqlite_journal(at(dir.file("journal.db")));
    REQUIRE(opened);
    store = *opened;
  }
  temp_dir dir; // declared first: outlives the store
  std::shared_ptr<journal_store> store;
};

journal_record event(const std::string& wf, uint64_t wf_seq) {
  journal_record r;
  r.workflow_id = wf;
  r.wf_seq = wf_seq;
  r.kind = "step_completed";
  r.at_ns = static_cast<int64_t>(wf_seq) * 1000;
  r.payload = R"({"node":"n)" + std::to_string(wf_seq) + R"(","attempt":1,"label":"ok"})";
  return r;
}

workflow_row row(const std::string& id, const std::string& key = "",
                 const std::string& status = "running", int64_t created = 0, int64_t updated = 0) {
  workflow_row r;
  r.id = id;
  r.definition = "triage";
  r.idempotency_key = key;
  r.status = status;
  r.created_ns = created;
  r.updated_ns = updated;
  return r;
}

/// A workflow's first write: its row and event 1.
journal_write start(const std::string& id, const std::string& key = "", int64_t created = 0) {
  journal_write w;
  w.workflow.push_back(row(id, key, "running", created, created));
  w.events.push_back(event(id, 1));
  return w;
}

/// Events from..to of a workflow.
journal_write steps(const std::string& id, uint64_t from, uint64_t to) {
  journal_write w;
  for (auto i = from; i <= to; ++i)
    w.events.push_back(event(id, i));
  return w;
}

/// A query for `status`, from the newest row.
workflow_query query(const std::string& status, size_t limit = 100) {
  workflow_query q;
  q.status = status;
  q.limit = limit;
  return q;
}

journal_write with_row(workflow_row r) {
  journal_write w;
  w.workflow.push_back(std::move(r));
  return w;
}

std::vector<uint64_t> seqs(const std::vector<journal_write>& batch) {
  std::vector<uint64_t> out;
  for (const auto& w : batch)
    for (const auto& e : w.events)
      out.push_back(e.seq);
  return out;
}

std::vector<uint64_t> wf_seqs(const caf::expected<std::vector<journal_record>>& rs) {
  REQUIRE(rs);
  std::vector<uint64_t> out;
  for (const auto& r : *rs)
    out.push_back(r.wf_seq);
  return out;
}

std::string message(const caf::error& err) {
  return describe(err);
}

using seq_list = std::vector<uint64_t>;

} // namespace

TEST_CASE("a store assigns seqs from 1 in append order and fills them in", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> first{start("a"), start("b"), steps("a", 2, 3)};
  REQUIRE_FALSE(f.store->append(first));
  CHECK(seqs(first) == seq_list{1, 2, 3, 4});
  std::vector<journal_write> nothing;
  REQUIRE_FALSE(f.store->append(nothing));
  std::vector<journal_write> empty_writes(3);
  REQUIRE_FALSE(f.store->append(empty_writes));
  std::vector<journal_write> second{steps("b", 2, 2), steps("a", 4, 4), steps("a", 5, 6)};
  REQUIRE_FALSE(f.store->append(second));
  CHECK(seqs(second) == seq_list{5, 6, 7, 8});
  auto a = f.store->read("a");
  REQUIRE(a);
  CHECK(wf_seqs(a) == seq_list{1, 2, 3, 4, 5, 6});
  seq_list a_seqs;
  for (const auto& r : *a)
    a_seqs.push_back(r.seq);
  CHECK(a_seqs == seq_list{1, 3, 4, 6, 7, 8});
}

TEST_CASE("every field of every record round-trips through a store", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  workflow_row r;
  r.id = "wf-ü-1";
  r.definition = "refund ✓";
  r.version = 4'000'000'000u;
  r.idempotency_key = "order-42/é";
  r.status = "parked";
  r.outcome = "low_confidence";
  r.created_ns = -5;
  r.updated_ns = 9'000'000'000'000'000'000;
  journal_record e;
  e.workflow_id = r.id;
  e.wf_seq = 1;
  e.kind = "workflow_started";
  e.at_ns = -1'234'567'890'123;
  e.payload = R"({"input":{"text":"Größe 😀 \"quoted\""}})" + std::string(100'000, 'x');
  journal_write w;
  w.workflow.push_back(r);
  w.events.push_back(e);
  w.snapshot.push_back({r.id, 1, R"({"node":"draft","vars":{"a":[1,2]}})"});
  w.effect.push_back({r.id + "/charge#1/stripe", r.id, R"({"charge":"ch_1"})", 77});
  w.dead_letter.push_back({r.id, "charge", "exhausted", "3 attempts: timeout", 88});
  std::vector<journal_write> batch{w};
  REQUIRE_FALSE(f.store->append(batch));

  auto events = f.store->read(r.id);
  REQUIRE(events);
  REQUIRE(events->size() == 1);
  const auto& got = events->front();
  CHECK(got.seq == 1);
  CHECK(got.workflow_id == e.workflow_id);
  CHECK(got.wf_seq == 1);
  CHECK(got.kind == e.kind);
  CHECK(got.at_ns == e.at_ns);
  CHECK(got.payload == e.payload);

  auto got_row = f.store->workflow(r.id);
  REQUIRE(got_row);
  CHECK(got_row->id == r.id);
  CHECK(got_row->definition == r.definition);
  CHECK(got_row->version == r.version);
  CHECK(got_row->idempotency_key == r.idempotency_key);
  CHECK(got_row->status == r.status);
  CHECK(got_row->outcome == r.outcome);
  CHECK(got_row->created_ns == r.created_ns);
  CHECK(got_row->updated_ns == r.updated_ns);

  auto snap = f.store->snapshot(r.id);
  REQUIRE(snap);
  REQUIRE(snap->size() == 1);
  CHECK(snap->front().workflow_id == r.id);
  CHECK(snap->front().wf_seq == 1);
  CHECK(snap->front().state == R"({"node":"draft","vars":{"a":[1,2]}})");

  auto eff = f.store->effect(r.id + "/charge#1/stripe");
  REQUIRE(eff);
  REQUIRE(eff->size() == 1);
  CHECK(eff->front().key == r.id + "/charge#1/stripe");
  CHECK(eff->front().workflow_id == r.id);
  CHECK(eff->front().result == R"({"charge":"ch_1"})");
  CHECK(eff->front().at_ns == 77);

  auto dead = f.store->dead_letters();
  REQUIRE(dead);
  REQUIRE(dead->size() == 1);
  CHECK(dead->front().workflow_id == r.id);
  CHECK(dead->front().node == "charge");
  CHECK(dead->front().outcome == "exhausted");
  CHECK(dead->front().reason == "3 attempts: timeout");
  CHECK(dead->front().at_ns == 88);
}

TEST_CASE("read returns a workflow's events after a wf_seq, in wf_seq order", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> b1{start("a"), start("b"), steps("a", 2, 3)};
  std::vector<journal_write> b2{steps("b", 2, 2), steps("a", 4, 5)};
  REQUIRE_FALSE(f.store->append(b1));
  REQUIRE_FALSE(f.store->append(b2));
  CHECK(wf_seqs(f.store->read("a")) == seq_list{1, 2, 3, 4, 5});
  CHECK(wf_seqs(f.store->read("a", 0)) == seq_list{1, 2, 3, 4, 5});
  CHECK(wf_seqs(f.store->read("a", 3)) == seq_list{4, 5});
  CHECK(wf_seqs(f.store->read("a", 5)).empty());
  CHECK(wf_seqs(f.store->read("a", 99)).empty());
  CHECK(wf_seqs(f.store->read("b")) == seq_list{1, 2});
  CHECK(wf_seqs(f.store->read("nobody")).empty());
  auto a = f.store->read("a", 1);
  REQUIRE(a);
  for (const auto& r : *a) {
    CHECK(r.workflow_id == "a");
    CHECK(r.payload == event("a", r.wf_seq).payload);
    CHECK(r.at_ns == static_cast<int64_t>(r.wf_seq) * 1000);
  }
}

TEST_CASE("an event that repeats a wf_seq refuses the whole batch", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> first{start("a")};
  REQUIRE_FALSE(f.store->append(first));

  auto x = start("x", "key-x");
  x.snapshot.push_back({"x", 1, "{}"});
  x.effect.push_back({"x/n#1/e", "x", "1", 1});
  x.dead_letter.push_back({"x", "n", "exhausted", "why", 1});
  std::vector<journal_write> bad{x, steps("a", 2, 2), with_row(row("a", "", "parked")),
                                 steps("a", 2, 3)};
  auto err = f.store->append(bad);
  REQUIRE(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("'a'") && Contains("wf_seq 2 is already recorded"));
  CHECK(seqs(bad) == seq_list{0, 0, 0, 0});
  CHECK(is(f.store->workflow("x").error(), errc::unknown_workflow));
  CHECK(wf_seqs(f.store->read("x")).empty());
  CHECK(*f.store->find_key("key-x") == "");
  CHECK(f.store->snapshot("x")->empty());
  CHECK(f.store->effect("x/n#1/e")->empty());
  CHECK(f.store->dead_letters()->empty());
  CHECK(wf_seqs(f.store->read("a")) == seq_list{1});
  CHECK(f.store->workflow("a")->status == "running");
  // The refused batch leaves no hole in the global order.
  std::vector<journal_write> next{steps("a", 2, 2)};
  REQUIRE_FALSE(f.store->append(next));
  CHECK(next[0].events[0].seq == 2);
}

TEST_CASE("events must continue their workflow without a gap", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> first{start("a")};
  REQUIRE_FALSE(f.store->append(first));
  std::vector<journal_write> gap{steps("a", 3, 4)};
  auto err = f.store->append(gap);
  REQUIRE(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("wf_seq 3 leaves a gap after 1"));
  journal_write late_start;
  late_start.workflow.push_back(row("b"));
  late_start.events.push_back(event("b", 2));
  std::vector<journal_write> no_first{late_start};
  CHECK_THAT(message(f.store->append(no_first)), Contains("wf_seq 2 leaves a gap after 0"));
  CHECK(is(f.store->workflow("b").error(), errc::unknown_workflow));
  // Several writes of one workflow in one batch continue each other.
  std::vector<journal_write> chained{steps("a", 2, 2), steps("a", 3, 5)};
  REQUIRE_FALSE(f.store->append(chained));
  CHECK(wf_seqs(f.store->read("a")) == seq_list{1, 2, 3, 4, 5});
}

TEST_CASE("the events of one write are consecutive events of one workflow", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> first{start("a"), start("b")};
  REQUIRE_FALSE(f.store->append(first));

  journal_write mixed;
  mixed.events = {event("a", 2), event("b", 2)};
  std::vector<journal_write> b1{mixed};
  auto err = f.store->append(b1);
  CHECK(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("one workflow ('a', then 'b')"));

  journal_write skipping;
  skipping.events = {event("a", 2), event("a", 4)};
  std::vector<journal_write> b2{steps("b", 2, 2), skipping};
  err = f.store->append(b2);
  CHECK(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("consecutive wf_seq (2, then 4)"));

  std::vector<journal_write> b3{steps("a", 0, 0)};
  err = f.store->append(b3);
  CHECK(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("wf_seq 0 is out of range"));

  CHECK(wf_seqs(f.store->read("a")) == seq_list{1});
  CHECK(wf_seqs(f.store->read("b")) == seq_list{1});
}

TEST_CASE("events of a workflow without a row are refused", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> orphan{steps("ghost", 1, 2)};
  auto err = f.store->append(orphan);
  CHECK(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("workflow 'ghost': has no row"));
  CHECK(wf_seqs(f.store->read("ghost")).empty());
  // The row may come in an earlier write of the same batch.
  std::vector<journal_write> row_first{with_row(row("ghost")), steps("ghost", 1, 2)};
  REQUIRE_FALSE(f.store->append(row_first));
  CHECK(wf_seqs(f.store->read("ghost")) == seq_list{1, 2});
}

TEST_CASE("an idempotency key belongs to one workflow and an empty one to none",
          "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> b1{start("a", "k1"), start("n1"), start("n2"), start("n3")};
  REQUIRE_FALSE(f.store->append(b1));
  CHECK(*f.store->find_key("k1") == "a");
  CHECK(*f.store->find_key("k2") == "");
  CHECK(*f.store->find_key("") == "");
  CHECK(f.store->workflow("n3")->idempotency_key == "");

  std::vector<journal_write> taken{start("b", "k1")};
  auto err = f.store->append(taken);
  REQUIRE(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("idempotency key 'k1' belongs to workflow 'a'"));
  CHECK(is(f.store->workflow("b").error(), errc::unknown_workflow));

  std::vector<journal_write> twice_in_one_batch{start("c", "k3"), start("d", "k3")};
  CHECK(is(f.store->append(twice_in_one_batch), errc::journal_write_failed));
  CHECK(*f.store->find_key("k3") == "");
  CHECK(is(f.store->workflow("c").error(), errc::unknown_workflow));

  // A row may keep its own key, or change it and free the old one.
  std::vector<journal_write> same_key{with_row(row("a", "k1", "parked"))};
  REQUIRE_FALSE(f.store->append(same_key));
  std::vector<journal_write> new_key{with_row(row("a", "k2", "parked")), start("b", "k1")};
  REQUIRE_FALSE(f.store->append(new_key));
  CHECK(*f.store->find_key("k1") == "b");
  CHECK(*f.store->find_key("k2") == "a");
}

TEST_CASE("a workflow's row is replaced by a row with its id", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> b1{start("a", "", 10)};
  REQUIRE_FALSE(f.store->append(b1));
  auto done = row("a", "", "completed", 10, 99);
  done.outcome = "ok";
  done.version = 3;
  std::vector<journal_write> b2{with_row(done)};
  REQUIRE_FALSE(f.store->append(b2));
  auto got = f.store->workflow("a");
  REQUIRE(got);
  CHECK(got->status == "completed");
  CHECK(got->outcome == "ok");
  CHECK(got->version == 3);
  CHECK(got->updated_ns == 99);
  CHECK(got->finished());

  auto unknown = f.store->workflow("nobody");
  REQUIRE_FALSE(unknown);
  CHECK(is(unknown.error(), errc::unknown_workflow));
  CHECK_THAT(message(unknown.error()), Contains("nobody"));

  std::vector<journal_write> odd{with_row(row("a", "", "sleeping"))};
  auto err = f.store->append(odd);
  CHECK(is(err, errc::journal_write_failed));
  CHECK_THAT(message(err), Contains("unknown status 'sleeping'"));
  CHECK(f.store->workflow("a")->status == "completed");
}

TEST_CASE("open_workflows lists the unfinished workflows, oldest first", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> b1{with_row(row("w1", "", "running", 30)),
                                with_row(row("w2", "", "parked", 10)),
                                with_row(row("w3", "", "completed", 20)),
                                with_row(row("w0", "", "running", 10)),
                                with_row(row("w4", "", "failed", 5))};
  REQUIRE_FALSE(f.store->append(b1));
  auto ids = [&] {
    std::vector<std::string> out;
    auto rows = f.store->open_workflows();
    REQUIRE(rows);
    for (const auto& r : *rows)
      out.push_back(r.id);
    return out;
  };
  CHECK(ids() == std::vector<std::string>{"w0", "w2", "w1"});
  std::vector<journal_write> b2{with_row(row("w0", "", "failed", 10, 50)),
                                with_row(row("w3", "", "running", 20, 50))};
  REQUIRE_FALSE(f.store->append(b2));
  CHECK(ids() == std::vector<std::string>{"w2", "w3", "w1"});
  CHECK(f.store->open_workflows()->front().status == "parked");
}

TEST_CASE("list_workflows pages through rows newest first, filtered by status",
          "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> b1{with_row(row("w1", "", "running", 30)),
                                with_row(row("w2", "", "parked", 10)),
                                with_row(row("w3", "", "completed", 20, 25)),
                                with_row(row("w0", "", "running", 10)),
                                with_row(row("w4", "", "failed", 5, 6)),
                                with_row(row("w5", "", "parked", 40))};
  REQUIRE_FALSE(f.store->append(b1));
  auto ids = [&](workflow_query q) {
    std::vector<std::string> out;
    auto rows = f.store->list_workflows(q);
    REQUIRE(rows);
    for (const auto& r : *rows)
      out.push_back(r.id);
    return out;
  };
  using ids_t = std::vector<std::string>;
  CHECK(ids(query("")) == ids_t{"w5", "w1", "w3", "w2", "w0", "w4"}); // (created_ns, id) descending
  CHECK(ids(query("parked")) == ids_t{"w5", "w2"});
  CHECK(ids(query("running")) == ids_t{"w1", "w0"});
  CHECK(ids(query("completed")) == ids_t{"w3"});
  CHECK(ids(query("dead_lettered")).empty());
  // pages of 2, each continuing after the last row of the one before
  auto q = query("", 2);
  CHECK(ids(q) == ids_t{"w5", "w1"});
  q.before_created_ns = 30;
  q.before_id = "w1";
  CHECK(ids(q) == ids_t{"w3", "w2"});
  q.before_created_ns = 10;
  q.before_id = "w2"; // same created_ns: the id breaks the tie
  CHECK(ids(q) == ids_t{"w0", "w4"});
  q.before_created_ns = 5;
  q.before_id = "w4";
  CHECK(ids(q).empty());
  q = query("running", 1);
  q.before_created_ns = 30;
  q.before_id = "w1";
  CHECK(ids(q) == ids_t{"w0"});
  // every field of a row comes back
  auto full = row("w9", "k9", "dead_lettered", 50, 60);
  full.version = 3;
  full.outcome = "exhausted";
  full.user = "alice";
  std::vector<journal_write> b2{with_row(full)};
  REQUIRE_FALSE(f.store->append(b2));
  auto got = f.store->list_workflows(query("dead_lettered"));
  REQUIRE(got);
  REQUIRE(got->size() == 1);
  const auto& r = got->front();
  CHECK(std::tie(r.id, r.definition, r.version, r.idempotency_key, r.status, r.outcome,
                 r.created_ns, r.updated_ns, r.user)
        == std::tie(full.id, full.definition, full.version, full.idempotency_key, full.status,
                    full.outcome, full.created_ns, full.updated_ns, full.user));
}

TEST_CASE("list_workflows refuses an unknown status and a zero limit", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  auto bad = f.store->list_workflows(query("sleeping"));
  REQUIRE_FALSE(bad);
  CHECK(is(bad.error(), errc::invalid_input));
  CHECK_THAT(message(bad.error()), Contains("unknown status 'sleeping'"));
  auto zero = f.store->list_workflows(query("", 0));
  REQUIRE_FALSE(zero);
  CHECK(is(zero.error(), errc::invalid_input));
  CHECK_THAT(message(zero.error()), Contains("limit must be at least 1"));
}

TEST_CASE("count_workflows counts the rows in each status", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  auto counts = [&] {
    auto n = f.store->count_workflows();
    REQUIRE(n);
    return std::vector<uint64_t>{n->running, n->parked, n->dead_lettered, n->completed,
                                 n->failed, n->total()};
  };
  CHECK(counts() == std::vector<uint64_t>{0, 0, 0, 0, 0, 0});
  std::vector<journal_write> b1{with_row(row("a", "", "running", 1)),
                                with_row(row("b", "", "running", 2)),
                                with_row(row("c", "", "parked", 3)),
                                with_row(row("d", "", "dead_lettered", 4)),
                                with_row(row("e", "", "completed", 5, 6)),
                                with_row(row("f", "", "failed", 6, 7))};
  REQUIRE_FALSE(f.store->append(b1));
  CHECK(counts() == std::vector<uint64_t>{2, 1, 1, 1, 1, 6});
  std::vector<journal_write> b2{with_row(row("a", "", "completed", 1, 9)),
                                with_row(row("b", "", "running", 2, 9)), // same status
                                start("g", "", 8)};
  REQUIRE_FALSE(f.store->append(b2));
  CHECK(counts() == std::vector<uint64_t>{2, 1, 1, 2, 1, 7});
  // A refused batch counts for nothing, even the rows before its fault.
  std::vector<journal_write> refused{with_row(row("c", "", "failed", 3, 9)), start("h"),
                                     steps("g", 5, 5)};
  REQUIRE(f.store->append(refused));
  CHECK(counts() == std::vector<uint64_t>{2, 1, 1, 2, 1, 7});
  CHECK(*f.store->purge(100, 0) == 3);
  CHECK(counts() == std::vector<uint64_t>{2, 1, 1, 0, 0, 4});
}

TEST_CASE("no workflow row is created after created_ns_bound", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  auto bound = [&] {
    auto b = f.store->created_ns_bound();
    REQUIRE(b);
    return *b;
  };
  CHECK(bound() == 0);
  std::vector<journal_write> b1{with_row(row("w1", "", "running", 30)),
                                with_row(row("w2", "", "completed", 40, 45)),
                                with_row(row("w3", "", "parked", 20))};
  REQUIRE_FALSE(f.store->append(b1));
  CHECK(bound() >= 40); // the newest row, finished
  CHECK(bound() <= 45); // no later than anything the journal has seen
  std::vector<journal_write> b2{with_row(row("w4", "", "running", 100))};
  REQUIRE_FALSE(f.store->append(b2));
  CHECK(bound() == 100);
}

TEST_CASE("last_seq is the newest committed event's seq", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  auto last = [&] {
    auto s = f.store->last_seq();
    REQUIRE(s);
    return *s;
  };
  CHECK(last() == 0);
  std::vector<journal_write> b1{start("a"), start("b"), steps("a", 2, 4)};
  REQUIRE_FALSE(f.store->append(b1));
  CHECK(last() == seqs(b1).back());
  CHECK(last() == 5);
  std::vector<journal_write> refused{steps("a", 9, 9)}; // skips wf_seq 5: nothing commits
  REQUIRE(f.store->append(refused));
  CHECK(last() == 5);
  std::vector<journal_write> b2{steps("b", 2, 2)};
  REQUIRE_FALSE(f.store->append(b2));
  CHECK(last() == 6);
}

TEST_CASE("a snapshot replaces an older one and never a newer one", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  auto put = [&](uint64_t wf_seq, const std::string& state) {
    journal_write w;
    w.snapshot.push_back({"a", wf_seq, state});
    std::vector<journal_write> batch{w};
    REQUIRE_FALSE(f.store->append(batch));
  };
  auto latest = [&] {
    auto s = f.store->snapshot("a");
    REQUIRE(s);
    REQUIRE(s->size() == 1);
    return std::make_pair(s->front().wf_seq, s->front().state);
  };
  CHECK(f.store->snapshot("a")->empty());
  put(3, "s3");
  CHECK(latest() == std::make_pair(uint64_t{3}, std::string{"s3"}));
  put(5, "s5");
  CHECK(latest() == std::make_pair(uint64_t{5}, std::string{"s5"}));
  put(4, "s4");
  CHECK(latest() == std::make_pair(uint64_t{5}, std::string{"s5"}));
  put(5, "s5 again");
  CHECK(latest() == std::make_pair(uint64_t{5}, std::string{"s5 again"}));
  CHECK(f.store->snapshot("b")->empty());
}

TEST_CASE("the first effect recorded under a key wins", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  journal_write w1;
  w1.effect.push_back({"a/n#1/mail", "a", R"("first")", 1});
  journal_write w2;
  w2.effect.push_back({"a/n#1/mail", "a", R"("same batch")", 2});
  std::vector<journal_write> b1{w1, w2};
  REQUIRE_FALSE(f.store->append(b1));
  journal_write w3;
  w3.effect.push_back({"a/n#1/mail", "a", R"("later batch")", 3});
  w3.effect.push_back({"a/n#2/mail", "a", R"("other key")", 4});
  std::vector<journal_write> b2{w3};
  REQUIRE_FALSE(f.store->append(b2));
  auto first = f.store->effect("a/n#1/mail");
  REQUIRE(first);
  REQUIRE(first->size() == 1);
  CHECK(first->front().result == R"("first")");
  CHECK(first->front().at_ns == 1);
  REQUIRE(f.store->effect("a/n#2/mail")->size() == 1);
  CHECK(f.store->effect("a/n#2/mail")->front().result == R"("other key")");
  CHECK(f.store->effect("a/n#3/mail")->empty());
}

TEST_CASE("effects_of lists one workflow's effects by time, then key", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  journal_write w;
  w.effect.push_back({"a/n#2/mail", "a", R"("late")", 9});
  w.effect.push_back({"b/n#1/mail", "b", R"("other workflow")", 1});
  w.effect.push_back({"a/n#1/ship", "a", R"("tie, second by key")", 5});
  w.effect.push_back({"a/n#1/charge", "a", R"("tie, first by key")", 5});
  w.effect.push_back({"a/n#1/charge", "a", R"("not the first write")", 2});
  std::vector<journal_write> batch{w};
  REQUIRE_FALSE(f.store->append(batch));
  auto a = f.store->effects_of("a");
  REQUIRE(a);
  REQUIRE(a->size() == 3);
  CHECK((*a)[0].key == "a/n#1/charge");
  CHECK((*a)[0].result == R"("tie, first by key")"); // the first write of a key wins
  CHECK((*a)[0].workflow_id == "a");
  CHECK((*a)[1].key == "a/n#1/ship");
  CHECK((*a)[2].key == "a/n#2/mail");
  CHECK((*a)[2].at_ns == 9);
  CHECK(f.store->effects_of("b")->size() == 1);
  CHECK(f.store->effects_of("nobody")->empty());
}

TEST_CASE("dead letters are kept in the order they came", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  for (const char* id : {"c", "a", "b"}) {
    journal_write w;
    w.dead_letter.push_back({id, "n", "exhausted", std::string{"reason "} + id, 5});
    std::vector<journal_write> batch{w};
    REQUIRE_FALSE(f.store->append(batch));
  }
  auto dead = f.store->dead_letters();
  REQUIRE(dead);
  std::vector<std::string> ids;
  for (const auto& d : *dead)
    ids.push_back(d.workflow_id);
  CHECK(ids == std::vector<std::string>{"c", "a", "b"});
  CHECK(dead->back().reason == "reason b");
}

TEST_CASE("purge removes finished workflows updated before the cutoff, with their records",
          "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  // Every workflow starts, then its row gets a status and an update time.
  auto settle = [&](const std::string& id, const std::string& key, const std::string& status,
                    int64_t updated) {
    auto w = start(id, key);
    w.workflow.front() = row(id, key, status, 0, updated);
    w.snapshot.push_back({id, 1, "state of " + id});
    w.effect.push_back({id + "/n#1/e", id, "1", 1});
    if (status == "failed")
      w.dead_letter.push_back({id, "n", "exhausted", "gave up", updated});
    return w;
  };
  std::vector<journal_write> batch{
    settle("running_old", "", "running", 10), settle("parked_old", "", "parked", 10),
    settle("failed_old", "", "failed", 50),   settle("edge", "", "completed", 200),
    settle("done_new", "", "completed", 300), settle("done_old", "k-old", "completed", 100)};
  REQUIRE_FALSE(f.store->append(batch));
  auto highest = seqs(batch).back(); // done_old's event

  auto purged = f.store->purge(200, 0);
  REQUIRE(purged);
  CHECK(*purged == 2);
  for (const char* gone : {"failed_old", "done_old"}) {
    CAPTURE(gone);
    CHECK(is(f.store->workflow(gone).error(), errc::unknown_workflow));
    CHECK(wf_seqs(f.store->read(gone)).empty());
    CHECK(f.store->snapshot(gone)->empty());
    CHECK(f.store->effect(std::string{gone} + "/n#1/e")->empty());
    CHECK(f.store->effects_of(gone)->empty());
  }
  CHECK(*f.store->find_key("k-old") == "");
  for (const char* kept : {"running_old", "parked_old", "edge", "done_new"}) {
    CAPTURE(kept);
    CHECK(f.store->workflow(kept));
    CHECK(wf_seqs(f.store->read(kept)) == seq_list{1});
    CHECK(f.store->snapshot(kept)->size() == 1);
    CHECK(f.store->effect(std::string{kept} + "/n#1/e")->size() == 1);
    CHECK(f.store->effects_of(kept)->size() == 1);
  }
  REQUIRE(f.store->dead_letters()->size() == 1);
  CHECK(f.store->dead_letters()->front().workflow_id == "failed_old");
  CHECK(*f.store->purge(200, 0) == 0);

  // A purged id and key may start again; seqs are never reused.
  std::vector<journal_write> again{start("done_old", "k-old")};
  REQUIRE_FALSE(f.store->append(again));
  CHECK(again[0].events[0].seq > highest);
  CHECK(*f.store->find_key("k-old") == "done_old");
  CHECK(*f.store->purge(1000, 0) == 2); // edge and done_new
}

TEST_CASE("a purge with a limit takes the oldest finished workflows first, whole",
          "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  std::vector<journal_write> batch;
  for (int i = 0; i < 5; ++i) { // w4 updated first ... w0 last, all finished
    auto id = "w" + std::to_string(i);
    auto w = start(id);
    w.workflow.front() = row(id, "", "completed", 0, 10 * (5 - i) + 1);
    w.effect.push_back({id + "/n#1/e", id, "1", 1});
    batch.push_back(std::move(w));
  }
  std::reverse(batch.begin(), batch.end()); // appended oldest first: the order is by time
  REQUIRE_FALSE(f.store->append(batch));
  auto present = [&] {
    std::vector<std::string> ids;
    for (int i = 0; i < 5; ++i)
      if (f.store->workflow("w" + std::to_string(i)))
        ids.push_back("w" + std::to_string(i));
    return ids;
  };
  CHECK(*f.store->purge(100, 2) == 2);
  CHECK(present() == std::vector<std::string>{"w0", "w1", "w2"}); // w4, w3 were the oldest
  CHECK(f.store->effect("w4/n#1/e")->empty());
  CHECK(wf_seqs(f.store->read("w3")).empty());
  CHECK(f.store->effect("w2/n#1/e")->size() == 1);
  CHECK(*f.store->purge(100, 2) == 2);
  CHECK(*f.store->purge(100, 2) == 1); // fewer than the limit: none left
  CHECK(*f.store->purge(100, 2) == 0);
  CHECK(present().empty());
  auto n = f.store->count_workflows();
  REQUIRE(n);
  CHECK(n->total() == 0);
}

TEST_CASE("readers run concurrently with the appender", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  constexpr uint64_t n = 300;
  std::vector<journal_write> first{start("a"), start("b")};
  REQUIRE_FALSE(f.store->append(first));
  std::atomic<bool> bad{false};
  std::thread appender{[&] {
    for (uint64_t i = 2; i <= n; ++i) {
      std::vector<journal_write> batch{steps("a", i, i), steps("b", i, i)};
      if (f.store->append(batch))
        bad = true;
    }
  }};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t)
    readers.emplace_back([&] {
      for (int k = 0; k < 300; ++k) {
        auto rs = f.store->read(k % 2 ? "a" : "b");
        auto row = f.store->workflow("a");
        if (!rs || !row)
          bad = true;
        else
          for (size_t i = 0; i < rs->size(); ++i)
            if ((*rs)[i].wf_seq != i + 1)
              bad = true;
      }
    });
  appender.join();
  for (auto& r : readers)
    r.join();
  CHECK_FALSE(bad);
  CHECK(f.store->read("a")->size() == n);
  CHECK(f.store->read("b")->back().seq == 2 * n);
}

namespace {

/// Overrides nothing: must behave exactly like the wrapped store.
struct plain_wrapper : forwarding_journal {
  using forwarding_journal::forwarding_journal;
};

/// Breaks only read(); everything else reaches the wrapped store.
struct unreadable : forwarding_journal {
  using forwarding_journal::forwarding_journal;
  caf::expected<std::vector<journal_record>> read(const std::string&, uint64_t) const override {
    return caf::make_error(caf::sec::runtime_error, "bad sector");
  }
};

} // namespace

TEST_CASE("forwarding_journal forwards every call to the wrapped store", "[persistence]") {
  auto kind = GENERATE(as<std::string>{}, "memory", "sqlite");
  CAPTURE(kind);
  store_fixture f{kind};
  plain_wrapper outer{f.store};
  CHECK(outer.target() == f.store);
  CHECK(outer.blocks() == (kind == "sqlite")); // SQLite waits for fsyncs
  auto w = start("a", "k", 5);
  w.workflow.front().status = "completed";
  w.snapshot.push_back({"a", 1, "s"});
  w.effect.push_back({"a/e", "a", "r", 1});
  w.dead_letter.push_back({"a", "n", "o", "r", 1});
  std::vector<journal_write> batch{w, start("b", "", 6)};
  REQUIRE_FALSE(outer.append(batch));
  CHECK(seqs(batch) == seq_list{1, 2});
  CHECK(wf_seqs(f.store->read("a")) == seq_list{1});
  CHECK(wf_seqs(outer.read("a", 0)) == seq_list{1});
  CHECK(outer.workflow("a")->status == "completed");
  CHECK(*outer.find_key("k") == "a");
  CHECK(outer.open_workflows()->size() == 1);
  CHECK(outer.snapshot("a")->size() == 1);
  CHECK(outer.effect("a/e")->size() == 1);
  CHECK(outer.effects_of("a")->size() == 1);
  CHECK(outer.dead_letters()->size() == 1);
  CHECK(outer.list_workflows(query(""))->size() == 2);
  CHECK(outer.count_workflows()->completed == 1);
  CHECK(*outer.purge(100, 0) == 1);
  CHECK(is(f.store->workflow("a").error(), errc::unknown_workflow));

  unreadable broken{f.store};
  std::vector<journal_write> more{steps("b", 2, 2)};
  REQUIRE_FALSE(broken.append(more));
  CHECK(more[0].events[0].seq == 3);
  CHECK_FALSE(broken.read("b", 0));
  CHECK(f.store->read("b")->size() == 2);
}
