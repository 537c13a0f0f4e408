# Helpers shared by every lull target: warnings and sanitizers per target,
# never as global flags.

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
  target_link_libraries(${name} PRIVATE ${T_LIBS} GTest::gtest GTest::gtest_main)
  target_compile_definitions(${name} PRIVATE
    LULL_SOURCE_DIR="${PROJECT_SOURCE_DIR}"
    LULL_BINARY_DIR="${PROJECT_BINARY_DIR}")
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES TIMEOUT ${T_TIMEOUT} LABELS "${T_LABELS}")
endfunction()
