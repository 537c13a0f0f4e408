#pragma once
/// How the persister writes samples and what it keeps (persist.* and
/// retention.*). Durations in seconds.

#include <cstddef>

namespace lull {

struct persist_settings {
  double flush_interval_sec = 5;            ///< samples are written in one transaction this often
  std::size_t queue_bound = 200000;         ///< samples held while the disk fails
  double raw_retention_sec = 7 * 86400;     ///< raw samples kept
  double rollup_retention_sec = 30 * 86400; ///< 5-minute rollups kept (hourly: for good)
  double quiet_streaks_retention_sec = 364 * 86400; ///< quiet streaks kept (52 weeks)
  double retention_interval_sec = 3600;     ///< how often the purge runs
};

} // namespace lull
