// Config files (TOML): any file gives a config or a clear error.
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "src/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static char tmpl[] = "/tmp/lull-fuzz-config-XXXXXX";
  static std::string path = [] {
    int fd = ::mkstemp(tmpl);
    ::close(fd);
    std::atexit([] { std::remove(tmpl); }); // tmpl outlives every destructor
    return std::string(tmpl);
  }();
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  const char* argv[] = {"lulld", "--config", path.c_str()};
  (void)lull::load_config(3, argv, {});
  return 0;
}
