#pragma once
/// Lease windows (docs/leases.md, "Windows"): the hours of the week in which
/// a host takes work below HIGH, in a named time zone, e.g.
///
///   Mon-Fri 22:00-07:00, Sat-Sun 00:00-24:00
///
/// An entry is `[days] [HH:MM-HH:MM]`: days are `Mon`, `Mon-Fri` or
/// `Fri-Mon` (omitted: every day), times are local wall-clock times, and a
/// window whose end is not after its start runs past midnight into the next
/// day (22:00-07:00). Times that a DST change skips start at the change;
/// times it repeats count once. Per host: `pi-a: Mon-Fri 22:00-07:00;
/// laptop: Sat-Sun` (a part without a host is every other host's).
///
/// Pure: every question takes the time it is about, so tests cross DST
/// changes with an injected clock.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace date {
class time_zone;
}

namespace lull {

class window_schedule {
public:
  /// Parses one host's entries; the error names the bad part.
  static std::variant<window_schedule, std::string> parse(std::string_view spec,
                                                          const date::time_zone* zone);
  /// True when `unix_sec` falls inside a window.
  bool open_at(std::int64_t unix_sec) const;
  /// The first second at or after `unix_sec` inside a window (itself when
  /// open now); nullopt for a schedule without windows.
  std::optional<std::int64_t> next_open(std::int64_t unix_sec) const;
  /// The first second at or after `unix_sec` outside every window, when
  /// open now (nullopt: always open).
  std::optional<std::int64_t> next_close(std::int64_t unix_sec) const;
  /// As written, normalised ("Mon-Fri 22:00-07:00, Sat-Sun 00:00-24:00").
  const std::string& text() const { return text_; }

private:
  struct entry {
    unsigned days = 0x7f; ///< bit d: the window starts on weekday d (0 = Sunday)
    int start_min = 0;    ///< minutes after local midnight
    int end_min = 1440;   ///< <= start_min: ends the next day
  };
  /// [start, end) in unix seconds of every window that starts on local days
  /// [from - 1, from + days].
  std::vector<std::pair<std::int64_t, std::int64_t>> spans(std::int64_t around,
                                                           int days) const;
  std::vector<entry> entries_;
  const date::time_zone* zone_ = nullptr;
  std::string text_;
};

/// `lease.windows` for the whole fleet.
struct lease_windows {
  std::optional<window_schedule> all;          ///< hosts not named below
  std::map<std::string, window_schedule> hosts; ///< by host id
  /// The schedule for `host`, or nullptr when it has none (always open).
  const window_schedule* for_host(const std::string& host) const;
  bool empty() const { return !all && hosts.empty(); }
};

/// Parses `lease.windows` in time zone `zone` ("" or "local": the system's).
std::variant<lease_windows, std::string> parse_lease_windows(std::string_view spec,
                                                             std::string_view zone);

/// Learned quiet windows: the share of time a host was QUIET in each local
/// hour of the week (docs/leases.md, "Learned quiet windows").
struct quiet_hour_map {
  /// [weekday, 0 = Sunday][local hour]: seconds QUIET and seconds observed.
  double quiet_sec[7][24] = {};
  double observed_sec[7][24] = {};
  double days_observed = 0;
  /// QUIET share of an hour, or nullopt when it was never observed.
  std::optional<double> share(int weekday, int hour) const;
};

/// The map from QUIET spans [start, end) (unix seconds) seen between `from`
/// and `to`, in `zone`'s local time. Spans may come in any order and
/// overlap: their union counts, at a cost of the hours it covers.
quiet_hour_map learn_quiet_hours(const std::vector<std::pair<std::int64_t, std::int64_t>>& quiet,
                                 std::int64_t from, std::int64_t to, const date::time_zone* zone);

/// The start of the first local hour from `now` on (the current one
/// included) whose QUIET share is at least `threshold`, within a week;
/// nullopt when there is none.
std::optional<std::int64_t> next_quiet_hour(const quiet_hour_map& m, std::int64_t now,
                                            const date::time_zone* zone,
                                            double threshold = 0.6);

/// The zone by IANA name ("Europe/Berlin"), "" / "local" for the system's;
/// nullptr (and `why`) when unknown.
const date::time_zone* find_time_zone(std::string_view name, std::string* why);
/// The zone's IANA name.
std::string zone_name(const date::time_zone* zone);

} // namespace lull
