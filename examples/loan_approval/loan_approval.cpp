// The loan_approval example's graph, agents, scripted model rules, driver
// and demo runner (see loan_approval.hpp). Agents run on their attempts'
// runner actors and keep no state; the rules run on the scripted model's
// actor; drive_to_gate and run_loan_approval on the caller's thread.
#include "loan_approval/loan_approval.hpp"

#include <algorithm>
#include <array>
#include <cstdlib>
#include <iomanip>
#include <ostream>
#include <sstream>
#include <utility>

#include "troupe/agent.hpp"
#include "troupe/errors.hpp"
#include "troupe/hash.hpp"

namespace troupe::examples {

namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

constexpr std::array<const char*, 8> applicants = {"ada",    "grace", "linus", "barbara",
                                                   "ken",    "margaret", "alan", "edsger"};

// -- scripted model rules ----------------------------------------------------------

json last_user_json(const llm_request& req) {
  if (req.messages.empty())
    return json::object();
  auto j = json::parse(req.messages.back().content, nullptr, false);
  return j.is_object() ? j : json::object();
}

/// The attempt number in a request id "<key>:<attempt>:<call>" (0 if none).
uint32_t attempt_of(const std::string& request_id) {
  auto last = request_id.rfind(':');
  if (last == std::string::npos || last == 0)
    return 0;
  auto before = request_id.rfind(':', last - 1);
  if (before == std::string::npos)
    return 0;
  return static_cast<uint32_t>(
    std::strtoul(request_id.substr(before + 1, last - before - 1).c_str(), nullptr, 10));
}

/// The primary bureau: hangs for slow applications, else {"score", "bureau"}.
std::string primary_rule(credit_bureaus& bureaus, const llm_request& req) {
  auto app = last_user_json(req).value("application", std::string{});
  if (bureaus.primary_slow(app)) {
    bureaus.stalled(app, attempt_of(req.request_id));
    return scripted_model_config::no_reply; // it would answer after slow_bureau_takes
  }
  return json{{"score", bureaus.score(app)}, {"bureau", "primary"}}.dump();
}

std::string secondary_rule(credit_bureaus& bureaus, const llm_request& req) {
  auto app = last_user_json(req).value("application", std::string{});
  return json{{"score", bureaus.score(app)}, {"bureau", "secondary"}}.dump();
}

/// {"risk": "low" | "medium" | "high"} from the score and the debt ratio.
std::string risk_rule(const llm_request& req) {
  auto in = last_user_json(req);
  int score = in.value("score", 0);
  double income = in.value("income", 1.0);
  double ratio = in.value("amount", 0.0) / (income > 0 ? income : 1.0);
  const char* risk = "high";
  if (score >= 700 && ratio < 0.4)
    risk = "low";
  else if (score >= 600 && ratio < 0.8)
    risk = "medium";
  return json{{"risk", risk}}.dump();
}

// -- agents -----------------------------------------------------------------------

llm_request json_request(const char* script, const char* instruction, json user,
                         std::vector<std::string> required) {
  llm_request req;
  req.script = script;
  req.json_output = true;
  req.required_fields = std::move(required);
  req.max_tokens = 64;
  req.messages = {{"system", instruction}, {"user", user.dump()}};
  return req;
}

/// identity: an application without an identity document is unverified.
void identity_checker(step_context& ctx) {
  step_outcome o;
  if (ctx.state().value("id_document", std::string{}).empty()) {
    o.label = "unverified";
    o.patch = {{"identity", "missing document"}};
  } else {
    o.patch = {{"identity", "verified"}};
  }
  ctx.finish(std::move(o));
}

/// credit_check and credit_fallback: the bureau's score, read by the model.
void credit_checker(step_context& ctx, const char* script) {
  auto req = json_request(script, "Read the bureau's report. Answer {\"score\": n}.",
                          {{"application", ctx.state().value("application", "")}},
                          {"score", "bureau"});
  ask_json(ctx, std::move(req), [](step_context& c, json reply) {
    if (!reply["score"].is_number_integer())
      return c.fail(failure_kind::bad_output, "the report has no integer score");
    step_outcome o;
    o.patch = {{"credit", {{"score", reply["score"]}, {"bureau", reply["bureau"]}}}};
    c.finish(std::move(o));
  });
}

/// risk: the model rates the application.
void risk_scorer(step_context& ctx) {
  const auto& st = ctx.state();
  auto req = json_request("risk", "Rate the loan's risk. Answer {\"risk\": s}.",
                          {{"score", st.value("credit", json::object()).value("score", 0)},
                           {"amount", st.value("amount", 0)},
                           {"income", st.value("income", 0)}},
                          {"risk"});
  ask_json(ctx, std::move(req), [](step_context& c, json reply) {
    auto risk = reply.value("risk", std::string{});
    if (risk != "low" && risk != "medium" && risk != "high")
      return c.fail(failure_kind::bad_output, "risk is not low, medium or high");
    step_outcome o;
    o.patch = {{"risk", risk}};
    c.finish(std::move(o));
  });
}

/// compliance: applicants from an embargoed country are flagged.
void compliance_checker(step_context& ctx) {
  step_outcome o;
  if (ctx.state().value("country", std::string{}) == "embargoed") {
    o.label = "flagged";
    o.patch = {{"compliance", "embargoed country"}};
  } else {
    o.patch = {{"compliance", "clear"}};
  }
  ctx.finish(std::move(o));
}

bool settled(const caf::expected<workflow_info>& info) {
  return info && (info->finished() || info->status == workflow_status::parked);
}

/// Whether the workflow's current credit_check attempt is the one the
/// primary bureau left hanging.
bool hanging_now(runtime& rt, credit_bureaus& bureaus, const loan_application& app) {
  auto events = rt.history(app.id);
  if (!events || events->empty() || events->back().kind != "step_scheduled")
    return false;
  auto p = json::parse(events->back().payload, nullptr, false);
  return !p.is_discarded() && p.value("node", std::string{}) == "credit_check"
         && p.value("attempt", 0u) == bureaus.last_stall(app.key);
}

} // namespace

// -- credit_bureaus ------------------------------------------------------------------

bool credit_bureaus::primary_slow(const std::string& application) const {
  return splitmix64(fnv1a(application + "/slow") ^ seed_) % 3 == 0;
}

int credit_bureaus::score(const std::string& application) const {
  return 520 + static_cast<int>(splitmix64(fnv1a(application + "/score") ^ seed_) % 300);
}

void credit_bureaus::stalled(const std::string& application, uint32_t attempt) {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    last_[application] = attempt;
    ++stalls_;
  }
  cv_.notify_all();
}

uint32_t credit_bureaus::last_stall(const std::string& application) const {
  std::lock_guard<std::mutex> guard{mtx_};
  auto i = last_.find(application);
  return i == last_.end() ? 0 : i->second;
}

uint64_t credit_bureaus::stalls() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return stalls_;
}

bool credit_bureaus::wait_next_stall(milliseconds d) {
  std::unique_lock<std::mutex> lock{mtx_};
  auto seen = stalls_;
  return cv_.wait_for(lock, d, [&] { return stalls_ != seen; });
}

// -- the example's pieces ----------------------------------------------------------

caf::expected<definition> loan_definition() {
  auto policy = [](duration timeout) {
    agent_policy p;
    p.timeout = timeout;
    p.retry.max_attempts = 3;
    p.retry.base_backoff = milliseconds{1};
    p.retry.max_backoff = milliseconds{5};
    return p;
  };
  auto primary = policy(credit_budget);
  primary.retry.retryable.erase(failure_kind::timeout); // a slow bureau: ask the other one
  primary.fallback = "credit_fallback";
  return definition_builder{"loans"}
    .agent("identity", "identity_checker", policy(std::chrono::seconds{1}))
    .on("ok", "credit_check").on("unverified", "declined").on("exhausted", "failed")
    .agent("credit_check", "credit_primary", primary)
    .on("ok", "risk").on("timeout", "credit_fallback").on("exhausted", "credit_fallback")
    .agent("credit_fallback", "credit_secondary", policy(credit_budget))
    .on("ok", "risk").on("exhausted", "failed")
    .agent("risk", "risk_scorer", policy(std::chrono::seconds{5}))
    .on("ok", "compliance").on("exhausted", "failed")
    .agent("compliance", "compliance_checker", policy(std::chrono::seconds{1}))
    .on("ok", "approval").on("flagged", "declined").on("exhausted", "failed")
    .gate("approval").on("approve", "funded").on("reject", "rejected")
    .completed("funded").failed("declined").failed("rejected").failed("failed")
    .build();
}

config loan_config(const loan_options& opt, std::shared_ptr<credit_bureaus> bureaus,
                   std::shared_ptr<virtual_clock> clock) {
  config cfg;
  cfg.threads = opt.threads;
  cfg.random = seeded_random(opt.seed);
  cfg.clock = std::move(clock);
  cfg.model.rules["bureau_primary"] = [bureaus](const llm_request& r) {
    return primary_rule(*bureaus, r);
  };
  cfg.model.rules["bureau_secondary"] = [bureaus](const llm_request& r) {
    return secondary_rule(*bureaus, r);
  };
  cfg.model.rules["risk"] = risk_rule;
  cfg.log_level = "off";
  return cfg;
}

caf::error register_loan_approval(runtime& rt) {
  if (auto err = rt.register_agent("identity_checker", agent_fn{identity_checker}))
    return err;
  if (auto err = rt.register_agent("credit_primary", [](step_context& ctx) {
        credit_checker(ctx, "bureau_primary");
      }))
    return err;
  if (auto err = rt.register_agent("credit_secondary", [](step_context& ctx) {
        credit_checker(ctx, "bureau_secondary");
      }))
    return err;
  if (auto err = rt.register_agent("risk_scorer", agent_fn{risk_scorer}))
    return err;
  if (auto err = rt.register_agent("compliance_checker", agent_fn{compliance_checker}))
    return err;
  auto def = loan_definition();
  if (!def)
    return std::move(def.error());
  return rt.register_definition(std::move(*def));
}

std::string loan_key(size_t i) {
  return "app-" + std::to_string(i);
}

json loan_input(size_t i, uint64_t seed) {
  auto key = loan_key(i);
  auto h = splitmix64(fnv1a(key) ^ seed);
  std::ostringstream doc;
  doc << "passport-" << std::hex << (h >> 40);
  return {{"application", key},
          {"applicant", applicants[h % applicants.size()]},
          {"amount", 5000 + static_cast<int64_t>((h >> 8) % 20) * 1000},
          {"income", 30000 + static_cast<int64_t>((h >> 16) % 10) * 10000},
          {"id_document", (h >> 24) % 10 == 0 ? std::string{} : doc.str()},
          {"country", (h >> 28) % 12 == 0 ? "embargoed" : "domestic"}};
}

caf::error drive_to_gate(runtime& rt, credit_bureaus& bureaus, virtual_clock& clock,
                         const std::vector<loan_application>& apps, milliseconds patience) {
  auto give_up = std::chrono::steady_clock::now() + patience;
  auto late = [&](const loan_application& a) {
    return make_error(errc::await_timeout, a.key + " (" + a.id + ") did not reach the approval "
                                             "gate or an end in time");
  };
  for (const auto& a : apps) // the applications no bureau holds up
    if (!a.slow && !settled(rt.await(a.id, patience, true)))
      return late(a);
  // every slow one hung at the primary bureau, in its current attempt
  for (const auto& a : apps)
    while (a.slow && !hanging_now(rt, bureaus, a) && !settled(rt.status(a.id))) {
      if (std::chrono::steady_clock::now() > give_up)
        return late(a);
      bureaus.wait_next_stall(milliseconds{20}); // or a moment for its journal write
    }
  clock.advance(slow_bureau_takes); // the slow answers would come now: too late
  if (auto err = rt.clock_changed())
    return err;
  for (const auto& a : apps)
    if (a.slow && !settled(rt.await(a.id, patience, true)))
      return late(a);
  return {};
}

decision underwrite(const workflow_info& parked) {
  auto risk = parked.state.value("risk", std::string{});
  if (risk == "low")
    return decision::approve("underwriter");
  if (risk == "medium") {
    auto amount = parked.state.value("amount", int64_t{0});
    return decision::edit(json{{"amount", amount * 3 / 4}, {"note", "approved at 75%"}}.dump(),
                          "underwriter");
  }
  return decision::reject("underwriter");
}

caf::expected<std::string> loan_path(runtime& rt, const std::string& workflow_id) {
  auto events = rt.history(workflow_id);
  if (!events)
    return std::move(events.error());
  struct visit {
    std::string node;
    uint32_t attempts = 0;
    std::string ended; // a failure kind that routed away, a gate's decision
  };
  std::vector<visit> path;
  for (const auto& r : *events) {
    auto p = json::parse(r.payload, nullptr, false);
    if (p.is_discarded())
      continue;
    auto node = p.value("node", std::string{});
    if (r.kind == "step_scheduled") {
      if (path.empty() || path.back().node != node)
        path.push_back({node, 0, {}});
      ++path.back().attempts;
    } else if (r.kind == "step_failed" && !path.empty()) {
      path.back().ended = p.value("kind", std::string{});
    } else if (r.kind == "step_completed" && !path.empty()) {
      path.back().ended.clear();
    } else if (r.kind == "signal_received") {
      path.push_back({p.value("gate", std::string{}), 0, p.value("decision", std::string{})});
    }
  }
  std::string out;
  for (const auto& v : path) {
    if (v.attempts == 0)
      out += v.node + "[" + v.ended + "] -> ";
    else
      out += v.node + "(" + std::to_string(v.attempts) + (v.ended.empty() ? "" : " " + v.ended)
             + ") -> ";
  }
  auto info = rt.status(workflow_id);
  if (!info)
    return std::move(info.error());
  return out + info->node;
}

int run_loan_approval(const loan_options& opt, std::ostream& out) {
  auto clock = std::make_shared<virtual_clock>();
  auto bureaus = std::make_shared<credit_bureaus>(opt.seed);
  runtime rt{loan_config(opt, bureaus, clock)};
  if (auto err = register_loan_approval(rt)) {
    out << "loan_approval: " << describe(err) << '\n';
    return 1;
  }
  constexpr auto patience = std::chrono::minutes{2};
  out << "loan_approval: " << opt.applications << " applications, seed " << opt.seed
      << "; credit_check budget " << credit_budget.count() << " s, the primary bureau takes "
      << slow_bureau_takes.count() << " s for some applicants (virtual clock)\n";
  std::vector<loan_application> apps;
  for (size_t i = 0; i < opt.applications; ++i) {
    loan_application a{loan_key(i), {}, loan_input(i, opt.seed), false};
    a.slow = bureaus->primary_slow(a.key) && !a.input["id_document"].get<std::string>().empty();
    auto id = rt.start("loans", a.input, a.key);
    if (!id) {
      out << a.key << ": start: " << describe(id.error()) << '\n';
      return 1;
    }
    a.id = *id;
    apps.push_back(std::move(a));
  }
  if (auto err = drive_to_gate(rt, *bureaus, *clock, apps, patience)) {
    out << "loan_approval: " << describe(err) << '\n';
    return 1;
  }
  size_t parked = 0;
  for (const auto& a : apps) {
    auto info = rt.status(a.id);
    if (info && info->status == workflow_status::parked) {
      ++parked;
      if (auto err = rt.signal(a.id, "approval", underwrite(*info)))
        out << a.key << ": signal: " << describe(err) << '\n';
    }
  }
  out << "virtual clock moved " << std::chrono::duration_cast<std::chrono::seconds>(
                                       clock->skew()).count()
      << " s; " << bureaus->stalls() << " primary bureau calls hung; " << parked
      << " applications parked at approval and decided by the underwriter\n\n";
  std::map<std::string, size_t> ends;
  size_t unsettled = 0, fallbacks = 0;
  for (const auto& a : apps) {
    auto info = rt.await(a.id, patience);
    auto path = loan_path(rt, a.id);
    if (!info || !info->finished() || !path) {
      ++unsettled;
      out << "  " << a.key << ": did not finish\n";
      continue;
    }
    ++ends[info->node];
    fallbacks += path->find("credit_fallback") != std::string::npos;
    std::ostringstream asked, detail;
    asked << "$" << a.input.value("amount", int64_t{0});
    if (info->node == "funded")
      detail << " $" << info->state.value("amount", int64_t{0});
    else if (info->node == "declined")
      detail << ": " << (info->state.value("identity", "") == "verified"
                           ? info->state.value("compliance", "")
                           : info->state.value("identity", ""));
    out << "  " << std::left << std::setw(7) << a.key << std::setw(9)
        << a.input.value("applicant", "") << std::setw(8) << asked.str() << *path
        << detail.str() << "  (" << info->steps << (info->steps == 1 ? " attempt)\n"
                                                                       : " attempts)\n");
  }
  out << "\n  applications        " << opt.applications << '\n';
  for (const auto& [end, n] : ends)
    out << "    " << std::left << std::setw(18) << end << std::right << n << '\n';
  out << "    unsettled         " << unsettled << '\n'
      << "  credit from the secondary bureau after a timeout  " << fallbacks << '\n';
  return unsettled == 0 ? 0 : 1;
}

} // namespace troupe::examples
