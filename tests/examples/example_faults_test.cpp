// The order_processing and loan_approval examples while the runtime's
// service actors die: each service (journal writer, timers, scripted model,
// gateway, notifier, workflow manager) is killed while the example's
// workflows are in flight; its supervisor restarts it (with those after
// it), and every workflow still ends where its input says, with no order
// shipped or refunded twice. Nothing sleeps: waits are awaits on workflows
// and round trips to the supervisor.
#include <catch2/catch.hpp>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <caf/all.hpp>

#include "loan_approval/loan_approval.hpp"
#include "order_processing/order_processing.hpp"
#include "support/services.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::examples;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 60000ms; // only reached when a test is broken

const std::vector<std::string> services = {"journal", "timers",   "scripted",
                                           "gateway", "notifier", "manager"};

/// Kills service `id` and waits until its supervisor has started it, and
/// those it took along, again.
void kill(runtime& rt, const std::string& id) {
  testing::kill_service(rt, id, patience);
}

/// rt.start, again while a restarting manager answers interrupted.
std::string start(runtime& rt, const std::string& def, const nlohmann::json& input,
                  const std::string& key) {
  for (int tries = 0;; ++tries) {
    auto id = rt.start(def, input, key);
    if (id)
      return *id;
    INFO(key << ": " << describe(id.error()));
    REQUIRE((is(id.error(), errc::interrupted) || is(id.error(), errc::shutting_down)));
    REQUIRE(tries < 20);
  }
}

} // namespace

TEST_CASE("order_processing loses no order and ships none twice while each service is killed",
          "[examples][faults][order_processing]") {
  for (const auto& victim : services) {
    DYNAMIC_SECTION("killing " << victim) {
      order_options opt;
      opt.orders = 60;
      opt.seed = 3;
      opt.hang_rate = 0.05;
      auto store = std::make_shared<warehouse>();
      auto driver = std::make_shared<timeout_driver>();
      runtime rt{order_config(opt, driver)};
      REQUIRE(!register_order_processing(rt, store, opt));
      driver->attach(&rt);
      struct detach { // before rt goes, also when a check fails part-way
        timeout_driver& d;
        ~detach() { d.attach(nullptr); }
      } detached{*driver};
      std::vector<std::string> ids;
      for (size_t i = 0; i < opt.orders; ++i)
        ids.push_back(start(rt, "orders", order_input(i, opt.seed), order_key(i)));
      kill(rt, victim); // orders in every step, some effects between run and commit
      for (size_t i = 0; i < opt.orders; ++i) // replayed: the same workflows
        CHECK(start(rt, "orders", order_input(i, opt.seed), order_key(i)) == ids[i]);
      auto ships = [&] { return store->per_order("ship"); };
      for (size_t i = 0; i < opt.orders; ++i) {
        auto input = order_input(i, opt.seed);
        auto info = rt.await(ids[i], patience);
        REQUIRE(info);
        INFO(order_key(i) << ": " << info->node << " " << info->reason);
        CHECK(info->status == workflow_status::completed);
        CHECK(info->node == (input["intent"] == "purchase" ? "shipped" : "refunded"));
        auto j = read_journey(rt, ids[i]);
        REQUIRE(j);
        CHECK(j->repeated_completions == 0);
      }
      auto shipped = ships();
      auto refunded = store->per_order("refund");
      for (size_t i = 0; i < opt.orders; ++i) {
        bool purchase = order_input(i, opt.seed)["intent"] == "purchase";
        INFO(order_key(i));
        CHECK(shipped[order_key(i)] == (purchase ? 1 : 0));
        CHECK(refunded[order_key(i)] == (purchase ? 0 : 1));
      }
    }
  }
}

TEST_CASE("loan_approval loses no application while each service is killed",
          "[examples][faults][loan_approval]") {
  for (const auto& victim : services) {
    DYNAMIC_SECTION("killing " << victim) {
      loan_options opt;
      opt.applications = 24;
      auto clock = std::make_shared<virtual_clock>();
      auto bureaus = std::make_shared<credit_bureaus>(opt.seed);
      runtime rt{loan_config(opt, bureaus, clock)};
      REQUIRE(!register_loan_approval(rt));
      std::vector<loan_application> apps;
      for (size_t i = 0; i < opt.applications; ++i) {
        loan_application a{loan_key(i), {}, loan_input(i, opt.seed), false};
        a.slow = bureaus->primary_slow(a.key)
                 && !a.input["id_document"].get<std::string>().empty();
        a.id = start(rt, "loans", a.input, a.key);
        apps.push_back(std::move(a));
      }
      kill(rt, victim);
      REQUIRE(!drive_to_gate(rt, *bureaus, *clock, apps, patience));
      for (const auto& a : apps) {
        INFO(a.key);
        auto info = rt.status(a.id);
        REQUIRE(info);
        if (info->status != workflow_status::parked)
          continue;
        for (int tries = 0;; ++tries) { // a signal may meet a manager restart
          auto err = rt.signal(a.id, "approval", underwrite(*info));
          if (!err)
            break;
          REQUIRE(is(err, errc::interrupted));
          REQUIRE(tries < 5);
        }
      }
      for (const auto& a : apps) {
        auto info = rt.await(a.id, patience);
        REQUIRE(info);
        INFO(a.key << " " << a.input.dump() << ": " << info->node << " " << info->reason);
        CHECK(info->finished());
        if (a.input["id_document"] == "" || a.input["country"] == "embargoed")
          CHECK(info->node == "declined");
        else
          CHECK((info->node == "funded" || info->node == "rejected"));
        if (info->node == "funded" || info->node == "rejected")
          CHECK(info->state["credit"]["score"] == bureaus->score(a.key));
      }
    }
  }
}
