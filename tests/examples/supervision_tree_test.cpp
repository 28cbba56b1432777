// The supervision tree example runs as its header describes: each
// strategy's stops and starts in order, flaky's escalation to root, and a
// shutdown newest first.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "supervision_tree/supervision_tree.hpp"

namespace {

/// The output's event lines of supervisor `sup`, as "<kind> <child>".
std::vector<std::string> lines_of(const std::string& text, const std::string& sup) {
  std::vector<std::string> out;
  std::istringstream in{text};
  for (std::string line; std::getline(in, line);) {
    std::istringstream words{line};
    std::string who, kind, child;
    words >> who >> kind >> child;
    if (who == sup) {
      if (!child.empty() && child.back() == ':')
        child.pop_back();
      if (!child.empty() && child.front() == '(') // the supervisor's own event: its reason
        child.clear();
      out.push_back(kind + (child.empty() ? "" : " " + child));
    }
  }
  return out;
}

} // namespace

TEST_CASE("the supervision tree example shows each strategy and an escalation",
          "[examples]") {
  std::ostringstream out;
  REQUIRE(troupe::examples::run_supervision_tree(out) == 0);
  auto text = out.str();
  INFO(text);
  CHECK_THAT(text, Catch::Contains("every step happened as described"));
  using V = std::vector<std::string>;
  CHECK(lines_of(text, "ingest")
        == V{"started reader", "started parser", "started writer",              // boot
             "exited parser", "stopping writer", "stopping reader",             // one_for_all
             "started reader", "started parser", "started writer",
             "stopping writer", "stopping parser", "stopping reader", "stopped"}); // shutdown
  CHECK(lines_of(text, "pipeline")
        == V{"started fetch", "started enrich", "started store",
             "exited enrich", "stopping store", "started enrich", "started store", // rest_for_one
             "stopping store", "stopping enrich", "stopping fetch", "stopped"});
  CHECK(lines_of(text, "flaky")
        == V{"started worker",
             "exited worker", "started worker", "exited worker", "started worker",
             "exited worker", "escalated",                      // the third restart in a minute
             "started worker",                                  // the new flaky
             "stopping worker", "stopped"});
  CHECK(lines_of(text, "root")
        == V{"started ingest", "started pipeline", "started flaky",
             "exited flaky", "started flaky",                   // one_for_one: flaky alone
             "stopping flaky", "stopping pipeline", "stopping ingest", "stopped"});
}
