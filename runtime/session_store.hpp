// Per-user session context (step_context::session_get / session_put): small
// JSON values by key, shared by the agents of one user's workflows, never
// visible to another user's. Each value expires `ttl` after its last write.
// In memory: it does not survive the process. Thread-safe: agents on any
// runner call it.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

#include "troupe/seams.hpp"

namespace troupe {

class session_store {
public:
  /// `max_bytes`: what one user's values may take in all (their keys and
  /// JSON text), so one user cannot exhaust memory.
  session_store(std::shared_ptr<clock_source> clock, std::chrono::nanoseconds ttl,
                size_t max_bytes);

  /// The value under `key` for `user`, or null if there is none (never
  /// written, or expired).
  nlohmann::json get(const std::string& user, const std::string& key);
  /// Sets (or, with null, removes) the value under `key` for `user`.
  /// invalid_input for an empty user or key, or a value that would take the
  /// user past max_bytes (nothing changes then).
  caf::error put(const std::string& user, const std::string& key, const nlohmann::json& value);
  /// Users with at least one live value (expired ones are dropped first).
  size_t users();

private:
  struct entry {
    nlohmann::json value;
    size_t bytes = 0;
    int64_t expires_ns = 0;
  };
  struct user_context {
    std::map<std::string, entry> values;
    size_t bytes = 0;
  };

  int64_t now() const { return clock_->now().count(); }
  void expire(user_context& u, int64_t now);
  void sweep(int64_t now);

  std::shared_ptr<clock_source> clock_;
  int64_t ttl_ns_;
  size_t max_bytes_;
  std::mutex mu_;
  std::unordered_map<std::string, user_context> users_;
  uint64_t writes_ = 0; ///< every so many, expired users are swept
};

} // namespace troupe
