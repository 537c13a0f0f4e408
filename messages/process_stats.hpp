#pragma once
/// Metrics of one watched process (lulld itself, or a name / pid file from
/// config), published on `stats/process/<host_id>/<name>`. A process that is
/// not running has `running: false` and null metrics.

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lull {

struct process_stats {
  std::string host_id;
  std::string name;      ///< topic level: the watched name, or the pid file's stem
  std::string watch;     ///< what config asked for: "self", a name, or a pid file
  std::int64_t collected_at = 0;
  bool running = false;
  std::optional<std::int64_t> pid;
  std::optional<std::uint64_t> rss_bytes;
  std::optional<double> cpu_pct;   ///< of one core, since the previous sample
  std::optional<int> threads;
  std::optional<int> open_fds;     ///< null when /proc/<pid>/fd is not readable
  std::optional<double> uptime_sec;
  std::uint64_t restarts = 0;      ///< new pids seen for the same watch
  std::vector<std::string> errors;
};

nlohmann::json to_json(const process_stats& p);

} // namespace lull
