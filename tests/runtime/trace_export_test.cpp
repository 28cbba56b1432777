// Span export through the facade (config::tracing) to a fake OTLP collector
// on 127.0.0.1: the spans a collector gets are the journal's (ids, parents,
// attributes); a collector answering 500 gets the batch again; a dead one
// costs the workflows nothing and every span is counted dropped; shutdown
// exports what is left. Waits are awaits, flush_traces() and the fake
// collector's condition variable, never sleeps.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <set>
#include <string>

#include "runtime/trace_support.hpp"
#include "support/fake_collector.hpp"
#include "troupe/errors.hpp"
#include "troupe/runtime.hpp"

using namespace troupe;
using namespace troupe::testing;
using namespace std::chrono_literals;

namespace {

constexpr auto patience = 10000ms; // only reached when a test is broken

/// Export to `url`; batches wait for a flush (or a full batch), retries
/// come at once.
tracing_config export_to(const std::string& url) {
  tracing_config t;
  t.otlp_endpoint = url;
  t.service_name = "troupe-test";
  t.flush_interval = 1h;
  t.retry.max_attempts = 2;
  t.retry.base_backoff = 1ms;
  t.retry.max_backoff = 1ms;
  return t;
}

std::unique_ptr<runtime> exporting(tracing_config t) {
  config cfg;
  cfg.random = seeded_random(5);
  cfg.tracing = std::move(t);
  auto rt = std::make_unique<runtime>(std::move(cfg));
  register_saga(*rt);
  return rt;
}

/// Runs an order through its review gate with `verdict`; returns its id.
std::string run_order(runtime& rt, const std::string& verdict) {
  auto id = rt.start("order", {{"sku", "A-1"}});
  REQUIRE(id);
  REQUIRE(rt.await(*id, patience, true));
  REQUIRE_FALSE(rt.signal(*id, "review", decision{verdict, {}, "ann"}));
  auto info = rt.await(*id, patience);
  REQUIRE(info);
  REQUIRE(info->finished());
  return *id;
}

/// A port on 127.0.0.1 bound but not listening: a connection to it is
/// refused, and no other test can take it while this lives.
class closed_port {
public:
  closed_port() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t n = sizeof a;
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &n) == 0);
    port_ = ntohs(a.sin_port);
  }
  ~closed_port() { ::close(fd_); }
  closed_port(const closed_port&) = delete;
  closed_port& operator=(const closed_port&) = delete;
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1/traces"; }

private:
  int fd_ = -1;
  int port_ = 0;
};

std::map<std::string, nlohmann::json> by_key(const nlohmann::json& attributes) {
  std::map<std::string, nlohmann::json> out;
  for (const auto& a : attributes)
    out[a["key"]] = a["value"];
  return out;
}

} // namespace

TEST_CASE("a collector gets every span of the journal, with its parent and attributes",
          "[trace][export]") {
  fake_collector collector;
  auto rt = exporting(export_to(collector.url()));
  auto id = run_order(*rt, "reject");
  REQUIRE(rt->flush_traces(patience));
  auto derived = rt->trace(id);
  REQUIRE(derived);
  auto got = collector.spans();
  REQUIRE(got.size() == derived->size());
  std::map<std::string, nlohmann::json> received;
  for (const auto& s : got)
    received[s["spanId"]] = s;
  REQUIRE(received.size() == got.size()); // none twice
  for (const auto& d : *derived) {
    INFO(d.name);
    REQUIRE(received.count(d.span_id) == 1);
    const auto& s = received[d.span_id];
    CHECK(s["traceId"] == d.trace_id);
    CHECK(s.value("parentSpanId", "") == d.parent_span_id);
    CHECK(s["name"] == d.name);
    CHECK(s["startTimeUnixNano"] == std::to_string(d.start_ns));
    CHECK(s["endTimeUnixNano"] == std::to_string(d.end_ns));
    CHECK(s["status"]["code"] == static_cast<int>(d.status));
    auto attrs = by_key(s["attributes"]);
    CHECK(attrs["troupe.workflow.id"]["stringValue"] == id);
    if (d.name == "undo charge") {
      CHECK(attrs["troupe.compensation"]["boolValue"] == true);
      CHECK(attrs["troupe.attempt"]["intValue"] == "1");
      CHECK(attrs["troupe.node"]["stringValue"] == "charge");
    }
  }
  auto posts = collector.posts();
  REQUIRE_FALSE(posts.empty());
  CHECK(posts[0].content_type == "application/json");
  CHECK(by_key(posts[0].body["resourceSpans"][0]["resource"]["attributes"])["service.name"]
        == nlohmann::json{{"stringValue", "troupe-test"}});
  auto stats = rt->trace_stats();
  CHECK(stats.spans_exported == derived->size());
  CHECK(stats.spans_dropped == 0);
  CHECK(stats.spans_queued == 0);
  CHECK(stats.posts_failed == 0);
  CHECK(stats.records_skipped == 0);
}

TEST_CASE("exported spans, made from the workflow actor's own transitions, are the journal's "
          "to the byte",
          "[trace][export]") {
  // The exporter builds a live workflow's spans from the events as its
  // actor applied them; derive_trace() replays the journal through the
  // kernel. A saga (compensation, effects, a retry, a gate) and a workflow
  // with a bad_output, a crash, a dead letter and its retry: every span the
  // collector got must be the derived one, encoded.
  fake_collector collector;
  auto rt = exporting(export_to(collector.url()));
  auto calls = std::make_shared<std::atomic<int>>(0);
  REQUIRE_FALSE(rt->register_agent("caller", [calls](step_context& ctx) {
    auto n = ++*calls;
    if (n == 1)
      return ctx.finish({"maybe", nlohmann::json::object()}); // not routed: bad_output
    if (n == 2)
      return ctx.fail(failure_kind::crashed, "said \"no\"\n");
    ctx.finish({});
  }));
  agent_policy p;
  p.retry.max_attempts = 2;
  p.retry.base_backoff = 1ms;
  p.retry.max_backoff = 1ms;
  REQUIRE_FALSE(rt->register_definition(
    *definition_builder{"flaky"}.agent("call", "caller", p).on("ok", "done").completed("done")
       .build()));
  std::vector<std::string> ids = {run_order(*rt, "reject"), run_order(*rt, "approve")};
  auto flaky = rt->start("flaky", nlohmann::json::object());
  REQUIRE(flaky);
  auto stopped = rt->await(*flaky, patience);
  REQUIRE(stopped);
  REQUIRE(stopped->status == workflow_status::dead_lettered);
  REQUIRE_FALSE(rt->retry_dead_letter(*flaky, "ops"));
  auto done = rt->await(*flaky, patience);
  REQUIRE(done);
  REQUIRE(done->status == workflow_status::completed);
  ids.push_back(*flaky);
  REQUIRE(rt->flush_traces(patience));
  std::map<std::string, nlohmann::json> received;
  for (const auto& s : collector.spans())
    received[s["spanId"]] = s;
  size_t derived_spans = 0;
  for (const auto& id : ids) {
    auto derived = rt->trace(id);
    REQUIRE(derived);
    auto body = nlohmann::json::parse(to_otlp_json(*derived, "troupe-test"));
    for (const auto& d : body["resourceSpans"][0]["scopeSpans"][0]["spans"]) {
      INFO(d["name"]);
      REQUIRE(received.count(d["spanId"]) == 1);
      CHECK(received[d["spanId"]] == d);
      ++derived_spans;
    }
  }
  CHECK(received.size() == derived_spans);
}

TEST_CASE("a collector answering 500 gets the same batch again, and 200 ends it",
          "[trace][export]") {
  fake_collector collector;
  collector.push_status(500);
  auto rt = exporting(export_to(collector.url()));
  auto id = run_order(*rt, "approve");
  REQUIRE(rt->flush_traces(patience));
  auto posts = collector.posts();
  REQUIRE(posts.size() == 2);
  CHECK(posts[0].status == 500);
  CHECK(posts[1].status == 200);
  CHECK(posts[0].body == posts[1].body);
  auto stats = rt->trace_stats();
  CHECK(stats.posts_failed == 1);
  CHECK(stats.posts == 1);
  CHECK(stats.spans_exported == rt->trace(id)->size());
  CHECK(stats.spans_dropped == 0);
}

TEST_CASE("a collector refusing a batch for good (400) drops it without another try",
          "[trace][export]") {
  fake_collector collector;
  collector.push_status(400);
  auto rt = exporting(export_to(collector.url()));
  auto id = run_order(*rt, "approve");
  REQUIRE(rt->flush_traces(patience));
  CHECK(collector.count() == 1);
  auto stats = rt->trace_stats();
  CHECK(stats.posts_failed == 1);
  CHECK(stats.spans_exported == 0);
  CHECK(stats.spans_dropped == rt->trace(id)->size());
}

TEST_CASE("with a dead collector workflows still complete and every span is counted dropped",
          "[trace][export]") {
  closed_port dead; // connections are refused there for the whole test
  auto rt = exporting(export_to(dead.url()));
  auto id = run_order(*rt, "approve");
  auto info = rt->status(id);
  REQUIRE(info);
  CHECK(info->status == workflow_status::completed);
  REQUIRE(rt->flush_traces(patience)); // every try failed: nothing is left waiting
  auto stats = rt->trace_stats();
  CHECK(stats.spans_exported == 0);
  CHECK(stats.spans_dropped == rt->trace(id)->size());
  CHECK(stats.posts_failed == 2); // one batch, both its tries
  CHECK(stats.spans_queued == 0);
}

TEST_CASE("shutdown exports the spans still waiting", "[trace][export]") {
  fake_collector collector;
  size_t expected = 0;
  {
    auto rt = exporting(export_to(collector.url())); // batches wait an hour
    auto id = run_order(*rt, "reject");
    expected = rt->trace(id)->size();
    CHECK(collector.count() == 0);
  }
  CHECK(collector.spans().size() == expected);
}

TEST_CASE("a tracing config that cannot work is refused", "[trace][export]") {
  auto refused = [](tracing_config t) {
    config cfg;
    cfg.tracing = std::move(t);
    CHECK_THROWS_AS(runtime{std::move(cfg)}, std::invalid_argument);
  };
  tracing_config t;
  t.otlp_endpoint = "127.0.0.1:4318/v1/traces";
  refused(t);
  t = export_to("http://127.0.0.1:1/v1/traces");
  t.batch_max = 0;
  refused(t);
  t = export_to("http://127.0.0.1:1/v1/traces");
  t.retry.max_attempts = 0;
  refused(t);
  config off; // no endpoint: off, whatever the rest says
  off.tracing.batch_max = 0;
  runtime rt{std::move(off)};
  CHECK(rt.flush_traces(1ms));
  CHECK(rt.trace_stats().spans_exported == 0);
}
