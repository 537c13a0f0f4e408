#pragma once
/// Quotas on stored series (docs/persistence.md, "Series per source"). The
/// names of a series come from whoever publishes (a worker's status, a
/// process's stats), and each new name is a row in `series`, an entry in the
/// rollup accumulator and one in the store's id cache. So a source -- a host
/// and group such as ("nuc", "worker:w1") or ("nuc", "host") -- may name at
/// most `per_source` series, and all sources together at most `total`; a
/// new name past either cap is refused (its points are dropped and counted).
/// A series not seen for the retention period is let go (evict_silent),
/// which frees its slot, so what the persister holds per series stays below
/// per_source x sources and below `total`, whatever is published.
///
/// Plain C++: the caller passes the time (unix seconds, as received).

#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "src/store/store.hpp"

namespace lull {

class series_quota {
public:
  struct limits {
    std::size_t per_source = 256; ///< limits.max_series_per_worker
    std::size_t total = 20000;    ///< limits.max_series
  };
  explicit series_quota(limits l) : limits_(l) {}

  /// Points of a new name that one batch refused, for the log.
  struct refusal {
    std::string host, group, metric; ///< the first name refused
    std::size_t dropped = 0;         ///< points this batch refused for the source
    bool by_total = false;           ///< refused by `total` (else by `per_source`)
    std::size_t source_series = 0;   ///< the series the source has now
  };
  /// Keeps the points whose series is known or still fits, in order, and
  /// refuses the rest (counted in refused()). Returns the refusals worth a
  /// log line: at most one a minute per source at its own cap, and one a
  /// minute for all refusals by `total`.
  std::vector<refusal> admit(std::vector<sample_point>& points, std::int64_t now);

  struct series_name {
    std::string host, group, metric;
  };
  /// Forgets every series last seen before `before` and returns them, so
  /// the caller drops them from its caches too.
  std::vector<series_name> evict_silent(std::int64_t before);

  std::size_t series() const { return total_; } ///< series held now
  std::size_t sources() const { return sources_.size(); }
  /// Series `host`/`group` holds now.
  std::size_t series_of(const std::string& host, const std::string& group) const;
  std::uint64_t refused() const { return refused_; } ///< points refused so far
  std::uint64_t evicted() const { return evicted_; } ///< series let go so far
  const limits& caps() const { return limits_; }

private:
  static constexpr std::int64_t never = std::numeric_limits<std::int64_t>::min();
  struct source {
    std::string host, group;
    std::map<std::string, std::int64_t> last_seen; ///< metric -> unix seconds
    std::int64_t last_log = never;
  };
  limits limits_;
  std::map<std::string, source> sources_; ///< host \x1f group -> its series
  std::size_t total_ = 0;
  std::int64_t total_last_log_ = never;
  std::uint64_t refused_ = 0, evicted_ = 0;
};

} // namespace lull
