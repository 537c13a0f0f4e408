#pragma once
// The secure broker config (broker-config/secure.conf + acl) in a temporary
// directory with a fresh password file, and the users the tests log in as.

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <stdexcept>
#include <string>

#include "src/process.hpp"
#include "tests/support/support.hpp"

namespace lull::test {

/// A copy of broker-config/secure.conf and acl with a fresh password file.
struct secure_dir {
  std::string path;
  secure_dir() {
    namespace fs = std::filesystem;
    char tmpl[] = "/tmp/lull-secure-XXXXXX";
    path = ::mkdtemp(tmpl);
    ::chmod(path.c_str(), 0755); // see below
    fs::copy_file(source_path("broker-config/secure.conf"), path + "/secure.conf");
    fs::copy_file(source_path("broker-config/acl"), path + "/acl");
    for (auto* u : {"lulld", "lull-admin", "wa", "wb", "homeassistant"}) {
      spawn_options o;
      o.argv = {source_path("scripts/lull-broker-user"), path + "/passwd", u,
                std::string("pw-") + u};
      o.stdout_path = "/dev/null";
      auto pid = spawn(o);
      if (!pid || exit_code_of(wait_for_exit(*pid, 10s).value_or(1 << 8)) != 0)
        throw std::runtime_error("lull-broker-user failed");
    }
    // The agent of host pi-b: its own user, allowed only its host's topics.
    spawn_options o;
    o.argv = {source_path("scripts/lull-broker-user"), "--agent", path + "/passwd", "pi-b",
              "pw-pi-b"};
    o.stdout_path = "/dev/null";
    auto pid = spawn(o);
    if (!pid || exit_code_of(wait_for_exit(*pid, 10s).value_or(1 << 8)) != 0)
      throw std::runtime_error("lull-broker-user --agent failed");
    // Mosquitto started as root drops to the mosquitto user, which must be
    // able to read the file the script created 0600.
    ::chmod((path + "/passwd").c_str(), 0644);
  }
  ~secure_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

inline client_options user(const std::string& name, int version = 5) {
  client_options o;
  o.username = name;
  o.password = "pw-" + name;
  o.mqtt_version = version;
  return o;
}

} // namespace lull::test
