// The admin server: an HTTP JSON API over a runtime (list, inspect, start,
// signal, cancel workflows; dead letters; model lanes; a live change
// channel; Prometheus metrics) and the dashboard page that uses it. For
// embedders and `troupe serve`. It runs on threads of its own (cpp-httplib)
// and calls the runtime's blocking facade from them; it keeps no state of
// its own beyond its sockets.
//
// Auth: every /api/ and /metrics request carries `Authorization: Bearer
// <token>` (401 otherwise; compared in constant time). GET / (the page) is
// served without it: the page holds no data and asks for the token. The
// token is never logged. The endpoints are listed in README.md ("troupe
// serve, the admin API and the dashboard").
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "troupe/runtime.hpp"

namespace troupe {

/// How an admin server listens and what it answers.
struct admin_config {
  /// The address to listen on. The default takes connections from this
  /// machine only; "0.0.0.0" exposes the API to the network.
  std::string bind_address = "127.0.0.1";
  /// The TCP port; 0 lets the system pick one (admin_server::port()).
  uint16_t port = 0;
  /// The bearer token of every API call; the server refuses to start
  /// without one. Read it from the environment or a secret store.
  std::string token;
  /// What GET /metrics answers (Prometheus text format), called on a
  /// server thread for each scrape, usually runtime::metrics_text; empty:
  /// /metrics answers 404. An error is answered with its HTTP status.
  std::function<caf::expected<std::string>()> metrics;
  /// Threads serving requests. A long poll (GET /api/changes) holds one
  /// while it waits, and so does each idle keep-alive connection briefly.
  size_t threads = 16;
  /// The longest a long poll waits before answering "nothing new".
  std::chrono::milliseconds max_poll_wait{25000};
};

/// A running admin server. Not copyable; stop() or destruction ends it.
class admin_server {
public:
  /// Starts serving `rt`, which must outlive the server. invalid_config if
  /// the token is empty, the thread count is 0, or the address and port
  /// cannot be listened on (the context says which).
  static caf::expected<std::unique_ptr<admin_server>> start(runtime& rt, admin_config cfg);
  ~admin_server();
  admin_server(const admin_server&) = delete;
  admin_server& operator=(const admin_server&) = delete;

  /// The port listened on (the one picked, for port 0).
  uint16_t port() const;
  /// "http://<address>:<port>/", the dashboard's address.
  std::string url() const;
  /// Stops listening, ends long polls in progress and waits for the
  /// requests being served. Idempotent; any thread but a server thread.
  void stop();

  struct impl;

private:
  explicit admin_server(std::unique_ptr<impl> i);
  std::unique_ptr<impl> impl_;
};

} // namespace troupe
