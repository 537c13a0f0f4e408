#pragma once
/// The health rollup answered on history/request {"kind":"health"}: ok, warn
/// or error with the reasons, from what lull knows right now.

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lull {

struct host_health_input {
  std::int64_t last_seen = 0;              ///< unix seconds of the last snapshot
  std::vector<std::string> errors;         ///< the snapshot's `errors`
  std::map<std::string, double> disk_free_pct; ///< per mount
};

struct persister_health_input {
  std::size_t queued = 0, queue_bound = 0;
  std::uint64_t dropped = 0, write_errors = 0;
  std::int64_t last_flush_ok = 0; ///< unix seconds; 0 = never
  std::int64_t flush_interval_sec = 5;
  std::string last_error;
  /// Lease or job writes fail now (the lease manager's store.failing), and why.
  bool state_writes_failing = false;
  std::string state_error;
};

struct health_thresholds {
  std::int64_t stale_after_sec = 30;
  double disk_warn_pct = 10, disk_error_pct = 5;
};

nlohmann::json assess_health(const std::map<std::string, host_health_input>& hosts,
                             const persister_health_input& p, std::int64_t now,
                             const health_thresholds& t = {});

} // namespace lull
