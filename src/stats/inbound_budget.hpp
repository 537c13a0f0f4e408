#pragma once
/// What lulld takes in, bounded before anything is decoded. Every inbound
/// message is sorted into a lane by its topic (lease, job, control, history,
/// stats, other) and charged to a source: the identity its topic carries
/// (scheduler/<user>/..., history/<user>/request, stats/worker/<id>,
/// stats/host/<h>; the broker's ACL ties these to a login in secure mode),
/// or "" where the topic carries none (open mode's scheduler/lease/...).
///
/// Two checks, in order:
///  1. rate: a token bucket per (lane, source), so one client's flood is
///     shed at the door while another's requests pass;
///  2. room: a lane holds at most max_msgs messages and max_bytes payload
///     bytes that its actors have not finished with. A message admitted
///     carries a hold; the lane's count drops when the last copy of the
///     message is gone. Lease heartbeats and releases (the "keep" class) may
///     fill the lease lane; anything else there stops at keep_share of it,
///     so a flood of requests never crowds out the heartbeats that keep
///     granted work alive.
///
/// What is shed is counted per lane and per source; report() names the
/// sources that lost messages since it was last called (the router logs it
/// every 10 s). Plain C++: the caller passes the monotonic time, and holds
/// one lock across admit() and report() (the holds' releases are atomic).

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace lull {

enum class inbound_lane : std::uint8_t { lease, job, control, history, stats, other };
constexpr std::size_t inbound_lane_count = 6;
const char* lane_name(inbound_lane lane);

struct inbound_class {
  inbound_lane lane = inbound_lane::other;
  bool keep = false;  ///< a lease's heartbeat or release: shed last
  std::string source; ///< the identity in the topic, "" when it has none
  /// lulld's own retained state read back by another role (a host's lease
  /// list, a quiet assessment): no rate, only room.
  bool exempt = false;
};

/// The lane and source of a topic relative to lull's prefix.
inbound_class classify_inbound(std::string_view relative_topic);

struct lane_limits {
  double rate = 100;  ///< messages per second per named source
  double burst = 200; ///< bucket size per named source
  /// The unnamed source "" is every client at once (open mode's topics
  /// carry no identity), so it gets a lane-wide budget instead.
  double open_rate = 2000, open_burst = 4000;
  std::size_t max_msgs = 1000;             ///< admitted and not yet handled
  std::size_t max_bytes = 4 * 1024 * 1024; ///< payload bytes of those
};

struct budget_options {
  std::array<lane_limits, inbound_lane_count> lanes{};
  /// Sources with a bucket at once, per lane; past it, new sources share one
  /// bucket (an open-mode client making up identities gains nothing).
  std::size_t max_sources = 4096;
  double keep_share = 0.75;
  static budget_options defaults();
};

class inbound_budget {
public:
  enum class verdict { accept, rate_limited, lane_full };

  explicit inbound_budget(budget_options opts = budget_options::defaults());

  struct decision {
    verdict v = verdict::accept;
    std::shared_ptr<void> hold; ///< set on accept: the message counts until it is let go
  };
  decision admit(const inbound_class& c, std::size_t bytes, double now);

  struct lane_counts {
    std::uint64_t queued_msgs = 0, queued_bytes = 0, admitted = 0, rate_limited = 0,
                  lane_full = 0;
  };
  lane_counts counts(inbound_lane lane) const;
  std::uint64_t shed_total() const;

  /// Lines naming what was shed since the last call ("dropped 12034
  /// messages from 'x' on the history lane (rate) in the last 10 s"), the
  /// busiest sources first, at most `max_lines` (then one "and N more").
  std::vector<std::string> report(double now, std::size_t max_lines = 5);

  const budget_options& options() const { return opts_; }

private:
  struct lane_state {
    std::atomic<std::int64_t> msgs{0}, bytes{0};
  };
  struct bucket {
    double tokens = 0, last = 0;
  };
  struct lane_data {
    std::shared_ptr<lane_state> live = std::make_shared<lane_state>();
    std::map<std::string, bucket, std::less<>> buckets;
    bucket shared; ///< for sources past max_sources
    std::uint64_t admitted = 0, rate_limited = 0, lane_full = 0;
  };
  bool take_token(lane_data& l, const lane_limits& lim, const std::string& source, double now);

  budget_options opts_;
  std::array<lane_data, inbound_lane_count> lanes_;
  /// Shed since the last report, per (lane, source, why); bounded.
  std::map<std::string, std::uint64_t> shed_since_;
  std::uint64_t shed_unnamed_ = 0; ///< shed past the bound of shed_since_
  double last_report_ = 0;
};

} // namespace lull
