// The change feed behind runtime::watch (see the header).
#include "runtime/change_feed.hpp"

#include <algorithm>
#include <unordered_set>

namespace troupe {

void change_feed::seed(uint64_t last_seq) {
  std::lock_guard<std::mutex> guard{mtx_};
  last_seq_ = last_seq;
}

void change_feed::publish(const std::vector<std::string>& workflows, bool all,
                          uint64_t last_seq) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    ++version_;
    if (last_seq != 0)
      last_seq_ = last_seq;
    if (all) {
      recent_.clear();
      complete_after_ = version_;
    } else {
      for (const auto& id : workflows)
        recent_.emplace_back(version_, id);
      while (recent_.size() > kept) {
        complete_after_ = recent_.front().first; // that version's ids are no longer complete
        recent_.pop_front();
      }
    }
  }
  changed_.notify_all();
}

journal_changes change_feed::wait(uint64_t after, std::chrono::milliseconds wait) {
  std::unique_lock<std::mutex> lock{mtx_};
  auto woken = wakes_;
  changed_.wait_for(lock, wait,
                    [&] { return closed_ || version_ != after || wakes_ != woken; });
  return since(after);
}

void change_feed::wake() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    ++wakes_;
  }
  changed_.notify_all();
}

void change_feed::close() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    closed_ = true;
  }
  changed_.notify_all();
}

journal_changes change_feed::since(uint64_t after) const {
  journal_changes out;
  out.version = version_;
  out.last_seq = last_seq_;
  if (after == version_)
    return out;
  if (after > version_ || after < complete_after_) {
    out.all = true;
    return out;
  }
  auto first = std::upper_bound(recent_.begin(), recent_.end(), after,
                                [](uint64_t v, const auto& change) { return v < change.first; });
  std::unordered_set<std::string> seen;
  for (auto it = first; it != recent_.end(); ++it)
    if (seen.insert(it->second).second)
      out.workflows.push_back(it->second);
  return out;
}

feed_journal::feed_journal(std::shared_ptr<journal_store> target,
                           std::shared_ptr<change_feed> feed)
  : forwarding_journal(std::move(target)), feed_(std::move(feed)) {
  if (auto seq = forwarding_journal::last_seq())
    feed_->seed(*seq);
}

caf::error feed_journal::append(std::vector<journal_write>& batch) {
  auto err = forwarding_journal::append(batch);
  if (err)
    return err;
  std::vector<std::string> ids;
  uint64_t last_seq = 0;
  auto note = [&](const std::string& id) {
    if (ids.empty() || ids.back() != id) // a workflow's writes tend to be adjacent
      ids.push_back(id);
  };
  for (const auto& w : batch) {
    for (const auto& row : w.workflow)
      note(row.id);
    if (!w.events.empty()) {
      note(w.events.front().workflow_id);
      last_seq = std::max(last_seq, w.events.back().seq);
    }
    for (const auto& dl : w.dead_letter)
      note(dl.workflow_id);
  }
  if (!ids.empty())
    feed_->publish(ids, false, last_seq);
  return err;
}

caf::expected<uint64_t> feed_journal::purge(int64_t before_ns, uint64_t limit) {
  auto n = forwarding_journal::purge(before_ns, limit);
  if (n && *n > 0)
    feed_->publish({}, true); // seqs are never reused: last_seq stays
  return n;
}

} // namespace troupe
