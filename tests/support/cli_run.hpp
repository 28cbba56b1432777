// Runs the `troupe` CLI's command logic in-process, for the tools tests.
#pragma once

#include <sstream>
#include <string>
#include <vector>

#include "tools/cli.hpp"

namespace troupe::testing {

struct cli_result {
  int code;
  std::string out;
  std::string err;
};

/// `troupe <args...>`: its exit code, stdout and stderr.
inline cli_result run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "troupe");
  std::ostringstream out, err;
  int code = cli::run(args, out, err);
  return {code, out.str(), err.str()};
}

} // namespace troupe::testing
