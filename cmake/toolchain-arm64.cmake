# Cross-compiling lull for arm64 (64-bit Raspberry Pi OS, Debian arm64) with
# Debian's crossbuild-essential-arm64 against an arm64 root in a directory
# (scripts/build-arm64 makes it with mmdebstrap in build-arm64/sysroot).
# Host multiarch is not used: Debian's CAF packages have no Multi-Arch field,
# so libcaf-dev:arm64 would replace the amd64 one.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
if(NOT LULL_ARM64_SYSROOT)
  set(LULL_ARM64_SYSROOT "$ENV{LULL_ARM64_SYSROOT}")
endif()
if(NOT LULL_ARM64_SYSROOT)
  message(FATAL_ERROR "set LULL_ARM64_SYSROOT (or the environment variable) to the arm64 root")
endif()
# try_compile projects see the same root.
list(APPEND CMAKE_TRY_COMPILE_PLATFORM_VARIABLES LULL_ARM64_SYSROOT)
set(CMAKE_SYSROOT "${LULL_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH "${LULL_ARM64_SYSROOT}")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
# Tests run arm64 executables through binfmt_misc + qemu-user; this tells CMake
# (and CTest's add_test) how to run them when binfmt is not used directly.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64-static -L "${LULL_ARM64_SYSROOT}")
