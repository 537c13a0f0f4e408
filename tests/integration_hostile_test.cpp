// Messages built to hurt lulld, against a real lulld and Mosquitto: each is
// refused or answered with an error, and lulld keeps assessing its host and
// answering requests. Also: a host whose assessments stop fails closed, and
// a flood of made-up worker ids leaves lulld's memory bounded.

#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <fstream>
#include <limits>
#include <sstream>

#include "messages/codec.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

std::string msgpack(const json& j) {
  return encode(j, wire_format::msgpack);
}

/// A msgpack job submission whose payload holds the bytes ff fe as a string.
std::string submit_with_bad_utf8() {
  auto good = msgpack({{"v", 1},
                       {"job_type", "t"},
                       {"payload", {{"s", "AB"}}},
                       {"request_id", "bad-utf8"},
                       {"reply_to", "itest/inbox"}});
  auto at = good.find("\xa2" "AB");
  good[at + 1] = '\xff';
  good[at + 2] = '\xfe';
  return good;
}

/// lulld's resident set in kB, from /proc.
long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

std::optional<json> reply_to(client& c, const std::string& request_id,
                             std::chrono::milliseconds timeout = 20s) {
  auto m = c.wait_for(
    [&](const mqtt_message& m) {
      auto j = decode(m.payload, detect_format(m.payload, m.content_type));
      return m.topic == "itest/inbox" && j && j->is_object() && (*j)["request_id"] == request_id;
    },
    timeout);
  if (!m)
    return std::nullopt;
  return decode(m->payload, detect_format(m->payload, m->content_type));
}

/// Waits for an assessment of `host` made after `since` (unix seconds).
bool fresh_assessment(client& c, const std::string& host, std::int64_t since) {
  return c
    .wait_for(
      [&](const mqtt_message& m) {
        if (m.topic != "stats/host/" + host + "/quiet")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        if (!j.is_object() || !j["assessed_at"].is_string())
          return false;
        auto t = parse_utc_timestamp(j["assessed_at"].get<std::string>());
        return t && *t >= since;
      },
      20s)
    .has_value();
}

} // namespace

TEST(hostile, no_single_message_stops_lulld_assessing_or_answering) {
  broker b;
  client evil(b.uri());
  ASSERT_TRUE(evil.connected()) << evil.error();
  // 1 MB of nested msgpack arrays, retained, so every start of lulld meets it
  // (the broker passes it on to subscribers that take packets this large).
  std::string nested(1000 * 1000 - 1, '\x91');
  nested.push_back('\xc0');
  evil.publish({"stats/worker/evil", nested, 1, true, "application/msgpack", {}, {}});
  // And 200 kB of them, within lulld's own packet size, so they reach its decoder.
  std::string nested_small(200 * 1000 - 1, '\x91');
  nested_small.push_back('\xc0');

  auto args = lulld_args(b.uri(), "hostile-a", {"--interval", "500ms"});
  auto d = std::make_unique<lulld>(args);
  client c(b.uri());
  c.subscribe("stats/host/hostile-a/quiet");
  c.subscribe("itest/inbox");
  ASSERT_TRUE(fresh_assessment(c, "hostile-a", 0)) << d->log();

  // Each of these killed an actor once.
  evil.publish("stats/worker/evil2", nested, 1, false);
  evil.publish({"stats/worker/evil3", nested_small, 1, false, "application/msgpack", {}, {}});
  EXPECT_TRUE(d->wait_log("worker registry: rejected", 20s)) << d->log();
  evil.publish("stats/bus", R"({"host_id":1})");
  evil.publish("stats/bus", R"({"host_id":"ghost","rps":"many"})");
  evil.publish("stats/host/ghost",
               R"({"v":1,"host_id":"ghost","disks":[{"mount":5,"free_pct":3}]})");
  evil.publish("lull/debug/streaks/ghost",
               R"({"host_id":7,"streaks":[{"start":1,"end":"2026-11-23T10:00:30Z"}]})");
  evil.publish({"scheduler/job/submit", submit_with_bad_utf8(), 1, false, "application/msgpack",
                {}, {}});
  evil.publish({"scheduler/job/next",
                msgpack({{"v", 1},
                         {"worker_id", "w1"},
                         {"wait_sec", std::numeric_limits<double>::quiet_NaN()},
                         {"request_id", "nan-wait"},
                         {"reply_to", "itest/inbox"}}),
                1, false, "application/msgpack", {}, {}});
  evil.publish("scheduler/job/submit",
               R"({"v":1,"job_type":"t","deadline_sec":1e300,"request_id":"huge-deadline",)"
               R"("reply_to":"itest/inbox"})");
  evil.publish("history/request", R"({"v":1,"kind":5,"request_id":"kind5","reply_to":"itest/inbox"})");
  evil.publish("history/request",
               R"({"v":1,"host":5,"request_id":"host5","reply_to":"itest/inbox"})");
  evil.publish("history/request",
               R"({"v":1,"step":"nan","request_id":"step-nan","reply_to":"itest/inbox"})");
  // A made-up host with 2,000,000,000 CPUs (once overflowed its capacity).
  evil.publish("stats/host/ghost2", R"({"v":1,"host_id":"ghost2","cpu":{"count":2000000000}})");

  auto bad_utf8 = reply_to(c, "bad-utf8");
  ASSERT_TRUE(bad_utf8) << d->log();
  EXPECT_EQ((*bad_utf8)["ok"], false);
  EXPECT_EQ((*bad_utf8)["error"]["code"], "InvalidJson") << bad_utf8->dump();
  auto nan_wait = reply_to(c, "nan-wait");
  ASSERT_TRUE(nan_wait) << d->log();
  EXPECT_EQ((*nan_wait)["ok"], false) << nan_wait->dump();
  auto huge = reply_to(c, "huge-deadline");
  ASSERT_TRUE(huge) << d->log();
  EXPECT_EQ((*huge)["error"]["code"], "InvalidRequest") << huge->dump();
  for (auto* id : {"kind5", "host5", "step-nan"}) {
    auto r = reply_to(c, id);
    ASSERT_TRUE(r) << id << "\n" << d->log();
    EXPECT_EQ((*r)["error"]["code"], "InvalidRequest") << r->dump();
  }

  // Still assessing its host, still queueing jobs, still up.
  auto after = static_cast<std::int64_t>(std::time(nullptr));
  EXPECT_TRUE(fresh_assessment(c, "hostile-a", after)) << d->log();
  c.publish("scheduler/job/submit",
            R"({"v":1,"job_type":"t","request_id":"good","reply_to":"itest/inbox"})");
  auto good = reply_to(c, "good");
  ASSERT_TRUE(good) << d->log();
  EXPECT_EQ((*good)["ok"], true) << good->dump();
  EXPECT_TRUE(d->running());
  EXPECT_EQ(d->log().find("unhandled exception"), std::string::npos) << d->log();

  // Across a restart, with the retained 1 MB message still there.
  d->signal(SIGTERM);
  auto code = d->wait_exit(30s);
  ASSERT_TRUE(code) << d->log();
  EXPECT_EQ(*code, 0) << d->log();
  d = std::make_unique<lulld>(args);
  auto again = static_cast<std::int64_t>(std::time(nullptr));
  EXPECT_TRUE(fresh_assessment(c, "hostile-a", again)) << d->log();
  EXPECT_TRUE(d->running());
  evil.publish("stats/worker/evil", "", 1, true); // clear the retained message
}

TEST(hostile, a_nan_interval_is_a_config_error_not_a_snapshot_storm) {
  broker b;
  lulld d(lulld_args(b.uri(), "hostile-e", {"--interval", "nan"}));
  auto code = d.wait_exit(30s);
  ASSERT_TRUE(code) << d.log();
  EXPECT_EQ(*code, 2) << d.log();
  EXPECT_NE(d.log().find("--interval"), std::string::npos) << d.log();
}

TEST(hostile, numbers_where_job_strings_belong_leave_the_queue_answering) {
  // Each of these once killed the queue dispatcher: a cancel whose reason is
  // a number, and releases of a job's lease whose outcome or error is one.
  broker b;
  lulld d(lulld_args(b.uri(), "hostile-d",
                     {"--lease-capacity-units", "10", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  c.subscribe("itest/inbox");
  c.subscribe("scheduler/job/+/state");
  json q = {{"v", 1},           {"host_id", "farm"},
            {"state", "QUIET"}, {"quiet_score", 95},
            {"reasons", json::array()}, {"assessed_at", utc_timestamp(std::time(nullptr))}};
  publish_agent(c, "farm");
  c.publish("stats/host/farm/quiet", q.dump(), 1, true);
  int n = 0;
  auto ask = [&](const std::string& topic, json body) {
    auto id = "q" + std::to_string(++n);
    body["request_id"] = id;
    body["reply_to"] = "itest/inbox";
    c.publish(topic, body.dump());
    return reply_to(c, id, 5s);
  };
  ASSERT_TRUE(wait_until([&] { return ask("scheduler/job/list", {{"limit", 1}}).has_value(); },
                         20s))
    << d.log();
  auto submit = [&] {
    auto r = ask("scheduler/job/submit",
                 {{"v", 1}, {"job_type", "t"}, {"host_id", "farm"}, {"cost_units", 1},
                  {"max_attempts", 1}});
    return r && (*r)["ok"] == true ? (*r)["job_id"].get<std::string>() : std::string();
  };
  auto state_of = [&](const std::string& job_id, const std::string& state) {
    auto m = c.wait_for(
      [&](const mqtt_message& m) {
        auto j = json::parse(m.payload, nullptr, false);
        return m.topic == "scheduler/job/" + job_id + "/state" && j.is_object()
               && j["state"] == state;
      },
      20s);
    return m ? json::parse(m->payload) : json();
  };
  // Takes the job as worker w1 and releases its lease with `release`.
  auto take_and_release = [&](json release) {
    auto job_id = submit();
    EXPECT_FALSE(job_id.empty()) << d.log();
    auto next = ask("scheduler/job/next", {{"v", 1}, {"worker_id", "w1"}, {"wait_sec", 10}});
    EXPECT_TRUE(next && (*next)["approved"] == true) << (next ? next->dump() : d.log());
    if (!next || (*next)["approved"] != true)
      return std::string();
    auto lease_id = (*next)["lease"]["lease_id"].get<std::string>();
    release["worker_id"] = "w1";
    auto r = ask("scheduler/lease/" + lease_id + "/release", release);
    EXPECT_TRUE(r && (*r)["ok"] == true) << (r ? r->dump() : d.log());
    return job_id;
  };

  auto cancelled = submit();
  ASSERT_FALSE(cancelled.empty()) << d.log();
  auto r = ask("scheduler/job/" + cancelled + "/cancel", {{"v", 1}, {"reason", 5}});
  ASSERT_TRUE(r) << d.log();
  EXPECT_EQ((*r)["ok"], true) << r->dump();
  EXPECT_FALSE(state_of(cancelled, "cancelled").is_null()) << d.log();

  auto no_outcome = take_and_release({{"v", 1}, {"outcome", 5}});
  EXPECT_EQ(state_of(no_outcome, "dead")["error"], "released without an outcome") << d.log();
  auto number_error = take_and_release({{"v", 1}, {"outcome", "failed"}, {"error", 5}});
  EXPECT_EQ(state_of(number_error, "dead")["error"], "5") << d.log();

  // The queue still takes, leases and completes jobs.
  auto good = take_and_release({{"v", 1}, {"outcome", "succeeded"}});
  EXPECT_FALSE(state_of(good, "succeeded").is_null()) << d.log();
  EXPECT_TRUE(d.running());
  EXPECT_EQ(d.log().find("unhandled exception"), std::string::npos) << d.log();
  EXPECT_EQ(d.log().find("failures so far"), std::string::npos) << d.log(); // none needed catching
  c.publish("stats/host/farm/quiet", "", 1, true);
}

TEST(hostile, a_host_whose_assessments_stop_fails_closed_within_stale_after) {
  broker b;
  // No quiet assessor here: the test plays it, then stops.
  lulld d(lulld_args(b.uri(), "hostile-b",
                     {"--roles", "collectors,scheduler", "--quiet-stale-after", "3s"}));
  ASSERT_TRUE(d.wait_log("connected to", 20s)) << d.log();
  client c(b.uri());
  c.subscribe("itest/inbox");
  json q = {{"v", 1},           {"host_id", "farm"},
            {"state", "QUIET"}, {"quiet_score", 95},
            {"reasons", json::array()}, {"assessed_at", utc_timestamp(std::time(nullptr))}};
  publish_agent(c, "farm");
  c.publish("stats/host/farm/quiet", q.dump(), 1, true);
  int n = 0;
  auto request = [&] {
    auto id = "r" + std::to_string(++n);
    c.publish("scheduler/lease/request",
              json({{"v", 1}, {"worker_id", "w" + std::to_string(n)}, {"host_id", "farm"},
                    {"cost_units", 1},
                    {"ttl_sec", 5}, {"request_id", id}, {"reply_to", "itest/inbox"}})
                .dump());
    return reply_to(c, id, 5s);
  };
  std::optional<json> first;
  // The assessor speaks while the test waits for a grant: on a loaded
  // machine lulld may take longer than stale_after to answer the first
  // request, and a single assessment would be stale by then.
  ASSERT_TRUE(wait_until(
    [&] {
      q["assessed_at"] = utc_timestamp(std::time(nullptr));
      c.publish("stats/host/farm/quiet", q.dump(), 1, true);
      first = request();
      return first && (*first)["approved"] == true;
    },
    20s))
    << (first ? first->dump() : "no reply") << d.log();
  // The assessor goes silent: within stale_after (+ slack for a loaded
  // machine) requests below HIGH are denied as unassessed.
  std::optional<json> denied;
  ASSERT_TRUE(wait_until(
    [&] {
      denied = request();
      return denied && (*denied)["approved"] == false
             && (*denied)["reason"].get<std::string>().find("No fresh") != std::string::npos;
    },
    30s))
    << (denied ? denied->dump() : "no reply") << d.log();
  EXPECT_NE((*denied)["reason"].get<std::string>().find("No fresh quiet assessment for host farm"),
            std::string::npos)
    << denied->dump();
  c.publish("stats/host/farm/quiet", "", 1, true);
}

TEST(hostile, a_hundred_thousand_worker_ids_leave_memory_bounded) {
  broker b;
  lulld d(lulld_args(b.uri(), "hostile-c", {"--roles", "scheduler"}));
  client c(b.uri());
  c.subscribe("scheduler/status");
  ASSERT_TRUE(c.wait_for_topic("scheduler/status", 20s)) << d.log();
  auto before = rss_kb(d.pid());
  auto flood = [&](int i) {
    c.publish({"scheduler/lease/request",
               R"({"v":1,"worker_id":"flood-)" + std::to_string(i) + R"(","cost_units":1})", 0,
               false, "application/json", {}, {}});
  };
  auto received = [&]() -> long {
    c.clear();
    auto m = c.wait_for_topic("scheduler/status", 10s);
    auto j = m ? json::parse(m->payload, nullptr, false) : json();
    return j.is_object() && j.contains("counters") ? j["counters"].value("received", 0L) : -1;
  };
  // lulld reads into a 256 KiB socket buffer and the broker drops QoS 0 it
  // cannot queue for lulld, so a blast of 100,000 mostly never reached it
  // (measured: 23,281 did). The ids go in chunks, each once lulld has
  // counted most of the one before. A sanitized lulld reads a few thousand
  // a second: 20,000 ids (still twice the tracking bound) in smaller chunks.
#if LULL_UNDER_ASAN
  constexpr int total = 20000, chunk = 2000;
#else
  constexpr int total = 100000, chunk = 5000;
#endif
  for (int i = 0; i < total; i += chunk) {
    for (int k = i; k < i + chunk; ++k)
      flood(k);
    long want = static_cast<long>(i + chunk) * 9 / 10;
    wait_until([&] { return received() >= want; }, 30s);
  }
  // Every request is decided (denied: no host is known); the status counts
  // the workers it tracks and those it forgot. QoS 0 may lose a few under
  // load, so wait until the count is complete or stops growing.
  std::optional<json> status;
  long counted = 0, last = -1;
  auto stalled_since = std::chrono::steady_clock::now();
  wait_until(
    [&] {
      c.clear();
      auto m = c.wait_for_topic("scheduler/status", 10s);
      if (m) {
        auto j = json::parse(m->payload, nullptr, false);
        if (j.is_object() && j.contains("workers_tracked")) {
          status = j;
          counted = j["workers_tracked"].get<long>() + j["workers_evicted"].get<long>();
        }
      }
      if (counted != last) {
        last = counted;
        stalled_since = std::chrono::steady_clock::now();
      }
      return counted >= total || std::chrono::steady_clock::now() - stalled_since > 20s;
    },
    400s);
  ASSERT_TRUE(status) << d.log().substr(0, 2000);
  // QoS 0: the broker may still drop a few, and lulld sheds what comes
  // faster than the lease lane's budget (counted as inbound_shed); the bound
  // holds for what arrived, which is still past the tracking bound.
  long shed = (*status)["counters"].value("inbound_shed", 0L);
  EXPECT_GE(counted + shed, total / 2) << status->dump().substr(0, 500);
  EXPECT_GT(counted, 10000) << status->dump().substr(0, 500);
  auto after = rss_kb(d.pid());
  std::printf("lulld RSS: %ld kB before, %ld kB after %ld distinct worker ids; status %zu bytes\n",
              before, after, counted, status->dump().size());
  EXPECT_LE((*status)["workers_tracked"].get<long>(), 10000);
  EXPECT_LT(status->dump().size(), 64u * 1024);
  // docs/security.md: the bound, 64 MB resident. Under AddressSanitizer RSS
  // holds shadow memory and the quarantine of freed blocks, so only the
  // plain build checks it (the bounds above hold in both).
#if LULL_UNDER_ASAN
  std::printf("RSS bound not checked under AddressSanitizer\n");
#else
  EXPECT_LT(after, 64 * 1024) << "RSS " << after << " kB";
#endif
  EXPECT_TRUE(d.running());
}

// MQTT 3.1.1 has no packet limit to negotiate: a lulld speaking it cannot tell
// the broker what it will not take. lull's broker config bounds every client
// instead (max_packet_size, message_size_limit): 50 MB publishes on lulld's
// topics never reach it, from a 3.1.1 or a v5 publisher, and lulld stays
// within its memory bound and keeps answering.
TEST(hostile, fifty_megabyte_publishes_under_3_1_1_leave_lulld_bounded) {
  broker b;
  lulld d(lulld_args(b.uri(), "big311", {"--roles", "scheduler", "--mqtt-version", "3.1.1"}));
  client watch(b.uri());
  ASSERT_TRUE(watch.connected()) << watch.error();
  watch.subscribe("scheduler/status");
  watch.subscribe("big/+");
  ASSERT_TRUE(watch.wait_for_topic("scheduler/status", 20s)) << d.log();
  auto before = rss_kb(d.pid());
  std::string huge(50u * 1024 * 1024, 'x');
  for (int version : {4, 5}) {
    for (const char* topic : {"scheduler/lease/request", "history/request", "stats/host/big311",
                              "stats/worker/big"}) {
      client_options o;
      o.mqtt_version = version;
      client flood(b.uri(), o);
      ASSERT_TRUE(flood.connected()) << flood.error();
      bool refused_here = false;
      try {
        flood.publish(topic, huge, 0);
      } catch (const std::exception&) {
        refused_here = true; // a v5 client knows the broker's limit from its CONNACK
      }
      // Else the broker refuses the packet and drops the publisher.
      EXPECT_TRUE(refused_here || wait_until([&] { return !flood.lost().empty(); }, 20s))
        << "the broker took a 50 MB packet on " << topic << " (MQTT " << version << ")";
    }
  }
  huge.clear();
  huge.shrink_to_fit();
  // lulld still answers, and never saw a byte of it.
  watch.publish("scheduler/lease/request",
                R"({"v":1,"worker_id":"w","host_id":"big311","request_id":"r1","reply_to":"big/r"})");
  auto r = watch.wait_for_topic("big/r", 10s);
  ASSERT_TRUE(r) << d.log();
  auto after = rss_kb(d.pid());
  std::printf("lulld RSS: %ld kB before, %ld kB after eight 50 MB publishes\n", before, after);
#if LULL_UNDER_ASAN
  std::printf("RSS bound not checked under AddressSanitizer\n");
#else
  EXPECT_LT(after, 64 * 1024) << "RSS " << after << " kB";
#endif
  EXPECT_TRUE(d.running());
}

namespace {

/// Asks for a lease in open mode and returns lulld's reply (nullopt: none).
std::optional<json> ask_lease(client& c, json body) {
  static int n = 0;
  auto id = "lease-" + std::to_string(++n);
  body["v"] = 1;
  body["request_id"] = id;
  body["reply_to"] = "itest/inbox";
  c.publish("scheduler/lease/request", body.dump());
  return reply_to(c, id, 10s);
}

} // namespace

// Times from the bus are clamped: a cooldown_until in 2100 (not retained, so
// nothing would ever replace it) holds the host no longer than the
// configured cool-down, and a fresh assessment replaces it at once.
TEST(hostile, a_cooldown_until_in_2100_cools_a_host_down_only_as_long_as_configured) {
  broker b;
  lulld d(lulld_args(b.uri(), "hostile-e",
                     {"--roles", "scheduler", "--lease-panic-cooldown", "3s", "--quiet-cooldown",
                      "3s", "--quiet-stale-after", "1h"}));
  ASSERT_TRUE(d.wait_log("connected to", 20s)) << d.log();
  client c(b.uri());
  c.subscribe("itest/inbox");
  publish_agent(c, "farm");
  auto forever = [&] {
    json q = {{"v", 1},
              {"host_id", "farm"},
              {"state", "QUIET"},
              {"quiet_score", 95},
              {"reasons", json::array()},
              {"assessed_at", utc_timestamp(std::time(nullptr))},
              {"cooldown_until", "2100-01-01T00:00:00Z"}};
    c.publish("stats/host/farm/quiet", q.dump(), 1, false);
  };
  json req = {{"worker_id", "w1"}, {"host_id", "farm"}, {"cost_units", 1}};
  std::optional<json> cooling;
  ASSERT_TRUE(wait_until(
    [&] {
      // Sent again each time: one sent before lulld's subscription is in
      // place (a loaded machine widens that moment) is not delivered.
      forever();
      cooling = ask_lease(c, req);
      return cooling && (*cooling)["reason"].get<std::string>().find("cooling down")
                          != std::string::npos;
    },
    20s))
    << (cooling ? cooling->dump() : "no reply") << d.log();
  auto since = std::chrono::steady_clock::now();
  // The hint: what is left of 3 s, plus at most 20 % jitter.
  EXPECT_LE((*cooling)["retry_after_sec"].get<double>(), 3.7) << cooling->dump();
  // Grantable again within the configured 3 s (a deadline well past it).
  std::optional<json> granted;
  ASSERT_TRUE(wait_until(
    [&] {
      granted = ask_lease(c, req);
      return granted && (*granted)["approved"] == true;
    },
    15s))
    << (granted ? granted->dump() : "no reply") << d.log();
  EXPECT_LT(std::chrono::steady_clock::now() - since, 8s);

  // Cooling down again; a fresh assessment without a cool-down ends it now.
  forever();
  json req2 = {{"worker_id", "w2"}, {"host_id", "farm"}, {"cost_units", 1}};
  ASSERT_TRUE(wait_until(
    [&] {
      auto r = ask_lease(c, req2);
      return r && (*r)["approved"] == false;
    },
    10s));
  json fresh = {{"v", 1},           {"host_id", "farm"},
                {"state", "QUIET"}, {"quiet_score", 95},
                {"reasons", json::array()}, {"assessed_at", utc_timestamp(std::time(nullptr))}};
  c.publish("stats/host/farm/quiet", fresh.dump(), 1, false);
  std::optional<json> after;
  ASSERT_TRUE(wait_until(
    [&] {
      after = ask_lease(c, req2);
      return after && (*after)["approved"] == true;
    },
    2s))
    << (after ? after->dump() : "no reply");
}

// Hosts are learned from their agents: 300 made-up hosts fill the 256 slots,
// and the real agent (lulld's own collector) still gets in, before and after
// a restart (lulld's own retained assessments of them no longer refill it).
TEST(hostile, three_hundred_fake_hosts_do_not_lock_out_a_real_agent) {
  broker b;
  // What is tested is the roster, not this machine's load: a busy machine
  // (a sanitizer build, another test beside this one) read PANIC for 20 s on
  // its CPU alone, so CPU thresholds no machine reaches, and a short
  // cool-down for whatever else reads PANIC at a start.
  auto args = lulld_args(b.uri(), "realhost",
                         {"--interval", "500ms", "--quiet-stale-after", "1h",
                          "--lease-panic-cooldown", "1s", "--quiet-cooldown", "1s",
                          "--quiet-cpu", "0,500,600,700"});
  auto d = std::make_unique<lulld>(args);
  client c(b.uri());
  c.subscribe("itest/inbox");
  c.subscribe("scheduler/status");
  c.subscribe("stats/host/fake0/quiet");
  ASSERT_TRUE(c.wait_for(
    [](const mqtt_message& m) {
      return m.topic == "scheduler/status" && m.payload.find("\"realhost\"") != std::string::npos;
    },
    20s))
    << d->log();
  for (int i = 0; i < 300; ++i)
    c.publish("stats/host/fake" + std::to_string(i), agent_snapshot("fake" + std::to_string(i)),
              0, false);
  // HIGH: admitted on a busy host too (this machine may be busy); only an
  // unknown, offline or PANIC host is refused.
  auto leased = [&](const std::string& worker) {
    std::optional<json> r;
    bool ok = wait_until(
      [&] {
        r = ask_lease(c, {{"worker_id", worker}, {"host_id", "realhost"}, {"cost_units", 1},
                          {"priority", "HIGH"}});
        return r && (*r)["approved"] == true;
      },
      20s);
    EXPECT_TRUE(ok) << (r ? r->dump() : "no reply") << d->log();
    return ok;
  };
  ASSERT_TRUE(d->wait_log("lease manager: forgot host fake0", 20s)) << d->log();
  // The assessor's forgetting shows where a dashboard looks: its retained
  // assessment cleared (its log lines about 300 hosts are rate-limited).
  EXPECT_TRUE(c.wait_for(
    [](const mqtt_message& m) { return m.topic == "stats/host/fake0/quiet" && m.payload.empty(); },
    20s))
    << d->log();
  EXPECT_TRUE(d->wait_log("ha discovery: removing the device of host fake0", 20s)) << d->log();
  ASSERT_TRUE(leased("w1"));
  auto counted = c.wait_for(
    [](const mqtt_message& m) {
      auto j = json::parse(m.payload, nullptr, false);
      return m.topic == "scheduler/status" && j.is_object()
             && j["counters"].value("hosts_evicted", 0) >= 44;
    },
    20s);
  EXPECT_TRUE(counted) << d->log();

  d.reset();
  d = std::make_unique<lulld>(args);
  ASSERT_TRUE(d->wait_log("connected to", 20s)) << d->log();
  ASSERT_TRUE(leased("w2"));
}
