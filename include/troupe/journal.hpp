// The journal seam: where a workflow's events go before their commands run.
// One writer actor appends batches; any thread may read. The in-memory store
// ships here; the SQLite store implements the same interface.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/meta/type_name.hpp>

namespace troupe {

/// One journaled event. `payload` is the event encoded as JSON.
struct journal_record {
  uint64_t seq = 0;        ///< global order, assigned by the store on append
  std::string workflow_id;
  uint64_t wf_seq = 0;     ///< 1, 2, 3, ... within the workflow, no gaps
  std::string kind;        ///< "step_completed", ...
  int64_t at_ns = 0;       ///< event time, ns since the runtime clock's epoch
  std::string payload;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_record& x) {
  return f(caf::meta::type_name("journal_record"), x.seq, x.workflow_id, x.wf_seq, x.kind,
           x.at_ns, x.payload);
}

/// Storage behind the journal writer. append() is called by one thread at a
/// time; read() from any thread concurrently with it.
class journal_store {
public:
  virtual ~journal_store() = default;
  /// Appends all records atomically and durably, assigning `seq`; returns
  /// only after they are durable. On error nothing of the batch is visible.
  virtual caf::error append(std::vector<journal_record>& batch) = 0;
  /// All records of one workflow in wf_seq order (empty if unknown).
  virtual caf::expected<std::vector<journal_record>> read(const std::string& workflow_id) const = 0;
};

/// Forwards every call to a wrapped store. Test doubles derive from it and
/// override only what they break (a failing append, a corrupt read).
class forwarding_journal : public journal_store {
public:
  /// `target` must not be null.
  explicit forwarding_journal(std::shared_ptr<journal_store> target)
    : target_(std::move(target)) {}
  caf::error append(std::vector<journal_record>& batch) override {
    return target_->append(batch);
  }
  caf::expected<std::vector<journal_record>> read(const std::string& workflow_id) const override {
    return target_->read(workflow_id);
  }
  /// The wrapped store.
  const std::shared_ptr<journal_store>& target() const { return target_; }

private:
  std::shared_ptr<journal_store> target_;
};

/// An in-memory store (the default until a durable one is configured).
std::shared_ptr<journal_store> make_memory_journal();

} // namespace troupe
