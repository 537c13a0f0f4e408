#pragma once
/// Directory sizes (lull's data dir, a worker's runtime dir) by walking the
/// tree: cached and rate-limited, since a walk over a big tree on an SD card
/// costs far more than every /proc read of a sample together. A walk stops at
/// its deadline or entry budget and says so (`complete: false`).

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "src/stats/collector_guard.hpp"

namespace lull {

struct dir_size {
  std::string path;
  std::optional<std::uint64_t> bytes; ///< null when the directory is missing
  std::uint64_t files = 0;
  bool complete = true;      ///< false when the walk hit its deadline or budget
  double walked_at = 0;      ///< monotonic seconds
  double walk_ms = 0;
  std::optional<std::string> error;
};

nlohmann::json to_json(const dir_size& d);

class dir_sizer {
public:
  /// `min_interval_sec`: a directory is walked at most this often; between
  /// walks its cached size is returned.
  dir_sizer(double min_interval_sec, std::size_t max_entries, mono_clock_fn clock);

  /// The size of `path`, walking it only when its cache is older than the
  /// minimum interval. `deadline` (monotonic seconds) bounds the walk.
  const dir_size& size(const std::string& path, double deadline);

  std::uint64_t walks() const { return walks_; }

private:
  dir_size walk(const std::string& path, double deadline);

  double min_interval_sec_;
  std::size_t max_entries_;
  mono_clock_fn clock_;
  std::map<std::string, dir_size> cache_;
  std::uint64_t walks_ = 0;
};

} // namespace lull
