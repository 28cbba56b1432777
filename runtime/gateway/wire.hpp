// The two HTTP wire protocols, as pure functions: the request a chat call
// becomes, and what a response (or its absence) means. No I/O here; the
// transport (actors/http_transport.hpp) moves the bytes, and the gateway
// actor decides what to do with the outcome.
//
// The error taxonomy lives here and only here (the transport translates
// curl's errors, SQLite has its own one place):
//
//   response                          errc              breaker   lane
//   2xx, a well-formed reply          (a reply)         success   -
//   2xx, body not the protocol's      bad_output        -         -
//     JSON or without the text
//   2xx, json_output and the text     bad_output        -         -
//     is not a JSON object, lacks a
//     required field, or was cut off
//     (finish_reason length/max_tokens)
//   408, 5xx, 529 (overloaded)        llm_unavailable   failure   -
//   429                               llm_unavailable   failure   hold for retry_after
//   400, 401, 403, 404, 413, 422,     llm_rejected      -         -
//     other 4xx
//   1xx, 3xx, 0 (not a final answer) llm_unavailable   failure   -
//   (transport) timeout               llm_timeout       failure   -
//   (transport) connect/reset/TLS     llm_unavailable   failure   -
//
// Error contexts quote the provider's own error message when the body has
// one (`error.message`), else the body's start, cut to 200 bytes at a UTF-8
// boundary, control characters as spaces, and the API key masked should a
// provider or proxy echo it; never a request header.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <caf/expected.hpp>

#include "troupe/gateway.hpp"
#include "troupe/model.hpp"

namespace troupe::gateway {

struct http_request {
  std::string url;
  /// Name, value. The API key travels only here.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct http_response {
  long status = 0;
  std::map<std::string, std::string> headers; ///< names lower-cased
  std::string body;
};

/// Where a chat request goes and as whom.
struct endpoint {
  wire_protocol protocol = wire_protocol::openai;
  std::string base_url; ///< without a trailing slash
  std::string model;
  std::string api_key;  ///< "" = no Authorization / x-api-key header
  std::string anthropic_version = "2023-06-01";
};

/// The HTTP request for one chat call (`ep.protocol` openai or anthropic;
/// scripted has no wire form and is encoded as openai). Streaming is off. OpenAI: system
/// messages stay in `messages`; json_output sets response_format
/// {"type": "json_object"}. Anthropic: system messages are joined into the
/// top-level `system` field; json_output adds an instruction to the system
/// prompt (the API has no JSON mode). The idempotency key, when set, goes in
/// an `Idempotency-Key` header, and the traceparent in a `traceparent` header.
http_request encode_request(const endpoint& ep, const llm_request& req);

/// A response decoded: a reply, or an error classified as above.
struct decoded {
  caf::expected<llm_reply> reply{caf::error{}};
  /// The error counts against the lane's breaker.
  bool breaker_failure = false;
  /// 429: how long to hold the lane (Retry-After in seconds; an HTTP date
  /// is not parsed; absent or unparsable: 0).
  std::chrono::milliseconds retry_after{0};
  bool rate_limited = false;
};

/// Decodes a response to `req`, sent to `ep`. The reply's provider, latency
/// and cost are left for the caller; its model is the one the body names
/// (else ep.model).
decoded decode_response(const endpoint& ep, const llm_request& req, const http_response& r);

/// Checks a reply's text against the request's JSON requirement: "" when
/// it is fine, else what is wrong ("not a JSON object: ...", "missing
/// required field 'x'"). Used for every provider, the scripted one too.
std::string check_output(const llm_request& req, const std::string& text);

/// Parses a Retry-After header value given in seconds ("2", "0.5").
/// Anything else (an HTTP date, garbage) is 0.
std::chrono::milliseconds parse_retry_after(const std::string& value);

} // namespace troupe::gateway
