// The change feed behind runtime::watch: versions, the workflows each
// commit touched, what a watcher too far behind is told, and waking.
// Waits that must not block use a zero timeout; the ones that must end
// are ended by the call under test (publish, wake, close).
#include <catch2/catch.hpp>

#include <future>
#include <string>
#include <vector>

#include "runtime/change_feed.hpp"
#include "troupe/journal.hpp"

using namespace troupe;
using namespace std::chrono_literals;
using ids = std::vector<std::string>;

TEST_CASE("the change feed counts commits and lists what they touched", "[runtime]") {
  change_feed feed;
  auto none = feed.wait(0, 0ms);
  CHECK(none.version == 0);
  CHECK(none.workflows.empty());
  CHECK_FALSE(none.all);
  feed.publish({"a", "b"}, false);
  feed.publish({"b", "c"}, false);
  auto both = feed.wait(0, 0ms);
  CHECK(both.version == 2);
  CHECK(both.workflows == ids{"a", "b", "c"}); // each once, in the order of their changes
  CHECK(feed.wait(1, 0ms).workflows == ids{"b", "c"});
  CHECK(feed.wait(2, 0ms).workflows.empty());
  CHECK(feed.wait(7, 0ms).all); // a version this feed never had
}

TEST_CASE("a watcher behind the kept changes, or behind a purge, is told everything changed",
          "[runtime]") {
  change_feed feed;
  feed.publish({"first"}, false);
  for (size_t i = 0; i < change_feed::kept; ++i)
    feed.publish({"w" + std::to_string(i)}, false);
  CHECK(feed.wait(0, 0ms).all); // "first" is no longer kept
  auto recent = feed.wait(1, 0ms);
  CHECK_FALSE(recent.all);
  CHECK(recent.workflows.size() == change_feed::kept);
  auto v = recent.version;
  feed.publish({}, true); // a purge
  CHECK(feed.wait(v, 0ms).all);
  CHECK_FALSE(feed.wait(v + 1, 0ms).all);
}

TEST_CASE("a waiting watcher is answered by a commit, a wake-up or the end", "[runtime]") {
  change_feed feed;
  auto by_commit = std::async(std::launch::async, [&] { return feed.wait(0, 60s); });
  feed.publish({"x"}, false);
  CHECK(by_commit.get().workflows == ids{"x"});

  auto by_wake = std::async(std::launch::async, [&] { return feed.wait(1, 60s); });
  // wake() only ends waits already in progress: repeat until this one ended
  while (by_wake.wait_for(0ms) != std::future_status::ready)
    feed.wake();
  CHECK(by_wake.get().version == 1);

  feed.close();
  CHECK(feed.wait(1, 60s).version == 1); // at once, closed
}

TEST_CASE("feed_journal publishes committed appends and purges, not refused ones",
          "[runtime]") {
  auto feed = std::make_shared<change_feed>();
  feed_journal j{make_memory_journal(), feed};
  workflow_row row;
  row.id = "w";
  row.definition = "d";
  journal_record e;
  e.workflow_id = "w";
  e.wf_seq = 1;
  e.kind = "workflow_started";
  e.payload = "{}";
  std::vector<journal_write> batch(1);
  batch[0].workflow = {row};
  batch[0].events = {e};
  REQUIRE_FALSE(j.append(batch));
  auto c = feed->wait(0, 0ms);
  CHECK(c.version == 1);
  CHECK(c.workflows == ids{"w"});
  CHECK(c.last_seq == batch[0].events[0].seq);
  CHECK(c.last_seq == 1);
  std::vector<journal_write> again = batch; // repeats wf_seq 1: refused
  CHECK(j.append(again));
  CHECK(feed->wait(1, 0ms).version == 1);
  row.status = "completed";
  std::vector<journal_write> done(1);
  done[0].workflow = {row};
  REQUIRE_FALSE(j.append(done));
  CHECK(*j.purge(1, 0) == 1);
  auto purged = feed->wait(2, 0ms);
  CHECK(purged.version == 3);
  CHECK(purged.all);
}

TEST_CASE("feed_journal starts from the store's newest event seq", "[runtime]") {
  auto store = make_memory_journal();
  workflow_row row;
  row.id = "w";
  row.definition = "d";
  std::vector<journal_write> batch(1);
  batch[0].workflow = {row};
  for (uint64_t i = 1; i <= 3; ++i) {
    journal_record e;
    e.workflow_id = "w";
    e.wf_seq = i;
    e.kind = "step_scheduled";
    e.payload = "{}";
    batch[0].events.push_back(e);
  }
  REQUIRE_FALSE(store->append(batch));
  auto feed = std::make_shared<change_feed>();
  feed_journal j{store, feed}; // a runtime opening a journal with history
  auto c = feed->wait(0, 0ms);
  CHECK(c.version == 0);
  CHECK(c.last_seq == 3);
}
