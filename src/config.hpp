#pragma once
/// lulld's configuration: every key can come from a TOML file, a LULL_*
/// environment variable or a command-line flag (flag > env > file > default).
/// A bad value is reported with the key, its source and what was expected.

#include <array>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace lull {

struct config {
  std::string broker;            ///< MQTT URI; empty: lulld starts a local Mosquitto
  std::string host_id;           ///< defaults to the sanitized hostname
  std::string config_file;
  std::string data_dir;          ///< defaults to $LULL_DATA_DIR-less XDG state dir
  std::string db;                ///< defaults to <data_dir>/lull.db
  std::string topic_prefix;
  std::string client_id;         ///< defaults to lulld-<host_id>
  std::string username;
  std::string password;
  double interval_sec = 2.0;     ///< host collector interval
  std::string proc_root = "/";   ///< root of /proc and /sys (fixtures in tests)
  std::string broker_config_dir; ///< where local.conf lives
  int local_broker_port = 1883;  ///< port of the broker lulld starts itself; 0 = any free
  std::string log_level = "info";

  // Roles: which actors this lulld runs.
  std::string roles = "all"; ///< all | collectors | assessor
  bool runs_collectors() const { return roles != "assessor"; }
  bool runs_assessor() const { return roles != "collectors"; }

  // Collectors (all intervals in seconds).
  double process_interval_sec = 2.0;
  std::vector<std::string> processes;   ///< watched names or pid files (lulld is always watched)
  double worker_interval_sec = 30.0;    ///< worker health sweep + registry summary
  double worker_stale_after_sec = 90.0;
  double bus_interval_sec = 5.0;
  double dir_interval_sec = 120.0;
  std::vector<std::string> dirs;        ///< directories to size; default: data_dir
  std::vector<std::string> mounts;      ///< default: / and data_dir's mount
  double collector_jitter = 0.1;        ///< +/- fraction of each interval
  double collector_timeout_sec = 1.0;
  double window_sec = 3600.0;

  // Quiet assessor thresholds: floor, quiet, busy, panic for each input.
  std::array<double, 4> quiet_cpu{0, 30, 75, 95};
  std::array<double, 4> quiet_mem{40, 70, 85, 95};
  std::array<double, 4> quiet_disk_free{50, 20, 10, 3};
  std::array<double, 4> quiet_swap{5, 25, 50, 90};
  std::array<double, 4> quiet_temp{45, 65, 75, 85};
  std::array<double, 4> quiet_bus_rps{0, 50, 300, 2000};
  std::array<double, 4> quiet_bus_p95_ms{0, 50, 250, 2000};
  double quiet_cooldown_sec = 300;
  double quiet_hysteresis = 5;
  double quiet_stale_after_sec = 30;  ///< a host silent this long is assessed BUSY

  // Home Assistant discovery.
  bool ha_enabled = true;
  std::string ha_prefix = "homeassistant";
};

/// What a config key is: its name in the file (dotted for TOML tables), the
/// environment variable, the flag, and a short description for --help.
struct config_key {
  std::string name;
  std::string env;
  std::string flag;
  std::string help;
};

const std::vector<config_key>& config_keys();

struct config_error {
  int exit_code;       ///< 2 for a bad value or flag, 0 for --help/--version
  std::string message; ///< printed as is
};

/// Builds the configuration from argv, an environment and the file named by
/// --config or LULL_CONFIG. Never throws.
std::variant<config, config_error> load_config(int argc, const char* const* argv,
                                               const std::map<std::string, std::string>& env);

/// The process environment as a map (LULL_* variables only).
std::map<std::string, std::string> lull_environment();

/// Parses "2s", "500ms", "1.5m", "1h", "7d" or a bare number of seconds.
std::optional<double> parse_duration_sec(const std::string& text);

} // namespace lull
