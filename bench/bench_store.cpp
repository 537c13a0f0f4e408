// Persister throughput and query latency, printed as figures (never fails).
//
//  1. Insert rate of lull's store (batched like the persister's flush)
//     against a bare SQLite bulk-insert loop on the same file system, in the
//     same run, with the same table layout, WAL and synchronous=NORMAL.
//  2. A 1 h @ 10 s history query over 7 days of 2 s samples for 10 hosts.
//  3. The hourly retention purge of that database (its oldest hour): lull's
//     steps (the longest is how long another writer can wait) against one
//     DELETE over the whole table on a copy of the same file, in the same run.
//
// Usage: bench_store [dir]   (default: a new directory under /tmp)
// LULL_BENCH_METRICS sets the metrics per host for part 2 (default 3).

#include <sqlite3.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "src/store/series.hpp"
#include "src/store/store.hpp"

using namespace lull;
using clk = std::chrono::steady_clock;

namespace {

double seconds_since(clk::time_point t0) {
  return std::chrono::duration<double>(clk::now() - t0).count();
}

double bare_loop(const std::string& path, int rows, int batch) {
  sqlite3* db = nullptr;
  sqlite3_open(path.c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                   "CREATE TABLE t(series_id INTEGER, ts INTEGER, value REAL,"
                   " PRIMARY KEY(series_id, ts)) WITHOUT ROWID;",
               nullptr, nullptr, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO t VALUES(?1, ?2, ?3)", -1, &st, nullptr);
  auto t0 = clk::now();
  for (int i = 0; i < rows; i += batch) {
    sqlite3_exec(db, "BEGIN", nullptr, nullptr, nullptr);
    for (int j = i; j < std::min(rows, i + batch); ++j) {
      sqlite3_bind_int64(st, 1, j % 30);
      sqlite3_bind_int64(st, 2, 1700000000 + j / 30 * 2);
      sqlite3_bind_double(st, 3, j * 0.5);
      sqlite3_step(st);
      sqlite3_reset(st);
    }
    sqlite3_exec(db, "COMMIT", nullptr, nullptr, nullptr);
  }
  double secs = seconds_since(t0);
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows / secs;
}

double lull_store(const std::string& path, int rows, int batch) {
  auto opened = store::open(path);
  auto& s = std::get<std::unique_ptr<store>>(opened);
  static const char* metrics[] = {"cpu.total_pct", "mem.used_pct", "disk./.free_pct"};
  std::vector<sample_point> pts;
  pts.reserve(static_cast<size_t>(batch));
  auto t0 = clk::now();
  for (int i = 0; i < rows; i += batch) {
    pts.clear();
    for (int j = i; j < std::min(rows, i + batch); ++j)
      pts.push_back({1700000000 + j / 30 * 2, "host" + std::to_string(j % 10), "host",
                     metrics[(j / 10) % 3], j * 0.5});
    s->begin();
    s->insert_points(pts);
    s->commit();
  }
  return rows / seconds_since(t0);
}

} // namespace

int main(int argc, char** argv) {
  std::string dir;
  if (argc > 1) {
    dir = argv[1];
  } else {
    char tmpl[] = "/tmp/lull-bench-store-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  const int rows = 1000000, batch = 10000;

  std::printf("lull bench_store (files in %s)\n", dir.c_str());
  // Alternate the two, each on a fresh file, and keep each one's best of 3
  // runs so neither pays the other's warm-up.
  double bare = 0, ours = 0;
  for (int round = 0; round < 3; ++round) {
    bare = std::max(bare, bare_loop(dir + "/bare" + std::to_string(round) + ".db", rows, batch));
    ours = std::max(ours, lull_store(dir + "/lull" + std::to_string(round) + ".db", rows, batch));
  }
  std::printf("insert: bare SQLite loop   %10.0f rows/s\n", bare);
  std::printf("insert: lull store         %10.0f samples/s  (%.0f%% of bare; target >= 50%% and >= 100k/s)\n",
              ours, 100.0 * ours / bare);

  // 7 days of 2 s samples for 10 hosts.
  int metrics_per_host = std::getenv("LULL_BENCH_METRICS") ? std::atoi(std::getenv("LULL_BENCH_METRICS")) : 3;
  static const char* metric_names[] = {"cpu.total_pct", "mem.used_pct", "disk./.free_pct",
                                       "load.1m", "swap.used_pct", "cpu.temp_c",
                                       "cpu.freq_mhz", "net.rx_bytes", "net.tx_bytes"};
  metrics_per_host = std::clamp(metrics_per_host, 1, 9);
  auto hist_path = dir + "/history.db";
  auto opened = store::open(hist_path);
  auto& s = std::get<std::unique_ptr<store>>(opened);
  const std::int64_t now = 1800000000, start = now - 7 * 86400;
  auto t0 = clk::now();
  std::vector<sample_point> pts;
  std::int64_t total = 0;
  for (std::int64_t ts = start; ts < now; ts += 2) {
    for (int h = 0; h < 10; ++h)
      for (int m = 0; m < metrics_per_host; ++m)
        pts.push_back({ts, "host" + std::to_string(h), "host", metric_names[m],
                       static_cast<double>((ts / 2 + h * 7 + m) % 100)});
    if (pts.size() >= 50000) {
      s->begin();
      s->insert_points(pts);
      s->commit();
      total += static_cast<std::int64_t>(pts.size());
      pts.clear();
    }
  }
  s->begin();
  s->insert_points(pts);
  s->commit();
  total += static_cast<std::int64_t>(pts.size());
  std::printf("history: loaded %lld samples (7 d, 2 s, 10 hosts, %d metrics each) in %.1f s\n",
              static_cast<long long>(total), metrics_per_host, seconds_since(t0));

  std::vector<double> ms;
  for (int i = 0; i < 50; ++i) {
    auto host = "host" + std::to_string(i % 10);
    auto q0 = clk::now();
    auto rows_found = s->query_points(host, "host", now - 3600 - 10, now);
    auto j = bucket_points(rows_found, now - 3600, now, 10, {});
    ms.push_back(seconds_since(q0) * 1000);
    if (j["buckets"] != 360)
      std::printf("unexpected bucket count %s\n", j["buckets"].dump().c_str());
  }
  std::sort(ms.begin(), ms.end());
  std::printf("history: 1 h @ 10 s query  p50 %.2f ms  p99 %.2f ms  (target p50 <= 5 ms)\n",
              ms[ms.size() / 2], ms[ms.size() * 99 / 100]);

  // 3. Retention: the oldest hour goes. The baseline is one statement on a
  // copy of the file (how lull purged before it went in steps): it scans the
  // whole table, since samples are keyed by series first.
  s->checkpoint();
  auto copy_path = dir + "/history-copy.db";
  std::filesystem::copy_file(hist_path, copy_path);
  const std::int64_t cut = start + 3600;
  double one_ms = 0;
  long long one_rows = 0;
  {
    sqlite3* db = nullptr;
    sqlite3_open(copy_path.c_str(), &db);
    sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", nullptr, nullptr,
                 nullptr);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "DELETE FROM samples WHERE ts < ?1", -1, &st, nullptr);
    sqlite3_bind_int64(st, 1, cut);
    auto p0 = clk::now();
    sqlite3_step(st);
    one_ms = seconds_since(p0) * 1000;
    one_rows = sqlite3_changes(db);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  store::purge_progress progress;
  double longest = 0;
  int steps = 0;
  auto p0 = clk::now();
  while (!progress.done) {
    auto st0 = clk::now();
    if (auto err = s->purge_step(cut, cut, progress)) {
      std::printf("retention: step failed: %s\n", err.message.c_str());
      break;
    }
    longest = std::max(longest, seconds_since(st0) * 1000);
    ++steps;
  }
  double total_ms = seconds_since(p0) * 1000;
  std::printf("retention: oldest hour (%lld rows): one DELETE %.0f ms, the database held "
              "throughout\n",
              one_rows, one_ms);
  std::printf("retention: lull, %d steps (%lld rows): %.0f ms in all, longest step %.1f ms "
              "(the one DELETE held the database %.0fx as long)\n",
              steps, static_cast<long long>(progress.deleted), total_ms, longest,
              longest > 0 ? one_ms / longest : 0.0);
  std::filesystem::remove_all(dir);
  return 0;
}
