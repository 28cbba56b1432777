// Where the workflow commands (`troupe ls`, `show`, `tail`, `replay`, `fork`,
// ...) get their answers: a journal file that no runtime holds, read
// through the store's API, or a running node's admin API (the token from
// TROUPE_ADMIN_TOKEN). Both give the admin API's JSON shapes
// (runtime/admin/admin_json.hpp), so one printer serves both.
#pragma once

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli.hpp"
#include "troupe/journal.hpp"

namespace troupe::cli {

/// Where to look: exactly one of the two is set.
struct inspect_source {
  std::string journal; ///< a SQLite journal file no runtime holds
  std::string node;    ///< "host:port" of a `troupe serve` node
};

/// Why a command could not get its answer: the message, and the exit code
/// (usage: nothing was tried; failed: the source said no or was not there).
struct problem {
  std::string message;
  int code = exit_failed;
};

/// What a source answered: JSON, or why not.
struct answer {
  nlohmann::json body;
  std::unique_ptr<problem> fault;
  explicit operator bool() const { return !fault; }
};

answer failed(std::string message, int code = exit_failed);
answer ok(nlohmann::json body);

/// One request to a node's admin API. The node's error body ({"error",
/// "message"}), a refused token and a node that is not there become one
/// line each. `read_timeout_s` bounds the wait for the answer.
answer ask_node(const std::string& node, const std::string& method, const std::string& path,
                const nlohmann::json& body = nullptr, int read_timeout_s = 30);

/// `s` as one URL path segment or query value: RFC 3986 unreserved bytes
/// as they are, every other byte percent-encoded.
std::string escaped(const std::string& s);

/// Opens the journal file and reads it with `read`.
answer from_journal(const std::string& path, const std::function<answer(journal_store&)>& read);

/// Prints "troupe <cmd>: <why>" and returns the exit code.
int report(const char* cmd, const answer& a, std::ostream& err);

/// A field as text: strings as they are, other JSON dumped, absent "".
std::string text(const nlohmann::json& j, const char* key);

/// A short description of one event of a history (admin::history_json's
/// "events"): its node, attempt, label or kind, and who.
std::string event_detail(const nlohmann::json& e);

} // namespace troupe::cli
