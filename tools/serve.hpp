// `troupe serve`: a runtime on a SQLite journal with the bundled examples'
// agents and definitions, recovered, behind the admin server (HTTP API and
// dashboard, troupe/admin.hpp) until SIGINT or SIGTERM. Blocking; call from
// a plain thread (main's).
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <string>
#include <vector>

#include <caf/error.hpp>

namespace troupe {
class runtime;
}

namespace troupe::cli {

/// What `troupe serve` was told.
struct serve_options {
  std::string journal;              ///< the SQLite journal file (created if missing)
  std::string host = "127.0.0.1";   ///< where the admin server listens
  uint16_t port = 8080;             ///< 0: any free port (printed)
  std::vector<std::string> examples = {"triage"}; ///< whose agents and definitions to register
  size_t threads = 2;               ///< the runtime's scheduler threads
  /// The bearer token; serve() reads TROUPE_ADMIN_TOKEN when empty.
  std::string token;
  /// Blocks until the server should stop, given its URL. Empty (the
  /// default): until the process gets SIGINT or SIGTERM, which serve()
  /// blocks in the calling thread (and so in every thread it starts).
  std::function<void(const std::string& url)> wait;
};

/// The examples `troupe serve --example` knows.
std::vector<std::string> serve_example_names();

/// Registers example `name`'s agents and definitions (as `troupe serve`
/// runs them) in `rt`; invalid_config for a name it does not know.
caf::error register_serve_example(runtime& rt, const std::string& name);

/// Parses "HOST:PORT" ("[v6]:PORT" for IPv6); "" when good, else what is wrong.
std::string parse_listen(const std::string& text, std::string& host, uint16_t& port);

/// Runs the server until told to stop; the exit code (cli.hpp's exit_code):
/// exit_usage without a token, exit_failed if the journal or the listener
/// cannot be opened.
int serve(serve_options opt, std::ostream& out, std::ostream& err);

} // namespace troupe::cli
