#pragma once
/// lulld and its service manager (systemd's Type=notify and WatchdogSec=),
/// through libsystemd's sd_notify: READY=1 once lulld serves, STATUS= lines
/// for `systemctl status`, WATCHDOG=1 while its actors answer, STOPPING=1 on
/// SIGTERM. Without NOTIFY_SOCKET (a run in a terminal, the tests) nothing
/// is sent and nothing is asked of the caller.

#include <chrono>
#include <string>
#include <vector>

namespace lull::service {

/// What the service manager asked for through lulld's environment.
struct notify_settings {
  bool enabled = false;                  ///< NOTIFY_SOCKET is set
  std::chrono::microseconds watchdog{0}; ///< WATCHDOG_USEC meant for this process; 0: none
};

/// Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID (a watchdog meant for
/// another process, such as the one that started lulld, is not lulld's).
notify_settings settings_from_environment();

/// Sends `state` (newline-separated assignments such as "READY=1\nSTATUS=...")
/// to the service manager. True when sent, or when there is none to send to.
bool notify(const std::string& state);

/// The variables through which the service manager speaks to lulld alone:
/// children (the local Mosquitto, built with systemd support, would report
/// READY=1 itself) are started without them.
inline const std::vector<std::string>& own_variables() {
  static const std::vector<std::string> names = {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"};
  return names;
}

} // namespace lull::service
