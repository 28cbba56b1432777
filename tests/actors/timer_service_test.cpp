// The timer service under deterministic time: exact firing, cancellation,
// re-arming, and owners that are gone.
#include "actors/atoms.hpp"
#include "actors/timer_service.hpp"

#include "support/caf_catch.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

struct fixture : test_coordinator_fixture<> {
  caf::actor timers = spawn_timer_service(sys, nullptr);

  int64_t at(caf::timespan from_now) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
             (sched.clock().now() + from_now).time_since_epoch())
      .count();
  }

  /// Timer ids that reached the test's actor, in order.
  std::vector<uint64_t> fired() {
    std::vector<uint64_t> out;
    for (;;) {
      bool got = false;
      self->receive([&](timer_atom, uint64_t id) { out.push_back(id); got = true; },
                    caf::after(std::chrono::seconds(0)) >> [] {});
      if (!got)
        return out;
    }
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "timers fire at their instant, in time order, not a nanosecond early") {
  self->send(timers, timer_atom::value, uint64_t{2}, at(2s));
  self->send(timers, timer_atom::value, uint64_t{1}, at(1s));
  sched.run();
  advance_time(1s - 1ns);
  sched.run();
  CHECK(fired().empty());
  advance_time(1ns);
  sched.run();
  CHECK(fired() == std::vector<uint64_t>{1});
  advance_time(1s);
  sched.run();
  CHECK(fired() == std::vector<uint64_t>{2});
}

TEST_CASE_METHOD(fixture, "a disarmed timer never fires and re-arming an id moves it") {
  self->send(timers, timer_atom::value, uint64_t{1}, at(1s));
  self->send(timers, timer_atom::value, uint64_t{2}, at(1s));
  self->send(timers, disarm_atom::value, uint64_t{1});
  self->send(timers, timer_atom::value, uint64_t{2}, at(3s)); // re-armed later
  sched.run();
  advance_time(2s);
  sched.run();
  CHECK(fired().empty());
  advance_time(1s);
  sched.run();
  CHECK(fired() == std::vector<uint64_t>{2});
}

TEST_CASE_METHOD(fixture, "a timer already due fires without time passing") {
  self->send(timers, timer_atom::value, uint64_t{7}, at(0s));
  sched.run();
  CHECK(fired() == std::vector<uint64_t>{7});
}

TEST_CASE_METHOD(fixture, "a timer of an owner that is gone is dropped and does not keep it "
                          "alive") {
  auto owner = sys.spawn([](caf::event_based_actor* a) -> caf::behavior {
    return {[a](timer_atom, uint64_t) { a->quit(); }};
  });
  caf::actor_addr addr = owner.address();
  // arm on the owner's behalf, then let the owner die
  caf::send_as(owner, timers, timer_atom::value, uint64_t{1}, at(1s));
  sched.run();
  caf::anon_send_exit(owner, caf::exit_reason::kill);
  owner = nullptr;
  sched.run();
  CHECK(caf::actor_cast<caf::actor>(addr) == nullptr); // the service holds no strong ref
  advance_time(1s);
  sched.run(); // fires into the void, no crash
  CHECK(fired().empty());
}
