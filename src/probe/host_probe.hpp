#pragma once
/// Samples a host through /proc, /sys and statvfs under a root path, so tests
/// point it at recorded fixture trees (an x86 laptop, a Raspberry Pi 4).

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "messages/host_snapshot.hpp"
#include "src/probe/proc_file.hpp"
#include "src/probe/proc_parse.hpp"

namespace lull {

struct host_probe_options {
  std::string root = "/";            ///< prefix for /proc, /sys and mounts
  std::string host_id;
  std::vector<std::string> mounts = {"/"};
};

class host_probe {
public:
  explicit host_probe(host_probe_options opts);

  /// One snapshot. `now_unix` stamps it (UTC); `now_mono_sec` (a monotonic
  /// clock) turns counter deltas into rates. CPU % and rates need a previous
  /// sample and are null on the first.
  host_snapshot sample(std::int64_t now_unix, double now_mono_sec);

private:
  std::string path(const std::string& rel) const;
  void discover_sensors();

  host_probe_options opts_;
  proc_file stat_, meminfo_, loadavg_, net_dev_, uptime_;
  std::optional<proc_file> temp_, throttled_;
  std::optional<proc_file> psi_cpu_, psi_memory_, psi_io_;
  std::string psi_missing_; ///< why there is no PSI (empty when there is)
  /// /sys/class/power_supply/<name> of the mains/USB supplies and of the
  /// system's batteries (scope Device, a peripheral's battery, is left out).
  std::vector<std::string> ac_supplies_, batteries_;
  std::vector<proc_file> freqs_;
  std::optional<proc::stat_info> prev_stat_;
  std::vector<proc::net_counters> prev_net_;
  double prev_mono_ = 0;
};

/// Decodes the Raspberry Pi firmware's get_throttled bits.
throttle_flags decode_throttled(std::uint32_t raw);

} // namespace lull
