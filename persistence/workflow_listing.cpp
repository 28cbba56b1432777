// query_error and workflow_counts (troupe/journal.hpp): the parts of
// listing workflows that do not depend on a store, shared by the SQLite and
// memory stores so both refuse the same queries in the same words.
#include <string>

#include "troupe/journal.hpp"

namespace troupe {

std::string query_error(const workflow_query& q) {
  workflow_counts probe;
  if (!q.status.empty() && !probe.add(q.status))
    return "unknown status '" + q.status
           + "' (expected running, parked, dead_lettered, completed or failed)";
  if (q.limit == 0)
    return "limit must be at least 1";
  return {};
}

bool workflow_counts::add(const std::string& status, int64_t n) {
  uint64_t* slot = status == "running"         ? &running
                   : status == "parked"        ? &parked
                   : status == "dead_lettered" ? &dead_lettered
                   : status == "completed"     ? &completed
                   : status == "failed"        ? &failed
                                               : nullptr;
  if (slot == nullptr)
    return false;
  *slot += static_cast<uint64_t>(n); // modulo 2^64: adding -1 takes one away
  return true;
}

} // namespace troupe
