#include <gtest/gtest.h>

#include <algorithm>
#include <optional>

#include "messages/page.hpp"
#include "src/store/health.hpp"
#include "src/store/series.hpp"
#include "src/store/series_quota.hpp"

using namespace lull;

TEST(series, topics_map_to_host_and_group) {
  topic_names t{"home"};
  auto s = classify_topic(t, "home/stats/host/pi", "nuc");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->host, "pi");
  EXPECT_EQ(s->group, "host");
  EXPECT_EQ(classify_topic(t, "home/stats/host/pi/quiet", "nuc")->group, "quiet");
  EXPECT_EQ(classify_topic(t, "home/stats/process/pi/lulld", "nuc")->group, "process:lulld");
  EXPECT_EQ(classify_topic(t, "home/stats/bus", "nuc")->host, "nuc");
  EXPECT_EQ(classify_topic(t, "home/stats/worker/w1", "nuc")->group, "worker:w1");
  EXPECT_FALSE(classify_topic(t, "stats/host/pi", "nuc")); // wrong prefix
  EXPECT_FALSE(classify_topic(t, "home/scheduler/status", "nuc"));
}

TEST(series, host_snapshot_keeps_the_chosen_numbers_and_skips_nulls) {
  nlohmann::json doc = {
    {"cpu", {{"total_pct", 12.5}, {"temp_c", nullptr}, {"freq_mhz", 1500}, {"count", 4}}},
    {"load", {{"1m", 0.5}}},
    {"mem", {{"used_pct", 40.0}}},
    {"swap", {{"used_pct", nullptr}}},
    {"net", {{"rx_bytes", 100}, {"tx_bytes", 200}}},
    {"disks", {{{"mount", "/"}, {"free_pct", 31.5}}, {{"mount", "/data"}, {"free_pct", nullptr}}}}};
  auto pts = extract_points({"pi", "host"}, doc, 1000);
  std::map<std::string, double> by;
  for (auto& p : pts) {
    EXPECT_EQ(p.ts, 1000);
    EXPECT_EQ(p.host, "pi");
    by[p.metric] = p.value;
  }
  EXPECT_EQ(by.size(), 7u);
  EXPECT_DOUBLE_EQ(by["cpu.total_pct"], 12.5);
  EXPECT_DOUBLE_EQ(by["disk./.free_pct"], 31.5);
  EXPECT_EQ(by.count("cpu.temp_c"), 0u);
  EXPECT_EQ(by.count("cpu.count"), 0u);
  EXPECT_EQ(by.count("disk./data.free_pct"), 0u);
}

TEST(series, other_groups_keep_numbers_one_level_deep) {
  nlohmann::json doc = {{"v", 1}, {"quiet_score", 80}, {"state", "QUIET"},
                        {"inputs", {{"cpu_avg_2m", 5.5}, {"deep", {{"x", 1}}}}}};
  auto pts = extract_points({"pi", "quiet"}, doc, 5);
  ASSERT_EQ(pts.size(), 2u);
  std::set<std::string> names{pts[0].metric, pts[1].metric};
  EXPECT_TRUE(names.count("quiet_score"));
  EXPECT_TRUE(names.count("inputs.cpu_avg_2m"));
}

TEST(series, summary_of_values) {
  std::vector<double> v;
  for (int i = 1; i <= 100; ++i)
    v.push_back(i);
  auto s = summarize(v);
  EXPECT_EQ(s.count, 100);
  EXPECT_DOUBLE_EQ(s.avg, 50.5);
  EXPECT_DOUBLE_EQ(s.min, 1);
  EXPECT_DOUBLE_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.p95, 95);
  EXPECT_DOUBLE_EQ(summarize({7}).p95, 7);
  EXPECT_EQ(summarize({}).count, 0);
}

TEST(series, counter_rates_survive_a_32_bit_wrap_and_skip_a_reset) {
  const double wrap = 4294967296.0;
  std::vector<timed_value> c = {{0, wrap - 1000}, {10, 1000}, {20, 3000}, {30, 500}};
  auto r = counter_rates(c);
  // 0->10 wrapped: 2000 bytes in 10 s; 10->20: 2000 in 10 s; 20->30 went
  // backwards without a wrap near 2^32... it is treated as a 32-bit wrap as
  // well since 3000 < 2^32, so its rate is huge; a 64-bit reset leaves a gap.
  ASSERT_GE(r.size(), 2u);
  EXPECT_DOUBLE_EQ(r[0].value, 200);
  EXPECT_EQ(r[0].ts, 10);
  EXPECT_DOUBLE_EQ(r[1].value, 200);
  std::vector<timed_value> big = {{0, 1e13}, {10, 5.0}};
  EXPECT_TRUE(counter_rates(big).empty()) << "a reset of a 64-bit counter is a gap, not a rate";
}

TEST(series, rollups_close_per_bucket_with_avg_max_p95) {
  rollup_accumulator acc;
  std::vector<rollup_row> closed;
  // 2 s samples from t=0 to t=598: the first 5-minute bucket has 150 values
  // 0..149 (as percent-ish), the second 150 values of 50.
  for (int i = 0; i < 300; ++i) {
    double v = i < 150 ? i : 50;
    for (auto& r : acc.add({i * 2, "pi", "host", "cpu.total_pct", v}))
      closed.push_back(r);
  }
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].resolution, rollup_resolution::five_minutes);
  EXPECT_EQ(closed[0].bucket, 0);
  EXPECT_EQ(closed[0].count, 150);
  EXPECT_DOUBLE_EQ(closed[0].avg, 74.5);
  EXPECT_DOUBLE_EQ(closed[0].max, 149);
  EXPECT_DOUBLE_EQ(closed[0].p95, 142);
  auto rest = acc.close_before(3600);
  ASSERT_EQ(rest.size(), 2u); // the second 5-minute bucket and the hour
  for (auto& r : rest) {
    if (r.resolution == rollup_resolution::hour) {
      // The merge of its two 5-minute buckets: exact count, average, min and
      // max; the larger 5-minute p95 (an upper bound of the hour's p95).
      EXPECT_EQ(r.bucket, 0);
      EXPECT_EQ(r.count, 300);
      EXPECT_DOUBLE_EQ(r.min, 0);
      EXPECT_DOUBLE_EQ(r.max, 149);
      EXPECT_DOUBLE_EQ(r.avg, (74.5 * 150 + 50 * 150) / 300);
      EXPECT_DOUBLE_EQ(r.p95, 142);
    } else {
      EXPECT_EQ(r.bucket, 300);
      EXPECT_DOUBLE_EQ(r.avg, 50);
    }
  }
}

TEST(series, rollups_of_a_counter_are_rates_and_nulls_are_gaps) {
  rollup_accumulator acc;
  // A temperature series with gaps (nulls are never fed) and a wrapping counter.
  const double wrap = 4294967296.0;
  acc.add({0, "pi", "host", "net.rx_bytes", wrap - 600});
  acc.add({10, "pi", "host", "net.rx_bytes", 400});   // 1000 B in 10 s, wrapped
  acc.add({20, "pi", "host", "net.rx_bytes", 2400});  // 2000 B in 10 s
  acc.add({0, "pi", "host", "cpu.temp_c", 50});
  acc.add({250, "pi", "host", "cpu.temp_c", 70});
  auto rows = acc.close_before(300);
  std::map<std::string, rollup_row> by;
  for (auto& r : rows)
    if (r.resolution == rollup_resolution::five_minutes)
      by[r.metric] = r;
  ASSERT_EQ(by.size(), 2u);
  EXPECT_EQ(by["net.rx_bytes"].count, 2);
  EXPECT_DOUBLE_EQ(by["net.rx_bytes"].avg, 150);
  EXPECT_DOUBLE_EQ(by["net.rx_bytes"].max, 200);
  EXPECT_EQ(by["cpu.temp_c"].count, 2);
  EXPECT_DOUBLE_EQ(by["cpu.temp_c"].max, 70);
}

TEST(series, history_buckets_align_to_the_step_at_range_edges) {
  // Points every 2 s from t=995 to t=1033; query [1000, 1030) in 10 s steps.
  std::vector<point_row> pts;
  for (int t = 995; t <= 1033; t += 2)
    pts.push_back({"cpu.total_pct", t, static_cast<double>(t - 995)});
  auto j = bucket_points(pts, 1000, 1030, 10, {});
  EXPECT_EQ(j["start"], 1000);
  EXPECT_EQ(j["buckets"], 3);
  auto& s = j["series"]["cpu.total_pct"];
  // Bucket [1000,1010): t=1001..1009 -> 5 points, values 6..14.
  EXPECT_EQ(s["n"][0], 5);
  EXPECT_DOUBLE_EQ(s["min"][0].get<double>(), 6);
  EXPECT_DOUBLE_EQ(s["max"][0].get<double>(), 14);
  EXPECT_EQ(s["n"][2], 5); // [1020,1030): 1021..1029; 1031 and 1033 are outside
  // An unaligned start is aligned down, so buckets line up across queries.
  auto k = bucket_points(pts, 1003, 1030, 10, {});
  EXPECT_EQ(k["start"], 1000);
}

TEST(series, empty_buckets_are_null_and_counters_become_rates) {
  std::vector<point_row> pts = {{"net.rx_bytes", 0, 0}, {"net.rx_bytes", 10, 1000},
                                {"net.rx_bytes", 40, 4000}};
  auto j = bucket_points(pts, 0, 60, 10, {});
  auto& s = j["series"]["net.rx_bytes_per_sec"];
  EXPECT_DOUBLE_EQ(s["avg"][1].get<double>(), 100); // rate stamped at t=10
  EXPECT_TRUE(s["avg"][2].is_null());
  EXPECT_DOUBLE_EQ(s["avg"][4].get<double>(), 100); // 3000 B over 30 s at t=40
  EXPECT_TRUE(s["avg"][5].is_null());
}

TEST(series, rollup_buckets_weight_by_count) {
  std::vector<rollup_row> rows = {
    {rollup_resolution::five_minutes, "pi", "host", "cpu.total_pct", 0, 100, 10, 5, 20, 18},
    {rollup_resolution::five_minutes, "pi", "host", "cpu.total_pct", 300, 50, 40, 30, 90, 80}};
  auto j = bucket_rollups(rows, 0, 3600, 3600, {});
  auto& s = j["series"]["cpu.total_pct"];
  EXPECT_DOUBLE_EQ(s["avg"][0].get<double>(), (10.0 * 100 + 40.0 * 50) / 150);
  EXPECT_DOUBLE_EQ(s["min"][0].get<double>(), 5);
  EXPECT_DOUBLE_EQ(s["max"][0].get<double>(), 90);
  EXPECT_DOUBLE_EQ(s["p95"][0].get<double>(), 80);
  EXPECT_EQ(s["n"][0], 150);
}

// The p95 of merged rollups is documented as an upper bound (docs/
// persistence.md): the largest bucket p95, never below the p95 of all the
// values, never above their max.
TEST(series, merged_rollup_p95_is_an_upper_bound_of_the_true_p95) {
  rollup_accumulator acc;
  std::vector<rollup_row> five;
  std::vector<double> all;
  // An hour of 2 s samples: quiet buckets around 10 %, one busy burst.
  for (int i = 0; i < 1800; ++i) {
    double v = 10.0 + (i % 7);
    if (i >= 600 && i < 700)
      v = 60.0 + (i % 30);
    all.push_back(v);
    for (auto& r : acc.add({i * 2, "pi", "host", "cpu.total_pct", v}))
      if (r.resolution == rollup_resolution::five_minutes)
        five.push_back(r);
  }
  for (auto& r : acc.close_before(3600))
    if (r.resolution == rollup_resolution::five_minutes)
      five.push_back(r);
  ASSERT_EQ(five.size(), 12u);
  auto j = bucket_rollups(five, 0, 3600, 3600, {});
  auto merged = j["series"]["cpu.total_pct"]["p95"][0].get<double>();
  auto truth = summarize(all);
  EXPECT_GE(merged, truth.p95);
  EXPECT_LE(merged, truth.max);
  EXPECT_GT(merged, truth.p95) << "this data shows the bound is not the p95 itself";
}

TEST(series, history_requests_are_validated_with_precise_messages) {
  auto q = parse_history_query({{"group", "quiet"}, {"range", "1h"}, {"step", "10s"}}, "nuc");
  ASSERT_TRUE(std::holds_alternative<history_query>(q));
  EXPECT_EQ(std::get<history_query>(q).range_sec, 3600);
  EXPECT_EQ(std::get<history_query>(q).host, "nuc");
  auto bad = [](nlohmann::json j) {
    auto r = parse_history_query(j, "nuc");
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string();
  };
  EXPECT_NE(bad({{"range", "forever"}}).find("field 'range'"), std::string::npos);
  EXPECT_NE(bad({{"step", 0}}).find("field 'step'"), std::string::npos);
  EXPECT_NE(bad({{"host", "a/b"}}).find("field 'host'"), std::string::npos);
  EXPECT_NE(bad({{"group", 5}}).find("field 'group' must be a string"), std::string::npos);
  EXPECT_NE(bad({{"range", "7d"}, {"step", "1s"}}).find("at most 5000"), std::string::npos);
  EXPECT_NE(bad({{"metrics", "cpu"}}).find("field 'metrics'"), std::string::npos);
}

TEST(series, long_ranges_are_answered_from_rollups) {
  history_query q;
  q.range_sec = 3600;
  q.step_sec = 10;
  EXPECT_EQ(choose_source(q, 100000000, 7 * 86400, 30 * 86400), history_source::raw);
  q.range_sec = 14 * 86400;
  q.step_sec = 600;
  EXPECT_EQ(choose_source(q, 100000000, 7 * 86400, 30 * 86400), history_source::five_minutes);
  q.range_sec = 90 * 86400;
  q.step_sec = 86400;
  EXPECT_EQ(choose_source(q, 100000000, 7 * 86400, 30 * 86400), history_source::hour);
  q.range_sec = 8 * 86400; // older than raw retention even with a fine step
  q.step_sec = 60;
  EXPECT_EQ(choose_source(q, 100000000, 7 * 86400, 30 * 86400), history_source::five_minutes);
}

TEST(health, rollup_names_each_problem) {
  std::map<std::string, host_health_input> hosts;
  hosts["pi"] = {1000, {"cpu.temp_c: 130.0 outside 0-120"}, {{"/", 4.0}}};
  hosts["nuc"] = {900, {}, {{"/", 50.0}}};
  persister_health_input p;
  p.queue_bound = 100;
  p.queued = 80;
  p.last_flush_ok = 1000;
  auto h = assess_health(hosts, p, 1005);
  EXPECT_EQ(h["status"], "error");
  auto reasons = h["reasons"].dump();
  EXPECT_NE(reasons.find("host nuc: no snapshot for 105s"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("disk / only 4.0% free"), std::string::npos) << reasons;
  EXPECT_NE(reasons.find("130.0 outside"), std::string::npos);
  EXPECT_NE(reasons.find("persister lagging"), std::string::npos);
  hosts.erase("nuc");
  hosts["pi"] = {1000, {}, {{"/", 50.0}}};
  p.queued = 0;
  EXPECT_EQ(assess_health(hosts, p, 1005)["status"], "ok");
}

TEST(series, an_hour_closes_with_its_last_five_minutes_when_the_next_hour_begins) {
  rollup_accumulator acc;
  std::vector<rollup_row> closed;
  // 10 s samples over one hour (value = minute of the hour), then one point
  // of the next hour closes both the last 5-minute bucket and the hour.
  for (int t = 0; t < 3600; t += 10)
    for (auto& r : acc.add({t, "nuc", "host", "mem.used_pct", static_cast<double>(t / 60)}))
      closed.push_back(r);
  for (auto& r : acc.add({3600, "nuc", "host", "mem.used_pct", 99}))
    closed.push_back(r);
  int fives = 0;
  std::optional<rollup_row> hour;
  for (auto& r : closed) {
    if (r.resolution == rollup_resolution::five_minutes)
      ++fives;
    else
      hour = r;
  }
  EXPECT_EQ(fives, 12);
  ASSERT_TRUE(hour);
  EXPECT_EQ(hour->bucket, 0);
  EXPECT_EQ(hour->count, 360);
  EXPECT_DOUBLE_EQ(hour->min, 0);
  EXPECT_DOUBLE_EQ(hour->max, 59);
  EXPECT_DOUBLE_EQ(hour->avg, 29.5);
  // The last 5-minute bucket (minutes 55-59) has the largest p95: 59.
  EXPECT_DOUBLE_EQ(hour->p95, 59);
  // The next hour's point is not in the closed hour.
  EXPECT_TRUE(acc.close_before(3600 + 299).empty());
  auto next = acc.close_before(7200);
  ASSERT_EQ(next.size(), 2u);
  for (auto& r : next) {
    EXPECT_EQ(r.count, 1);
    EXPECT_DOUBLE_EQ(r.avg, 99);
  }
}

// A history reply pages by buckets: each page its own start and count, the
// pages together the whole series, and each within the reply budget.
TEST(series, history_pages_by_buckets_within_the_budget) {
  std::vector<point_row> pts;
  for (std::int64_t t = 0; t < 5000 * 10; t += 5)
    for (auto* m : {"cpu.total_pct", "mem.used_pct", "load.1m"})
      pts.push_back({m, t, 1.0 / 3.0 + static_cast<double>(t % 97)});
  std::sort(pts.begin(), pts.end(), [](auto& a, auto& b) {
    return a.metric != b.metric ? a.metric < b.metric : a.ts < b.ts;
  });
  auto whole = bucket_points(pts, 0, 50000, 10, {});
  ASSERT_EQ(whole["buckets"], 5000);
  for (auto format : {wire_format::json, wire_format::msgpack}) {
    reply_route route{"r", "", "h-1", format};
    auto rest = whole;
    std::size_t total = 0;
    int pages = 0;
    nlohmann::json joined = nlohmann::json::array();
    while (rest["buckets"].get<std::size_t>() > 0) {
      auto k = buckets_that_fit(route, rest, 65536, 40);
      ASSERT_GT(k, 0u);
      auto page = slice_buckets(rest, 0, k);
      EXPECT_LE(reply_size(route, page) + 40, 65536u);
      EXPECT_EQ(page["start"].get<std::int64_t>(), static_cast<std::int64_t>(total) * 10);
      EXPECT_EQ(page["series"]["load.1m"]["avg"].size(), k);
      for (auto& v : page["series"]["cpu.total_pct"]["max"])
        joined.push_back(v);
      total += k;
      ++pages;
      rest = slice_buckets(rest, k, rest["buckets"].get<std::size_t>() - k);
    }
    EXPECT_EQ(total, 5000u);
    EXPECT_EQ(joined, whole["series"]["cpu.total_pct"]["max"]);
    EXPECT_GT(pages, 3);
  }
  // What fits is sent whole.
  reply_route route{"r", "", nullptr, wire_format::json};
  EXPECT_EQ(buckets_that_fit(route, slice_buckets(whole, 0, 10), 65536, 40), 10u);
  // Not even one bucket: 0 (the persister answers ReplyTooLarge).
  EXPECT_EQ(buckets_that_fit(route, whole, 300, 40), 0u);
}

TEST(series, health_reasons_are_clipped_and_keyed_for_paging) {
  std::map<std::string, host_health_input> hosts;
  hosts["b"].last_seen = 100;
  hosts["b"].errors = {std::string(240000, 'e'), "short"};
  hosts["a"].last_seen = 0;
  persister_health_input p;
  p.dropped = 3;
  auto r = assess_health_report(hosts, p, 100, {});
  ASSERT_EQ(r.reasons.size(), 4u);
  EXPECT_EQ(r.status, "warn");
  EXPECT_EQ(r.reasons[0].host, "a"); // stale
  EXPECT_EQ(r.reasons[1].host, "b");
  EXPECT_EQ(r.reasons[1].index, 0u);
  EXPECT_LE(r.reasons[1].text.size(), 1024u);
  EXPECT_NE(r.reasons[1].text.find("[truncated from"), std::string::npos);
  EXPECT_EQ(r.reasons[2].index, 1u);
  EXPECT_EQ(r.reasons[3].section, 1); // lulld's own come last
  EXPECT_EQ(assess_health(hosts, p, 100, {})["reasons"].size(), 4u);
}

namespace {

std::vector<sample_point> status(const std::string& worker, int first, int n, std::int64_t ts) {
  std::vector<sample_point> out;
  for (int i = first; i < first + n; ++i)
    out.push_back({ts, "nuc", "worker:" + worker, "m" + std::to_string(i), 1.0 * i});
  return out;
}

} // namespace

// A worker that names a new metric in every message gets at most
// max_series_per_worker series; its known series keep being stored, other
// sources are not held back, and the refusals are counted.
TEST(series_quota, a_source_names_at_most_its_cap_and_others_are_unaffected) {
  series_quota q({4, 100});
  auto pts = status("w1", 0, 3, 1000);
  EXPECT_TRUE(q.admit(pts, 1000).empty());
  EXPECT_EQ(pts.size(), 3u);
  // Three more new names: one fits, two are refused; a known one still goes.
  pts = status("w1", 2, 4, 1001);
  auto refused = q.admit(pts, 1001);
  ASSERT_EQ(pts.size(), 2u);
  EXPECT_EQ(pts[0].metric, "m2");
  EXPECT_EQ(pts[1].metric, "m3");
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].group, "worker:w1");
  EXPECT_EQ(refused[0].metric, "m4");
  EXPECT_EQ(refused[0].dropped, 2u);
  EXPECT_FALSE(refused[0].by_total);
  EXPECT_EQ(refused[0].source_series, 4u);
  EXPECT_EQ(q.refused(), 2u);
  EXPECT_EQ(q.series_of("nuc", "worker:w1"), 4u);
  // Known names are always taken.
  pts = status("w1", 0, 4, 1002);
  EXPECT_TRUE(q.admit(pts, 1002).empty());
  EXPECT_EQ(pts.size(), 4u);
  // Another worker has its own cap.
  pts = status("w2", 0, 4, 1002);
  EXPECT_TRUE(q.admit(pts, 1002).empty());
  EXPECT_EQ(pts.size(), 4u);
  EXPECT_EQ(q.series(), 8u);
  EXPECT_EQ(q.sources(), 2u);
}

// The log hears of a source's refusals at most once a minute; the count
// has every one.
TEST(series_quota, refusals_are_logged_at_most_once_per_source_per_minute) {
  series_quota q({2, 100});
  std::int64_t now = 5000;
  auto pts = status("w1", 0, 2, now);
  q.admit(pts, now);
  int logged = 0;
  for (int i = 0; i < 120; ++i, ++now) { // two minutes, a new name every second
    pts = status("w1", 100 + i, 1, now);
    logged += static_cast<int>(q.admit(pts, now).size());
    EXPECT_TRUE(pts.empty());
  }
  EXPECT_EQ(logged, 2);
  EXPECT_EQ(q.refused(), 120u);
  // Another source is logged on its own.
  pts = status("w2", 0, 3, now);
  auto r = q.admit(pts, now);
  ASSERT_EQ(r.size(), 1u);
  EXPECT_EQ(r[0].group, "worker:w2");
}

// All sources together hold at most `total` series: a flood of made-up
// sources (a new process name each time) cannot grow the table either.
TEST(series_quota, all_sources_together_hold_at_most_the_total) {
  series_quota q({10, 25});
  std::size_t logged = 0;
  for (int w = 0; w < 100; ++w) {
    auto pts = status("w" + std::to_string(w), 0, 3, 1000);
    logged += q.admit(pts, 1000).size();
  }
  EXPECT_EQ(q.series(), 25u);
  EXPECT_EQ(q.refused(), 300u - 25u);
  // Refusals by the total share one line a minute, however many sources.
  EXPECT_EQ(logged, 1u);
  // A source that holds series still may not add past the total.
  auto pts = status("w0", 3, 1, 1001);
  EXPECT_TRUE(q.admit(pts, 1001).empty()); // refused, not logged again
  EXPECT_TRUE(pts.empty());
  pts = status("w0", 3, 1, 1060);
  auto r = q.admit(pts, 1060);
  EXPECT_TRUE(pts.empty());
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].by_total);
  EXPECT_EQ(r[0].source_series, 3u);
}

// Series silent for the retention period are let go with their slots: the
// source may name new ones again.
TEST(series_quota, silent_series_are_evicted_and_free_their_slots) {
  series_quota q({3, 100});
  auto pts = status("w1", 0, 3, 1000);
  q.admit(pts, 1000);
  pts = status("w1", 0, 1, 5000); // m0 stays in use
  q.admit(pts, 5000);
  auto gone = q.evict_silent(4000);
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(gone[0].host, "nuc");
  EXPECT_EQ(gone[0].group, "worker:w1");
  EXPECT_EQ(gone[0].metric, "m1");
  EXPECT_EQ(gone[1].metric, "m2");
  EXPECT_EQ(q.evicted(), 2u);
  EXPECT_EQ(q.series(), 1u);
  pts = status("w1", 10, 2, 5001);
  EXPECT_TRUE(q.admit(pts, 5001).empty());
  EXPECT_EQ(pts.size(), 2u);
  // A source with nothing left is forgotten altogether.
  q.evict_silent(6000);
  EXPECT_EQ(q.series(), 0u);
  EXPECT_EQ(q.sources(), 0u);
}

// The rollup accumulator forgets a series with nothing left to close, so
// what it holds follows the quota.
TEST(series, the_rollup_accumulator_forgets_a_series) {
  rollup_accumulator acc;
  acc.add({1000, "nuc", "worker:w1", "m0", 1});
  acc.add({1000, "nuc", "worker:w1", "m1", 1});
  EXPECT_EQ(acc.size(), 2u);
  acc.forget("nuc", "worker:w1", "m0");
  EXPECT_EQ(acc.size(), 1u);
  acc.forget("nuc", "worker:w1", "unknown");
  EXPECT_EQ(acc.size(), 1u);
  // The other series still rolls up.
  auto rows = acc.close_before(1000 + 3600);
  ASSERT_EQ(rows.size(), 2u); // its 5-minute and hourly rows
  EXPECT_EQ(rows[0].metric, "m1");
}
