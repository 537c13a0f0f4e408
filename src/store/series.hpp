#pragma once
/// Pure helpers of the persister: which numbers of a message become stored
/// series, summaries of a set of values, rollup accumulators and the
/// bucketing of history queries. No I/O; tests drive them directly.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/request.hpp"
#include "messages/topics.hpp"
#include "src/store/store.hpp"

namespace lull {

/// What a topic's messages are stored as: host + group ("host",
/// "quiet", "process:<name>", "bus", "worker:<id>").
struct series_source {
  std::string host;
  std::string group;
};

std::optional<series_source> classify_topic(const topic_names& topics, std::string_view topic,
                                            const std::string& local_host);

/// The numeric series of one message. Host snapshots keep a fixed set that
/// fits a week on an SD card; other groups keep their top-level numbers and
/// those one object deep. Nulls are skipped (they are gaps, not zeros).
std::vector<sample_point> extract_points(const series_source& src, const nlohmann::json& doc,
                                         std::int64_t ts);

/// Cumulative counters (network bytes) are stored raw and turned into
/// per-second rates, wrap-safe, for queries and rollups.
bool is_counter(const std::string& metric);

struct summary {
  std::int64_t count = 0;
  double avg = 0, min = 0, max = 0, p95 = 0;
};

/// avg/min/max and the nearest-rank 95th percentile; count 0 for no values.
summary summarize(std::vector<double> values);

/// Summaries merged as rollups merge (an hour from its 5-minute buckets, a
/// history bucket from the rollups in it): count, average, minimum and
/// maximum exact, p95 the largest of the parts' p95 (an upper bound).
struct merged_summary {
  std::int64_t count = 0;
  double sum = 0, min = 0, max = 0, p95 = 0;
  /// Merges a part of `n` > 0 values.
  void add(std::int64_t n, double avg, double part_min, double part_max, double part_p95);
  double avg() const { return sum / static_cast<double>(count); }
};

struct timed_value {
  std::int64_t ts;
  double value;
};

/// Turns a counter series into rates between consecutive points, tolerating a
/// 32-bit wrap; a reset (counter going backwards past a wrap) leaves a gap.
/// Each rate is stamped with the later point's time.
std::vector<timed_value> counter_rates(const std::vector<timed_value>& counter);

/// Accumulates raw points into 5-minute and hourly buckets and hands out a
/// rollup row for every bucket that closed. A 5-minute bucket keeps its
/// values (its p95 is exact); an hour is the merge of its closed 5-minute
/// buckets, as history queries merge rollups: count, average, minimum and
/// maximum exact, p95 the largest 5-minute p95 (an upper bound). Memory per
/// series is one 5-minute bucket's values, not an hour's (~29 MB for 100
/// hosts near the end of an hour when the hour kept them).
class rollup_accumulator {
public:
  /// Adds a point; returns the rollups of buckets this point closed.
  std::vector<rollup_row> add(const sample_point& p);
  /// Closes every bucket that ends at or before `now` (on a timer, so a host
  /// that went silent still gets its last rollups).
  std::vector<rollup_row> close_before(std::int64_t now);
  /// Drops a series (one the quota let go, silent for the retention period:
  /// its buckets closed long ago), so what is held follows the quota.
  void forget(const std::string& host, const std::string& group, const std::string& metric);
  /// Series held.
  std::size_t size() const { return series_.size(); }

private:
  struct bucket {
    std::int64_t start = -1;
    std::vector<double> values;
  };
  /// The hour so far: the merged summaries of its closed 5-minute buckets.
  struct hour_bucket {
    std::int64_t start = -1;
    merged_summary merged;
  };
  struct series_buckets {
    std::string host, group, metric;
    bucket five;
    hour_bucket hour;
    std::optional<timed_value> last_counter;
  };
  void feed(series_buckets& s, std::int64_t ts, double v, std::vector<rollup_row>& out);
  /// Closes the 5-minute bucket and merges it into its hour.
  static void close_five(series_buckets& s, std::vector<rollup_row>& out);
  static void close_hour(series_buckets& s, std::vector<rollup_row>& out);
  std::map<std::string, series_buckets> series_;
};

/// A history request after validation.
struct history_query {
  std::string group = "host";
  std::string host;
  std::int64_t range_sec = 3600;
  std::int64_t step_sec = 10;
  std::vector<std::string> metrics; ///< empty: all
};

/// Parses {"group","host","range","step","metrics"}; on error, a message
/// naming the field and what was expected.
std::variant<history_query, std::string> parse_history_query(const nlohmann::json& req,
                                                             const std::string& default_host);

/// Where a query is answered from (its name is the reply's `source`).
enum class history_source { raw, five_minutes, hour };
NLOHMANN_JSON_SERIALIZE_ENUM(history_source, {{history_source::raw, "raw"},
                                              {history_source::five_minutes, "rollup_5m"},
                                              {history_source::hour, "rollup_1h"}})

/// Raw points while they are kept and the step is finer than 5 minutes, else
/// 5-minute rollups while kept, else hourly rollups.
history_source choose_source(const history_query& q, std::int64_t now,
                             std::int64_t raw_retention_sec, std::int64_t rollup_retention_sec);

/// Buckets raw points into an aligned series: bucket i starts at
/// from + i * step (from aligned down to a multiple of step). Empty buckets
/// are null. Counters become rates first.
nlohmann::json bucket_points(const std::vector<point_row>& points, std::int64_t from,
                             std::int64_t to, std::int64_t step,
                             const std::vector<std::string>& metrics);

/// The same from rollup rows: avg weighted by count, min of mins, max of
/// maxes, p95 as the largest bucket p95 (an upper bound).
nlohmann::json bucket_rollups(const std::vector<rollup_row>& rows, std::int64_t from,
                              std::int64_t to, std::int64_t step,
                              const std::vector<std::string>& metrics);

/// Buckets [first, first + count) of a bucketed history (bucket_points' or
/// bucket_rollups' answer, other fields kept): `start` moved on by `first`
/// steps, `buckets` = count, every series' arrays cut to those buckets.
nlohmann::json slice_buckets(const nlohmann::json& body, std::size_t first, std::size_t count);

/// How many of `body`'s buckets, from the first, fit one reply: the reply
/// make_reply(route, slice_buckets(body, 0, k)) encodes to stays within
/// `max_bytes` less `reserve` (room for the `next` cursor). 0 when not even
/// one bucket does (too many series).
std::size_t buckets_that_fit(const reply_route& route, const nlohmann::json& body,
                             std::size_t max_bytes, std::size_t reserve);

} // namespace lull
