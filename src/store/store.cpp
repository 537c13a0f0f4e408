#include "src/store/store.hpp"

#include <unistd.h>

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <mutex>

namespace lull {

namespace {

/// migrations[i] takes a database from schema version i to i + 1.
const char* const migrations[] = {
  // 0 -> 1: the first schema.
  R"sql(
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE series(id INTEGER PRIMARY KEY, host TEXT NOT NULL, grp TEXT NOT NULL,
                    metric TEXT NOT NULL, UNIQUE(host, grp, metric));
CREATE TABLE samples(series_id INTEGER NOT NULL, ts INTEGER NOT NULL, value REAL NOT NULL,
                     PRIMARY KEY(series_id, ts)) WITHOUT ROWID;
CREATE TABLE rollups(resolution INTEGER NOT NULL, series_id INTEGER NOT NULL,
                     bucket INTEGER NOT NULL, n INTEGER NOT NULL, avg REAL, min REAL,
                     max REAL, p95 REAL,
                     PRIMARY KEY(resolution, series_id, bucket)) WITHOUT ROWID;
CREATE TABLE lease_events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, event TEXT NOT NULL,
                          lease_id TEXT, worker_id TEXT, host_id TEXT, reason TEXT);
CREATE INDEX lease_events_ts ON lease_events(ts);
CREATE TABLE quiet_streaks(host TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
                           avg_score REAL, min_score REAL, PRIMARY KEY(host, start));
CREATE TABLE leases(lease_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL,
                    host_id TEXT NOT NULL, state TEXT NOT NULL,
                    expires_at INTEGER NOT NULL, record TEXT NOT NULL);
)sql",
  // 1 -> 2: event details, and durable jobs for the queue.
  R"sql(
ALTER TABLE lease_events ADD COLUMN detail TEXT;
CREATE TABLE jobs(job_id TEXT PRIMARY KEY, state TEXT NOT NULL, updated_at INTEGER NOT NULL,
                  record TEXT NOT NULL);
CREATE INDEX jobs_state ON jobs(state);
)sql",
};
static_assert(sizeof(migrations) / sizeof(migrations[0]) == store_schema_version);

std::string series_key(const std::string& h, const std::string& g, const std::string& m) {
  std::string k;
  k.reserve(h.size() + g.size() + m.size() + 2);
  k += h;
  k += '\x1f';
  k += g;
  k += '\x1f';
  k += m;
  return k;
}

} // namespace

/// The turn to write, for the connections of one process to one database.
///
/// lulld's lease manager, queue dispatcher and persister each write through
/// their own connection. SQLite lets one write at a time and makes the
/// others poll: its busy handler sleeps 1, 2, 5, 10 ... 100 ms between
/// tries, so a lease commit behind a 20 ms batch of samples overslept the
/// batch by tens of milliseconds (the soak's reply p99 was 70-150 ms at a
/// 3.5 ms p50). Here a writer waits on a condition variable instead and
/// gets the turn the moment the one before it commits, first come first
/// served, so the persister's chunks and the lease manager's commits
/// interleave. Other processes (sqlite3, a backup) still meet SQLite's own
/// lock and busy timeout.
class write_gate {
public:
  bool enter(std::chrono::milliseconds wait) {
    std::unique_lock<std::mutex> lk(mtx_);
    if (!busy_ && waiting_.empty()) {
      busy_ = true;
      return true;
    }
    auto ticket = next_ticket_++;
    waiting_.push_back(ticket);
    if (cv_.wait_for(lk, wait, [&] { return granted_ == ticket; }))
      return true;
    waiting_.erase(std::find(waiting_.begin(), waiting_.end(), ticket));
    return false;
  }
  void leave() {
    std::lock_guard<std::mutex> lk(mtx_);
    if (waiting_.empty()) {
      busy_ = false;
      return;
    }
    granted_ = waiting_.front(); // the turn passes on; busy_ stays set
    waiting_.pop_front();
    cv_.notify_all();
  }

  std::size_t waiting() {
    std::lock_guard<std::mutex> lk(mtx_);
    return waiting_.size();
  }

  /// The gate of `path` in this process, made on first use.
  static std::shared_ptr<write_gate> of(const std::string& path) {
    static std::mutex registry_mtx;
    static std::map<std::string, std::weak_ptr<write_gate>> registry;
    std::error_code ec;
    auto key = std::filesystem::weakly_canonical(path, ec).string();
    if (ec)
      key = path;
    std::lock_guard<std::mutex> lk(registry_mtx);
    auto& slot = registry[key];
    auto gate = slot.lock();
    if (!gate) {
      gate = std::make_shared<write_gate>();
      slot = gate;
    }
    return gate;
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool busy_ = false;
  std::deque<std::uint64_t> waiting_;
  std::uint64_t next_ticket_ = 1;
  std::uint64_t granted_ = 0;
};

namespace {

/// The one SQLite connection of this process to each database file, shared
/// by lulld's writers (lease manager, queue dispatcher, persister) and made
/// on first use. It holds the file in EXCLUSIVE locking mode, so WAL keeps
/// its index in this process's heap rather than in a memory-mapped -shm
/// file: a -shm that became unwritable (chattr +i, a filesystem gone bad)
/// would otherwise kill lulld with SIGBUS on the next write to a clean page,
/// while this way the write fails with SQLITE_IOERR and is answered
/// InternalError. It also keeps a second process (another lulld, sqlite3)
/// off the file while lulld runs. Serialized mode (SQLITE_OPEN_FULLMUTEX)
/// makes each call safe from any thread; write_gate gives the writers turns
/// at whole transactions.
struct connection_registry {
  std::mutex mtx;
  std::map<std::string, std::weak_ptr<sqlite_db>> open;
  static connection_registry& get() {
    static connection_registry r;
    return r;
  }
};

std::string canonical_key(const std::string& path) {
  std::error_code ec;
  auto key = std::filesystem::weakly_canonical(path, ec).string();
  return ec ? path : key;
}

/// Opens, checks and migrates `path` on a new connection.
std::variant<std::shared_ptr<sqlite_db>, std::string> first_connection(const std::string& path,
                                                                      bool exists) {
  auto conn = std::make_shared<sqlite_db>();
  int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_FULLMUTEX | (exists ? 0 : SQLITE_OPEN_CREATE);
  if (auto err = conn->open(path, flags))
    return "cannot open database " + path + ": " + err.message;
  // Before the first read: from then on the locks are held, and WAL never
  // maps a -shm file.
  conn->exec("PRAGMA locking_mode=EXCLUSIVE");

  // Read-only checks first: nothing is written before the file is known good.
  sqlite_error err;
  auto uv = conn->prepare("PRAGMA user_version", &err);
  int rc = uv ? uv.step() : err.code;
  if ((rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED)
    return "database " + path + " is in use by another process (another lulld on the same "
           "data directory, or a sqlite3 shell): stop it, or point --db elsewhere";
  if (rc != SQLITE_ROW)
    return "database " + path + " is not a lull database or is corrupt ("
           + conn->last_error() + "); move it aside to start afresh";
  int version = static_cast<int>(uv.int64(0));
  uv = sqlite_stmt();
  if (version > store_schema_version)
    return "database " + path + " has schema version " + std::to_string(version)
           + ", newer than this lulld understands (" + std::to_string(store_schema_version)
           + "); run a newer lulld or point --db elsewhere";
  if (exists) {
    auto check = conn->prepare("PRAGMA quick_check", &err);
    if (!check || check.step() != SQLITE_ROW || check.text(0) != "ok")
      return "database " + path + " is corrupt (quick_check: "
             + (check ? check.text(0) : conn->last_error())
             + "); move it aside to start afresh";
  }

  {
    auto wal = conn->prepare("PRAGMA journal_mode=WAL", &err);
    if (!wal || wal.step() != SQLITE_ROW || wal.text(0) != "wal")
      return "cannot switch " + path + " to WAL mode: " + conn->last_error();
  }
  // WAL + NORMAL survives a crash of lulld (kill -9); only a power cut can
  // lose the last commits, at a fraction of FULL's fsync cost on an SD card.
  conn->exec("PRAGMA synchronous=NORMAL");

  if (version < store_schema_version) {
    if (auto e = conn->exec("BEGIN IMMEDIATE"))
      return "cannot migrate " + path + ": " + e.message;
    for (int v = version; v < store_schema_version; ++v) {
      if (auto e = conn->exec(migrations[v])) {
        conn->exec("ROLLBACK");
        return "migration of " + path + " from schema " + std::to_string(v) + " to "
               + std::to_string(v + 1) + " failed: " + e.message;
      }
    }
    auto set = "PRAGMA user_version=" + std::to_string(store_schema_version);
    if (auto e = conn->exec(set.c_str()); e || (e = conn->exec("COMMIT"))) {
      conn->exec("ROLLBACK");
      return "cannot migrate " + path + ": " + e.message;
    }
  }
  return conn;
}

} // namespace

std::variant<std::unique_ptr<store>, std::string> store::open(const std::string& path) {
  namespace fs = std::filesystem;
  std::unique_ptr<store> s(new store);
  s->path_ = path;
  s->gate_ = write_gate::of(path);
  std::error_code ec;
  bool exists = fs::exists(path, ec);
  auto dir = fs::path(path).parent_path();
  if (dir.empty())
    dir = ".";
  if (!exists) {
    if (!fs::is_directory(dir, ec))
      return "database directory " + dir.string() + " does not exist";
    if (::access(dir.c_str(), W_OK) != 0)
      return "cannot create database " + path + ": directory " + dir.string()
             + " is not writable";
  } else if (::access(dir.c_str(), W_OK) != 0) {
    // WAL needs the -wal file beside the database.
    return "cannot use database " + path + ": directory " + dir.string()
           + " is not writable (SQLite needs it for the write-ahead log)";
  }

  {
    auto& reg = connection_registry::get();
    std::lock_guard<std::mutex> lk(reg.mtx);
    auto& slot = reg.open[canonical_key(path)];
    s->db_ = slot.lock();
    if (!s->db_) {
      auto made = first_connection(path, exists);
      if (auto* err = std::get_if<std::string>(&made))
        return std::move(*err);
      s->db_ = std::move(std::get<std::shared_ptr<sqlite_db>>(made));
      slot = s->db_;
    }
  }
  s->version_ = store_schema_version;

  auto& db = *s->db_;
  s->find_series_ = db.prepare("SELECT id FROM series WHERE host=?1 AND grp=?2 AND metric=?3");
  s->add_series_ = db.prepare("INSERT INTO series(host, grp, metric) VALUES(?1, ?2, ?3)");
  s->add_point_ = db.prepare("INSERT OR REPLACE INTO samples(series_id, ts, value) "
                             "VALUES(?1, ?2, ?3)");
  s->add_rollup_ = db.prepare("INSERT OR REPLACE INTO rollups(resolution, series_id, bucket, "
                              "n, avg, min, max, p95) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)");
  s->add_event_ = db.prepare("INSERT INTO lease_events(ts, event, lease_id, worker_id, "
                             "host_id, reason, detail) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  s->add_streak_ = db.prepare("INSERT OR REPLACE INTO quiet_streaks(host, start, end, "
                              "avg_score, min_score) VALUES(?1, ?2, ?3, ?4, ?5)");
  s->save_lease_ = db.prepare("INSERT OR REPLACE INTO leases(lease_id, worker_id, host_id, "
                              "state, expires_at, record) VALUES(?1, ?2, ?3, ?4, ?5, ?6)");
  s->delete_lease_ = db.prepare("DELETE FROM leases WHERE lease_id=?1");
  s->save_counter_ = db.prepare("INSERT INTO meta(key, value) VALUES(?1, ?2) ON CONFLICT(key) "
                                "DO UPDATE SET value=max(value, excluded.value)");
  s->load_counter_ = db.prepare("SELECT value FROM meta WHERE key=?1");
  s->save_job_ = db.prepare("INSERT OR REPLACE INTO jobs(job_id, state, updated_at, record) "
                            "VALUES(?1, ?2, ?3, ?4)");
  if (!s->add_point_ || !s->save_lease_ || !s->save_counter_)
    return "cannot prepare statements on " + path + ": " + db.last_error();
  return s;
}

store::~store() {
  if (in_turn_) {
    db_->exec("ROLLBACK");
    gate_->leave();
  }
}

sqlite_error store::begin(std::chrono::milliseconds wait) {
  if (!in_turn_) {
    if (!gate_->enter(wait))
      return {SQLITE_BUSY, "database is locked: another writer in lulld kept it for "
                             + std::to_string(wait.count()) + " ms"};
    in_turn_ = true;
  }
  auto err = db_->exec("BEGIN IMMEDIATE");
  if (err) {
    in_turn_ = false;
    gate_->leave();
  }
  return err;
}

sqlite_error store::commit() {
  auto err = db_->exec("COMMIT");
  if (!err && in_turn_) {
    in_turn_ = false;
    gate_->leave();
  }
  return err;
}

std::size_t store::writers_waiting() const { return gate_->waiting(); }

void store::set_autocheckpoint(int pages) {
  sqlite3_wal_autocheckpoint(db_->handle(), pages);
}

int store::checkpoint() {
  int log = 0, copied = 0;
  sqlite3_wal_checkpoint_v2(db_->handle(), nullptr, SQLITE_CHECKPOINT_PASSIVE, &log, &copied);
  return copied;
}

void store::rollback() {
  // The connection is shared: only the store in its turn has a transaction
  // to roll back (any other's would be another writer's).
  if (in_turn_) {
    db_->exec("ROLLBACK");
    in_turn_ = false;
    gate_->leave();
  }
  // Series created inside the transaction are gone with it, and SQLite will
  // hand their row ids to the next new series: forget every cached id.
  series_cache_.clear();
}

std::optional<std::int64_t> store::series_id(const std::string& host, const std::string& group,
                                             const std::string& metric, bool create) {
  auto key = series_key(host, group, metric);
  if (auto it = series_cache_.find(key); it != series_cache_.end())
    return it->second;
  find_series_.bind(1, host).bind(2, group).bind(3, metric);
  std::optional<std::int64_t> id;
  if (find_series_.step() == SQLITE_ROW)
    id = find_series_.int64(0);
  find_series_.reset();
  if (!id && create) {
    add_series_.bind(1, host).bind(2, group).bind(3, metric);
    if (add_series_.exec() == SQLITE_DONE)
      id = sqlite3_last_insert_rowid(db_->handle());
  }
  if (id)
    series_cache_.emplace(std::move(key), *id);
  return id;
}

sqlite_error store::insert_points(const std::vector<sample_point>& points) {
  for (auto& p : points) {
    auto id = series_id(p.host, p.group, p.metric, true);
    if (!id)
      return {SQLITE_ERROR, db_->last_error()};
    add_point_.bind(1, *id).bind(2, p.ts).bind(3, p.value);
    if (int rc = add_point_.exec(); rc != SQLITE_DONE)
      return {rc, db_->last_error()};
  }
  return {};
}

sqlite_error store::insert_rollups(const std::vector<rollup_row>& rows) {
  for (auto& r : rows) {
    auto id = series_id(r.host, r.group, r.metric, true);
    if (!id)
      return {SQLITE_ERROR, db_->last_error()};
    add_rollup_.bind(1, static_cast<int>(r.resolution)).bind(2, *id).bind(3, r.bucket)
      .bind(4, r.count).bind(5, r.avg).bind(6, r.min).bind(7, r.max).bind(8, r.p95);
    if (int rc = add_rollup_.exec(); rc != SQLITE_DONE)
      return {rc, db_->last_error()};
  }
  return {};
}

std::vector<point_row> store::query_points(const std::string& host, const std::string& group,
                                           std::int64_t from, std::int64_t to) {
  std::vector<point_row> out;
  auto q = db_->prepare("SELECT s.metric, p.ts, p.value FROM series s JOIN samples p "
                       "ON p.series_id = s.id WHERE s.host=?1 AND s.grp=?2 "
                       "AND p.ts >= ?3 AND p.ts < ?4 ORDER BY s.metric, p.ts");
  q.bind(1, host).bind(2, group).bind(3, from).bind(4, to);
  while (q.step() == SQLITE_ROW)
    out.push_back({q.text(0), q.int64(1), q.real(2)});
  return out;
}

std::vector<rollup_row> store::query_rollups(rollup_resolution res, const std::string& host,
                                             const std::string& group, std::int64_t from,
                                             std::int64_t to) {
  std::vector<rollup_row> out;
  auto q = db_->prepare("SELECT s.metric, r.bucket, r.n, r.avg, r.min, r.max, r.p95 "
                       "FROM series s JOIN rollups r ON r.series_id = s.id "
                       "WHERE r.resolution=?1 AND s.host=?2 AND s.grp=?3 "
                       "AND r.bucket >= ?4 AND r.bucket < ?5 ORDER BY s.metric, r.bucket");
  q.bind(1, static_cast<int>(res)).bind(2, host).bind(3, group).bind(4, from).bind(5, to);
  while (q.step() == SQLITE_ROW) {
    rollup_row r;
    r.resolution = res;
    r.host = host;
    r.group = group;
    r.metric = q.text(0);
    r.bucket = q.int64(1);
    r.count = q.int64(2);
    r.avg = q.real(3);
    r.min = q.real(4);
    r.max = q.real(5);
    r.p95 = q.real(6);
    out.push_back(std::move(r));
  }
  return out;
}

sqlite_error store::purge_step(std::int64_t raw_before, std::int64_t five_min_before,
                              purge_progress& p, std::int64_t max_rows,
                              std::optional<std::int64_t> finished_jobs_before,
                              std::optional<std::int64_t> streaks_before) {
  if (p.done)
    return {};
  if (auto err = begin())
    return err;
  std::int64_t rows = 0, removed = 0;
  std::vector<std::int64_t> gone; ///< series removed by this step
  auto fail = [&](int rc) -> sqlite_error {
    sqlite_error err{rc, db_->last_error()};
    rollback();
    return err;
  };
  while (!p.series_done && rows < max_rows) {
    // A few series at a time; each delete walks one series' primary key.
    auto ids = db_->prepare("SELECT id FROM series WHERE id >= ?1 ORDER BY id LIMIT 32");
    ids.bind(1, p.next_series);
    std::vector<std::int64_t> batch;
    while (ids.step() == SQLITE_ROW)
      batch.push_back(ids.int64(0));
    if (batch.empty()) {
      p.series_done = true;
      break;
    }
    auto raw = db_->prepare("DELETE FROM samples WHERE series_id = ?1 AND ts < ?2");
    auto five = db_->prepare(
      "DELETE FROM rollups WHERE resolution = ?1 AND series_id = ?2 AND bucket < ?3");
    auto any_sample = db_->prepare("SELECT 1 FROM samples WHERE series_id = ?1 LIMIT 1");
    auto any_rollup =
      db_->prepare("SELECT 1 FROM rollups WHERE resolution = ?1 AND series_id = ?2 LIMIT 1");
    auto drop = db_->prepare("DELETE FROM series WHERE id = ?1");
    auto holds = [&](sqlite_stmt& q) {
      bool row = q.step() == SQLITE_ROW;
      q.reset();
      return row;
    };
    for (auto id : batch) {
      raw.bind(1, id).bind(2, raw_before);
      if (int rc = raw.exec(); rc != SQLITE_DONE)
        return fail(rc);
      rows += sqlite3_changes(db_->handle());
      five.bind(1, static_cast<int>(rollup_resolution::five_minutes)).bind(2, id)
        .bind(3, five_min_before);
      if (int rc = five.exec(); rc != SQLITE_DONE)
        return fail(rc);
      rows += sqlite3_changes(db_->handle());
      // Nothing left of it (a worker's metric that is no longer sent, a
      // name refused since): the series goes too. Three lookups along
      // primary keys.
      bool empty = !holds(any_sample.bind(1, id))
                   && !holds(any_rollup.bind(1, static_cast<int>(rollup_resolution::five_minutes))
                               .bind(2, id))
                   && !holds(any_rollup.bind(1, static_cast<int>(rollup_resolution::hour))
                               .bind(2, id));
      if (empty) {
        drop.bind(1, id);
        if (int rc = drop.exec(); rc != SQLITE_DONE)
          return fail(rc);
        ++removed;
        ++rows;
        gone.push_back(id);
      }
      p.next_series = id + 1;
      if (rows >= max_rows)
        break;
    }
  }
  if (p.series_done && !p.events_done && rows < max_rows) {
    auto left = max_rows - rows;
    auto ev = db_->prepare("DELETE FROM lease_events WHERE id IN (SELECT id FROM lease_events "
                          "WHERE ts < ?1 ORDER BY ts LIMIT ?2)");
    ev.bind(1, five_min_before).bind(2, left);
    if (int rc = ev.exec(); rc != SQLITE_DONE)
      return fail(rc);
    auto n = sqlite3_changes(db_->handle());
    rows += n;
    p.events_done = n < left;
    p.streaks_done = !streaks_before;
  }
  // Quiet streaks host by host: each delete walks one host's (host, start)
  // key up to the cut-off (a streak ends after it starts).
  while (p.events_done && !p.streaks_done && rows < max_rows) {
    auto next = db_->prepare(
      "SELECT host FROM quiet_streaks WHERE host >= ?1 ORDER BY host LIMIT 1");
    next.bind(1, p.streak_host);
    if (next.step() != SQLITE_ROW) {
      p.streaks_done = true;
      break;
    }
    auto host = next.text(0);
    auto left = max_rows - rows;
    auto del = db_->prepare(
      "DELETE FROM quiet_streaks WHERE rowid IN (SELECT rowid FROM quiet_streaks "
      "WHERE host = ?1 AND start < ?2 AND end < ?2 LIMIT ?3)");
    del.bind(1, host).bind(2, *streaks_before).bind(3, left);
    if (int rc = del.exec(); rc != SQLITE_DONE)
      return fail(rc);
    auto n = sqlite3_changes(db_->handle());
    rows += n;
    // This host is done unless the step ran out; the next one sorts after it.
    p.streak_host = n < left ? host + '\x01' : host;
  }
  if (p.events_done && p.streaks_done && !p.done && rows < max_rows) {
    if (!finished_jobs_before) {
      p.done = true;
    } else {
      auto left = max_rows - rows;
      auto jobs = db_->prepare(
        "DELETE FROM jobs WHERE job_id IN (SELECT job_id FROM jobs WHERE state NOT IN "
        "('queued', 'leased', 'running') AND updated_at < ?1 LIMIT ?2)");
      jobs.bind(1, *finished_jobs_before).bind(2, left);
      if (int rc = jobs.exec(); rc != SQLITE_DONE)
        return fail(rc);
      auto n = sqlite3_changes(db_->handle());
      rows += n;
      p.done = n < left;
    }
  }
  if (auto err = commit()) {
    rollback();
    return err;
  }
  p.deleted += rows - removed;
  p.series_removed += removed;
  if (!gone.empty()) {
    // Their ids are free again: SQLite may hand them to new series.
    std::sort(gone.begin(), gone.end());
    for (auto it = series_cache_.begin(); it != series_cache_.end();)
      it = std::binary_search(gone.begin(), gone.end(), it->second) ? series_cache_.erase(it)
                                                                     : std::next(it);
  }
  return {};
}

std::int64_t store::purge(std::int64_t raw_before, std::int64_t five_min_before,
                          std::optional<std::int64_t> finished_jobs_before,
                          std::optional<std::int64_t> streaks_before) {
  purge_progress p;
  while (!p.done)
    if (purge_step(raw_before, five_min_before, p, 5000, finished_jobs_before, streaks_before))
      return -1;
  return p.deleted;
}

void store::forget_series(const std::string& host, const std::string& group,
                          const std::string& metric) {
  series_cache_.erase(series_key(host, group, metric));
}

std::vector<std::pair<std::string, std::string>> store::series_groups() {
  std::vector<std::pair<std::string, std::string>> out;
  auto q = db_->prepare("SELECT DISTINCT host, grp FROM series ORDER BY host, grp");
  while (q.step() == SQLITE_ROW)
    out.emplace_back(q.text(0), q.text(1));
  return out;
}

std::optional<std::int64_t> store::latest_point_ts(const std::string& host) {
  auto q = db_->prepare("SELECT max(p.ts) FROM series s JOIN samples p ON p.series_id = s.id "
                       "WHERE s.host=?1");
  q.bind(1, host);
  if (q.step() == SQLITE_ROW && !q.is_null(0))
    return q.int64(0);
  return std::nullopt;
}

sqlite_error store::insert_lease_events(const std::vector<lease_event_row>& events) {
  for (auto& e : events) {
    add_event_.bind(1, e.ts).bind(2, e.event).bind(3, e.lease_id).bind(4, e.worker_id)
      .bind(5, e.host_id).bind(6, e.reason).bind(7, e.detail);
    if (int rc = add_event_.exec(); rc != SQLITE_DONE)
      return {rc, db_->last_error()};
  }
  return {};
}

std::vector<lease_event_row> store::recent_lease_events(std::int64_t since, int limit,
                                                        std::int64_t before_id) {
  std::vector<lease_event_row> out;
  auto q = db_->prepare("SELECT ts, event, lease_id, worker_id, host_id, reason, detail, id "
                       "FROM lease_events WHERE ts >= ?1 AND (?3 <= 0 OR id < ?3) "
                       "ORDER BY id DESC LIMIT ?2");
  q.bind(1, since).bind(2, limit).bind(3, before_id);
  while (q.step() == SQLITE_ROW)
    out.push_back({q.int64(0), q.text(1), q.text(2), q.text(3), q.text(4), q.text(5),
                   q.text(6), q.int64(7)});
  return out;
}

sqlite_error store::insert_quiet_streak(const quiet_streak_row& s) {
  add_streak_.bind(1, s.host).bind(2, s.start).bind(3, s.end).bind(4, s.avg_score)
    .bind(5, s.min_score);
  if (int rc = add_streak_.exec(); rc != SQLITE_DONE)
    return {rc, db_->last_error()};
  return {};
}

std::vector<quiet_streak_row>
store::quiet_streaks_page(const std::string& host, std::int64_t since, int limit,
                          const std::optional<std::pair<std::int64_t, std::string>>& after) {
  std::vector<quiet_streak_row> out;
  auto q = db_->prepare("SELECT host, start, end, avg_score, min_score FROM quiet_streaks "
                       "WHERE (?1 = '' OR host = ?1) AND end >= ?2 "
                       "AND (?3 = 0 OR start > ?4 OR (start = ?4 AND host > ?5)) "
                       "ORDER BY start, host LIMIT ?6");
  q.bind(1, host).bind(2, since).bind(3, after ? 1 : 0)
    .bind(4, after ? after->first : std::int64_t{0})
    .bind(5, after ? after->second : std::string())
    .bind(6, limit);
  while (q.step() == SQLITE_ROW)
    out.push_back({q.text(0), q.int64(1), q.int64(2), q.real(3), q.real(4)});
  return out;
}

std::vector<quiet_streak_row> store::quiet_streaks(const std::string& host, std::int64_t since,
                                                  std::size_t limit) {
  std::vector<quiet_streak_row> out;
  // Newest first, up to the limit: for a host along its (host, start) key,
  // so no more than `limit` rows are read; those that ended before `since`
  // are skipped here rather than in SQL, where they would keep the walk
  // going back through all of the host's history.
  auto q = host.empty()
             ? db_->prepare("SELECT host, start, end, avg_score, min_score FROM quiet_streaks "
                            "WHERE end >= ?2 ORDER BY start DESC LIMIT ?3")
             : db_->prepare("SELECT host, start, end, avg_score, min_score FROM quiet_streaks "
                            "WHERE host = ?1 ORDER BY start DESC LIMIT ?3");
  if (!host.empty())
    q.bind(1, host);
  else
    q.bind(2, since);
  q.bind(3, static_cast<std::int64_t>(limit));
  while (q.step() == SQLITE_ROW)
    if (q.int64(2) >= since)
      out.push_back({q.text(0), q.int64(1), q.int64(2), q.real(3), q.real(4)});
  std::reverse(out.begin(), out.end());
  return out;
}

sqlite_error store::save_lease(const durable_record& r) {
  save_lease_.bind(1, r.id).bind(2, r.owner).bind(3, r.host_id).bind(4, r.state)
    .bind(5, r.expires_at).bind(6, r.record);
  if (int rc = save_lease_.exec(); rc != SQLITE_DONE)
    return {rc, db_->last_error()};
  return {};
}

sqlite_error store::delete_lease(const std::string& id) {
  delete_lease_.bind(1, id);
  if (int rc = delete_lease_.exec(); rc != SQLITE_DONE)
    return {rc, db_->last_error()};
  return {};
}

std::vector<durable_record> store::load_leases() {
  std::vector<durable_record> out;
  auto q = db_->prepare("SELECT lease_id, worker_id, host_id, state, expires_at, record "
                       "FROM leases ORDER BY lease_id");
  while (q.step() == SQLITE_ROW)
    out.push_back({q.text(0), q.text(1), q.text(2), q.text(3), q.int64(4), q.text(5)});
  return out;
}

sqlite_error store::save_job(const std::string& id, const std::string& state,
                             std::int64_t updated_at, const std::string& record) {
  save_job_.bind(1, id).bind(2, state).bind(3, updated_at).bind(4, record);
  if (int rc = save_job_.exec(); rc != SQLITE_DONE)
    return {rc, db_->last_error()};
  return {};
}

std::vector<std::string> store::load_jobs(std::int64_t finished_since) {
  std::vector<std::string> out;
  auto q = db_->prepare("SELECT record FROM jobs WHERE state IN ('queued', 'leased', 'running') "
                       "OR updated_at >= ?1");
  q.bind(1, finished_since);
  while (q.step() == SQLITE_ROW)
    out.push_back(q.text(0));
  return out;
}

std::int64_t store::purge_jobs(std::int64_t before) {
  auto q = db_->prepare("DELETE FROM jobs WHERE state NOT IN ('queued', 'leased', 'running') "
                       "AND updated_at < ?1");
  q.bind(1, before);
  return q.exec() == SQLITE_DONE ? sqlite3_changes(db_->handle()) : 0;
}

sqlite_error store::save_counter(const std::string& name, std::int64_t value) {
  save_counter_.bind(1, name).bind(2, value);
  if (int rc = save_counter_.exec(); rc != SQLITE_DONE)
    return {rc, db_->last_error()};
  return {};
}

std::int64_t store::load_counter(const std::string& name) {
  load_counter_.bind(1, name);
  std::int64_t v = 0;
  if (load_counter_.step() == SQLITE_ROW)
    v = load_counter_.int64(0);
  load_counter_.reset();
  return v;
}

} // namespace lull
