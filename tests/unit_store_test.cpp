#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <sqlite3.h>

#include "src/store/group_commit.hpp"
#include "src/store/store.hpp"

using namespace lull;
namespace fs = std::filesystem;

namespace {

std::string fixture(const std::string& name) {
  return std::string(LULL_SOURCE_DIR) + "/tests/fixtures/db/" + name;
}

/// A private temp directory, removed at the end of the test.
struct temp_dir {
  std::string path;
  temp_dir() {
    char tmpl[] = "/tmp/lull-store-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::permissions(path, fs::perms::owner_all, ec);
    fs::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::unique_ptr<store> open_ok(const std::string& path) {
  auto r = store::open(path);
  if (auto* e = std::get_if<std::string>(&r))
    ADD_FAILURE() << *e;
  return r.index() == 0 ? std::move(std::get<0>(r)) : nullptr;
}

} // namespace

TEST(store, creates_a_fresh_database_at_the_current_schema) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->schema_version(), store_schema_version);
  EXPECT_TRUE(fs::exists(d.file("lull.db-wal")) || fs::exists(d.file("lull.db")));
}

TEST(store, migrates_an_older_schema_and_keeps_its_data) {
  temp_dir d;
  fs::copy_file(fixture("v1.db"), d.file("old.db"));
  auto s = open_ok(d.file("old.db"));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->schema_version(), store_schema_version);
  auto pts = s->query_points("pi-kitchen", "host", 0, 2000000000);
  ASSERT_EQ(pts.size(), 2u);
  EXPECT_DOUBLE_EQ(pts[1].value, 14.0);
  EXPECT_EQ(s->load_counter("fencing_token"), 41);
  auto leases = s->load_leases();
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].owner, "pi-kitchen");
  // The column added by migration 2 is usable.
  ASSERT_FALSE(s->insert_lease_events({{1795428100, "release", "x", "w", "h", "done", "{}"}}));
  auto ev = s->recent_lease_events(0, 10);
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].detail, "{}");
}

TEST(store, refuses_a_newer_schema_and_leaves_the_file_untouched) {
  temp_dir d;
  fs::copy_file(fixture("newer.db"), d.file("newer.db"));
  auto before = read_all(d.file("newer.db"));
  auto r = store::open(d.file("newer.db"));
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  auto& msg = std::get<std::string>(r);
  EXPECT_NE(msg.find("schema version 99"), std::string::npos) << msg;
  EXPECT_NE(msg.find("newer than this lulld"), std::string::npos) << msg;
  EXPECT_EQ(read_all(d.file("newer.db")), before);
  EXPECT_FALSE(fs::exists(d.file("newer.db-wal")));
}

TEST(store, refuses_a_file_that_is_not_a_database_untouched) {
  temp_dir d;
  fs::copy_file(fixture("corrupt.db"), d.file("c.db"));
  auto before = read_all(d.file("c.db"));
  auto r = store::open(d.file("c.db"));
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_NE(std::get<std::string>(r).find("not a lull database or is corrupt"),
            std::string::npos)
    << std::get<std::string>(r);
  EXPECT_EQ(read_all(d.file("c.db")), before);
}

TEST(store, refuses_a_database_with_damaged_pages_untouched) {
  temp_dir d;
  fs::copy_file(fixture("corrupt-pages.db"), d.file("c.db"));
  auto before = read_all(d.file("c.db"));
  auto r = store::open(d.file("c.db"));
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_NE(std::get<std::string>(r).find("corrupt"), std::string::npos)
    << std::get<std::string>(r);
  EXPECT_EQ(read_all(d.file("c.db")), before);
}

TEST(store, read_only_directory_is_a_clear_error) {
  if (::geteuid() == 0)
    GTEST_SKIP() << "root ignores directory permissions; covered by the integration test "
                    "through a path under a file";
  temp_dir d;
  ::chmod(d.path.c_str(), 0555);
  auto r = store::open(d.file("lull.db"));
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_NE(std::get<std::string>(r).find("not writable"), std::string::npos);
}

TEST(store, missing_directory_is_a_clear_error) {
  auto r = store::open("/nonexistent-lull-dir/lull.db");
  ASSERT_TRUE(std::holds_alternative<std::string>(r));
  EXPECT_NE(std::get<std::string>(r).find("does not exist"), std::string::npos);
}

TEST(store, points_round_trip_and_purge_respects_retention) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  std::vector<sample_point> pts;
  for (int i = 0; i < 100; ++i)
    pts.push_back({1000 + i * 2, "nuc", "host", "cpu.total_pct", static_cast<double>(i)});
  ASSERT_FALSE(s->begin());
  ASSERT_FALSE(s->insert_points(pts));
  ASSERT_FALSE(s->insert_rollups({{rollup_resolution::five_minutes, "nuc", "host",
                                   "cpu.total_pct", 900, 50, 1, 0, 2, 2},
                                  {rollup_resolution::hour, "nuc", "host", "cpu.total_pct",
                                   0, 100, 1, 0, 2, 2}}));
  ASSERT_FALSE(s->commit());
  EXPECT_EQ(s->query_points("nuc", "host", 1000, 1010).size(), 5u); // [1000, 1010)
  EXPECT_EQ(s->latest_point_ts("nuc"), 1198);
  auto removed = s->purge(1100, 1000);
  EXPECT_EQ(removed, 50 + 1); // 50 raw points and the old 5-minute rollup
  EXPECT_EQ(s->query_points("nuc", "host", 0, 5000).size(), 50u);
  EXPECT_TRUE(s->query_rollups(rollup_resolution::five_minutes, "nuc", "host", 0, 5000).empty());
  EXPECT_EQ(s->query_rollups(rollup_resolution::hour, "nuc", "host", 0, 5000).size(), 1u);
}

// Retention in steps: a purge of many series goes a bounded number of rows
// at a time, another connection writes between steps without waiting, and
// the end state is what one big purge would leave.
TEST(store, a_purge_goes_in_bounded_steps_and_lets_other_writers_in_between) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  auto other = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s && other);
  std::vector<sample_point> pts;
  for (int h = 0; h < 10; ++h)
    for (int i = 0; i < 200; ++i) // 100 before the cut-off (ts 1100), 100 after
      pts.push_back({1000 + i, "h" + std::to_string(h), "host", "cpu.total_pct", 1.0 * i});
  std::vector<lease_event_row> events;
  for (int i = 0; i < 30; ++i)
    events.push_back({i < 20 ? 500 + i : 5000 + i, "grant", "l", "w", "h0", "", "{}"});
  ASSERT_FALSE(s->begin());
  ASSERT_FALSE(s->insert_points(pts));
  ASSERT_FALSE(s->insert_lease_events(events));
  ASSERT_FALSE(s->commit());

  store::purge_progress p;
  int steps = 0;
  std::int64_t before = 0;
  while (!p.done && steps < 100) {
    ASSERT_FALSE(s->purge_step(1100, 1000, p, 150));
    ++steps;
    // At most the bound plus the one series that crossed it.
    EXPECT_LE(p.deleted - before, 150 + 100);
    before = p.deleted;
    if (!p.done) {
      // Between steps the other connection's writer gets in at once.
      ASSERT_FALSE(other->begin(std::chrono::milliseconds(0)));
      ASSERT_FALSE(other->save_counter("between", steps));
      ASSERT_FALSE(other->commit());
    }
  }
  EXPECT_TRUE(p.done);
  EXPECT_GE(steps, 6); // 1,000 raw rows at ~150-250 a step, then the events
  EXPECT_EQ(p.deleted, 10 * 100 + 20);
  for (int h = 0; h < 10; ++h)
    EXPECT_EQ(s->query_points("h" + std::to_string(h), "host", 0, 5000).size(), 100u) << h;
  EXPECT_EQ(s->recent_lease_events(0, 100).size(), 10u);
  EXPECT_EQ(s->load_counter("between"), steps - 1);
  // A purge with nothing left to do deletes nothing.
  EXPECT_EQ(s->purge(1100, 1000), 0);
}

// Finished jobs (succeeded, failed, cancelled) last updated before the
// cut-off go with the retention purge, in the same bounded steps; jobs still
// queued, leased or running stay however old they are, and a purge without
// a jobs cut-off leaves the jobs alone.
TEST(store, a_purge_removes_old_finished_jobs_only_when_asked) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  ASSERT_FALSE(s->begin());
  for (int i = 0; i < 300; ++i)
    ASSERT_FALSE(s->save_job("old-done-" + std::to_string(i), i % 2 ? "succeeded" : "failed",
                             500 + i, "{\"i\":" + std::to_string(i) + "}"));
  for (auto state : {"queued", "leased", "running"})
    ASSERT_FALSE(s->save_job(std::string("old-") + state, state, 100, "{\"live\":true}"));
  ASSERT_FALSE(s->save_job("new-done", "succeeded", 2000, "{\"new\":true}"));
  ASSERT_FALSE(s->commit());

  EXPECT_EQ(s->purge(1100, 1000), 0);
  EXPECT_EQ(s->load_jobs(0).size(), 304u);

  store::purge_progress p;
  int steps = 0;
  std::int64_t before = 0;
  while (!p.done && steps < 100) {
    ASSERT_FALSE(s->purge_step(1100, 1000, p, 100, 1000));
    EXPECT_LE(p.deleted - before, 100);
    before = p.deleted;
    ++steps;
  }
  EXPECT_TRUE(p.done);
  EXPECT_EQ(p.deleted, 300);
  EXPECT_GE(steps, 3);
  auto left = s->load_jobs(0);
  EXPECT_EQ(left.size(), 4u);
  for (auto& rec : left)
    EXPECT_EQ(rec.find("\"i\""), std::string::npos) << rec;
}

TEST(store, counters_never_go_down) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  ASSERT_FALSE(s->save_counter("fencing_token", 10));
  ASSERT_FALSE(s->save_counter("fencing_token", 7));
  EXPECT_EQ(s->load_counter("fencing_token"), 10);
  ASSERT_FALSE(s->save_counter("fencing_token", 11));
  EXPECT_EQ(s->load_counter("fencing_token"), 11);
  EXPECT_EQ(s->load_counter("unknown"), 0);
}

TEST(store, leases_survive_reopening) {
  temp_dir d;
  {
    auto s = open_ok(d.file("lull.db"));
    ASSERT_FALSE(s->save_lease({"l1", "w1", "nuc", "active", 2000, "{\"a\":1}"}));
    ASSERT_FALSE(s->save_lease({"l2", "w2", "nuc", "active", 2000, "{}"}));
    ASSERT_FALSE(s->delete_lease("l2"));
  }
  auto s = open_ok(d.file("lull.db"));
  auto leases = s->load_leases();
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].id, "l1");
  EXPECT_EQ(leases[0].record, "{\"a\":1}");
}

TEST(store, a_batch_is_written_whole_or_not_at_all) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  EXPECT_FALSE(write_batch(*s, [&] {
    auto err = s->save_lease({"l1", "w1", "nuc", "active", 2000, "{}"});
    return err ? err : s->save_counter("fencing_token", 5);
  }));
  // A failing write in the middle: the lease before it is rolled back too,
  // and the batch's error names the cause.
  auto failed = write_batch(*s, [&] {
    auto err = s->save_lease({"l2", "w2", "nuc", "active", 2000, "{}"});
    if (!err)
      err = sqlite_error{SQLITE_FULL, "database or disk is full"};
    return err;
  });
  ASSERT_TRUE(failed);
  EXPECT_EQ(*failed, "database or disk is full");
  auto leases = s->load_leases();
  ASSERT_EQ(leases.size(), 1u);
  EXPECT_EQ(leases[0].id, "l1");
  EXPECT_EQ(s->load_counter("fencing_token"), 5);
  // The store takes the next batch: the failed one ended its turn.
  EXPECT_FALSE(write_batch(*s, [&] { return s->delete_lease("l1"); }));
  EXPECT_TRUE(s->load_leases().empty());
}

TEST(store, write_failures_count_until_a_write_works_again) {
  write_failures f("lease manager", "lease");
  EXPECT_FALSE(f.worked()) << "nothing had failed";
  f.failed(3, "disk I/O error", 1000);
  f.failed(2, "disk I/O error", 1001);
  EXPECT_TRUE(f.failing());
  EXPECT_EQ(f.count(), 2u);
  EXPECT_EQ(f.last_error(), "disk I/O error");
  EXPECT_EQ(f.last_error_at(), 1001);
  EXPECT_TRUE(f.worked()) << "failing until now";
  EXPECT_FALSE(f.failing());
  EXPECT_FALSE(f.worked());
  EXPECT_EQ(f.count(), 2u) << "the count is kept for the status";
}

TEST(store, text_with_quotes_is_bound_not_spliced) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  std::string evil = "x'); DROP TABLE samples; --";
  ASSERT_FALSE(s->insert_points({{1, evil, "host", "m", 1.0}}));
  EXPECT_EQ(s->query_points(evil, "host", 0, 10).size(), 1u);
  ASSERT_FALSE(s->insert_points({{2, "nuc", "host", "m", 1.0}}));
}

TEST(store, a_rolled_back_write_leaves_no_sample_under_another_series) {
  temp_dir d;
  auto s = open_ok(d.file("rb.db"));
  ASSERT_TRUE(s);
  // A new series is created inside a transaction that is rolled back (a
  // full disk): its row id is free again, and the next new series takes it.
  ASSERT_FALSE(s->begin());
  ASSERT_FALSE(s->insert_points({{1000, "pi", "host", "cpu.total_pct", 11}}));
  s->rollback();
  ASSERT_FALSE(s->begin());
  ASSERT_FALSE(s->insert_points({{1000, "nuc", "host", "mem.used_pct", 22}}));
  ASSERT_FALSE(s->commit());
  // The retried sample of the first series goes to its own new series.
  ASSERT_FALSE(s->begin());
  ASSERT_FALSE(s->insert_points({{1002, "pi", "host", "cpu.total_pct", 33}}));
  ASSERT_FALSE(s->commit());
  auto nuc = s->query_points("nuc", "host", 0, 5000);
  ASSERT_EQ(nuc.size(), 1u);
  EXPECT_EQ(nuc[0].metric, "mem.used_pct");
  EXPECT_EQ(nuc[0].value, 22);
  auto pi = s->query_points("pi", "host", 0, 5000);
  ASSERT_EQ(pi.size(), 1u);
  EXPECT_EQ(pi[0].metric, "cpu.total_pct");
  EXPECT_EQ(pi[0].value, 33);
}

namespace {

/// Polls `cond` until it holds or 10 s pass.
template <class F>
bool eventually(F cond) {
  auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!cond()) {
    if (std::chrono::steady_clock::now() > until)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

} // namespace

TEST(store, writers_in_one_process_take_turns_in_arrival_order) {
  temp_dir d;
  auto a = open_ok(d.file("turns.db"));
  auto b = open_ok(d.file("turns.db"));
  auto c = open_ok(d.file("turns.db"));
  ASSERT_TRUE(a && b && c);
  std::mutex mtx;
  std::vector<std::string> order;
  auto writer = [&](store& s, const std::string& name, std::int64_t ts) {
    if (auto err = s.begin()) {
      std::lock_guard<std::mutex> lk(mtx);
      order.push_back(name + " failed: " + err.message);
      return;
    }
    {
      std::lock_guard<std::mutex> lk(mtx);
      order.push_back(name);
    }
    EXPECT_FALSE(s.insert_points({{ts, "nuc", "host", name, 1.0}}));
    EXPECT_FALSE(s.commit());
  };
  ASSERT_FALSE(a->begin());
  ASSERT_FALSE(a->insert_points({{1, "nuc", "host", "a", 1.0}}));
  std::thread tb([&] { writer(*b, "b", 2); });
  ASSERT_TRUE(eventually([&] { return a->writers_waiting() == 1; }));
  std::thread tc([&] { writer(*c, "c", 3); });
  ASSERT_TRUE(eventually([&] { return a->writers_waiting() == 2; }));
  {
    std::lock_guard<std::mutex> lk(mtx);
    EXPECT_TRUE(order.empty()) << "a writer began while another held its turn";
  }
  ASSERT_FALSE(a->commit());
  tb.join();
  tc.join();
  EXPECT_EQ(order, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(a->query_points("nuc", "host", 0, 10).size(), 3u);
  EXPECT_EQ(a->writers_waiting(), 0u);
}

TEST(store, a_writer_kept_from_its_turn_gets_a_busy_error_naming_why) {
  temp_dir d;
  auto a = open_ok(d.file("busy.db"));
  auto b = open_ok(d.file("busy.db"));
  ASSERT_TRUE(a && b);
  ASSERT_FALSE(a->begin());
  auto err = b->begin(std::chrono::milliseconds(50));
  ASSERT_TRUE(err);
  EXPECT_EQ(err.code, SQLITE_BUSY);
  EXPECT_NE(err.message.find("another writer in lulld"), std::string::npos) << err.message;
  // Callers roll back after a failed begin: that must not end a's turn.
  b->rollback();
  EXPECT_TRUE(b->begin(std::chrono::milliseconds(50)));
  ASSERT_FALSE(a->insert_points({{1, "nuc", "host", "m", 1.0}}));
  ASSERT_FALSE(a->commit());
  ASSERT_FALSE(b->begin(std::chrono::milliseconds(50)));
  ASSERT_FALSE(b->insert_points({{2, "nuc", "host", "m", 2.0}}));
  ASSERT_FALSE(b->commit());
  EXPECT_EQ(a->query_points("nuc", "host", 0, 10).size(), 2u);
}

// Pages of lease events and quiet streaks are cut at a key (the row, or
// the start and host), so rows added while a client pages neither shift
// a page nor repeat one.
TEST(store, lease_events_page_newest_first_by_row_without_losing_or_repeating_one) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  std::vector<lease_event_row> rows;
  for (int i = 0; i < 25; ++i)
    rows.push_back({1795428000 + i, "grant", "l" + std::to_string(i), "w", "h", "r", "{}"});
  ASSERT_FALSE(s->insert_lease_events(rows));
  std::vector<std::string> seen;
  std::int64_t before = 0;
  int pages = 0;
  while (true) {
    auto page = s->recent_lease_events(0, 10, before);
    ++pages;
    for (auto& e : page)
      seen.push_back(e.lease_id);
    if (pages == 1) { // a newer event: not on a later page
      ASSERT_FALSE(s->insert_lease_events({{1795428100, "grant", "late", "w", "h", "r", "{}"}}));
    }
    if (page.size() < 10)
      break;
    before = page.back().id;
  }
  ASSERT_EQ(seen.size(), 25u);
  for (int i = 0; i < 25; ++i)
    EXPECT_EQ(seen[static_cast<std::size_t>(i)], "l" + std::to_string(24 - i));
  EXPECT_EQ(pages, 3);
  EXPECT_EQ(s->recent_lease_events(0, 1)[0].lease_id, "late");
}

TEST(store, quiet_streaks_page_by_start_and_host) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  // Two hosts with streaks starting at the same times: the host breaks the tie.
  for (int i = 0; i < 6; ++i)
    for (auto* h : {"b", "a"})
      ASSERT_FALSE(s->insert_quiet_streak({h, 1000 + i * 100, 1050 + i * 100, 90, 80}));
  std::vector<std::string> seen;
  std::optional<std::pair<std::int64_t, std::string>> after;
  while (true) {
    auto page = s->quiet_streaks_page("", 0, 5, after);
    for (auto& r : page)
      seen.push_back(r.host + std::to_string(r.start));
    if (page.size() < 5)
      break;
    after = std::make_pair(page.back().start, page.back().host);
  }
  std::vector<std::string> want;
  for (int i = 0; i < 6; ++i)
    for (auto* h : {"a", "b"})
      want.push_back(h + std::to_string(1000 + i * 100));
  EXPECT_EQ(seen, want);
  EXPECT_EQ(s->quiet_streaks_page("a", 0).size(), 6u) << "no limit: all of them";
  EXPECT_EQ(s->quiet_streaks_page("", 1400).size(), 4u) << "ended at or after `since`";
}

namespace {

std::int64_t count_rows(const std::string& path, const char* table) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  std::string sql = std::string("SELECT count(*) FROM ") + table;
  sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
  std::int64_t n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

} // namespace

// A series whose samples and rollups have all gone with retention is
// removed from `series` by the same purge (counted apart from the rows of
// data), and a sample that arrives for it later makes a new series rather
// than landing under a removed id. A series with hourly rollups stays.
TEST(store, a_purge_removes_series_with_nothing_left) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  std::vector<sample_point> pts;
  for (int m = 0; m < 40; ++m)
    pts.push_back({1000, "nuc", "worker:w1", "gone" + std::to_string(m), 1.0});
  pts.push_back({1000, "nuc", "worker:w1", "hourly", 1.0});
  pts.push_back({1000, "nuc", "worker:w1", "fresh", 1.0});
  pts.push_back({5000, "nuc", "worker:w1", "fresh", 2.0});
  ASSERT_FALSE(s->begin());
  ASSERT_FALSE(s->insert_points(pts));
  ASSERT_FALSE(s->insert_rollups({{rollup_resolution::hour, "nuc", "worker:w1", "hourly", 0, 1,
                                   1, 1, 1, 1}}));
  ASSERT_FALSE(s->commit());
  store::purge_progress p;
  int steps = 0;
  while (!p.done && steps < 100) {
    ASSERT_FALSE(s->purge_step(2000, 2000, p, 10));
    ++steps;
  }
  EXPECT_EQ(p.deleted, 42); // the old samples
  EXPECT_EQ(p.series_removed, 40);
  EXPECT_GE(steps, 4);
  s->checkpoint();
  // Only "hourly" and "fresh" are left.
  auto groups = s->series_groups();
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_EQ(s->query_points("nuc", "worker:w1", 0, 10000).size(), 1u);
  // A sample for a removed series lands under a new series of its own.
  ASSERT_FALSE(s->begin());
  ASSERT_FALSE(s->insert_points({{6000, "nuc", "worker:w1", "gone0", 3.0}}));
  ASSERT_FALSE(s->commit());
  auto back = s->query_points("nuc", "worker:w1", 5500, 10000);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].metric, "gone0");
  EXPECT_DOUBLE_EQ(back[0].value, 3.0);
  s.reset();
  EXPECT_EQ(count_rows(d.file("lull.db"), "series"), 3);
}

// Quiet streaks that ended before their cut-off go in the same bounded
// steps, host by host; the rest stay.
TEST(store, a_purge_removes_old_quiet_streaks_in_steps) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  ASSERT_FALSE(s->begin());
  for (int h = 0; h < 3; ++h)
    for (int i = 0; i < 100; ++i) // 79 ended before 10,000, one spans it, 20 after
      ASSERT_FALSE(s->insert_quiet_streak(
        {"h" + std::to_string(h), 2000 + i * 100, 2000 + i * 100 + (i == 79 ? 500 : 50), 90, 80}));
  ASSERT_FALSE(s->commit());
  // Without a streak cut-off the streaks stay.
  EXPECT_EQ(s->purge(0, 0), 0);
  store::purge_progress p;
  int steps = 0;
  std::int64_t before = 0;
  while (!p.done && steps < 100) {
    ASSERT_FALSE(s->purge_step(0, 0, p, 50, std::nullopt, 10000));
    EXPECT_LE(p.deleted - before, 50);
    before = p.deleted;
    ++steps;
  }
  EXPECT_EQ(p.deleted, 3 * 79);
  EXPECT_GE(steps, 5);
  for (int h = 0; h < 3; ++h) {
    auto left = s->quiet_streaks("h" + std::to_string(h), 0);
    ASSERT_EQ(left.size(), 21u) << h;
    EXPECT_EQ(left.front().start, 2000 + 79 * 100); // the one that spans the cut-off
  }
}

// What one query of a host's streaks reads is bounded: the newest `limit`
// along the (host, start) key, oldest first, however many are stored.
TEST(store, a_hosts_streaks_are_read_newest_first_up_to_a_limit) {
  temp_dir d;
  auto s = open_ok(d.file("lull.db"));
  ASSERT_TRUE(s);
  ASSERT_FALSE(s->begin());
  for (int i = 0; i < 1000; ++i) {
    ASSERT_FALSE(s->insert_quiet_streak({"a", 1000 + i * 10, 1005 + i * 10, 90, 80}));
    ASSERT_FALSE(s->insert_quiet_streak({"b", 1000 + i * 10, 1005 + i * 10, 90, 80}));
  }
  ASSERT_FALSE(s->commit());
  auto all = s->quiet_streaks("a", 0);
  EXPECT_EQ(all.size(), 1000u);
  auto some = s->quiet_streaks("a", 0, 100);
  ASSERT_EQ(some.size(), 100u);
  EXPECT_EQ(some.front().start, 1000 + 900 * 10);
  EXPECT_EQ(some.back().start, 1000 + 999 * 10);
  for (auto& r : some)
    EXPECT_EQ(r.host, "a");
  // `since` still applies: streaks that ended before it are left out.
  EXPECT_EQ(s->quiet_streaks("a", 1000 + 995 * 10).size(), 5u);
  // Every host: the newest `limit` of all.
  EXPECT_EQ(s->quiet_streaks("", 0, 50).size(), 50u);
}
