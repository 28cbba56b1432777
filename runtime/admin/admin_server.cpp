// The admin server (troupe/admin.hpp): cpp-httplib routes over the runtime
// facade. Each request runs on a server thread: it checks the bearer token
// (pre-routing), reads and validates its input completely before it calls
// the runtime, and answers JSON; a runtime error becomes an HTTP status and
// {"error": code, "message": text} in one place, http_status().
//
// The live channel is a long poll, GET /api/changes?after=V: it answers as
// soon as the journal commits anything after version V (at once if it has
// already), or with the same version after wait_ms. Not Server-Sent Events,
// because a browser's EventSource cannot send an Authorization header: the
// token would have to travel in the URL (and end up in logs and history).
// fetch() sends the header, needs no streaming support from the server,
// and a poll holds a server thread only while it waits.
#include "troupe/admin.hpp"

#include <atomic>
#include <cmath>
#include <initializer_list>
#include <mutex>
#include <thread>
#include <utility>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "runtime/admin/admin_json.hpp"
#include "runtime/admin/dashboard_page.hpp"
#include "troupe/errors.hpp"

namespace troupe {

namespace {

using json = nlohmann::json;
using httplib::Request;
using httplib::Response;

/// The HTTP status for a runtime error: the one mapping of the API.
int http_status(const caf::error& err) {
  if (err.category() != error_category)
    return 500;
  switch (static_cast<errc>(err.code())) {
    case errc::unknown_workflow:
      return 404;
    case errc::unknown_definition:
    case errc::unknown_agent:
    case errc::invalid_definition:
    case errc::invalid_input:
    case errc::invalid_config:
      return 400;
    case errc::bad_signal:
    case errc::workflow_finished:
    case errc::invalid_transition:
      return 409;
    case errc::shutting_down:
    case errc::overloaded:
    case errc::interrupted:
      return 503;
    case errc::await_timeout:
      return 504;
    default:
      return 500;
  }
}

void send_json(Response& res, int status, const json& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

void send_error(Response& res, int status, const std::string& code, const std::string& message) {
  send_json(res, status, {{"error", code}, {"message", message}});
}

void send_error(Response& res, const caf::error& err) {
  bool ours = err.category() == error_category;
  send_error(res, http_status(err), ours ? to_string(static_cast<errc>(err.code())) : "internal",
             ours ? context_of(err) : describe(err));
}

/// Compares secrets in time that depends on their lengths only.
bool same_secret(const std::string& given, const std::string& expected) {
  unsigned diff = given.size() != expected.size() ? 1u : 0u;
  size_t n = std::max(given.size(), expected.size());
  for (size_t i = 0; i < n; ++i) {
    unsigned char a = i < given.size() ? static_cast<unsigned char>(given[i]) : 0;
    unsigned char b = i < expected.size() ? static_cast<unsigned char>(expected[i]) : 0;
    diff |= static_cast<unsigned>(a ^ b);
  }
  return diff == 0;
}

/// A whole number in [lo, hi] from text, or false.
bool parse_count(const std::string& s, uint64_t lo, uint64_t hi, uint64_t& out) {
  if (s.empty() || s.size() > 19 || s.find_first_not_of("0123456789") != std::string::npos)
    return false;
  out = std::stoull(s);
  return out >= lo && out <= hi;
}

/// Reads a request's query parameters; the first problem names the
/// parameter. Parameters not asked for are refused by done().
class query_reader {
public:
  explicit query_reader(const Request& req) : req_(req) {}

  std::string text(const char* name, std::string fallback = {}) {
    seen_.emplace_back(name);
    return req_.has_param(name) ? req_.get_param_value(name) : fallback;
  }
  uint64_t count(const char* name, uint64_t fallback, uint64_t lo, uint64_t hi) {
    seen_.emplace_back(name);
    if (!req_.has_param(name))
      return fallback;
    auto s = req_.get_param_value(name);
    uint64_t x = 0;
    if (!parse_count(s, lo, hi, x) && problem_.empty())
      problem_ = "query parameter '" + std::string{name} + "': expected a whole number from "
                 + std::to_string(lo) + " to " + std::to_string(hi) + ", got '" + s + "'";
    return x;
  }
  void fail(std::string why) {
    if (problem_.empty())
      problem_ = std::move(why);
  }
  /// True when every parameter was good and known; else answers 400.
  bool done(Response& res) {
    for (const auto& [name, value] : req_.params)
      if (std::find(seen_.begin(), seen_.end(), name) == seen_.end()) {
        fail("unknown query parameter '" + name + "'");
        break;
      }
    if (problem_.empty())
      return true;
    send_error(res, 400, "invalid_input", problem_);
    return false;
  }

private:
  const Request& req_;
  std::vector<std::string> seen_;
  std::string problem_;
};

/// Reads the fields of a JSON object body; the first problem names the
/// field. Fields not asked for are refused by done().
class body_reader {
public:
  /// Parses the body; a body that is not a JSON object is the problem.
  explicit body_reader(const Request& req) {
    body_ = json::parse(req.body, nullptr, false);
    if (body_.is_discarded())
      problem_ = req.body.empty() ? "the body is empty: expected a JSON object"
                                  : "the body is not valid JSON";
    else if (!body_.is_object())
      problem_ = "the body must be a JSON object";
  }

  std::string text(const char* key, bool required, std::string fallback = {}) {
    const json* f = field(key, required);
    if (f == nullptr)
      return fallback;
    if (!f->is_string()) {
      fail(key, "must be a string");
      return fallback;
    }
    auto s = f->get<std::string>();
    if (required && s.empty())
      fail(key, "must not be empty");
    return s;
  }
  /// An object field ("" when absent and not required).
  json object(const char* key, bool required) {
    const json* f = field(key, required);
    if (f == nullptr)
      return json::object();
    if (!f->is_object()) {
      fail(key, "must be a JSON object");
      return json::object();
    }
    return *f;
  }
  uint64_t count(const char* key) {
    const json* f = field(key, false);
    if (f == nullptr)
      return 0;
    if (!f->is_number_unsigned()) {
      fail(key, "must be a whole number >= 0");
      return 0;
    }
    return f->get<uint64_t>();
  }
  double number(const char* key) {
    const json* f = field(key, false);
    if (f == nullptr)
      return 0;
    if (!f->is_number() || !std::isfinite(f->get<double>()) || f->get<double>() < 0) {
      fail(key, "must be a number >= 0");
      return 0;
    }
    return f->get<double>();
  }
  bool has(const char* key) const { return body_.is_object() && body_.contains(key); }
  void fail(const std::string& key, const std::string& why) {
    if (problem_.empty())
      problem_ = "field '" + key + "' " + why;
  }
  /// True when the body was good; else answers 400.
  bool done(Response& res) {
    if (problem_.empty() && body_.is_object())
      for (const auto& [key, value] : body_.items())
        if (std::find(seen_.begin(), seen_.end(), key) == seen_.end()) {
          std::string known;
          for (const auto& k : seen_)
            known += (known.empty() ? "" : ", ") + k;
          problem_ = "unknown field '" + key + "' (expected " + known + ")";
          break;
        }
    if (problem_.empty())
      return true;
    send_error(res, 400, "invalid_input", problem_);
    return false;
  }

private:
  const json* field(const char* key, bool required) {
    seen_.emplace_back(key);
    if (!problem_.empty() && !body_.is_object())
      return nullptr;
    auto it = body_.find(key);
    if (it == body_.end() || it->is_null()) {
      if (required)
        fail(key, "is required");
      return nullptr;
    }
    return &*it;
  }

  json body_;
  std::vector<std::string> seen_;
  std::string problem_;
};

/// Is `path` data (token required) rather than the page?
bool needs_token(const std::string& path) {
  return path.rfind("/api/", 0) == 0 || path == "/api" || path == "/metrics";
}

} // namespace

struct admin_server::impl {
  impl(runtime& r, admin_config c) : rt(r), cfg(std::move(c)) {}

  void routes();
  void stop_now();

  // -- handlers -------------------------------------------------------------
  void list_workflows(const Request& req, Response& res);
  void get_workflow(const Request& req, Response& res);
  void get_history(const Request& req, Response& res);
  void get_state_at(const Request& req, Response& res);
  void await_workflow(const Request& req, Response& res);
  void fork_workflow(const Request& req, Response& res);
  void start_workflow(const Request& req, Response& res);
  void signal_workflow(const Request& req, Response& res);
  void cancel_workflow(const Request& req, Response& res);
  void dead_letters(const Request& req, Response& res);
  void retry_dead_letter(const Request& req, Response& res);
  void drop_dead_letter(const Request& req, Response& res);
  void gates(const Request& req, Response& res);
  void summary(const Request& req, Response& res);
  void latency(const Request& req, Response& res);
  void changes(const Request& req, Response& res);

  runtime& rt;
  admin_config cfg;
  httplib::Server svr;
  std::thread thread;
  uint16_t port = 0;
  std::atomic<bool> stopping{false};
  std::atomic<bool> listening_ended{false};
  std::mutex stop_mtx;
  bool stopped = false;
};

void admin_server::impl::routes() {
  svr.set_pre_routing_handler([this](const Request& req, Response& res) {
    if (!needs_token(req.path))
      return httplib::Server::HandlerResponse::Unhandled;
    auto header = req.get_header_value("Authorization");
    const std::string scheme = "Bearer ";
    std::string why;
    if (header.empty())
      why = "no bearer token: send the header 'Authorization: Bearer <token>'";
    else if (header.compare(0, scheme.size(), scheme) != 0)
      why = "the Authorization header must be 'Bearer <token>'";
    else if (!same_secret(header.substr(scheme.size()), cfg.token))
      why = "the bearer token is wrong";
    if (why.empty())
      return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("WWW-Authenticate", "Bearer realm=\"troupe\"");
    send_error(res, 401, "unauthorized", why);
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.set_error_handler([](const Request& req, Response& res) {
    if (!res.body.empty())
      return;
    if (res.status == 404)
      send_error(res, 404, "not_found", "no route " + req.method + " " + req.path);
    else
      send_error(res, res.status, "http_" + std::to_string(res.status),
                 "the request cannot be served (HTTP " + std::to_string(res.status) + ")");
  });
  svr.set_exception_handler([](const Request&, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal", what);
  });

  svr.Get("/", [](const Request&, Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                   "connect-src 'self'; img-src data:; frame-ancestors 'none'");
    res.set_content(admin::dashboard_html(), "text/html; charset=utf-8");
  });
  svr.Get("/favicon.ico", [](const Request&, Response& res) { res.status = 204; });

  auto bind = [this](void (impl::*h)(const Request&, Response&)) {
    return [this, h](const Request& req, Response& res) { (this->*h)(req, res); };
  };
  svr.Get("/api/workflows", bind(&impl::list_workflows));
  svr.Post("/api/workflows", bind(&impl::start_workflow));
  svr.Get(R"(/api/workflows/([^/]+))", bind(&impl::get_workflow));
  svr.Get(R"(/api/workflows/([^/]+)/history)", bind(&impl::get_history));
  svr.Get(R"(/api/workflows/([^/]+)/state)", bind(&impl::get_state_at));
  svr.Get(R"(/api/workflows/([^/]+)/await)", bind(&impl::await_workflow));
  svr.Post(R"(/api/workflows/([^/]+)/fork)", bind(&impl::fork_workflow));
  svr.Post(R"(/api/workflows/([^/]+)/signal)", bind(&impl::signal_workflow));
  svr.Post(R"(/api/workflows/([^/]+)/cancel)", bind(&impl::cancel_workflow));
  svr.Get("/api/dead-letters", bind(&impl::dead_letters));
  svr.Post(R"(/api/dead-letters/([^/]+)/retry)", bind(&impl::retry_dead_letter));
  svr.Post(R"(/api/dead-letters/([^/]+)/drop)", bind(&impl::drop_dead_letter));
  svr.Get("/api/gates", bind(&impl::gates));
  svr.Get("/api/summary", bind(&impl::summary));
  svr.Get("/api/latency", bind(&impl::latency));
  svr.Get("/api/changes", bind(&impl::changes));
  svr.Get("/api/lanes", [this](const Request& req, Response& res) {
    if (!query_reader{req}.done(res))
      return;
    auto lanes = rt.model_lanes();
    if (!lanes)
      return send_error(res, lanes.error());
    json out = json::array();
    for (const auto& l : *lanes)
      out.push_back(admin::to_json(l));
    send_json(res, 200, {{"lanes", out}});
  });
  svr.Get("/api/definitions", [this](const Request& req, Response& res) {
    if (!query_reader{req}.done(res))
      return;
    json out = json::array();
    for (const auto& d : rt.definitions())
      out.push_back(admin::to_json(d));
    send_json(res, 200, {{"definitions", out}});
  });
  svr.Get("/metrics", [this](const Request&, Response& res) {
    if (!cfg.metrics)
      return send_error(res, 404, "not_found", "no metrics are configured on this server");
    auto text = cfg.metrics();
    if (!text)
      return send_error(res, text.error());
    res.set_header("Cache-Control", "no-store");
    res.set_content(std::move(*text), "text/plain; version=0.0.4; charset=utf-8");
  });
}

// -- workflows ------------------------------------------------------------------

void admin_server::impl::list_workflows(const Request& req, Response& res) {
  query_reader q{req};
  workflow_query wq;
  wq.status = q.text("status");
  wq.limit = q.count("limit", 50, 1, 1000);
  auto cursor = q.text("before");
  if (!cursor.empty()) { // "<created_ns>:<id>", from an earlier answer's "next"
    auto colon = cursor.find(':');
    uint64_t created = 0;
    if (colon == std::string::npos || colon + 1 == cursor.size()
        || !parse_count(cursor.substr(0, colon), 0, INT64_MAX, created))
      q.fail("query parameter 'before': expected a cursor from an answer's \"next\", got '"
             + cursor + "'");
    wq.before_created_ns = static_cast<int64_t>(created);
    wq.before_id = colon == std::string::npos ? std::string{} : cursor.substr(colon + 1);
  }
  if (!q.done(res))
    return;
  auto page = wq.limit;
  wq.limit = page + 1; // one more tells whether there is a next page
  auto rows = rt.list(wq);
  if (!rows)
    return send_error(res, rows.error());
  json next = nullptr;
  if (rows->size() > page) {
    rows->resize(page);
    next = std::to_string(rows->back().created_ns) + ":" + rows->back().id;
  }
  json out = json::array();
  for (const auto& r : *rows)
    out.push_back(admin::to_json(r));
  send_json(res, 200, {{"workflows", out}, {"next", next}});
}

void admin_server::impl::get_workflow(const Request& req, Response& res) {
  if (!query_reader{req}.done(res))
    return;
  auto info = rt.status(req.matches[1].str());
  if (!info)
    return send_error(res, info.error());
  send_json(res, 200, admin::to_json(*info));
}

void admin_server::impl::get_history(const Request& req, Response& res) {
  if (!query_reader{req}.done(res))
    return;
  auto id = req.matches[1].str();
  auto info = rt.status(id);
  if (!info)
    return send_error(res, info.error());
  auto history = rt.history(id);
  if (!history)
    return send_error(res, history.error());
  auto defs = rt.definitions();
  const definition* def = nullptr;
  for (const auto& d : defs)
    if (d.name == info->definition)
      def = &d;
  send_json(res, 200, admin::history_json(id, *history, def));
}

void admin_server::impl::get_state_at(const Request& req, Response& res) {
  query_reader q{req};
  if (!req.has_param("at"))
    q.fail("query parameter 'at' is required: the event (wf_seq) to show the state after");
  auto at = q.count("at", 0, 1, UINT64_MAX >> 1);
  if (!q.done(res))
    return;
  auto id = req.matches[1].str();
  auto info = rt.state_at(id, at);
  if (!info)
    return send_error(res, info.error());
  auto out = admin::to_json(*info);
  out["at"] = at;
  send_json(res, 200, out);
}

void admin_server::impl::await_workflow(const Request& req, Response& res) {
  query_reader q{req};
  auto max_wait = static_cast<uint64_t>(cfg.max_poll_wait.count());
  auto wait_ms = q.count("timeout_ms", max_wait, 0, max_wait);
  auto parked = q.text("parked", "false");
  if (parked != "true" && parked != "false")
    q.fail("query parameter 'parked': expected true or false, got '" + parked + "'");
  if (!q.done(res))
    return;
  // In slices of a second, like the change feed's long poll, so that
  // stop() is not held up by a waiting client.
  using std::chrono::milliseconds;
  auto id = req.matches[1].str();
  auto deadline = std::chrono::steady_clock::now() + milliseconds{wait_ms};
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline
                                                         - std::chrono::steady_clock::now());
    left = std::max(left, milliseconds::zero());
    auto info = rt.await(id, std::min(left, milliseconds{1000}), parked == "true");
    if (info)
      return send_json(res, 200, admin::to_json(*info));
    if (!is(info.error(), errc::await_timeout) || stopping || left == milliseconds::zero())
      return send_error(res, info.error());
  }
}

void admin_server::impl::fork_workflow(const Request& req, Response& res) {
  body_reader b{req};
  if (!b.has("at"))
    b.fail("at", "is required: the event (wf_seq) whose state the fork starts from");
  auto at = b.count("at");
  fork_options opts;
  opts.model = b.text("model", false);
  opts.idempotency_key = b.text("idempotency_key", false);
  if (!b.done(res))
    return;
  auto id = req.matches[1].str();
  auto fork = rt.fork(id, at, opts);
  if (!fork)
    return send_error(res, fork.error());
  send_json(res, 200, {{"id", *fork}, {"forked_from", id}, {"at", at}});
}

void admin_server::impl::start_workflow(const Request& req, Response& res) {
  body_reader b{req};
  auto def = b.text("definition", true);
  auto input = b.object("input", false);
  start_options opts;
  opts.idempotency_key = b.text("idempotency_key", false);
  opts.user = b.text("user", false);
  opts.model = b.text("model", false);
  if (!b.done(res))
    return;
  auto id = rt.start(def, std::move(input), opts);
  if (!id)
    return send_error(res, id.error());
  send_json(res, 200, {{"id", *id}});
}

void admin_server::impl::signal_workflow(const Request& req, Response& res) {
  body_reader b{req};
  decision d;
  auto gate = b.text("gate", true);
  d.verdict = b.text("verdict", true);
  d.by = b.text("by", true);
  bool has_patch = b.has("patch");
  auto patch = b.object("patch", false);
  if (!d.verdict.empty() && d.verdict != outcome::approve && d.verdict != outcome::reject
      && d.verdict != outcome::edit)
    b.fail("verdict", "must be approve, reject or edit, got '" + d.verdict + "'");
  else if (d.verdict == outcome::edit && !has_patch)
    b.fail("patch", "is required by an edit (a JSON object merged into the state)");
  else if (d.verdict != outcome::edit && has_patch)
    b.fail("patch", "is taken by an edit only");
  if (!b.done(res))
    return;
  if (d.verdict == outcome::edit)
    d.patch_json = patch.dump();
  auto id = req.matches[1].str();
  if (auto err = rt.signal(id, gate, d))
    return send_error(res, err);
  send_json(res, 200, {{"id", id}, {"gate", gate}, {"verdict", d.verdict}});
}

namespace {

// An operator's action on the workflow the path names (a cancel, a
// dead-letter retry or drop): `by` and then the action's own fields are read
// from the body by `read`, which returns the runtime call to make; a bad
// body is 400 and calls nothing, the call's error is mapped, and success is
// {"id", <done>: true}.
template <class Read>
void operator_action(const Request& req, Response& res, const char* done, Read read) {
  body_reader b{req};
  auto by = b.text("by", true);
  auto call = read(b);
  if (!b.done(res))
    return;
  auto id = req.matches[1].str();
  if (auto err = call(id, by))
    return send_error(res, err);
  send_json(res, 200, {{"id", id}, {done, true}});
}

} // namespace

void admin_server::impl::cancel_workflow(const Request& req, Response& res) {
  operator_action(req, res, "cancelled", [this](body_reader& b) {
    auto reason = b.text("reason", false, "cancelled from the admin API");
    return [this, reason](const std::string& id, const std::string& by) {
      return rt.cancel(id, by, reason);
    };
  });
}

// -- dead letters ---------------------------------------------------------------

void admin_server::impl::dead_letters(const Request& req, Response& res) {
  // Through the status index, not runtime::dead_letters(), which reads every
  // open workflow's row.
  query_reader q{req};
  workflow_query wq;
  wq.status = "dead_lettered";
  wq.limit = q.count("limit", 100, 1, 1000);
  if (!q.done(res))
    return;
  auto rows = rt.list(wq);
  if (!rows)
    return send_error(res, rows.error());
  json out = json::array();
  for (const auto& r : *rows) {
    auto info = rt.status(r.id);
    if (!info || info->status != workflow_status::dead_lettered)
      continue; // retried or dropped meanwhile
    auto j = admin::to_json(*info);
    j["since_ns"] = r.updated_ns;
    j["user"] = r.user;
    out.push_back(std::move(j));
  }
  send_json(res, 200, {{"dead_letters", out}});
}

void admin_server::impl::retry_dead_letter(const Request& req, Response& res) {
  operator_action(req, res, "retried", [this](body_reader& b) {
    extra_budget more;
    more.steps = b.count("steps");
    more.tokens = b.count("tokens");
    more.cost_usd = b.number("cost_usd");
    auto time_ms = b.count("time_ms");
    if (time_ms > uint64_t{100} * 365 * 86400 * 1000)
      b.fail("time_ms", "must be at most 100 years");
    else
      more.time = std::chrono::milliseconds{static_cast<int64_t>(time_ms)};
    return [this, more](const std::string& id, const std::string& by) {
      return rt.retry_dead_letter(id, by, more);
    };
  });
}

void admin_server::impl::drop_dead_letter(const Request& req, Response& res) {
  operator_action(req, res, "dropped", [this](body_reader& b) {
    auto reason = b.text("reason", true);
    return [this, reason](const std::string& id, const std::string& by) {
      return rt.drop_dead_letter(id, by, reason);
    };
  });
}

// -- overview -------------------------------------------------------------------

void admin_server::impl::gates(const Request& req, Response& res) {
  query_reader q{req};
  workflow_query wq;
  wq.status = "parked";
  wq.limit = q.count("limit", 100, 1, 1000);
  if (!q.done(res))
    return;
  auto rows = rt.list(wq);
  if (!rows)
    return send_error(res, rows.error());
  json out = json::array();
  for (const auto& r : *rows) {
    auto info = rt.status(r.id);
    if (!info || info->status != workflow_status::parked)
      continue; // decided meanwhile
    auto j = admin::to_json(*info);
    j["since_ns"] = r.updated_ns;
    j["user"] = r.user;
    out.push_back(std::move(j));
  }
  send_json(res, 200, {{"gates", out}});
}

void admin_server::impl::summary(const Request& req, Response& res) {
  if (!query_reader{req}.done(res))
    return;
  auto version = rt.watch(0, std::chrono::milliseconds::zero()).version;
  auto n = rt.counts();
  if (!n)
    return send_error(res, n.error());
  send_json(res, 200, {{"counts", admin::to_json(*n)},
                       {"pending_gates", n->parked},
                       {"dead_letters", n->dead_lettered},
                       {"version", version}});
}

void admin_server::impl::latency(const Request& req, Response& res) {
  query_reader q{req};
  if (!q.done(res))
    return;
  uint64_t attempts = 0;
  json agents = json::array();
  for (const auto& a : rt.step_latency()) {
    attempts += a.count;
    agents.push_back(admin::latency_json(a));
  }
  send_json(res, 200, {{"attempts", attempts}, {"agents", std::move(agents)}});
}

void admin_server::impl::changes(const Request& req, Response& res) {
  query_reader q{req};
  auto after = q.count("after", 0, 0, UINT64_MAX >> 1);
  auto max_wait = static_cast<uint64_t>(cfg.max_poll_wait.count());
  auto wait_ms = q.count("wait_ms", max_wait, 0, max_wait);
  if (!q.done(res))
    return;
  // Waits in slices of at most a second, so that a poll that began to wait
  // just after stop() woke the watchers ends soon all the same.
  using std::chrono::milliseconds;
  auto deadline = std::chrono::steady_clock::now() + milliseconds{wait_ms};
  journal_changes c;
  for (;;) {
    auto left = std::chrono::duration_cast<milliseconds>(deadline
                                                         - std::chrono::steady_clock::now());
    left = std::max(left, milliseconds::zero());
    c = rt.watch(after, std::min(left, milliseconds{1000}));
    if (c.version != after || c.all || stopping || left == milliseconds::zero())
      break;
  }
  send_json(res, 200, admin::to_json(c));
}

// -- the server -----------------------------------------------------------------

void admin_server::impl::stop_now() {
  std::lock_guard<std::mutex> guard{stop_mtx};
  if (stopped)
    return;
  stopped = true;
  stopping = true;
  rt.wake_watchers();
  svr.stop();
  if (thread.joinable())
    thread.join();
}

caf::expected<std::unique_ptr<admin_server>> admin_server::start(runtime& rt, admin_config cfg) {
  if (cfg.token.empty())
    return make_error(errc::invalid_config, "admin server: the bearer token is empty; set one "
                                            "(troupe serve reads TROUPE_ADMIN_TOKEN)");
  if (cfg.threads == 0)
    return make_error(errc::invalid_config, "admin server: threads must be at least 1");
  if (cfg.bind_address.empty())
    return make_error(errc::invalid_config, "admin server: the bind address is empty");
  auto i = std::make_unique<impl>(rt, std::move(cfg));
  auto threads = i->cfg.threads;
  i->svr.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, with which a
  // second server would share a port in use instead of being refused.
  i->svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  i->svr.set_keep_alive_timeout(1); // bounds how long stop() waits for idle connections
  i->svr.set_payload_max_length(size_t{1} << 20);
  i->routes();
  int port = i->cfg.port == 0 ? i->svr.bind_to_any_port(i->cfg.bind_address)
                              : (i->svr.bind_to_port(i->cfg.bind_address, i->cfg.port)
                                   ? i->cfg.port
                                   : -1);
  if (port <= 0)
    return make_error(errc::invalid_config,
                      "admin server: cannot listen on " + i->cfg.bind_address + ":"
                        + std::to_string(i->cfg.port)
                        + " (the port is taken, or the address is not one of this machine's)");
  i->port = static_cast<uint16_t>(port);
  auto* raw = i.get();
  i->thread = std::thread([raw] {
    raw->svr.listen_after_bind();
    raw->listening_ended = true;
  });
  // stop() only stops a server that runs: wait for the thread to get there
  // (it is its first step), or to fail.
  while (!i->svr.is_running() && !i->listening_ended)
    std::this_thread::yield();
  return std::unique_ptr<admin_server>{new admin_server(std::move(i))};
}

admin_server::admin_server(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

admin_server::~admin_server() {
  stop();
}

uint16_t admin_server::port() const {
  return impl_->port;
}

std::string admin_server::url() const {
  auto host = impl_->cfg.bind_address;
  if (host.find(':') != std::string::npos)
    host = "[" + host + "]"; // IPv6
  return "http://" + host + ":" + std::to_string(impl_->port) + "/";
}

void admin_server::stop() {
  impl_->stop_now();
}

} // namespace troupe
