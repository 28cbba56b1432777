// The HTTP transport on its own, against the fake model server: one
// callback per request, the curl error translation, and what a request in
// flight gets when the transport stops under it.
#include <catch2/catch.hpp>

#include <future>
#include <memory>
#include <string>

#include "actors/http_transport.hpp"
#include "support/fake_model_server.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10s; // only reached when a test is broken

gateway::http_request post_to(const fake_model_server& server) {
  gateway::http_request r;
  r.url = server.base_url() + "/chat/completions";
  r.headers = {{"Content-Type", "application/json"}};
  r.body = R"({"model":"fake-1","messages":[{"role":"user","content":"hi"}]})";
  return r;
}

/// Submits `req`; the future holds what its one callback got.
std::future<caf::expected<gateway::http_response>>
submit(http_transport& t, gateway::http_request req, std::chrono::milliseconds timeout = 5000ms) {
  auto done = std::make_shared<std::promise<caf::expected<gateway::http_response>>>();
  auto got = done->get_future();
  t.submit(std::move(req), timeout,
           [done](caf::expected<gateway::http_response> r) { done->set_value(std::move(r)); });
  return got;
}

} // namespace

TEST_CASE("a response of any status is a response, with its headers", "[gateway][transport]") {
  fake_model_server server;
  fake_response busy;
  busy.status = 503;
  busy.retry_after = "7";
  server.push(busy);
  http_transport t;
  auto first = submit(t, post_to(server));
  REQUIRE(first.wait_for(patience) == std::future_status::ready);
  auto r = first.get();
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(r->headers.at("retry-after") == "7");
  auto second = submit(t, post_to(server));
  REQUIRE(second.wait_for(patience) == std::future_status::ready);
  auto ok = second.get();
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(t.in_flight() == 0);
}

TEST_CASE("a transfer past its timeout is llm_timeout, a refused connection llm_unavailable",
          "[gateway][transport]") {
  fake_model_server server;
  fake_response held;
  held.hold = true;
  server.set_default(held);
  http_transport t;
  auto slow = submit(t, post_to(server), 200ms); // real time: curl's own timer
  REQUIRE(slow.wait_for(patience) == std::future_status::ready);
  auto r = slow.get();
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::llm_timeout));
  server.release();

  auto closed = post_to(server);
  closed.url = "http://127.0.0.1:1/chat/completions"; // nothing listens on port 1
  auto refused = submit(t, closed);
  REQUIRE(refused.wait_for(patience) == std::future_status::ready);
  auto e = refused.get();
  REQUIRE_FALSE(e);
  CHECK(is(e.error(), errc::llm_unavailable));
  CHECK_THAT(describe(e.error()), Catch::Contains("http://127.0.0.1:1/chat/completions"));
}

TEST_CASE("a request in flight when the transport stops ends once, with shutting_down",
          "[gateway][transport]") {
  fake_model_server server;
  fake_response held;
  held.hold = true;
  server.set_default(held);
  auto t = std::make_unique<http_transport>();
  auto pending = submit(*t, post_to(server));
  REQUIRE(server.wait_for(1)); // it is on the wire, its reply held
  CHECK(t->in_flight() == 1);
  t.reset(); // stops the I/O thread under it
  REQUIRE(pending.wait_for(0s) == std::future_status::ready); // answered before the destructor returned
  auto r = pending.get();
  REQUIRE_FALSE(r);
  CHECK(is(r.error(), errc::shutting_down));
  server.release();
}
