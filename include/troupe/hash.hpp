// Stable hashes: the same input gives the same number on every platform and
// library version (std::hash promises neither). Journaled seeds, backoff
// jitter and scripted replies depend on that. Pure and header-only.
#pragma once

#include <cstdint>
#include <string_view>

namespace troupe {

/// 64-bit FNV-1a of `s`, optionally started from `basis`.
inline uint64_t fnv1a(std::string_view s, uint64_t basis = 1469598103934665603ull) {
  uint64_t h = basis;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

/// The splitmix64 finalizer: spreads the bits of `x` evenly.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

} // namespace troupe
