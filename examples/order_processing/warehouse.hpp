// The order_processing example's external system: a warehouse that ships
// orders and refunds returns, outside the runtime (it outlives a runtime
// that is stopped and rebuilt). It dedupes by idempotency key, as a real
// fulfillment API would, and keeps every call so that a test can count
// shipments per order. In memory: tests and `troupe run order_processing`
// build one per run. The fulfillment and returns agents call it from their
// effect functions, on their attempts' runner actors.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace troupe::examples {

/// One shipment or refund as the warehouse recorded it.
struct warehouse_entry {
  std::string key;    ///< the effect's idempotency key (unique)
  std::string order;  ///< the order it was for
  std::string kind;   ///< "ship" | "refund"
  std::string ref;    ///< tracking number or refund id
  int64_t cents = 0;  ///< refunds: the amount
  uint32_t calls = 0; ///< times the key was called; > 1: a repeat answered from the table
};

/// Thread-safe: one mutex; any thread may call.
class warehouse {
public:
  /// Ships `order` under `key`: the first call with a key records a
  /// shipment; a repeat only counts the call. Returns {"tracking": ...},
  /// the same for every call with the key.
  nlohmann::json ship(const std::string& key, const std::string& order);
  /// Refunds `cents` of `order` under `key`, deduped the same way.
  /// Returns {"refund": ..., "cents": ...}.
  nlohmann::json refund(const std::string& key, const std::string& order, int64_t cents);

  /// Every entry, ordered by key.
  std::vector<warehouse_entry> entries() const;
  /// Entries (distinct keys) of `kind` per order: more than one for an
  /// order is a duplicate fulfillment or refund.
  std::map<std::string, int> per_order(const std::string& kind) const;
  /// Calls beyond the first, over all keys: repeats the key absorbed.
  uint64_t repeats() const;

private:
  nlohmann::json record(const std::string& key, const std::string& order, const char* kind,
                        int64_t cents);

  mutable std::mutex mtx_;
  std::map<std::string, warehouse_entry> by_key_;
};

} // namespace troupe::examples
