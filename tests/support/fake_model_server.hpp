// A fake model server for tests: real HTTP on 127.0.0.1 (an ephemeral port),
// speaking both wire protocols the gateway uses, with scriptable faults.
//
//   POST /v1/chat/completions   OpenAI chat completions (non-streaming)
//   POST /v1/messages           Anthropic Messages
//
// Each request takes the next scripted response from the queue (push()),
// or the default one when the queue is empty. A response is rendered in the
// protocol of the path it answers: a 2xx reply as that protocol's success
// body (text, usage, finish reason), an error status as that protocol's
// error body. Faults: a status (503 bursts, 429 with Retry-After, 401...),
// a hold (the reply waits until release() or the server stops: a reply
// "delayed past the timeout" without sleeping), a malformed or truncated
// body, a connection closed before any response.
//
// No sleeps: tests wait for requests with wait_for() (a condition variable)
// and release held replies explicitly.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace troupe::testing {

struct fake_response {
  enum class fault : uint8_t {
    none,       ///< a well-formed body for `status`
    malformed,  ///< status 200, body "{not json"
    truncated,  ///< status 200, a success body cut in half (Content-Length matches)
    cut_off,    ///< announces a full body, sends half, then closes the connection
    reset,      ///< closes the connection without sending a response
  };
  int status = 200;
  fault kind = fault::none;
  std::string text = R"({"ok": true})"; ///< the reply's text (2xx)
  uint32_t prompt_tokens = 11;
  uint32_t completion_tokens = 7;
  std::string finish_reason = "stop"; ///< OpenAI names; Anthropic's are mapped
                                      ///< (stop -> end_turn, length -> max_tokens)
  std::string error_message = "fake error"; ///< error bodies (non-2xx)
  std::string retry_after;                  ///< a Retry-After header when set
  bool hold = false; ///< wait for release() (or server stop) before replying
  std::string model; ///< the model the reply names ("" = the request's)
};

struct received_request {
  std::string path;
  std::map<std::string, std::string> headers; ///< names lower-cased
  std::string body;
};

class fake_model_server {
public:
  /// Binds 127.0.0.1 on an ephemeral port and serves on its own threads.
  /// Throws std::runtime_error if it cannot bind.
  fake_model_server();
  /// Releases held replies, stops serving, joins its threads.
  ~fake_model_server();
  fake_model_server(const fake_model_server&) = delete;
  fake_model_server& operator=(const fake_model_server&) = delete;

  int port() const;
  /// "http://127.0.0.1:<port>/v1" (both protocols live under it).
  std::string base_url() const;

  /// Appends a response to the queue (`times` copies).
  void push(fake_response r, size_t times = 1);
  /// The response for requests that find the queue empty.
  void set_default(fake_response r);

  /// Every request received so far, in arrival order.
  std::vector<received_request> received() const;
  size_t count() const;
  /// Blocks until at least `n` requests have arrived or `timeout` passes.
  bool wait_for(size_t n, std::chrono::milliseconds timeout = std::chrono::seconds{10}) const;
  /// Lets every held reply go (and replies held later go at once).
  void release();

private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

} // namespace troupe::testing
