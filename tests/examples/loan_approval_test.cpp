// The loan_approval example: per-agent timeouts on a virtual clock (the
// slow primary bureau's 10 s against credit_check's 2 s budget costs no
// wall-clock time), the fallback to the secondary bureau, and the
// underwriter's gate with approve, edit and reject. Every application's path
// is predicted from its input and checked against its journal. Nothing
// sleeps: waits are awaits on workflows and on the bureau's stall reports.
#include <catch2/catch.hpp>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "loan_approval/loan_approval.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::examples;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 30000ms; // only reached when a test is broken

struct world {
  loan_options opt;
  std::shared_ptr<virtual_clock> clock = std::make_shared<virtual_clock>();
  std::shared_ptr<credit_bureaus> bureaus;
  std::unique_ptr<runtime> rt;
  std::vector<loan_application> apps;

  explicit world(size_t n, uint64_t seed = 42) {
    opt.applications = n;
    opt.seed = seed;
    bureaus = std::make_shared<credit_bureaus>(seed);
    rt = std::make_unique<runtime>(loan_config(opt, bureaus, clock));
    REQUIRE(!register_loan_approval(*rt));
  }

  void start_all() {
    for (size_t i = 0; i < opt.applications; ++i) {
      loan_application a{loan_key(i), {}, loan_input(i, opt.seed), false};
      a.slow = bureaus->primary_slow(a.key) && !a.input["id_document"].get<std::string>().empty();
      auto id = rt->start("loans", a.input, a.key);
      REQUIRE(id);
      a.id = *id;
      apps.push_back(std::move(a));
    }
  }

  /// The risk an application gets, as the risk rule computes it.
  std::string expected_risk(const loan_application& a) const {
    int score = bureaus->score(a.key);
    double ratio = a.input["amount"].get<double>() / a.input["income"].get<double>();
    if (score >= 700 && ratio < 0.4)
      return "low";
    if (score >= 600 && ratio < 0.8)
      return "medium";
    return "high";
  }
};

} // namespace

TEST_CASE("loan_approval times the slow bureau out at 2 s on the virtual clock and falls back "
          "to the secondary",
          "[examples][loan_approval]") {
  world w{36};
  w.start_all();
  REQUIRE(!drive_to_gate(*w.rt, *w.bureaus, *w.clock, w.apps, patience));
  CHECK(w.clock->skew() == slow_bureau_takes); // one jump, no real waiting

  size_t slow = 0, unverified = 0, flagged = 0, parked = 0;
  for (const auto& a : w.apps) {
    INFO(a.key << " " << a.input.dump());
    auto info = w.rt->status(a.id);
    REQUIRE(info);
    auto events = w.rt->history(a.id);
    REQUIRE(events);
    if (a.input["id_document"] == "") {
      ++unverified;
      CHECK(info->status == workflow_status::failed);
      CHECK(info->node == "declined");
      CHECK(*loan_path(*w.rt, a.id) == "identity(1) -> declined");
      continue;
    }
    // the credit check: a timeout only where the primary bureau is slow
    int64_t scheduled_at = 0;
    int timeouts = 0;
    for (const auto& r : *events) {
      auto p = nlohmann::json::parse(r.payload);
      if (r.kind == "step_scheduled" && p["node"] == "credit_check")
        scheduled_at = r.at_ns;
      if (r.kind == "step_failed") {
        ++timeouts;
        CHECK(p["node"] == "credit_check");
        CHECK(p["kind"] == "timeout");
        CHECK(p["reason"] == "no outcome within 2000 ms");
        // the attempt ran past its budget by the bureau's 10 s, in virtual time
        CHECK(r.at_ns - scheduled_at >= std::chrono::nanoseconds{slow_bureau_takes}.count());
      }
    }
    CHECK(timeouts == (a.slow ? 1 : 0));
    CHECK(info->state["credit"]["bureau"] == (a.slow ? "secondary" : "primary"));
    CHECK(info->state["credit"]["score"] == w.bureaus->score(a.key));
    CHECK(info->state["risk"] == w.expected_risk(a));
    slow += a.slow;
    std::string credit = a.slow ? "credit_check(1 timeout) -> credit_fallback(1)"
                                : "credit_check(1)";
    auto path = loan_path(*w.rt, a.id);
    REQUIRE(path);
    if (a.input["country"] == "embargoed") {
      ++flagged;
      CHECK(info->node == "declined");
      CHECK(*path == "identity(1) -> " + credit + " -> risk(1) -> compliance(1) -> declined");
      continue;
    }
    ++parked;
    CHECK(info->status == workflow_status::parked);
    CHECK(info->node == "approval");
    CHECK(*path == "identity(1) -> " + credit + " -> risk(1) -> compliance(1) -> approval");
  }
  // the seed gives every kind of application
  CHECK(slow >= 5);
  CHECK(unverified >= 1);
  CHECK(flagged >= 1);
  CHECK(w.bureaus->stalls() == slow);

  // the underwriter decides; each decision's route is taken
  std::map<std::string, int> verdicts;
  for (const auto& a : w.apps) {
    auto info = w.rt->status(a.id);
    REQUIRE(info);
    if (info->status != workflow_status::parked)
      continue;
    auto d = underwrite(*info);
    ++verdicts[d.verdict];
    REQUIRE(!w.rt->signal(a.id, "approval", d));
    auto done = w.rt->await(a.id, patience);
    REQUIRE(done);
    INFO(a.key);
    auto path = loan_path(*w.rt, a.id);
    REQUIRE(path);
    CHECK(path->find("approval[" + d.verdict + "] -> ") != std::string::npos);
    if (d.verdict == "reject") {
      CHECK(done->node == "rejected");
      CHECK(done->status == workflow_status::failed);
    } else {
      CHECK(done->node == "funded");
      CHECK(done->status == workflow_status::completed);
      auto amount = a.input["amount"].get<int64_t>();
      CHECK(done->state["amount"] == (d.verdict == "edit" ? amount * 3 / 4 : amount));
    }
  }
  CHECK(verdicts["approve"] >= 1);
  CHECK(verdicts["edit"] >= 1);
  CHECK(verdicts["reject"] >= 1);
}

TEST_CASE("loan_approval gives the same paths run after run", "[examples][loan_approval]") {
  std::vector<std::string> first;
  for (int run = 0; run < 2; ++run) {
    world w{12, 9};
    w.start_all();
    REQUIRE(!drive_to_gate(*w.rt, *w.bureaus, *w.clock, w.apps, patience));
    std::vector<std::string> paths;
    for (const auto& a : w.apps) {
      auto info = w.rt->status(a.id);
      REQUIRE(info);
      if (info->status == workflow_status::parked)
        REQUIRE(!w.rt->signal(a.id, "approval", underwrite(*info)));
      REQUIRE(w.rt->await(a.id, patience));
      paths.push_back(*loan_path(*w.rt, a.id));
    }
    if (run == 0)
      first = paths;
    else
      CHECK(paths == first);
  }
}

TEST_CASE("loan_approval's definition routes a credit_check timeout to the fallback and not to a "
          "retry",
          "[examples][loan_approval]") {
  auto def = loan_definition();
  REQUIRE(def);
  const auto* check = def->find("credit_check");
  REQUIRE(check);
  CHECK(check->policy.timeout == credit_budget);
  CHECK(check->policy.retry.retryable.count(failure_kind::timeout) == 0);
  auto d = failure_route(*check, failure_kind::timeout, 1);
  CHECK_FALSE(d.retry);
  CHECK(d.target == "credit_fallback");
  auto crash = failure_route(*check, failure_kind::crashed, 1);
  CHECK(crash.retry);
  CHECK(failure_route(*check, failure_kind::crashed, 3).target == "credit_fallback");
  CHECK(def->find("identity")->policy.timeout == 1s);
  CHECK(def->find("risk")->policy.timeout == 5s);
}
