// Reading a journal file or asking a node (see source.hpp).
#include "source.hpp"

#include <cctype>
#include <cstdlib>
#include <ostream>

#include <httplib.h>

#include "common.hpp"
#include "troupe/errors.hpp"

namespace troupe::cli {

using json = nlohmann::json;

namespace {

/// The variable `troupe serve` reads its token from, and its clients too.
constexpr const char* token_variable = "TROUPE_ADMIN_TOKEN";

} // namespace

answer failed(std::string message, int code) {
  answer a;
  a.fault = std::make_unique<problem>(problem{std::move(message), code});
  return a;
}

answer ok(json body) {
  answer a;
  a.body = std::move(body);
  return a;
}

answer ask_node(const std::string& node, const std::string& method, const std::string& path,
                const json& body, int read_timeout_s) {
  auto colon = node.rfind(':');
  int port = 0;
  if (colon == std::string::npos || colon == 0
      || (port = std::atoi(node.c_str() + colon + 1)) <= 0 || port > 65535)
    return failed("--node: expected host:port, got '" + node + "'", exit_usage);
  const char* token = std::getenv(token_variable);
  if (token == nullptr || *token == '\0')
    return failed(std::string{token_variable} + " is not set: export the node's admin token "
                    + "(the one `troupe serve` was started with)",
                  exit_usage);
  httplib::Client client{node.substr(0, colon), port};
  client.set_bearer_token_auth(token);
  client.set_connection_timeout(5);
  client.set_read_timeout(read_timeout_s);
  auto res = method == "POST"
               ? client.Post(path, body.is_null() ? "{}" : body.dump(), "application/json")
               : client.Get(path);
  if (!res)
    return failed("cannot reach node " + node + ": " + httplib::to_string(res.error()));
  auto parsed = json::parse(res->body, nullptr, false);
  if (res->status != 200) {
    std::string why = !parsed.is_discarded() && parsed.is_object() && parsed.contains("message")
                        ? parsed["message"].get<std::string>()
                        : res->body;
    if (res->status == 401)
      why = "the node refused the token in " + std::string{token_variable};
    return failed("node " + node + ": " + why + " (HTTP " + std::to_string(res->status) + ")");
  }
  if (parsed.is_discarded())
    return failed("node " + node + " answered " + path + " with something that is not JSON");
  return ok(std::move(parsed));
}

std::string escaped(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

answer from_journal(const std::string& path,
                    const std::function<answer(journal_store&)>& read) {
  auto store = open_existing_journal(path);
  if (!store)
    return failed(describe(store.error()));
  return read(**store);
}

int report(const char* cmd, const answer& a, std::ostream& err) {
  err << "troupe " << cmd << ": " << a.fault->message << '\n';
  return a.fault->code;
}

std::string text(const json& j, const char* key) {
  auto i = j.find(key);
  if (i == j.end() || i->is_null())
    return {};
  return i->is_string() ? i->get<std::string>() : i->dump();
}

std::string event_detail(const json& e) {
  auto d = e.value("data", json::object());
  std::string s;
  if (d.contains("node"))
    s += text(d, "node");
  if (d.contains("attempt"))
    s += "#" + text(d, "attempt");
  for (const char* key : {"label", "kind", "gate", "decision"})
    if (d.contains(key))
      s += (s.empty() ? "" : " ") + text(d, key);
  if (d.contains("start_node") && !text(d, "start_node").empty())
    s += (s.empty() ? "at " : " at ") + text(d, "start_node");
  if (d.contains("forked_from") && !text(d, "forked_from").empty())
    s += " forked from " + text(d, "forked_from") + " #" + text(d, "forked_at");
  if (d.contains("model") && !text(d, "model").empty())
    s += " model " + text(d, "model");
  if (d.contains("by") && !text(d, "by").empty())
    s += " by " + text(d, "by");
  if (d.contains("reason") && !text(d, "reason").empty())
    s += ": " + text(d, "reason");
  return s;
}

} // namespace troupe::cli
