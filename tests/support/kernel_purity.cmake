# Fails when a file in runtime/kernel/ reaches for actors, clocks,
# randomness, threads or I/O. The kernel may use CAF's value types only.
file(GLOB files "${DIR}/*.hpp" "${DIR}/*.cpp")
set(forbidden
  "#include <caf/all.hpp>" "#include <caf/actor" "#include <caf/scheduled_actor"
  "#include <caf/event_based_actor" "#include <random>" "#include <thread>"
  "#include <mutex>" "#include <fstream>" "#include <iostream>" "#include <cstdio>"
  "#include <curl" "#include <sqlite3" "#include <spdlog" "system_clock::now"
  "steady_clock::now" "std::rand" "getenv")
set(bad "")
foreach(f ${files})
  file(READ "${f}" text)
  foreach(pat ${forbidden})
    string(FIND "${text}" "${pat}" pos)
    if(NOT pos EQUAL -1)
      list(APPEND bad "${f}: ${pat}")
    endif()
  endforeach()
endforeach()
list(LENGTH files n)
if(n EQUAL 0)
  message(FATAL_ERROR "no kernel sources found in ${DIR}")
endif()
if(bad)
  string(REPLACE ";" "\n  " bad "${bad}")
  message(FATAL_ERROR "kernel is not pure:\n  ${bad}")
endif()
message(STATUS "kernel_purity: ${n} files clean")
