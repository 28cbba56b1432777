// The journal writer actor (protocol and group commit in the header). Runs in
// CAF's scheduler; every promise is delivered from its own handlers.
#include "persistence/journal_writer_actor.hpp"

#include <algorithm>
#include <chrono>
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
caf::error write_failed(const caf::error& err, size_t writes) {
  if (err.category() == error_category)
    return err;
  return make_error(errc::journal_write_failed,
                    "append of " + std::to_string(writes) + " writes failed: " + describe(err));
}

/// Answers with the effect recorded under `key`, which must exist.
void answer_effect(journal_writer_state& st, caf::response_promise& rp, const std::string& key) {
  auto found = st.store->effect(key);
  if (!found)
    rp.deliver(write_failed(found.error(), 1));
  else if (found->empty())
    rp.deliver(make_error(errc::journal_write_failed,
                          "effect '" + key + "' is missing right after it was recorded"));
  else
    rp.deliver(std::move(found->front()));
}

void enqueue(writer_actor* self, journal_write w, caf::response_promise rp, bool effect) {
  auto& st = self->state;
  st.queue.push_back({std::move(w), std::move(rp), effect});
  if (!st.flush_scheduled) { // first write of a new batch
    st.flush_scheduled = true;
    self->send(self, flush_atom::value);
  }
}

/// Commits the oldest writes (at most max_batch) in one store call and
/// answers their requests.
void flush(writer_actor* self) {
  auto& st = self->state;
  auto n = std::min(st.max_batch, st.queue.size());
  std::vector<journal_write> batch;
  batch.reserve(n);
  for (size_t i = 0; i < n; ++i)
    batch.push_back(std::move(st.queue[i].write));
  ++st.store_calls;
  auto began = std::chrono::steady_clock::now();
  auto err = st.store->append(batch);
  if (st.metrics) {
    if (err)
      st.metrics->journal_failed();
    else
      st.metrics->journal_committed(n, std::chrono::steady_clock::now() - began);
    st.metrics->journal_queue(st.queue.size() - n);
  }
  if (err) {
    ++st.failed_calls;
    auto failure = write_failed(err, n);
    for (size_t i = 0; i < n; ++i)
      st.queue[i].promise.deliver(failure);
  } else {
    // what each request gets, read before the hook may take the writes
    std::vector<uint64_t> seqs(n, 0);
    std::vector<std::string> effect_keys(n);
    for (size_t i = 0; i < n; ++i) {
      if (st.queue[i].answer_effect)
        effect_keys[i] = batch[i].effect.front().key;
      else if (!batch[i].events.empty())
        seqs[i] = batch[i].events.back().seq;
    }
    if (st.committed)
      st.committed(batch);
    for (size_t i = 0; i < n; ++i) {
      auto& p = st.queue[i];
      if (p.answer_effect)
        answer_effect(st, p.promise, effect_keys[i]);
      else
        p.promise.deliver(seqs[i]);
    }
  }
  st.queue.erase(st.queue.begin(), st.queue.begin() + static_cast<std::ptrdiff_t>(n));
  st.flush_scheduled = !st.queue.empty();
  if (st.flush_scheduled)
    self->send(self, flush_atom::value);
}

} // namespace

caf::behavior journal_writer(writer_actor* self, std::shared_ptr<journal_store> store,
                             size_t max_batch, std::shared_ptr<runtime_metrics> metrics,
                             commit_hook hook) {
  self->state.store = std::move(store);
  self->state.metrics = std::move(metrics);
  self->state.committed = std::move(hook);
  self->state.max_batch = std::max<size_t>(max_batch, 1);
  return {
    [self](append_atom, journal_write& write) {
      auto rp = self->make_response_promise();
      enqueue(self, std::move(write), rp, false);
      return rp;
    },
    [self](effect_atom, const std::string& key) -> caf::result<std::vector<effect_record>> {
      auto found = self->state.store->effect(key);
      if (!found)
        return write_failed(found.error(), 0);
      return std::move(*found);
    },
    [self](key_atom, const std::string& key) -> caf::result<std::string> {
      auto found = self->state.store->find_key(key);
      if (!found)
        return found.error();
      return std::move(*found);
    },
    [self](purge_atom, int64_t before_ns) -> caf::result<uint64_t> {
      auto n = self->state.store->purge(before_ns, 0);
      if (!n)
        return n.error();
      return *n;
    },
    [self](effect_atom, effect_record& rec) {
      auto rp = self->make_response_promise();
      journal_write w;
      w.effect.push_back(std::move(rec));
      enqueue(self, std::move(w), rp, true);
      return rp;
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
                                size_t max_batch, bool detached,
                                std::shared_ptr<runtime_metrics> metrics, commit_hook hook) {
  if (detached)
    return sys.spawn<caf::detached>(journal_writer, std::move(store), max_batch,
                                    std::move(metrics), std::move(hook));
  return sys.spawn(journal_writer, std::move(store), max_batch, std::move(metrics),
                   std::move(hook));
}

} // namespace troupe::persistence
