#pragma once
/// Runs one collector isolated from the others (the predecessor's "each
/// collector isolated with timeout + exception capture"): an exception becomes
/// a recorded error, a run longer than its timeout is recorded as an overrun
/// with its duration, and the caller carries on with the next collector.
/// Actors own one guard per collector and report `status()` on a debug topic.
///
/// A guard cannot pre-empt a synchronous read; collectors that can run long
/// (directory walks) take `deadline()` and stop themselves when it passes.

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "messages/util.hpp"

namespace lull {

using mono_clock_fn = std::function<double()>; ///< monotonic seconds

struct collector_options {
  std::string name;
  double interval_sec = 2.0;
  double jitter = 0.1;      ///< +/- fraction of the interval
  double timeout_sec = 1.0; ///< a run longer than this is an overrun
};

struct collector_status {
  std::string name;
  std::uint64_t runs = 0, failures = 0, overruns = 0;
  double last_duration_ms = 0;
  bool last_ok = true;
  std::optional<std::string> last_error; ///< of the last failing or overrunning run
};

nlohmann::json to_json(const collector_status& s);

class collector_guard {
public:
  collector_guard(collector_options opts, mono_clock_fn clock);

  /// Runs `fn`; returns an error text ("host: threw ...", "dirs: took 1520 ms,
  /// timeout 1000 ms") for the snapshot's `errors`, or nullopt when it went well.
  std::optional<std::string> run(const std::function<void()>& fn);

  /// When a cooperative collector should give up (monotonic seconds).
  double deadline() const { return started_ + opts_.timeout_sec; }

  /// Delay until the next run: the interval +/- jitter, so collectors of a
  /// fleet started together do not sample (and publish) in lock step.
  std::chrono::milliseconds next_delay();

  const collector_status& status() const { return status_; }
  const collector_options& options() const { return opts_; }

private:
  collector_options opts_;
  mono_clock_fn clock_;
  collector_status status_;
  double started_ = 0;
  std::minstd_rand rng_;
};

// steady_seconds(), the process's monotonic clock: messages/util.hpp.

} // namespace lull
