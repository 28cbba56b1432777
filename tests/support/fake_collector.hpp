// A fake OpenTelemetry collector for tests: OTLP/HTTP JSON on 127.0.0.1 (an
// ephemeral port), POST /v1/traces. Each POST is recorded and answered with
// the next scripted status (200 when none is queued); hold() keeps answers
// back until release(), a collector too slow to keep up, without sleeping.
// Tests wait for POSTs with wait_for() (a condition variable).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::testing {

struct collector_post {
  int status = 200;    ///< what it was answered
  std::string content_type;
  nlohmann::json body; ///< null if the body was not JSON
};

class fake_collector {
public:
  /// Binds 127.0.0.1 on an ephemeral port and serves on its own threads.
  /// Throws std::runtime_error if it cannot.
  fake_collector();
  /// Releases held answers, stops serving, joins its threads.
  ~fake_collector();
  fake_collector(const fake_collector&) = delete;
  fake_collector& operator=(const fake_collector&) = delete;

  /// "http://127.0.0.1:<port>/v1/traces"
  std::string url() const;
  /// The next `times` POSTs are answered `status`.
  void push_status(int status, size_t times = 1);
  /// POSTs from now on wait for release() before they are answered.
  void hold();
  void release();

  /// Every POST so far, in arrival order.
  std::vector<collector_post> posts() const;
  size_t count() const;
  /// Blocks until at least `n` POSTs have arrived or `timeout` passes.
  bool wait_for(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds{10}) const;
  /// The spans of the POSTs answered 2xx, in order, each an OTLP JSON span.
  std::vector<nlohmann::json> spans() const;

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace troupe::testing
