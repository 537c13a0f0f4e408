#pragma once
/// The host snapshot published on `stats/host/<host_id>` (the predecessor's
/// SystemStatsSnapshot). Anything a host cannot report is std::nullopt and goes
/// on the wire as `null`.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lull {

struct disk_usage {
  std::string mount;
  std::optional<std::uint64_t> total_bytes;
  std::optional<std::uint64_t> free_bytes;
  std::optional<double> free_pct;
};

struct net_interface {
  std::string name;
  std::uint64_t rx_bytes = 0;
  std::uint64_t tx_bytes = 0;
  /// Bytes per second since the previous sample; null on the first sample.
  std::optional<double> rx_bytes_per_sec;
  std::optional<double> tx_bytes_per_sec;
};

struct throttle_flags {
  std::uint32_t raw = 0;
  bool under_voltage = false;
  bool freq_capped = false;
  bool throttled = false;
  bool soft_temp_limit = false;
  bool under_voltage_occurred = false;
  bool freq_capped_occurred = false;
  bool throttled_occurred = false;
  bool soft_temp_limit_occurred = false;
};

/// What one lease's processes use (docs/collectors.md, "Whose load"), as the host agent
/// measured it over the last sampling interval.
struct lease_usage {
  std::string lease_id;
  int pid = 0;                ///< the leader the worker reported
  std::string source;         ///< "cgroup" (exact), "proc" (process tree), "gone"
  int processes = 0;          ///< live processes counted
  std::optional<double> cpu_core_pct; ///< % of one core (200 = two cores busy)
  std::uint64_t rss_bytes = 0;
  std::optional<double> read_bytes_per_sec, write_bytes_per_sec;
  /// Why the claim was not counted (the process is not marked as this
  /// lease's: docs/collectors.md, "Whose load"); empty when it counts.
  std::string refused;
};

/// Linux pressure stall information of one resource (/proc/pressure/<r>):
/// the share of time (%) at least one task (`some`) or every non-idle task
/// (`full`) waited for it, averaged over 10 and 60 seconds.
struct pressure_stall {
  std::optional<double> some_avg10, some_avg60, full_avg10, full_avg60;
};

struct host_pressure {
  pressure_stall cpu, memory, io;
};

/// lull's own share of the host: its leases' processes and lulld itself.
struct leased_load {
  int leases = 0;             ///< leases with a reported process on this host
  int processes = 0;
  std::optional<double> cpu_pct; ///< % of all cores, comparable with cpu.total_pct
  std::uint64_t rss_bytes = 0;
  std::optional<double> read_bytes_per_sec, write_bytes_per_sec;
  std::optional<double> agent_cpu_pct; ///< lulld itself, % of all cores
  std::vector<lease_usage> per_lease;
  /// The pressure stall of the leases' own cgroups (cgroup v2
  /// {cpu,memory,io}.pressure), the largest over the leases: what of the
  /// host's stall lull's work may account for. Null when no lease runs in a
  /// group of its own.
  std::optional<host_pressure> pressure;
};

/// The host's power supplies (/sys/class/power_supply): AC and the
/// system's batteries (a mouse's battery is not counted).
struct host_power {
  std::optional<bool> ac_online;     ///< a mains or USB supply online; null: none reports
  std::optional<double> battery_pct; ///< the batteries' charge, %; null: no battery
  std::string battery_status;        ///< Charging, Discharging, Full, Not charging, Unknown
  /// Running from the battery: no supply online and a battery present.
  bool on_battery() const { return battery_pct.has_value() && ac_online != true; }
};

nlohmann::json to_json(const host_power& p);
/// Power as a snapshot or an assessment carries it; a figure out of range is
/// dropped. nullopt for anything but an object.
std::optional<host_power> host_power_from_json(const nlohmann::json& j);

/// Whether somebody uses the host: the time since the last input of any
/// login session (systemd-logind's idle hints for local seats, the
/// terminals' input times for the rest) and whether every local session is
/// locked.
struct owner_presence {
  double idle_sec = 0;   ///< since the newest input of any session, >= 0
  bool locked = false;   ///< every local (seat) session is locked: nobody at the keyboard
  int sessions = 0;      ///< login sessions counted
  std::string source;    ///< "logind", "tty" or "logind+tty"
  /// Somebody used the host less than `owner_idle_sec` ago (and has not
  /// locked it); 0 turns the rule off.
  bool in_use(double owner_idle_sec) const {
    return owner_idle_sec > 0 && !locked && idle_sec < owner_idle_sec;
  }
};

nlohmann::json to_json(const owner_presence& o);
/// Presence as a snapshot or an assessment carries it; a negative or
/// non-numeric idle_sec makes it null (no guess). nullopt for anything but
/// an object.
std::optional<owner_presence> owner_presence_from_json(const nlohmann::json& j);
/// One GPU of the host (/sys/class/drm/card<N>/device): how busy it is and
/// how much of that is lull's leases'. A figure the host cannot measure is
/// null, with `unavailable` saying why (docs/collectors.md, "GPU").
struct gpu_device {
  std::string id;      ///< the DRM card: "card0"
  std::string driver;  ///< amdgpu, i915, xe, v3d, nvidia, ...
  std::string vendor;  ///< the PCI vendor id ("1002") or empty
  /// % of the time the GPU (its busiest engine, for DRM fdinfo) was busy
  /// over the last interval.
  std::optional<double> busy_pct;
  std::string source;  ///< where busy_pct comes from: gpu_busy_percent, fdinfo; empty: none
  std::optional<double> vram_used_mb, vram_total_mb;
  /// The part of busy_pct that lull's leases' processes caused; null when
  /// it cannot be told.
  std::optional<double> leased_pct;
  /// The owner's use: what the other processes keep busy (for fdinfo, the
  /// busiest engine of theirs; else busy_pct minus leased_pct), all of
  /// busy_pct when the leases' share cannot be told, and null while it is
  /// not known yet (the first sample).
  std::optional<double> owner_pct;
  std::string unavailable; ///< why busy_pct (or leased_pct) is null; empty when known
};

nlohmann::json to_json(const gpu_device& g);
/// The list, or null when it is empty.
nlohmann::json gpus_json(const std::vector<gpu_device>& gpus);
/// A GPU list as a snapshot or an assessment carries it: at most
/// host_snapshot_limits::max_gpus entries with an id, texts bounded,
/// figures out of range dropped. Anything but an array: none.
std::vector<gpu_device> gpus_from_json(const nlohmann::json& j);

struct host_snapshot {
  std::string host_id;
  std::int64_t collected_at = 0; ///< unix seconds, UTC on the wire
  // cpu
  std::optional<double> cpu_pct;
  std::vector<std::optional<double>> cpu_per_core_pct;
  std::optional<int> cpu_count;
  std::optional<double> cpu_temp_c;
  std::optional<double> cpu_freq_mhz;
  std::optional<throttle_flags> throttling;
  // load
  std::optional<double> load1, load5, load15;
  // memory
  std::optional<std::uint64_t> mem_total_bytes;
  std::optional<std::uint64_t> mem_available_bytes;
  std::optional<double> mem_used_pct;
  std::optional<double> mem_available_pct;
  std::optional<std::uint64_t> swap_total_bytes;
  std::optional<std::uint64_t> swap_used_bytes;
  std::optional<double> swap_used_pct;
  // disks, network
  std::vector<disk_usage> disks;
  std::optional<std::uint64_t> net_rx_bytes;
  std::optional<std::uint64_t> net_tx_bytes;
  std::optional<double> net_rx_bytes_per_sec;
  std::optional<double> net_tx_bytes_per_sec;
  std::vector<net_interface> interfaces;
  // uptime
  std::optional<double> uptime_sec;
  std::optional<std::int64_t> boot_time;
  /// lull's own load on this host; absent from agents that do not measure it.
  std::optional<leased_load> leased;
  /// Pressure stall information; null where the kernel offers none
  /// (`pressure_unavailable` says why: a kernel without PSI, or a Raspberry
  /// Pi kernel booted without psi=1).
  std::optional<host_pressure> pressure;
  std::string pressure_unavailable;
  /// Power supplies; null on a host that reports none (a desktop, a Pi).
  std::optional<host_power> power;
  /// Somebody at the host; null with `owner_unavailable` saying why (a
  /// headless host: no login session, or none lulld may read).
  std::optional<owner_presence> owner;
  std::string owner_unavailable;
  /// GPUs, one per DRM card that is a GPU; empty (null on the wire) on a host
  /// with none, or none lulld may read: `gpu_unavailable` says why.
  std::vector<gpu_device> gpus;
  std::string gpu_unavailable;
  /// Data-quality and collector errors, e.g. "cpu_temp_c: 130.5 outside 0-120".
  std::vector<std::string> errors;
};

/// What one snapshot may carry of free text and lists. A snapshot comes from
/// whoever may publish on stats/host/<h> (anyone on loopback in open mode),
/// so longer lists are cut and longer texts truncated when it is decoded: a
/// host's snapshot costs lulld at most a few kB whatever its agent sends
/// (docs/security.md, "Budgets").
namespace host_snapshot_limits {
inline constexpr std::size_t max_errors = 16;       ///< the last says how many more there were
inline constexpr std::size_t max_error_bytes = 256; ///< each, "..." at the end when cut
inline constexpr std::size_t max_disks = 32;
inline constexpr std::size_t max_interfaces = 64;
inline constexpr std::size_t max_name_bytes = 256; ///< a mount or an interface name
inline constexpr std::size_t max_cores = 4096;     ///< per-core figures (cpu.count's bound)
inline constexpr std::size_t max_leases = 256;     ///< leased.per_lease entries
inline constexpr std::size_t max_lease_text_bytes = 256; ///< lease_id, source, refused
inline constexpr std::size_t max_status_bytes = 32;       ///< power.battery_status, owner.source
inline constexpr std::size_t max_gpus = 16;               ///< gpus entries
inline constexpr std::size_t max_gpu_text_bytes = 32;     ///< gpus[].id, driver, vendor, source
} // namespace host_snapshot_limits

/// `s` cut to at most `max` bytes (max >= 4) at a UTF-8 character
/// boundary, ending in "..." when it was cut.
std::string bounded_text(std::string s, std::size_t max);

/// A snapshot's `errors` as lull keeps them: the strings of the list (other
/// values skipped), at most host_snapshot_limits::max_errors of at most
/// max_error_bytes each; when there were more, the last one kept says how
/// many ("and 984 more errors"). Not a list: none.
std::vector<std::string> bounded_errors(const nlohmann::json& errors);

nlohmann::json to_json(const host_snapshot& s);

/// Reads a snapshot back, its text and lists bounded (host_snapshot_limits);
/// throws nlohmann::json::exception on a malformed one.
host_snapshot host_snapshot_from_json(const nlohmann::json& j);

} // namespace lull
