// Collector building blocks: the rolling window, collector isolation and
// jitter, cached directory walks, the bus meter, and the process sampler on
// the Pi 4 fixture tree.

#include <filesystem>
#include <set>
#include <stdexcept>

#include <gtest/gtest.h>

#include "src/probe/process_probe.hpp"
#include "src/stats/bus_meter.hpp"
#include "src/stats/collector_guard.hpp"
#include "src/stats/dir_size.hpp"
#include "src/stats/rolling_window.hpp"
#include "tests/fixture_tree.hpp"

using namespace lull;
using lull::test::fixture_tree;

// -- rolling window -------------------------------------------------------------

TEST(rolling_window, summary_over_window_and_recent_range) {
  rolling_window w(3600);
  for (int i = 1; i <= 100; ++i)
    w.add(i, i); // value i at t = i
  auto all = w.summary(100);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->count, 100u);
  EXPECT_DOUBLE_EQ(all->avg, 50.5);
  EXPECT_DOUBLE_EQ(all->min, 1);
  EXPECT_DOUBLE_EQ(all->max, 100);
  EXPECT_DOUBLE_EQ(all->p95, 95);
  EXPECT_DOUBLE_EQ(all->last, 100);
  auto recent = w.summary(100, 10); // (90, 100]
  ASSERT_TRUE(recent);
  EXPECT_EQ(recent->count, 10u);
  EXPECT_DOUBLE_EQ(recent->avg, 95.5);
  EXPECT_FALSE(w.summary(500, 10));
}

TEST(rolling_window, old_samples_fall_off) {
  rolling_window w(60);
  w.add(0, 99);
  w.add(30, 1);
  w.add(61, 1);
  EXPECT_EQ(w.size(), 2u);
  EXPECT_DOUBLE_EQ(w.summary(61)->max, 1);
}

TEST(rolling_window, one_hour_at_two_seconds_stays_bounded) {
  rolling_window w(3600);
  for (int i = 0; i < 10000; ++i)
    w.add(i * 2.0, i);
  EXPECT_EQ(w.size(), 1800u);
}

TEST(series_store, null_values_add_nothing) {
  series_store s(3600);
  s.add("cpu.temp_c", 1, std::nullopt);
  s.add("cpu.total_pct", 1, 12.5);
  EXPECT_FALSE(s.summary("cpu.temp_c", 1));
  auto j = s.summaries(1);
  EXPECT_EQ(j.size(), 1u);
  EXPECT_EQ(j["cpu.total_pct"]["avg"], 12.5);
}

// -- collector isolation ----------------------------------------------------------

TEST(collector_guard, a_throwing_collector_is_reported_and_the_next_runs) {
  double now = 0;
  collector_guard bad({"dirs", 60, 0.1, 1.0}, [&] { return now; });
  collector_guard good({"host", 2, 0.1, 1.0}, [&] { return now; });
  auto err = bad.run([] { throw std::runtime_error("disk gone"); });
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, "dirs: threw disk gone");
  bool ran = false;
  EXPECT_FALSE(good.run([&] { ran = true; }));
  EXPECT_TRUE(ran);
  EXPECT_EQ(bad.status().failures, 1u);
  EXPECT_FALSE(bad.status().last_ok);
  EXPECT_EQ(to_json(bad.status())["last_error"], "dirs: threw disk gone");
}

TEST(collector_guard, an_overrun_reports_its_duration) {
  double now = 10;
  collector_guard g({"host", 2, 0.1, 0.5}, [&] { return now; });
  auto err = g.run([&] { now += 1.52; });
  ASSERT_TRUE(err);
  EXPECT_EQ(*err, "host: took 1520 ms, timeout 500 ms");
  EXPECT_EQ(g.status().overruns, 1u);
  EXPECT_NEAR(g.status().last_duration_ms, 1520, 1e-6);
  EXPECT_FALSE(g.run([&] { now += 0.1; }));
  EXPECT_TRUE(g.status().last_ok);
  EXPECT_TRUE(g.status().last_error); // the last problem stays visible
}

TEST(collector_guard, jitter_stays_within_its_band_and_varies) {
  collector_guard g({"host", 2, 0.1, 1}, nullptr);
  std::set<long long> seen;
  for (int i = 0; i < 200; ++i) {
    auto d = g.next_delay().count();
    EXPECT_GE(d, 1800);
    EXPECT_LE(d, 2200);
    seen.insert(d);
  }
  EXPECT_GT(seen.size(), 20u);
}

// -- directory sizes ----------------------------------------------------------------

TEST(dir_sizer, walks_are_cached_and_rate_limited) {
  fixture_tree tree("pi4-throttled");
  double now = 0;
  dir_sizer sizer(120, 100000, [&] { return now; });
  auto dir = tree.root() + "/proc/812";
  auto& first = sizer.size(dir, now + 1);
  ASSERT_TRUE(first.bytes);
  EXPECT_TRUE(first.complete);
  auto bytes = *first.bytes;
  EXPECT_GT(first.files, 10u);
  test::overwrite(tree.path("proc/812/extra"), std::string(5000, 'x'));
  now = 60;
  EXPECT_EQ(*sizer.size(dir, now + 1).bytes, bytes); // cached
  EXPECT_EQ(sizer.walks(), 1u);
  now = 121;
  EXPECT_EQ(*sizer.size(dir, now + 1).bytes, bytes + 5000);
  EXPECT_EQ(sizer.walks(), 2u);
}

TEST(dir_sizer, a_missing_dir_is_null_and_a_budget_stops_the_walk) {
  fixture_tree tree("pi4-throttled");
  dir_sizer sizer(0, 5, nullptr);
  auto& missing = sizer.size("/nonexistent/lull", steady_seconds() + 1);
  EXPECT_FALSE(missing.bytes);
  EXPECT_TRUE(missing.error);
  auto& partial = sizer.size(tree.root(), steady_seconds() + 1);
  EXPECT_FALSE(partial.complete);
  EXPECT_TRUE(partial.error);
}

// -- bus meter -----------------------------------------------------------------------

TEST(bus_meter, rates_error_rate_and_latency_percentiles) {
  bus_meter m;
  m.start(100);
  for (int i = 1; i <= 100; ++i) {
    m.on_in();
    m.on_dispatch(i / 1000.0); // 1..100 ms
  }
  for (int i = 0; i < 50; ++i)
    m.on_out();
  m.on_error();
  m.on_error();
  auto j = m.report(110, 3, "pi", 1763900000);
  EXPECT_EQ(j["host_id"], "pi");
  EXPECT_EQ(j["msgs_in"], 100);
  EXPECT_EQ(j["in_per_sec"], 10.0);
  EXPECT_EQ(j["out_per_sec"], 5.0);
  EXPECT_EQ(j["rps"], 15.0);
  EXPECT_EQ(j["error_rate"], 0.02);
  EXPECT_EQ(j["in_flight"], 3);
  EXPECT_EQ(j["p50_ms"], 50.0);
  EXPECT_EQ(j["p95_ms"], 95.0);
  EXPECT_EQ(j["latency_source"], "dispatch");
  // A new interval: nothing happened, so no latency rather than a stale one.
  auto next = m.report(115, 0, "pi", 1763900005);
  EXPECT_EQ(next["rps"], 0.0);
  EXPECT_TRUE(next["p95_ms"].is_null());
  EXPECT_EQ(next["totals"]["in"], 100);
}

TEST(bus_meter, handler_latency_wins_over_dispatch_when_reported) {
  bus_meter m;
  m.start(0);
  m.on_in();
  m.on_dispatch(0.001);
  m.on_handled(0.020, false);
  auto j = m.report(1, 0, "h", 0);
  EXPECT_EQ(j["latency_source"], "handling");
  EXPECT_EQ(j["p95_ms"], 20.0);
  EXPECT_EQ(j["errors"], 1);
}

// -- process probe ---------------------------------------------------------------------

namespace {

process_probe_options pi_processes(const fixture_tree& tree) {
  process_probe_options o;
  o.root = tree.root();
  o.host_id = "pi-kitchen";
  o.watches = {"self", "mosquitto", "/run/mosquitto/mosquitto.pid", "missingd"};
  o.self_pid = 901;
  o.clk_tck = 100;
  o.page_size = 4096;
  return o;
}

} // namespace

TEST(process_probe, parse_pid_stat_with_spaces_and_parens_in_the_name) {
  auto st = parse_pid_stat("42 (my (odd) proc) S 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 5 0 "
                           "900 1000 250 0\n");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->comm, "my (odd) proc");
  EXPECT_EQ(st->utime, 7u);
  EXPECT_EQ(st->threads, 5);
  EXPECT_EQ(st->starttime, 900u);
  EXPECT_EQ(st->rss_pages, 250u);
  EXPECT_FALSE(parse_pid_stat("42 (x) S 1"));
}

TEST(process_probe, watch_names_fit_a_topic_level) {
  EXPECT_EQ(watch_display_name("self", "lulld"), "lulld");
  EXPECT_EQ(watch_display_name("/run/mosquitto/mosquitto.pid", "lulld"), "mosquitto");
  EXPECT_EQ(watch_display_name("node red", "lulld"), "node_red");
}

TEST(process_probe, samples_self_names_and_pid_files_on_the_pi) {
  fixture_tree tree("pi4-throttled");
  process_probe probe(pi_processes(tree));
  auto first = probe.sample(1763900000, 100.0);
  ASSERT_EQ(first.size(), 4u);
  auto& self = first[0];
  EXPECT_EQ(self.name, "lulld");
  EXPECT_TRUE(self.running);
  EXPECT_EQ(self.pid, 901);
  EXPECT_EQ(self.rss_bytes, 2816u * 4096u);
  EXPECT_EQ(self.threads, 6);
  EXPECT_EQ(self.open_fds, 14);
  EXPECT_DOUBLE_EQ(*self.uptime_sec, 96711.45); // boot uptime - 21 s start
  EXPECT_FALSE(self.cpu_pct) << "CPU % needs two readings";
  EXPECT_EQ(first[1].name, "mosquitto");
  EXPECT_EQ(first[1].pid, 812);
  EXPECT_EQ(first[1].open_fds, 9);
  EXPECT_EQ(first[2].name, "mosquitto"); // by pid file
  EXPECT_EQ(first[2].pid, 812);
  EXPECT_EQ(first[3].name, "missingd");
  EXPECT_FALSE(first[3].running);
  EXPECT_FALSE(first[3].rss_bytes);
  EXPECT_TRUE(to_json(first[3])["pid"].is_null());

  // 2 s later lulld has used 0.2 s of CPU: 10 % of one core.
  auto stat = test::slurp(tree.path("proc/901/stat"));
  stat.replace(stat.find(" 3050 1210 "), 11, " 3060 1220 ");
  test::overwrite(tree.path("proc/901/stat"), stat);
  auto second = probe.sample(1763900002, 102.0);
  ASSERT_TRUE(second[0].cpu_pct);
  EXPECT_DOUBLE_EQ(*second[0].cpu_pct, 10.0);
  EXPECT_EQ(second[1].cpu_pct, 0.0);
}

TEST(process_probe, a_new_pid_for_the_same_name_counts_a_restart) {
  fixture_tree tree("pi4-throttled");
  process_probe probe(pi_processes(tree));
  probe.sample(1, 100.0);
  // Mosquitto died and systemd started it again as pid 977.
  std::filesystem::rename(tree.path("proc/812"), tree.path("proc/977"));
  auto stat = test::slurp(tree.path("proc/977/stat"));
  stat.replace(0, 3, "977");
  stat.replace(stat.find(" 1500 "), 6, " 9600 ");
  test::overwrite(tree.path("proc/977/stat"), stat);
  test::overwrite(tree.path("run/mosquitto/mosquitto.pid"), "977\n");
  auto s = probe.sample(3, 102.0);
  EXPECT_EQ(s[1].pid, 977);
  EXPECT_EQ(s[1].restarts, 1u);
  EXPECT_EQ(s[2].pid, 977);
  EXPECT_EQ(s[2].restarts, 1u);
  EXPECT_EQ(s[0].restarts, 0u);
  EXPECT_FALSE(s[1].cpu_pct) << "no CPU % across a restart";
}
