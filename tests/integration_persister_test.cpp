// The persister end to end: lulld with a real Mosquitto and a real SQLite file.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "messages/codec.hpp"
#include "src/store/store.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
namespace fs = std::filesystem;

namespace {

/// Removed when the test program ends, even after a failed assertion.
std::string temp_dir() { return test_data_dir(); }

nlohmann::json ask(client& c, const nlohmann::json& req, const std::string& reply_topic,
                   std::chrono::milliseconds timeout = 5s) {
  static int n = 0;
  auto id = "q-" + std::to_string(++n);
  auto body = req;
  body["request_id"] = id;
  body["reply_to"] = reply_topic;
  c.publish("history/request", body.dump());
  auto m = c.wait_for(
    [&](const mqtt_message& m) {
      auto d = decode(m.payload, wire_format::json);
      return m.topic == reply_topic && d && d->value("request_id", "") == id;
    },
    timeout);
  return m ? *decode(m->payload, wire_format::json) : nlohmann::json();
}

/// lulld's resident set in kB, from /proc.
long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

/// One number from an SQL query on a database lulld no longer holds.
std::int64_t sql_count(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr);
  std::int64_t n = st && sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
  sqlite3_finalize(st);
  sqlite3_close(db);
  return n;
}

/// How often `text` occurs in `log`.
std::size_t occurrences(const std::string& log, const std::string& text) {
  std::size_t n = 0;
  for (auto at = log.find(text); at != std::string::npos; at = log.find(text, at + 1))
    ++n;
  return n;
}

} // namespace

TEST(persister, samples_land_and_are_queryable_over_mqtt_v311) {
  broker b;
  auto dir = temp_dir();
  lulld d(lulld_args(b.uri(), "ptest-a",
                     {"--interval", "500ms", "--persist-flush-interval", "500ms", "--db",
                      dir + "/lull.db"}));
  client_options v311;
  v311.mqtt_version = 4; // a Node-RED-style v3.1.1 client
  client c(b.uri(), v311);
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("workers/ptest/inbox");
  nlohmann::json reply;
  // Samples arrive every 500 ms; wait until at least three distinct seconds
  // have been stored.
  ASSERT_TRUE(wait_until(
    [&] {
      reply = ask(c, {{"group", "host"}, {"host", "ptest-a"}, {"range", "1m"}, {"step", "10s"}},
                  "workers/ptest/inbox", 2s);
      if (!reply.is_object() || !reply.value("ok", false))
        return false;
      int total = 0;
      for (auto& n : reply["series"]["cpu.total_pct"]["n"])
        total += n.get<int>();
      return total >= 3;
    },
    15s))
    << reply.dump() << "\n" << d.log();
  EXPECT_EQ(reply["source"], "raw");
  EXPECT_EQ(reply["step_sec"], 10);
  // 60 s with its start aligned down to a multiple of 10 s: 6 or 7 buckets.
  EXPECT_EQ(reply["start"].get<std::int64_t>() % 10, 0);
  EXPECT_GE(reply["buckets"].get<int>(), 6);
  EXPECT_LE(reply["buckets"].get<int>(), 7);
  EXPECT_TRUE(reply["series"].contains("mem.used_pct"));
  EXPECT_TRUE(reply["series"].contains("disk./.free_pct"));
  EXPECT_TRUE(reply["series"].contains("net.rx_bytes_per_sec"));
  // The data is in the file itself, not just in memory.
  EXPECT_TRUE(fs::file_size(dir + "/lull.db") > 0);
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(3s), 0);
  fs::remove_all(dir);
}

TEST(persister, v5_requests_get_correlated_replies_and_bad_ones_precise_errors) {
  broker b;
  lulld d(lulld_args(b.uri(), "ptest-b", {"--persist-flush-interval", "500ms"}));
  ASSERT_TRUE(d.wait_log("connected to", 5s)) << d.log();
  client c(b.uri());
  c.subscribe("replies/ptest-b");
  mqtt_message req{"history/request", R"({"kind":"health"})", 1, false,
                   "application/json", "replies/ptest-b", "corr-42"};
  // The persister subscribes right after connecting; retry until it answers.
  std::optional<mqtt_message> m;
  ASSERT_TRUE(wait_until(
    [&] {
      c.publish(req);
      m = c.wait_for([](auto& m) { return m.correlation_data == "corr-42"; }, 500ms);
      return m.has_value();
    },
    5s));
  auto health = *decode(m->payload, wire_format::json);
  EXPECT_TRUE(health["ok"].get<bool>());
  EXPECT_TRUE(health["status"] == "ok" || health["status"] == "warn") << health.dump();
  EXPECT_EQ(m->content_type, "application/json");

  c.clear();
  c.publish({"history/request", R"({"range": "forever"})", 1, false, "", "replies/ptest-b",
             "corr-43"});
  m = c.wait_for([](auto& m) { return m.correlation_data == "corr-43"; }, 5s);
  ASSERT_TRUE(m);
  auto err = *decode(m->payload, wire_format::json);
  EXPECT_FALSE(err["ok"].get<bool>());
  EXPECT_EQ(err["error"]["code"], "InvalidRequest");
  EXPECT_NE(err["error"]["message"].get<std::string>().find("field 'range'"), std::string::npos);

  c.clear();
  c.publish({"history/request", R"({"kind": "health", )", 1, false, "", "replies/ptest-b",
             "corr-44"});
  m = c.wait_for([](auto& m) { return m.correlation_data == "corr-44"; }, 5s);
  ASSERT_TRUE(m);
  EXPECT_EQ((*decode(m->payload, wire_format::json))["error"]["code"], "InvalidJson");
  // And lulld is still running after the bad requests.
  EXPECT_TRUE(d.running());
}

TEST(persister, msgpack_request_gets_a_msgpack_reply) {
  broker b;
  lulld d(lulld_args(b.uri(), "ptest-c"));
  ASSERT_TRUE(d.wait_log("connected to", 5s)) << d.log();
  client c(b.uri());
  c.subscribe("replies/ptest-c");
  auto payload = encode({{"kind", "health"}, {"request_id", 7}, {"reply_to", "replies/ptest-c"}},
                        wire_format::msgpack);
  std::optional<mqtt_message> m;
  ASSERT_TRUE(wait_until(
    [&] {
      c.publish("history/request", payload);
      m = c.wait_for_topic("replies/ptest-c", 500ms);
      return m.has_value();
    },
    5s));
  EXPECT_EQ(m->content_type, "application/msgpack");
  auto doc = decode(m->payload, wire_format::msgpack);
  ASSERT_TRUE(doc);
  EXPECT_EQ((*doc)["request_id"], 7);
}

TEST(persister, newer_database_stops_lulld_with_a_clear_message) {
  auto dir = temp_dir();
  fs::copy_file(source_path("tests/fixtures/db/newer.db"), dir + "/lull.db");
  lulld d({"--db", dir + "/lull.db", "--broker", "tcp://127.0.0.1:1"});
  auto code = d.wait_exit(5s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1);
  EXPECT_NE(d.log().find("schema version 99, newer than this lulld"), std::string::npos)
    << d.log();
  fs::remove_all(dir);
}

TEST(persister, read_only_database_directory_is_a_clear_error_at_start) {
  auto dir = temp_dir();
  std::vector<std::string> wrapper;
  if (::geteuid() == 0) {
    // Root writes anywhere: run lulld as nobody against a root-owned 0755 dir.
    ::chmod(dir.c_str(), 0755);
    wrapper = {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
  } else {
    ::chmod(dir.c_str(), 0555);
  }
  lulld d({"--db", dir + "/lull.db", "--broker", "tcp://127.0.0.1:1", "--data-dir", dir}, {},
          wrapper);
  auto code = d.wait_exit(5s);
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 1) << d.log();
  EXPECT_NE(d.log().find("is not writable"), std::string::npos) << d.log();
  EXPECT_FALSE(fs::exists(dir + "/lull.db"));
  ::chmod(dir.c_str(), 0755);
  fs::remove_all(dir);
}

namespace {

/// Makes `host` QUIET for the lease manager (the quiet assessor's job in a
/// full lulld) and waits until its status shows it.
bool make_quiet(client& c, const std::string& host) {
  nlohmann::json q = {{"v", 1},          {"host_id", host},          {"state", "QUIET"},
                      {"quiet_score", 95}, {"assessed_at", utc_timestamp(std::time(nullptr))},
                      {"reasons", nlohmann::json::array()}};
  c.publish("stats/host/" + host + "/quiet", q.dump(), 1, true);
  c.subscribe("scheduler/status");
  return c
    .wait_for(
      [&](const mqtt_message& m) {
        auto j = nlohmann::json::parse(m.payload, nullptr, false);
        return m.topic == "scheduler/status" && j.is_object() && j["hosts"].contains(host)
               && j["hosts"][host]["state"] == "QUIET";
      },
      10s)
    .has_value();
}

nlohmann::json call(client& c, const std::string& topic, nlohmann::json body) {
  static int n = 0;
  auto id = "c-" + std::to_string(++n);
  body["request_id"] = id;
  body["reply_to"] = "itest/inbox";
  c.publish(topic, body.dump());
  auto m = c.wait_for(
    [&](const mqtt_message& m) {
      auto d = nlohmann::json::parse(m.payload, nullptr, false);
      return m.topic == "itest/inbox" && d.is_object() && d.value("request_id", "") == id;
    },
    5s);
  return m ? nlohmann::json::parse(m->payload) : nlohmann::json();
}

} // namespace

TEST(persister, leases_survive_kill_9_with_their_holders_and_fencing_goes_on) {
  broker b;
  auto dir = temp_dir();
  // The test decides the host's state, so no quiet assessor runs here.
  auto args = lulld_args(b.uri(), "ktest",
                         {"--db", dir + "/lull.db", "--roles", "collectors,scheduler",
                          "--quiet-stale-after", "1h"});
  auto first = std::make_unique<lulld>(args);
  client c(b.uri());
  c.subscribe("itest/inbox");
  ASSERT_TRUE(make_quiet(c, "ktest")) << first->log();
  auto grant = call(c, "scheduler/lease/request",
                    {{"v", 1}, {"worker_id", "w1"}, {"job_type", "t"}, {"cost_units", 10}});
  ASSERT_TRUE(grant.value("approved", false)) << grant.dump() << first->log();
  auto lease = grant["lease_id"].get<std::string>();
  auto fencing = grant["fencing_token"].get<std::uint64_t>();

  first->signal(SIGKILL);
  ASSERT_TRUE(first->wait_exit(5s));
  first.reset();

  lulld second(args);
  ASSERT_TRUE(second.wait_log("restored 1 leases", 5s)) << second.log();
  // The holder keeps its lease: a heartbeat renews it.
  nlohmann::json hb;
  ASSERT_TRUE(wait_until(
    [&] {
      hb = call(c, "scheduler/lease/" + lease + "/heartbeat", {{"v", 1}, {"worker_id", "w1"}});
      return hb.is_object() && !hb.empty();
    },
    10s))
    << second.log();
  EXPECT_TRUE(hb.value("ok", false)) << hb.dump();
  EXPECT_GT(hb.value("ttl_remaining_sec", 0.0), 0.0) << hb.dump();
  // Nobody else can act on it.
  auto foreign = call(c, "scheduler/lease/" + lease + "/heartbeat", {{"v", 1}, {"worker_id", "w2"}});
  EXPECT_EQ(foreign["error"]["code"], "NotHolder") << foreign.dump();
  // Capacity accounting was rebuilt and fencing tokens continue upward
  // (once the restarted scheduler has the host's assessment again).
  ASSERT_TRUE(make_quiet(c, "ktest")) << second.log();
  // (The host is known again once its agent, this lulld's collector, has
  // sent its first snapshot.)
  nlohmann::json next;
  ASSERT_TRUE(wait_until(
    [&] {
      next = call(c, "scheduler/lease/request",
                  {{"v", 1}, {"worker_id", "w2"}, {"job_type", "t"}, {"cost_units", 10}});
      return next.value("approved", false);
    },
    20s))
    << next.dump() << second.log();
  EXPECT_GT(next["fencing_token"].get<std::uint64_t>(), fencing);
  EXPECT_NE(next["reason"].get<std::string>().find("used=20/"), std::string::npos)
    << next.dump();
  fs::remove_all(dir);
}

TEST(persister, closed_quiet_streaks_are_kept_and_queryable) {
  broker b;
  lulld d(lulld_args(b.uri(), "stest", {"--persist-flush-interval", "500ms"}));
  client c(b.uri());
  c.subscribe("stest/inbox");
  auto now = std::time(nullptr);
  // What the quiet assessor publishes when a streak closes (another host's
  // assessor may publish it too: the host comes from the message).
  nlohmann::json streaks = {
    {"v", 1},
    {"host_id", "pi-kitchen"},
    {"streaks",
     {{{"host_id", "pi-kitchen"}, {"start", utc_timestamp(now - 600)},
       {"end", utc_timestamp(now - 60)}, {"avg_score", 88.5}, {"min_score", 71.0}},
      {{"host_id", "pi-kitchen"}, {"start", utc_timestamp(now - 30)}, {"end", nullptr},
       {"avg_score", 90}, {"min_score", 90}}}}};
  nlohmann::json reply;
  ASSERT_TRUE(wait_until(
    [&] {
      c.publish("lull/debug/streaks/pi-kitchen", streaks.dump());
      reply = ask(c, {{"kind", "quiet_streaks"}, {"host", "pi-kitchen"}}, "stest/inbox", 1s);
      return reply.is_object() && reply.value("ok", false) && reply["streaks"].size() == 1;
    },
    10s))
    << reply.dump() << d.log();
  auto& s = reply["streaks"][0];
  EXPECT_EQ(s["duration_sec"], 540);
  EXPECT_DOUBLE_EQ(s["min_score"].get<double>(), 71.0);
  EXPECT_EQ(s["end"], utc_timestamp(now - 60));
}

TEST(persister, learned_quiet_windows_from_a_fixture_database) {
  // Two weeks of a host that is QUIET every night 01:00-05:00 UTC and busy
  // otherwise, as hourly rollups of its quiet score and closed streaks.
  auto dir = temp_dir();
  auto path = dir + "/windows.db";
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  auto midnight = now - now % 86400;
  {
    auto opened = store::open(path);
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<store>>(opened));
    auto& db = *std::get<std::unique_ptr<store>>(opened);
    std::vector<rollup_row> rows;
    for (std::int64_t t = midnight - 14 * 86400; t < now - 3600; t += 3600)
      rows.push_back({rollup_resolution::hour, "pi-kitchen", "quiet", "quiet_score", t, 1800,
                      50, 10, 95, 90});
    ASSERT_FALSE(db.insert_rollups(rows));
    // Today's night too, up to now when it is not over yet.
    for (int d = 14; d >= 0; --d) {
      auto start = midnight - d * 86400 + 3600;
      if (start >= now)
        break;
      ASSERT_FALSE(db.insert_quiet_streak(
        {"pi-kitchen", start, std::min(start + 4 * 3600, now - 1), 90, 80}));
    }
  }
  broker b;
  lulld d(lulld_args(b.uri(), "wtest", {"--db", path, "--lease-timezone", "UTC"}));
  client c(b.uri());
  c.subscribe("wtest/inbox");
  nlohmann::json reply;
  ASSERT_TRUE(wait_until(
    [&] {
      reply = ask(c, {{"kind", "windows"}, {"host", "pi-kitchen"}, {"weeks", 2}}, "wtest/inbox", 1s);
      return reply.is_object() && reply.value("ok", false);
    },
    15s))
    << reply.dump() << d.log();
  EXPECT_EQ(reply["timezone"], "UTC");
  EXPECT_EQ(reply["ready"], true);
  EXPECT_GE(reply["days_observed"].get<double>(), 13.9);
  ASSERT_EQ(reply["hours"].size(), 7u);
  for (int day = 0; day < 7; ++day) {
    auto& row = reply["hours"][day];
    ASSERT_EQ(row.size(), 24u);
    // Within 0.01: run between 01:00 and 05:00 UTC, today's night is not
    // over, its streak ends a second before now, and that hour reads 0.999.
    for (int h : {1, 2, 3, 4})
      EXPECT_NEAR(row[h].get<double>(), 1.0, 0.01) << reply["days"][day] << " " << h;
    for (int h : {0, 6, 12, 20})
      EXPECT_DOUBLE_EQ(row[h].get<double>(), 0.0) << reply["days"][day] << " " << h;
  }
  // The next hour QUIET >= 60 % of the time: now, inside the night, or the
  // next 01:00 UTC.
  auto next = parse_utc_timestamp(reply["next_window"].get<std::string>());
  ASSERT_TRUE(next);
  auto hour = (now % 86400) / 3600;
  if (hour >= 1 && hour < 5)
    EXPECT_LE(*next - now, 5);
  else
    EXPECT_EQ(*next, (hour < 1 ? midnight : midnight + 86400) + 3600);
  // A bad request gets a precise error.
  auto bad = ask(c, {{"kind", "windows"}, {"weeks", 0}}, "wtest/inbox");
  EXPECT_EQ(bad["error"]["message"], "field 'weeks' must be an integer from 1 to 52");
}

TEST(persister, retention_purges_what_is_due_and_keeps_the_rest) {
  // A database with data on both sides of the cut-offs: raw samples older
  // than retention.raw (1 h here), 5-minute rollups and lease events older
  // than retention.rollup_5m (1 d), and hourly rollups, kept for good.
  auto dir = temp_dir();
  auto path = dir + "/retention.db";
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  const std::int64_t old_raw = 3 * 600, new_raw = 600; // ts every 2 s
  {
    auto opened = store::open(path);
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<store>>(opened));
    auto& db = *std::get<std::unique_ptr<store>>(opened);
    std::vector<sample_point> pts;
    for (int m = 0; m < 3; ++m) {
      auto metric = "metric" + std::to_string(m);
      for (std::int64_t i = 0; i < 600; ++i) {
        pts.push_back({now - 3 * 3600 + 2 * i, "old-host", "host", metric, 1.0});
        if (m == 0)
          pts.push_back({now - 1200 + 2 * i, "old-host", "host", metric, 2.0});
      }
    }
    ASSERT_FALSE(db.begin());
    ASSERT_FALSE(db.insert_points(pts));
    ASSERT_FALSE(db.insert_rollups(
      {{rollup_resolution::five_minutes, "old-host", "host", "metric0", now - 2 * 86400, 150, 1, 1,
        1, 1},
       {rollup_resolution::five_minutes, "old-host", "host", "metric0", now - 1800, 150, 2, 2, 2,
        2},
       {rollup_resolution::hour, "old-host", "host", "metric0", now - 2 * 86400, 1800, 1, 1, 1,
        1}}));
    ASSERT_FALSE(db.insert_lease_events({{now - 2 * 86400, "grant", "l-old", "w", "old-host", "", "{}"},
                                         {now - 60, "grant", "l-new", "w", "old-host", "", "{}"}}));
    ASSERT_FALSE(db.commit());
  }
  broker b;
  lulld d(lulld_args(b.uri(), "rtest",
                     {"--db", path, "--retention-raw", "1h", "--retention-rollup-5m", "1d",
                      "--retention-interval", "1s", "--roles", "scheduler"}));
  // old_raw rows, one 5-minute rollup and one lease event.
  auto expected = "retention removed " + std::to_string(old_raw + 2) + " rows";
  ASSERT_TRUE(d.wait_log(expected, 20s)) << d.log();
  d.signal(SIGTERM);
  ASSERT_EQ(d.wait_exit(10s), 0) << d.log();

  auto opened = store::open(path);
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<store>>(opened));
  auto& db = *std::get<std::unique_ptr<store>>(opened);
  auto raw = db.query_points("old-host", "host", 0, now + 10);
  EXPECT_EQ(static_cast<std::int64_t>(raw.size()), new_raw);
  for (auto& p : raw)
    EXPECT_GE(p.ts, now - 3600);
  auto five = db.query_rollups(rollup_resolution::five_minutes, "old-host", "host", 0, now + 10);
  ASSERT_EQ(five.size(), 1u);
  EXPECT_EQ(five[0].bucket, now - 1800);
  EXPECT_EQ(db.query_rollups(rollup_resolution::hour, "old-host", "host", 0, now + 10).size(), 1u);
  auto events = db.recent_lease_events(0, 10);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].lease_id, "l-new");
}

TEST(persister, finished_jobs_age_out_while_lulld_runs) {
  // The queue dispatcher purges old finished jobs when it starts; a lulld
  // that keeps running has the persister's retention purges remove them as
  // they pass 7 days. A job that finished 7 days less 10 s before lulld
  // starts survives the start and goes once it passes the cut-off while
  // lulld is up; a younger finished job and an old job still queued stay.
  // (lulld holds its database exclusively while it runs, so the records are
  // written before it starts.)
  auto dir = temp_dir();
  auto path = dir + "/jobs.db";
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  {
    auto opened = store::open(path);
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<store>>(opened))
      << std::get<std::string>(opened);
    auto& db = *std::get<std::unique_ptr<store>>(opened);
    ASSERT_FALSE(db.begin(std::chrono::milliseconds(5000)));
    ASSERT_FALSE(db.save_job("j-aging-done", "succeeded", now - 7 * 86400 + 10,
                             R"({"id":"j-aging-done"})"));
    ASSERT_FALSE(db.save_job("j-young-done", "failed", now - 86400, R"({"id":"j-young-done"})"));
    ASSERT_FALSE(db.save_job("j-old-queued", "queued", now - 8 * 86400, R"({"id":"j-old-queued"})"));
    ASSERT_FALSE(db.commit());
  }
  broker b;
  lulld d(lulld_args(b.uri(), "jtest",
                     {"--db", path, "--retention-interval", "1s", "--roles", "scheduler"}));
  ASSERT_TRUE(d.wait_log("queue dispatcher: restored", 20s)) << d.log();
  ASSERT_TRUE(d.wait_log("retention removed 1 rows", 30s)) << d.log();
  d.signal(SIGTERM);
  ASSERT_EQ(d.wait_exit(10s), 0) << d.log();

  auto opened = store::open(path);
  ASSERT_TRUE(std::holds_alternative<std::unique_ptr<store>>(opened));
  auto& db = *std::get<std::unique_ptr<store>>(opened);
  std::vector<std::string> ids;
  for (auto& rec : db.load_jobs(0))
    ids.push_back(nlohmann::json::parse(rec).value("id", ""));
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"j-old-queued", "j-young-done"}));
}

namespace {

/// The raw reply to a history request (its size on the wire counts).
std::optional<mqtt_message> ask_raw(client& c, nlohmann::json req, const std::string& inbox) {
  static int n = 0;
  auto id = "r-" + std::to_string(++n);
  req["request_id"] = id;
  req["reply_to"] = inbox;
  c.publish("history/request", req.dump());
  return c.wait_for(
    [&](const mqtt_message& m) {
      auto d = decode(m.payload, wire_format::json);
      return m.topic == inbox && d && d->value("request_id", "") == id;
    },
    5s);
}

/// lulld's count of reconnects, from its next stats/bus report.
std::optional<int> reconnects(client& c) {
  c.subscribe("stats/bus");
  auto m = c.wait_for(
    [](const mqtt_message& m) {
      auto d = decode(m.payload, wire_format::json);
      return m.topic == "stats/bus" && d && d->contains("reconnects");
    },
    15s);
  if (!m)
    return std::nullopt;
  return (*decode(m->payload, wire_format::json))["reconnects"].get<int>();
}

} // namespace

// Five lease events with 240 kB reasons (anyone may publish on
// scheduler/events in open mode) made the lease_events answer 1.2 MB: the
// broker refused it and dropped lulld, again on every reconnect. Reasons are
// now kept to 1 KiB with a marker, the answer fits, and it pages.
TEST(persister, huge_lease_event_reasons_are_cut_and_the_events_page) {
  broker b;
  auto dir = temp_dir();
  lulld d(lulld_args(b.uri(), "evtest",
                     {"--persist-flush-interval", "500ms", "--db", dir + "/lull.db"}));
  ASSERT_TRUE(d.wait_log("connected to", 5s)) << d.log();
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("ev/inbox");
  ASSERT_TRUE(wait_until([&] { return ask_raw(c, {{"kind", "health"}}, "ev/inbox").has_value(); },
                         10s))
    << d.log();
  auto now = std::time(nullptr);
  for (int i = 0; i < 5; ++i) {
    nlohmann::json ev = {{"v", 1},
                         {"type", "revoked"},
                         {"event", "revoked"},
                         {"lease_id", "L-big-" + std::to_string(i)},
                         {"worker_id", "wbig"},
                         {"host_id", "farm"},
                         {"reason", std::string(240000, static_cast<char>('a' + i))},
                         {"ts", utc_timestamp(now)}};
    c.publish("scheduler/events", ev.dump());
  }
  auto ours = [](const nlohmann::json& events) {
    std::vector<std::string> ids;
    for (auto& e : events)
      if (e["lease_id"].get<std::string>().rfind("L-big-", 0) == 0)
        ids.push_back(e["lease_id"].get<std::string>());
    return ids;
  };
  std::optional<mqtt_message> m;
  nlohmann::json reply;
  ASSERT_TRUE(wait_until(
    [&] {
      m = ask_raw(c, {{"kind", "lease_events"}}, "ev/inbox");
      if (!m)
        return false;
      reply = *decode(m->payload, wire_format::json);
      return ours(reply["events"]).size() == 5;
    },
    15s))
    << reply.dump().substr(0, 2000) << d.log();
  EXPECT_LT(m->payload.size(), 8000u);
  std::cout << "[ info ] 5 lease events with 240 kB reasons answered in " << m->payload.size()
            << " bytes\n";
  for (auto& e : reply["events"]) {
    auto reason = e["reason"].get<std::string>();
    EXPECT_LE(reason.size(), 1024u);
    EXPECT_NE(reason.find("[truncated from 240000 bytes]"), std::string::npos) << reason;
  }
  // Two a page: three pages, newest first, none lost or repeated.
  std::vector<std::string> paged;
  std::string cursor;
  int pages = 0;
  while (true) {
    nlohmann::json req = {{"kind", "lease_events"}, {"limit", 2}};
    if (!cursor.empty())
      req["cursor"] = cursor;
    auto p = ask_raw(c, req, "ev/inbox");
    ASSERT_TRUE(p) << d.log();
    auto page = *decode(p->payload, wire_format::json);
    ASSERT_TRUE(page.value("ok", false)) << page.dump();
    ++pages;
    EXPECT_LE(page["events"].size(), 2u);
    for (auto& id : ours(page["events"]))
      paged.push_back(id);
    if (!page.contains("next"))
      break;
    cursor = page["next"].get<std::string>();
    ASSERT_LT(pages, 20);
  }
  EXPECT_EQ(paged, (std::vector<std::string>{"L-big-4", "L-big-3", "L-big-2", "L-big-1",
                                             "L-big-0"}));
  EXPECT_EQ(pages, 3);
  auto bad = ask_raw(c, {{"kind", "lease_events"}, {"cursor", "nonsense"}}, "ev/inbox");
  ASSERT_TRUE(bad);
  EXPECT_EQ((*decode(bad->payload, wire_format::json))["error"]["code"], "InvalidRequest");
  // lulld kept its connection all along.
  c.clear();
  auto rc = reconnects(c);
  ASSERT_TRUE(rc) << d.log();
  EXPECT_EQ(*rc, 0) << d.log();
  EXPECT_EQ(d.log().find("reconnecting"), std::string::npos) << d.log();
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(5s), 0);
  fs::remove_all(dir);
}

// With a 4 KiB reply budget a history answer comes in pages of buckets,
// each within the budget, and `lull history` joins them into the range.
TEST(persister, history_pages_within_a_small_budget_and_lull_history_joins_them) {
  broker b;
  auto dir = temp_dir();
  lulld d(lulld_args(b.uri(), "hptest",
                     {"--interval", "500ms", "--persist-flush-interval", "500ms", "--db",
                      dir + "/lull.db", "--limits-max-reply-bytes", "4096"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("hp/inbox");
  nlohmann::json query = {{"group", "host"}, {"host", "hptest"}, {"range", "2m"}, {"step", "1s"},
                          {"metrics", {"cpu.total_pct", "mem.used_pct", "load.1m"}}};
  // Pages until the range is in; true once three samples are stored.
  int pages = 0;
  std::size_t buckets = 0, samples = 0, largest = 0;
  auto walk = [&] {
    pages = 0;
    buckets = samples = largest = 0;
    std::int64_t next_start = 0;
    auto req = query;
    while (true) {
      auto m = ask_raw(c, req, "hp/inbox");
      if (!m)
        return false;
      largest = std::max(largest, m->payload.size());
      auto page = *decode(m->payload, wire_format::json);
      if (!page.value("ok", false))
        return false;
      // Each page starts where the one before it ended.
      if (pages > 0) {
        EXPECT_EQ(page["start"].get<std::int64_t>(), next_start);
      }
      next_start = page["start"].get<std::int64_t>() + page["buckets"].get<std::int64_t>();
      ++pages;
      buckets += page["buckets"].get<std::size_t>();
      for (auto& n : page["series"]["mem.used_pct"]["n"])
        samples += n.get<std::size_t>();
      if (!page.contains("next"))
        return true;
      req["cursor"] = page["next"];
      if (pages > 200)
        return false;
    }
  };
  ASSERT_TRUE(wait_until([&] { return walk() && samples >= 3; }, 20s))
    << pages << " pages, " << samples << " samples\n" << d.log();
  EXPECT_LE(largest, 4096u);
  EXPECT_GT(pages, 2);
  EXPECT_GE(buckets, 120u);
  EXPECT_LE(buckets, 121u);
  std::cout << "[ info ] 2 minutes in 1 s steps, 3 metrics: " << pages
            << " pages of at most " << largest << " bytes\n";

  auto r = lull_cli({"--broker", b.uri(), "history", "--host", "hptest", "--range", "2m",
                     "--step", "1s", "--metric", "cpu.total_pct", "--metric", "mem.used_pct",
                     "--metric", "load.1m", "--json"});
  ASSERT_EQ(r.code, 0) << r.err << d.log();
  auto joined = nlohmann::json::parse(r.out, nullptr, false);
  ASSERT_TRUE(joined.is_object()) << r.out;
  EXPECT_FALSE(joined.contains("next"));
  auto n = joined["buckets"].get<std::size_t>();
  EXPECT_GE(n, 120u);
  EXPECT_LE(n, 121u);
  for (auto& [name, s] : joined["series"].items())
    for (auto* a : {"avg", "min", "max", "p95", "n"})
      EXPECT_EQ(s[a].size(), n) << name << "." << a;
  auto plain = lull_cli({"--broker", b.uri(), "history", "--host", "hptest", "--range", "2m",
                         "--step", "1s", "--metric", "mem.used_pct"});
  ASSERT_EQ(plain.code, 0) << plain.err;
  EXPECT_NE(plain.out.find("mem.used_pct"), std::string::npos) << plain.out;
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(5s), 0);
}

namespace {

/// The persister's part of the retained scheduler/status, read afresh.
nlohmann::json persister_status(client& c) {
  c.clear();
  c.subscribe("scheduler/status"); // the broker hands the retained one again
  auto m = c.wait_for_topic("scheduler/status", 5s);
  auto j = m ? nlohmann::json::parse(m->payload, nullptr, false) : nlohmann::json();
  return j.is_object() && j["store"].is_object() ? j["store"]["persister"] : nlohmann::json();
}

} // namespace

// 100 workers whose every status names 64 new metrics (2,000 statuses, 20
// each, 128,000 names: the stats lane's burst for each source; faster, the
// MQTT bridge sheds them before they are decoded, as integration_flood
// shows): each keeps at most limits.max_series_per_worker (256) series and
// all of them limits.max_series (20,000); the rest are refused, counted in
// scheduler/status and logged at most once a minute per source, and lulld
// stays small. A worker whose series came first keeps storing them.
TEST(persister, workers_naming_new_metrics_get_at_most_their_cap_of_series) {
  broker b;
  auto dir = temp_dir();
  auto path = dir + "/series.db";
  lulld d(lulld_args(b.uri(), "series-test",
                     {"--db", path, "--roles", "scheduler", "--persist-flush-interval", "500ms"}));
  client_options copts;
  copts.keep_alive = std::chrono::seconds(60); // thousands of messages in (see client_options)
  client c(b.uri(), copts);
  c.subscribe("scheduler/status");
  c.subscribe("series/inbox");
  ASSERT_TRUE(c.wait_for_topic("scheduler/status", 20s)) << d.log();
  // The persister answers once it has subscribed.
  ASSERT_TRUE(wait_until(
    [&] {
      auto r = ask(c, {{"kind", "health"}}, "series/inbox", 1s);
      return r.is_object() && r.value("ok", false);
    },
    20s))
    << d.log();
  auto steady = [&](int jobs) {
    c.publish("stats/worker/steady",
              nlohmann::json({{"v", 1}, {"state", "online"}, {"jobs", jobs}, {"load", {{"cpu", 1.5}}}})
                .dump());
  };
  // Stored once the persister has taken in everything published before:
  // its mailbox keeps the order the messages came in.
  auto stored = [&](int jobs) {
    nlohmann::json hist;
    bool ok = wait_until(
      [&] {
        hist = ask(c, {{"group", "worker:steady"}, {"range", "10m"}, {"step", "1m"}},
                   "series/inbox", 5s);
        if (!hist.is_object() || !hist.value("ok", false) || !hist["series"].contains("jobs"))
          return false;
        for (auto& x : hist["series"]["jobs"]["max"])
          if (x.is_number() && x.get<int>() == jobs)
            return true;
        return false;
      },
      120s);
    EXPECT_TRUE(ok) << hist.dump();
    return ok;
  };
  steady(1);
  ASSERT_TRUE(stored(1)) << d.log().substr(0, 3000);
  auto before = rss_kb(d.pid());
  auto t0 = std::chrono::steady_clock::now();
  constexpr int workers = 100, statuses = 20, names = 64, cap = 256, total = 20000;
  for (int i = 0; i < statuses; ++i) {
    for (int w = 0; w < workers; ++w) {
      nlohmann::json st = {{"v", 1}, {"state", "online"}};
      for (int k = 0; k < names; ++k)
        st["metric_" + std::to_string(i) + "_" + std::to_string(k)] = k;
      c.publish("stats/worker/flood-" + std::to_string(w), st.dump());
    }
  }
  // The steady worker's known names are still stored, after the flood.
  steady(2);
  ASSERT_TRUE(stored(2)) << d.log().substr(0, 3000);
  auto elapsed = std::chrono::steady_clock::now() - t0;
  auto after = rss_kb(d.pid());
  // What the stats lane let in was refused past the caps (it sheds what a
  // source sends past its burst of 20, so all 2,000 statuses may go in).
  nlohmann::json persister;
  EXPECT_TRUE(wait_until(
    [&] {
      persister = persister_status(c);
      return persister.is_object() && persister.value("series", 0L) == total
             && persister.value("series_refused", 0L) >= 100000L;
    },
    30s))
    << persister.dump();
  std::printf("lulld RSS: %ld kB before, %ld kB after %d statuses of %d new names from %d "
              "workers; %s\n",
              before, after, workers * statuses, names, workers, persister.dump().c_str());
  // Logged at most once a minute for a source.
  auto minutes = std::chrono::duration_cast<std::chrono::minutes>(elapsed).count();
  auto lines = occurrences(d.log(), "worker:flood-0 on series-test names");
  EXPECT_GE(lines, 1u) << d.log().substr(0, 3000);
  EXPECT_LE(lines, static_cast<std::size_t>(1 + minutes)) << d.log().substr(0, 3000);
#if LULL_UNDER_ASAN
  std::printf("RSS bound not checked under AddressSanitizer\n");
#else
  EXPECT_LT(after, 64 * 1024) << "RSS " << after << " kB";
#endif
  d.signal(SIGTERM);
  ASSERT_EQ(d.wait_exit(10s), 0) << d.log().substr(0, 3000);
  EXPECT_EQ(sql_count(path, "SELECT count(*) FROM series WHERE grp = 'worker:flood-0'"), cap);
  EXPECT_EQ(sql_count(path, "SELECT max(n) FROM (SELECT count(*) AS n FROM series "
                            "WHERE grp LIKE 'worker:flood-%' GROUP BY grp)"),
            cap);
  EXPECT_EQ(sql_count(path, "SELECT count(*) FROM series"), total);
  EXPECT_EQ(sql_count(path, "SELECT count(*) FROM series WHERE grp = 'worker:steady'"), 2);
  fs::remove_all(dir);
}

// A thousand made-up hosts, each with 200 kB of `errors`: what lulld keeps
// of each snapshot's free text is bounded at decode (16 errors of 256
// bytes), so its resident set stays under 64 MB and it keeps answering.
// (Sent 20 at a time, each batch taken in before the next: the stats lane
// holds 8 MiB at most.)
TEST(persister, a_thousand_hosts_with_huge_errors_leave_memory_bounded) {
  broker b;
  auto dir = temp_dir();
  lulld d(lulld_args(b.uri(), "errors-test", {"--db", dir + "/lull.db"}));
  client c(b.uri());
  c.subscribe("errors/inbox");
  ASSERT_TRUE(wait_until(
    [&] {
      auto r = ask(c, {{"kind", "health"}}, "errors/inbox", 1s);
      return r.is_object() && r.value("ok", false);
    },
    20s))
    << d.log();
  auto before = rss_kb(d.pid());
  constexpr int hosts = 1000, batch = 20;
  for (int first = 0; first < hosts; first += batch) {
    for (int h = first; h < first + batch; ++h) {
      auto host = "fake" + std::to_string(h);
      auto snap = nlohmann::json::parse(agent_snapshot(host));
      snap["errors"] = nlohmann::json::array();
      for (int e = 0; e < 100; ++e)
        snap["errors"].push_back(std::to_string(e) + std::string(2000, 'e'));
      c.publish("stats/host/" + host, snap.dump());
    }
    // Published after the batch on the same connection: answered once the
    // persister has taken in every snapshot before it.
    nlohmann::json r;
    ASSERT_TRUE(wait_until(
      [&] {
        r = ask(c, {{"kind", "quiet_streaks"}, {"host", "fake0"}}, "errors/inbox", 10s);
        return r.is_object() && r.value("ok", false);
      },
      60s))
      << first << " " << d.log().substr(0, 3000);
  }
  // Every snapshot was taken in: each made five series of its host.
  nlohmann::json persister;
  EXPECT_TRUE(wait_until(
    [&] {
      persister = persister_status(c);
      return persister.is_object() && persister.value("series", 0L) >= 5 * hosts;
    },
    30s))
    << persister.dump();
  auto after = rss_kb(d.pid());
  std::printf("lulld RSS: %ld kB before, %ld kB after %d hosts with 200 kB of errors each\n",
              before, after, hosts);
#if LULL_UNDER_ASAN
  std::printf("RSS bound not checked under AddressSanitizer\n");
#else
  EXPECT_LT(after, 64 * 1024) << "RSS " << after << " kB";
#endif
  EXPECT_TRUE(d.running());
  d.signal(SIGTERM);
  EXPECT_EQ(d.wait_exit(10s), 0);
  fs::remove_all(dir);
}

// 10,800 made-up quiet streaks, each starting a minute after the one before
// and lasting until a minute ago (what anyone may publish on
// lull/debug/streaks/<host> in open mode), over four weeks of a host's
// history: a windows query reads at most the newest 5,000 streaks of the
// host along its key and counts overlapping ones once, so it is answered
// in milliseconds (2.1 s each before). Streaks older than
// retention.quiet_streaks go with the retention purge.
TEST(persister, many_quiet_streaks_keep_windows_queries_fast_and_old_ones_are_purged) {
  auto dir = temp_dir();
  auto path = dir + "/streaks.db";
  auto now = static_cast<std::int64_t>(std::time(nullptr));
  {
    auto opened = store::open(path);
    ASSERT_TRUE(std::holds_alternative<std::unique_ptr<store>>(opened));
    auto& db = *std::get<std::unique_ptr<store>>(opened);
    ASSERT_FALSE(db.begin(std::chrono::milliseconds(5000)));
    std::vector<rollup_row> rows;
    for (std::int64_t t = (now - 28 * 86400) / 3600 * 3600; t < now - 7200; t += 3600)
      rows.push_back({rollup_resolution::hour, "pi-kitchen", "quiet", "quiet_score", t, 1800,
                      50, 10, 95, 90});
    ASSERT_FALSE(db.insert_rollups(rows));
    for (int i = 0; i < 10800; ++i) {
      auto start = now - 28 * 86400 + i * 60;
      ASSERT_FALSE(db.insert_quiet_streak({"pi-kitchen", start, now - 60, 90, 80}));
    }
    for (int i = 0; i < 500; ++i) // a year and more ago
      ASSERT_FALSE(db.insert_quiet_streak(
        {"pi-kitchen", now - 400 * 86400 + i * 600, now - 400 * 86400 + i * 600 + 300, 90, 80}));
    ASSERT_FALSE(db.commit());
  }
  broker b;
  lulld d(lulld_args(b.uri(), "streaks-test",
                     {"--db", path, "--lease-timezone", "UTC", "--roles", "scheduler",
                      "--retention-interval", "1s"}));
  client c(b.uri());
  c.subscribe("streaks/inbox");
  ASSERT_TRUE(d.wait_log("retention removed 500 rows", 30s)) << d.log();
  nlohmann::json reply;
  ASSERT_TRUE(wait_until(
    [&] {
      reply = ask(c, {{"kind", "windows"}, {"host", "pi-kitchen"}}, "streaks/inbox", 5s);
      return reply.is_object() && reply.value("ok", false);
    },
    30s))
    << reply.dump() << d.log();
  double longest = 0;
  for (int i = 0; i < 5; ++i) {
    auto t0 = std::chrono::steady_clock::now();
    reply = ask(c, {{"kind", "windows"}, {"host", "pi-kitchen"}}, "streaks/inbox", 30s);
    auto ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0);
    longest = std::max(longest, ms.count());
    ASSERT_TRUE(reply.is_object() && reply.value("ok", false)) << reply.dump();
  }
  std::printf("windows query with 10,800 overlapping streaks: the slowest of 5 took %.1f ms\n",
              longest);
  EXPECT_LT(longest, 1000.0);
  // Read were the newest 5,000 streaks, whose union is the last 24 days of
  // the 28 observed: each hour of the week was QUIET in all four weeks
  // (1.0), or, in the first four days, in three of them (0.75). All 10,800
  // would have made every hour 1.0.
  EXPECT_EQ(reply["ready"], true);
  auto& hours = reply["hours"];
  ASSERT_EQ(hours.size(), 7u);
  int three_of_four = 0, all_four = 0;
  for (auto& row : hours) {
    for (auto& share : row) {
      ASSERT_TRUE(share.is_number()) << reply.dump();
      EXPECT_GE(share.get<double>(), 0.7) << reply.dump();
      three_of_four += share.get<double>() < 0.8;
      all_four += share.get<double>() > 0.95;
    }
  }
  EXPECT_GT(three_of_four, 0) << reply.dump();
  EXPECT_GT(all_four, 0) << reply.dump();
  d.signal(SIGTERM);
  ASSERT_EQ(d.wait_exit(10s), 0) << d.log();
  EXPECT_EQ(sql_count(path, "SELECT count(*) FROM quiet_streaks"), 10800);
  fs::remove_all(dir);
}
