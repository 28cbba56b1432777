// The runtime's service actors, for tests that kill them: look one up by
// id, kill it and wait until its supervisor has it (and those it took along)
// running again. Waits by asking, never by sleeping.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include <caf/all.hpp>
#include <catch2/catch.hpp>

#include "troupe/runtime.hpp"

namespace troupe::testing {

/// The service `id` of `rt`'s tree, as services() reports it now.
inline child_info service(runtime& rt, const std::string& id) {
  auto all = rt.services();
  REQUIRE(all);
  for (auto& c : *all)
    if (c.id == id)
      return c;
  FAIL("no service " << id);
  return {};
}

/// Kills service `id` and returns it as started again, once every service
/// runs; fails the test if that takes longer than `patience`.
inline child_info kill_service(runtime& rt, const std::string& id,
                               std::chrono::milliseconds patience) {
  auto before = service(rt, id);
  REQUIRE(before.running);
  caf::anon_send_exit(before.actor, caf::exit_reason::kill);
  auto until = std::chrono::steady_clock::now() + patience;
  for (;;) {
    auto all = rt.services();
    REQUIRE(all);
    bool up = true;
    for (auto& c : *all)
      up = up && c.running;
    auto now = service(rt, id);
    if (up && now.started > before.started) {
      CHECK(now.actor != before.actor);
      return now;
    }
    REQUIRE(std::chrono::steady_clock::now() < until);
    std::this_thread::yield();
  }
}

} // namespace troupe::testing
