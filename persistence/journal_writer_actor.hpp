// The journal writer: the one actor that appends to the journal store, with
// group commit. Workflow actors request (append_atom, journal_record) and run
// the event's commands only after the ack. Spawned once by the runtime.
//
// Protocol:
//   (append_atom, journal_record) -> uint64_t   the record's global seq, sent
//       only after the store's append() of the batch holding it returned OK;
//       or an error: errc::journal_write_failed with the store's error text
//       in its context (a troupe error from the store is passed through).
//   (flush_atom)                                 internal: commits one batch.
//
// Group commit: records and their response promises queue up; the first
// record of a new batch makes the writer send itself flush_atom, so every
// append already in the mailbox joins that batch. A flush appends up to
// max_batch records in one store call, answers them all, and sends another
// flush if records remain. Records reach the store in arrival order; every
// request of a failed batch gets the error, later batches are tried anew.
//
// The store call blocks this actor's scheduler thread for the whole append
// (an fsync with the SQLite store). Accepted for now; a dedicated thread or
// a detached actor is the fix if it starves the scheduler.
#pragma once

#include <cstddef>
#include <deque>
#include <memory>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "troupe/journal.hpp"

namespace troupe::persistence {

/// The writer's state; public for tests that inspect it.
struct journal_writer_state {
  /// A record waiting for its batch, with the promise of its ack.
  struct pending {
    journal_record record;
    caf::typed_response_promise<uint64_t> promise;
  };

  std::shared_ptr<journal_store> store;
  size_t max_batch = 1;
  std::deque<pending> queue;
  bool flush_scheduled = false; ///< a flush_atom is in our mailbox
  uint64_t store_calls = 0;     ///< batches handed to the store so far

  static const char* name;
};

/// The writer's behavior (see the protocol above). `store` must not be null;
/// `max_batch` 0 is taken as 1.
caf::behavior journal_writer(caf::stateful_actor<journal_writer_state>* self,
                             std::shared_ptr<journal_store> store, size_t max_batch);

/// Spawns the journal writer over `store`, committing at most `max_batch`
/// records per store call. Only this actor may call store->append().
caf::actor spawn_journal_writer(caf::actor_system& sys, std::shared_ptr<journal_store> store,
                                size_t max_batch);

} // namespace troupe::persistence
