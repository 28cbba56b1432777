// The gateway's HTTP transport: libcurl's multi interface driven by one I/O
// thread (epoll handing ready sockets to curl_multi_socket_action). Requests are submitted from any thread; each ends in exactly one
// callback, run on the I/O thread (keep it short: the gateway's sends a
// message). Connections are reused across requests to the same host (the
// multi handle's connection cache); TLS is curl's (OpenSSL). No thread per
// request: 10,000 requests in flight are 10,000 sockets and one thread.
//
// curl's errors are translated here and nowhere else:
//   CURLE_OPERATION_TIMEDOUT                    -> llm_timeout
//   every other transfer error (connect, resolve, send, receive, reset,
//   a body cut short, TLS)                      -> llm_unavailable
// An HTTP status, any status, is a response, not an error: the wire
// protocol (runtime/gateway/wire.hpp) decides what it means. Error
// contexts name the URL (without its query) and curl's message; never a
// header.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>

#include <caf/expected.hpp>

#include "gateway/wire.hpp"

namespace troupe {

class http_transport {
public:
  using callback = std::function<void(caf::expected<gateway::http_response>)>;

  /// Starts the I/O thread.
  http_transport();
  /// Stops the I/O thread; requests still in flight end with shutting_down.
  ~http_transport();
  http_transport(const http_transport&) = delete;
  http_transport& operator=(const http_transport&) = delete;

  /// Sends `req` (a POST) and calls `done` once with the response or an
  /// error. `timeout` bounds the whole transfer. Thread-safe. After the
  /// transport stopped, `done` runs at once with shutting_down.
  void submit(gateway::http_request req, std::chrono::milliseconds timeout, callback done);

  /// Requests submitted and not yet answered.
  size_t in_flight() const { return in_flight_.load(); }

private:
  struct impl;
  std::unique_ptr<impl> impl_;
  std::atomic<size_t> in_flight_{0};
};

} // namespace troupe
