// Tests of the `troupe` CLI's argument handling: every bad flag is refused
// with exit code 2 and a message naming it, before anything runs; help and
// version print and exit 0; one tiny fault-free run succeeds.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "tools/cli.hpp"

namespace {

struct result {
  int code;
  std::string out;
  std::string err;
};

result run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "troupe");
  std::ostringstream out, err;
  int code = troupe::cli::run(args, out, err);
  return {code, out.str(), err.str()};
}

} // namespace

TEST_CASE("cli refuses out-of-range flags naming the flag", "[tools][cli]") {
  struct bad {
    std::vector<std::string> args;
    const char* flag;
  };
  std::vector<bad> cases = {
      {{"run", "triage", "--workflows", "0"}, "--workflows"},
      {{"run", "triage", "--workflows", "many"}, "--workflows"},
      {{"run", "triage", "--fail-rate=-0.1"}, "--fail-rate"},
      {{"run", "triage", "--fail-rate", "-0.1"}, "--fail-rate"},
      {{"run", "triage", "--fail-rate", "1.5"}, "--fail-rate"},
      {{"run", "triage", "--timeout-rate", "2"}, "--timeout-rate"},
      {{"run", "triage", "--malformed-rate", "-1"}, "--malformed-rate"},
      {{"run", "triage", "--threads", "0"}, "--threads"},
      {{"run", "triage", "--seed", "-1"}, "--seed"},
      {{"run", "triage", "--seed", "abc"}, "--seed"},
      {{"run", "triage", "--fail-rate", "0.6", "--malformed-rate", "0.6"}, "--malformed-rate"},
      {{"run", "triage", "--no-such-flag"}, "--no-such-flag"},
  };
  for (const auto& c : cases) {
    auto r = run_cli(c.args);
    INFO(c.args.back() << " -> " << r.err);
    CHECK(r.code == troupe::cli::exit_usage);
    CHECK_THAT(r.err, Catch::Contains(c.flag));
    CHECK(r.out.empty()); // nothing ran
  }
}

TEST_CASE("cli names the known examples when given an unknown one", "[tools][cli]") {
  auto r = run_cli({"run", "nope"});
  CHECK(r.code == troupe::cli::exit_usage);
  CHECK_THAT(r.err, Catch::Contains("unknown example 'nope'"));
  for (const auto& name : troupe::cli::example_names())
    CHECK_THAT(r.err, Catch::Contains(name));
  CHECK(r.out.empty());
}

TEST_CASE("cli needs a command", "[tools][cli]") {
  auto r = run_cli({});
  CHECK(r.code == troupe::cli::exit_usage);
  CHECK_FALSE(r.err.empty());
  CHECK(run_cli({"frobnicate"}).code == troupe::cli::exit_usage);
}

TEST_CASE("cli prints help on every command and its version", "[tools][cli]") {
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--help"}, {"demo", "--help"}, {"run", "--help"}}) {
    auto r = run_cli(args);
    INFO(args.front());
    CHECK(r.code == troupe::cli::exit_ok);
    CHECK_THAT(r.out, Catch::Contains("Usage"));
  }
  CHECK_THAT(run_cli({"run", "--help"}).out, Catch::Contains("--fail-rate"));
  auto v = run_cli({"--version"});
  CHECK(v.code == troupe::cli::exit_ok);
  CHECK_THAT(v.out, Catch::StartsWith("troupe "));
}

TEST_CASE("cli runs a small fault-free triage", "[tools][cli]") {
  auto r = run_cli({"run", "triage", "--workflows", "3", "--seed", "1", "--fail-rate", "0",
                    "--timeout-rate", "0", "--malformed-rate", "0"});
  INFO(r.out << r.err);
  CHECK(r.code == troupe::cli::exit_ok);
  CHECK_THAT(r.out, Catch::Contains("3 tickets"));
  CHECK(r.err.empty());
}
