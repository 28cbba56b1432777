// A gate's webhook, end to end over real HTTP: a workflow that parks at a
// gate with notify_url POSTs a Slack-compatible body there; a failing
// webhook is retried with backoff, a refusing one is not; a bad URL is
// refused when the definition is built. Waits are on the receiver's own
// condition variable, never sleeps.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10s; // only reached when a test is broken

/// A webhook on 127.0.0.1: answers each POST with the next queued status
/// (200 once the queue is empty) and records the bodies.
class webhook {
public:
  webhook() {
    server_.Post("/hook", [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard<std::mutex> guard{mtx_};
      bodies_.push_back(req.body);
      res.status = statuses_.empty() ? 200 : statuses_.front();
      if (!statuses_.empty())
        statuses_.pop_front();
      res.set_content("ok", "text/plain");
      cv_.notify_all();
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    REQUIRE(port_ > 0);
    thread_ = std::thread{[this] { server_.listen_after_bind(); }};
    while (!server_.is_running()) // stop() needs a running listener (no wait_until_ready in 0.11)
      std::this_thread::yield();
  }
  ~webhook() {
    server_.stop();
    thread_.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/hook"; }
  void answer(std::vector<int> statuses) {
    std::lock_guard<std::mutex> guard{mtx_};
    statuses_.assign(statuses.begin(), statuses.end());
  }
  /// The bodies once `n` have arrived (fewer after the patience ran out).
  std::vector<std::string> wait_for(size_t n) {
    std::unique_lock<std::mutex> lock{mtx_};
    cv_.wait_for(lock, patience, [&] { return bodies_.size() >= n; });
    return bodies_;
  }

private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mtx_;
  std::condition_variable cv_;
  std::deque<int> statuses_;
  std::vector<std::string> bodies_;
};

struct fixture {
  webhook hook;
  std::unique_ptr<runtime> rt;

  void boot() {
    config cfg;
    cfg.random = seeded_random(5);
    cfg.log_level = "off";
    cfg.notify_retry = {4, 1ms, 2ms, {}};
    rt = std::make_unique<runtime>(cfg);
    REQUIRE(!rt->register_agent("noop", [](step_context& ctx) { ctx.finish({}); }));
    gate_policy g;
    g.notify_url = hook.url();
    auto def = definition_builder{"approval"}
                 .agent("prepare", "noop").on("ok", "review").on("exhausted", "rejected")
                 .gate("review", g).on("approve", "done").on("reject", "rejected")
                 .completed("done")
                 .failed("rejected")
                 .build();
    REQUIRE(def);
    REQUIRE(!rt->register_definition(*def));
  }

  std::string park() {
    auto id = rt->start("approval", {{"order", 7}});
    REQUIRE(id);
    auto info = rt->await(*id, patience, true);
    REQUIRE(info);
    REQUIRE(info->status == workflow_status::parked);
    return *id;
  }
};

} // namespace

TEST_CASE_METHOD(fixture, "a workflow parking at a gate posts a Slack-compatible body to its "
                          "webhook, retried past 503s",
                 "[gates]") {
  hook.answer({503, 503});
  boot();
  auto id = park();
  auto bodies = hook.wait_for(3); // two 503s, then the 200
  REQUIRE(bodies.size() == 3);
  CHECK(bodies[0] == bodies[2]); // the same notification each try
  auto j = nlohmann::json::parse(bodies[2]);
  CHECK(j["text"] == "troupe: workflow " + id + " (approval) waits at gate 'review'");
  CHECK(j["workflow_id"] == id);
  CHECK(j["gate"] == "review");
  CHECK(j["definition"] == "approval");
  CHECK(j["key"] == id + "/review#1");
  // the workflow never waited on the webhook, and goes on when decided
  REQUIRE(!rt->signal(id, "review", decision::approve("ops")));
  CHECK(rt->await(id, patience)->status == workflow_status::completed);
}

TEST_CASE_METHOD(fixture, "a webhook that refuses the body is not asked again, and one that "
                          "keeps failing is given up after the configured tries",
                 "[gates]") {
  hook.answer({400});
  boot();
  park();
  CHECK(hook.wait_for(1).size() == 1);
  hook.answer({500, 500, 500, 500, 500});
  auto second = park(); // four tries in all (notify_retry), then it gives up
  auto bodies = hook.wait_for(5);
  REQUIRE(bodies.size() == 5);
  for (size_t i = 1; i < 5; ++i)
    CHECK(nlohmann::json::parse(bodies[i])["workflow_id"] == second);
  // the fifth 500 is left unused: the next POST is a third workflow's
  auto third = park();
  bodies = hook.wait_for(6);
  REQUIRE(bodies.size() == 6);
  CHECK(nlohmann::json::parse(bodies[5])["workflow_id"] == third);
}

TEST_CASE("a gate's webhook must be an http or https URL", "[gates]") {
  gate_policy g;
  g.notify_url = "ftp://example.org/hook";
  auto d = definition_builder{"bad"}
             .gate("review", g).on("approve", "done").on("reject", "done")
             .completed("done")
             .build();
  REQUIRE(!d);
  CHECK(is(d.error(), errc::invalid_definition));
  CHECK_THAT(describe(d.error()),
             Catch::Contains("node 'review': notify_url must start with http:// or https://"));
}
