// Production and deterministic implementations of the time and randomness seams.
#include "troupe/seams.hpp"

#include <mutex>
#include <random>

namespace troupe {

namespace {

class system_clock_impl final : public clock_source {
public:
  std::chrono::nanoseconds now() const override {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  }
};

class mt_random final : public random_source {
public:
  explicit mt_random(uint64_t seed) : gen_(seed) {}
  uint64_t next() override {
    std::lock_guard<std::mutex> guard{mtx_};
    return gen_();
  }

private:
  std::mutex mtx_;
  std::mt19937_64 gen_;
};

} // namespace

std::shared_ptr<clock_source> system_clock_source() {
  return std::make_shared<system_clock_impl>();
}

std::shared_ptr<random_source> seeded_random(uint64_t seed) {
  return std::make_shared<mt_random>(seed);
}

std::shared_ptr<random_source> system_random() {
  std::random_device rd;
  return seeded_random((static_cast<uint64_t>(rd()) << 32) ^ rd());
}

} // namespace troupe
