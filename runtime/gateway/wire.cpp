// The OpenAI and Anthropic wire protocols: encoding a chat call, decoding
// and classifying what came back (the table in wire.hpp). Pure; called by
// the gateway actor around each transport round trip.
#include "runtime/gateway/wire.hpp"

#include <algorithm>
#include <cstddef>

#include <nlohmann/json.hpp>

#include "troupe/errors.hpp"

namespace troupe {

const char* to_string(wire_protocol p) {
  switch (p) {
    case wire_protocol::scripted: return "scripted";
    case wire_protocol::openai: return "openai";
    case wire_protocol::anthropic: return "anthropic";
  }
  return "unknown_protocol";
}

} // namespace troupe

namespace troupe::gateway {

namespace {

using json = nlohmann::json;

/// Anthropic has no JSON mode; this is how we ask for one.
constexpr const char* json_instruction = "Reply with a single JSON object and nothing else.";

/// Error contexts quote at most this much of a provider's message or body.
constexpr size_t max_quoted = 200;

/// check_output quotes at most this much of a reply that is not JSON.
constexpr size_t max_text_quoted = 60;

/// Retry-After values above this are taken as this: a provider asking for
/// more than an hour is better treated as down (the breaker's job).
constexpr int64_t max_retry_after_s = 3600;

// -- quoting ------------------------------------------------------------------

/// The first `max` bytes of `s`, cut back to a UTF-8 character boundary so
/// the excerpt stays valid UTF-8 (error contexts end up in JSON, whose
/// encoder refuses broken sequences), control characters as spaces so it
/// stays on one log line.
std::string excerpt(const std::string& s, size_t max) {
  size_t n = std::min(s.size(), max);
  if (n < s.size()) {
    // Bytes 10xxxxxx continue a character; back up to the byte starting it.
    while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80)
      --n;
  }
  std::string out = s.substr(0, n);
  for (auto& c : out)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F)
      c = ' ';
  return out;
}

/// `s` with every occurrence of the API key masked. Providers and proxies
/// sometimes echo the key they were sent in an error; the key must never
/// reach an error context (they are logged and journaled).
std::string without_key(std::string s, const std::string& key) {
  if (key.empty())
    return s;
  const std::string mask = "[redacted]";
  // Resume after the mask: a short key ("red") may occur inside it.
  for (auto at = s.find(key); at != std::string::npos; at = s.find(key, at + mask.size()))
    s.replace(at, key.size(), mask);
  return s;
}

/// `"text"`, or `"tex..."` when cut.
std::string quoted(const std::string& s, size_t max) {
  auto head = excerpt(s, max);
  return "\"" + head + (head.size() < s.size() ? "...\"" : "\"");
}

// -- encoding -----------------------------------------------------------------

json message_json(const chat_message& m) {
  json out = json::object();
  out["role"] = m.role;
  out["content"] = m.content;
  return out;
}

http_request encode_openai(const endpoint& ep, const llm_request& req) {
  json body = json::object();
  body["model"] = ep.model;
  body["messages"] = json::array();
  for (const auto& m : req.messages)
    body["messages"].push_back(message_json(m));
  body["max_tokens"] = req.max_tokens;
  body["stream"] = false;
  if (req.temperature >= 0)
    body["temperature"] = req.temperature;
  if (req.json_output)
    body["response_format"] = json{{"type", "json_object"}};

  http_request out;
  out.url = ep.base_url + "/chat/completions";
  out.headers.emplace_back("Content-Type", "application/json");
  if (!ep.api_key.empty())
    out.headers.emplace_back("Authorization", "Bearer " + ep.api_key);
  out.body = body.dump();
  return out;
}

/// The Anthropic `system` field: every system message, in order, plus the
/// JSON instruction when the reply must be JSON. "" = no field.
std::string anthropic_system(const llm_request& req) {
  std::string system;
  for (const auto& m : req.messages) {
    if (m.role != "system")
      continue;
    if (!system.empty())
      system += "\n\n";
    system += m.content;
  }
  if (req.json_output)
    system += (system.empty() ? "" : "\n\n") + std::string{json_instruction};
  return system;
}

http_request encode_anthropic(const endpoint& ep, const llm_request& req) {
  json body = json::object();
  body["model"] = ep.model;
  body["max_tokens"] = req.max_tokens;
  body["messages"] = json::array();
  for (const auto& m : req.messages)
    if (m.role != "system")
      body["messages"].push_back(message_json(m));
  if (auto system = anthropic_system(req); !system.empty())
    body["system"] = system;
  body["stream"] = false;
  if (req.temperature >= 0)
    body["temperature"] = req.temperature;

  http_request out;
  out.url = ep.base_url + "/messages";
  out.headers.emplace_back("content-type", "application/json");
  if (!ep.api_key.empty())
    out.headers.emplace_back("x-api-key", ep.api_key);
  out.headers.emplace_back("anthropic-version", ep.anthropic_version);
  out.body = body.dump();
  return out;
}

// -- decoding a 2xx -----------------------------------------------------------

/// What a successful body says, before the JSON requirement is checked.
struct parsed_reply {
  llm_reply reply;
  std::string finish_reason; ///< "" when the body names none
};

/// `obj[key]`, or nullptr when `obj` is not an object or has no such key.
const json* member(const json& obj, const char* key) {
  if (!obj.is_object())
    return nullptr;
  auto i = obj.find(key);
  return i == obj.end() ? nullptr : &*i;
}

std::string string_or_empty(const json& obj, const char* key) {
  auto value = member(obj, key);
  return value && value->is_string() ? value->get<std::string>() : std::string{};
}

/// `obj[key]` as a token count, if it is one.
bool read_count(const json& obj, const char* key, uint32_t& out) {
  auto value = member(obj, key);
  if (!value || !value->is_number_unsigned() || value->get<uint64_t>() > UINT32_MAX)
    return false;
  out = value->get<uint32_t>();
  return true;
}

/// Token counts from `usage`. Some servers (older llama.cpp and Ollama
/// builds, proxies) omit usage; budgets and token-per-minute limits still
/// need a figure, so a missing count is estimated with count_tokens: the
/// prompt from the request's messages, the completion from the reply text.
void read_usage(const json& body, const char* prompt_key, const char* completion_key,
                const llm_request& req, llm_reply& reply) {
  auto usage = body.value("usage", json{});
  if (!read_count(usage, prompt_key, reply.prompt_tokens)) {
    reply.prompt_tokens = 0;
    for (const auto& m : req.messages)
      reply.prompt_tokens += count_tokens(m.content);
  }
  if (!read_count(usage, completion_key, reply.completion_tokens))
    reply.completion_tokens = count_tokens(reply.text);
}

caf::expected<parsed_reply> parse_openai(const json& body, const llm_request& req) {
  auto choices = member(body, "choices");
  if (!choices || !choices->is_array() || choices->empty())
    return make_error(errc::bad_output, "openai reply: no choices[0]");
  const json& choice = (*choices)[0];
  auto message = member(choice, "message");
  if (!message || !message->is_object())
    return make_error(errc::bad_output, "openai reply: no choices[0].message");
  // null when the model refused or called a tool; we send no tools.
  auto content = member(*message, "content");
  if (!content || !content->is_string())
    return make_error(errc::bad_output, "openai reply: no choices[0].message.content");
  parsed_reply out;
  out.reply.text = content->get<std::string>();
  out.finish_reason = string_or_empty(choice, "finish_reason");
  read_usage(body, "prompt_tokens", "completion_tokens", req, out.reply);
  return out;
}

caf::expected<parsed_reply> parse_anthropic(const json& body, const llm_request& req) {
  auto content = member(body, "content");
  if (!content || !content->is_array())
    return make_error(errc::bad_output, "anthropic reply: no content array");
  parsed_reply out;
  // Only text blocks carry the reply; we send no tools, so others are rare.
  for (const auto& block : *content) {
    if (string_or_empty(block, "type") != "text")
      continue;
    auto text = member(block, "text");
    if (!text || !text->is_string())
      return make_error(errc::bad_output, "anthropic reply: a text block without text");
    out.reply.text += text->get<std::string>();
  }
  out.finish_reason = string_or_empty(body, "stop_reason");
  read_usage(body, "input_tokens", "output_tokens", req, out.reply);
  return out;
}

/// The finish reason each protocol gives a reply stopped by max_tokens.
bool cut_off(wire_protocol p, const std::string& finish_reason) {
  return finish_reason == (p == wire_protocol::anthropic ? "max_tokens" : "length");
}

decoded decode_success(const endpoint& ep, const llm_request& req, const http_response& r) {
  decoded out;
  auto body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) {
    auto head = quoted(without_key(r.body, ep.api_key), max_text_quoted);
    out.reply = make_error(errc::bad_output, std::string{to_string(ep.protocol)}
                                               + " reply: body is not a JSON object: " + head);
    return out;
  }
  auto parsed = ep.protocol == wire_protocol::anthropic ? parse_anthropic(body, req)
                                                        : parse_openai(body, req);
  if (!parsed) {
    out.reply = std::move(parsed.error());
    return out;
  }
  // A JSON reply cut off by max_tokens is almost surely truncated JSON; say
  // why, rather than that it does not parse.
  if (req.json_output && cut_off(ep.protocol, parsed->finish_reason)) {
    out.reply = make_error(errc::bad_output, "reply cut off at max_tokens ("
                                               + std::to_string(req.max_tokens) + ")");
    return out;
  }
  if (auto problem = check_output(req, parsed->reply.text); !problem.empty()) {
    out.reply = make_error(errc::bad_output, problem);
    return out;
  }
  auto model = string_or_empty(body, "model");
  parsed->reply.model = model.empty() ? ep.model : model;
  out.reply = std::move(parsed->reply);
  return out;
}

// -- decoding an error status -------------------------------------------------

/// What the provider said went wrong: `error.message` when the body has one
/// (both protocols use that shape), else the start of the raw body.
/// The key is masked before the cut, so no prefix of it survives.
std::string provider_message(const endpoint& ep, const http_response& r) {
  auto body = json::parse(r.body, nullptr, false);
  if (auto error = member(body, "error")) {
    auto message = string_or_empty(*error, "message");
    if (!message.empty())
      return excerpt(without_key(message, ep.api_key), max_quoted);
  }
  if (r.body.empty())
    return "(empty body)";
  return excerpt(without_key(r.body, ep.api_key), max_quoted);
}

/// The context names the protocol, the status and the provider's message;
/// never a request header.
caf::error status_error(errc code, const endpoint& ep, const http_response& r) {
  return make_error(code, std::string{to_string(ep.protocol)} + " " + std::to_string(r.status)
                            + ": " + provider_message(ep, r));
}

decoded decode_failure(const endpoint& ep, const http_response& r) {
  decoded out;
  auto s = r.status;
  if (s == 429) {
    out.reply = status_error(errc::llm_unavailable, ep, r);
    out.breaker_failure = true;
    out.rate_limited = true;
    if (auto h = r.headers.find("retry-after"); h != r.headers.end())
      out.retry_after = parse_retry_after(h->second);
  } else if (s >= 400 && s < 500 && s != 408) {
    // The provider refused this request and would refuse it again.
    out.reply = status_error(errc::llm_rejected, ep, r);
  } else {
    // 408, 5xx, 529 (Anthropic's overloaded), and statuses a provider
    // should never send (1xx, 3xx, 0): the provider is not answering well.
    out.reply = status_error(errc::llm_unavailable, ep, r);
    out.breaker_failure = true;
  }
  return out;
}

} // namespace

http_request encode_request(const endpoint& ep, const llm_request& req) {
  auto out = ep.protocol == wire_protocol::anthropic ? encode_anthropic(ep, req)
                                                     : encode_openai(ep, req);
  if (!req.idempotency_key.empty())
    out.headers.emplace_back("Idempotency-Key", req.idempotency_key);
  if (!req.traceparent.empty()) // W3C trace context: the calling attempt's span
    out.headers.emplace_back("traceparent", req.traceparent);
  return out;
}

decoded decode_response(const endpoint& ep, const llm_request& req, const http_response& r) {
  if (r.status >= 200 && r.status < 300)
    return decode_success(ep, req, r);
  return decode_failure(ep, r);
}

std::string check_output(const llm_request& req, const std::string& text) {
  if (!req.json_output)
    return "";
  // Strict: models in JSON mode do not fence their output, so a fenced or
  // prefixed reply is a model misbehaving and worth a retry.
  auto doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object())
    return "not a JSON object: " + quoted(text, max_text_quoted);
  std::string problems;
  for (const auto& field : req.required_fields) {
    if (doc.contains(field))
      continue;
    if (!problems.empty())
      problems += "; ";
    problems += "missing required field '" + field + "'";
  }
  return problems;
}

std::chrono::milliseconds parse_retry_after(const std::string& value) {
  auto first = value.find_first_not_of(" \t");
  if (first == std::string::npos)
    return std::chrono::milliseconds{0};
  auto s = value.substr(first, value.find_last_not_of(" \t") - first + 1);
  // Seconds only: digits with an optional fraction. Not strtod, which would
  // take signs, exponents, "inf" and the locale's decimal point.
  bool well_formed = s.find_first_not_of("0123456789.") == std::string::npos
                     && std::count(s.begin(), s.end(), '.') <= 1 && s != ".";
  if (!well_formed)
    return std::chrono::milliseconds{0};
  int64_t seconds = 0;
  size_t i = 0;
  for (; i < s.size() && s[i] != '.'; ++i)
    seconds = std::min(seconds * 10 + (s[i] - '0'), max_retry_after_s);
  int64_t ms = seconds * 1000;
  // Fraction digits past milliseconds are dropped.
  int64_t scale = 100;
  for (size_t j = i + 1; j < s.size() && scale > 0; ++j, scale /= 10)
    ms += (s[j] - '0') * scale;
  return std::chrono::milliseconds{std::min(ms, max_retry_after_s * 1000)};
}

} // namespace troupe::gateway
