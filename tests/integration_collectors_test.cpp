// The collectors, the quiet assessor and Home Assistant discovery end to end:
// lulld against a real Mosquitto on a free loopback port, each behaviour
// observed by a subscriber within a deadline.

#include <gtest/gtest.h>

#include "messages/codec.hpp"
#include "messages/host_snapshot.hpp"
#include "messages/quiet.hpp"
#include "messages/util.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using nlohmann::json;

namespace {

json body(const mqtt_message& m) {
  auto doc = decode(m.payload, wire_format::json);
  return doc ? *doc : json();
}

/// The first message on `topic` whose JSON body satisfies `pred`.
std::optional<json> wait_json(client& c, const std::string& topic,
                              const std::function<bool(const json&)>& pred,
                              std::chrono::milliseconds timeout = 8s) {
  auto m = c.wait_for(
    [&](const mqtt_message& m) {
      if (m.topic != topic)
        return false;
      auto j = body(m);
      return !j.is_null() && pred(j);
    },
    timeout);
  if (!m)
    return std::nullopt;
  return body(*m);
}

std::vector<std::string> fast(std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--interval", "500ms", "--collectors-process-interval",
                                   "500ms", "--collectors-bus-interval", "1s",
                                   "--collectors-worker-interval", "1s"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

/// A snapshot of another host, as its own agent would publish it.
std::string remote_snapshot(const std::string& host, double cpu, double mem,
                            const std::vector<std::string>& mounts = {"/"}) {
  host_snapshot s;
  s.host_id = host;
  s.collected_at = unix_seconds_now();
  s.cpu_pct = cpu;
  s.cpu_count = 4;
  s.mem_used_pct = mem;
  s.swap_used_pct = 0;
  for (auto& m : mounts)
    s.disks.push_back({m, 1000, 500, 50.0});
  s.cpu_temp_c = 50;
  return to_json(s).dump();
}

} // namespace

TEST(collectors, snapshot_with_dirs_and_process_stats_for_lulld) {
  broker b;
  client sub(b.uri());
  ASSERT_TRUE(sub.connected()) << sub.error();
  sub.subscribe("stats/#");
  lulld d(lulld_args(b.uri(), "ic-snap", fast({"--collectors-processes", "mosquitto"})));
  auto snap = wait_json(sub, "stats/host/ic-snap",
                        [](const json& j) { return !j["cpu"]["total_pct"].is_null(); });
  ASSERT_TRUE(snap) << d.log();
  EXPECT_NO_THROW(host_snapshot_from_json(*snap));
  ASSERT_TRUE((*snap)["dirs"].is_array());
  ASSERT_EQ((*snap)["dirs"].size(), 1u) << snap->dump();
  EXPECT_TRUE((*snap)["dirs"][0]["bytes"].is_number());
  EXPECT_EQ((*snap)["disks"].size(), 2u) << "/ and the data dir's mount";
  auto self = wait_json(sub, "stats/process/ic-snap/lulld", [](const json& j) {
    return j["running"] == true && j["cpu_pct"].is_number();
  });
  ASSERT_TRUE(self) << d.log();
  EXPECT_EQ((*self)["pid"], d.pid());
  EXPECT_GT((*self)["rss_bytes"].get<double>(), 1e6);
  EXPECT_GT((*self)["threads"].get<int>(), 1);
  EXPECT_GT((*self)["open_fds"].get<int>(), 3);
  EXPECT_EQ((*self)["restarts"], 0);
  auto broker_proc = wait_json(sub, "stats/process/ic-snap/mosquitto",
                               [](const json& j) { return j.contains("running"); });
  ASSERT_TRUE(broker_proc) << d.log();
}

TEST(collectors, quiet_assessment_is_retained_for_this_and_other_hosts) {
  broker b;
  lulld d(lulld_args(b.uri(), "ic-quiet", fast()));
  client sub(b.uri());
  sub.subscribe("stats/host/+/quiet");
  auto own = wait_json(sub, "stats/host/ic-quiet/quiet",
                       [](const json& j) { return j.contains("quiet_score"); });
  ASSERT_TRUE(own) << d.log();
  auto q = quiet_assessment_from_json(*own);
  EXPECT_GE(q.quiet_score, 0);
  EXPECT_LE(q.quiet_score, 100);
  EXPECT_FALSE(q.reasons.empty());
  EXPECT_TRUE(q.inputs.contains("cpu_foreign_avg"));
  EXPECT_TRUE(q.inputs.contains("mem_pct"));
  EXPECT_TRUE(q.inputs.contains("disk_free_pct"));

  // Another host's agent reports memory nearly full: one lulld assesses the fleet.
  client agent(b.uri());
  agent.publish("stats/host/pi-remote", remote_snapshot("pi-remote", 10, 97), 0, false);
  auto remote = wait_json(sub, "stats/host/pi-remote/quiet",
                          [](const json& j) { return j.contains("state"); });
  ASSERT_TRUE(remote) << d.log();
  EXPECT_EQ((*remote)["state"], "PANIC");
  EXPECT_FALSE((*remote)["cooldown_until"].is_null());
  EXPECT_NE((*remote)["reasons"].dump().find("Memory used 97.0%"), std::string::npos);

  // A late subscriber (a lease manager starting up) gets it retained.
  client later(b.uri());
  later.subscribe("stats/host/pi-remote/quiet");
  auto m = later.wait_for_topic("stats/host/pi-remote/quiet", 5s);
  ASSERT_TRUE(m);
  EXPECT_TRUE(m->retain);
}

TEST(collectors, bus_stats_count_traffic_and_latency) {
  broker b;
  client sub(b.uri());
  sub.subscribe("stats/bus");
  lulld d(lulld_args(b.uri(), "ic-bus", fast()));
  // lulld's own assessor consumes its snapshots, so there is inbound traffic.
  auto j = wait_json(sub, "stats/bus", [](const json& j) {
    return j["host_id"] == "ic-bus" && j["msgs_in"].get<int>() > 0 && j["rps"].is_number();
  });
  ASSERT_TRUE(j) << d.log();
  for (auto key : {"in_per_sec", "out_per_sec", "error_rate", "p50_ms", "p95_ms", "in_flight"})
    EXPECT_TRUE(j->contains(key)) << key;
  EXPECT_TRUE((*j)["p95_ms"].is_number());
  EXPECT_GT((*j)["msgs_out"].get<int>(), 0);

  // A bad worker status is counted as an error.
  client w(b.uri());
  w.publish("stats/worker/broken", "{not json", 1, false);
  auto err = wait_json(sub, "stats/bus",
                       [](const json& j) { return j["totals"]["errors"].get<int>() >= 1; });
  ASSERT_TRUE(err) << d.log();
  EXPECT_GT((*err)["totals"]["errors"].get<int>(), 0);
}

TEST(collectors, worker_goes_offline_when_its_will_fires) {
  broker b;
  lulld d(lulld_args(b.uri(), "ic-work", fast()));
  client sub(b.uri());
  sub.subscribe("stats/workers/ic-work");
  client_options wopts;
  wopts.will = {"stats/worker/thumbs-1", "offline", 1, true, {}, {}, {}};
  client worker(b.uri(), wopts);
  ASSERT_TRUE(worker.connected()) << worker.error();
  worker.publish("stats/worker/thumbs-1",
                 R"({"v":1,"state":"busy","health":"ok","version":"1.4.2",)"
                 R"("host_id":"ic-work","job_types":["thumbnails"]})",
                 1, true);
  auto online = wait_json(sub, "stats/workers/ic-work", [](const json& j) {
    return j["workers"].contains("thumbs-1") && j["workers"]["thumbs-1"]["online"] == true;
  });
  ASSERT_TRUE(online) << d.log();
  EXPECT_EQ((*online)["workers"]["thumbs-1"]["version"], "1.4.2");
  EXPECT_EQ((*online)["workers"]["thumbs-1"]["state"], "busy");

  worker.abort_connection(); // the broker publishes the will
  auto offline = wait_json(sub, "stats/workers/ic-work", [](const json& j) {
    return j["workers"].contains("thumbs-1") && j["workers"]["thumbs-1"]["online"] == false;
  });
  ASSERT_TRUE(offline) << d.log();
  EXPECT_EQ((*offline)["workers"]["thumbs-1"]["state"], "offline");
  EXPECT_EQ((*offline)["workers"]["thumbs-1"]["version"], "1.4.2");
  EXPECT_FALSE((*offline)["workers"]["thumbs-1"]["offline_since"].is_null());
  EXPECT_EQ((*offline)["counts"]["offline"], 1);
}

TEST(collectors, discovery_is_announced_and_again_when_home_assistant_comes_online) {
  broker b;
  client sub(b.uri());
  sub.subscribe("homeassistant/device/+/config");
  lulld d(lulld_args(b.uri(), "ic-ha", fast()));
  auto cfg = sub.wait_for_topic("homeassistant/device/lull_ic-ha/config", 8s);
  ASSERT_TRUE(cfg) << d.log();
  auto j = body(*cfg);
  EXPECT_EQ(j["dev"]["ids"][0], "lull_ic-ha");
  EXPECT_EQ(j["availability"][0]["topic"], "lull/ic-ha/availability");
  for (auto c : {"cpu", "mem", "disk", "temp", "load", "quiet_score", "quiet_state", "quiet"})
    EXPECT_TRUE(j["cmps"].contains(c) && j["cmps"][c].contains("unique_id")) << c;
  EXPECT_EQ(j["cmps"]["disk"]["name"], "Disk free /");

  // Retained, so Home Assistant finds it whenever it subscribes.
  client late(b.uri());
  late.subscribe("homeassistant/device/lull_ic-ha/config");
  auto retained = late.wait_for_topic("homeassistant/device/lull_ic-ha/config", 5s);
  ASSERT_TRUE(retained);
  EXPECT_TRUE(retained->retain);

  // Home Assistant restarts: its birth message makes lull announce again.
  sub.clear();
  client ha(b.uri());
  ha.publish("homeassistant/status", "online", 1, false);
  auto again = sub.wait_for([](auto& m) { return m.topic == "homeassistant/device/lull_ic-ha/config"; },
                            8s);
  ASSERT_TRUE(again) << d.log();

  // A host first seen through its snapshot gets a device too.
  client agent(b.uri());
  agent.publish("stats/host/pi-far", remote_snapshot("pi-far", 5, 30), 0, false);
  auto far = sub.wait_for_topic("homeassistant/device/lull_pi-far/config", 8s);
  ASSERT_TRUE(far) << d.log();
  // Its measurements need its agent online; its quiet state, this lulld too.
  EXPECT_EQ(body(*far)["availability"].size(), 1u);
  EXPECT_EQ(body(*far)["cmps"]["quiet_state"]["availability"].size(), 2u);

  // A mount that appears gets its sensor, and one that goes is removed: the
  // device follows the agent's snapshots (read again every 5 s here).
  std::vector<std::string> mounts = {"/", "/home"};
  auto far_config = [&](const std::function<bool(const json&)>& pred) {
    std::chrono::steady_clock::time_point last{};
    return wait_until(
      [&] {
        // An agent's pace: a snapshot every half second.
        if (auto now = std::chrono::steady_clock::now(); now - last >= 500ms) {
          agent.publish("stats/host/pi-far", remote_snapshot("pi-far", 5, 30, mounts), 0, false);
          last = now;
        }
        for (auto& m : sub.received())
          if (m.topic == "homeassistant/device/lull_pi-far/config" && pred(body(m)))
            return true;
        return false;
      },
      20s);
  };
  sub.clear();
  ASSERT_TRUE(far_config([](const json& j) {
    return j["cmps"].contains("disk_home") && j["cmps"]["disk_home"]["name"] == "Disk free /home";
  })) << d.log();
  mounts = {"/"};
  sub.clear();
  ASSERT_TRUE(far_config([](const json& j) {
    return j["cmps"]["disk_home"] == json({{"p", "sensor"}});
  })) << d.log();
}

TEST(collectors, roles_split_collection_from_assessment) {
  broker b;
  client sub(b.uri());
  sub.subscribe("stats/host/#");
  lulld agent(lulld_args(b.uri(), "ic-pi", fast({"--roles", "collectors"})));
  lulld core(lulld_args(b.uri(), "ic-nuc", fast({"--roles", "assessor"})));
  // The assessor-only lulld scores the collector-only one's host.
  auto q = wait_json(sub, "stats/host/ic-pi/quiet",
                     [](const json& j) { return j.contains("state"); });
  ASSERT_TRUE(q) << agent.log() << core.log();
  // Neither does the other's job.
  for (auto& m : sub.received()) {
    EXPECT_NE(m.topic, "stats/host/ic-nuc") << "an assessor-only lulld collected";
    EXPECT_NE(m.topic, "stats/host/ic-nuc/quiet");
  }
}

TEST(collectors, an_unreadable_proc_root_is_reported_not_fatal) {
  broker b;
  client sub(b.uri());
  sub.subscribe("stats/host/ic-empty");
  lulld d(lulld_args(b.uri(), "ic-empty", fast({"--proc-root", "/nonexistent/lull-root"})));
  auto snap = wait_json(sub, "stats/host/ic-empty", [](const json&) { return true; });
  ASSERT_TRUE(snap) << d.log();
  EXPECT_TRUE((*snap)["cpu"]["total_pct"].is_null());
  EXPECT_FALSE((*snap)["errors"].empty());
  EXPECT_TRUE(d.running());
}

TEST(collectors, rolling_window_on_request) {
  broker b;
  lulld d(lulld_args(b.uri(), "ic-win", fast()));
  client c(b.uri());
  c.subscribe("stats/host/ic-win");
  c.subscribe("replies/me");
  // Two snapshots with CPU % mean at least two samples in the window.
  ASSERT_TRUE(c.wait_for_topic("stats/host/ic-win", 5s)) << d.log();
  ASSERT_TRUE(wait_until([&] {
    int n = 0;
    for (auto& m : c.received())
      n += m.topic == "stats/host/ic-win";
    return n >= 3;
  }, 5s));
  c.publish("lull/debug/window/ic-win/get",
            R"({"series":"cpu.total_pct","range_sec":600,"reply_to":"replies/me","request_id":"w1"})",
            1, false);
  auto r = wait_json(c, "replies/me", [](const json& j) { return j["request_id"] == "w1"; });
  ASSERT_TRUE(r) << d.log();
  auto& cpu = (*r)["series"]["cpu.total_pct"];
  ASSERT_TRUE(cpu.is_object()) << r->dump();
  EXPECT_GE(cpu["count"].get<int>(), 2);
  for (auto k : {"avg", "min", "max", "p95"})
    EXPECT_TRUE(cpu[k].is_number()) << k;
  EXPECT_LE(cpu["min"].get<double>(), cpu["max"].get<double>());
  EXPECT_EQ((*r)["series"].size(), 1u);
}
