# Helpers shared by every lull target: warnings and sanitizers per target,
# never as global flags.

# Third-party headers most of a target's files include, parsed once per
# target instead of once per file (LULL_PCH, on by default): nlohmann/json,
# spdlog, CAF and CLI11 are most of what the compiler reads for lull.
option(LULL_PCH "Precompile the third-party headers each library's files share" ON)
set(lull_pch_std <algorithm> <chrono> <cstdint> <functional> <map> <memory> <optional>
    <string> <string_view> <utility> <variant> <vector>)
function(lull_precompile target)
  if(LULL_PCH)
    target_precompile_headers(${target} PRIVATE ${lull_pch_std} ${ARGN})
  endif()
endfunction()

function(lull_target_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter)
  # The fuzz build uses clang, whose warnings differ from GCC's: warn, never fail there.
  if(NOT LULL_FUZZ)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  target_compile_features(${target} PUBLIC cxx_std_17)
  # One section per function so the linker drops what lulld never calls: a
  # smaller text segment is fewer resident pages on a Pi (bench/footprint.sh).
  target_compile_options(${target} PRIVATE -ffunction-sections -fdata-sections)
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "EXECUTABLE")
    target_link_options(${target} PRIVATE -Wl,--gc-sections)
  endif()
  if(LULL_SANITIZE)
    target_compile_options(${target} PUBLIC -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined)
    # GCC 12's -Wmaybe-uninitialized misfires inside libstdc++ (<regex>,
    # <optional>) once the sanitizers instrument it; the plain build keeps it.
    if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
      target_compile_options(${target} PRIVATE -Wno-maybe-uninitialized)
    endif()
    # Third-party code the sanitizers skip, each entry with its reason.
    if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
      target_compile_options(${target} PRIVATE
        -fsanitize-ignorelist=${PROJECT_SOURCE_DIR}/cmake/sanitize-ignorelist.txt)
    endif()
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  endif()
endfunction()

# lull_add_test(NAME SOURCES src... [LIBS lib...] [LABELS label...] [TIMEOUT s])
# One executable per test file group, registered with CTest.
function(lull_add_test name)
  cmake_parse_arguments(T "" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  lull_target_options(${name})
  # The tests' own code (GoogleTest's macros, mostly) at -O1: about a third
  # less compile time than -O2 for the largest share of the build, while the
  # libraries they test keep the build type's flags.
  if(CMAKE_BUILD_TYPE STREQUAL "RelWithDebInfo" OR CMAKE_BUILD_TYPE STREQUAL "Release")
    target_compile_options(${name} PRIVATE -O1)
  endif()
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  # Tests on lull's libraries share one precompiled header (GoogleTest,
  # nlohmann/json): their flags and definitions are the same, so the first
  # one's serves all (the few on lull::messages alone have other definitions
  # and parse their headers themselves).
  if(LULL_PCH AND T_LIBS MATCHES "lull::(core|actors|cli|test_support)|lull_man")
    get_property(pch_owner GLOBAL PROPERTY LULL_TEST_PCH_OWNER)
    if(pch_owner)
      target_precompile_headers(${name} REUSE_FROM ${pch_owner})
    else()
      set_property(GLOBAL PROPERTY LULL_TEST_PCH_OWNER ${name})
      lull_precompile(${name} <gtest/gtest.h> <nlohmann/json.hpp>)
    endif()
  endif()
  target_compile_definitions(${name} PRIVATE
    LULL_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    LULL_BINARY_DIR="${PROJECT_BINARY_DIR}")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  # Under AddressSanitizer + UBSan (-O0) the integration tests run three to
  # four times slower (integration_persister: 47 s plain, 176 s sanitized):
  # the same bounds, scaled, so a slow lane is not read as a hang.
  if(LULL_SANITIZE)
    math(EXPR T_TIMEOUT "${T_TIMEOUT} * 3")
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
endfunction()

