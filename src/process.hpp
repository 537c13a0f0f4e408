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
  std::vector<std::string> drop_env;  ///< names removed from the environment
  std::string stdin_path;             ///< empty: inherit
  std::string stdout_path;            ///< empty: inherit
  std::string stderr_path;            ///< empty: inherit
  bool new_process_group = false;
  /// Lowest CPU and IO priority: nice 19, the idle IO class and, where the
  /// kernel allows it, SCHED_IDLE (docs/leases.md: leased children yield to
  /// the owner's processes between two samples).
  bool low_priority = false;
  /// A cgroup v2 `cgroup.procs` file the child moves itself into before it
  /// runs the command, so nothing it starts can escape the group.
  std::string cgroup_procs;
  /// With new_process_group: make the child's group the terminal's
  /// foreground group (as a shell does), so it may read the terminal and
  /// Ctrl-C reaches it.
  bool foreground_tty = false;
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

/// True when an MQTT broker on 127.0.0.1:`port` accepts an anonymous MQTT
/// 3.1.1 client: a CONNECT answered by a CONNACK with return code 0 within
/// `timeout_ms` (the probe then disconnects). Otherwise false, with `why`
/// saying what the port answered.
bool mqtt_broker_accepts(int port, int timeout_ms, std::string* why);

} // namespace lull
