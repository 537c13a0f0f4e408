#pragma once
/// The bus's "API stats" (the predecessor's request middleware): messages in
/// and out per second, error rate, p50/p95 latency and messages in flight,
/// over the interval since the previous report. The MQTT bridge owns one and
/// feeds it; the bus stats actor asks for a report and publishes it.
///
/// Latency has two parts, both in milliseconds:
///  - dispatch: from the Paho callback receiving a message to its being in
///    the subscribers' mailboxes (the bridge routes on Paho's thread, so
///    this is the routing itself: topic matching and the mailbox hand-off);
///  - handling: what a handler reports for its own work (a lease decision).
/// `p50_ms`/`p95_ms` are of handling when handlers reported in the interval,
/// else of dispatch.

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lull {

class bus_meter {
public:
  explicit bus_meter(std::size_t max_latency_samples = 4096)
    : max_samples_(max_latency_samples) {}

  /// Starts the first interval (monotonic seconds).
  void start(double now) { last_report_ = now; }

  void on_in() { ++in_; }
  void on_out() { ++out_; }
  void on_unrouted() { ++unrouted_; }
  /// A message lull rejected (bad payload, failed handling).
  void on_error() { ++errors_; }
  void on_dispatch(double latency_sec) { push(dispatch_, latency_sec); }
  void on_handled(double latency_sec, bool ok) {
    push(handled_, latency_sec);
    if (!ok)
      ++errors_;
  }

  std::uint64_t total_in() const { return total_in_ + in_; }
  std::uint64_t total_out() const { return total_out_ + out_; }

  /// The report for the interval ending at `now` (monotonic seconds), and a
  /// new interval starts. `in_flight` is a gauge the caller measures.
  nlohmann::json report(double now, std::uint64_t in_flight, const std::string& host_id,
                        std::int64_t now_unix);

private:
  void push(std::vector<double>& v, double x);

  std::size_t max_samples_;
  std::uint64_t in_ = 0, out_ = 0, errors_ = 0, unrouted_ = 0;
  std::uint64_t total_in_ = 0, total_out_ = 0, total_errors_ = 0;
  std::vector<double> dispatch_, handled_;
  double last_report_ = -1;
};

} // namespace lull
