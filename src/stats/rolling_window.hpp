#pragma once
/// A rolling in-memory window of one numeric series (the predecessor's 1 h
/// MetricsCollector history): samples older than the window fall off, and
/// avg/min/max/p95 are computed on request over the whole window or its most
/// recent part (cpu_avg_2m). Times are monotonic seconds, injected.

#include <cstddef>
#include <deque>
#include <map>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "messages/util.hpp"

namespace lull {

struct window_summary {
  std::size_t count = 0;
  double avg = 0, min = 0, max = 0, p95 = 0, last = 0;
  double span_sec = 0; ///< time between the oldest and newest sample used
};

nlohmann::json to_json(const window_summary& s);

class rolling_window {
public:
  explicit rolling_window(double window_sec = 3600.0) : window_sec_(window_sec) {}

  /// Adds a sample taken at `t` (monotonic seconds); drops expired ones.
  void add(double t, double value);

  /// Summary of the samples taken in (now - range_sec, now]; the whole window
  /// when range_sec is not given. nullopt when there are none.
  std::optional<window_summary> summary(double now,
                                        std::optional<double> range_sec = {}) const;

  std::size_t size() const { return samples_.size(); }
  double window_sec() const { return window_sec_; }

private:
  struct sample {
    double t;
    double v;
  };
  double window_sec_;
  std::deque<sample> samples_;
};

/// Named series, each with its own window; a null value adds nothing.
class series_store {
public:
  explicit series_store(double window_sec = 3600.0) : window_sec_(window_sec) {}

  void add(const std::string& series, double t, std::optional<double> value);
  std::optional<window_summary> summary(const std::string& series, double now,
                                        std::optional<double> range_sec = {}) const;
  /// {"series": {count, avg, min, max, p95, last, span_sec}, ...}
  nlohmann::json summaries(double now, std::optional<double> range_sec = {}) const;

private:
  double window_sec_;
  std::map<std::string, rolling_window> series_;
};

// percentile(): messages/util.hpp.

} // namespace lull
