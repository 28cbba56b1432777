# Third-party dependencies, all from Debian packages (scripts/bootstrap.sh).
find_package(Threads REQUIRED)

# CAF 0.17.6 ships no CMake config: import its libraries by hand.
find_path(CAF_INCLUDE_DIR caf/all.hpp REQUIRED)
find_library(CAF_CORE_LIBRARY caf_core REQUIRED)
find_library(CAF_IO_LIBRARY caf_io REQUIRED)
add_library(CAF::core SHARED IMPORTED)
set_target_properties(CAF::core PROPERTIES
  IMPORTED_LOCATION "${CAF_CORE_LIBRARY}"
  INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${CAF_INCLUDE_DIR}"
  INTERFACE_LINK_LIBRARIES Threads::Threads)
add_library(CAF::io SHARED IMPORTED)
set_target_properties(CAF::io PROPERTIES
  IMPORTED_LOCATION "${CAF_IO_LIBRARY}"
  INTERFACE_LINK_LIBRARIES CAF::core)

find_package(SQLite3 REQUIRED)
find_package(CURL 7.68 REQUIRED) # curl_multi_poll / curl_multi_wakeup
find_package(nlohmann_json 3.11 CONFIG REQUIRED)
find_package(spdlog 1.10 CONFIG REQUIRED)
find_package(CLI11 CONFIG REQUIRED)
find_package(Catch2 2 CONFIG REQUIRED)
# Prometheus' data model and text format for runtime::metrics_text (only the
# core library: `troupe serve` has its own HTTP server).
find_package(prometheus-cpp CONFIG REQUIRED COMPONENTS core) # ships no version file
include(Catch)

# cpp-httplib (Debian ships a compiled library and a pkg-config file): the
# admin server (troupe_admin), and the fake model server the gateway tests
# talk to.
find_package(PkgConfig REQUIRED)
pkg_check_modules(HTTPLIB REQUIRED IMPORTED_TARGET cpp-httplib)
