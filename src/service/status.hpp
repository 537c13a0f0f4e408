#pragma once
/// The line `systemctl status lulld` shows as its Status: (sd_notify's
/// STATUS=): where the broker stands and what the scheduler holds.
///
///   connected to tcp://nuc.local:1883; 3 hosts, 2 active leases, 5 jobs queued
///   broker tcp://nuc.local:1883 unreachable since 2025-03-01 10:04:05 UTC; 3 hosts, ...
///   connecting to tcp://nuc.local:1883
///
/// Plain C++ with the time passed in, so tests drive it directly.

#include <cstdint>
#include <optional>
#include <string>

namespace lull {

class service_status {
public:
  /// A lull that connects to `broker`, started at `started` (unix seconds).
  /// `scheduler`: it runs the lease manager, so hosts, leases and jobs are shown.
  service_status(std::string broker, bool scheduler, std::int64_t started);

  /// While lulld has never reached its broker, it reads "connecting" for
  /// this long after the start, then "unreachable since" the start.
  static constexpr std::int64_t connect_grace_sec = 3;

  /// The bridge (re)connected (true) or lost or failed to reach the broker.
  void connection(bool up, std::int64_t now);
  /// What the lease manager holds.
  void counts(std::uint64_t hosts, std::uint64_t active_leases, std::uint64_t queued_jobs);

  /// The Status: line at `now`: one line, no newline.
  std::string line(std::int64_t now) const;

private:
  std::string broker_;
  bool scheduler_;
  std::int64_t started_;
  bool up_ = false;
  bool ever_up_ = false;
  std::optional<std::int64_t> down_since_; ///< after a connection was lost
  bool counted_ = false;
  std::uint64_t hosts_ = 0, leases_ = 0, queued_ = 0;
};

} // namespace lull
