// Per-user session context (see the header).
#include "runtime/session_store.hpp"

#include "troupe/errors.hpp"

namespace troupe {

namespace {

/// Writes between two sweeps of every user (each put also expires its own
/// user's values): memory held by users who never come back is bounded.
constexpr uint64_t sweep_every = 1024;

} // namespace

session_store::session_store(std::shared_ptr<clock_source> clock, std::chrono::nanoseconds ttl,
                             size_t max_bytes)
  : clock_(std::move(clock)), ttl_ns_(ttl.count()), max_bytes_(max_bytes) {}

void session_store::expire(user_context& u, int64_t now) {
  for (auto i = u.values.begin(); i != u.values.end();) {
    if (i->second.expires_ns <= now) {
      u.bytes -= i->second.bytes;
      i = u.values.erase(i);
    } else {
      ++i;
    }
  }
}

void session_store::sweep(int64_t now) {
  for (auto i = users_.begin(); i != users_.end();) {
    expire(i->second, now);
    i = i->second.values.empty() ? users_.erase(i) : std::next(i);
  }
}

nlohmann::json session_store::get(const std::string& user, const std::string& key) {
  std::lock_guard<std::mutex> guard{mu_};
  auto u = users_.find(user);
  if (u == users_.end())
    return nullptr;
  auto v = u->second.values.find(key);
  if (v == u->second.values.end() || v->second.expires_ns <= now())
    return nullptr;
  return v->second.value;
}

caf::error session_store::put(const std::string& user, const std::string& key,
                              const nlohmann::json& value) {
  if (user.empty())
    return make_error(errc::invalid_input,
                      "session context: the workflow has no user (start it with one)");
  if (key.empty())
    return make_error(errc::invalid_input, "session context: empty key");
  size_t bytes = 0;
  if (!value.is_null()) {
    try {
      bytes = key.size() + value.dump().size();
    } catch (const nlohmann::json::exception& e) {
      return make_error(errc::invalid_input, "session context: key '" + key + "': " + e.what());
    }
  }
  std::lock_guard<std::mutex> guard{mu_};
  auto t = now();
  if (++writes_ % sweep_every == 0)
    sweep(t);
  auto& u = users_[user];
  expire(u, t);
  auto old = u.values.find(key);
  size_t freed = old == u.values.end() ? 0 : old->second.bytes;
  if (u.bytes - freed + bytes > max_bytes_) {
    if (u.values.empty())
      users_.erase(user);
    return make_error(errc::invalid_input,
                      "session context of user '" + user + "': key '" + key + "' ("
                        + std::to_string(bytes) + " bytes) would exceed its "
                        + std::to_string(max_bytes_) + " bytes");
  }
  u.bytes -= freed;
  if (value.is_null()) {
    if (old != u.values.end())
      u.values.erase(old);
    if (u.values.empty())
      users_.erase(user);
    return {};
  }
  u.bytes += bytes;
  u.values[key] = entry{value, bytes, t + ttl_ns_};
  return {};
}

size_t session_store::users() {
  std::lock_guard<std::mutex> guard{mu_};
  sweep(now());
  return users_.size();
}

} // namespace troupe
