// Provides caf::test::engine (needed by CAF's test_coordinator_fixture)
// without CAF's own main(): Catch2 owns main. Linked once per test binary.
#define CAF_TEST_NO_MAIN
#include <caf/test/unit_test_impl.hpp>
