// A tree of supervisors and crashing workers (`troupe run supervision_tree`):
//
//   root (one_for_one)
//   ├── ingest   (one_for_all):  reader, parser, writer
//   ├── pipeline (rest_for_one): fetch, enrich, store
//   └── flaky    (one_for_one, intensity 2 in 60 s): worker
//
// It crashes a worker under each strategy and shows what its supervisor
// does, then crashes flaky's worker until flaky gives up and escalates to
// root, which starts flaky again with a fresh worker; then it shuts the
// tree down, newest children first. Every line is a supervision event.
#pragma once

#include <ostream>

namespace troupe::examples {

/// Runs the scenario, printing what happens; 0 when every step happened as
/// described, 1 (with the step that did not) otherwise.
int run_supervision_tree(std::ostream& out);

} // namespace troupe::examples
