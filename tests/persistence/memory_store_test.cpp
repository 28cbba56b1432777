// The in-memory journal store and the forwarding_journal seam.
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <caf/sec.hpp>
#include <catch2/catch.hpp>

#include "troupe/journal.hpp"

using namespace troupe;

namespace {

journal_record rec(const std::string& id, uint64_t wf_seq, std::string payload = "{}") {
  journal_record r;
  r.workflow_id = id;
  r.wf_seq = wf_seq;
  r.kind = "timer_fired";
  r.at_ns = static_cast<int64_t>(wf_seq) * 10;
  r.payload = std::move(payload);
  return r;
}

std::vector<uint64_t> wf_seqs(const std::vector<journal_record>& rs) {
  std::vector<uint64_t> out;
  for (const auto& r : rs)
    out.push_back(r.wf_seq);
  return out;
}

std::vector<uint64_t> seqs(const std::vector<journal_record>& rs) {
  std::vector<uint64_t> out;
  for (const auto& r : rs)
    out.push_back(r.seq);
  return out;
}

} // namespace

TEST_CASE("memory journal assigns global seqs from 1 in append order") {
  auto store = make_memory_journal();
  std::vector<journal_record> first{rec("a", 1), rec("b", 1), rec("a", 2)};
  REQUIRE_FALSE(store->append(first));
  CHECK(seqs(first) == std::vector<uint64_t>{1, 2, 3});
  std::vector<journal_record> second{rec("b", 2), rec("a", 3)};
  REQUIRE_FALSE(store->append(second));
  CHECK(seqs(second) == std::vector<uint64_t>{4, 5});
  std::vector<journal_record> empty;
  REQUIRE_FALSE(store->append(empty));
  std::vector<journal_record> third{rec("c", 1)};
  REQUIRE_FALSE(store->append(third));
  CHECK(third[0].seq == 6);
}

TEST_CASE("memory journal reads one workflow's records in wf_seq order") {
  auto store = make_memory_journal();
  std::vector<journal_record> b1{rec("a", 1, R"({"x":"ü"})"), rec("b", 1), rec("a", 2)};
  std::vector<journal_record> b2{rec("b", 2), rec("a", 4), rec("a", 3)};
  REQUIRE_FALSE(store->append(b1));
  REQUIRE_FALSE(store->append(b2));
  auto a = store->read("a");
  REQUIRE(a);
  CHECK(wf_seqs(*a) == std::vector<uint64_t>{1, 2, 3, 4});
  CHECK(seqs(*a) == std::vector<uint64_t>{1, 3, 6, 5});
  CHECK((*a)[0].payload == R"({"x":"ü"})");
  CHECK((*a)[0].kind == "timer_fired");
  CHECK((*a)[1].at_ns == 20);
  auto b = store->read("b");
  REQUIRE(b);
  CHECK(wf_seqs(*b) == std::vector<uint64_t>{1, 2});
  for (const auto& r : *b)
    CHECK(r.workflow_id == "b");
}

TEST_CASE("memory journal: reading an unknown workflow gives no records") {
  auto store = make_memory_journal();
  auto none = store->read("nobody");
  REQUIRE(none);
  CHECK(none->empty());
  std::vector<journal_record> batch{rec("a", 1)};
  REQUIRE_FALSE(store->append(batch));
  none = store->read("nobody");
  REQUIRE(none);
  CHECK(none->empty());
}

TEST_CASE("memory journal: readers run concurrently with the appender") {
  auto store = make_memory_journal();
  constexpr uint64_t n = 2000;
  std::atomic<bool> bad{false};
  std::thread appender{[&] {
    for (uint64_t i = 1; i <= n; ++i) {
      std::vector<journal_record> batch{rec("a", i), rec("b", i)};
      if (store->append(batch))
        bad = true;
    }
  }};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      for (int k = 0; k < 200; ++k) {
        auto rs = store->read("a");
        if (!rs)
          bad = true;
        else
          for (size_t i = 0; i < rs->size(); ++i)
            if ((*rs)[i].wf_seq != i + 1)
              bad = true;
      }
    });
  }
  appender.join();
  for (auto& r : readers)
    r.join();
  CHECK_FALSE(bad);
  CHECK(store->read("a")->size() == n);
  CHECK(store->read("b")->back().seq == 2 * n);
}

namespace {

/// Overrides nothing: must behave exactly like the wrapped store.
struct plain_wrapper : forwarding_journal {
  using forwarding_journal::forwarding_journal;
};

/// Breaks only read(); append() still reaches the wrapped store.
struct unreadable : forwarding_journal {
  using forwarding_journal::forwarding_journal;
  caf::expected<std::vector<journal_record>> read(const std::string&) const override {
    return caf::make_error(caf::sec::runtime_error, "bad sector");
  }
};

} // namespace

TEST_CASE("forwarding_journal forwards both calls to the wrapped store") {
  auto inner = make_memory_journal();
  plain_wrapper outer{inner};
  CHECK(outer.target() == inner);
  std::vector<journal_record> batch{rec("a", 1), rec("a", 2)};
  REQUIRE_FALSE(outer.append(batch));
  CHECK(seqs(batch) == std::vector<uint64_t>{1, 2});
  CHECK(wf_seqs(*inner->read("a")) == std::vector<uint64_t>{1, 2});
  CHECK(wf_seqs(*outer.read("a")) == std::vector<uint64_t>{1, 2});

  unreadable broken{inner};
  std::vector<journal_record> more{rec("a", 3)};
  REQUIRE_FALSE(broken.append(more));
  CHECK(more[0].seq == 3);
  CHECK_FALSE(broken.read("a"));
  CHECK(inner->read("a")->size() == 3);
}
