// `troupe tail | replay | fork` (see history.hpp).
#include "history.hpp"

#include <algorithm>
#include <iomanip>
#include <map>
#include <ostream>

#include "admin/admin_json.hpp"
#include "cli.hpp"
#include "common.hpp"
#include "serve.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

namespace troupe::cli {

using json = nlohmann::json;

namespace {

// -- tail -------------------------------------------------------------------------

/// "2026-11-22 21:03:07.123 UTC" from ns since the epoch.
std::string utc_time_ms(int64_t ns) {
  auto t = utc_time(ns); // "... HH:MM:SS UTC"
  char ms[8];
  std::snprintf(ms, sizeof ms, ".%03d", static_cast<int>((ns / 1'000'000) % 1000));
  return t.insert(t.size() - 4, ms);
}

void print_event(const std::string& workflow, const json& e, bool with_id, bool as_json,
                 std::ostream& out) {
  if (as_json) {
    auto line = e;
    line["workflow"] = workflow;
    out << line.dump() << '\n';
    return;
  }
  out << utc_time_ms(e.value("at_ns", int64_t{0})) << "  ";
  if (with_id)
    out << workflow << "  ";
  out << '#' << std::left << std::setw(4) << text(e, "wf_seq") << ' ' << std::setw(18)
      << text(e, "kind") << ' ' << event_detail(e) << std::right << '\n';
  out.flush();
}

/// A workflow's history from the node: the admin API's history JSON.
answer node_history(const std::string& node, const std::string& id) {
  return ask_node(node, "GET", "/api/workflows/" + escaped(id) + "/history");
}

bool finished_status(const std::string& s) {
  return s == "completed" || s == "failed";
}

/// Follows the node's change feed, printing each event newer than the
/// start (or than `printed` for a workflow already shown).
int follow(const inspect_source& src, const tail_options& opt,
           std::map<std::string, uint64_t> printed, uint64_t floor, uint64_t version,
           std::ostream& out, std::ostream& err) {
  size_t shown = 0;
  const int read_timeout = static_cast<int>(opt.poll.count() / 1000) + 10;
  if (opt.on_following)
    opt.on_following();
  for (;;) {
    auto c = ask_node(src.node, "GET",
                      "/api/changes?after=" + std::to_string(version)
                        + "&wait_ms=" + std::to_string(opt.poll.count()),
                      nullptr, read_timeout);
    if (!c)
      return report("tail", c, err);
    version = c.body.value("version", version);
    std::vector<std::string> ids;
    if (!opt.id.empty()) {
      ids.push_back(opt.id); // whatever changed: one history read
    } else if (c.body.value("all", false)) {
      err << "troupe tail: the node's change feed skipped ahead (a purge, or this poll fell "
             "behind): events until now may be missing\n";
      floor = std::max(floor, c.body.value("last_seq", floor));
    } else {
      ids = c.body.value("workflows", std::vector<std::string>{});
    }
    std::vector<std::pair<std::string, json>> fresh;
    bool done = false;
    for (const auto& id : ids) {
      auto h = node_history(src.node, id);
      if (!h) {
        if (!opt.id.empty())
          return report("tail", h, err);
        continue; // purged meanwhile
      }
      auto& mark = printed.try_emplace(id, floor).first->second;
      for (const auto& e : h.body["events"]) {
        auto seq = e.value("seq", uint64_t{0});
        if (seq > mark)
          fresh.emplace_back(id, e);
      }
      for (const auto& e : h.body["events"])
        mark = std::max(mark, e.value("seq", uint64_t{0}));
      if (!opt.id.empty() && !h.body["events"].empty()) {
        auto s = ask_node(src.node, "GET", "/api/workflows/" + escaped(id));
        done = s && finished_status(text(s.body, "status"));
      }
    }
    std::sort(fresh.begin(), fresh.end(), [](const auto& x, const auto& y) {
      return x.second.value("seq", uint64_t{0}) < y.second.value("seq", uint64_t{0});
    });
    for (const auto& [id, e] : fresh) {
      print_event(id, e, opt.id.empty(), opt.json, out);
      if (opt.count > 0 && ++shown >= opt.count)
        return exit_ok;
    }
    if (done)
      return exit_ok;
  }
}

// -- replay -------------------------------------------------------------------------

answer replay_of(const inspect_source& src, const std::string& id, uint64_t seq) {
  if (!src.node.empty())
    return ask_node(src.node, "GET",
                    "/api/workflows/" + escaped(id) + "/state?at=" + std::to_string(seq));
  // A runtime of our own on the file, with the definitions this tool knows
  // (the examples `troupe serve` runs); nothing is recovered or written.
  auto store = open_existing_journal(src.journal);
  if (!store)
    return failed(describe(store.error()));
  config cfg;
  cfg.journal = *store;
  cfg.log_level = "error";
  runtime rt{std::move(cfg)};
  for (const auto& name : serve_example_names())
    if (auto err = register_serve_example(rt, name))
      return failed(describe(err));
  auto w = rt.state_at(id, seq);
  if (!w) {
    if (is(w.error(), errc::unknown_definition))
      return failed(context_of(w.error()) + ": replay it on a node that runs it (--node)");
    return failed(describe(w.error()));
  }
  auto j = admin::to_json(*w);
  j["at"] = seq;
  return ok(std::move(j));
}

// -- fork ---------------------------------------------------------------------------

std::string outcome_of(const json& w) {
  auto s = text(w, "status");
  if (!text(w, "outcome").empty())
    s += " (" + text(w, "outcome") + ")";
  if (!text(w, "node").empty())
    s += " at '" + text(w, "node") + "'";
  return s;
}

std::string shown(const json& v, bool present) {
  return present ? v.dump() : "(absent)";
}

} // namespace

std::vector<json_change> diff_json(const json& a, const json& b) {
  auto fa = a.flatten();
  auto fb = b.flatten();
  std::vector<json_change> out;
  for (auto it = fa.begin(); it != fa.end(); ++it) {
    auto other = fb.find(it.key());
    if (other == fb.end())
      out.push_back({it.key(), it.value(), nullptr, true, false});
    else if (*other != it.value())
      out.push_back({it.key(), it.value(), *other, true, true});
  }
  for (auto it = fb.begin(); it != fb.end(); ++it)
    if (fa.find(it.key()) == fa.end())
      out.push_back({it.key(), nullptr, it.value(), false, true});
  std::sort(out.begin(), out.end(),
            [](const json_change& x, const json_change& y) { return x.path < y.path; });
  return out;
}

int tail(const inspect_source& src, const tail_options& opt, std::ostream& out,
         std::ostream& err) {
  if (opt.id.empty() && !opt.follow) {
    err << "troupe tail: give a workflow id, or -f to follow every workflow\n";
    return exit_usage;
  }
  if (opt.follow && src.node.empty()) {
    err << "troupe tail: -f needs a running node (--node HOST:PORT): a journal file is "
           "locked by the runtime that writes it\n";
    return exit_usage;
  }
  std::map<std::string, uint64_t> printed;
  uint64_t floor = 0, version = 0;
  if (opt.follow) { // where the feed is now: what comes after is new
    auto c = ask_node(src.node, "GET", "/api/changes?after=0&wait_ms=0");
    if (!c)
      return report("tail", c, err);
    version = c.body.value("version", uint64_t{0});
    floor = c.body.value("last_seq", uint64_t{0});
  }
  if (!opt.id.empty()) {
    auto h = !src.node.empty()
               ? node_history(src.node, opt.id)
               : from_journal(src.journal, [&](journal_store& store) {
                   auto records = store.read(opt.id);
                   if (!records)
                     return failed(describe(records.error()));
                   if (records->empty())
                     return failed("no workflow '" + opt.id + "' in " + src.journal);
                   return ok(admin::history_json(opt.id, *records, nullptr));
                 });
    if (!h)
      return report("tail", h, err);
    const auto& events = h.body["events"];
    size_t from = events.size() > opt.last ? events.size() - opt.last : 0;
    uint64_t mark = 0;
    for (size_t i = 0; i < events.size(); ++i) {
      if (i >= from)
        print_event(opt.id, events[i], false, opt.json, out);
      mark = std::max(mark, events[i].value("seq", uint64_t{0}));
    }
    printed[opt.id] = std::max(mark, floor);
    if (!opt.follow)
      return exit_ok;
    auto s = ask_node(src.node, "GET", "/api/workflows/" + escaped(opt.id));
    if (!s)
      return report("tail", s, err);
    if (finished_status(text(s.body, "status")))
      return exit_ok; // nothing more will come
  }
  return follow(src, opt, std::move(printed), floor, version, out, err);
}

int replay(const inspect_source& src, const std::string& id, uint64_t seq, bool as_json,
           std::ostream& out, std::ostream& err) {
  auto a = replay_of(src, id, seq);
  if (!a)
    return report("replay", a, err);
  if (as_json) {
    out << a.body.dump() << '\n';
    return exit_ok;
  }
  const auto& w = a.body;
  out << id << " right after event #" << seq << ": " << outcome_of(w) << '\n';
  if (!text(w, "reason").empty())
    out << "reason: " << text(w, "reason") << '\n';
  out << "steps " << text(w, "steps") << ", tokens " << text(w, "tokens") << ", cost $"
      << text(w, "cost_usd") << '\n'
      << "state:\n"
      << w["state"].dump(2) << '\n';
  return exit_ok;
}

int fork_workflow(const std::string& node, const fork_request& req, std::ostream& out,
         std::ostream& err) {
  json body = {{"at", req.at}};
  if (!req.model.empty())
    body["model"] = req.model;
  if (!req.key.empty())
    body["idempotency_key"] = req.key;
  auto made = ask_node(node, "POST", "/api/workflows/" + escaped(req.id) + "/fork", body);
  if (!made)
    return report("fork", made, err);
  auto fork_id = text(made.body, "id");
  if (!req.wait) {
    if (req.json)
      out << made.body.dump() << '\n';
    else
      out << "forked " << req.id << " at #" << req.at << " as " << fork_id << '\n';
    return exit_ok;
  }
  if (!req.json)
    out << "forked " << req.id << " at #" << req.at << " as " << fork_id
        << (req.model.empty() ? "" : " on model " + req.model) << "; its events:\n";
  // Progress: the fork's events as they commit, until it finishes or parks.
  auto deadline = std::chrono::steady_clock::now() + req.timeout;
  std::map<std::string, uint64_t> printed;
  answer settled;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      err << "troupe fork: " << fork_id << " did not finish or park within "
          << req.timeout.count() << " s (it goes on; see `troupe tail " << fork_id << " -f`)\n";
      return exit_failed;
    }
    auto slice = std::min<int64_t>(left.count(), 1000);
    settled = ask_node(node, "GET",
                       "/api/workflows/" + escaped(fork_id) + "/await?parked=true&timeout_ms="
                         + std::to_string(slice));
    bool timed_out = !settled && settled.fault->message.find("(HTTP 504)") != std::string::npos;
    if (!settled && !timed_out)
      return report("fork", settled, err);
    if (!req.json) {
      auto h = node_history(node, fork_id);
      if (!h)
        return report("fork", h, err);
      auto& mark = printed[fork_id];
      for (const auto& e : h.body["events"])
        if (e.value("seq", uint64_t{0}) > mark) {
          print_event(fork_id, e, false, false, out);
          mark = e.value("seq", uint64_t{0});
        }
    }
    if (settled)
      break;
  }
  auto original = ask_node(node, "GET", "/api/workflows/" + escaped(req.id));
  if (!original)
    return report("fork", original, err);
  const auto& a = original.body;
  const auto& b = settled.body;
  auto changes = diff_json(a.value("state", json::object()), b.value("state", json::object()));
  if (req.json) {
    json diff = json::array();
    for (const auto& c : changes)
      diff.push_back({{"path", c.path},
                      {"original", c.in_a ? c.a : json(nullptr)},
                      {"fork", c.in_b ? c.b : json(nullptr)},
                      {"in_original", c.in_a},
                      {"in_fork", c.in_b}});
    out << json{{"original", a}, {"fork", b}, {"diff", diff}}.dump() << '\n';
    return exit_ok;
  }
  out << "\n" << std::left << std::setw(10) << "" << std::setw(40) << req.id << fork_id << '\n'
      << std::setw(10) << "status" << std::setw(40) << outcome_of(a) << outcome_of(b) << '\n'
      << std::setw(10) << "steps" << std::setw(40) << text(a, "steps") << text(b, "steps") << '\n'
      << std::setw(10) << "tokens" << std::setw(40) << text(a, "tokens") << text(b, "tokens")
      << '\n'
      << std::setw(10) << "cost" << std::setw(40) << ("$" + text(a, "cost_usd")) << "$"
      << text(b, "cost_usd") << std::right << '\n';
  if (changes.empty()) {
    out << "states: the same\n";
    return exit_ok;
  }
  out << "states differ at " << changes.size() << (changes.size() == 1 ? " path" : " paths")
      << " (original -> fork):\n";
  for (const auto& c : changes)
    out << "  " << (c.in_a && c.in_b ? "~ " : c.in_b ? "+ " : "- ") << c.path << ": "
        << shown(c.a, c.in_a) << " -> " << shown(c.b, c.in_b) << '\n';
  return exit_ok;
}

} // namespace troupe::cli
