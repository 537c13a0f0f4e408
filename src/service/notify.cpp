#include "src/service/notify.hpp"

#include <cstdlib>

#include <systemd/sd-daemon.h>

namespace lull::service {

notify_settings settings_from_environment() {
  notify_settings s;
  auto* socket = std::getenv("NOTIFY_SOCKET");
  s.enabled = socket != nullptr && *socket != '\0';
  std::uint64_t usec = 0;
  if (s.enabled && sd_watchdog_enabled(0, &usec) > 0)
    s.watchdog = std::chrono::microseconds(usec);
  return s;
}

bool notify(const std::string& state) {
  return sd_notify(0, state.c_str()) >= 0;
}

} // namespace lull::service
