// The in-memory journal store (make_memory_journal in troupe/journal.hpp),
// for tests and embedders that want no file. Nothing survives the process.
// It keeps the SQLite store's invariants I1-I7 (persistence/sqlite_store.cpp)
// and refuses what that store refuses, with the same messages; the store
// contract test runs against both. append() and purge() come from the
// journal writer actor, reads from any thread; one mutex guards everything.
//
// All or nothing (I1): append() applies a batch write by write, noting in
// an undo log what each change replaced, and on a refusal undoes the log
// backwards.
#include <algorithm>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <tuple>
#include <unordered_map>

#include "troupe/errors.hpp"
#include "troupe/journal.hpp"

namespace troupe {

namespace {

class memory_journal final : public journal_store {
public:
  bool blocks() const override { return false; } // no I/O: the writer needs no thread
  caf::error append(std::vector<journal_write>& batch) override {
    std::lock_guard<std::mutex> guard{mtx_};
    for (const auto& w : batch)
      if (auto why = shape_error(w); !why.empty())
        return refuse(why);
    undo_log undo;
    undo.next_seq = next_seq_;
    undo.dead_letters = dead_letters_.size();
    caf::error err;
    for (size_t i = 0; !err && i < batch.size(); ++i)
      err = append_write(batch[i], undo);
    if (err) {
      roll_back(undo);
      for (auto& w : batch)
        for (auto& e : w.events)
          e.seq = 0;
    }
    return err;
  }

  caf::expected<std::vector<journal_record>> read(const std::string& workflow_id,
                                                  uint64_t after) const override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = workflows_.find(workflow_id);
    if (it == workflows_.end() || after >= it->second.events.size())
      return std::vector<journal_record>{};
    const auto& events = it->second.events; // events[i].wf_seq == i + 1 (I2)
    return std::vector<journal_record>(events.begin() + static_cast<ptrdiff_t>(after),
                                       events.end());
  }

  caf::expected<workflow_row> workflow(const std::string& workflow_id) const override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = workflows_.find(workflow_id);
    if (it == workflows_.end() || !it->second.row)
      return make_error(errc::unknown_workflow, "no workflow '" + workflow_id + "' in memory");
    return *it->second.row;
  }

  caf::expected<std::string> find_key(const std::string& key) const override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = keys_.find(key);
    return it == keys_.end() ? std::string{} : it->second;
  }

  caf::expected<int64_t> created_ns_bound() const override {
    std::lock_guard<std::mutex> guard{mtx_};
    int64_t newest = 0;
    for (const auto& [id, wf] : workflows_)
      if (wf.row)
        newest = std::max(newest, wf.row->created_ns);
    return newest;
  }

  caf::expected<uint64_t> last_seq() const override {
    std::lock_guard<std::mutex> guard{mtx_};
    return next_seq_ - 1;
  }

  caf::expected<std::vector<workflow_row>> open_workflows() const override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<workflow_row> out;
    for (const auto& [id, wf] : workflows_)
      if (wf.row && !wf.row->finished())
        out.push_back(*wf.row);
    std::sort(out.begin(), out.end(), [](const workflow_row& a, const workflow_row& b) {
      return std::tie(a.created_ns, a.id) < std::tie(b.created_ns, b.id);
    });
    return out;
  }

  caf::expected<std::vector<snapshot_record>>
  snapshot(const std::string& workflow_id) const override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = workflows_.find(workflow_id);
    if (it == workflows_.end() || !it->second.snapshot)
      return std::vector<snapshot_record>{};
    return std::vector<snapshot_record>{*it->second.snapshot};
  }

  caf::expected<std::vector<effect_record>> effect(const std::string& key) const override {
    std::lock_guard<std::mutex> guard{mtx_};
    auto it = effects_.find(key);
    if (it == effects_.end())
      return std::vector<effect_record>{};
    return std::vector<effect_record>{it->second};
  }

  // A scan of every effect: the memory store serves tests and small runs.
  caf::expected<std::vector<effect_record>>
  effects_of(const std::string& workflow_id) const override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<effect_record> out;
    for (const auto& [key, eff] : effects_)
      if (eff.workflow_id == workflow_id)
        out.push_back(eff);
    std::sort(out.begin(), out.end(), [](const effect_record& a, const effect_record& b) {
      return std::tie(a.at_ns, a.key) < std::tie(b.at_ns, b.key);
    });
    return out;
  }

  caf::expected<std::vector<dead_letter_record>> dead_letters() const override {
    std::lock_guard<std::mutex> guard{mtx_};
    return dead_letters_;
  }

  caf::expected<std::vector<workflow_row>>
  list_workflows(const workflow_query& q) const override {
    if (auto why = query_error(q); !why.empty())
      return make_error(errc::invalid_input, "memory journal: list workflows: " + why);
    std::lock_guard<std::mutex> guard{mtx_};
    auto newer = [](const workflow_row& a, const workflow_row& b) {
      return std::tie(a.created_ns, a.id) > std::tie(b.created_ns, b.id);
    };
    std::vector<workflow_row> out;
    for (const auto& [id, wf] : workflows_) {
      if (!wf.row || (!q.status.empty() && wf.row->status != q.status))
        continue;
      if (!q.before_id.empty()
          && !(std::tie(wf.row->created_ns, wf.row->id)
               < std::tie(q.before_created_ns, q.before_id)))
        continue;
      out.push_back(*wf.row);
    }
    auto keep = std::min(out.size(), q.limit);
    std::partial_sort(out.begin(), out.begin() + static_cast<ptrdiff_t>(keep), out.end(), newer);
    out.resize(keep);
    return out;
  }

  caf::expected<workflow_counts> count_workflows() const override {
    std::lock_guard<std::mutex> guard{mtx_};
    workflow_counts n;
    for (const auto& [id, wf] : workflows_)
      if (wf.row)
        n.add(wf.row->status);
    return n;
  }

  caf::expected<uint64_t> purge(int64_t before_ns, uint64_t limit) override {
    std::lock_guard<std::mutex> guard{mtx_};
    std::vector<std::pair<int64_t, std::string>> due; // oldest first, as SQLite's
    for (const auto& [id, wf] : workflows_)
      if (wf.row && wf.row->finished() && wf.row->updated_ns < before_ns)
        due.emplace_back(wf.row->updated_ns, id);
    std::sort(due.begin(), due.end());
    if (limit != 0 && due.size() > limit)
      due.resize(limit);
    for (const auto& [updated, id] : due) {
      auto it = workflows_.find(id);
      if (!it->second.row->idempotency_key.empty())
        keys_.erase(it->second.row->idempotency_key);
      for (auto e = effects_.begin(); e != effects_.end();)
        e = e->second.workflow_id == id ? effects_.erase(e) : std::next(e);
      workflows_.erase(it);
    }
    return due.size();
  }

private:
  struct workflow_data {
    std::optional<workflow_row> row;
    std::vector<journal_record> events; ///< events[i].wf_seq == i + 1
    std::optional<snapshot_record> snapshot;
  };

  /// What a batch changed so far, to undo it.
  struct undo_log {
    uint64_t next_seq = 0;
    size_t dead_letters = 0;
    std::vector<std::pair<std::string, size_t>> event_counts; ///< before each write's events
    std::vector<std::pair<std::string, std::optional<workflow_row>>> rows;
    std::vector<std::pair<std::string, std::optional<snapshot_record>>> snapshots;
    std::vector<std::string> effects; ///< keys added
  };

  static caf::error refuse(const std::string& why) {
    return make_error(errc::journal_write_failed, "memory journal: append: " + why);
  }

  caf::error append_write(journal_write& w, undo_log& undo) {
    for (const auto& row : w.workflow) {
      if (!row.idempotency_key.empty()) { // I5
        auto owner = keys_.find(row.idempotency_key);
        if (owner != keys_.end() && owner->second != row.id)
          return refuse("idempotency key '" + row.idempotency_key + "' belongs to workflow '"
                        + owner->second + "'");
      }
      auto& slot = workflows_[row.id].row;
      undo.rows.emplace_back(row.id, slot);
      set_row(row.id, slot, row);
    }
    if (!w.events.empty()) {
      const auto& first = w.events.front();
      auto& wf = workflows_[first.workflow_id];
      uint64_t last = wf.events.size();
      if (!wf.row) // I3
        return refuse("workflow '" + first.workflow_id
                      + "': has no row (a workflow's row comes with its first event)");
      if (first.wf_seq <= last) // I2
        return refuse("workflow '" + first.workflow_id + "': event wf_seq "
                      + std::to_string(first.wf_seq) + " is already recorded");
      if (first.wf_seq != last + 1)
        return refuse("workflow '" + first.workflow_id + "': event wf_seq "
                      + std::to_string(first.wf_seq) + " leaves a gap after "
                      + std::to_string(last));
      undo.event_counts.emplace_back(first.workflow_id, last);
      for (auto& e : w.events) {
        e.seq = next_seq_++; // I4
        wf.events.push_back(e);
      }
    }
    for (const auto& snap : w.snapshot) {
      auto& slot = workflows_[snap.workflow_id].snapshot;
      if (slot && slot->wf_seq > snap.wf_seq) // I7
        continue;
      undo.snapshots.emplace_back(snap.workflow_id, std::move(slot));
      slot = snap;
    }
    for (const auto& eff : w.effect)
      if (effects_.emplace(eff.key, eff).second) // I6
        undo.effects.push_back(eff.key);
    for (const auto& dl : w.dead_letter)
      dead_letters_.push_back(dl);
    return {};
  }

  /// Replaces the row in `slot` (of workflow `id`) and keeps keys_ in step.
  void set_row(const std::string& id, std::optional<workflow_row>& slot,
               const std::optional<workflow_row>& row) {
    if (slot && !slot->idempotency_key.empty())
      keys_.erase(slot->idempotency_key);
    slot = row;
    if (slot && !slot->idempotency_key.empty())
      keys_[slot->idempotency_key] = id;
  }

  void roll_back(undo_log& undo) {
    next_seq_ = undo.next_seq;
    dead_letters_.resize(undo.dead_letters);
    for (const auto& key : undo.effects)
      effects_.erase(key);
    for (auto it = undo.snapshots.rbegin(); it != undo.snapshots.rend(); ++it)
      workflows_[it->first].snapshot = std::move(it->second);
    for (auto it = undo.event_counts.rbegin(); it != undo.event_counts.rend(); ++it)
      workflows_[it->first].events.resize(it->second);
    for (auto it = undo.rows.rbegin(); it != undo.rows.rend(); ++it)
      set_row(it->first, workflows_[it->first].row, it->second);
    // Entries created only for the failed batch go, so nothing of it shows.
    for (auto it = workflows_.begin(); it != workflows_.end();)
      it = !it->second.row && it->second.events.empty() && !it->second.snapshot
             ? workflows_.erase(it)
             : std::next(it);
  }

  mutable std::mutex mtx_;
  uint64_t next_seq_ = 1;
  std::unordered_map<std::string, workflow_data> workflows_;
  std::map<std::string, std::string> keys_; ///< idempotency key -> workflow id
  std::unordered_map<std::string, effect_record> effects_;
  std::vector<dead_letter_record> dead_letters_;
};

} // namespace

std::shared_ptr<journal_store> make_memory_journal() {
  return std::make_shared<memory_journal>();
}

} // namespace troupe
