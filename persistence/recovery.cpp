// Rebuilding a workflow from the journal (see the header).
#include "persistence/recovery.hpp"

#include <cstdint>

#include "persistence/event_codec.hpp"
#include "persistence/state_codec.hpp"
#include "troupe/errors.hpp"

namespace troupe::persistence {

namespace {

/// Folds workflow `id`'s events up to `until` (at most) into its state.
caf::expected<loaded_workflow> load(const journal_store& store, const definition& def,
                                    const std::string& id, uint64_t until) {
  loaded_workflow out;
  auto snap = store.snapshot(id);
  if (!snap)
    return snap.error();
  if (!snap->empty() && snap->front().wf_seq <= until) {
    auto& s = snap->front();
    auto st = decode_state(s.state, id, s.wf_seq);
    if (!st)
      return st.error();
    if (st->events != s.wf_seq)
      return make_error(errc::journal_corrupt,
                        id + " snapshot @" + std::to_string(s.wf_seq) + ": it holds "
                          + std::to_string(st->events) + " events, not " + std::to_string(s.wf_seq));
    out.state = std::move(*st);
    out.wf_seq = s.wf_seq;
  }
  auto records = store.read(id, out.wf_seq);
  if (!records)
    return records.error();
  for (auto& r : *records) {
    if (r.wf_seq > until)
      break;
    if (r.wf_seq != out.wf_seq + 1)
      return make_error(errc::journal_corrupt, id + ": event #" + std::to_string(out.wf_seq + 1)
                                                   + " is missing (next is #"
                                                   + std::to_string(r.wf_seq) + ")");
    auto ev = from_record(r);
    if (!ev)
      return ev.error();
    auto t = kernel::apply(def, out.state, *ev);
    if (!t)
      return make_error(errc::journal_corrupt, id + " #" + std::to_string(r.wf_seq) + " ("
                                                   + r.kind + ") does not replay: "
                                                   + describe(t.error()));
    out.state = std::move(t->state);
    out.wf_seq = r.wf_seq;
  }
  if (out.wf_seq == 0)
    return make_error(errc::journal_corrupt, id + ": the journal has no events for it");
  return out;
}

} // namespace

caf::expected<loaded_workflow> load_workflow(const journal_store& store, const definition& def,
                                             const std::string& id) {
  return load(store, def, id, UINT64_MAX);
}

caf::expected<loaded_workflow> load_workflow_at(const journal_store& store,
                                                const definition& def, const std::string& id,
                                                uint64_t wf_seq) {
  if (wf_seq == 0)
    return make_error(errc::invalid_input, "workflow " + id
                                             + ": its events are numbered from #1, not #0");
  auto out = load(store, def, id, wf_seq);
  if (!out)
    return out;
  if (out->wf_seq < wf_seq)
    return make_error(errc::invalid_input, "workflow " + id + " has events #1 to #"
                                             + std::to_string(out->wf_seq) + ": there is no #"
                                             + std::to_string(wf_seq));
  return out;
}

} // namespace troupe::persistence
