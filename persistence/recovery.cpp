// Rebuilding a workflow from the journal (see the header).
#include "persistence/recovery.hpp"

#include "persistence/event_codec.hpp"
#include "persistence/state_codec.hpp"
#include "troupe/errors.hpp"

namespace troupe::persistence {

caf::expected<loaded_workflow> load_workflow(const journal_store& store, const definition& def,
                                             const std::string& id) {
  loaded_workflow out;
  auto snap = store.snapshot(id);
  if (!snap)
    return snap.error();
  if (!snap->empty()) {
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

} // namespace troupe::persistence
