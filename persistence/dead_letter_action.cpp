// Retry or drop of a dead-lettered workflow on a journal no runtime has
// open (troupe/journal.hpp). Only a dead-lettered workflow takes these
// events, and the kernel accepts both from that phase whatever the
// definition, so the row's status is the whole check: the definition (and
// its agents) need not be known here.
#include "troupe/journal.hpp"

#include "persistence/event_codec.hpp"
#include "troupe/errors.hpp"

namespace troupe {

caf::error apply_dead_letter_action(journal_store& store, const std::string& workflow_id,
                                    const dead_letter_action& a, int64_t now_ns) {
  if (a.extra_time_ns < 0)
    return make_error(errc::invalid_input, "retry of '" + workflow_id
                                             + "': extra time must not be negative");
  auto row = store.workflow(workflow_id);
  if (!row)
    return row.error();
  if (row->status != "dead_lettered")
    return make_error(errc::bad_signal, "workflow '" + workflow_id + "' is " + row->status
                                          + ", not dead-lettered");
  auto events = store.read(workflow_id);
  if (!events)
    return events.error();
  if (events->empty())
    return make_error(errc::journal_corrupt, "workflow '" + workflow_id + "' has no events");
  kernel::instant at{now_ns};
  kernel::event ev;
  if (a.retry) {
    kernel::dlq_retried e{at, a.by, {}};
    e.grant.steps = a.extra_steps;
    e.grant.tokens = a.extra_tokens;
    e.grant.cost_nusd = a.extra_cost_nusd;
    e.grant.time = duration{a.extra_time_ns};
    ev = std::move(e);
  } else {
    ev = kernel::dlq_dropped{at, a.by, a.reason};
  }
  journal_write w;
  w.events.push_back(persistence::to_record(workflow_id, events->back().wf_seq + 1, ev));
  row->status = a.retry ? "running" : "failed";
  row->outcome = a.retry ? "" : outcome::dropped;
  row->updated_ns = now_ns;
  w.workflow.push_back(std::move(*row));
  std::vector<journal_write> batch{std::move(w)};
  return store.append(batch);
}

} // namespace troupe
