#pragma once
/// What the collectors sample and how often (interval, proc_root and
/// collectors.*): the host and process collectors, the worker registry and
/// the bus stats each take the part they use. All intervals in seconds.

#include <string>
#include <vector>

namespace lull {

struct collector_settings {
  double interval_sec = 2.0;           ///< host snapshots
  double process_interval_sec = 2.0;
  double worker_interval_sec = 30.0;   ///< worker health sweep + registry summary
  double worker_stale_after_sec = 90.0;
  double bus_interval_sec = 5.0;
  double dir_interval_sec = 120.0;     ///< at most one walk per directory this often
  std::vector<std::string> dirs;       ///< directories to size; lulld's default: data_dir
  std::vector<std::string> mounts;     ///< lulld's default: / and data_dir's mount
  std::vector<std::string> processes;  ///< watched names or pid files (lulld is always watched)
  double jitter = 0.1;                 ///< +/- fraction of each interval
  double timeout_sec = 1.0;            ///< a run longer than this is an overrun
  double window_sec = 3600.0;          ///< rolling in-memory window per series
  std::string proc_root = "/";         ///< root of /proc and /sys (fixtures in tests)
  /// Owner presence: root of /run/utmp and /dev (fixtures in tests), and
  /// whether logind is asked for the local seat sessions.
  std::string presence_root = "/";
  bool logind = true;
};

} // namespace lull
