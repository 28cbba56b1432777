// The in-memory journal store (make_memory_journal in troupe/journal.hpp):
// the default store and the one tests wrap. Nothing survives the process.
// append() comes from the journal writer actor, read() from any thread; one
// mutex guards everything.
#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "troupe/journal.hpp"

namespace troupe {

namespace {

class memory_journal final : public journal_store {
public:
  caf::error append(std::vector<journal_record>& batch) override {
    std::lock_guard<std::mutex> guard{mtx_};
    for (auto& r : batch) {
      r.seq = next_seq_++;
      auto& records = by_workflow_[r.workflow_id];
      // Records arrive in wf_seq order; anything else is placed by wf_seq
      // (after equal ones) so read() keeps its promise.
      if (records.empty() || records.back().wf_seq <= r.wf_seq) {
        records.push_back(r);
      } else {
        auto pos = std::upper_bound(records.begin(), records.end(), r.wf_seq,
                                    [](uint64_t wf_seq, const journal_record& x) {
                                      return wf_seq < x.wf_seq;
                                    });
        records.insert(pos, r);
      }
    }
    return {};
  }

  caf::expected<std::vector<journal_record>>
  read(const std::string& workflow_id) const override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = by_workflow_.find(workflow_id);
    if (it == by_workflow_.end())
      return std::vector<journal_record>{};
    return it->second;
  }

private:
  mutable std::mutex mtx_;
  uint64_t next_seq_ = 1;
  std::unordered_map<std::string, std::vector<journal_record>> by_workflow_;
};

} // namespace

std::shared_ptr<journal_store> make_memory_journal() {
  return std::make_shared<memory_journal>();
}

} // namespace troupe
