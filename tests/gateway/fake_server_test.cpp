// The fake model server's own contract, seen from a plain HTTP client
// (httplib's): the success and error bodies of both protocols, the response
// queue, each fault as a client meets it, holding and releasing replies, and
// what it records. Gateway tests build on these promises.
#include <algorithm>
#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include "support/fake_model_server.hpp"

namespace {

using troupe::testing::fake_model_server;
using troupe::testing::fake_response;
using fault = fake_response::fault;
using json = nlohmann::json;

const std::string chat = "/v1/chat/completions";
const std::string messages = "/v1/messages";
const std::string request_body =
    R"({"model":"gpt-test","messages":[{"role":"user","content":"hi"}]})";

/// POSTs `body` to `path` on `server` and waits for the reply.
httplib::Result post(const fake_model_server& server, const std::string& path,
                     const std::string& body = request_body, const httplib::Headers& headers = {}) {
  httplib::Client client{"127.0.0.1", server.port()};
  return client.Post(path, headers, body, "application/json");
}

/// post() on a thread of its own; `server` must outlive the reply.
std::future<httplib::Result> post_async(const fake_model_server& server, const std::string& path) {
  return std::async(std::launch::async, [&server, path] { return post(server, path); });
}

/// Whether the request behind `reply` has returned, without waiting.
bool returned(const std::future<httplib::Result>& reply) {
  return reply.wait_for(std::chrono::milliseconds{0}) == std::future_status::ready;
}

json body_of(const httplib::Result& r) {
  return json::parse(r->body);
}

fake_response with_status(int status, const std::string& message = "fake error") {
  fake_response r;
  r.status = status;
  r.error_message = message;
  return r;
}

fake_response with_fault(fault kind) {
  fake_response r;
  r.kind = kind;
  return r;
}

fake_response held() {
  fake_response r;
  r.hold = true;
  return r;
}

/// What a client saw of one reply, read with httplib's response and content
/// callbacks so that a body that ends early still shows.
struct partial_reply {
  httplib::Error error = httplib::Error::Success;
  int status = -1; ///< -1: no status line arrived
  std::string content_length;
  std::string body;
};

partial_reply post_partially(const fake_model_server& server, const std::string& path) {
  partial_reply out;
  httplib::Request req;
  req.method = "POST";
  req.path = path;
  req.body = request_body;
  req.set_header("Content-Type", "application/json");
  req.response_handler = [&](const httplib::Response& res) {
    out.status = res.status;
    out.content_length = res.get_header_value("Content-Length");
    return true;
  };
  req.content_receiver = [&](const char* data, size_t n, uint64_t, uint64_t) {
    out.body.append(data, n);
    return true;
  };
  httplib::Client client{"127.0.0.1", server.port()};
  out.error = client.send(req).error();
  return out;
}

} // namespace

TEST_CASE("fake server answers OpenAI chat completions with the success body", "[fake_server]") {
  fake_model_server server;
  CHECK(server.base_url() == "http://127.0.0.1:" + std::to_string(server.port()) + "/v1");

  auto res = post(server, chat);
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  auto body = body_of(res);
  CHECK(body["id"] == "chatcmpl-fake-1");
  CHECK(body["object"] == "chat.completion");
  CHECK(body["created"] == 1700000000);
  CHECK(body["model"] == "gpt-test"); // the request's
  REQUIRE(body["choices"].size() == 1);
  CHECK(body["choices"][0]["index"] == 0);
  CHECK(body["choices"][0]["message"] == json{{"role", "assistant"}, {"content", R"({"ok": true})"}});
  CHECK(body["choices"][0]["finish_reason"] == "stop");
  CHECK(body["usage"] == json{{"prompt_tokens", 11}, {"completion_tokens", 7}, {"total_tokens", 18}});

  fake_response r;
  r.text = "hello";
  r.prompt_tokens = 3;
  r.completion_tokens = 4;
  r.finish_reason = "length";
  r.model = "gpt-named";
  server.push(r);
  body = body_of(post(server, chat));
  CHECK(body["id"] == "chatcmpl-fake-2");
  CHECK(body["model"] == "gpt-named");
  CHECK(body["choices"][0]["message"]["content"] == "hello");
  CHECK(body["choices"][0]["finish_reason"] == "length");
  CHECK(body["usage"] == json{{"prompt_tokens", 3}, {"completion_tokens", 4}, {"total_tokens", 7}});
}

TEST_CASE("fake server answers Anthropic messages and maps the finish reason", "[fake_server]") {
  fake_model_server server;
  auto res = post(server, messages, R"({"model":"claude-test","max_tokens":64})");
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  auto body = body_of(res);
  CHECK(body["id"] == "msg_fake_1");
  CHECK(body["type"] == "message");
  CHECK(body["role"] == "assistant");
  CHECK(body["model"] == "claude-test");
  CHECK(body["content"] == json::array({{{"type", "text"}, {"text", R"({"ok": true})"}}}));
  CHECK(body["stop_reason"] == "end_turn");
  CHECK(body["stop_sequence"].is_null());
  CHECK(body["usage"] == json{{"input_tokens", 11}, {"output_tokens", 7}});

  for (auto [finish, stop] : std::vector<std::pair<std::string, std::string>>{
           {"length", "max_tokens"}, {"tool_use", "tool_use"}}) {
    fake_response r;
    r.finish_reason = finish;
    server.push(r);
    CHECK(body_of(post(server, messages))["stop_reason"] == stop);
  }
}

TEST_CASE("fake server takes scripted responses in order then the default", "[fake_server]") {
  fake_model_server server;
  fake_response first, second, fallback;
  first.text = "first";
  second.text = "second";
  fallback.text = "fallback";
  server.push(first);
  server.push(second, 2);
  server.set_default(fallback);

  std::vector<std::string> texts;
  for (int i = 0; i < 5; ++i)
    texts.push_back(body_of(post(server, chat))["choices"][0]["message"]["content"]);
  CHECK(texts == std::vector<std::string>{"first", "second", "second", "fallback", "fallback"});
}

TEST_CASE("fake server answers 429 with a Retry-After header", "[fake_server]") {
  fake_model_server server;
  auto limited = with_status(429, "slow down");
  limited.retry_after = "7";
  server.push(limited, 2);

  auto res = post(server, chat);
  REQUIRE(res);
  CHECK(res->status == 429);
  CHECK(res->get_header_value("Retry-After") == "7");
  CHECK(body_of(res) == json::parse(R"({"error":{"message":"slow down",
      "type":"invalid_request_error","param":null,"code":null}})"));

  res = post(server, messages);
  REQUIRE(res);
  CHECK(res->status == 429);
  CHECK(res->get_header_value("Retry-After") == "7");
  CHECK(body_of(res) == json::parse(R"({"type":"error",
      "error":{"type":"rate_limit_error","message":"slow down"}})"));

  res = post(server, chat); // the queue is empty: no Retry-After on the default
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK_FALSE(res->has_header("Retry-After"));
}

TEST_CASE("fake server renders a 503 in the error body of each protocol", "[fake_server]") {
  fake_model_server server;
  server.push(with_status(503, "try later"), 2);

  auto res = post(server, chat);
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(res->get_header_value("Content-Type") == "application/json");
  CHECK_FALSE(res->has_header("Retry-After"));
  CHECK(body_of(res) == json::parse(R"({"error":{"message":"try later",
      "type":"server_error","param":null,"code":null}})"));

  res = post(server, messages);
  REQUIRE(res);
  CHECK(res->status == 503);
  CHECK(body_of(res) == json::parse(R"({"type":"error",
      "error":{"type":"api_error","message":"try later"}})"));
}

TEST_CASE("fake server names Anthropic error types by status", "[fake_server]") {
  fake_model_server server;
  std::vector<std::pair<int, std::string>> table{{400, "invalid_request_error"},
                                                 {401, "authentication_error"},
                                                 {404, "invalid_request_error"},
                                                 {429, "rate_limit_error"},
                                                 {500, "api_error"},
                                                 {529, "overloaded_error"}};
  for (const auto& [status, type] : table) {
    server.push(with_status(status));
    auto res = post(server, messages);
    REQUIRE(res);
    CHECK(res->status == status);
    CHECK(body_of(res)["error"]["type"] == type);
  }
}

TEST_CASE("fake server sends a malformed body", "[fake_server]") {
  fake_model_server server;
  server.push(with_fault(fault::malformed), 2);
  for (const auto& path : {chat, messages}) {
    auto res = post(server, path);
    REQUIRE(res);
    CHECK(res->status == 200);
    CHECK(res->body == "{not json");
    CHECK_FALSE(json::accept(res->body));
  }
}

TEST_CASE("fake server sends a truncated body whose length matches", "[fake_server]") {
  fake_model_server server;
  auto whole = post(server, chat); // request 1; the truncated one is request 2
  server.push(with_fault(fault::truncated));
  auto cut = post_partially(server, chat);

  REQUIRE(whole);
  CHECK(cut.error == httplib::Error::Success); // the body matched its Content-Length
  CHECK(cut.status == 200);
  CHECK(cut.content_length == std::to_string(cut.body.size()));
  CHECK(cut.body.size() == whole->body.size() / 2);
  CHECK_THAT(cut.body, Catch::StartsWith(R"({"id":"chatcmpl-fake-2","object":"chat.completion")"));
  CHECK_FALSE(json::accept(cut.body));
}

TEST_CASE("fake server cut off announces the whole body and sends half", "[fake_server]") {
  fake_model_server server;
  auto whole = post(server, chat);
  server.push(with_fault(fault::cut_off));
  auto cut = post_partially(server, chat);

  REQUIRE(whole);
  CHECK(cut.error == httplib::Error::Read); // the connection closed mid-body
  CHECK(cut.status == 200);
  CHECK(cut.content_length == std::to_string(whole->body.size()));
  CHECK(cut.body.size() == whole->body.size() / 2);
  CHECK_THAT(cut.body, Catch::StartsWith(R"({"id":"chatcmpl-fake-2")"));
}

TEST_CASE("fake server reset closes the connection before any response", "[fake_server]") {
  fake_model_server server;
  server.push(with_fault(fault::reset), 2);
  for (const auto& path : {chat, messages}) {
    auto seen = post_partially(server, path);
    CHECK(seen.error == httplib::Error::Read);
    CHECK(seen.status == -1); // not even a status line
    CHECK(seen.body.empty());
  }
  CHECK(server.count() == 2);
  auto res = post(server, chat); // the server carries on
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("fake server holds a reply until release", "[fake_server]") {
  fake_model_server server;
  server.push(held());
  auto reply = post_async(server, chat);

  REQUIRE(server.wait_for(1));
  CHECK_FALSE(returned(reply));
  server.release();
  auto res = reply.get();
  REQUIRE(res);
  CHECK(res->status == 200);
  CHECK(body_of(res)["id"] == "chatcmpl-fake-1");
}

TEST_CASE("fake server lets a reply held after release go at once", "[fake_server]") {
  fake_model_server server;
  server.release();
  server.push(held());
  auto res = post(server, chat);
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("fake server destructor releases a held request in flight", "[fake_server]") {
  auto server = std::make_unique<fake_model_server>();
  server->push(held());
  auto reply = post_async(*server, chat);
  REQUIRE(server->wait_for(1));
  CHECK_FALSE(returned(reply));

  auto start = std::chrono::steady_clock::now();
  server.reset();
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds{1});
  auto res = reply.get();
  REQUIRE(res);
  CHECK(res->status == 200);
}

TEST_CASE("fake server records the path, headers and body of each request", "[fake_server]") {
  fake_model_server server;
  post(server, chat, request_body, {{"Authorization", "Bearer sk-test"}, {"X-Trace", "t-1"}});
  post(server, messages, R"({"model":"claude-test"})",
       {{"X-Api-Key", "ak-test"}, {"Anthropic-Version", "2023-06-01"}});

  auto seen = server.received();
  REQUIRE(seen.size() == 2);
  CHECK(server.count() == 2);
  CHECK(seen[0].path == chat);
  CHECK(seen[0].body == request_body);
  CHECK(seen[0].headers.at("authorization") == "Bearer sk-test");
  CHECK(seen[0].headers.at("x-trace") == "t-1");
  CHECK(seen[0].headers.at("content-type") == "application/json");
  CHECK(seen[0].headers.count("remote_addr") == 0); // httplib's, not the client's
  CHECK(seen[1].path == messages);
  CHECK(seen[1].body == R"({"model":"claude-test"})");
  CHECK(seen[1].headers.at("x-api-key") == "ak-test");
  CHECK(seen[1].headers.at("anthropic-version") == "2023-06-01");
}

TEST_CASE("fake server answers an unknown path with 404", "[fake_server]") {
  fake_model_server server;
  server.push(with_status(503));
  auto res = post(server, "/v1/completions");
  REQUIRE(res);
  CHECK(res->status == 404);
  CHECK(body_of(res)["error"]["type"] == "invalid_request_error");
  CHECK(body_of(res)["error"]["message"] == "no such path: POST /v1/completions");
  REQUIRE(server.count() == 1); // recorded, but the queue is untouched
  CHECK(server.received()[0].path == "/v1/completions");
  CHECK(post(server, chat)->status == 503);
}

TEST_CASE("fake server holds 32 concurrent requests and releases them all", "[fake_server]") {
  constexpr size_t n = 32;
  fake_model_server server;
  server.set_default(held());
  std::vector<std::future<httplib::Result>> replies;
  for (size_t i = 0; i < n; ++i)
    replies.push_back(post_async(server, i % 2 == 0 ? chat : messages));

  REQUIRE(server.wait_for(n));
  for (const auto& reply : replies)
    CHECK_FALSE(returned(reply));
  server.release();
  std::vector<std::string> ids;
  for (auto& reply : replies) {
    auto res = reply.get();
    REQUIRE(res);
    CHECK(res->status == 200);
    ids.push_back(body_of(res)["id"]);
  }
  std::sort(ids.begin(), ids.end());
  CHECK(std::unique(ids.begin(), ids.end()) == ids.end());
}
