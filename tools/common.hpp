// Helpers the `troupe` commands share.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "troupe/journal.hpp"

namespace troupe::cli {

/// Opens an existing journal file: a mistyped path is an error, not a new
/// empty journal. journal_unusable if a runtime holds it.
caf::expected<std::shared_ptr<journal_store>> open_existing_journal(const std::string& path);

/// "2026-11-22 14:03:07 UTC" from ns since the epoch (the runtime's default clock).
std::string utc_time(int64_t ns);

} // namespace troupe::cli
