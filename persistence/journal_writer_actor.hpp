// The journal writer: the one actor that appends to the journal store, with
// group commit. Workflow actors request (append_atom, journal_write) and run
// the commands of its events only after the ack. Spawned once by the runtime.
//
// Protocol:
//   (append_atom, journal_write) -> uint64_t   the global seq of the write's
//       last event (0 if it has none), sent only after the store's append()
//       of the batch holding it returned OK; or an error: a troupe error
//       from the store is passed through (journal_full, journal_write_failed,
//       ...), any other becomes errc::journal_write_failed.
//   (effect_atom, std::string key) -> std::vector<effect_record>
//       the effect recorded under `key` (0 or 1), read at once.
//   (effect_atom, effect_record) -> effect_record
//       records the effect unless its key is recorded already (group-
//       committed like any write), then answers with the recorded one: the
//       first write of a key wins, later ones get the first's result.
//   (key_atom, std::string key) -> std::string
//       the id of the workflow started with idempotency key `key`, or "",
//       read at once (between two batches); the manager asks here so that
//       it never waits on the store's lock itself.
//   (purge_atom, int64_t before_ns) -> uint64_t
//       store->purge(before_ns, 0), between two batches.
//   (flush_atom)                                 internal: commits one batch.
//
// Group commit: writes and their response promises queue up; the first
// write of a new batch makes the writer send itself flush_atom, so every
// append already in the mailbox joins that batch. A flush appends up to
// max_batch writes in one store call, answers them all, and sends another
// flush if writes remain. Writes reach the store in arrival order; every
// request of a failed batch gets the error, later batches are tried anew.
//
// After a commit, before answering, the writer hands the batch's writes to
// its commit hook if it has one (the trace exporter's inbox): whatever a
// requester learns is committed has reached the hook. The hook must not
// block.
//
// The store call blocks the writer's thread for the whole append (an fsync
// with the SQLite store), so the runtime spawns it detached: on a thread of
// its own, while appends pile up in its mailbox for the next batch. Tests
// under CAF's test coordinator spawn it scheduled.
#pragma once

#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/response_promise.hpp>

#include "runtime/metrics.hpp"
#include "troupe/journal.hpp"

namespace troupe::persistence {

/// Takes the writes of a batch just committed (they may be moved from).
using commit_hook = std::function<void(std::vector<journal_write>&)>;

/// The writer's state; public for tests that inspect it.
struct journal_writer_state {
  /// A record waiting for its batch, with the promise of its ack.
  struct pending {
    journal_write write;
    caf::response_promise promise;
    bool answer_effect = false; ///< answer with the recorded effect, not a seq
  };

  std::shared_ptr<journal_store> store;
  size_t max_batch = 1;
  std::deque<pending> queue;
  bool flush_scheduled = false; ///< a flush_atom is in our mailbox
  uint64_t store_calls = 0;     ///< batches handed to the store so far
  uint64_t failed_calls = 0;    ///< of which the store refused
  std::shared_ptr<runtime_metrics> metrics; ///< commit latency, batch sizes; null: none
  commit_hook committed;        ///< may be empty

  static const char* name;
};

/// The writer's behavior (see the protocol above). `store` must not be null;
/// `max_batch` 0 is taken as 1; `metrics` may be null, `hook` empty.
caf::behavior journal_writer(caf::stateful_actor<journal_writer_state>* self,
                             std::shared_ptr<journal_store> store, size_t max_batch,
                             std::shared_ptr<runtime_metrics> metrics, commit_hook hook);

/// Spawns the journal writer over `store`, committing at most `max_batch`
/// writes per store call, on a thread of its own if `detached`, handing
/// each committed batch to `hook` (if any). Only this actor may call
/// store->append().
caf::actor spawn_journal_writer(caf::actor_system& sys, std::shared_ptr<journal_store> store,
                                size_t max_batch, bool detached = false,
                                std::shared_ptr<runtime_metrics> metrics = nullptr,
                                commit_hook hook = {});

} // namespace troupe::persistence
