#pragma once
/// Pure parsers for the /proc and /sys files lull reads. Each takes the file's
/// text and returns what it found; malformed input yields nullopt or omits the
/// entry, never throws.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace lull::proc {

struct cpu_times {
  std::uint64_t user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0,
                softirq = 0, steal = 0;
  std::uint64_t total() const {
    return user + nice + system + idle + iowait + irq + softirq + steal;
  }
  std::uint64_t idle_all() const { return idle + iowait; }
};

struct stat_info {
  cpu_times total;
  std::vector<cpu_times> cores;
  std::optional<std::int64_t> boot_time; ///< "btime", unix seconds
};

std::optional<stat_info> parse_stat(std::string_view text);

/// Busy percentage between two readings of the same CPU; nullopt when no time
/// passed or the counters went backwards (a CPU went offline and came back).
std::optional<double> cpu_percent(const cpu_times& before, const cpu_times& after);

struct meminfo {
  std::optional<std::uint64_t> total, available, free, buffers, cached, swap_total, swap_free;
};

meminfo parse_meminfo(std::string_view text);

struct loadavg {
  double load1 = 0, load5 = 0, load15 = 0;
};

std::optional<loadavg> parse_loadavg(std::string_view text);

struct net_counters {
  std::string name;
  std::uint64_t rx_bytes = 0, tx_bytes = 0;
};

std::vector<net_counters> parse_net_dev(std::string_view text);

// counter_delta(): messages/util.hpp.

std::optional<double> parse_uptime(std::string_view text);

/// A single integer in a sysfs file (thermal millidegrees, cpufreq kHz), or a
/// hex value such as get_throttled's "0x50005"; nullopt when it is not one.
std::optional<std::int64_t> parse_int(std::string_view text);

/// A hexadecimal value with or without "0x": the Pi firmware's sysfs
/// get_throttled prints "%x" ("50005"), vcgencmd prints "throttled=0x50005".
std::optional<std::int64_t> parse_hex(std::string_view text);

/// One file of /proc/pressure (cpu, memory, io): the share of time (%)
/// some task, or every non-idle task (`full`), waited for the resource,
/// averaged over 10 and 60 seconds. A line that is missing or malformed
/// leaves its fields empty (cpu has no `full` line before Linux 5.13).
struct pressure_line {
  std::optional<double> avg10, avg60;
};
struct pressure_file {
  pressure_line some, full;
};
pressure_file parse_pressure(std::string_view text);

/// One line `KEY=value` of a sysfs `uevent` file (`DRIVER=amdgpu`,
/// `PCI_SLOT_NAME=0000:03:00.0`, `PCI_ID=1002:73BF`); nullopt when absent.
std::optional<std::string> uevent_value(std::string_view text, std::string_view key);

/// A DRM client as /proc/<pid>/fdinfo/<fd> of an open /dev/dri node tells it
/// (Documentation/gpu/drm-usage-stats.rst): `drm-driver`, `drm-pdev` (PCI
/// devices only), `drm-client-id` (one per open of the node, shared by
/// dup'ed and inherited fds), and per engine `drm-engine-<name>: <ns> ns`
/// (busy time since the client opened it) with an optional
/// `drm-engine-capacity-<name>: <n>` (engines of that class).
struct drm_fdinfo {
  std::string driver, pdev;
  std::uint64_t client_id = 0;
  std::vector<std::pair<std::string, std::uint64_t>> engine_ns; ///< name, busy ns
  std::vector<std::pair<std::string, int>> engine_capacity;     ///< name, engines
};

/// nullopt for an fdinfo that is not a DRM client's (no drm-driver or
/// drm-client-id: a plain file, or a kernel before 5.19) or is malformed;
/// engine lines that do not parse are left out, at most 32 engines.
std::optional<drm_fdinfo> parse_drm_fdinfo(std::string_view text);

} // namespace lull::proc
