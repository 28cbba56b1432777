// The ledger example's graph, agents, scripted model rules and driver (see
// ledger.hpp). Agents run on their attempt's actor and keep no state; the
// rules run on the scripted model's actor; run_ledger() on the caller's
// thread, blocking until every order has settled.
#include "ledger/ledger.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <stdexcept>
#include <utility>
#include <vector>

#include "troupe/agent.hpp"
#include "troupe/errors.hpp"
#include "troupe/fault_vfs.hpp"
#include "troupe/hash.hpp"

namespace troupe::examples {

namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

// -- deterministic orders ------------------------------------------------------

struct sku {
  const char* name;
  int64_t cents;
};

constexpr std::array<sku, 8> catalog = {{{"cable", 450},
                                         {"mouse", 1200},
                                         {"keyboard", 4999},
                                         {"headset", 9900},
                                         {"monitor", 32000},
                                         {"dock", 15000},
                                         {"webcam", 2500},
                                         {"adapter", 799}}};

int64_t unit_price(const std::string& name) {
  for (const auto& s : catalog)
    if (name == s.name)
      return s.cents;
  return 0;
}

// -- scripted model rules ----------------------------------------------------------

const std::string& last_user_text(const llm_request& req) {
  static const std::string none;
  return req.messages.empty() ? none : req.messages.back().content;
}

/// Prices the order's items: {"price": cents}.
std::string quoter_rule(const llm_request& req) {
  auto order = json::parse(last_user_text(req), nullptr, false);
  if (!order.is_object() || !order.contains("items") || !order["items"].is_array())
    return R"({"error":"expected an order with items"})";
  int64_t total = 0;
  for (const auto& item : order["items"])
    total += unit_price(item.value("sku", "")) * item.value("qty", int64_t{0});
  return json{{"price", total}}.dump();
}

/// A confirmation line from the order, amount and receipt: {"message": ...}.
std::string confirmer_rule(const llm_request& req) {
  auto in = json::parse(last_user_text(req), nullptr, false);
  if (!in.is_object())
    return R"({"error":"expected a JSON object"})";
  auto message = "Order " + in.value("order", std::string{"?"}) + " paid: " +
                 std::to_string(in.value("amount", int64_t{0})) + " cents, receipt " +
                 in.value("receipt", std::string{"?"}) + ".";
  return json{{"message", message}}.dump();
}

// -- agents -----------------------------------------------------------------------

llm_request json_request(const char* instruction, std::string user) {
  llm_request req;
  req.json_output = true;
  req.max_tokens = 128;
  req.messages = {{"system", instruction}, {"user", std::move(user)}};
  return req;
}

/// quote: asks for the order's price; over the limit the order is refused.
void quoter(step_context& ctx) {
  json order = {{"order", ctx.state().value("order", std::string{})},
                {"items", ctx.state().value("items", json::array())}};
  auto req = json_request("Price the order's items in cents. Answer {\"price\": n}.",
                          order.dump());
  ask_json(ctx, std::move(req), [](step_context& ctx, json reply) {
    auto price = reply.find("price");
    if (price == reply.end() || !price->is_number_integer() || price->get<int64_t>() <= 0) {
      ctx.fail(failure_kind::bad_output, "the quote has no positive integer price");
      return;
    }
    step_outcome o;
    if (price->get<int64_t>() > ledger_price_limit)
      o.label = "over_limit";
    o.patch = {{"quote", {{"price", price->get<int64_t>()}}}};
    ctx.finish(std::move(o));
  });
}

/// charge: charges the quoted price through the ledger, once per order. The
/// receipt seed is the order key plus the effect key without the workflow
/// id, so that the receipt is the same in every run of the same order.
void charger(step_context& ctx, const std::shared_ptr<payment_ledger>& ledger) {
  const auto& st = ctx.state();
  auto order = st.value("order", std::string{});
  int64_t amount = st.value("quote", json::object()).value("price", int64_t{0});
  if (order.empty() || amount <= 0) {
    ctx.fail(failure_kind::bad_output, "the state has no order or no quoted price");
    return;
  }
  auto workflow = ctx.workflow_id();
  auto charge = [ledger, workflow, order, amount](const std::string& key) {
    auto stable = key.compare(0, workflow.size(), workflow) == 0 ? key.substr(workflow.size())
                                                                  : key;
    auto r = ledger->charge(key, workflow, amount, order + stable);
    if (!r)
      throw std::runtime_error(describe(r.error())); // fails the attempt as crashed
    return std::move(*r);
  };
  ctx.effect("charge", std::move(charge), [](step_context& ctx, caf::expected<json> r) {
    if (!r) {
      ctx.fail(failure_kind::crashed, describe(r.error()));
      return;
    }
    step_outcome o;
    o.patch = {{"charge", std::move(*r)}};
    ctx.finish(std::move(o));
  });
}

/// confirm: asks for the confirmation line and keeps it.
void confirmer(step_context& ctx) {
  const auto& st = ctx.state();
  auto charge = st.value("charge", json::object());
  json in = {{"order", st.value("order", std::string{})},
             {"amount", charge.value("amount", int64_t{0})},
             {"receipt", charge.value("receipt", std::string{})}};
  auto req = json_request("Write one line confirming the payment. Answer {\"message\": s}.",
                          in.dump());
  ask_json(ctx, std::move(req), [](step_context& ctx, json reply) {
    auto message = reply.find("message");
    if (message == reply.end() || !message->is_string()) {
      ctx.fail(failure_kind::bad_output, "the confirmation has no message");
      return;
    }
    step_outcome o;
    o.patch = {{"confirmation", *message}};
    ctx.finish(std::move(o));
  });
}

// -- the driver's helpers --------------------------------------------------------------

/// Writes `text` to `path` atomically: a temporary file, fsynced, renamed
/// over `path`, then the directory fsynced. "" on success, else why not.
std::string write_atomically(const std::string& path, const std::string& text) {
  auto tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return tmp + ": " + std::strerror(errno);
  size_t done = 0;
  while (done < text.size()) {
    auto n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      auto why = tmp + ": " + std::strerror(errno);
      ::close(fd);
      return why;
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0)
    return tmp + ": " + std::strerror(errno);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    return path + ": " + std::strerror(errno);
  auto dir = std::filesystem::path{path}.parent_path();
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return {};
}

/// Arms the fault VFS to SIGKILL this process at the `n`th journal fsync.
void arm_kill_at_sync(uint64_t n) {
  fault_vfs::fault f;
  f.what = fault_vfs::op::sync;
  f.where = fault_vfs::file::any;
  f.after = n - 1;
  f.kill = true;
  fault_vfs::arm(f);
}

/// Waits for every order and returns the results sorted by key.
std::vector<ledger_result> settle(runtime& rt, const std::vector<ledger_result>& started,
                                  milliseconds timeout, std::ostream& out) {
  std::vector<ledger_result> results;
  for (auto r : started) {
    if (!r.id.empty()) {
      auto info = rt.await(r.id, timeout);
      if (info) {
        r.status = info->status;
        r.node = info->node;
        r.outcome = info->outcome;
        r.state = info->state;
      } else {
        out << r.key << " (" << r.id << "): " << describe(info.error()) << '\n';
      }
    }
    results.push_back(std::move(r));
  }
  std::sort(results.begin(), results.end(),
            [](const ledger_result& a, const ledger_result& b) { return a.key < b.key; });
  return results;
}

} // namespace

caf::expected<definition> ledger_definition() {
  agent_policy p;
  p.timeout = std::chrono::seconds{10};
  p.retry.max_attempts = 64;
  p.retry.base_backoff = milliseconds{2};
  p.retry.max_backoff = milliseconds{10};
  return definition_builder{"ledger"}
    .agent("quote", "quoter", p).on("ok", "charge").on("over_limit", "rejected")
    .on("exhausted", "failed")
    .agent("charge", "charger", p).on("ok", "confirm").on("exhausted", "failed")
    .agent("confirm", "confirmer", p).on("ok", "done").on("exhausted", "failed")
    .completed("done").failed("rejected").failed("failed")
    .build();
}

config ledger_config(const ledger_options& opt) {
  config cfg;
  cfg.threads = opt.threads;
  cfg.model.rules = {{"quoter", quoter_rule}, {"confirmer", confirmer_rule}};
  cfg.model.latency = milliseconds{2};
  cfg.model.fail_rate = opt.fail_rate;
  cfg.model.seed = opt.seed;
  cfg.log_level = "off";
  return cfg;
}

caf::error register_ledger(runtime& rt, std::shared_ptr<payment_ledger> ledger) {
  if (auto err = rt.register_agent("quoter", agent_fn{quoter}))
    return err;
  if (auto err = rt.register_agent("charger", [ledger](step_context& ctx) {
        charger(ctx, ledger);
      }))
    return err;
  if (auto err = rt.register_agent("confirmer", agent_fn{confirmer}))
    return err;
  auto def = ledger_definition();
  if (!def)
    return std::move(def.error());
  return rt.register_definition(std::move(*def));
}

std::string ledger_order_key(size_t i) {
  return "order-" + std::to_string(i);
}

json ledger_order(size_t i, uint64_t seed) {
  auto key = ledger_order_key(i);
  auto h = splitmix64(fnv1a(key) ^ seed);
  json items = json::array();
  for (size_t n = 0, count = 1 + h % 3; n < count; ++n) {
    h = splitmix64(h);
    items.push_back({{"sku", catalog[h % catalog.size()].name}, {"qty", 1 + (h >> 8) % 4}});
  }
  return {{"order", key}, {"items", std::move(items)}};
}

json ledger_result::to_json() const {
  return {{"key", key}, {"id", id},       {"status", to_string(status)},
          {"node", node}, {"outcome", outcome}, {"state", state}};
}

int run_ledger(const ledger_options& opt, std::ostream& out) {
  if (opt.journal_path.empty() || opt.ledger_path.empty()) {
    out << "ledger: a journal path and a ledger path are required\n";
    return 2;
  }
  // The journal goes through the fault VFS, which forwards every call until
  // armed; it also counts the journal's fsyncs for the summary.
  if (auto err = fault_vfs::install()) {
    out << "ledger: " << describe(err) << '\n';
    return 1;
  }
  if (opt.kill_at_sync > 0)
    arm_kill_at_sync(opt.kill_at_sync);
  auto syncs_before = fault_vfs::calls(fault_vfs::op::sync);
  auto journal = open_sqlite_journal({opt.journal_path, "full", fault_vfs::name});
  if (!journal) {
    out << "ledger: " << describe(journal.error()) << '\n';
    return 1;
  }
  auto ledger = payment_ledger::open(opt.ledger_path);
  if (!ledger) {
    out << "ledger: " << describe(ledger.error()) << '\n';
    return 1;
  }
  auto cfg = ledger_config(opt);
  cfg.journal = *journal;
  runtime rt{cfg};
  if (auto err = register_ledger(rt, *ledger)) {
    out << "ledger: " << describe(err) << '\n';
    return 1;
  }
  auto rep = rt.recover();
  if (!rep) {
    out << "ledger: recover: " << describe(rep.error()) << '\n';
    return 1;
  }
  out << "recovered: resumed=" << rep->resumed << " parked=" << rep->parked
      << " quarantined=" << rep->quarantined.size() << '\n';
  for (const auto& q : rep->quarantined)
    out << "quarantined: " << q << '\n';
  out.flush();

  std::vector<ledger_result> started;
  for (size_t i = 0; i < opt.workflows; ++i) {
    ledger_result r;
    r.key = ledger_order_key(i);
    auto id = rt.start("ledger", ledger_order(i, opt.seed), r.key);
    if (id)
      r.id = *id;
    else
      out << r.key << ": start: " << describe(id.error()) << '\n';
    started.push_back(std::move(r));
  }
  auto results = settle(rt, started, opt.await_timeout, out);
  rt.shutdown();

  size_t completed = 0, failed = 0, unsettled = 0;
  std::string text;
  for (const auto& r : results) {
    completed += r.status == workflow_status::completed;
    failed += r.status == workflow_status::failed;
    unsettled += r.status != workflow_status::completed && r.status != workflow_status::failed;
    text += r.to_json().dump() + '\n';
  }
  if (!opt.out_path.empty())
    if (auto problem = write_atomically(opt.out_path, text); !problem.empty()) {
      out << "ledger: cannot write the results: " << problem << '\n';
      return 1;
    }
  auto charges = (*ledger)->charges();
  size_t repeats = 0;
  if (charges)
    for (const auto& c : *charges)
      repeats += c.calls > 1;
  out << opt.workflows << " orders: " << completed << " completed, " << failed << " failed, "
      << unsettled << " unsettled\n"
      << "ledger: " << (charges ? charges->size() : 0) << " charges, " << repeats
      << " deduped repeats (calls > 1)\n"
      << "journal syncs: " << fault_vfs::calls(fault_vfs::op::sync) - syncs_before << '\n';
  out.flush();
  return unsettled == 0 ? 0 : 1;
}

} // namespace troupe::examples
