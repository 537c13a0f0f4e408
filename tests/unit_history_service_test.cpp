// history/request answered over a real SQLite file, without actors or a
// broker: series in buckets, paged by cursor; quiet windows; errors that
// name what was wrong.

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "src/history/history_service.hpp"

using namespace lull;

namespace {

struct history_fixture {
  std::string dir;
  std::unique_ptr<store> db;
  std::map<std::string, host_health_input> hosts;
  persister_health_input health;
  int flushes = 0;

  history_fixture() {
    char tmpl[] = "/tmp/lull-history-XXXXXX";
    dir = ::mkdtemp(tmpl);
    auto opened = store::open(dir + "/lull.db");
    db = std::move(std::get<std::unique_ptr<store>>(opened));
  }
  ~history_fixture() {
    db.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  history_service service(std::size_t max_reply_bytes = 262144) {
    history_options o;
    o.host_id = "nuc";
    o.timezone = "UTC";
    o.max_reply_bytes = max_reply_bytes;
    return history_service(*db, o, history_sources{[this] { ++flushes; }, &hosts, &health});
  }
};

constexpr std::int64_t now = 1'800'000'000; // a fixed clock: 2027-01-15

} // namespace

TEST(history_service, answers_a_series_in_buckets_after_flushing_what_was_received) {
  history_fixture f;
  std::vector<sample_point> pts;
  for (int i = 0; i < 60; ++i)
    pts.push_back({now - 600 + i * 10, "pi", "host", "cpu.total_pct", static_cast<double>(i)});
  ASSERT_FALSE(f.db->insert_points(pts));
  auto svc = f.service();
  std::optional<request_error> err;
  auto body = svc.answer({{"host", "pi"}, {"range", "10m"}, {"step", "1m"},
                          {"metrics", {"cpu.total_pct"}}},
                         reply_route{"r", {}, nullptr, wire_format::json}, err, now);
  ASSERT_FALSE(err) << err->message;
  EXPECT_EQ(f.flushes, 1) << "samples not yet written are flushed first";
  EXPECT_EQ(body["kind"], "history");
  EXPECT_EQ(body["source"], "raw");
  EXPECT_EQ(body["host"], "pi");
  EXPECT_GE(body["buckets"].get<int>(), 10);
  EXPECT_FALSE(body.contains("next")) << "a small answer fits in one page";
  EXPECT_TRUE(body["series"].contains("cpu.total_pct")) << body.dump();
}

TEST(history_service, pages_a_long_series_by_cursor_and_refuses_a_foreign_cursor) {
  history_fixture f;
  std::vector<sample_point> pts;
  for (int i = 0; i < 3600; i += 5)
    for (auto* m : {"cpu.total_pct", "mem.used_pct", "load.1m"})
      pts.push_back({now - 3600 + i, "pi", "host", m, static_cast<double>(i % 97)});
  ASSERT_FALSE(f.db->insert_points(pts));
  auto svc = f.service(4096);
  reply_route route{"r", {}, nullptr, wire_format::json};
  nlohmann::json req = {{"host", "pi"}, {"range", "1h"}, {"step", "5s"}};
  std::optional<request_error> err;
  auto first = svc.answer(req, route, err, now);
  ASSERT_FALSE(err) << err->message;
  ASSERT_TRUE(first.contains("next")) << "4096 bytes cannot hold 720 buckets";
  EXPECT_LE(make_reply(route, first)->payload.size(), 4096u);
  // Following the cursors gives every bucket exactly once.
  auto total = first["buckets"].get<std::int64_t>();
  auto cursor = first["next"].get<std::string>();
  int pages = 1;
  while (!cursor.empty() && pages < 1000) {
    auto r = req;
    r["cursor"] = cursor;
    auto page = svc.answer(r, route, err, now + 30); // later pages keep the first's range
    ASSERT_FALSE(err) << err->message;
    EXPECT_EQ(page["start"].get<std::int64_t>(), first["start"].get<std::int64_t>() + total * 5);
    total += page["buckets"].get<std::int64_t>();
    cursor = page.value("next", std::string());
    ++pages;
  }
  EXPECT_GT(pages, 2);
  // As many as one page holds when the reply may be large.
  auto whole = f.service().answer(req, route, err, now);
  ASSERT_FALSE(err);
  EXPECT_FALSE(whole.contains("next"));
  EXPECT_EQ(total, whole["buckets"].get<std::int64_t>());
  EXPECT_GE(total, 720);
  // A cursor of another step is refused with what to send instead.
  auto other = req;
  other["step"] = "10s";
  other["cursor"] = first["next"];
  svc.answer(other, route, err, now);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, error_code::invalid_request);
  EXPECT_NE(err->message.find("same group, host, step and metrics"), std::string::npos)
    << err->message;
}

TEST(history_service, names_the_kinds_it_answers_for_an_unknown_one) {
  history_fixture f;
  auto svc = f.service();
  std::optional<request_error> err;
  svc.answer({{"kind", "everything"}}, reply_route{}, err, now);
  ASSERT_TRUE(err);
  EXPECT_NE(err->message.find("history, quiet_streaks, windows, health, lease_events, decisions"),
            std::string::npos)
    << err->message;
  err.reset();
  svc.answer({{"kind", 7}}, reply_route{}, err, now);
  ASSERT_TRUE(err);
  EXPECT_EQ(err->message, "field 'kind' must be a string");
}

TEST(history_service, learns_quiet_hours_from_stored_streaks) {
  history_fixture f;
  // Quiet every night 01:00-05:00 UTC for two weeks.
  auto day0 = now - now % 86400 - 14 * 86400;
  for (int d = 0; d < 14; ++d) {
    quiet_streak_row s;
    s.host = "pi";
    s.start = day0 + d * 86400 + 3600;
    s.end = s.start + 4 * 3600;
    s.avg_score = 90;
    s.min_score = 80;
    ASSERT_FALSE(f.db->insert_quiet_streak(s));
  }
  ASSERT_FALSE(f.db->insert_points({{day0, "pi", "quiet", "score", 90}}));
  auto svc = f.service();
  auto map = svc.quiet_hours("pi", now);
  ASSERT_TRUE(map);
  EXPECT_EQ((*map)["v"], schema_version);
  EXPECT_FALSE(map->contains("ok"));
  EXPECT_EQ((*map)["timezone"], "UTC");
  EXPECT_TRUE((*map)["ready"]) << map->dump();
  auto& hours = (*map)["hours"];
  ASSERT_EQ(hours.size(), 7u);
  for (auto& day : hours) {
    EXPECT_GT(day[2].get<double>(), 0.5) << "02:00 is quiet every night observed";
    EXPECT_LT(day[12].get<double>(), 0.1) << "noon never is";
  }
  EXPECT_FALSE((*map)["next_window"].is_null());
}

TEST(history_service, a_host_is_stale_after_five_snapshot_intervals_and_never_under_30s) {
  EXPECT_EQ(host_stale_after_sec(2), 30);
  EXPECT_EQ(host_stale_after_sec(10), 50);
  EXPECT_EQ(host_stale_after_sec(3600), 18000);
}
