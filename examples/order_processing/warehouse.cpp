// The warehouse (see warehouse.hpp).
#include "order_processing/warehouse.hpp"

#include <cstdio>

#include "troupe/hash.hpp"

namespace troupe::examples {

nlohmann::json warehouse::record(const std::string& key, const std::string& order,
                                 const char* kind, int64_t cents) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto [it, fresh] = by_key_.try_emplace(key);
  auto& e = it->second;
  if (fresh) {
    char ref[32];
    std::snprintf(ref, sizeof ref, "%s-%08llx", kind[0] == 's' ? "TRK" : "RF",
                  static_cast<unsigned long long>(fnv1a(order + "/" + kind) & 0xffffffffu));
    e = {key, order, kind, ref, cents, 0};
  }
  ++e.calls;
  if (e.kind == "ship")
    return {{"tracking", e.ref}};
  return {{"refund", e.ref}, {"cents", e.cents}};
}

nlohmann::json warehouse::ship(const std::string& key, const std::string& order) {
  return record(key, order, "ship", 0);
}

nlohmann::json warehouse::refund(const std::string& key, const std::string& order,
                                 int64_t cents) {
  return record(key, order, "refund", cents);
}

std::vector<warehouse_entry> warehouse::entries() const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::vector<warehouse_entry> out;
  for (const auto& [key, e] : by_key_)
    out.push_back(e);
  return out;
}

std::map<std::string, int> warehouse::per_order(const std::string& kind) const {
  std::lock_guard<std::mutex> guard{mtx_};
  std::map<std::string, int> out;
  for (const auto& [key, e] : by_key_)
    if (e.kind == kind)
      ++out[e.order];
  return out;
}

uint64_t warehouse::repeats() const {
  std::lock_guard<std::mutex> guard{mtx_};
  uint64_t n = 0;
  for (const auto& [key, e] : by_key_)
    n += e.calls - 1;
  return n;
}

} // namespace troupe::examples
