#include "src/stats/rolling_window.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

namespace lull {

nlohmann::json to_json(const window_summary& s) {
  return {{"count", s.count}, {"avg", s.avg}, {"min", s.min}, {"max", s.max},
          {"p95", s.p95},     {"last", s.last}, {"span_sec", s.span_sec}};
}

void rolling_window::add(double t, double value) {
  samples_.push_back({t, value});
  while (!samples_.empty() && samples_.front().t <= t - window_sec_)
    samples_.pop_front();
}

std::optional<window_summary> rolling_window::summary(double now,
                                                      std::optional<double> range_sec) const {
  double from = now - std::min(range_sec.value_or(window_sec_), window_sec_);
  std::vector<double> vals;
  window_summary s;
  double first_t = 0, last_t = 0;
  for (auto& x : samples_) {
    if (x.t <= from || x.t > now)
      continue;
    if (vals.empty()) {
      s.min = s.max = x.v;
      first_t = x.t;
    }
    vals.push_back(x.v);
    s.min = std::min(s.min, x.v);
    s.max = std::max(s.max, x.v);
    s.avg += x.v;
    s.last = x.v;
    last_t = x.t;
  }
  if (vals.empty())
    return std::nullopt;
  s.count = vals.size();
  s.avg /= static_cast<double>(s.count);
  s.span_sec = last_t - first_t;
  s.p95 = percentile(std::move(vals), 95);
  return s;
}

void series_store::add(const std::string& series, double t, std::optional<double> value) {
  if (!value)
    return;
  auto it = series_.find(series);
  if (it == series_.end())
    it = series_.emplace(series, rolling_window(window_sec_)).first;
  it->second.add(t, *value);
}

std::optional<window_summary> series_store::summary(const std::string& series, double now,
                                                    std::optional<double> range_sec) const {
  auto it = series_.find(series);
  if (it == series_.end())
    return std::nullopt;
  return it->second.summary(now, range_sec);
}

nlohmann::json series_store::summaries(double now, std::optional<double> range_sec) const {
  auto out = nlohmann::json::object();
  for (auto& [name, w] : series_)
    if (auto s = w.summary(now, range_sec))
      out[name] = to_json(*s);
  return out;
}

} // namespace lull
