// The `troupe` command line: its commands (demo, run <example>), flag
// validation and exit codes, separate from main() so tests can drive it with
// string streams. Blocking; call from a plain thread.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace troupe::cli {

/// Process exit codes of the troupe tool.
enum exit_code : int {
  /// The command ran and everything it started settled.
  exit_ok = 0,
  /// The command ran but some work did not settle (or the runtime refused to start).
  exit_failed = 1,
  /// Bad usage: unknown command, example or flag, or a flag out of range. Nothing ran.
  exit_usage = 2,
};

/// Runs the tool with `args` (args[0] is the program name, as in argv).
/// Normal output and help go to `out`, usage errors to `err`. Returns the
/// process exit code.
int run(const std::vector<std::string>& args, std::ostream& out, std::ostream& err);

/// The examples `troupe run` knows, in the order `--help` lists them.
std::vector<std::string> example_names();

} // namespace troupe::cli
