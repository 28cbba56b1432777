// CAF 0.17's deterministic test DSL under Catch2 v2. dsl.hpp reports through
// CAF's unit-test macros, which crash outside CAF's runner, so they are
// remapped onto Catch2 before dsl.hpp is seen. Include this (last), never
// caf/test/dsl.hpp directly.
#pragma once
#include <catch2/catch.hpp>
#include <caf/test/unit_test.hpp>
#undef CAF_CHECK
#undef CAF_CHECK_EQUAL
#undef CAF_REQUIRE
#undef CAF_REQUIRE_EQUAL
#undef CAF_FAIL
#undef CAF_MESSAGE
#define CAF_CHECK(...) CHECK(__VA_ARGS__)
#define CAF_CHECK_EQUAL(x, y) CHECK((x) == (y))
#define CAF_REQUIRE(...) REQUIRE(__VA_ARGS__)
#define CAF_REQUIRE_EQUAL(x, y) REQUIRE((x) == (y))
#define CAF_FAIL(msg) FAIL(msg)
#define CAF_MESSAGE(msg) UNSCOPED_INFO(msg)
#include <caf/test/dsl.hpp>
