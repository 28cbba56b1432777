// The README's C++ example runs and does what the README says.
#include <catch2/catch.hpp>

#include "quickstart/quickstart.hpp"
#include "troupe/errors.hpp"

TEST_CASE("the README's quickstart parks at review and completes once approved") {
  auto r = troupe::examples::run_quickstart();
  REQUIRE(r);
  CHECK(r->parked.status == troupe::workflow_status::parked);
  CHECK(r->parked.node == "review");
  CHECK(r->result.status == troupe::workflow_status::completed);
  CHECK(r->result.state["fields"]["product"] == "printer");
  CHECK(r->history == std::vector<std::string>{"workflow_started", "step_scheduled",
                                               "step_completed", "signal_received"});
}
