// `troupe ls | show | stats | approve | reject | edit` (see inspect.hpp). A
// journal file is read through the store's API; a node is asked over its
// admin API. Either way the answer is the admin API's JSON, so one printer
// serves both, and --json prints exactly what a script would get from the
// node.
#include "inspect.hpp"

#include <ctime>
#include <iomanip>
#include <ostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "admin/admin_json.hpp"
#include "cli.hpp"
#include "common.hpp"
#include "source.hpp"
#include "troupe/errors.hpp"

namespace troupe::cli {

using json = nlohmann::json;

caf::expected<std::shared_ptr<journal_store>> open_existing_journal(const std::string& path) {
  sqlite_journal_options o;
  o.path = path;
  o.create = false;
  return open_sqlite_journal(o);
}

std::string utc_time(int64_t ns) {
  std::time_t t = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
  return buf;
}

namespace {

answer ls_of(const inspect_source& src, const std::string& status, size_t limit) {
  if (!src.node.empty())
    return ask_node(src.node, "GET",
                    "/api/workflows?limit=" + std::to_string(limit)
                      + (status.empty() ? "" : "&status=" + escaped(status)));
  return from_journal(src.journal, [&](journal_store& store) {
    workflow_query q;
    q.status = status;
    q.limit = limit;
    auto rows = store.list_workflows(q);
    if (!rows)
      return failed(describe(rows.error()));
    json list = json::array();
    for (auto& r : *rows)
      list.push_back(admin::to_json(r));
    return ok({{"workflows", list}});
  });
}

answer show_of(const inspect_source& src, const std::string& id) {
  if (!src.node.empty()) {
    auto info = ask_node(src.node, "GET", "/api/workflows/" + escaped(id));
    if (!info)
      return info;
    auto history = ask_node(src.node, "GET", "/api/workflows/" + escaped(id) + "/history");
    if (!history)
      return history;
    return ok({{"workflow", std::move(info.body)}, {"history", std::move(history.body)}});
  }
  return from_journal(src.journal, [&](journal_store& store) {
    auto row = store.workflow(id);
    if (!row)
      return failed(describe(row.error()));
    auto records = store.read(id);
    if (!records)
      return failed(describe(records.error()));
    // no definition here: attempts are shown by node, without their agent
    return ok({{"workflow", admin::to_json(*row)},
               {"history", admin::history_json(id, *records, nullptr)}});
  });
}

answer stats_of(const inspect_source& src) {
  if (!src.node.empty())
    return ask_node(src.node, "GET", "/api/summary");
  return from_journal(src.journal, [&](journal_store& store) {
    auto n = store.count_workflows();
    if (!n)
      return failed(describe(n.error()));
    return ok({{"counts", admin::to_json(*n)},
               {"pending_gates", n->parked},
               {"dead_letters", n->dead_lettered}});
  });
}

// -- printing ---------------------------------------------------------------------

std::string ms(double x) {
  std::ostringstream s;
  if (x >= 1000)
    s << std::fixed << std::setprecision(2) << x / 1000 << " s";
  else
    s << std::fixed << std::setprecision(1) << x << " ms";
  return s.str();
}

void print_rows(const json& rows, std::ostream& out) {
  for (const auto& r : rows) {
    out << std::left << std::setw(28) << text(r, "id") << "  " << std::setw(16)
        << text(r, "definition") << "  " << std::setw(13) << text(r, "status") << "  "
        << std::setw(12) << text(r, "outcome") << "  "
        << utc_time(r.value("updated_ns", int64_t{0})) << '\n';
  }
  out << rows.size() << (rows.size() == 1 ? " workflow\n" : " workflows\n");
}

void print_timeline(const json& j, std::ostream& out) {
  const auto& w = j["workflow"];
  const auto& h = j["history"];
  out << text(w, "id") << "  " << text(w, "definition") << "  " << text(w, "status");
  if (!text(w, "outcome").empty())
    out << " (" << text(w, "outcome") << ")";
  if (!text(w, "node").empty())
    out << " at '" << text(w, "node") << "'";
  out << '\n';
  if (w.contains("steps"))
    out << "steps " << text(w, "steps") << ", tokens " << text(w, "tokens") << ", cost $"
        << text(w, "cost_usd") << '\n';
  out << "\nevents (time since start)\n";
  for (const auto& e : h["events"])
    out << "  #" << std::left << std::setw(4) << text(e, "wf_seq") << std::right
        << std::setw(11) << ms(e.value("t_ms", 0.0)) << "  " << std::left << std::setw(18)
        << text(e, "kind") << " " << event_detail(e) << '\n';
  out << "\nattempts\n";
  for (const auto& a : h["attempts"]) {
    std::string dur = a["duration_ms"].is_null() ? "-" : ms(a["duration_ms"].get<double>());
    out << "  " << std::left << std::setw(24) << (text(a, "node") + "#" + text(a, "attempt"))
        << std::right << std::setw(11) << dur << "  " << std::left << std::setw(12)
        << text(a, "outcome") << " tokens " << text(a, "tokens");
    if (a.value("cost_usd", 0.0) > 0)
      out << "  $" << text(a, "cost_usd");
    if (!text(a, "reason").empty())
      out << "  " << text(a, "reason");
    out << '\n';
  }
}

} // namespace

int inspect_ls(const inspect_source& src, const std::string& status, size_t limit, bool as_json,
               std::ostream& out, std::ostream& err) {
  auto a = ls_of(src, status, limit);
  if (!a)
    return report("ls", a, err);
  if (as_json)
    out << a.body["workflows"].dump() << '\n';
  else
    print_rows(a.body["workflows"], out);
  return exit_ok;
}

int inspect_show(const inspect_source& src, const std::string& id, bool as_json,
                 std::ostream& out, std::ostream& err) {
  auto a = show_of(src, id);
  if (!a)
    return report("show", a, err);
  if (as_json)
    out << a.body.dump() << '\n';
  else
    print_timeline(a.body, out);
  return exit_ok;
}

int inspect_stats(const inspect_source& src, bool as_json, std::ostream& out,
                  std::ostream& err) {
  auto a = stats_of(src);
  if (!a)
    return report("stats", a, err);
  if (as_json) {
    out << a.body.dump() << '\n';
    return exit_ok;
  }
  const auto& n = a.body["counts"];
  for (const char* s : {"running", "parked", "dead_lettered", "completed", "failed"})
    out << std::left << std::setw(15) << s << n.value(s, uint64_t{0}) << '\n';
  out << std::left << std::setw(15) << "total" << n.value("total", uint64_t{0}) << '\n';
  return exit_ok;
}

int inspect_decide(const std::string& node, const std::string& id, const std::string& gate,
                   const std::string& verdict, const std::string& patch_json,
                   const std::string& by, std::ostream& out, std::ostream& err) {
  json body = {{"gate", gate}, {"verdict", verdict}, {"by", by}};
  if (verdict == "edit") {
    auto patch = json::parse(patch_json, nullptr, false);
    if (patch.is_discarded() || !patch.is_object()) {
      err << "troupe edit: --patch must be a JSON object, got '" << patch_json << "'\n";
      return exit_usage;
    }
    body["patch"] = std::move(patch);
  }
  auto a = ask_node(node, "POST", "/api/workflows/" + escaped(id) + "/signal", body);
  if (!a)
    return report(verdict.c_str(), a, err);
  out << id << ": " << verdict << " at '" << gate << "' by " << by << '\n';
  return exit_ok;
}

} // namespace troupe::cli
