// The saga the trace tests run: every kind of span in one workflow. An
// order reserves stock (an effect; undone by releasing it), charges a card
// (an effect, whose first attempt fails and is retried; undone by a
// refund), then waits at a review gate; approved it completes, rejected it
// runs both undos newest first and fails "compensated".
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

namespace troupe::testing {

/// The traceparents the saga's attempts were given, in the order they ran.
struct seen_traceparents {
  std::mutex mu;
  std::vector<std::string> all;
  void add(const std::string& t) {
    std::lock_guard<std::mutex> g{mu};
    all.push_back(t);
  }
  std::vector<std::string> get() {
    std::lock_guard<std::mutex> g{mu};
    return all;
  }
};

/// An agent that runs effect `name` once per visit; while `*fail_first` is
/// set, an attempt clears it and fails as crashed instead.
inline agent_fn saga_agent(std::string name, std::shared_ptr<std::atomic<bool>> fail_first = {},
                           std::shared_ptr<seen_traceparents> seen = {}) {
  return [name, fail_first, seen](step_context& ctx) {
    if (seen)
      seen->add(ctx.traceparent());
    if (fail_first && fail_first->exchange(false))
      return ctx.fail(failure_kind::crashed, name + " service down");
    ctx.effect(
      name, [name](const std::string&) { return nlohmann::json{{"done", name}}; },
      [](step_context& c, caf::expected<nlohmann::json> r) {
        if (!r)
          return c.fail(failure_kind::crashed, describe(r.error()));
        c.finish({});
      });
  };
}

inline definition saga_definition() {
  agent_policy reserve;
  reserve.timeout = std::chrono::seconds{5};
  reserve.compensate = "releaser";
  agent_policy charge = reserve;
  charge.compensate = "refunder";
  charge.retry.max_attempts = 2;
  charge.retry.base_backoff = std::chrono::milliseconds{1};
  charge.retry.max_backoff = std::chrono::milliseconds{1};
  return *definition_builder{"order"}
            .agent("reserve", "reserver", reserve).on("ok", "charge")
            .agent("charge", "charger", charge).on("ok", "review")
            .gate("review").on("approve", "done").on("reject", "declined")
            .completed("done")
            .failed("declined")
            .build();
}

/// Registers the saga's agents and definition; the charge's first attempt
/// (in this runtime) fails.
inline void register_saga(runtime& rt, std::shared_ptr<seen_traceparents> seen = {}) {
  auto flaky = std::make_shared<std::atomic<bool>>(true);
  REQUIRE_FALSE(rt.register_agent("reserver", saga_agent("reserve", {}, seen)));
  REQUIRE_FALSE(rt.register_agent("releaser", saga_agent("release", {}, seen)));
  REQUIRE_FALSE(rt.register_agent("charger", saga_agent("charge", flaky, seen)));
  REQUIRE_FALSE(rt.register_agent("refunder", saga_agent("refund", {}, seen)));
  REQUIRE_FALSE(rt.register_definition(saga_definition()));
}

} // namespace troupe::testing
