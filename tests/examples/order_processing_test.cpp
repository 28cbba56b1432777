// The order_processing example under heavy faults, replays and restarts on a
// SQLite journal: 200 orders, a third of the model calls and attempts
// faulted, every start issued twice at once and again after each restart,
// the runtime destroyed mid-run and rebuilt on the same file twice (the
// first time with every order whose model call hung still open). Every
// order ends shipped or refunded, the warehouse holds exactly one shipment
// or refund per order, and no step completed twice. Timeouts run on the
// example's virtual clock: nothing sleeps; waits are awaits on workflows.
// Which calls hang is known beforehand (order_call_fault); how far each run
// gets before it is stopped is not, so the checks that need a hang count
// on orders whose very first call hangs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "order_processing/order_processing.hpp"
#include "support/temp_dir.hpp"
#include "troupe/errors.hpp"
#include "troupe/journal.hpp"

using namespace troupe;
using namespace troupe::examples;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 60000ms; // only reached when a test is broken

order_options harsh() {
  order_options opt;
  opt.orders = 200;
  opt.seed = 7;
  opt.fail_rate = 0.15;
  opt.malformed_rate = 0.1;
  opt.hang_rate = 0.08;
  opt.crash_after_effect_rate = 0.3;
  opt.bad_output_rate = 0.15;
  return opt;
}

/// Detaches the driver from a runtime before the runtime goes, also when
/// a test fails part-way.
struct attachment {
  timeout_driver& driver;
  attachment(timeout_driver& d, runtime& rt) : driver(d) { driver.attach(&rt); }
  ~attachment() { driver.attach(nullptr); }
};

struct world {
  order_options opt = harsh();
  troupe::testing::temp_dir dir;
  std::shared_ptr<warehouse> store = std::make_shared<warehouse>();
  std::shared_ptr<timeout_driver> driver = std::make_shared<timeout_driver>();
  std::unique_ptr<runtime> rt;

  /// With `drive` false the timeout driver is left detached: hung calls
  /// stay hung, as behind a stuck model, until the runtime is stopped.
  void open(bool drive = true) {
    auto journal = open_sqlite_journal({dir.file("journal.db")});
    REQUIRE(journal);
    auto cfg = order_config(opt, driver);
    cfg.journal = *journal;
    cfg.snapshot_every = 4;
    rt = std::make_unique<runtime>(std::move(cfg));
    REQUIRE(!register_order_processing(*rt, store, opt));
    if (drive)
      driver->attach(rt.get());
  }
  void close() { // as a crash would, for what is in flight: attempts are cut off
    driver->attach(nullptr);
    rt.reset();
  }
  ~world() {
    if (rt)
      close();
  }

  /// Starts the first `n` orders (all by default) from two threads at once
  /// with their keys; both get the same workflow. Returns the ids by order
  /// index.
  std::vector<std::string> start_all_twice(size_t n = 0) {
    n = n == 0 ? opt.orders : n;
    std::vector<std::string> a(n), b(n);
    auto starter = [this, n](std::vector<std::string>& ids) {
      for (size_t i = 0; i < n; ++i) {
        auto id = rt->start("orders", order_input(i, opt.seed), order_key(i));
        if (id)
          ids[i] = *id;
      }
    };
    std::thread other{[&] { starter(b); }};
    starter(a);
    other.join();
    for (size_t i = 0; i < n; ++i) {
      INFO(order_key(i));
      REQUIRE(!a[i].empty());
      REQUIRE(a[i] == b[i]);
    }
    return a;
  }
};

} // namespace

TEST_CASE("order_processing ships or refunds every order exactly once through faults and "
          "replays and restarts",
          "[examples][order_processing]") {
  world w;
  // The last `late` orders start in run 2, where the driver times hung calls
  // out: those whose first call hangs are sure to time out there. (Before,
  // every timeout came from hangs drawn in runs 2 and 3, in whatever work
  // run 1 had left them: a run 1 that got far left none about one time in
  // twenty-four, and no attempt timed out.)
  constexpr size_t late = 50;
  const size_t early = w.opt.orders - late;
  auto first_call_hangs = [&](size_t i) {
    return order_call_fault(w.opt, order_key(i), "classify", 1) == order_fault::hang;
  };
  uint64_t early_hangs = 0;
  std::vector<size_t> late_hangs;
  for (size_t i = 0; i < w.opt.orders; ++i)
    if (first_call_hangs(i)) {
      if (i < early)
        ++early_hangs;
      else
        late_hangs.push_back(i);
    }
  REQUIRE(early_hangs >= 5);
  REQUIRE(!late_hangs.empty());

  w.open(false);
  auto started = w.start_all_twice(early);
  // run 1 stops with the orders whose calls hung (and any others) in flight
  w.close();

  // run 2: recover, replay every start (twice at once) with the late
  // orders new among them, stop again part-way
  w.open();
  auto rep = w.rt->recover();
  REQUIRE(rep);
  CHECK(rep->quarantined.empty());
  CHECK(rep->resumed >= early_hangs); // their first call never answered
  auto ids = w.start_all_twice();
  CHECK(std::vector<std::string>(ids.begin(), ids.begin() + early) == started);
  for (size_t i = ids.size() / 3; i < 2 * ids.size() / 3; ++i)
    REQUIRE(w.rt->await(ids[i], patience));
  for (auto i : late_hangs)
    REQUIRE(w.rt->await(ids[i], patience));
  w.close();

  // run 3: recover and replay once more; every order finishes here
  w.open();
  REQUIRE(w.rt->recover());
  CHECK(w.start_all_twice() == ids);
  uint32_t timeouts = 0, crashes = 0, bad = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto input = order_input(i, w.opt.seed);
    auto info = w.rt->await(ids[i], patience);
    REQUIRE(info);
    INFO(order_key(i) << " " << ids[i] << ": " << info->node << " " << info->reason);
    REQUIRE(info->status == workflow_status::completed);
    CHECK(info->node == (input["intent"] == "purchase" ? "shipped" : "refunded"));
    auto j = read_journey(*w.rt, ids[i]);
    REQUIRE(j);
    CHECK(j->repeated_completions == 0);
    if (std::find(late_hangs.begin(), late_hangs.end(), i) != late_hangs.end())
      CHECK(j->timeouts >= 1); // its first call hung, with the driver at work
    timeouts += j->timeouts;
    crashes += j->crashes;
    bad += j->bad_outputs;
  }
  // the faults were there, and retried
  CHECK(timeouts > 0);
  CHECK(crashes > 20);
  CHECK(bad > 20);
  CHECK(w.driver->jumps() > 0);

  // the warehouse: one shipment per purchase, one refund per return, each
  // under its workflow's fulfill or refund effect key
  auto ships = w.store->per_order("ship");
  auto refunds = w.store->per_order("refund");
  size_t purchases = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto input = order_input(i, w.opt.seed);
    auto key = order_key(i);
    INFO(key);
    bool purchase = input["intent"] == "purchase";
    purchases += purchase;
    CHECK(ships[key] == (purchase ? 1 : 0));
    CHECK(refunds[key] == (purchase ? 0 : 1));
  }
  CHECK(purchases > 100);
  CHECK(purchases < ids.size());
  for (const auto& e : w.store->entries()) {
    INFO(e.key);
    auto i = std::stoul(e.order.substr(6));
    CHECK(e.key == ids[i] + (e.kind == "ship" ? "/fulfill#1/ship" : "/refund#1/refund"));
  }

  // run 4: a replay after everything finished changes nothing
  w.close();
  auto before = w.store->entries().size();
  w.open();
  auto again = w.rt->recover();
  REQUIRE(again);
  CHECK(again->resumed == 0);
  CHECK(w.start_all_twice() == ids);
  for (const auto& id : ids)
    CHECK(w.rt->status(id)->status == workflow_status::completed);
  CHECK(w.store->entries().size() == before);
}

TEST_CASE("order_processing classifies by the model with each order's message deciding",
          "[examples][order_processing]") {
  order_options opt;
  opt.orders = 20;
  opt.fail_rate = opt.malformed_rate = opt.hang_rate = 0;
  opt.crash_after_effect_rate = opt.bad_output_rate = 0;
  auto store = std::make_shared<warehouse>();
  auto driver = std::make_shared<timeout_driver>();
  runtime rt{order_config(opt, driver)};
  REQUIRE(!register_order_processing(rt, store, opt));
  attachment attached{*driver, rt};
  for (size_t i = 0; i < opt.orders; ++i) {
    auto input = order_input(i, opt.seed);
    auto id = rt.start("orders", input, order_key(i));
    REQUIRE(id);
    auto info = rt.await(*id, patience);
    REQUIRE(info);
    INFO(input.dump());
    CHECK(info->state["classified_as"] == input["intent"]);
    auto j = read_journey(rt, *id);
    REQUIRE(j);
    CHECK(j->attempts == 2); // no faults: one attempt per node
    if (input["intent"] == "purchase") {
      CHECK(j->path == "classify(1) -> fulfill(1) -> shipped");
      CHECK(info->state["tracking"].get<std::string>().rfind("TRK-", 0) == 0);
    } else {
      CHECK(j->path == "classify(1) -> refund(1) -> refunded");
      CHECK(info->state["cents"] == input["cents"]);
    }
  }
  CHECK(driver->jumps() == 0);
}

TEST_CASE("order_processing times a hung model call out on the virtual clock and retries it",
          "[examples][order_processing]") {
  order_options opt;
  opt.orders = 10;
  opt.fail_rate = opt.malformed_rate = 0;
  opt.crash_after_effect_rate = opt.bad_output_rate = 0;
  opt.hang_rate = 0.5; // every other call hangs
  auto store = std::make_shared<warehouse>();
  auto driver = std::make_shared<timeout_driver>();
  runtime rt{order_config(opt, driver)};
  REQUIRE(!register_order_processing(rt, store, opt));
  attachment attached{*driver, rt};
  uint32_t timeouts = 0;
  for (size_t i = 0; i < opt.orders; ++i) {
    auto id = rt.start("orders", order_input(i, opt.seed), order_key(i));
    REQUIRE(id);
    auto info = rt.await(*id, patience);
    REQUIRE(info);
    CHECK(info->status == workflow_status::completed);
    auto events = rt.history(*id);
    REQUIRE(events);
    int64_t scheduled_at = 0;
    for (const auto& r : *events) {
      auto p = nlohmann::json::parse(r.payload);
      if (r.kind == "step_scheduled")
        scheduled_at = r.at_ns;
      if (r.kind == "step_failed") {
        CHECK(p["kind"] == "timeout");
        CHECK(p["reason"] == "no outcome within 60000 ms");
        CHECK(r.at_ns - scheduled_at >= std::chrono::nanoseconds{order_step_timeout}.count());
        ++timeouts;
      }
    }
  }
  CHECK(timeouts > 0);
  CHECK(driver->jumps() >= 1);
}
