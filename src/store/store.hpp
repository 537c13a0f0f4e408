#pragma once
/// lull's SQLite store: one file, WAL, prepared statements only, a schema
/// version with forward migrations run at open. A file from a newer lull or a
/// corrupt file is refused before anything is written to it.
///
/// Samples are kept as numeric series (one row per metric and timestamp):
/// queries need numbers, and a Pi's SD card cannot hold a week of JSON
/// snapshots for a fleet. 5-minute and hourly rollups answer long ranges.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "src/store/sqlite.hpp"

namespace lull {

/// The schema this lull writes. Migrations take older files up to it.
inline constexpr int store_schema_version = 2;

struct sample_point {
  std::int64_t ts = 0; ///< unix seconds
  std::string host;
  std::string group;   ///< host, process:<name>, bus, quiet, worker:<id>
  std::string metric;  ///< e.g. cpu.total_pct
  double value = 0;
};

enum class rollup_resolution : int { five_minutes = 300, hour = 3600 };

struct rollup_row {
  rollup_resolution resolution = rollup_resolution::five_minutes;
  std::string host, group, metric;
  std::int64_t bucket = 0; ///< bucket start, unix seconds
  std::int64_t count = 0;
  double avg = 0, min = 0, max = 0, p95 = 0;
};

struct point_row {
  std::string metric;
  std::int64_t ts;
  double value;
};

struct lease_event_row {
  std::int64_t ts = 0;
  std::string event; ///< grant, deny, heartbeat_miss, release, expire, revoke, ...
  std::string lease_id, worker_id, host_id, reason;
  std::string detail; ///< JSON
  std::int64_t id = 0; ///< its row: the order events were stored in (read back, not written)
};

struct quiet_streak_row {
  std::string host;
  std::int64_t start = 0, end = 0;
  double avg_score = 0, min_score = 0;
};

/// The durable state of one lease (or job): key columns plus the owner's
/// full record as JSON, so the lease manager restores exactly what it saved.
struct durable_record {
  std::string id;
  std::string owner;    ///< worker id
  std::string host_id;
  std::string state;    ///< active, released, expired, revoked ...
  std::int64_t expires_at = 0; ///< unix seconds
  std::string record;   ///< JSON
};

class write_gate;

class store {
public:
  /// Opens or creates the database at `path` and migrates it. On failure the
  /// message says what is wrong and what to do; the file is left untouched.
  static std::variant<std::unique_ptr<store>, std::string> open(const std::string& path);

  int schema_version() const { return version_; }
  const std::string& path() const { return path_; }

  // -- samples and rollups ----------------------------------------------------
  sqlite_error insert_points(const std::vector<sample_point>& points);
  sqlite_error insert_rollups(const std::vector<rollup_row>& rows);
  std::vector<point_row> query_points(const std::string& host, const std::string& group,
                                      std::int64_t from, std::int64_t to);
  std::vector<rollup_row> query_rollups(rollup_resolution res, const std::string& host,
                                        const std::string& group, std::int64_t from,
                                        std::int64_t to);
  /// Retention, a step at a time: each purge_step() deletes, in one write
  /// turn, at most about `max_rows` rows of raw points before `raw_before`
  /// and 5-minute rollups before `five_min_before` (series by series, along
  /// their primary keys, where `progress` left off; a series left with no
  /// sample and no rollup at all goes too), then lease events before
  /// `five_min_before`, then (when given) quiet streaks that ended before
  /// `streaks_before` (host by host, along their key), then (when given)
  /// finished jobs last updated before `finished_jobs_before`. Hourly
  /// rollups are kept for good, and with them their series. Other writers
  /// get their turn between steps, so a large purge never holds the database.
  struct purge_progress {
    std::int64_t next_series = 0; ///< the series id to go on from
    bool series_done = false;
    bool events_done = false;
    std::string streak_host;      ///< the host whose streaks go next ("": from the first)
    bool streaks_done = false;
    bool done = false;            ///< nothing left before the cut-offs
    std::int64_t deleted = 0;     ///< rows of data deleted by all steps so far
    std::int64_t series_removed = 0; ///< series removed with nothing left
  };
  sqlite_error purge_step(std::int64_t raw_before, std::int64_t five_min_before,
                          purge_progress& progress, std::int64_t max_rows = 5000,
                          std::optional<std::int64_t> finished_jobs_before = std::nullopt,
                          std::optional<std::int64_t> streaks_before = std::nullopt);
  /// Every step until done (for tests and tools); returns rows deleted, or
  /// -1 when a step failed.
  std::int64_t purge(std::int64_t raw_before, std::int64_t five_min_before,
                     std::optional<std::int64_t> finished_jobs_before = std::nullopt,
                     std::optional<std::int64_t> streaks_before = std::nullopt);
  /// Drops a series from this connection's id cache (the persister's, for
  /// series its quota let go), so the cache holds only series in use.
  void forget_series(const std::string& host, const std::string& group,
                     const std::string& metric);
  /// Series ids this connection has cached.
  std::size_t cached_series() const { return series_cache_.size(); }
  /// Hosts and groups with data (for health and listings).
  std::vector<std::pair<std::string, std::string>> series_groups();
  std::optional<std::int64_t> latest_point_ts(const std::string& host);

  // -- events, streaks -----------------------------------------------------------
  sqlite_error insert_lease_events(const std::vector<lease_event_row>& events);
  /// Events since `since`, newest first (by row); with `before_id`, only
  /// those stored before that row (the next page after it).
  std::vector<lease_event_row> recent_lease_events(std::int64_t since, int limit,
                                                   std::int64_t before_id = 0);
  sqlite_error insert_quiet_streak(const quiet_streak_row& s);
  /// What one read of quiet streaks returns at most.
  static constexpr std::size_t max_streaks_read = 5000;
  /// Streaks that ended at or after `since`, oldest first: of `host` (every
  /// host's when empty), the newest `limit`. A host's are read along the
  /// (host, start) key from its newest streak back, `limit` rows at most,
  /// however many the table holds.
  std::vector<quiet_streak_row> quiet_streaks(const std::string& host, std::int64_t since,
                                              std::size_t limit = max_streaks_read);
  /// A page of streaks (history's quiet_streaks): of `host` (empty: every
  /// host) that ended at or after `since`, by start and host; with `after` (a start and host), only those after
  /// it in that order; at most `limit` (< 0: all).
  std::vector<quiet_streak_row>
  quiet_streaks_page(const std::string& host, std::int64_t since, int limit = -1,
                const std::optional<std::pair<std::int64_t, std::string>>& after = std::nullopt);

  // -- durable state ---------------------------------------------------------------
  sqlite_error save_lease(const durable_record& r);
  sqlite_error delete_lease(const std::string& id);
  std::vector<durable_record> load_leases();
  /// Jobs: one row each, the job's JSON record; written before a submission
  /// or an assignment is acknowledged.
  sqlite_error save_job(const std::string& id, const std::string& state,
                        std::int64_t updated_at, const std::string& record);
  /// Every job not finished, plus finished ones updated since `finished_since`.
  std::vector<std::string> load_jobs(std::int64_t finished_since);
  /// Removes finished jobs last updated before `before`; returns how many.
  std::int64_t purge_jobs(std::int64_t before);

  /// A named counter that only grows (the fencing token): stores max(old, v).
  sqlite_error save_counter(const std::string& name, std::int64_t value);
  std::int64_t load_counter(const std::string& name);

  /// BEGIN IMMEDIATE / COMMIT around a batch of the calls above. The
  /// process's connections to one file take turns in arrival order
  /// (write_gate, in store.cpp) before SQLite's own lock; a turn not had
  /// within `wait` fails begin() with SQLITE_BUSY. commit() ends the turn
  /// when it succeeds, rollback() always.
  sqlite_error begin(std::chrono::milliseconds wait = std::chrono::milliseconds(2000));
  sqlite_error commit();
  void rollback();

  /// SQLite's automatic checkpoint on this connection's commits, in WAL
  /// pages (0: never; SQLite's default is 1,000). A checkpoint writes pages
  /// back into the database file and syncs it, milliseconds that the
  /// committing writer waits out: lulld leaves it to the persister's
  /// connection (checkpoint()) and keeps it on the others only as a backstop.
  void set_autocheckpoint(int pages);
  /// Writers of this process waiting for their turn on this file now.
  std::size_t writers_waiting() const;
  /// A passive checkpoint (waits for no reader or writer); the WAL frames
  /// it copied back.
  int checkpoint();

  ~store();
  store(const store&) = delete;
  store& operator=(const store&) = delete;

private:
  store() = default;
  std::optional<std::int64_t> series_id(const std::string& host, const std::string& group,
                                        const std::string& metric, bool create);

  std::shared_ptr<sqlite_db> db_; ///< shared by the process's stores of this file (store.cpp)
  std::shared_ptr<write_gate> gate_; ///< shared by the process's connections to the file
  bool in_turn_ = false;                   ///< begin() took the gate
  std::string path_;
  int version_ = 0;
  sqlite_stmt find_series_, add_series_, add_point_, add_rollup_, add_event_, add_streak_,
    save_lease_, delete_lease_, save_counter_, load_counter_, save_job_;
  std::unordered_map<std::string, std::int64_t> series_cache_; ///< host\x1fgroup\x1fmetric -> id
};

} // namespace lull
