// `troupe dlq` (see dlq.hpp). Reads and writes through the journal store's
// API only; nothing here knows the workflows' definitions.
#include "dlq.hpp"

#include <ctime>
#include <map>
#include <ostream>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "common.hpp"
#include "troupe/errors.hpp"
#include "troupe/seams.hpp"

namespace troupe::cli {

namespace {

/// The latest dead-letter record of each workflow.
caf::expected<std::map<std::string, dead_letter_record>> latest_records(journal_store& store) {
  auto all = store.dead_letters();
  if (!all)
    return all.error();
  std::map<std::string, dead_letter_record> out;
  for (auto& r : *all)
    out[r.workflow_id] = r; // oldest first: the last one stays
  return out;
}

int fail(const char* cmd, const caf::error& e, std::ostream& err) {
  err << "troupe dlq " << cmd << ": " << describe(e) << '\n';
  return exit_failed;
}

} // namespace

int dlq_list(const std::string& journal, bool json, std::ostream& out, std::ostream& err) {
  auto store = open_existing_journal(journal);
  if (!store)
    return fail("list", store.error(), err);
  auto rows = (*store)->open_workflows();
  if (!rows)
    return fail("list", rows.error(), err);
  auto records = latest_records(**store);
  if (!records)
    return fail("list", records.error(), err);
  size_t n = 0;
  for (auto& row : *rows) {
    if (row.status != "dead_lettered")
      continue;
    ++n;
    dead_letter_record r;
    if (auto i = records->find(row.id); i != records->end())
      r = i->second;
    if (json) {
      out << nlohmann::json{{"id", row.id},         {"definition", row.definition},
                            {"node", r.node},       {"outcome", r.outcome},
                            {"reason", r.reason},   {"at_ns", r.at_ns}}
               .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
          << '\n';
      continue;
    }
    out << row.id << "  " << row.definition << "  at '" << r.node << "'  " << r.outcome << "  "
        << utc_time(r.at_ns) << "\n    " << r.reason << '\n';
  }
  if (!json)
    out << n << " workflow" << (n == 1 ? "" : "s") << " in dead letter\n";
  return exit_ok;
}

int dlq_show(const std::string& journal, const std::string& id, bool json, std::ostream& out,
             std::ostream& err) {
  auto store = open_existing_journal(journal);
  if (!store)
    return fail("show", store.error(), err);
  auto row = (*store)->workflow(id);
  if (!row)
    return fail("show", row.error(), err);
  auto all = (*store)->dead_letters();
  if (!all)
    return fail("show", all.error(), err);
  auto events = (*store)->read(id);
  if (!events)
    return fail("show", events.error(), err);
  std::vector<dead_letter_record> mine;
  for (auto& r : *all)
    if (r.workflow_id == id)
      mine.push_back(r);
  if (json) {
    auto j = nlohmann::json{{"id", row->id}, {"definition", row->definition},
                            {"status", row->status}, {"outcome", row->outcome}};
    auto& dl = j["dead_letters"] = nlohmann::json::array();
    for (auto& r : mine)
      dl.push_back({{"node", r.node}, {"outcome", r.outcome}, {"reason", r.reason},
                    {"at_ns", r.at_ns}});
    auto& ev = j["events"] = nlohmann::json::array();
    for (auto& e : *events)
      ev.push_back({{"wf_seq", e.wf_seq}, {"kind", e.kind}, {"at_ns", e.at_ns},
                    {"payload", nlohmann::json::parse(e.payload, nullptr, false)}});
    out << j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    return exit_ok;
  }
  out << row->id << " (" << row->definition << " v" << row->version << "): " << row->status
      << (row->outcome.empty() ? "" : " (" + row->outcome + ")") << '\n';
  if (mine.empty())
    out << "never dead-lettered\n";
  for (auto& r : mine)
    out << "dead-lettered " << utc_time(r.at_ns) << " at '" << r.node << "' (" << r.outcome
        << "): " << r.reason << '\n';
  out << "events:\n";
  for (auto& e : *events)
    out << "  #" << e.wf_seq << "  " << utc_time(e.at_ns) << "  " << e.kind << "  " << e.payload
        << '\n';
  return exit_ok;
}

int dlq_act(const std::string& journal, const std::string& id, const dead_letter_action& a,
            std::ostream& out, std::ostream& err) {
  const char* cmd = a.retry ? "retry" : "drop";
  auto store = open_existing_journal(journal);
  if (!store)
    return fail(cmd, store.error(), err);
  if (auto e = apply_dead_letter_action(**store, id, a, system_clock_source()->now().count()))
    return fail(cmd, e, err);
  if (a.retry)
    out << "workflow " << id << " will retry when a runtime next recovers " << journal << '\n';
  else
    out << "workflow " << id << " dropped: failed (dropped)\n";
  return exit_ok;
}

} // namespace troupe::cli
