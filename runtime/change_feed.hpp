// The journal's commits as a change feed, for code watching a runtime
// (runtime::watch, the admin server's live channel). feed_journal wraps the
// runtime's journal store and publishes to the feed after each committed
// append or purge, on the journal writer's thread; watchers wait on any
// thread. Nothing here reads the journal: the feed only says which
// workflows changed, and watchers read what they want to know.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "troupe/journal.hpp"
#include "troupe/runtime.hpp"

namespace troupe {

/// Counts commits (the version) and remembers which workflows the most
/// recent ones touched. Thread-safe.
class change_feed {
public:
  /// Ids of at most this many (version, workflow) changes are kept; a
  /// watcher further behind is told that everything may have changed.
  static constexpr size_t kept = 1024;

  /// One more commit, touching `workflows` (or anything, with `all`);
  /// `last_seq`, if not 0, is the newest event's seq after it.
  void publish(const std::vector<std::string>& workflows, bool all, uint64_t last_seq = 0);
  /// The newest event's seq before the first commit (read from the store).
  void seed(uint64_t last_seq);
  /// What changed after `after`: at once if something did (or `after` is
  /// from another feed: beyond the version, answered with `all`), else
  /// once something does, wake() is called or `wait` passes.
  journal_changes wait(uint64_t after, std::chrono::milliseconds wait);
  /// Makes every wait() in progress return now.
  void wake();
  /// Makes every wait(), now and later, return at once (the runtime stopped).
  void close();

private:
  journal_changes since(uint64_t after) const; // mtx_ held

  mutable std::mutex mtx_;
  std::condition_variable changed_;
  uint64_t version_ = 0;
  uint64_t last_seq_ = 0;
  uint64_t wakes_ = 0;
  bool closed_ = false;
  /// Changes after this version are all in recent_ (oldest first).
  uint64_t complete_after_ = 0;
  std::deque<std::pair<uint64_t, std::string>> recent_;
};

/// A journal store that tells `feed` about each committed append and purge.
class feed_journal final : public forwarding_journal {
public:
  /// Seeds the feed's last_seq from the store (left 0 if it cannot say:
  /// a watcher then takes every event as new).
  feed_journal(std::shared_ptr<journal_store> target, std::shared_ptr<change_feed> feed);
  caf::error append(std::vector<journal_write>& batch) override;
  caf::expected<uint64_t> purge(int64_t before_ns, uint64_t limit) override;

private:
  std::shared_ptr<change_feed> feed_;
};

} // namespace troupe
