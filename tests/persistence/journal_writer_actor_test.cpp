// The journal writer under CAF's deterministic scheduler: group commit,
// batch limits, write order, failed batches, effects and purge.
#include <memory>
#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "actors/atoms.hpp"
#include "persistence/journal_writer_actor.hpp"
#include "troupe/errors.hpp"
#include "troupe/journal.hpp"

#include "support/caf_catch.hpp" // last: defines expect(), _, ...

using namespace troupe;
using troupe::persistence::spawn_journal_writer;
using Catch::Matchers::Contains;

namespace {

/// Counts store calls and their sizes; fails the calls numbered in `fail_calls`
/// (1-based) with `failure`, without touching the wrapped store.
class counting_journal : public forwarding_journal {
public:
  using forwarding_journal::forwarding_journal;

  caf::error append(std::vector<journal_write>& batch) override {
    batch_sizes.push_back(batch.size());
    if (fail_calls.count(batch_sizes.size()) > 0)
      return failure;
    return forwarding_journal::append(batch);
  }

  std::vector<size_t> batch_sizes;
  std::set<size_t> fail_calls;
  caf::error failure = caf::make_error(caf::sec::runtime_error, "disk full");
};

// The first event of workflow "wf-<n>", with its row: writes for different
// workflows, so a failed batch leaves no gap behind for the later ones.
journal_write rec(uint64_t n) {
  journal_record r;
  r.workflow_id = "wf-" + std::to_string(n);
  r.wf_seq = 1;
  r.kind = "timer_fired";
  r.at_ns = static_cast<int64_t>(n);
  r.payload = R"({"timer":)" + std::to_string(n) + R"(,"v":1})";
  journal_write w;
  w.workflow.push_back({r.workflow_id, "d", 1, "", "running", "", 1, 1, ""});
  w.events.push_back(std::move(r));
  return w;
}

/// What one append request got back.
struct ack {
  uint64_t seq = 0;
  caf::error err;
};

struct writer_fixture : test_coordinator_fixture<> { // global in CAF 0.17
  std::shared_ptr<journal_store> memory = make_memory_journal();
  std::shared_ptr<counting_journal> store = std::make_shared<counting_journal>(memory);

  /// Sends `n` append requests (wf_seq first, first+1, ...) before the
  /// writer runs, runs the scheduler, and collects the replies in order.
  std::vector<ack> append_all(const caf::actor& writer, uint64_t first, size_t n) {
    using handle = decltype(self->request(writer, caf::infinite, append_atom::value, rec(1)));
    std::vector<handle> pending;
    for (size_t i = 0; i < n; ++i)
      pending.push_back(self->request(writer, caf::infinite, append_atom::value, rec(first + i)));
    sched.run();
    std::vector<ack> out;
    for (auto& h : pending) {
      ack a;
      h.receive([&a](uint64_t seq) { a.seq = seq; }, [&a](caf::error& err) { a.err = err; });
      out.push_back(std::move(a));
    }
    return out;
  }

  /// The n of every stored "wf-<n>", in the order of their global seq.
  std::vector<uint64_t> stored_wf_seqs() {
    std::vector<std::pair<uint64_t, uint64_t>> by_seq;
    for (uint64_t n = 1; n <= 16; ++n) {
      auto records = memory->read("wf-" + std::to_string(n));
      REQUIRE(records);
      for (const auto& r : *records)
        by_seq.emplace_back(r.seq, n);
    }
    std::sort(by_seq.begin(), by_seq.end());
    std::vector<uint64_t> out;
    for (auto& [seq, n] : by_seq)
      out.push_back(n);
    return out;
  }
};

} // namespace

TEST_CASE_METHOD(writer_fixture, "appends queued before the writer runs commit in one call") {
  auto writer = spawn_journal_writer(sys, store, 256);
  sched.run();
  auto acks = append_all(writer, 1, 4);
  CHECK(store->batch_sizes == std::vector<size_t>{4});
  REQUIRE(acks.size() == 4);
  for (size_t i = 0; i < acks.size(); ++i) {
    CHECK_FALSE(acks[i].err);
    CHECK(acks[i].seq == i + 1);
  }
  // A later append starts a new batch.
  auto later = append_all(writer, 5, 1);
  CHECK(store->batch_sizes == std::vector<size_t>{4, 1});
  CHECK(later[0].seq == 5);
  CHECK(stored_wf_seqs() == std::vector<uint64_t>{1, 2, 3, 4, 5});
}

TEST_CASE_METHOD(writer_fixture, "max_batch bounds each store call and keeps order") {
  auto writer = spawn_journal_writer(sys, store, 2);
  sched.run();
  auto acks = append_all(writer, 1, 5);
  CHECK(store->batch_sizes == std::vector<size_t>{2, 2, 1});
  for (size_t i = 0; i < acks.size(); ++i) {
    CHECK_FALSE(acks[i].err);
    CHECK(acks[i].seq == i + 1);
  }
  CHECK(stored_wf_seqs() == std::vector<uint64_t>{1, 2, 3, 4, 5});
}

TEST_CASE_METHOD(writer_fixture, "max_batch 0 is taken as 1") {
  auto writer = spawn_journal_writer(sys, store, 0);
  sched.run();
  auto acks = append_all(writer, 1, 3);
  CHECK(store->batch_sizes == std::vector<size_t>{1, 1, 1});
  CHECK(acks[2].seq == 3);
}

TEST_CASE_METHOD(writer_fixture, "a failed batch fails all its requests, later batches succeed") {
  store->fail_calls = {2};
  auto writer = spawn_journal_writer(sys, store, 2);
  sched.run();
  auto acks = append_all(writer, 1, 5);
  CHECK(store->batch_sizes == std::vector<size_t>{2, 2, 1});
  CHECK(acks[0].seq == 1);
  CHECK(acks[1].seq == 2);
  for (size_t i : {2, 3}) {
    INFO("request " << i);
    CHECK(acks[i].seq == 0);
    CHECK(is(acks[i].err, errc::journal_write_failed));
    CHECK_THAT(describe(acks[i].err), Contains("append of 2 writes failed"));
    CHECK_THAT(describe(acks[i].err), Contains("disk full"));
  }
  CHECK_FALSE(acks[4].err);
  CHECK(acks[4].seq == 3); // the failed batch left nothing behind
  CHECK(stored_wf_seqs() == std::vector<uint64_t>{1, 2, 5});
  // The writer keeps going after the failure.
  auto again = append_all(writer, 6, 2);
  CHECK(store->batch_sizes == std::vector<size_t>{2, 2, 1, 2});
  CHECK(again[0].seq == 4);
  CHECK(again[1].seq == 5);
}

TEST_CASE_METHOD(writer_fixture, "a troupe error from the store is passed through unchanged") {
  store->fail_calls = {1};
  store->failure = make_error(errc::journal_write_failed, "sqlite: disk I/O error (10)");
  auto writer = spawn_journal_writer(sys, store, 8);
  sched.run();
  auto acks = append_all(writer, 1, 3);
  CHECK(store->batch_sizes == std::vector<size_t>{3});
  for (const auto& a : acks) {
    CHECK(a.err == store->failure);
    CHECK(describe(a.err) == describe(store->failure));
  }
  CHECK(stored_wf_seqs().empty());
}

TEST_CASE_METHOD(writer_fixture, "a stray flush with nothing queued is harmless") {
  auto writer = spawn_journal_writer(sys, store, 4);
  sched.run();
  caf::anon_send(writer, flush_atom::value);
  sched.run();
  CHECK(store->batch_sizes.empty());
  auto acks = append_all(writer, 1, 2);
  CHECK(store->batch_sizes == std::vector<size_t>{2});
  CHECK(acks[1].seq == 2);
}

TEST_CASE_METHOD(writer_fixture, "an effect is recorded once: a second write of its key gets the "
                                 "first result") {
  auto writer = spawn_journal_writer(sys, store, 8);
  sched.run();
  auto lookup = [&] {
    auto h = self->request(writer, caf::infinite, effect_atom::value, std::string{"k/charge"});
    sched.run();
    std::vector<effect_record> got;
    h.receive([&](std::vector<effect_record>& v) { got = std::move(v); },
              [](caf::error& e) { FAIL(describe(e)); });
    return got;
  };
  CHECK(lookup().empty());
  auto record = [&](std::string result) {
    auto h = self->request(writer, caf::infinite, effect_atom::value,
                           effect_record{"k/charge", "wf-1", std::move(result), 7});
    sched.run();
    effect_record got;
    h.receive([&](effect_record& r) { got = std::move(r); },
              [](caf::error& e) { FAIL(describe(e)); });
    return got;
  };
  CHECK(record(R"({"receipt":1})").result == R"({"receipt":1})");
  CHECK(record(R"({"receipt":2})").result == R"({"receipt":1})"); // the first one wins
  auto found = lookup();
  REQUIRE(found.size() == 1);
  CHECK(found[0].result == R"({"receipt":1})");
  CHECK(store->batch_sizes == std::vector<size_t>{1, 1});
}

TEST_CASE_METHOD(writer_fixture, "a failed effect write is answered with the journal's error") {
  store->fail_calls = {1};
  auto writer = spawn_journal_writer(sys, store, 8);
  sched.run();
  auto h = self->request(writer, caf::infinite, effect_atom::value,
                         effect_record{"k/charge", "wf-1", "{}", 7});
  sched.run();
  caf::error err;
  h.receive([](effect_record&) { FAIL("recorded"); }, [&](caf::error& e) { err = e; });
  CHECK(is(err, errc::journal_write_failed));
  CHECK(memory->effect("k/charge")->empty());
}

TEST_CASE_METHOD(writer_fixture, "purge through the writer removes finished workflows only") {
  auto writer = spawn_journal_writer(sys, store, 8);
  sched.run();
  journal_write done = rec(1);
  done.workflow[0] = {"wf-1", "d", 1, "", "completed", "ok", 1, 10, ""};
  journal_write open = rec(2);
  open.workflow[0].updated_ns = 10;
  for (auto* w : {&done, &open}) {
    auto h = self->request(writer, caf::infinite, append_atom::value, *w);
    sched.run();
    h.receive([](uint64_t) {}, [](caf::error& e) { FAIL(describe(e)); });
  }
  auto h = self->request(writer, caf::infinite, purge_atom::value, int64_t{11});
  sched.run();
  uint64_t purged = 0;
  h.receive([&](uint64_t n) { purged = n; }, [](caf::error& e) { FAIL(describe(e)); });
  CHECK(purged == 1);
  CHECK(memory->read("wf-1")->empty());
  CHECK(memory->read("wf-2")->size() == 1);
}

TEST_CASE_METHOD(writer_fixture, "the commit hook takes each committed batch, never a failed one") {
  store->fail_calls = {2};
  std::vector<std::vector<journal_write>> handed;
  auto hook = [&handed](std::vector<journal_write>& batch) {
    handed.push_back(std::move(batch)); // taking the writes must not change the answers
    batch.clear();
  };
  auto writer = spawn_journal_writer(sys, store, 2, false, nullptr, hook);
  sched.run();
  auto acks = append_all(writer, 1, 5);
  CHECK(store->batch_sizes == std::vector<size_t>{2, 2, 1});
  CHECK(acks[0].seq == 1);
  CHECK(acks[1].seq == 2);
  CHECK(is(acks[2].err, errc::journal_write_failed));
  CHECK(acks[4].seq == 3);
  REQUIRE(handed.size() == 2); // the failed second batch is not
  REQUIRE(handed[0].size() == 2);
  CHECK(handed[0][0].events.at(0).workflow_id == "wf-1");
  CHECK(handed[0][1].events.at(0).seq == 2); // as committed: seq assigned
  REQUIRE(handed[1].size() == 1);
  CHECK(handed[1][0].events.at(0).workflow_id == "wf-5");
  CHECK(handed[1][0].workflow.at(0).id == "wf-5");
  auto h = self->request(writer, caf::infinite, effect_atom::value,
                         effect_record{"k/charge", "wf-1", R"({"receipt":1})", 7});
  sched.run();
  effect_record got;
  h.receive([&](effect_record& r) { got = std::move(r); },
            [](caf::error& e) { FAIL(describe(e)); });
  CHECK(got.result == R"({"receipt":1})");
  REQUIRE(handed.size() == 3);
  CHECK(handed[2].at(0).effect.at(0).key == "k/charge");
}
