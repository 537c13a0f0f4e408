// Home Assistant discovery payloads: the keys device discovery needs, the
// rules HA's users learned the hard way, and that every value_template reads
// a path that exists in a real snapshot or quiet assessment.

#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "src/ha/discovery.hpp"
#include "src/lease/lease_service.hpp"
#include "src/probe/host_probe.hpp"
#include "src/probe/lease_probe.hpp"
#include "src/quiet/quiet_assessor.hpp"
#include "tests/fixture_tree.hpp"

using namespace lull;
using nlohmann::json;

namespace {

json real_snapshot(const std::string& fixture) {
  test::fixture_tree tree(fixture);
  host_probe probe({tree.root(), "pi-kitchen", {"/"}});
  // The host collector adds what lull's leases use, measured on the same tree.
  lease_probe_options lo;
  lo.root = tree.root();
  lo.self_pid = -1;
  lease_probe leases(lo);
  probe.sample(1763900000, 100);
  leases.sample(100, 4);
  tree.advance();
  auto s = probe.sample(1763900002, 102);
  s.leased = leases.sample(102, s.cpu_count);
  return to_json(s);
}

json real_assessment(const json& snapshot) {
  double mono = 10;
  quiet_assessor a({}, [&] { return mono; }, [] { return std::int64_t{1763900002}; });
  return to_json(a.assess(host_snapshot_from_json(snapshot)));
}

/// Follows ".cpu.total_pct", "[0]" and "['1m']" steps; false when one is missing.
bool path_exists(json doc, const std::string& path) {
  static const std::regex step(R"(\.([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]|\['([^']+)'\])");
  for (std::sregex_iterator it(path.begin(), path.end(), step), end; it != end; ++it) {
    auto& m = *it;
    if (m[2].matched) {
      auto i = std::stoul(m[2].str());
      if (!doc.is_array() || i >= doc.size())
        return false;
      doc = doc[i];
      continue;
    }
    auto key = m[1].matched ? m[1].str() : m[3].str();
    if (!doc.is_object() || !doc.contains(key))
      return false;
    doc = doc[key];
  }
  return true;
}

bool valid_ha_id(const std::string& id) {
  return std::regex_match(id, std::regex("[a-zA-Z0-9_-]+"));
}

} // namespace

TEST(discovery, device_payload_has_the_keys_device_discovery_requires) {
  topic_names topics;
  discovery_options opts;
  opts.own_instance = "pi-kitchen";
  auto msg = build_discovery("pi-kitchen", topics, opts);
  EXPECT_EQ(msg.topic, "homeassistant/device/lull_pi-kitchen/config");
  auto& p = msg.payload;
  for (auto key : {"dev", "o", "cmps", "availability"})
    EXPECT_TRUE(p.contains(key)) << key;
  EXPECT_EQ(p["dev"]["ids"][0], "lull_pi-kitchen");
  EXPECT_EQ(p["dev"]["name"], "pi-kitchen");
  EXPECT_TRUE(p["o"].contains("name"));
  ASSERT_EQ(p["availability"].size(), 1u);
  EXPECT_EQ(p["availability"][0]["topic"], "lull/pi-kitchen/availability");

  std::set<std::string> unique_ids, kinds;
  int main_entities = 0;
  for (auto& [key, c] : p["cmps"].items()) {
    SCOPED_TRACE(key);
    EXPECT_TRUE(valid_ha_id(key));
    ASSERT_TRUE(c.contains("p"));
    kinds.insert(c["p"].get<std::string>() + ":" + key);
    ASSERT_TRUE(c.contains("unique_id"));
    auto uid = c["unique_id"].get<std::string>();
    EXPECT_TRUE(valid_ha_id(uid)) << uid;
    EXPECT_TRUE(unique_ids.insert(uid).second) << "duplicate " << uid;
    EXPECT_TRUE(c.contains("state_topic"));
    EXPECT_TRUE(c.contains("value_template"));
    ASSERT_TRUE(c.contains("name"));
    if (c["name"].is_null()) {
      ++main_entities;
    } else {
      EXPECT_EQ(c["name"].get<std::string>().find("pi-kitchen"), std::string::npos)
        << "names must not repeat the device name";
    }
    // A unit or state_class means a number: never on the text quiet state.
    if (c.contains("unit_of_measurement") || c.contains("state_class")) {  // numbers only
      EXPECT_EQ(c["p"], "sensor");
      EXPECT_NE(key, "quiet_state");
    }
    // expire_after only on state that is not retained (the snapshot).
    if (c.contains("expire_after")) {
      EXPECT_EQ(c["state_topic"], topics.host_stats("pi-kitchen"));
    }
  }
  EXPECT_EQ(main_entities, 1);
  auto& qs = p["cmps"]["quiet_state"];
  EXPECT_FALSE(qs.contains("unit_of_measurement"));
  EXPECT_FALSE(qs.contains("state_class"));
  EXPECT_TRUE(qs["name"].is_null());
  for (auto want : {"sensor:cpu", "sensor:mem", "sensor:disk", "sensor:temp", "sensor:load",
                    "sensor:quiet_score", "sensor:quiet_state", "binary_sensor:quiet"})
    EXPECT_TRUE(kinds.count(want)) << want;
  EXPECT_EQ(p["cmps"]["temp"]["device_class"], "temperature");
  EXPECT_EQ(p["cmps"]["temp"]["unit_of_measurement"], "°C");
}

TEST(discovery, every_template_path_exists_in_a_real_snapshot_and_assessment) {
  topic_names topics;
  auto msg = build_discovery("pi-kitchen", topics, {});
  for (auto fixture : {"pi4-throttled", "x86-laptop", "no-thermal"}) {
    auto snapshot = real_snapshot(fixture);
    auto quiet = real_assessment(snapshot);
    for (auto& [key, c] : msg.payload["cmps"].items()) {
      for (auto tkey : {"value_template", "json_attributes_template"}) {
        if (!c.contains(tkey))
          continue;
        auto tpl = c[tkey].get<std::string>();
        auto paths = template_paths(tpl);
        EXPECT_FALSE(paths.empty()) << key << ": " << tpl;
        auto topic = c[tkey == std::string("value_template") ? "state_topic"
                                                               : "json_attributes_topic"];
        if (topic == topics.scheduler_status())
          continue; // the scheduler's status: tested with a real one below
        auto& doc = topic == topics.host_quiet("pi-kitchen") ? quiet : snapshot;
        for (auto& path : paths)
          EXPECT_TRUE(path_exists(doc, path))
            << fixture << " " << key << ": value_json" << path << " missing";
      }
    }
  }
}

TEST(discovery, prefix_topic_prefix_and_fleet_availability) {
  topic_names topics("site1/");
  discovery_options opts;
  opts.prefix = "ha";
  opts.own_instance = "nuc";
  auto msg = build_discovery("pi-kitchen", topics, opts);
  EXPECT_EQ(msg.topic, "ha/device/lull_pi-kitchen/config");
  EXPECT_EQ(msg.payload["cmps"]["cpu"]["state_topic"], "site1/stats/host/pi-kitchen");
  // A host assessed by another lulld needs both agents online.
  ASSERT_EQ(msg.payload["availability"].size(), 2u);
  EXPECT_EQ(msg.payload["availability"][1]["topic"], "site1/lull/nuc/availability");
  EXPECT_EQ(msg.payload["availability_mode"], "all");
  EXPECT_EQ(ha_status_topic(opts), "ha/status");
  EXPECT_TRUE(discovery_removal("pi-kitchen", opts).payload.is_null());
}

TEST(discovery, template_paths_are_extracted) {
  EXPECT_EQ(template_paths("{{ value_json.cpu.total_pct }}"),
            std::vector<std::string>{".cpu.total_pct"});
  EXPECT_EQ(template_paths("{{ value_json.load['1m'] }}"), std::vector<std::string>{".load['1m']"});
  EXPECT_EQ(template_paths("{{ value_json.disks[0].free_pct }}"),
            std::vector<std::string>{".disks[0].free_pct"});
}

TEST(discovery, the_scheduler_host_gets_a_queue_depth_sensor_over_scheduler_status) {
  topic_names topics;
  discovery_options opts;
  opts.own_instance = "nuc";
  opts.with_queue = true;
  auto own = build_discovery("nuc", topics, opts);
  auto other = build_discovery("pi-kitchen", topics, opts);
  ASSERT_TRUE(own.payload["cmps"].contains("queue_depth"));
  EXPECT_FALSE(other.payload["cmps"].contains("queue_depth"));
  auto& c = own.payload["cmps"]["queue_depth"];
  EXPECT_EQ(c["state_topic"], topics.scheduler_status());
  EXPECT_EQ(c["state_class"], "measurement");
  EXPECT_EQ(c["unique_id"], "lull_nuc_queue_depth");
  // The template reads a real scheduler/status as the lease manager builds it.
  lease_service_options so;
  so.topics = topics;
  lease_service svc(so, lease_env::system());
  svc.set_queue_status({{"queued", 3}, {"depths", {{"high", 1}, {"normal", 2}}}});
  auto status = json::parse(svc.status_message().payload);
  for (auto tkey : {"value_template", "json_attributes_template"})
    for (auto& path : template_paths(c[tkey].get<std::string>()))
      EXPECT_TRUE(path_exists(status, path)) << "value_json" << path << " missing";
  EXPECT_EQ(status["queue"]["queued"], 3);
}

TEST(discovery, allow_heavy_work_switch_commands_the_pause_and_shows_the_schedulers_state) {
  topic_names topics;
  auto msg = build_discovery("pi-kitchen", topics, {});
  auto& c = msg.payload["cmps"]["allow_work"];
  EXPECT_EQ(c["p"], "switch");
  EXPECT_EQ(c["command_topic"], "scheduler/control/pi-kitchen/set");
  EXPECT_EQ(c["state_topic"], topics.scheduler_status());
  // Drive a real lease service with the switch's own command; its status
  // then holds every path the state template reads.
  lease_service_options so;
  so.topics = topics;
  lease_service svc(so, lease_env::system());
  quiet_assessment q;
  q.host_id = "pi-kitchen";
  q.state = quiet_state::quiet;
  svc.handle({topics.host_stats("pi-kitchen"), R"({"v":1,"host_id":"pi-kitchen","cpu":{"count":4}})",
              0, false, {}, {}, {}}); // its agent
  svc.handle({topics.host_quiet("pi-kitchen"), to_json(q).dump(), 1, true, {}, {}, {}});
  auto out = svc.handle({c["command_topic"].get<std::string>(), c["payload_off"].get<std::string>(),
                         1, false, {}, {}, {}});
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out[0].topic, "scheduler/control/pi-kitchen");
  EXPECT_TRUE(out[0].retain);
  auto status = json::parse(svc.status_message().payload);
  for (auto& path : template_paths(c["value_template"].get<std::string>()))
    EXPECT_TRUE(path_exists(status, path)) << "value_json" << path << " missing";
  EXPECT_EQ(status["hosts"]["pi-kitchen"]["paused"]["by"], "Home Assistant");
  // Its attributes say who holds the pause, at which level.
  EXPECT_EQ(c["json_attributes_topic"], topics.scheduler_status());
  EXPECT_NE(c["json_attributes_template"].get<std::string>().find("paused_by"), std::string::npos);
  EXPECT_EQ(status["hosts"]["pi-kitchen"]["paused_by"], "paused by Home Assistant (home_assistant)");
  svc.handle({c["command_topic"].get<std::string>(), c["payload_on"].get<std::string>(), 1, false,
              {}, {}, {}});
  status = json::parse(svc.status_message().payload);
  EXPECT_TRUE(status["hosts"]["pi-kitchen"]["paused"].is_null());
}

TEST(discovery, the_scheduler_host_gets_a_database_problem_sensor_over_scheduler_status) {
  topic_names topics;
  discovery_options opts;
  opts.own_instance = "nuc";
  opts.with_queue = true;
  auto own = build_discovery("nuc", topics, opts);
  auto other = build_discovery("pi-kitchen", topics, opts);
  ASSERT_TRUE(own.payload["cmps"].contains("store_failing"));
  EXPECT_FALSE(other.payload["cmps"].contains("store_failing"));
  auto& c = own.payload["cmps"]["store_failing"];
  EXPECT_EQ(c["p"], "binary_sensor");
  EXPECT_EQ(c["device_class"], "problem");
  EXPECT_EQ(c["state_topic"], topics.scheduler_status());
  // Every path the templates read is in a status whose "store" is as the
  // lease manager fills it.
  lease_service_options so;
  so.topics = topics;
  lease_service svc(so, lease_env::system());
  svc.set_store_status({{"lease_write_errors", 2},
                        {"job_write_errors", 0},
                        {"failing", true},
                        {"last_error", "leases: database is locked"},
                        {"last_error_at", "2026-12-01T10:00:00Z"},
                        {"persister",
                         {{"queued", 40}, {"dropped", 0}, {"write_errors", 1},
                          {"last_error", "database or disk is full"}}}});
  auto status = json::parse(svc.status_message().payload);
  for (auto tkey : {"value_template", "json_attributes_template"})
    for (auto& path : template_paths(c[tkey].get<std::string>()))
      EXPECT_TRUE(path_exists(status, path)) << "value_json" << path << " missing";
}
