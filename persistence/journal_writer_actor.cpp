// The journal writer actor (protocol and group commit in the header). Runs in
// CAF's scheduler; every promise is delivered from its own handlers.
#include "persistence/journal_writer_actor.hpp"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include <caf/event_based_actor.hpp>

#include "actors/atoms.hpp"
#include "troupe/errors.hpp"

namespace troupe::persistence {

const char* journal_writer_state::name = "journal_writer";

namespace {

using writer_actor = caf::stateful_actor<journal_writer_state>;

/// The error every request of a failed batch receives.
caf::error write_failed(const caf::error& err, size_t records) {
  if (err.category() == error_category)
    return err;
  return make_error(errc::journal_write_failed,
                    "append of " + std::to_string(records) + " records failed: " + describe(err));
}

/// Commits the oldest records (at most max_batch) in one store call and
/// answers their requests.
void flush(writer_actor* self) {
  auto& st = self->state;
  auto n = std::min(st.max_batch, st.queue.size());
  std::vector<journal_record> batch;
  batch.reserve(n);
  for (size_t i = 0; i < n; ++i)
    batch.push_back(std::move(st.queue[i].record));
  ++st.store_calls;
  auto err = st.store->append(batch);
  if (err) {
    auto failure = write_failed(err, n);
    for (size_t i = 0; i < n; ++i)
      st.queue[i].promise.deliver(failure);
  } else {
    for (size_t i = 0; i < n; ++i)
      st.queue[i].promise.deliver(batch[i].seq);
  }
  st.queue.erase(st.queue.begin(), st.queue.begin() + static_cast<std::ptrdiff_t>(n));
  st.flush_scheduled = !st.queue.empty();
  if (st.flush_scheduled)
    self->send(self, flush_atom::value);
}

} // namespace

caf::behavior journal_writer(writer_actor* self, std::shared_ptr<journal_store> store,
                             size_t max_batch) {
  self->state.store = std::move(store);
  self->state.max_batch = std::max<size_t>(max_batch, 1);
  return {
    [self](append_atom, journal_record& record) -> caf::result<uint64_t> {
      auto& st = self->state;
      auto promise = self->make_response_promise<uint64_t>();
      st.queue.push_back({std::move(record), promise});
      if (!st.flush_scheduled) { // first record of a new batch
        st.flush_scheduled = true;
        self->send(self, flush_atom::value);
      }
      return promise;
    },
    [self](flush_atom) {
      if (!self->state.queue.empty())
        flush(self);
      else
        self->state.flush_scheduled = false;
    },
  };
}

caf::actor spawn_journal_writer(caf::actor_system& sys, std::shared_ptr<journal_store> store,
                                size_t max_batch) {
  return sys.spawn(journal_writer, std::move(store), max_batch);
}

} // namespace troupe::persistence
