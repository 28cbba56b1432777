// `troupe ls | show | stats | approve | reject | edit`: an operator's view of
// workflows, from a journal file that no runtime has open (--journal) or
// from a running node's admin API (--node host:port, the token from
// TROUPE_ADMIN_TOKEN). Both sources give the same JSON (the admin API's
// shapes, runtime/admin/admin_json.hpp), rendered by one printer as a table
// or, with --json, as it is.
#pragma once

#include <cstddef>
#include <iosfwd>
#include <string>

#include "source.hpp"

namespace troupe::cli {


/// The workflows, newest first: id, definition, status, outcome, age.
int inspect_ls(const inspect_source& src, const std::string& status, size_t limit, bool json,
               std::ostream& out, std::ostream& err);
/// One workflow's timeline: each event, and each attempt with its
/// duration, tokens, cost and outcome.
int inspect_show(const inspect_source& src, const std::string& id, bool json, std::ostream& out,
                 std::ostream& err);
/// Workflows by status, pending gates, dead letters.
int inspect_stats(const inspect_source& src, bool json, std::ostream& out, std::ostream& err);
/// A decision at a gate, on a node (it needs the workflow's definition,
/// which only a runtime has): verdict approve, reject or edit (with
/// `patch_json`, a JSON object), journaled with `by`.
int inspect_decide(const std::string& node, const std::string& id, const std::string& gate,
                   const std::string& verdict, const std::string& patch_json,
                   const std::string& by, std::ostream& out, std::ostream& err);

} // namespace troupe::cli
