// The order_processing example's graph, agents, scripted model rules, the
// timeout driver and the demo runner (see order_processing.hpp). Agents run
// on their attempts' runner actors and keep no state; the rules run on the
// scripted model's actor; the driver on its own thread; run_order_processing
// on the caller's thread.
#include "order_processing/order_processing.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "troupe/agent.hpp"
#include "troupe/errors.hpp"
#include "troupe/hash.hpp"
#include "troupe/journal.hpp"

namespace troupe::examples {

namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

// -- fault draws ---------------------------------------------------------------

/// Uniform in [0, 1), a pure function of the seed and the text.
double draw(uint64_t seed, const std::string& what) {
  return static_cast<double>(splitmix64(fnv1a(what) ^ seed) >> 11) * 0x1.0p-53;
}

/// The attempt number in a request id "<key>:<attempt>:<call>" (0: none).
uint32_t attempt_of(const std::string& request_id) {
  auto last = request_id.rfind(':');
  if (last == std::string::npos || last == 0)
    return 0;
  auto before = request_id.rfind(':', last - 1);
  if (before == std::string::npos)
    return 0;
  auto digits = request_id.substr(before + 1, last - before - 1);
  if (digits.empty() || digits.size() > 9
      || digits.find_first_not_of("0123456789") != std::string::npos)
    return 0;
  return static_cast<uint32_t>(std::stoul(digits));
}

/// Whether the agent of `node` fails its attempt with fault `what`.
bool faulted(uint64_t seed, double rate, const step_context& ctx, const char* what) {
  auto order = ctx.state().value("order", std::string{});
  return draw(seed, order + "/" + ctx.node() + "/" + std::to_string(ctx.attempt()) + "/" + what)
         < rate;
}

// -- deterministic orders -----------------------------------------------------------

struct sku {
  const char* name;
  int64_t cents;
};

constexpr std::array<sku, 6> catalog = {{{"kettle", 3999},
                                         {"toaster", 2499},
                                         {"blender", 8900},
                                         {"lamp", 1999},
                                         {"backpack", 5400},
                                         {"headphones", 12900}}};

constexpr std::array<const char*, 6> customers = {"ada", "grace", "linus", "barbara", "ken",
                                                  "margaret"};

// -- scripted model rules ----------------------------------------------------------

const std::string& last_user_text(const llm_request& req) {
  static const std::string none;
  return req.messages.empty() ? none : req.messages.back().content;
}

/// What a faulted call is answered with, or "" for a call the rule
/// answers: no_reply for a hang (the driver is told: a jump is due),
/// error_reply for a model error, text that is not JSON for a malformed reply.
std::string fault_reply(const order_options& opt, timeout_driver& driver,
                        const llm_request& req, const std::string& order, const char* node) {
  switch (order_call_fault(opt, order, node, attempt_of(req.request_id))) {
    case order_fault::hang:
      driver.hung();
      return scripted_model_config::no_reply;
    case order_fault::model_error:
      return scripted_model_config::error_reply;
    case order_fault::malformed:
      return "Sure, here it is: {\"intent\": ";
    case order_fault::none:
      break;
  }
  return {};
}

/// {"intent": "purchase" | "return"} from the customer's message.
std::string classifier_rule(const order_options& opt, timeout_driver& driver,
                            const llm_request& req) {
  auto in = json::parse(last_user_text(req), nullptr, false);
  if (!in.is_object())
    return R"({"error":"expected {order, message}"})";
  if (auto fault = fault_reply(opt, driver, req, in.value("order", ""), "classify");
      !fault.empty())
    return fault;
  auto text = in.value("message", std::string{});
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  bool back = text.find("return") != std::string::npos
              || text.find("refund") != std::string::npos;
  return json{{"intent", back ? "return" : "purchase"}}.dump();
}

/// {"slip": "..."}: the packing slip of an order.
std::string packer_rule(const order_options& opt, timeout_driver& driver,
                        const llm_request& req) {
  auto in = json::parse(last_user_text(req), nullptr, false);
  if (!in.is_object())
    return R"({"error":"expected an order"})";
  if (auto fault = fault_reply(opt, driver, req, in.value("order", ""), "fulfill");
      !fault.empty())
    return fault;
  return json{{"slip", std::to_string(in.value("qty", 0)) + " x " + in.value("sku", "?")
                         + " for " + in.value("customer", "?")}}
    .dump();
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

/// classify: purchase or return, by the model.
void classifier(step_context& ctx) {
  const auto& st = ctx.state();
  auto req = json_request("classifier",
                          "Is this message a purchase or a return? Answer "
                          "{\"intent\": \"purchase\" | \"return\"}.",
                          {{"order", st.value("order", "")}, {"message", st.value("message", "")}},
                          {"intent"});
  ask_json(ctx, std::move(req), [](step_context& c, json reply) {
    auto intent = reply.value("intent", std::string{});
    if (intent != "purchase" && intent != "return")
      return c.fail(failure_kind::bad_output, "intent is neither purchase nor return");
    step_outcome o;
    o.label = intent;
    o.patch = {{"classified_as", intent}};
    c.finish(std::move(o));
  });
}

/// Finishes a fulfill or refund attempt with the warehouse's answer, unless
/// a fault is drawn: the agent dies after the effect, or answers a label its
/// node does not route.
void finish_effect(step_context& c, const order_options& opt, caf::expected<json> r,
                   json patch) {
  if (!r)
    return c.fail(failure_kind::crashed, describe(r.error()));
  if (faulted(opt.seed, opt.crash_after_effect_rate, c, "crash"))
    throw std::runtime_error("died after the warehouse call, before finishing (injected)");
  step_outcome o;
  if (faulted(opt.seed, opt.bad_output_rate, c, "bad"))
    o.label = "done?"; // routed nowhere: bad_output, retried
  patch.update(*r);
  o.patch = std::move(patch);
  c.finish(std::move(o));
}

/// fulfill: a packing slip from the model, then the shipment, once.
void fulfiller(step_context& ctx, const std::shared_ptr<warehouse>& store,
               const order_options& opt) {
  const auto& st = ctx.state();
  auto req = json_request("packer", "Write the packing slip. Answer {\"slip\": s}.",
                          {{"order", st.value("order", "")},
                           {"customer", st.value("customer", "")},
                           {"sku", st.value("sku", "")},
                           {"qty", st.value("qty", 0)}},
                          {"slip"});
  ask_json(ctx, std::move(req), [store, opt](step_context& c, json reply) {
    auto slip = reply.value("slip", std::string{});
    auto order = c.state().value("order", std::string{});
    c.effect(
      "ship", [store, order](const std::string& key) { return store->ship(key, order); },
      [opt, slip](step_context& c2, caf::expected<json> r) {
        finish_effect(c2, opt, std::move(r), {{"slip", slip}});
      });
  });
}

/// refund: the order's amount back, once.
void refunder(step_context& ctx, const std::shared_ptr<warehouse>& store,
              const order_options& opt) {
  auto order = ctx.state().value("order", std::string{});
  int64_t cents = ctx.state().value("cents", int64_t{0});
  ctx.effect(
    "refund",
    [store, order, cents](const std::string& key) { return store->refund(key, order, cents); },
    [opt](step_context& c, caf::expected<json> r) {
      finish_effect(c, opt, std::move(r), json::object());
    });
}

// -- the demo's helpers ------------------------------------------------------------

/// A fresh directory under the system's temp dir, removed with its contents.
struct scratch_dir {
  std::string path;
  scratch_dir() {
    auto pattern = (std::filesystem::temp_directory_path() / "troupe-orders-XXXXXX").string();
    if (mkdtemp(pattern.data()) != nullptr)
      path = pattern;
  }
  ~scratch_dir() {
    std::error_code ignored;
    if (!path.empty())
      std::filesystem::remove_all(path, ignored);
  }
};

struct order_row {
  std::string key;
  std::string id;
  std::string intent;
  bool replayed_same = true; ///< a replayed start returned the same id
};

} // namespace

// -- timeout_driver ------------------------------------------------------------------

timeout_driver::~timeout_driver() {
  attach(nullptr);
}

void timeout_driver::attach(runtime* rt) {
  if (thread_.joinable()) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  stop_ = false;
  if (rt != nullptr)
    thread_ = std::thread{[this, rt] { loop(rt); }};
}

void timeout_driver::hung() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    ++pending_;
  }
  cv_.notify_all();
}

uint64_t timeout_driver::jumps() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return jumps_;
}

void timeout_driver::loop(runtime* rt) {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock{mtx_};
      cv_.wait(lock, [this] { return stop_ || pending_ > 0; });
      if (stop_)
        return;
      pending_ = 0; // one jump covers every hang reported so far
      ++jumps_;
    }
    clock_->advance(order_step_timeout + milliseconds{1});
    rt->clock_changed(); // an error means the runtime is going: nothing is due there
  }
}

// -- the example's pieces ----------------------------------------------------------

order_fault order_call_fault(const order_options& opt, const std::string& order,
                             const std::string& node, uint32_t attempt) {
  auto what = order + "/" + node + "/" + std::to_string(attempt) + "/";
  if (draw(opt.seed, what + "hang") < opt.hang_rate)
    return order_fault::hang;
  if (draw(opt.seed, what + "fail") < opt.fail_rate)
    return order_fault::model_error;
  if (draw(opt.seed, what + "malformed") < opt.malformed_rate)
    return order_fault::malformed;
  return order_fault::none;
}

caf::expected<definition> order_definition() {
  agent_policy p;
  p.timeout = order_step_timeout;
  p.retry.max_attempts = 50;
  p.retry.base_backoff = milliseconds{1};
  p.retry.max_backoff = milliseconds{5};
  return definition_builder{"orders"}
    .agent("classify", "classifier", p).on("purchase", "fulfill").on("return", "refund")
    .on("ok", "failed") // never answered (every agent node must route ok)
    .on("exhausted", "failed")
    .agent("fulfill", "fulfiller", p).on("ok", "shipped").on("exhausted", "failed")
    .agent("refund", "refunder", p).on("ok", "refunded").on("exhausted", "failed")
    .completed("shipped").completed("refunded").failed("failed")
    .build();
}

config order_config(const order_options& opt, std::shared_ptr<timeout_driver> driver) {
  config cfg;
  cfg.threads = opt.threads;
  cfg.random = seeded_random(opt.seed);
  cfg.clock = driver->clock();
  cfg.model.rules["classifier"] = [opt, driver](const llm_request& r) {
    return classifier_rule(opt, *driver, r);
  };
  cfg.model.rules["packer"] = [opt, driver](const llm_request& r) {
    return packer_rule(opt, *driver, r);
  };
  // the rules draw every model fault (order_call_fault): the scripted
  // model's own draws would key on workflow ids, which differ from run to run
  cfg.model.seed = opt.seed;
  cfg.log_level = "off";
  return cfg;
}

caf::error register_order_processing(runtime& rt, std::shared_ptr<warehouse> store,
                                     const order_options& opt) {
  if (auto err = rt.register_agent("classifier", agent_fn{classifier}))
    return err;
  if (auto err = rt.register_agent("fulfiller", [store, opt](step_context& ctx) {
        fulfiller(ctx, store, opt);
      }))
    return err;
  if (auto err = rt.register_agent("refunder", [store, opt](step_context& ctx) {
        refunder(ctx, store, opt);
      }))
    return err;
  auto def = order_definition();
  if (!def)
    return std::move(def.error());
  return rt.register_definition(std::move(*def));
}

std::string order_key(size_t i) {
  return "order-" + std::to_string(i);
}

json order_input(size_t i, uint64_t seed) {
  auto key = order_key(i);
  auto h = splitmix64(fnv1a(key) ^ seed);
  const auto& item = catalog[h % catalog.size()];
  const char* customer = customers[(h >> 8) % customers.size()];
  int64_t qty = 1 + static_cast<int64_t>((h >> 16) % 3);
  bool back = (h >> 24) % 10 < 3;
  std::string name = item.name;
  std::string message;
  switch ((h >> 32) % 2) {
    case 0:
      message = back ? "The " + name + " arrived broken. I want to return it."
                     : "Please send " + std::to_string(qty) + " " + name + " to " + customer + ".";
      break;
    default:
      message = back ? "Can I get a refund for my " + name + "? It is not what I ordered."
                     : "I'd like to buy " + std::to_string(qty) + " x " + name + ", thanks!";
  }
  return {{"order", key},     {"customer", customer}, {"message", message},
          {"sku", name},      {"qty", qty},           {"cents", item.cents * qty},
          {"intent", back ? "return" : "purchase"}};
}

caf::expected<order_journey> read_journey(runtime& rt, const std::string& workflow_id) {
  auto events = rt.history(workflow_id);
  if (!events)
    return std::move(events.error());
  static const auto def = order_definition();
  order_journey j;
  std::vector<std::pair<std::string, uint32_t>> nodes; // node, attempts of its visit
  std::map<std::string, uint32_t> completed;
  for (const auto& r : *events) {
    auto p = json::parse(r.payload, nullptr, false);
    if (p.is_discarded())
      continue;
    auto node = p.value("node", std::string{});
    if (r.kind == "step_scheduled") {
      ++j.attempts;
      if (nodes.empty() || nodes.back().first != node)
        nodes.emplace_back(node, 0);
      ++nodes.back().second;
    } else if (r.kind == "step_failed") {
      auto kind = p.value("kind", std::string{});
      j.timeouts += kind == "timeout";
      j.crashes += kind == "crashed";
      j.bad_outputs += kind == "bad_output";
    } else if (r.kind == "step_completed") {
      // a label the node does not route is journaled, then failed as bad_output
      const auto* n = def ? def->find(node) : nullptr;
      if (n == nullptr || n->routes.count(p.value("label", std::string{})) == 0)
        ++j.bad_outputs;
      else if (++completed[node] > 1) // every node of "orders" is visited once
        ++j.repeated_completions;
    }
  }
  for (const auto& [node, attempts] : nodes)
    j.path += node + "(" + std::to_string(attempts) + ") -> ";
  auto info = rt.status(workflow_id);
  if (!info)
    return std::move(info.error());
  j.path += info->node;
  return j;
}

int run_order_processing(const order_options& opt, std::ostream& out) {
  scratch_dir dir;
  if (dir.path.empty()) {
    out << "order_processing: cannot make a temporary directory\n";
    return 1;
  }
  auto path = dir.path + "/journal.db";
  auto store = std::make_shared<warehouse>();
  auto driver = std::make_shared<timeout_driver>();
  auto open = [&]() -> std::unique_ptr<runtime> {
    auto journal = open_sqlite_journal({path});
    if (!journal) {
      out << "order_processing: " << describe(journal.error()) << '\n';
      return nullptr;
    }
    auto cfg = order_config(opt, driver);
    cfg.journal = *journal;
    auto rt = std::make_unique<runtime>(std::move(cfg));
    if (auto err = register_order_processing(*rt, store, opt)) {
      out << "order_processing: " << describe(err) << '\n';
      return nullptr;
    }
    driver->attach(rt.get());
    return rt;
  };

  out << "order_processing: " << opt.orders << " orders, seed " << opt.seed
      << "; faults: model errors " << opt.fail_rate << ", malformed " << opt.malformed_rate
      << ", hangs " << opt.hang_rate << ", crash after the warehouse call "
      << opt.crash_after_effect_rate << ", unrouted label " << opt.bad_output_rate << '\n'
      << "journal: " << path << " (SQLite, removed at the end)\n";
  auto rt = open();
  if (!rt)
    return 1;
  std::vector<order_row> rows;
  // with a restart, run 1 starts two thirds of the orders and stops at once
  size_t first_run = opt.restart ? opt.orders * 2 / 3 : opt.orders;
  for (size_t i = 0; i < opt.orders; ++i) {
    auto input = order_input(i, opt.seed);
    if (i >= first_run) {
      rows.push_back({order_key(i), {}, input["intent"].get<std::string>()});
      continue;
    }
    order_row row{order_key(i), {}, input["intent"].get<std::string>()};
    auto id = rt->start("orders", std::move(input), row.key);
    if (id)
      row.id = *id;
    else
      out << row.key << ": start: " << describe(id.error()) << '\n';
    rows.push_back(std::move(row));
  }
  if (opt.restart) {
    size_t open_now = 0;
    for (size_t i = 0; i < first_run; ++i) {
      auto s = rt->status(rows[i].id);
      open_now += s && !s->finished();
    }
    out << "run 1: started " << first_run << " orders, then stopped the runtime at once: "
        << open_now << " still open, their attempts cut off\n";
    driver->attach(nullptr);
    rt.reset();
    rt = open();
    if (!rt)
      return 1;
    auto rep = rt->recover();
    if (!rep) {
      out << "order_processing: recover: " << describe(rep.error()) << '\n';
      return 1;
    }
    size_t same = 0;
    for (size_t i = 0; i < opt.orders; ++i) { // replay every start with its key; new ones start
      auto id = rt->start("orders", order_input(i, opt.seed), rows[i].key);
      if (!id) {
        out << rows[i].key << ": start: " << describe(id.error()) << '\n';
        continue;
      }
      rows[i].replayed_same = rows[i].id.empty() || *id == rows[i].id;
      same += *id == rows[i].id;
      rows[i].id = *id;
    }
    out << "run 2: a new runtime on the same journal: recover() resumed " << rep->resumed
        << "; all " << opt.orders << " starts replayed with their keys: " << same
        << " gave back run 1's workflow, " << opt.orders - same << " started now\n";
  }

  size_t shipped = 0, refunded = 0, failed = 0, unsettled = 0, wrong = 0;
  uint32_t timeouts = 0, crashes = 0, bad = 0, repeated = 0;
  out << "\n  order     intent    path                                     outcome   "
         "attempts  warehouse\n";
  std::vector<std::string> lines;
  for (const auto& row : rows) {
    auto info = rt->await(row.id, std::chrono::minutes{2});
    auto j = read_journey(*rt, row.id);
    if (!info || !j) {
      ++unsettled;
      out << "  " << row.key << ": " << describe(info ? j.error() : info.error()) << '\n';
      continue;
    }
    timeouts += j->timeouts;
    crashes += j->crashes;
    bad += j->bad_outputs;
    repeated += j->repeated_completions;
    std::string ref;
    if (info->node == "shipped") {
      ++shipped;
      ref = info->state.value("tracking", "");
    } else if (info->node == "refunded") {
      ++refunded;
      ref = "refund " + info->state.value("refund", "");
    } else {
      ++failed;
    }
    bool right = (row.intent == "purchase" && info->node == "shipped")
                 || (row.intent == "return" && info->node == "refunded");
    wrong += !right || !row.replayed_same;
    std::ostringstream line;
    line << "  " << std::left << std::setw(10) << row.key << std::setw(10) << row.intent
         << std::setw(41) << j->path << std::setw(10) << info->outcome << std::right
         << std::setw(8) << j->attempts << "  " << ref;
    out << line.str() << '\n';
  }
  auto ships = store->per_order("ship");
  auto refunds = store->per_order("refund");
  size_t duplicates = 0, n_ships = 0, n_refunds = 0;
  for (const auto& [order, n] : ships) {
    duplicates += n > 1;
    n_ships += static_cast<size_t>(n);
  }
  for (const auto& [order, n] : refunds) {
    duplicates += n > 1;
    n_refunds += static_cast<size_t>(n);
  }
  out << "\n  orders                    " << opt.orders << '\n'
      << "    shipped                 " << shipped << '\n'
      << "    refunded                " << refunded << '\n'
      << "    failed                  " << failed << '\n'
      << "    unsettled               " << unsettled << '\n'
      << "    wrong path              " << wrong << '\n'
      << "  attempts timed out        " << timeouts << "   (virtual clock moved "
      << std::chrono::duration_cast<std::chrono::seconds>(driver->clock()->skew()).count()
      << " s in " << driver->jumps() << (driver->jumps() == 1 ? " jump" : " jumps") << ")\n"
      << "  attempts crashed          " << crashes << '\n'
      << "  attempts with bad output  " << bad << '\n'
      << "  warehouse                 " << n_ships << " shipments, " << n_refunds
      << " refunds; " << store->repeats() << " repeated calls answered by key\n"
      << "  duplicate fulfillments    " << duplicates << '\n'
      << "  steps completed twice     " << repeated << '\n';
  driver->attach(nullptr);
  rt.reset();
  return unsettled == 0 && failed == 0 && wrong == 0 && duplicates == 0 && repeated == 0 ? 0 : 1;
}

} // namespace troupe::examples
