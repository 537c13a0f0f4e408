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

/// One reason of the health rollup, with the key a page of them is cut at.
struct health_reason {
  int section = 0;       ///< 0: a host's, 1: lulld's own (persister, lease and job writes)
  std::string host;      ///< the host, for section 0
  std::size_t index = 0; ///< its place among its section's (and host's) reasons
  std::string text;      ///< at most about 1 KiB (clip_text)
};

struct health_report {
  std::string status; ///< ok, warn, error: over every reason, whatever page shows them
  std::vector<health_reason> reasons; ///< hosts by id, then lulld's own
};

health_report assess_health_report(const std::map<std::string, host_health_input>& hosts,
                                   const persister_health_input& p, std::int64_t now,
                                   const health_thresholds& t = {});

/// {"status": .., "reasons": [texts]}: the whole report.
nlohmann::json assess_health(const std::map<std::string, host_health_input>& hosts,
                             const persister_health_input& p, std::int64_t now,
                             const health_thresholds& t = {});

} // namespace lull
