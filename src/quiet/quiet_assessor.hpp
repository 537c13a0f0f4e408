#pragma once
/// The quiet assessor's core: turns host snapshots (this host's and other
/// hosts' agents') and bus stats into a QuietAssessment per host. Plain class,
/// clock injected; the actor only feeds it messages and publishes results.
///
/// Scoring. Every input becomes a pressure p in [0, 1] along its thresholds:
///   floor -> 0, quiet -> 0.25, busy -> 0.5, panic -> 1 (linear between),
/// (reversed for disk free, where less is worse). The score is
///   100 * (1 - max p) - 5 * (sum of the other p), clamped to 0-100,
/// so the worst input decides and the rest nudge. With the default state
/// bands (QUIET >= 75, NORMAL >= 50, else BUSY) an input at its quiet
/// threshold sits on the QUIET edge and one at its busy threshold on the BUSY
/// edge, which keeps the config's numbers meaning what they say.
///
/// Whose load (docs/collectors.md): CPU and memory are scored on *foreign* load, what
/// the host does minus what lull's leases (and lulld) use, as the snapshot's
/// `leased` object reports it; temperature, swap, disk and a memory total at
/// its panic level use the host's totals, since they hurt the machine whoever
/// causes them.
///
/// PANIC: any input at or past its panic threshold, or the Pi firmware
/// reporting under-voltage/throttling is not PANIC but counts as busy. After a
/// PANIC the host cannot be QUIET for `cooldown_sec`.
///
/// Hysteresis: a host enters a better state only `hysteresis` points past the
/// band's edge and leaves it only that far below, and leaves PANIC only once
/// every input is clearly (5 %) below its panic threshold.
///
/// Streaks: consecutive QUIET assessments form a streak (start, end, avg and
/// min score), closed when the host leaves QUIET.

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/host_snapshot.hpp"
#include "messages/quiet.hpp"
#include "src/stats/rolling_window.hpp"

namespace lull {

/// One input's thresholds; `floor` is where it starts to count at all.
struct input_thresholds {
  double floor, quiet, busy, panic;
};

/// Defaults that suit a Raspberry Pi 4 and a NUC alike: the Pi's firmware
/// soft-limits at 80 C and throttles at 85 C, so temperature is busy at 75
/// and PANIC at 85; CPU is averaged over 2 minutes so a short spike (apt, a
/// cron job) does not block a lease.
struct quiet_thresholds {
  input_thresholds cpu{0, 30, 75, 95};          ///< other processes' CPU average, % of all cores
  input_thresholds mem{40, 70, 85, 95};         ///< used %
  input_thresholds disk_free{50, 20, 10, 3};    ///< free % of the fullest mount (reversed)
  input_thresholds swap{5, 25, 50, 90};         ///< used %
  input_thresholds temp{45, 65, 75, 85};        ///< CPU temperature, C
  input_thresholds bus_rps{0, 50, 300, 2000};   ///< messages/s through lull's bridge
  input_thresholds bus_p95{0, 50, 250, 2000};   ///< ms
  /// Pressure stall over the last minute (PSI `some` avg60), % of the time
  /// some task waited. Memory and IO stalls count whoever causes them (the
  /// owner feels a leased job's reclaim and IO too); CPU stall counts only
  /// while no leased work runs, whose own waits would otherwise count. A
  /// panic threshold of 100 is never passed: only a host stalled the whole
  /// minute reaches it.
  input_thresholds psi_cpu{10, 40, 80, 100};
  input_thresholds psi_memory{0, 10, 40, 80};
  input_thresholds psi_io{0, 20, 60, 100};
  double quiet_score = 75;   ///< score >= this: QUIET
  double normal_score = 50;  ///< score >= this: NORMAL, else BUSY
  double hysteresis = 5;     ///< points
  double cooldown_sec = 120; ///< after a PANIC (as the lease manager's)
  double cpu_window_sec = 120;
  /// The CPU average calls PANIC only once its samples span this much (or
  /// half the window, when that is shorter).
  double cpu_panic_warmup_sec = 30;
  /// Score lull's own bus traffic (stats/bus) as host load. Off by default:
  /// lull's protocol traffic is lull's, not the owner's (docs/collectors.md).
  bool bus_inputs = false;
  double bus_fresh_sec = 60; ///< bus stats older than this are ignored
  double stale_after_sec = 30; ///< a host without a snapshot this long is BUSY
  /// Somebody used the host less than this ago (its snapshot's `owner`):
  /// the lease table holds work below HIGH, the assessment says so in its
  /// reasons. 0: the owner's presence is not used.
  double owner_idle_sec = 300;
};

struct quiet_streak {
  std::string host_id;
  std::int64_t start = 0, end = 0; ///< unix seconds; end 0 while open
  double avg_score = 0, min_score = 100;
  std::uint64_t samples = 0;
};

nlohmann::json to_json(const quiet_streak& s);

/// Pressure of `x` along `t` (0 .. 1); reversed when less is worse.
double pressure(double x, const input_thresholds& t, bool reversed = false);

class quiet_assessor {
public:
  using mono_fn = std::function<double()>;
  using unix_fn = std::function<std::int64_t()>;

  quiet_assessor(quiet_thresholds th, mono_fn mono, unix_fn unix_now);

  /// Assesses a host from its latest snapshot.
  quiet_assessment assess(const host_snapshot& s);

  /// Hosts whose last snapshot is older than `stale_after_sec`, assessed BUSY
  /// (lull cannot call a host it does not hear from quiet). Each host is
  /// reported once until it speaks again.
  std::vector<quiet_assessment> check_stale();

  /// Drops everything kept for a host (its agent is gone).
  void forget(const std::string& host_id) { hosts_.erase(host_id); }

  /// Bus stats of a host's lulld (stats/bus carries host_id).
  void on_bus(const std::string& host_id, std::optional<double> rps,
              std::optional<double> p95_ms);

  /// Closed streaks of a host, oldest first (at most 100 kept).
  const std::deque<quiet_streak>& streaks(const std::string& host_id) const;
  std::optional<quiet_streak> open_streak(const std::string& host_id) const;

  const quiet_thresholds& thresholds() const { return th_; }

private:
  double cpu_warmup_sec() const {
    return std::min(th_.cpu_panic_warmup_sec, 0.5 * th_.cpu_window_sec);
  }
  struct bus_input {
    std::optional<double> rps, p95_ms;
    double at = 0;
  };
  struct host_state {
    std::optional<quiet_state> state;
    std::optional<double> cooldown_until_mono;
    std::optional<std::int64_t> cooldown_until_unix;
    rolling_window cpu{3600};          ///< the whole host
    rolling_window cpu_foreign{3600};  ///< the host minus lull's leases and lulld
    rolling_window cpu_leased{3600};
    std::optional<quiet_streak> streak;
    std::deque<quiet_streak> closed;
    std::optional<bus_input> bus;
    double last_snapshot = 0;
    bool stale = false;
  };

  quiet_state banded(double score, std::optional<quiet_state> current) const;

  quiet_thresholds th_;
  mono_fn mono_;
  unix_fn unix_;
  std::map<std::string, host_state> hosts_;
};

} // namespace lull
