// `troupe dlq list|show|retry|drop`: the dead letters of a journal file that
// no runtime has open. Retry and drop journal the operator's action; the
// runtime that next recovers the journal carries a retry out.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

#include "troupe/journal.hpp"

namespace troupe::cli {

/// Prints the workflows waiting in dead letter: id, definition, node,
/// outcome, when, why. `json`: one JSON object per line instead.
int dlq_list(const std::string& journal, bool json, std::ostream& out, std::ostream& err);
/// Prints one dead-lettered workflow: every time it was dead-lettered and
/// its journaled events.
int dlq_show(const std::string& journal, const std::string& id, bool json, std::ostream& out,
             std::ostream& err);
/// Journals a retry (a.retry) or drop of workflow `id`.
int dlq_act(const std::string& journal, const std::string& id, const dead_letter_action& a,
            std::ostream& out, std::ostream& err);

} // namespace troupe::cli
