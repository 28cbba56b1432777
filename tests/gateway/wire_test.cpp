// The wire protocols: request bodies against fixture files, replies and
// error bodies shaped like the OpenAI and Anthropic APIs' own (hand-written
// from their references, not recorded), and every row of the error taxonomy
// in wire.hpp. Pure; no actor system, no sockets.
#include <chrono>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "runtime/gateway/wire.hpp"
#include "troupe/errors.hpp"

using namespace troupe;
using namespace troupe::gateway;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using json = nlohmann::json;

namespace {

const std::string secret = "sk-SECRET-123";

std::string fixture(const std::string& name) {
  std::ifstream in{std::string{TROUPE_GATEWAY_DATA} + "/" + name, std::ios::binary};
  INFO("fixture " << name);
  REQUIRE(in.good());
  std::stringstream buf;
  buf << in.rdbuf();
  return buf.str();
}

json fixture_json(const std::string& name) {
  return json::parse(fixture(name));
}

endpoint openai_endpoint(std::string key = secret) {
  endpoint ep;
  ep.protocol = wire_protocol::openai;
  ep.base_url = "https://api.openai.com/v1";
  ep.model = "gpt-4o-mini";
  ep.api_key = std::move(key);
  return ep;
}

endpoint anthropic_endpoint(std::string key = secret) {
  endpoint ep;
  ep.protocol = wire_protocol::anthropic;
  ep.base_url = "https://api.anthropic.com/v1";
  ep.model = "claude-3-5-haiku-20241022";
  ep.api_key = std::move(key);
  return ep;
}

/// The conversation every request fixture was written for.
llm_request ticket_request() {
  llm_request req;
  req.messages = {{"system", "You triage support tickets."},
                  {"system", "Answer in English."},
                  {"user", "My invoice INV-42 is charged twice."},
                  {"assistant", "Which card was charged?"},
                  {"user", "The Visa ending 4242."}};
  req.max_tokens = 256;
  req.temperature = 0.2;
  req.idempotency_key = "wf-7:triage";
  req.request_id = "wf-7:triage:1:0";
  return req;
}

llm_request json_request() {
  auto req = ticket_request();
  req.temperature = -1;
  req.json_output = true;
  req.required_fields = {"category", "priority"};
  return req;
}

http_response response(long status, std::string body,
                       std::map<std::string, std::string> headers = {}) {
  http_response r;
  r.status = status;
  r.body = std::move(body);
  r.headers = std::move(headers);
  return r;
}

/// The values of every header named exactly `name`, in order.
std::vector<std::string> header(const http_request& req, const std::string& name) {
  std::vector<std::string> out;
  for (const auto& [n, v] : req.headers)
    if (n == name)
      out.push_back(v);
  return out;
}

using strings = std::vector<std::string>;

/// The decoded reply; fails the test, showing the error, when there is none.
llm_reply reply_of(const decoded& d) {
  INFO((d.reply ? std::string{"a reply"} : describe(d.reply.error())));
  REQUIRE(static_cast<bool>(d.reply));
  return *d.reply;
}

/// describe() of the decoded error; fails the test when it is a reply.
std::string error_of(const decoded& d) {
  REQUIRE_FALSE(static_cast<bool>(d.reply));
  return describe(d.reply.error());
}

bool has_code(const decoded& d, errc code) {
  return !d.reply && is(d.reply.error(), code);
}

uint32_t prompt_estimate(const llm_request& req) {
  uint32_t n = 0;
  for (const auto& m : req.messages)
    n += count_tokens(m.content);
  return n;
}

} // namespace

// -- encode_request -----------------------------------------------------------

TEST_CASE("encode_request: openai body matches the fixture", "[wire]") {
  auto out = encode_request(openai_endpoint(), ticket_request());
  CHECK(out.url == "https://api.openai.com/v1/chat/completions");
  CHECK(json::parse(out.body) == fixture_json("openai_request.json"));
  // One line: dump() without indentation.
  CHECK(out.body.find('\n') == std::string::npos);
}

TEST_CASE("encode_request: openai json_output sets response_format, default temperature "
          "is omitted",
          "[wire]") {
  auto out = encode_request(openai_endpoint(), json_request());
  CHECK(json::parse(out.body) == fixture_json("openai_request_json.json"));
}

TEST_CASE("encode_request: a temperature of 0 is sent", "[wire]") {
  auto req = ticket_request();
  req.temperature = 0;
  for (auto ep : {openai_endpoint(), anthropic_endpoint()}) {
    auto body = json::parse(encode_request(ep, req).body);
    REQUIRE(body.contains("temperature"));
    CHECK(body["temperature"] == 0.0);
  }
}

TEST_CASE("encode_request: openai headers carry the key and the idempotency key", "[wire]") {
  auto out = encode_request(openai_endpoint(), ticket_request());
  CHECK(out.headers
        == std::vector<std::pair<std::string, std::string>>{
          {"Content-Type", "application/json"},
          {"Authorization", "Bearer sk-SECRET-123"},
          {"Idempotency-Key", "wf-7:triage"}});
}

TEST_CASE("encode_request: a traceparent goes in a traceparent header, for both protocols",
          "[wire]") {
  auto req = ticket_request();
  req.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  for (auto ep : {openai_endpoint(), anthropic_endpoint()}) {
    auto out = encode_request(ep, req);
    CHECK(header(out, "traceparent") == strings{req.traceparent});
  }
  req.traceparent.clear();
  CHECK(header(encode_request(openai_endpoint(), req), "traceparent").empty());
}

TEST_CASE("encode_request: openai without a key sends no Authorization header", "[wire]") {
  auto req = ticket_request();
  req.idempotency_key.clear();
  auto out = encode_request(openai_endpoint(""), req);
  CHECK(header(out, "Authorization").empty());
  CHECK(header(out, "Idempotency-Key").empty());
  CHECK(header(out, "Content-Type") == strings{"application/json"});
}

TEST_CASE("encode_request: anthropic body matches the fixture", "[wire]") {
  auto out = encode_request(anthropic_endpoint(), ticket_request());
  CHECK(out.url == "https://api.anthropic.com/v1/messages");
  CHECK(json::parse(out.body) == fixture_json("anthropic_request.json"));
  CHECK(out.body.find('\n') == std::string::npos);
}

TEST_CASE("encode_request: anthropic json_output appends the instruction to the system text",
          "[wire]") {
  auto out = encode_request(anthropic_endpoint(), json_request());
  CHECK(json::parse(out.body) == fixture_json("anthropic_request_json.json"));
}

TEST_CASE("encode_request: anthropic system field without system messages", "[wire]") {
  llm_request req;
  req.messages = {{"user", "Classify: my invoice is wrong."}};
  SECTION("no json_output: no system field") {
    auto body = json::parse(encode_request(anthropic_endpoint(), req).body);
    CHECK_FALSE(body.contains("system"));
    CHECK(body["messages"]
          == json::parse(R"([{"role": "user", "content": "Classify: my invoice is wrong."}])"));
  }
  SECTION("json_output: the instruction alone") {
    req.json_output = true;
    auto body = json::parse(encode_request(anthropic_endpoint(), req).body);
    CHECK(body["system"] == "Reply with a single JSON object and nothing else.");
    CHECK_FALSE(body.contains("response_format"));
  }
}

TEST_CASE("encode_request: anthropic headers carry the key, version and idempotency key",
          "[wire]") {
  auto ep = anthropic_endpoint();
  ep.anthropic_version = "2024-10-22";
  auto out = encode_request(ep, ticket_request());
  CHECK(out.headers
        == std::vector<std::pair<std::string, std::string>>{
          {"content-type", "application/json"},
          {"x-api-key", "sk-SECRET-123"},
          {"anthropic-version", "2024-10-22"},
          {"Idempotency-Key", "wf-7:triage"}});
}

TEST_CASE("encode_request: anthropic without a key sends no x-api-key header", "[wire]") {
  auto req = ticket_request();
  req.idempotency_key.clear();
  auto out = encode_request(anthropic_endpoint(""), req);
  CHECK(header(out, "x-api-key").empty());
  CHECK(header(out, "Idempotency-Key").empty());
  CHECK(header(out, "anthropic-version") == strings{"2023-06-01"});
}

TEST_CASE("encode_request: the api key travels only in headers", "[wire]") {
  for (auto ep : {openai_endpoint(), anthropic_endpoint()}) {
    for (auto req : {ticket_request(), json_request()}) {
      auto out = encode_request(ep, req);
      CHECK(out.body.find(secret) == std::string::npos);
      CHECK(out.url.find(secret) == std::string::npos);
      size_t carrying = 0;
      for (const auto& h : out.headers)
        carrying += h.second.find(secret) != std::string::npos ? 1 : 0;
      CHECK(carrying == 1);
    }
  }
}

// -- decode_response: replies -------------------------------------------------

TEST_CASE("decode_response: openai reply", "[wire]") {
  auto d = decode_response(openai_endpoint(), ticket_request(),
                           response(200, fixture("openai_reply.json")));
  auto reply = reply_of(d);
  CHECK(reply.text == "This is a duplicate charge on INV-42. I have flagged it for a refund to "
                      "the Visa ending 4242.");
  CHECK(reply.prompt_tokens == 52);
  CHECK(reply.completion_tokens == 24);
  CHECK(reply.model == "gpt-4o-mini-2024-07-18");
  CHECK_FALSE(d.breaker_failure);
  CHECK_FALSE(d.rate_limited);
  CHECK(d.retry_after == 0ms);
}

TEST_CASE("decode_response: anthropic reply", "[wire]") {
  auto d = decode_response(anthropic_endpoint(), ticket_request(),
                           response(200, fixture("anthropic_reply.json")));
  auto reply = reply_of(d);
  CHECK(reply.text == "This is a duplicate charge on INV-42. I have flagged it for a refund to "
                      "the Visa ending 4242.");
  CHECK(reply.prompt_tokens == 48);
  CHECK(reply.completion_tokens == 27);
  CHECK(reply.model == "claude-3-5-haiku-20241022");
  CHECK_FALSE(d.breaker_failure);
}

TEST_CASE("decode_response: anthropic text blocks are concatenated, other blocks skipped",
          "[wire]") {
  auto body = R"({"id":"msg_01","type":"message","role":"assistant","model":"claude-x",
    "content":[{"type":"text","text":"Dupli"},
               {"type":"tool_use","id":"toolu_01","name":"lookup","input":{}},
               {"type":"text","text":"cate."}],
    "stop_reason":"end_turn","stop_sequence":null,
    "usage":{"input_tokens":3,"output_tokens":2}})";
  auto reply = reply_of(decode_response(anthropic_endpoint(), ticket_request(),
                                        response(200, body)));
  CHECK(reply.text == "Duplicate.");
}

TEST_CASE("decode_response: any 2xx status carries a reply", "[wire]") {
  for (long status : {200L, 201L, 299L}) {
    INFO("status " << status);
    auto d = decode_response(openai_endpoint(), ticket_request(),
                             response(status, fixture("openai_reply.json")));
    CHECK(static_cast<bool>(d.reply));
  }
}

TEST_CASE("decode_response: missing usage is estimated with count_tokens", "[wire]") {
  auto req = ticket_request();
  SECTION("no usage at all") {
    auto reply = reply_of(decode_response(openai_endpoint(), req,
                                          response(200, fixture("openai_reply_no_usage.json"))));
    CHECK(reply.text == "Refund the duplicate charge.");
    CHECK(reply.prompt_tokens == prompt_estimate(req));
    CHECK(reply.prompt_tokens == 28);
    CHECK(reply.completion_tokens == 5); // 4 words and a period
    CHECK(reply.model == "qwen2.5:7b");
  }
  SECTION("one count missing, one given") {
    auto body = fixture_json("anthropic_reply.json");
    body["usage"].erase("output_tokens");
    auto reply = reply_of(decode_response(anthropic_endpoint(), req, response(200, body.dump())));
    CHECK(reply.prompt_tokens == 48);
    CHECK(reply.completion_tokens == count_tokens(reply.text));
  }
  SECTION("ill-typed counts") {
    auto body = fixture_json("openai_reply.json");
    body["usage"] = {{"prompt_tokens", "52"}, {"completion_tokens", -1}};
    auto reply = reply_of(decode_response(openai_endpoint(), req, response(200, body.dump())));
    CHECK(reply.prompt_tokens == prompt_estimate(req));
    CHECK(reply.completion_tokens == count_tokens(reply.text));
  }
}

TEST_CASE("decode_response: without a model in the body, the endpoint's model", "[wire]") {
  auto body = fixture_json("openai_reply.json");
  body.erase("model");
  auto reply = reply_of(decode_response(openai_endpoint(), ticket_request(),
                                        response(200, body.dump())));
  CHECK(reply.model == "gpt-4o-mini");
}

TEST_CASE("decode_response: a 2xx body that is not the protocol's is bad_output", "[wire]") {
  struct row {
    endpoint ep;
    std::string body;
    std::string context; ///< the start of the expected context
  };
  auto openai_half = fixture("openai_reply.json");
  openai_half.resize(openai_half.size() / 2);
  auto anthropic_half = fixture("anthropic_reply.json");
  anthropic_half.resize(anthropic_half.size() / 2);
  std::vector<row> rows{
    {openai_endpoint(), "{not json", "openai reply: body is not a JSON object: \"{not json\""},
    {openai_endpoint(), openai_half, "openai reply: body is not a JSON object: \"{"},
    {openai_endpoint(), "", "openai reply: body is not a JSON object: \"\""},
    {openai_endpoint(), "[]", "openai reply: body is not a JSON object: \"[]\""},
    {openai_endpoint(), R"({"object":"chat.completion"})", "openai reply: no choices[0]"},
    {openai_endpoint(), R"({"choices":[]})", "openai reply: no choices[0]"},
    {openai_endpoint(), R"({"choices":{"0":{}}})", "openai reply: no choices[0]"},
    {openai_endpoint(), R"({"choices":[{"index":0,"finish_reason":"stop"}]})",
     "openai reply: no choices[0].message"},
    {openai_endpoint(), R"({"choices":[{"message":{"role":"assistant","content":null}}]})",
     "openai reply: no choices[0].message.content"},
    {openai_endpoint(), R"({"choices":[{"message":{"role":"assistant","content":42}}]})",
     "openai reply: no choices[0].message.content"},
    {anthropic_endpoint(), anthropic_half, "anthropic reply: body is not a JSON object: \"{"},
    {anthropic_endpoint(), R"({"type":"message","role":"assistant"})",
     "anthropic reply: no content array"},
    {anthropic_endpoint(), R"({"type":"message","content":"Duplicate."})",
     "anthropic reply: no content array"},
    {anthropic_endpoint(), R"({"type":"message","content":[{"type":"text"}]})",
     "anthropic reply: a text block without text"},
  };
  for (const auto& r : rows) {
    INFO(to_string(r.ep.protocol) << " body: " << r.body);
    auto d = decode_response(r.ep, ticket_request(), response(200, r.body));
    CHECK(has_code(d, errc::bad_output));
    CHECK_THAT(error_of(d), StartsWith("bad_output: " + r.context));
    CHECK_FALSE(d.breaker_failure);
    CHECK_FALSE(d.rate_limited);
  }
}

// -- decode_response: the JSON requirement -------------------------------------

TEST_CASE("decode_response: json_output accepts an object with its required fields",
          "[wire]") {
  auto req = json_request();
  auto openai = reply_of(decode_response(openai_endpoint(), req,
                                         response(200, fixture("openai_reply_json.json"))));
  CHECK(json::parse(openai.text)["category"] == "billing");
  auto anthropic = reply_of(decode_response(anthropic_endpoint(), req,
                                            response(200, fixture("anthropic_reply_json.json"))));
  CHECK(json::parse(anthropic.text)["priority"] == "high");
}

TEST_CASE("decode_response: json_output rejects prose", "[wire]") {
  auto d = decode_response(openai_endpoint(), json_request(),
                           response(200, fixture("openai_reply_prose.json")));
  CHECK(has_code(d, errc::bad_output));
  CHECK(error_of(d)
        == "bad_output: not a JSON object: \"Sure! Here is the classification you asked for: "
           "the ticket i...\"");
  CHECK_FALSE(d.breaker_failure);
}

TEST_CASE("decode_response: json_output rejects a reply missing a required field", "[wire]") {
  auto req = json_request();
  req.required_fields.push_back("assignee");
  auto d = decode_response(anthropic_endpoint(), req,
                           response(200, fixture("anthropic_reply_json.json")));
  CHECK(has_code(d, errc::bad_output));
  CHECK(error_of(d) == "bad_output: missing required field 'assignee'");
  CHECK_FALSE(d.breaker_failure);
}

TEST_CASE("decode_response: json_output reply cut off at max_tokens is bad_output", "[wire]") {
  SECTION("openai finish_reason length") {
    auto d = decode_response(openai_endpoint(), json_request(),
                             response(200, fixture("openai_reply_length.json")));
    CHECK(has_code(d, errc::bad_output));
    CHECK(error_of(d) == "bad_output: reply cut off at max_tokens (256)");
    CHECK_FALSE(d.breaker_failure);
  }
  SECTION("anthropic stop_reason max_tokens") {
    auto d = decode_response(anthropic_endpoint(), json_request(),
                             response(200, fixture("anthropic_reply_max_tokens.json")));
    CHECK(has_code(d, errc::bad_output));
    CHECK(error_of(d) == "bad_output: reply cut off at max_tokens (256)");
  }
  SECTION("each protocol's own word: openai length is not anthropic's") {
    // A well-formed JSON reply from Anthropic whose stop_reason happens to
    // be OpenAI's word is not cut off.
    auto body = fixture_json("anthropic_reply_json.json");
    body["stop_reason"] = "length";
    auto d = decode_response(anthropic_endpoint(), json_request(), response(200, body.dump()));
    CHECK(static_cast<bool>(d.reply));
  }
  SECTION("without json_output a cut-off reply is still a reply") {
    auto req = ticket_request();
    auto reply = reply_of(decode_response(openai_endpoint(), req,
                                          response(200, fixture("openai_reply_length.json"))));
    CHECK(reply.text == R"({"category": "billing", "priority": "hi)");
    reply = reply_of(decode_response(anthropic_endpoint(), req,
                                     response(200, fixture("anthropic_reply_max_tokens.json"))));
    CHECK(reply.completion_tokens == 8);
  }
}

// -- decode_response: the error taxonomy --------------------------------------

TEST_CASE("decode_response: error statuses follow the taxonomy table", "[wire]") {
  struct row {
    long status;
    errc code;
    bool breaker_failure;
    bool rate_limited;
  };
  const std::vector<row> rows{
    // 408, 5xx, 529: the provider is failing.
    {408, errc::llm_unavailable, true, false},
    {500, errc::llm_unavailable, true, false},
    {502, errc::llm_unavailable, true, false},
    {503, errc::llm_unavailable, true, false},
    {504, errc::llm_unavailable, true, false},
    {529, errc::llm_unavailable, true, false},
    {599, errc::llm_unavailable, true, false},
    // 429: failing, and hold the lane.
    {429, errc::llm_unavailable, true, true},
    // Other 4xx: the request is refused and would be again.
    {400, errc::llm_rejected, false, false},
    {401, errc::llm_rejected, false, false},
    {403, errc::llm_rejected, false, false},
    {404, errc::llm_rejected, false, false},
    {409, errc::llm_rejected, false, false},
    {413, errc::llm_rejected, false, false},
    {418, errc::llm_rejected, false, false},
    {422, errc::llm_rejected, false, false},
    {499, errc::llm_rejected, false, false},
    // Statuses no provider should send: treat as a failing provider.
    {0, errc::llm_unavailable, true, false},
    {100, errc::llm_unavailable, true, false},
    {199, errc::llm_unavailable, true, false},
    {301, errc::llm_unavailable, true, false},
    {304, errc::llm_unavailable, true, false},
    {600, errc::llm_unavailable, true, false},
  };
  for (auto ep : {openai_endpoint(), anthropic_endpoint()}) {
    for (const auto& r : rows) {
      INFO(to_string(ep.protocol) << " status " << r.status);
      // Every row carries a Retry-After; only a 429 may act on it.
      auto d = decode_response(ep, ticket_request(),
                               response(r.status, "{}", {{"retry-after", "7"}}));
      CHECK(has_code(d, r.code));
      CHECK(d.breaker_failure == r.breaker_failure);
      CHECK(d.rate_limited == r.rate_limited);
      CHECK(d.retry_after == (r.rate_limited ? 7000ms : 0ms));
      CHECK_THAT(error_of(d), Contains(std::string{to_string(ep.protocol)} + " "
                                       + std::to_string(r.status) + ": "));
    }
  }
}

TEST_CASE("decode_response: a 429 holds for its Retry-After", "[wire]") {
  auto body = fixture("openai_error_429.json");
  auto hold = [&](std::map<std::string, std::string> headers) {
    return decode_response(openai_endpoint(), ticket_request(),
                           response(429, body, std::move(headers)))
      .retry_after;
  };
  CHECK(hold({{"retry-after", "20"}}) == 20s);
  CHECK(hold({{"retry-after", "0.5"}}) == 500ms);
  CHECK(hold({}) == 0ms);
  CHECK(hold({{"retry-after", "Wed, 21 Oct 2015 07:28:00 GMT"}}) == 0ms);
  auto d = decode_response(openai_endpoint(), ticket_request(), response(429, body));
  CHECK_THAT(error_of(d), StartsWith("llm_unavailable: openai 429: Rate limit reached for "
                                     "gpt-4o-mini"));
}

TEST_CASE("decode_response: error contexts quote the provider's message", "[wire]") {
  auto req = ticket_request();
  SECTION("openai error.message") {
    auto d = decode_response(openai_endpoint(), req,
                             response(401, fixture("openai_error_401.json")));
    CHECK(error_of(d)
          == "llm_rejected: openai 401: Incorrect API key provided: sk-SECRE*****-123. You can "
             "find your API key at https://platform.openai.com/account/api-keys.");
  }
  SECTION("openai context length exceeded") {
    auto d = decode_response(openai_endpoint(), req,
                             response(400, fixture("openai_error_400.json")));
    CHECK(has_code(d, errc::llm_rejected));
    CHECK_THAT(error_of(d), StartsWith("llm_rejected: openai 400: This model's maximum context "
                                       "length is 128000 tokens."));
  }
  SECTION("anthropic error.message") {
    auto d = decode_response(anthropic_endpoint(), req,
                             response(529, fixture("anthropic_error_529.json")));
    CHECK(error_of(d) == "llm_unavailable: anthropic 529: Overloaded");
    d = decode_response(anthropic_endpoint(), req,
                        response(401, fixture("anthropic_error_401.json")));
    CHECK(error_of(d) == "llm_rejected: anthropic 401: invalid x-api-key");
  }
  SECTION("no error.message: the raw body, control characters as spaces") {
    auto d = decode_response(openai_endpoint(), req, response(502, fixture("proxy_502.html")));
    auto text = error_of(d);
    CHECK_THAT(text, StartsWith("llm_unavailable: openai 502: <html>  <head><title>502 Bad "
                                "Gateway</title></head>"));
    CHECK(text.find_first_of("\r\n\t") == std::string::npos);
    d = decode_response(openai_endpoint(), req, response(404, R"({"detail":"Not Found"})"));
    CHECK(error_of(d) == R"(llm_rejected: openai 404: {"detail":"Not Found"})");
  }
  SECTION("an empty body says so") {
    auto d = decode_response(anthropic_endpoint(), req, response(503, ""));
    CHECK(error_of(d) == "llm_unavailable: anthropic 503: (empty body)");
  }
  SECTION("messages and bodies are cut to 200 bytes") {
    const std::string prefix = "llm_unavailable: openai 500: ";
    json body = {{"error", {{"message", std::string(500, 'm')}}}};
    auto d = decode_response(openai_endpoint(), req, response(500, body.dump()));
    CHECK(error_of(d) == prefix + std::string(200, 'm'));
    d = decode_response(openai_endpoint(), req, response(500, std::string(1000, 'b')));
    CHECK(error_of(d) == prefix + std::string(200, 'b'));
  }
  SECTION("the cut does not split a UTF-8 character") {
    // 199 bytes, then a two-byte character straddling the limit.
    json body = {{"error", {{"message", std::string(199, 'm') + "\xC3\xA9 and more"}}}};
    auto d = decode_response(openai_endpoint(), req, response(500, body.dump()));
    CHECK(error_of(d) == "llm_unavailable: openai 500: " + std::string(199, 'm'));
  }
}

TEST_CASE("decode_response: error contexts never contain the api key", "[wire]") {
  // The provider echoing the key back is what makes this worth testing:
  // some proxies quote the credential they refused.
  const std::vector<std::string> bodies{
    "{}",
    R"({"error":{"message":"Invalid API key: sk-SECRET-123"}})",
    R"({"type":"error","error":{"type":"authentication_error","message":"bad key sk-SECRET-123"}})",
    "Unauthorized: Bearer sk-SECRET-123",
    "x-api-key: sk-SECRET-123 " + std::string(300, '.') + " sk-SECRET-123",
    std::string(190, '.') + "sk-SECRET-123",
    json{{"error", {{"message", std::string(190, '.') + "sk-SECRET-123"}}}}.dump(),
  };
  const std::vector<long> statuses{200, 401, 403, 408, 429, 500, 529, 302, 0};
  for (auto ep : {openai_endpoint(), anthropic_endpoint()}) {
    auto sent = encode_request(ep, json_request());
    size_t carrying = 0;
    for (const auto& h : sent.headers)
      carrying += h.second.find(secret) != std::string::npos ? 1 : 0;
    REQUIRE(carrying == 1);
    for (const auto& body : bodies) {
      for (long status : statuses) {
        INFO(to_string(ep.protocol) << " status " << status << " body: " << body);
        auto d = decode_response(ep, json_request(), response(status, body));
        auto text = error_of(d);
        CHECK(text.find(secret) == std::string::npos);
        // Not even the start of it, when a cut falls inside the key.
        CHECK(text.find("sk-SECRET") == std::string::npos);
      }
    }
  }
  auto d = decode_response(openai_endpoint(), ticket_request(), response(401, bodies[1]));
  CHECK(error_of(d) == "llm_rejected: openai 401: Invalid API key: [redacted]");
}

TEST_CASE("decode_response: a short key that occurs in the mask is masked once", "[wire]") {
  // Local servers take any key ("x", "none"); masking must not loop on a key
  // that the mask itself contains.
  auto ep = openai_endpoint("red");
  auto d = decode_response(ep, ticket_request(),
                           response(401, R"({"error":{"message":"bad key red, red"}})"));
  CHECK(error_of(d) == "llm_rejected: openai 401: bad key [redacted], [redacted]");
}

// -- check_output -------------------------------------------------------------

TEST_CASE("check_output: only json_output requests are checked", "[wire]") {
  llm_request req;
  req.required_fields = {"a"};
  CHECK(check_output(req, "plain prose").empty());
  CHECK(check_output(req, "").empty());
}

TEST_CASE("check_output: the text must be a JSON object", "[wire]") {
  llm_request req;
  req.json_output = true;
  CHECK(check_output(req, R"({"a": 1})").empty());
  CHECK(check_output(req, " {\"a\": 1}\n").empty());
  CHECK(check_output(req, "[1, 2]") == R"(not a JSON object: "[1, 2]")");
  CHECK(check_output(req, "42") == R"(not a JSON object: "42")");
  CHECK(check_output(req, "") == R"(not a JSON object: "")");
  CHECK(check_output(req, R"({"a": 1)") == R"(not a JSON object: "{"a": 1")");
  // Strict: a fenced object is not accepted (JSON modes do not fence).
  CHECK(check_output(req, "```json\n{\"a\": 1}\n```")
        == "not a JSON object: \"```json {\"a\": 1} ```\"");
  CHECK(check_output(req, std::string(100, 'x'))
        == "not a JSON object: \"" + std::string(60, 'x') + "...\"");
}

TEST_CASE("check_output: every missing required field is named", "[wire]") {
  llm_request req;
  req.json_output = true;
  req.required_fields = {"a", "b", "c"};
  CHECK(check_output(req, R"({"a": 1, "b": null, "c": []})").empty());
  CHECK(check_output(req, R"({"a": 1, "b": 2})") == "missing required field 'c'");
  CHECK(check_output(req, R"({"a": 1})")
        == "missing required field 'b'; missing required field 'c'");
  // Only top-level fields count.
  CHECK(check_output(req, R"({"x": {"a": 1, "b": 2, "c": 3}})")
        == "missing required field 'a'; missing required field 'b'; "
           "missing required field 'c'");
}

// -- parse_retry_after --------------------------------------------------------

TEST_CASE("parse_retry_after: seconds only, capped at an hour", "[wire]") {
  const std::vector<std::pair<std::string, std::chrono::milliseconds>> table{
    {"2", 2000ms},
    {"0.5", 500ms},
    {"  3 ", 3000ms},
    {"\t4\t", 4000ms},
    {"0", 0ms},
    {"1.25", 1250ms},
    {"1.0009", 1000ms},
    {".5", 500ms},
    {"3600", 3600000ms},
    {"3601", 3600000ms},
    {"3600.5", 3600000ms},
    {"99999999999999999999999", 3600000ms},
    {"-1", 0ms},
    {"+1", 0ms},
    {"", 0ms},
    {"   ", 0ms},
    {".", 0ms},
    {"1.2.3", 0ms},
    {"2 s", 0ms},
    {"abc", 0ms},
    {"1e400", 0ms},
    {"inf", 0ms},
    {"nan", 0ms},
    {"0x10", 0ms},
    {"Wed, 21 Oct 2015 07:28:00 GMT", 0ms},
  };
  for (const auto& [value, expected] : table) {
    INFO("Retry-After: '" << value << "'");
    CHECK(parse_retry_after(value) == expected);
  }
}

TEST_CASE("to_string: wire protocols", "[wire]") {
  CHECK(std::string{to_string(wire_protocol::scripted)} == "scripted");
  CHECK(std::string{to_string(wire_protocol::openai)} == "openai");
  CHECK(std::string{to_string(wire_protocol::anthropic)} == "anthropic");
}
