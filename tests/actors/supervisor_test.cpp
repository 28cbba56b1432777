// The supervisor actor under CAF's deterministic test coordinator: each
// strategy carried out in order, restart backoff at its exact instant,
// shutdown times that end in a kill, escalation up a tree, children that
// cannot start, and no child outliving its supervisor.
#include <string>
#include <vector>

#include "troupe/errors.hpp"
#include "troupe/supervisor.hpp"
#include "kernel/supervision.hpp"

#include "support/caf_catch.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

using crash_atom = caf::atom_constant<caf::atom("crash")>;
using done_atom = caf::atom_constant<caf::atom("done")>;

/// Crashes on (crash_atom), finishes on (done_atom). A stubborn one ignores
/// being told to stop.
caf::behavior worker(caf::event_based_actor* self, bool stubborn) {
  if (stubborn)
    self->set_exit_handler([](caf::exit_msg&) {});
  return {
    [self](crash_atom) { self->quit(caf::sec::runtime_error); },
    [self](done_atom) { self->quit(); },
  };
}

child_spec child(std::string id, restart_type r = restart_type::permanent, bool stubborn = false,
                 duration shutdown = 1s) {
  child_spec c;
  c.id = std::move(id);
  c.restart = r;
  c.shutdown = shutdown;
  c.start = [stubborn](caf::actor_system& sys) { return sys.spawn(worker, stubborn); };
  return c;
}

struct fixture : test_coordinator_fixture<> {
  std::vector<std::string> events; ///< "<supervisor> <kind> <child>"
  caf::actor sup;

  supervisor_spec spec(std::string name, restart_strategy s, std::vector<child_spec> cs) {
    supervisor_spec out;
    out.name = std::move(name);
    out.flags.strategy = s;
    out.flags.base_backoff = 0s; // at once, unless a test says otherwise
    out.children = std::move(cs);
    out.observer = [this](const supervision_event& e) {
      events.push_back(e.supervisor + " " + to_string(e.k) + (e.child.empty() ? "" : " " + e.child));
    };
    return out;
  }

  void boot(supervisor_spec s) {
    auto h = spawn_supervisor(sys, std::move(s));
    REQUIRE(h);
    sup = *h;
    sched.run();
  }

  std::vector<child_info> kids(const caf::actor& s) {
    self->send(s, children_atom::value);
    sched.run();
    std::vector<child_info> out;
    self->receive([&](std::vector<child_info>& v) { out = std::move(v); },
                  caf::after(0s) >> [] { FAIL("the supervisor did not answer"); });
    return out;
  }
  std::vector<child_info> kids() { return kids(sup); }

  caf::actor of(const std::string& id) {
    for (auto& k : kids())
      if (k.id == id)
        return k.actor;
    return {};
  }

  /// Events since the last call.
  std::vector<std::string> took() {
    auto out = std::move(events);
    events.clear();
    return out;
  }

  /// The reason `a` exited with, once it has (run() first).
  caf::error exit_reason_of(const caf::actor& a) {
    self->monitor(a);
    sched.run();
    caf::error out;
    bool got = false;
    self->receive([&](caf::down_msg& dm) { out = dm.reason; got = true; },
                  caf::after(0s) >> [] {});
    REQUIRE(got);
    return out;
  }

  ~fixture() {
    if (sup)
      caf::anon_send_exit(sup, caf::exit_reason::kill);
    sched.run();
  }
};

using V = std::vector<std::string>;

} // namespace

TEST_CASE_METHOD(fixture, "one_for_one restarts the crashed child alone") {
  boot(spec("s", restart_strategy::one_for_one, {child("a"), child("b"), child("c")}));
  CHECK(took() == V{"s started a", "s started b", "s started c"});
  auto a = of("a"), b = of("b"), c = of("c");
  self->send(b, crash_atom::value);
  sched.run();
  CHECK(took() == V{"s exited b", "s started b"});
  CHECK(of("a") == a);
  CHECK(of("c") == c);
  CHECK(of("b") != b);
  CHECK(of("b") != nullptr);
  CHECK(kids()[1].started == 2);
}

TEST_CASE_METHOD(fixture, "one_for_all stops the others newest first, then starts all oldest "
                          "first") {
  boot(spec("s", restart_strategy::one_for_all, {child("a"), child("b"), child("c")}));
  took();
  auto a = of("a"), c = of("c");
  caf::anon_send_exit(of("b"), caf::exit_reason::kill);
  sched.run();
  CHECK(took() == V{"s exited b", "s stopping c", "s stopping a", "s started a", "s started b",
                    "s started c"});
  CHECK(of("a") != a);
  CHECK(of("c") != c);
  for (auto& k : kids())
    CHECK(k.running);
}

TEST_CASE_METHOD(fixture, "rest_for_one restarts the child and those started after it") {
  boot(spec("s", restart_strategy::rest_for_one, {child("a"), child("b"), child("c")}));
  took();
  auto a = of("a");
  self->send(of("b"), crash_atom::value);
  sched.run();
  CHECK(took() == V{"s exited b", "s stopping c", "s started b", "s started c"});
  CHECK(of("a") == a);
}

TEST_CASE_METHOD(fixture, "a transient child that finishes stays down and a temporary one is "
                          "forgotten") {
  boot(spec("s", restart_strategy::one_for_one,
            {child("job", restart_type::transient), child("tmp", restart_type::temporary),
             child("p")}));
  took();
  self->send(of("job"), done_atom::value);
  self->send(of("tmp"), crash_atom::value);
  sched.run();
  CHECK(took() == V{"s exited job", "s exited tmp"});
  auto k = kids();
  REQUIRE(k.size() == 2);
  CHECK(k[0].id == "job");
  CHECK(!k[0].running);
  CHECK(k[0].actor == nullptr);
  CHECK(k[1].id == "p");
  CHECK(k[1].running);
}

TEST_CASE_METHOD(fixture, "a restart waits its backoff, to the nanosecond") {
  auto s = spec("s", restart_strategy::one_for_one, {child("a")});
  s.flags.base_backoff = 100ms;
  s.flags.max_backoff = 1s;
  for (s.flags.seed = 1; kernel::restart_backoff(s.flags, "a", 1, 0) < 10ms; ++s.flags.seed) {
  }
  auto wait = kernel::restart_backoff(s.flags, "a", 1, 0);
  boot(s);
  took();
  self->send(of("a"), crash_atom::value);
  sched.run();
  CHECK(took() == V{"s exited a"});
  CHECK(of("a") == nullptr);
  advance_time(wait - 1ns);
  sched.run();
  CHECK(of("a") == nullptr);
  advance_time(1ns);
  sched.run();
  CHECK(took() == V{"s started a"});
  CHECK(of("a") != nullptr);
}

TEST_CASE_METHOD(fixture, "a child that ignores its shutdown is killed when its time is up, and "
                          "the supervisor exits after its children") {
  boot(spec("s", restart_strategy::one_for_one,
            {child("calm"), child("stubborn", restart_type::permanent, true, 2s)}));
  took();
  auto calm = of("calm"), stubborn = of("stubborn");
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  sched.run();
  CHECK(took() == V{"s stopping stubborn"}); // newest first, and waiting for it
  advance_time(2s - 1ns);
  sched.run();
  CHECK(took().empty());
  advance_time(1ns);
  sched.run();
  CHECK(took() == V{"s killed stubborn", "s stopping calm", "s stopped"});
  CHECK(exit_reason_of(stubborn) == caf::exit_reason::kill);
  CHECK(exit_reason_of(calm) == caf::exit_reason::user_shutdown);
  CHECK(exit_reason_of(sup) == caf::exit_reason::user_shutdown);
  sup = nullptr;
}

TEST_CASE_METHOD(fixture, "past its intensity a supervisor escalates, and its parent restarts "
                          "it with fresh children") {
  auto inner = spec("inner", restart_strategy::one_for_one, {child("w")});
  inner.flags.intensity = 1;
  inner.flags.period = 10s;
  auto root = spec("root", restart_strategy::one_for_one, {supervisor_child(inner), child("x")});
  boot(root);
  // a child supervisor starts its own children once it runs, after its spawn
  CHECK(took() == V{"root started inner", "root started x", "inner started w"});
  auto inner_sup = of("inner");
  auto x = of("x");
  self->send(kids(inner_sup)[0].actor, crash_atom::value);
  sched.run();
  CHECK(took() == V{"inner exited w", "inner started w"});
  self->send(kids(inner_sup)[0].actor, crash_atom::value);
  sched.run();
  CHECK(took() == V{"inner exited w", "inner escalated", "root exited inner",
                    "root started inner", "inner started w"});
  CHECK(of("inner") != inner_sup);
  CHECK(of("x") == x); // one_for_one at the root
  CHECK(kids(of("inner"))[0].running);
}

TEST_CASE_METHOD(fixture, "the escalation reason is restart_intensity, naming the supervisor "
                          "and the child") {
  auto s = spec("lonely", restart_strategy::one_for_one, {child("w")});
  s.flags.intensity = 0;
  boot(s);
  auto sup_now = sup;
  self->send(of("w"), crash_atom::value);
  auto reason = exit_reason_of(sup_now);
  CHECK(is(reason, errc::restart_intensity));
  CHECK(describe(reason) == "restart_intensity: supervisor 'lonely': child 'w' (permanent) "
                            "exited abnormal: 1 restarts within 5 s exceed the intensity of 0");
  sup = nullptr;
}

TEST_CASE_METHOD(fixture, "a child that can never start ends in escalation, not in a loop") {
  child_spec broken;
  broken.id = "broken";
  broken.start = [](caf::actor_system&) -> caf::actor { throw std::runtime_error("no config"); };
  auto s = spec("s", restart_strategy::one_for_one, {child("a"), broken});
  s.flags.intensity = 2;
  auto h = spawn_supervisor(sys, s);
  REQUIRE(h);
  auto reason = exit_reason_of(*h);
  CHECK(is(reason, errc::restart_intensity));
  CHECK(took() == V{"s started a", "s exited broken", "s exited broken", "s exited broken",
                    "s stopping a", "s escalated"});
}

TEST_CASE_METHOD(fixture, "a killed supervisor takes its children with it") {
  boot(spec("s", restart_strategy::one_for_one, {child("a"), child("b", restart_type::permanent,
                                                                  true)}));
  auto a = of("a"), b = of("b");
  caf::anon_send_exit(sup, caf::exit_reason::kill);
  sched.run();
  CHECK(exit_reason_of(a) == caf::exit_reason::kill);
  CHECK(exit_reason_of(b) == caf::exit_reason::kill);
  sup = nullptr;
}

TEST_CASE_METHOD(fixture, "specs without a name, a start function or distinct ids are refused") {
  auto nameless = spec("", restart_strategy::one_for_one, {child("a")});
  CHECK(is(spawn_supervisor(sys, nameless).error(), errc::invalid_definition));
  auto twice = spec("s", restart_strategy::one_for_one, {child("a"), child("a")});
  auto err = spawn_supervisor(sys, twice).error();
  CHECK(is(err, errc::invalid_definition));
  CHECK_THAT(describe(err), Catch::Contains("child id 'a' is given twice"));
  child_spec empty;
  empty.id = "e";
  auto startless = spec("s", restart_strategy::one_for_one, {empty});
  CHECK_THAT(describe(spawn_supervisor(sys, startless).error()),
             Catch::Contains("child 'e' has no start function"));
}
