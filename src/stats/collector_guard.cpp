#include "src/stats/collector_guard.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>

namespace lull {

nlohmann::json to_json(const collector_status& s) {
  return {{"name", s.name},
          {"runs", s.runs},
          {"failures", s.failures},
          {"overruns", s.overruns},
          {"last_duration_ms", std::round(s.last_duration_ms * 1000.0) / 1000.0},
          {"last_ok", s.last_ok},
          {"last_error", s.last_error ? nlohmann::json(*s.last_error) : nlohmann::json(nullptr)}};
}

collector_guard::collector_guard(collector_options opts, mono_clock_fn clock)
  : opts_(std::move(opts)),
    clock_(clock ? std::move(clock) : mono_clock_fn(steady_seconds)),
    // The seed takes the low bits of the clock in microseconds: the clock
    // itself passes 2^32 us after 72 minutes of uptime.
    rng_(static_cast<unsigned>(std::hash<std::string>{}(opts_.name)
                               ^ static_cast<std::uint64_t>(steady_seconds() * 1e6))) {
  status_.name = opts_.name;
}

std::optional<std::string> collector_guard::run(const std::function<void()>& fn) {
  started_ = clock_();
  std::optional<std::string> err;
  try {
    fn();
  } catch (const std::exception& e) {
    err = opts_.name + ": threw " + e.what();
  } catch (...) {
    err = opts_.name + ": threw a non-standard exception";
  }
  double took = clock_() - started_;
  ++status_.runs;
  status_.last_duration_ms = took * 1000.0;
  if (err) {
    ++status_.failures;
  } else if (took > opts_.timeout_sec) {
    ++status_.overruns;
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s: took %.0f ms, timeout %.0f ms", opts_.name.c_str(),
                  took * 1000.0, opts_.timeout_sec * 1000.0);
    err = buf;
  }
  status_.last_ok = !err;
  if (err)
    status_.last_error = err;
  return err;
}

std::chrono::milliseconds collector_guard::next_delay() {
  double j = std::clamp(opts_.jitter, 0.0, 0.5);
  std::uniform_real_distribution<double> dist(1.0 - j, 1.0 + j);
  double ms = opts_.interval_sec * 1000.0 * dist(rng_);
  return std::chrono::milliseconds(std::max<long long>(1, std::llround(ms)));
}

} // namespace lull
