// `troupe tail | replay | fork`: a workflow's journal over time. tail prints
// events as they are committed, replay shows the state right after any
// event (time travel), fork starts a new workflow from such a past state,
// optionally on another model, and shows how its outcome differs from the
// original's. Each works on a running node (--node); tail without -f and
// replay also on a journal file no runtime holds.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "source.hpp"

namespace troupe::cli {

/// What `troupe tail` was told.
struct tail_options {
  std::string id;        ///< one workflow; "" every workflow (needs follow)
  bool follow = false;   ///< -f: keep printing events as they are committed
  size_t last = 10;      ///< with an id: print its last this many events first
  size_t count = 0;      ///< following: stop after this many new events (0: never)
  bool json = false;     ///< one JSON object per event
  /// Following: how long one long poll of the node may wait.
  std::chrono::milliseconds poll{25000};
  /// Called once the tail has taken its start marks and begins to follow
  /// (tests start what it should see after that).
  std::function<void()> on_following;
};

int tail(const inspect_source& src, const tail_options& opt, std::ostream& out,
         std::ostream& err);

/// The workflow right after its event `seq`.
int replay(const inspect_source& src, const std::string& id, uint64_t seq, bool json,
           std::ostream& out, std::ostream& err);

/// What `troupe fork` was told.
struct fork_request {
  std::string id;
  uint64_t at = 0;
  std::string model;  ///< "" the agents' own
  std::string key;    ///< idempotency key, "" none
  bool wait = false;  ///< follow the fork until it settles, then diff it with the original
  std::chrono::seconds timeout{60}; ///< how long --wait waits
  bool json = false;
};

int fork_workflow(const std::string& node, const fork_request& req, std::ostream& out,
         std::ostream& err);

/// One difference between two JSON documents: the JSON pointer of a leaf
/// and its value in each (null where it is absent: `in_a`/`in_b` say).
struct json_change {
  std::string path;
  nlohmann::json a;
  nlohmann::json b;
  bool in_a = true;
  bool in_b = true;
};

/// The leaves that differ between `a` and `b`, by path (json::flatten).
std::vector<json_change> diff_json(const nlohmann::json& a, const nlohmann::json& b);

} // namespace troupe::cli
