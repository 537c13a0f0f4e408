#pragma once
/// Child processes: lulld's own Mosquitto, `lull run`'s command, and the
/// processes integration tests start. Errors are values; nothing throws.

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

namespace lull {

struct spawn_options {
  std::vector<std::string> argv;
  std::vector<std::string> extra_env; ///< "KEY=VALUE" added to the environment
  std::string stdin_path;             ///< empty: inherit
  std::string stdout_path;            ///< empty: inherit
  std::string stderr_path;            ///< empty: inherit
  bool new_process_group = false;
};

/// Starts a process; returns its pid or nullopt with `err` set.
std::optional<pid_t> spawn(const spawn_options& opts, std::string* err = nullptr);

/// Waits for `pid` up to `timeout`; returns its wait status when it exited.
std::optional<int> wait_for_exit(pid_t pid, std::chrono::milliseconds timeout);

/// Exit code of a wait status (128 + signal for a signalled process).
int exit_code_of(int wait_status);

/// Finds an executable in PATH, then in /usr/sbin and /sbin.
std::optional<std::string> find_executable(const std::string& name);

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
int free_loopback_port();

/// True when something accepts TCP connections on 127.0.0.1:`port`.
bool port_accepts(int port);

} // namespace lull
