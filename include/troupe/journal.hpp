// The journal seam: where a workflow's events go before their commands run.
// One writer actor appends batches; any thread may read. Two stores ship:
// SQLite (durable, the default for `troupe serve` and the examples) and
// in-memory (tests, and embedders that want no file).
//
// What a store keeps:
//   events       append-only; (workflow_id, wf_seq) unique, wf_seq 1, 2, ...
//   workflows    one row per workflow: definition, status, idempotency key
//                (unique when not empty)
//   snapshots    the kernel state after event wf_seq, encoded (the latest
//                one bounds replay)
//   effects      idempotency key -> recorded result; the first write wins
//   dead letters workflows that ended dead-lettered, with why
#pragma once

#include <cstddef>
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

/// A workflow's row. `status` is "running", "parked", "dead_lettered",
/// "completed" or "failed"; the last two are terminal.
struct workflow_row {
  std::string id;
  std::string definition;
  uint32_t version = 1;
  std::string idempotency_key; ///< "" = none
  std::string status = "running";
  std::string outcome;         ///< terminal: the label that ended it
  int64_t created_ns = 0;
  int64_t updated_ns = 0;
  std::string user;            ///< who it runs for ("" = nobody): session context
  bool finished() const { return status == "completed" || status == "failed"; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, workflow_row& x) {
  return f(caf::meta::type_name("workflow_row"), x.id, x.definition, x.version,
           x.idempotency_key, x.status, x.outcome, x.created_ns, x.updated_ns, x.user);
}

/// The kernel state of a workflow after its event `wf_seq`, encoded by
/// persistence/state_codec.hpp.
struct snapshot_record {
  std::string workflow_id;
  uint64_t wf_seq = 0;
  std::string state;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, snapshot_record& x) {
  return f(caf::meta::type_name("snapshot_record"), x.workflow_id, x.wf_seq, x.state);
}

/// The recorded result of one side effect (ctx.effect).
struct effect_record {
  std::string key;         ///< "<workflow>/<node>#<visit>/<effect name>"
  std::string workflow_id;
  std::string result;      ///< JSON text
  int64_t at_ns = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, effect_record& x) {
  return f(caf::meta::type_name("effect_record"), x.key, x.workflow_id, x.result, x.at_ns);
}

/// One time a workflow was dead-lettered (a failure no route covers, a
/// budget spent with no budget route), kept for an operator; a workflow
/// retried and dead-lettered again has one record per time.
struct dead_letter_record {
  std::string workflow_id;
  std::string node;    ///< where it ended
  std::string outcome; ///< the label that led there
  std::string reason;
  int64_t at_ns = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, dead_letter_record& x) {
  return f(caf::meta::type_name("dead_letter_record"), x.workflow_id, x.node, x.outcome,
           x.reason, x.at_ns);
}

struct applied_events; // runtime/applied_event.hpp: the runtime's own, opaque here

/// What one writer request adds, all or nothing. Each vector holds 0 or 1
/// elements except `events` (consecutive events of one workflow).
struct journal_write {
  std::vector<journal_record> events;
  std::vector<workflow_row> workflow;       ///< insert, or replace the row with this id
  std::vector<snapshot_record> snapshot;    ///< replaces older snapshots of the workflow
  std::vector<effect_record> effect;        ///< ignored if the key is already recorded
  std::vector<dead_letter_record> dead_letter;
  /// Not journaled, and no store's business: what the workflow actor's
  /// transitions made of `events`, for the trace exporter, which then need
  /// not replay them. Null unless tracing is on.
  std::shared_ptr<const applied_events> applied;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, journal_write& x) {
  return f(caf::meta::type_name("journal_write"), x.events, x.workflow, x.snapshot, x.effect,
           x.dead_letter);
}

/// Which workflow rows journal_store::list_workflows() returns: newest
/// first, in (created_ns, id) order, descending. To page, pass the last row
/// of a page as `before_*` for the next.
struct workflow_query {
  /// "" for any status; else one of the five (workflow_row::status).
  std::string status;
  /// At most this many rows: 1 or more.
  size_t limit = 100;
  /// With a non-empty `before_id`, only rows that come after the row
  /// (before_created_ns, before_id) in the order above (it need not exist).
  int64_t before_created_ns = 0;
  std::string before_id;
};

/// What is wrong with `q` (an unknown status, a zero limit), or "". Stores
/// refuse such a query with invalid_input and this text.
std::string query_error(const workflow_query& q);

/// How many workflow rows a journal has in each status.
struct workflow_counts {
  uint64_t running = 0;
  uint64_t parked = 0;
  uint64_t dead_lettered = 0;
  uint64_t completed = 0;
  uint64_t failed = 0;
  uint64_t total() const { return running + parked + dead_lettered + completed + failed; }
  /// Adds `n` (negative: takes away) to the count of `status`; false,
  /// changing nothing, for an unknown status.
  bool add(const std::string& status, int64_t n = 1);
};

/// Storage behind the journal writer. append() and purge() are called by one
/// thread at a time; the reads from any thread, concurrently with them.
class journal_store {
public:
  virtual ~journal_store() = default;

  /// Applies every write of `batch` in one transaction and returns only
  /// after it is durable, assigning each event's `seq`. Refused with
  /// journal_write_failed (and nothing of the batch visible) if an event
  /// repeats or skips a wf_seq of its workflow, a write's events span two
  /// workflows, a workflow has events but no row (the row comes with its
  /// first event), a new row repeats another workflow's idempotency key, or
  /// a status is unknown; a storage failure is journal_write_failed or
  /// journal_full. A batch that failed may still turn up after a crash (an
  /// fsync that failed after the commit record was written): recovery
  /// treats it as what it is, committed.
  virtual caf::error append(std::vector<journal_write>& batch) = 0;

  /// The events of one workflow with wf_seq > `after`, in wf_seq order
  /// (empty if unknown).
  virtual caf::expected<std::vector<journal_record>> read(const std::string& workflow_id,
                                                          uint64_t after = 0) const = 0;
  /// The workflow's row; errc::unknown_workflow if there is none.
  virtual caf::expected<workflow_row> workflow(const std::string& workflow_id) const = 0;
  /// The id of the workflow started with `idempotency_key`, or "".
  virtual caf::expected<std::string> find_key(const std::string& idempotency_key) const = 0;
  /// Rows of every workflow not yet completed or failed, oldest first.
  virtual caf::expected<std::vector<workflow_row>> open_workflows() const = 0;
  /// No workflow row has a created_ns above this (0: no rows). The SQLite
  /// store answers from its indexes: the highest of the open rows'
  /// created_ns and the finished rows' updated_ns. The manager reads it
  /// once, to mint ids that no row can have.
  virtual caf::expected<int64_t> created_ns_bound() const = 0;
  /// The `seq` of the newest event committed, 0 if there is none: events
  /// with a greater seq are newer than this call (`troupe tail` starts there).
  virtual caf::expected<uint64_t> last_seq() const = 0;
  /// The workflow's latest snapshot: 0 or 1 elements.
  virtual caf::expected<std::vector<snapshot_record>>
  snapshot(const std::string& workflow_id) const = 0;
  /// The effect recorded under `key`: 0 or 1 elements.
  virtual caf::expected<std::vector<effect_record>> effect(const std::string& key) const = 0;
  /// Every effect recorded by the workflow, ordered by at_ns, then key
  /// (empty if none or unknown). Traces read it to place effects under the
  /// attempts that recorded them.
  virtual caf::expected<std::vector<effect_record>>
  effects_of(const std::string& workflow_id) const = 0;
  /// Every dead letter, oldest first.
  virtual caf::expected<std::vector<dead_letter_record>> dead_letters() const = 0;
  /// The workflow rows `q` selects (see workflow_query); invalid_input if
  /// query_error(q) is not empty. The SQLite store reads a page of its
  /// status index (per status), whatever the journal's size.
  virtual caf::expected<std::vector<workflow_row>>
  list_workflows(const workflow_query& q) const = 0;
  /// How many rows have each status. The SQLite store counts them once (a
  /// scan of its status index, about 0.25 s per million workflows) and
  /// keeps the counts as it appends; the memory store counts on each call.
  virtual caf::expected<workflow_counts> count_workflows() const = 0;

  /// Deletes the completed or failed workflows last updated before
  /// `before_ns`, oldest first and at most `limit` of them (0: all), with
  /// their events, snapshots and effects (dead letters stay), in one
  /// transaction. Returns how many workflows went: fewer than a non-zero
  /// `limit` means none is left. A limit keeps each transaction short.
  virtual caf::expected<uint64_t> purge(int64_t before_ns, uint64_t limit) = 0;

  /// True if append() waits for I/O (an fsync): the runtime then runs the
  /// journal writer on a thread of its own, so appends from every workflow
  /// pile up for the next batch while one commits. False runs it on CAF's
  /// scheduler, which is cheaper for a store that never waits.
  virtual bool blocks() const { return true; }
};

/// Forwards every call to a wrapped store. Test doubles derive from it and
/// override only what they break (a failing append, a corrupt read).
class forwarding_journal : public journal_store {
public:
  /// `target` must not be null.
  explicit forwarding_journal(std::shared_ptr<journal_store> target)
    : target_(std::move(target)) {}
  caf::error append(std::vector<journal_write>& batch) override {
    return target_->append(batch);
  }
  caf::expected<std::vector<journal_record>> read(const std::string& workflow_id,
                                                  uint64_t after = 0) const override {
    return target_->read(workflow_id, after);
  }
  caf::expected<workflow_row> workflow(const std::string& workflow_id) const override {
    return target_->workflow(workflow_id);
  }
  caf::expected<std::string> find_key(const std::string& key) const override {
    return target_->find_key(key);
  }
  caf::expected<int64_t> created_ns_bound() const override {
    return target_->created_ns_bound();
  }
  caf::expected<uint64_t> last_seq() const override { return target_->last_seq(); }
  caf::expected<std::vector<workflow_row>> open_workflows() const override {
    return target_->open_workflows();
  }
  caf::expected<std::vector<snapshot_record>>
  snapshot(const std::string& workflow_id) const override {
    return target_->snapshot(workflow_id);
  }
  caf::expected<std::vector<effect_record>> effect(const std::string& key) const override {
    return target_->effect(key);
  }
  caf::expected<std::vector<effect_record>>
  effects_of(const std::string& workflow_id) const override {
    return target_->effects_of(workflow_id);
  }
  caf::expected<std::vector<dead_letter_record>> dead_letters() const override {
    return target_->dead_letters();
  }
  caf::expected<std::vector<workflow_row>>
  list_workflows(const workflow_query& q) const override {
    return target_->list_workflows(q);
  }
  caf::expected<workflow_counts> count_workflows() const override {
    return target_->count_workflows();
  }
  caf::expected<uint64_t> purge(int64_t before_ns, uint64_t limit) override {
    return target_->purge(before_ns, limit);
  }
  bool blocks() const override { return target_->blocks(); }
  /// The wrapped store.
  const std::shared_ptr<journal_store>& target() const { return target_; }

private:
  std::shared_ptr<journal_store> target_;
};

/// An in-memory store: nothing survives the process.
std::shared_ptr<journal_store> make_memory_journal();

/// What is wrong with the shape of `w`, checked by every store before it
/// writes anything: a row with an unknown status, an event wf_seq out of
/// range, events of two workflows or with non-consecutive wf_seq in one
/// write. "" if nothing. A store that gets a non-empty answer refuses the
/// whole batch with journal_write_failed and this text.
std::string shape_error(const journal_write& w);

/// An operator's retry or drop of a dead-lettered workflow, for a journal
/// that no runtime has open (the `troupe dlq` command): see
/// apply_dead_letter_action. A runtime that has the journal uses
/// runtime::retry_dead_letter / drop_dead_letter instead.
struct dead_letter_action {
  bool retry = true;         ///< false: drop
  std::string by;            ///< who (journaled)
  std::string reason;        ///< drop: why
  uint64_t extra_steps = 0;  ///< retry: budget added
  uint64_t extra_tokens = 0;
  uint64_t extra_cost_nusd = 0;
  int64_t extra_time_ns = 0; ///< >= 0
};

/// Journals `a` for dead-lettered workflow `workflow_id` at time `now_ns`:
/// its event (dlq_retried or dlq_dropped) and its row's new status
/// ("running", or "failed" with outcome "dropped"), in one write. The
/// runtime that next recovers the journal carries a retry out (the step
/// runs then). unknown_workflow if there is no such workflow; bad_signal if
/// it is not dead-lettered; invalid_input for a negative extra time.
caf::error apply_dead_letter_action(journal_store& store, const std::string& workflow_id,
                                    const dead_letter_action& a, int64_t now_ns);

/// How to open a SQLite journal.
struct sqlite_journal_options {
  std::string path{};
  /// PRAGMA synchronous: "full" (every commit fsynced: the default) or
  /// "normal" (WAL checkpoints fsynced; a power loss may drop the last
  /// commits, a process crash does not).
  std::string synchronous = "full";
  /// The SQLite VFS to use; "" for the platform default. Tests pass the
  /// fault-injecting VFS here.
  std::string vfs{};
  /// Create the file if it does not exist; false refuses a missing file
  /// (journal_unusable), for tools that must not make an empty journal
  /// out of a mistyped path.
  bool create = true;
};

/// Opens (creating if absent, unless told not to) a SQLite journal. A file that is not a troupe
/// journal, is from a newer troupe, is read-only, locked by another process
/// or unreadable is errc::journal_unusable naming the file, and is not
/// changed. The store holds the file exclusively until destroyed.
caf::expected<std::shared_ptr<journal_store>>
open_sqlite_journal(const sqlite_journal_options& opts);

} // namespace troupe
