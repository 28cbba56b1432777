// The triage example's graph, its three agents and the scripted model rules
// that answer them. Agents run on their attempt's actor (any scheduler
// thread); rules run on the scripted model's actor. Both are stateless.
#include "triage/triage.hpp"

#include <array>
#include <cstdio>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "troupe/agent.hpp"
#include "troupe/errors.hpp"
#include "troupe/hash.hpp"
#include "troupe/seams.hpp"

namespace troupe::examples {

namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

// -- deterministic ticket text ------------------------------------------------

constexpr std::array<const char*, 8> customers = {"acme",  "globex", "initech", "umbrella",
                                                  "hooli", "stark",  "wayne",   "tyrell"};
constexpr std::array<const char*, 5> products = {"billing portal", "mobile app", "public api",
                                                 "dashboard", "sso login"};
constexpr std::array<const char*, 7> problems = {
    "invoice export fails with error 500",
    "login loops back to the sign-in page",
    "the app crashes on startup since the update",
    "pages take 30 seconds to load",
    "data from yesterday is missing",
    "webhooks arrive twice",
    "the monthly invoice shows the wrong currency",
};

/// The text between `from` and `to` after position `pos` (advanced past it).
std::string between(const std::string& s, size_t& pos, const char* from, const char* to) {
  auto b = s.find(from, pos);
  if (b == std::string::npos)
    return {};
  b += std::char_traits<char>::length(from);
  auto e = s.find(to, b);
  if (e == std::string::npos)
    return {};
  pos = e;
  return s.substr(b, e - b);
}

std::string category_of(const std::string& problem) {
  static const std::pair<const char*, const char*> keywords[] = {
      {"invoice", "billing"}, {"login", "access"},    {"sign-in", "access"},
      {"crash", "bug"},       {"seconds", "performance"}, {"missing", "data"},
      {"twice", "integration"}};
  for (const auto& [word, category] : keywords)
    if (problem.find(word) != std::string::npos)
      return category;
  return "general";
}

/// Reads the string field `key` of `j`, or `fallback`.
std::string str_of(const json& j, const char* key, const char* fallback = "unknown") {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : fallback;
}

const std::string& last_user_text(const llm_request& req) {
  static const std::string none;
  return req.messages.empty() ? none : req.messages.back().content;
}

// -- scripted model rules -------------------------------------------------------

/// Reads customer, product and problem out of the ticket text.
std::string extractor_rule(const llm_request& req) {
  const auto& text = last_user_text(req);
  size_t pos = 0;
  auto customer = between(text, pos, " from ", " about the ");
  auto product = between(text, pos, " about the ", ": ");
  auto problem = !product.empty() && pos + 2 <= text.size() ? text.substr(pos + 2) : std::string{};
  if (!problem.empty() && problem.back() == '.')
    problem.pop_back();
  json fields = {{"customer", customer.empty() ? "unknown" : customer},
                 {"product", product.empty() ? "unknown" : product},
                 {"category", category_of(problem)},
                 {"problem", problem}};
  return fields.dump();
}

/// Severity from the category, confidence from a hash of the ticket.
std::string analyzer_rule(const llm_request& req) {
  auto in = json::parse(last_user_text(req), nullptr, false);
  if (!in.is_object())
    return R"({"error":"expected a JSON object"})";
  auto category = str_of(in.value("fields", json::object()), "category", "general");
  auto h = fnv1a(str_of(in, "ticket", ""));
  const char* severity = "medium";
  if (category == "data" || category == "access")
    severity = (h >> 8) % 3 == 0 ? "critical" : "high";
  else if (category == "bug")
    severity = "high";
  else if (category == "general")
    severity = "low";
  double confidence = 0.15 + static_cast<double>(h % 85) / 100.0;
  return json{{"severity", severity}, {"confidence", confidence}}.dump();
}

/// A one-line headline from the extracted fields and the analysis.
std::string reporter_rule(const llm_request& req) {
  auto in = json::parse(last_user_text(req), nullptr, false);
  if (!in.is_object())
    return R"({"error":"expected a JSON object"})";
  auto fields = in.value("fields", json::object());
  auto analysis = in.value("analysis", json::object());
  auto headline = str_of(analysis, "severity") + " " + str_of(fields, "category", "general") +
                  " issue for " + str_of(fields, "customer") + ": " +
                  str_of(fields, "problem", "see ticket");
  return json{{"headline", headline}}.dump();
}

// -- agents ---------------------------------------------------------------------

/// The ticket text from the state, or fails the attempt and returns nullptr.
const std::string* ticket_or_fail(step_context& ctx) {
  auto it = ctx.state().find("ticket");
  if (it == ctx.state().end() || !it->is_string()) {
    ctx.fail(failure_kind::bad_output, "the workflow state has no \"ticket\" string");
    return nullptr;
  }
  return &it->get_ref<const std::string&>();
}

llm_request json_request(const char* instruction, std::string user) {
  llm_request req;
  req.json_output = true;
  req.max_tokens = 256;
  req.messages = {{"system", instruction}, {"user", std::move(user)}};
  return req;
}

/// extract: asks for the ticket's fields, patches {"fields": ...}.
void extractor(step_context& ctx) {
  const auto* ticket = ticket_or_fail(ctx);
  if (ticket == nullptr)
    return;
  auto req = json_request("Extract customer, product, category and problem from the support "
                          "ticket. Answer with one JSON object.",
                          *ticket);
  ask_json(ctx, std::move(req), [](step_context& ctx, json reply) {
    if (!reply.contains("customer") || !reply.contains("category")) {
      ctx.fail(failure_kind::bad_output, "extraction lacks customer or category");
      return;
    }
    step_outcome o;
    o.patch = {{"fields", std::move(reply)}};
    ctx.finish(std::move(o));
  });
}

/// analyze: asks for severity and confidence. Low confidence goes to review
/// once; after a reviewer let it through ("needs_review" set) it is accepted.
void analyzer(step_context& ctx) {
  const auto* ticket = ticket_or_fail(ctx);
  if (ticket == nullptr)
    return;
  const auto& st = ctx.state();
  json in = {{"ticket", *ticket}, {"fields", st.value("fields", json::object())}};
  bool reviewed = st.value("needs_review", json(false)) == json(true);
  auto req = json_request("Rate the ticket's severity (low, medium, high, critical) and your "
                          "confidence (0 to 1). Answer with one JSON object.",
                          in.dump());
  ask_json(ctx, std::move(req), [reviewed](step_context& ctx, json reply) {
    auto sev = reply.find("severity");
    auto conf = reply.find("confidence");
    if (sev == reply.end() || !sev->is_string() || conf == reply.end() || !conf->is_number()) {
      ctx.fail(failure_kind::bad_output, "analysis lacks severity or confidence");
      return;
    }
    double confidence = conf->get<double>();
    step_outcome o;
    if (confidence < triage_confidence_threshold && !reviewed) {
      o.label = "low_confidence";
      o.patch = {{"analysis", std::move(reply)}, {"needs_review", true}};
    } else {
      o.patch = {{"analysis", std::move(reply)}, {"needs_review", nullptr}, {"reviewed", reviewed}};
    }
    ctx.finish(std::move(o));
  });
}

/// report: asks for a headline and writes the one-line report into the state.
void reporter(step_context& ctx) {
  const auto* ticket = ticket_or_fail(ctx);
  if (ticket == nullptr)
    return;
  const auto& st = ctx.state();
  json in = {{"ticket", *ticket},
             {"fields", st.value("fields", json::object())},
             {"analysis", st.value("analysis", json::object())}};
  auto req = json_request("Write a one-line headline for this triaged ticket. Answer with one "
                          "JSON object {\"headline\": ...}.",
                          in.dump());
  auto analysis = in["analysis"];
  bool reviewed = st.value("reviewed", json(false)) == json(true);
  ask_json(ctx, std::move(req), [analysis, reviewed](step_context& ctx, json reply) {
    auto headline = str_of(reply, "headline", "");
    if (headline.empty()) {
      ctx.fail(failure_kind::bad_output, "reply has no headline");
      return;
    }
    char conf[16] = "?";
    auto c = analysis.find("confidence");
    if (c != analysis.end() && c->is_number())
      std::snprintf(conf, sizeof conf, "%.2f", c->get<double>());
    auto report = "[" + str_of(analysis, "severity") + ", confidence " + conf +
                  (reviewed ? ", reviewed" : "") + "] " + headline;
    step_outcome o;
    o.patch = {{"report", std::move(report)}};
    ctx.finish(std::move(o));
  });
}

agent_policy policy(uint32_t attempts, std::string fallback, milliseconds timeout) {
  agent_policy p;
  p.timeout = timeout;
  p.retry.max_attempts = attempts;
  p.retry.base_backoff = milliseconds{20};
  p.retry.max_backoff = milliseconds{200};
  p.retry.retryable = {failure_kind::timeout, failure_kind::crashed, failure_kind::bad_output};
  p.fallback = std::move(fallback);
  return p;
}

} // namespace

caf::expected<definition> triage_definition(milliseconds step_timeout) {
  budgets limits;
  limits.max_steps = 20;
  limits.max_tokens = 5000;
  return definition_builder{"triage"}
      .agent("extract", "extractor", policy(3, "review", step_timeout))
      .on(outcome::ok, "analyze")
      .on(outcome::exhausted, "review")
      .gate("review")
      .on(outcome::approve, "analyze")
      .on(outcome::edit, "analyze")
      .on(outcome::reject, "rejected")
      .agent("analyze", "analyzer", policy(2, "failed", step_timeout))
      .on(outcome::ok, "report")
      .on("low_confidence", "review")
      .on(outcome::exhausted, "failed")
      .agent("report", "reporter", policy(2, "failed", step_timeout))
      .on(outcome::ok, "done")
      .on(outcome::exhausted, "failed")
      .completed("done")
      .failed("rejected")
      .failed("failed")
      .limits(limits)
      .build();
}

config triage_config(const triage_options& opt) {
  config cfg;
  cfg.threads = opt.threads;
  cfg.model.rules = {{"extractor", extractor_rule},
                     {"analyzer", analyzer_rule},
                     {"reporter", reporter_rule}};
  cfg.model.fail_rate = opt.fail_rate;
  cfg.model.timeout_rate = opt.timeout_rate;
  cfg.model.malformed_rate = opt.malformed_rate;
  cfg.model.seed = opt.seed;
  cfg.random = seeded_random(opt.seed);
  cfg.log_level = "error";
  cfg.gateway = opt.gateway;
  return cfg;
}

caf::error register_triage(runtime& rt, milliseconds step_timeout) {
  if (auto err = rt.register_agent("extractor", agent_fn{extractor}))
    return err;
  if (auto err = rt.register_agent("analyzer", agent_fn{analyzer}))
    return err;
  if (auto err = rt.register_agent("reporter", agent_fn{reporter}))
    return err;
  auto def = triage_definition(step_timeout);
  if (!def)
    return std::move(def.error());
  return rt.register_definition(std::move(*def));
}

std::string triage_ticket(size_t i) {
  return "Ticket #" + std::to_string(i) + " from " + customers[i % customers.size()] +
         " about the " + products[(i / 3) % products.size()] + ": " +
         problems[(i * 5 + i / 7) % problems.size()] + ".";
}

} // namespace troupe::examples
