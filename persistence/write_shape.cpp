// shape_error (troupe/journal.hpp): the checks of a journal write that do
// not depend on what a store holds, shared by the SQLite and memory stores
// so both refuse the same writes in the same words (I2 of
// persistence/sqlite_store.cpp within one write, and known statuses).
#include <cstdint>
#include <string>

#include "troupe/journal.hpp"

namespace troupe {

std::string shape_error(const journal_write& w) {
  for (const auto& row : w.workflow)
    if (row.status != "running" && row.status != "parked" && row.status != "dead_lettered"
        && !row.finished())
      return "workflow '" + row.id + "': unknown status '" + row.status + "'";
  if (w.events.empty())
    return {};
  const auto& first = w.events.front();
  if (first.wf_seq < 1 || first.wf_seq + w.events.size() > uint64_t{INT64_MAX})
    return "workflow '" + first.workflow_id + "': event wf_seq " + std::to_string(first.wf_seq)
           + " is out of range";
  for (size_t i = 1; i < w.events.size(); ++i) {
    const auto& e = w.events[i];
    if (e.workflow_id != first.workflow_id)
      return "the events of one write must belong to one workflow ('" + first.workflow_id
             + "', then '" + e.workflow_id + "')";
    if (e.wf_seq != first.wf_seq + i)
      return "workflow '" + first.workflow_id + "': the events of one write must have "
             "consecutive wf_seq (" + std::to_string(w.events[i - 1].wf_seq) + ", then "
             + std::to_string(e.wf_seq) + ")";
  }
  return {};
}

} // namespace troupe
