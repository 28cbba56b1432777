// The README's C++ example as code that the tests run: one agent, one gate,
// an idempotency key, and the journal read back.
#pragma once

#include <caf/expected.hpp>

#include "troupe/runtime.hpp"

namespace troupe::examples {

/// What the quickstart saw: the snapshot when parked, the final one, and
/// the kinds of its journaled events.
struct quickstart_result {
  workflow_info parked;
  workflow_info result;
  std::vector<std::string> history;
};

caf::expected<quickstart_result> run_quickstart();

} // namespace troupe::examples
