// The triage demo driver: starts a batch of tickets, approves whatever parks
// at the review gate, waits for every workflow to settle, then tallies the
// journal and prints it for people. Runs on the caller's thread and blocks;
// the runtime it creates lives only for the call.
#include "triage/triage.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "troupe/errors.hpp"

namespace troupe::examples {

namespace {

using json = nlohmann::json;
using steady = std::chrono::steady_clock;

/// Rounds of approvals at most. Every park costs an analyze step and the
/// definition allows 20 steps, so no workflow parks more often than this.
constexpr size_t max_rounds = 25;

json payload_of(const journal_record& r) {
  auto j = json::parse(r.payload, nullptr, false);
  return j.is_object() ? j : json::object();
}

std::string str_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

uint64_t uint_field(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

/// What one workflow's history says.
struct history_facts {
  bool retried = false;
  size_t signals = 0;     ///< decisions received at the gate
  size_t timeouts = 0;    ///< attempts that timed out
  size_t interrupted = 0; ///< attempts cut off by a runtime stop
};

/// One journal record as the timeline shows it.
struct reading {
  std::string node;
  uint64_t attempt = 0;
  std::string failure; ///< the attempt failed: "timeout", "crashed", ...
  std::string what;    ///< outcome or failure, for people
};

/// Reads a history in order, the way a person would. A step timeout is
/// journaled as the timer_fired of the attempt's step_timeout timer, not as
/// a step_failed: it is shown and counted as that attempt timing out.
class history_reader {
public:
  reading read(const journal_record& r) {
    auto p = payload_of(r);
    reading x;
    x.node = str_field(p, "node");
    x.attempt = uint_field(p, "attempt");
    if (r.kind == "step_scheduled") {
      in_flight_ = true;
      node_ = x.node;
      attempt_ = x.attempt;
    } else if (r.kind == "step_completed") {
      in_flight_ = false;
      x.what = str_field(p, "label") + " (" + std::to_string(uint_field(p, "tokens")) + " tokens)";
    } else if (r.kind == "step_failed") {
      in_flight_ = false;
      x.failure = str_field(p, "kind");
      x.what = x.failure;
      if (auto reason = str_field(p, "reason"); !reason.empty())
        x.what += ": " + reason;
    } else if (r.kind == "signal_received") {
      x.node = str_field(p, "gate");
      x.what = str_field(p, "decision");
      if (auto by = str_field(p, "by"); !by.empty())
        x.what += " by " + by;
    } else if (r.kind == "timer_fired") {
      auto kind = str_field(p, "kind");
      if (kind == "step_timeout" && in_flight_) {
        in_flight_ = false;
        x.node = node_;
        x.attempt = attempt_;
        x.failure = "timeout";
        x.what = "timeout: no outcome in time";
      } else if (kind == "retry_backoff") {
        x.what = "retry backoff over";
      } else if (kind == "workflow_deadline") {
        x.what = "deadline passed";
      } else {
        x.what = kind;
      }
    }
    return x;
  }

  /// An attempt is scheduled and has not ended yet.
  bool in_flight() const { return in_flight_; }

private:
  bool in_flight_ = false;
  std::string node_;
  uint64_t attempt_ = 0;
};

/// A failed attempt that the runtime journaled when it found the attempt
/// cut off by a stop (actors/workflow_actor.cpp, resume()).
bool is_interruption(const reading& x) {
  return x.failure == "crashed" && x.what.rfind("crashed: interrupted", 0) == 0;
}

/// Counts steps that ran again after completing. A visit of a node begins
/// with its attempt 1; once a visit completed, no event of it may follow.
class repeat_checker {
public:
  /// The record just read (as `x`) repeats a completed step.
  bool repeats(const journal_record& r, const reading& x) {
    if (r.kind != "step_scheduled" && r.kind != "step_completed")
      return false;
    if (r.kind == "step_scheduled" && x.attempt == 1)
      ++visits_[x.node];
    auto visit = std::make_pair(x.node, visits_[x.node]);
    bool again = done_.count(visit) > 0;
    if (r.kind == "step_completed")
      done_.insert(visit);
    return again;
  }

private:
  std::map<std::string, uint32_t> visits_;
  std::set<std::pair<std::string, uint32_t>> done_;
};

history_facts count_history(const std::vector<journal_record>& h, triage_summary& s) {
  history_facts f;
  history_reader reader;
  repeat_checker repeats;
  for (const auto& r : h) {
    auto x = reader.read(r);
    if (repeats.repeats(r, x))
      ++s.repeated_steps;
    if (r.kind == "step_scheduled" && x.attempt > 1)
      f.retried = true;
    else if (r.kind == "signal_received")
      ++f.signals;
    if (x.failure == "timeout")
      ++f.timeouts;
    else if (is_interruption(x))
      ++f.interrupted;
    else if (x.failure == "crashed")
      ++s.crashes;
    else if (x.failure == "bad_output")
      ++s.bad_outputs;
    else if (x.failure == "circuit_open")
      ++s.circuit_open;
  }
  s.timeouts += f.timeouts;
  s.interrupted += f.interrupted;
  return f;
}

std::string percent(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g%%", x * 100.0);
  return buf;
}

} // namespace

void summary_row(std::ostream& out, const char* label, const std::string& value,
                 const std::string& note) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "  %-30s %10s", label, value.c_str());
  out << buf;
  if (!note.empty())
    out << "   " << note;
  out << '\n';
}

void summary_row(std::ostream& out, const char* label, uint64_t value, const std::string& note) {
  summary_row(out, label, std::to_string(value), note);
}

// start() returns once the workflow's first write is durable, so the
// tickets are started from a few threads (a ticket system would have many
// callers); the results are kept in ticket order.
std::vector<started_ticket> start_tickets(runtime& rt, size_t n, triage_summary& s) {
  constexpr size_t callers = 8;
  std::vector<caf::expected<std::string>> ids(n, caf::expected<std::string>{caf::error{}});
  std::vector<std::thread> threads;
  for (size_t c = 0; c < std::min(callers, n); ++c)
    threads.emplace_back([&, c] {
      for (size_t i = c; i < n; i += callers)
        ids[i] = rt.start("triage", json{{"ticket", triage_ticket(i)}},
                          "ticket-" + std::to_string(i));
    });
  for (auto& t : threads)
    t.join();
  std::vector<started_ticket> started;
  started.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (!ids[i]) {
      s.errors.push_back("start ticket-" + std::to_string(i) + ": " + describe(ids[i].error()));
      continue;
    }
    started.push_back({std::move(*ids[i]), i});
  }
  s.started = started.size();
  return started;
}

void settle_tickets(runtime& rt, const std::vector<started_ticket>& tickets,
                    std::chrono::milliseconds await_timeout, triage_summary& s,
                    const std::function<void(settle_event)>& progress) {
  auto report = [&progress](settle_event e) {
    if (progress)
      progress(e);
  };
  std::vector<std::string> pending;
  for (const auto& t : tickets)
    pending.push_back(t.id);
  for (size_t round = 0; round < max_rounds && !pending.empty(); ++round) {
    std::vector<std::string> next;
    for (const auto& id : pending) {
      auto info = rt.await(id, await_timeout, /*or_parked=*/true);
      if (!info) {
        s.errors.push_back("await " + id + ": " + describe(info.error()));
        continue;
      }
      if (info->finished()) {
        report(settle_event::finished);
        continue;
      }
      next.push_back(id);
      ++s.parked;
      report(settle_event::parked);
      if (auto err = rt.signal(id, info->node, decision::approve("demo"))) {
        s.errors.push_back("signal " + id + ": " + describe(err));
        continue;
      }
      ++s.approved;
      report(settle_event::approved);
    }
    pending = std::move(next);
  }
}

void tally_tickets(runtime& rt, const std::vector<started_ticket>& tickets, triage_summary& s) {
  std::map<std::string, size_t> failures;
  int best = -1;
  for (const auto& [id, ticket] : tickets) {
    auto info = rt.status(id);
    if (!info) {
      s.errors.push_back("status " + id + ": " + describe(info.error()));
      ++s.unsettled;
      continue;
    }
    s.steps += info->steps;
    s.tokens += info->tokens;
    s.cost_usd += info->cost_usd;
    if (info->status == workflow_status::completed) {
      ++s.completed;
    } else if (info->status == workflow_status::failed) {
      ++s.failed;
      ++failures[info->outcome + (info->node.empty() ? "" : " -> " + info->node)];
    } else {
      ++s.unsettled;
    }
    auto hist = rt.history(id);
    if (!hist) {
      s.errors.push_back("history " + id + ": " + describe(hist.error()));
      continue;
    }
    auto facts = count_history(*hist, s);
    if (facts.retried)
      ++s.retried;
    s.signals += facts.signals;
    // The most telling timeline: an interruption, a timeout, a retry, a park.
    int score = (facts.interrupted > 0 ? 8 : 0) + (facts.timeouts > 0 ? 4 : 0)
                + (facts.retried ? 2 : 0) + (facts.signals > 0 ? 1 : 0);
    if (score > best) {
      best = score;
      s.sample_id = id;
      s.sample_ticket = triage_ticket(ticket);
      s.sample_history = std::move(*hist);
    }
  }
  for (const auto& f : failures)
    s.failures.push_back(f);
}

bool ends_mid_attempt(const std::vector<journal_record>& history) {
  history_reader reader;
  for (const auto& r : history)
    reader.read(r);
  return reader.in_flight();
}

caf::expected<triage_summary> run_triage(const triage_options& opt) {
  std::unique_ptr<runtime> rt;
  try {
    rt = std::make_unique<runtime>(triage_config(opt));
  } catch (const std::invalid_argument& e) {
    return make_error(errc::invalid_config, e.what());
  }
  if (auto err = register_triage(*rt, opt.step_timeout))
    return err;
  triage_summary s;
  auto t0 = steady::now();
  auto tickets = start_tickets(*rt, opt.workflows, s);
  settle_tickets(*rt, tickets, opt.await_timeout, s);
  s.wall = steady::now() - t0;
  tally_tickets(*rt, tickets, s);
  rt->shutdown();
  return s;
}

void print_timeline(const std::vector<journal_record>& history, std::ostream& out,
                    uint64_t cut_after, const std::string& cut) {
  if (history.empty()) {
    out << "  (no events)\n";
    return;
  }
  char buf[160];
  std::snprintf(buf, sizeof buf, "  %9s  %-17s %-9s %7s  %s\n", "ms", "event", "node", "attempt",
                "outcome");
  out << buf;
  auto t0 = history.front().at_ns;
  history_reader reader;
  for (const auto& r : history) {
    auto x = reader.read(r);
    auto attempt = x.attempt > 0 ? std::to_string(x.attempt) : std::string{};
    std::snprintf(buf, sizeof buf, "  %9.1f  %-17s %-9s %7s",
                  static_cast<double>(r.at_ns - t0) / 1e6, r.kind.c_str(), x.node.c_str(),
                  attempt.c_str());
    std::string line = buf;
    if (!x.what.empty())
      line += "  " + x.what;
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out << line << '\n';
    if (cut_after > 0 && r.wf_seq == cut_after)
      out << "  " << std::string(9, '-') << "  " << cut << '\n';
  }
}

void print_triage_summary(const triage_options& opt, const triage_summary& s, std::ostream& out) {
  out << "triage: " << opt.workflows << " tickets, seed " << opt.seed << ", " << opt.threads
      << " threads; model faults: " << percent(opt.fail_rate) << " errors, "
      << percent(opt.timeout_rate) << " timeouts, " << percent(opt.malformed_rate)
      << " malformed\n\n";
  summary_row(out, "workflows started", s.started);
  summary_row(out, "  completed", s.completed);
  summary_row(out, "  failed", s.failed);
  for (const auto& [how, n] : s.failures) {
    auto label = "    " + how;
    summary_row(out, label.c_str(), n);
  }
  if (s.unsettled > 0)
    summary_row(out, "  unsettled", s.unsettled, "(did not finish in time)");
  summary_row(out, "workflows with a retried step", s.retried);
  summary_row(out, "attempts timed out", s.timeouts);
  summary_row(out, "attempts crashed", s.crashes);
  summary_row(out, "attempts with bad output", s.bad_outputs);
  if (s.interrupted > 0)
    summary_row(out, "attempts cut off by a stop", s.interrupted);
  if (s.circuit_open > 0)
    summary_row(out, "attempts refused (breaker open)", s.circuit_open);
  summary_row(out, "parked at review", s.parked);
  summary_row(out, "approved", s.approved);
  summary_row(out, "steps", s.steps);
  summary_row(out, "tokens", s.tokens);
  char buf[32];
  if (s.cost_usd > 0) {
    std::snprintf(buf, sizeof buf, "$%.6f", s.cost_usd);
    summary_row(out, "cost", buf);
  }
  double secs = std::chrono::duration<double>(s.wall).count();
  std::snprintf(buf, sizeof buf, "%.2f s", secs);
  summary_row(out, "wall time", buf);
  std::snprintf(buf, sizeof buf, "%.0f", secs > 0 ? static_cast<double>(s.steps) / secs : 0.0);
  summary_row(out, "steps/s", buf);
  for (const auto& e : s.errors)
    out << "  error: " << e << '\n';
  if (!s.sample_id.empty()) {
    out << "\ntimeline of " << s.sample_id << ": " << s.sample_ticket << '\n';
    print_timeline(s.sample_history, out);
  }
}

int run_triage_demo(const triage_options& opt, std::ostream& out) {
  auto s = run_triage(opt);
  if (!s) {
    out << "triage: could not start the runtime: " << describe(s.error()) << '\n';
    return 1;
  }
  print_triage_summary(opt, *s, out);
  return s->ok() ? 0 : 1;
}

} // namespace troupe::examples
