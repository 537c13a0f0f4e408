// Home Assistant discovery payloads: the keys device discovery needs, the
// rules HA's users learned the hard way, that every value_template reads a
// path that exists in a real snapshot, quiet assessment or scheduler status,
// and the split between host devices and the one scheduler device.

#include <map>
#include <regex>
#include <set>

#include <gtest/gtest.h>

#include "src/ha/discovery.hpp"
#include "src/lease/lease_service.hpp"
#include "src/probe/gpu_probe.hpp"
#include "src/probe/host_probe.hpp"
#include "src/probe/lease_probe.hpp"
#include "src/quiet/quiet_assessor.hpp"
#include "tests/fixture_tree.hpp"

using namespace lull;
using nlohmann::json;

namespace {

/// A snapshot as a host agent takes it from a recorded /proc tree, of its
/// root and its /proc mounts.
json real_snapshot(const std::string& fixture) {
  test::fixture_tree tree(fixture);
  host_probe probe({tree.root(), "pi-kitchen", {"/", "/proc"}});
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

std::vector<std::string> mounts_of(const json& snapshot) {
  std::vector<std::string> out;
  for (auto& d : snapshot["disks"])
    out.push_back(d["mount"].get<std::string>());
  return out;
}

/// A component that only names its platform: Home Assistant removes it.
bool is_removal(const json& c) { return c.size() == 1 && c.contains("p"); }

/// The ids of the components `cmps` announces (not those it removes).
std::set<std::string> announced(const json& cmps) {
  std::set<std::string> out;
  for (auto& [key, c] : cmps.items())
    if (!is_removal(c))
      out.insert(key);
  return out;
}

std::set<std::string> removals(const json& cmps) {
  std::set<std::string> out;
  for (auto& [key, c] : cmps.items())
    if (is_removal(c))
      out.insert(key);
  return out;
}

/// scheduler/status as the lease manager builds it, with its queue and
/// store filled and `host` known (paused by the switch when `paused`).
json real_status(const topic_names& topics, const std::string& host, bool paused) {
  lease_service_options so;
  so.topics = topics;
  lease_service svc(so, lease_env::system());
  svc.set_queue_status({{"queued", 3}, {"depths", {{"high", 1}, {"normal", 2}}}, {"dead", 1}});
  svc.set_store_status({{"lease_write_errors", 2},
                        {"job_write_errors", 0},
                        {"failing", true},
                        {"last_error", "leases: database is locked"},
                        {"last_error_at", "2026-12-01T10:00:00Z"},
                        {"persister",
                         {{"queued", 40}, {"dropped", 0}, {"write_errors", 1},
                          {"last_error", "database or disk is full"}}}});
  quiet_assessment q;
  q.host_id = host;
  q.state = quiet_state::quiet;
  svc.handle({topics.host_stats(host), R"({"v":1,"host_id":")" + host + R"(","cpu":{"count":4}})",
              0, false, {}, {}, {}});
  svc.handle({topics.host_quiet(host), to_json(q).dump(), 1, true, {}, {}, {}});
  if (paused)
    svc.handle({topics.host_control(host) + "/set", "OFF", 1, false, {}, {}, {}});
  return json::parse(svc.status_message().payload);
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
  auto msg = build_discovery("pi-kitchen", {"/", "/home"}, topics, opts);
  EXPECT_EQ(msg.topic, "homeassistant/device/lull_pi-kitchen/config");
  auto& p = msg.payload;
  for (auto key : {"dev", "o", "cmps", "availability"})
    EXPECT_TRUE(p.contains(key)) << key;
  EXPECT_EQ(p["dev"]["ids"][0], "lull_pi-kitchen");
  EXPECT_EQ(p["dev"]["name"], "pi-kitchen");
  EXPECT_TRUE(p["o"].contains("name"));
  ASSERT_EQ(p["availability"].size(), 1u);
  EXPECT_EQ(p["availability"][0]["topic"], "lull/pi-kitchen/availability");

  // Exactly the host's own entities: nothing read from scheduler/status.
  EXPECT_EQ(announced(p["cmps"]),
            (std::set<std::string>{"cpu", "mem", "disk", "disk_home", "temp", "load",
                                   "leased_cpu", "active_leases", "quiet_score", "quiet_state",
                                   "quiet"}));
  std::set<std::string> unique_ids, kinds;
  int main_entities = 0;
  for (auto& key : announced(p["cmps"])) {
    auto& c = p["cmps"][key];
    SCOPED_TRACE(key);
    EXPECT_TRUE(valid_ha_id(key));
    ASSERT_TRUE(c.contains("p"));
    kinds.insert(c["p"].get<std::string>() + ":" + key);
    ASSERT_TRUE(c.contains("unique_id"));
    auto uid = c["unique_id"].get<std::string>();
    EXPECT_EQ(uid, "lull_pi-kitchen_" + key);
    EXPECT_TRUE(valid_ha_id(uid)) << uid;
    EXPECT_TRUE(unique_ids.insert(uid).second) << "duplicate " << uid;
    EXPECT_TRUE(c.contains("state_topic"));
    EXPECT_NE(c["state_topic"], topics.scheduler_status());
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
  for (auto want : {"sensor:cpu", "sensor:mem", "sensor:disk", "sensor:disk_home", "sensor:temp",
                    "sensor:load", "sensor:quiet_score", "sensor:quiet_state",
                    "binary_sensor:quiet"})
    EXPECT_TRUE(kinds.count(want)) << want;
  EXPECT_EQ(p["cmps"]["temp"]["device_class"], "temperature");
  EXPECT_EQ(p["cmps"]["temp"]["unit_of_measurement"], "°C");
}

TEST(discovery, the_fleet_entities_older_lulls_put_on_every_host_are_removed_there) {
  topic_names topics;
  discovery_options opts;
  opts.own_instance = "nuc";
  opts.scheduler = true;
  // Not on the scheduler's own host either: they are the scheduler device's.
  for (auto host : {"nuc", "pi-kitchen"}) {
    auto cmps = build_discovery(host, {"/"}, topics, opts).payload["cmps"];
    EXPECT_EQ(removals(cmps), (std::set<std::string>{"queue_depth", "store_failing", "allow_work"}))
      << host;
    EXPECT_EQ(cmps["queue_depth"], json({{"p", "sensor"}}));
    EXPECT_EQ(cmps["store_failing"], json({{"p", "binary_sensor"}}));
    EXPECT_EQ(cmps["allow_work"], json({{"p", "switch"}}));
  }
}

TEST(discovery, one_disk_sensor_per_mount_named_for_it_with_a_stable_id) {
  topic_names topics;
  auto cmps = build_discovery("pi-kitchen", {"/", "/home", "/mnt/usb-1"}, topics, {})
                .payload["cmps"];
  std::map<std::string, std::string> names;
  for (auto& key : announced(cmps))
    if (key.rfind("disk", 0) == 0)
      names[key] = cmps[key]["name"].get<std::string>();
  EXPECT_EQ(names, (std::map<std::string, std::string>{{"disk", "Disk free /"},
                                                       {"disk_home", "Disk free /home"},
                                                       {"disk_mnt_usb-2d1", "Disk free /mnt/usb-1"}}));
  // "/" keeps the id of lull's single disk sensor before: the same entity.
  EXPECT_EQ(cmps["disk"]["unique_id"], "lull_pi-kitchen_disk");
  EXPECT_EQ(cmps["disk_home"]["unique_id"], "lull_pi-kitchen_disk_home");
  // Each reads its own mount by name, whatever the order of the snapshot.
  auto tpl = cmps["disk_home"]["value_template"].get<std::string>();
  EXPECT_NE(tpl.find("selectattr('mount', 'eq', '/home')"), std::string::npos) << tpl;
  EXPECT_NE(tpl.find("free_pct"), std::string::npos) << tpl;
  EXPECT_EQ(cmps["disk_home"]["unit_of_measurement"], "%");
  EXPECT_EQ(cmps["disk_home"]["state_topic"], "stats/host/pi-kitchen");

  // Distinct mounts, distinct ids; the same mount, the same id.
  std::set<std::string> ids;
  for (auto m : {"/", "/data", "/data/", "/da/ta", "/da_ta", "/da-ta", "/da ta", "/Data", "data",
                 "/d\xc3\xa4ta"})
    EXPECT_TRUE(ids.insert(disk_component_id(m)).second) << m << " -> " << disk_component_id(m);
  for (auto& id : ids)
    EXPECT_TRUE(valid_ha_id(id)) << id;
  EXPECT_EQ(disk_component_id("/srv/media"), disk_component_id(std::string("/srv/media")));

  // A mount that cannot be quoted in a template gets no sensor.
  for (auto m : {"/it's", "/a\\b", "/{{x}}", "/tab\there", ""})
    EXPECT_FALSE(discoverable_mount(m)) << m;
  EXPECT_TRUE(discoverable_mount("/media/pi/USB DISK"));
  EXPECT_FALSE(discoverable_mount("/" + std::string(max_discovery_mount_bytes, 'a')));
  auto odd = build_discovery("pi-kitchen", {"/", "/it's"}, topics, {}).payload["cmps"];
  EXPECT_EQ(announced(odd).count(disk_component_id("/it's")), 0u);
}

TEST(discovery, a_mount_that_went_away_is_removed_and_a_host_without_root_drops_the_old_one) {
  topic_names topics;
  auto cmps = build_discovery("pi-kitchen", {"/", "/home"}, topics, {}, {"/mnt/usb"}).payload["cmps"];
  EXPECT_TRUE(is_removal(cmps[disk_component_id("/mnt/usb")]));
  EXPECT_FALSE(is_removal(cmps["disk_home"]));
  // A mount back in the snapshot is announced, not removed.
  cmps = build_discovery("pi-kitchen", {"/", "/home"}, topics, {}, {"/home"}).payload["cmps"];
  EXPECT_FALSE(is_removal(cmps["disk_home"]));
  // No "/" in the snapshot: the old first-disk sensor goes.
  cmps = build_discovery("pi-kitchen", {"/data"}, topics, {}).payload["cmps"];
  EXPECT_TRUE(is_removal(cmps["disk"]));
  EXPECT_FALSE(is_removal(cmps["disk_data"]));
}

TEST(discovery, every_template_path_exists_in_a_real_snapshot_and_assessment) {
  topic_names topics;
  for (auto fixture : {"pi4-throttled", "x86-laptop", "no-thermal"}) {
    auto snapshot = real_snapshot(fixture);
    auto mounts = mounts_of(snapshot);
    ASSERT_EQ(mounts, (std::vector<std::string>{"/", "/proc"})) << fixture;
    auto quiet = real_assessment(snapshot);
    auto msg = build_discovery("pi-kitchen", mounts, topics, {});
    int checked = 0;
    std::set<std::string> keys;
    for (auto& key : announced(msg.payload["cmps"])) {
      auto& c = msg.payload["cmps"][key];
      for (auto tkey : {"value_template", "json_attributes_template"}) {
        if (!c.contains(tkey))
          continue;
        auto tpl = c[tkey].get<std::string>();
        auto paths = template_paths(tpl);
        EXPECT_FALSE(paths.empty()) << key << ": " << tpl;
        auto topic = c[tkey == std::string("value_template") ? "state_topic"
                                                               : "json_attributes_topic"];
        EXPECT_TRUE(topic == topics.host_quiet("pi-kitchen")
                    || topic == topics.host_stats("pi-kitchen"))
          << key << " reads " << topic;
        auto& doc = topic == topics.host_quiet("pi-kitchen") ? quiet : snapshot;
        for (auto& path : paths) {
          EXPECT_TRUE(path_exists(doc, path))
            << fixture << " " << key << ": value_json" << path << " missing";
          ++checked;
        }
        keys.insert(key);
      }
    }
    // Every entity has a template, and each was checked.
    EXPECT_EQ(keys, announced(msg.payload["cmps"])) << fixture;
    EXPECT_GE(checked, 13) << fixture;
    // A disk sensor per mount of the snapshot, reading "disks" by mount.
    EXPECT_TRUE(keys.count("disk")) << fixture;
    EXPECT_TRUE(keys.count("disk_proc")) << fixture;
  }
}

TEST(discovery, prefix_topic_prefix_and_fleet_availability) {
  topic_names topics("site1/");
  discovery_options opts;
  opts.ha.prefix = "ha";
  opts.own_instance = "nuc";
  auto msg = build_discovery("pi-kitchen", {"/"}, topics, opts);
  EXPECT_EQ(msg.topic, "ha/device/lull_pi-kitchen/config");
  EXPECT_EQ(msg.payload["cmps"]["cpu"]["state_topic"], "site1/stats/host/pi-kitchen");
  // What the host's agent reports needs only that agent online ...
  ASSERT_EQ(msg.payload["availability"].size(), 1u);
  EXPECT_EQ(msg.payload["availability"][0]["topic"], "site1/lull/pi-kitchen/availability");
  for (auto key : {"cpu", "mem", "disk", "temp", "load", "leased_cpu", "active_leases"})
    EXPECT_FALSE(msg.payload["cmps"][key].contains("availability")) << key;
  // ... what another lulld assesses needs both.
  int assessed = 0;
  for (auto key : {"quiet_score", "quiet_state", "quiet"}) {
    auto& c = msg.payload["cmps"][key];
    ASSERT_EQ(c["availability"].size(), 2u) << key;
    EXPECT_EQ(c["availability"][0]["topic"], "site1/lull/pi-kitchen/availability");
    EXPECT_EQ(c["availability"][1]["topic"], "site1/lull/nuc/availability");
    EXPECT_EQ(c["availability_mode"], "all");
    ++assessed;
  }
  EXPECT_EQ(assessed, 3);
  // Its own host's quiet entities: one lulld, one availability.
  auto own = build_discovery("nuc", {"/"}, topics, opts);
  EXPECT_FALSE(own.payload["cmps"]["quiet_state"].contains("availability"));
  EXPECT_EQ(ha_status_topic(opts), "ha/status");
  EXPECT_TRUE(discovery_removal("pi-kitchen", opts).payload.is_null());
  EXPECT_EQ(discovery_removal("pi-kitchen", opts).topic, "ha/device/lull_pi-kitchen/config");
}

TEST(discovery, template_paths_are_extracted) {
  EXPECT_EQ(template_paths("{{ value_json.cpu.total_pct }}"),
            std::vector<std::string>{".cpu.total_pct"});
  EXPECT_EQ(template_paths("{{ value_json.load['1m'] }}"), std::vector<std::string>{".load['1m']"});
  EXPECT_EQ(template_paths("{{ value_json.disks[0].free_pct }}"),
            std::vector<std::string>{".disks[0].free_pct"});
}

TEST(discovery, one_scheduler_device_holds_what_scheduler_status_says) {
  topic_names topics;
  discovery_options opts;
  opts.own_instance = "nuc";
  opts.scheduler = true;
  auto msg = build_scheduler_discovery({"nuc", "pi-kitchen"}, topics, opts);
  EXPECT_EQ(msg.topic, "homeassistant/device/lull-scheduler/config");
  auto& p = msg.payload;
  EXPECT_EQ(p["dev"]["ids"][0], "lull-scheduler");
  EXPECT_EQ(p["dev"]["name"], "lull scheduler");
  EXPECT_TRUE(p["o"].contains("name"));
  // The scheduler's own availability: its entities go with it, and only they.
  ASSERT_EQ(p["availability"].size(), 1u);
  EXPECT_EQ(p["availability"][0]["topic"], "lull/nuc/availability");
  EXPECT_EQ(announced(p["cmps"]),
            (std::set<std::string>{"queue_depth", "dead_jobs", "store_failing", "allow_work_nuc",
                                   "allow_work_pi-kitchen"}));
  std::set<std::string> unique_ids;
  for (auto& key : announced(p["cmps"])) {
    auto& c = p["cmps"][key];
    SCOPED_TRACE(key);
    EXPECT_TRUE(valid_ha_id(key));
    EXPECT_EQ(c["unique_id"], "lull-scheduler_" + key);
    EXPECT_TRUE(unique_ids.insert(c["unique_id"].get<std::string>()).second);
    EXPECT_EQ(c["state_topic"], topics.scheduler_status());
    EXPECT_FALSE(c.contains("availability")) << "the device's";
    EXPECT_FALSE(c.contains("expire_after")) << "scheduler/status is retained";
  }
  auto& q = p["cmps"]["queue_depth"];
  EXPECT_EQ(q["name"], "Queued jobs");
  EXPECT_EQ(q["state_class"], "measurement");
  EXPECT_EQ(p["cmps"]["dead_jobs"]["name"], "Dead jobs");
  EXPECT_EQ(p["cmps"]["dead_jobs"]["value_template"], "{{ value_json.queue.dead | default(0) }}");
  EXPECT_EQ(p["cmps"]["store_failing"]["p"], "binary_sensor");
  EXPECT_EQ(p["cmps"]["store_failing"]["device_class"], "problem");
  EXPECT_EQ(p["cmps"]["allow_work_pi-kitchen"]["name"], "Allow heavy work on pi-kitchen");

  // Every path its templates read is in a real status.
  auto status = real_status(topics, "pi-kitchen", true);
  int checked = 0;
  for (auto& key : announced(p["cmps"]))
    for (auto tkey : {"value_template", "json_attributes_template"}) {
      // A switch's attributes use .get() (a host not yet in the status):
      // its own test below drives them.
      if (key.rfind("allow_work_", 0) == 0 && tkey == std::string("json_attributes_template"))
        continue;
      if (!p["cmps"][key].contains(tkey))
        continue; // Dead jobs has no attributes
      auto paths = template_paths(p["cmps"][key][tkey].get<std::string>());
      EXPECT_FALSE(paths.empty()) << key << " " << tkey;
      for (auto& path : paths) {
        if (key == "allow_work_nuc" && path.find("['nuc']") != std::string::npos)
          continue; // nuc reported nothing to this lease service
        EXPECT_TRUE(path_exists(status, path)) << key << ": value_json" << path << " missing";
        ++checked;
      }
    }
  EXPECT_GE(checked, 8);
  EXPECT_EQ(status["queue"]["queued"], 3);
}

TEST(discovery, the_scheduler_device_keeps_fleets_apart_and_removes_switches_of_gone_hosts) {
  discovery_options opts;
  opts.own_instance = "nuc";
  opts.ha.prefix = "ha";
  topic_names home("home/");
  auto msg = build_scheduler_discovery({"nuc"}, home, opts, {"pi-old", "nuc"});
  EXPECT_EQ(scheduler_device_id(home), "lull-scheduler-home");
  EXPECT_EQ(msg.topic, "ha/device/lull-scheduler-home/config");
  EXPECT_EQ(msg.payload["dev"]["name"], "lull scheduler home");
  EXPECT_EQ(msg.payload["availability"][0]["topic"], "home/lull/nuc/availability");
  EXPECT_EQ(msg.payload["cmps"]["queue_depth"]["state_topic"], "home/scheduler/status");
  EXPECT_EQ(msg.payload["cmps"]["allow_work_nuc"]["command_topic"], "home/scheduler/control/nuc/set");
  // A gone host's switch is removed; one that is back is not.
  EXPECT_EQ(removals(msg.payload["cmps"]), std::set<std::string>{"allow_work_pi-old"});
  EXPECT_EQ(scheduler_device_id(topic_names("lab/x/")), "lull-scheduler-lab_x");
  // Never a host's device, whatever the host is called.
  EXPECT_NE(build_scheduler_discovery({}, topic_names(), opts).topic,
            build_discovery("scheduler", {"/"}, topic_names(), opts).topic);
}

TEST(discovery, allow_heavy_work_switch_commands_the_pause_and_shows_the_schedulers_state) {
  topic_names topics;
  discovery_options opts;
  opts.own_instance = "nuc";
  auto msg = build_scheduler_discovery({"pi-kitchen"}, topics, opts);
  auto& c = msg.payload["cmps"]["allow_work_pi-kitchen"];
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
  auto paths = template_paths(c["value_template"].get<std::string>());
  ASSERT_FALSE(paths.empty());
  for (auto& path : paths)
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

TEST(discovery, pressure_and_power_entities_follow_what_the_host_reports) {
  topic_names topics;
  auto plain = build_discovery("pi", {"/"}, topics, {}).payload["cmps"];
  for (auto* key : {"pressure", "battery", "on_ac"})
    EXPECT_FALSE(plain.contains(key)) << key << ": a host that reports none has none";
  host_features unplugged_probe;
  unplugged_probe.pressure = true;
  unplugged_probe.power_gone = true; // its power supplies were reported before
  auto gone = build_discovery("pi", {"/"}, topics, {}, {}, unplugged_probe).payload["cmps"];
  EXPECT_EQ(gone["battery"], (nlohmann::json{{"p", "sensor"}})) << "removed, as a gone mount";
  EXPECT_EQ(gone["on_ac"], (nlohmann::json{{"p", "binary_sensor"}}));
  EXPECT_EQ(gone["pressure"]["p"], "sensor");
  host_features with_both;
  with_both.pressure = with_both.power = true;
  auto laptop = build_discovery("laptop", {"/"}, topics, {}, {}, with_both).payload["cmps"];
  EXPECT_EQ(laptop["pressure"]["unit_of_measurement"], "%");
  EXPECT_EQ(laptop["battery"]["device_class"], "battery");
  EXPECT_EQ(laptop["battery"]["state_topic"], "stats/host/laptop");
  EXPECT_EQ(laptop["on_ac"]["p"], "binary_sensor");
  EXPECT_EQ(laptop["on_ac"]["device_class"], "plug");
  EXPECT_EQ(laptop["on_ac"]["unique_id"], "lull_laptop_on_ac");
  auto set = announced(laptop);
  EXPECT_TRUE(set.count("pressure") && set.count("battery") && set.count("on_ac"));
}

TEST(discovery, host_in_use_appears_once_a_host_reports_a_login_session) {
  topic_names topics;
  auto headless = build_discovery("nuc", {"/"}, topics, {}).payload["cmps"];
  EXPECT_FALSE(headless.contains("in_use"));
  host_features desk;
  desk.owner = true;
  discovery_options opts;
  opts.owner_idle_sec = 120;
  auto laptop = build_discovery("laptop", {"/"}, topics, opts, {}, desk).payload["cmps"];
  ASSERT_TRUE(laptop.contains("in_use"));
  auto& e = laptop["in_use"];
  EXPECT_EQ(e["p"], "binary_sensor");
  EXPECT_EQ(e["name"], "Host in use");
  EXPECT_EQ(e["device_class"], "occupancy");
  EXPECT_EQ(e["state_topic"], "stats/host/laptop");
  EXPECT_EQ(e["unique_id"], "lull_laptop_in_use");
  // ON while the last input is newer than quiet.owner_idle and the screen is not locked.
  EXPECT_NE(e["value_template"].get<std::string>().find("idle_sec < 120"), std::string::npos)
    << e["value_template"];
  EXPECT_NE(e["value_template"].get<std::string>().find("not value_json.owner.locked"),
            std::string::npos);
  EXPECT_TRUE(announced(laptop).count("in_use"));
}

TEST(discovery, a_gpu_sensor_per_gpu_the_host_reports_removed_when_it_goes) {
  topic_names topics;
  auto plain = build_discovery("pi", {"/"}, topics, {}).payload["cmps"];
  for (auto& key : announced(plain))
    EXPECT_EQ(key.rfind("gpu", 0), std::string::npos) << key << ": a host without a GPU has none";

  // The laptop's snapshot from its fixture tree: an i915 and an amdgpu.
  test::fixture_tree tree("x86-laptop");
  gpu_probe probe({tree.root()});
  probe.sample(100.0, {});
  tree.advance();
  host_snapshot s;
  s.host_id = "laptop";
  s.collected_at = 1763900002;
  s.gpus = probe.sample(102.0, {}).gpus;
  auto snapshot = to_json(s);
  host_features features;
  features.gpus = {"card0", "card1"};
  auto cmps = build_discovery("laptop", {"/"}, topics, {}, {}, features).payload["cmps"];
  auto& card1 = cmps["gpu_card1"];
  EXPECT_EQ(card1["name"], "GPU card1");
  EXPECT_EQ(card1["unique_id"], "lull_laptop_gpu_card1");
  EXPECT_EQ(card1["state_topic"], "stats/host/laptop");
  EXPECT_EQ(card1["unit_of_measurement"], "%");
  EXPECT_TRUE(cmps.contains("gpu_card0"));
  for (auto* key : {"gpu_card0", "gpu_card1"})
    for (auto* tkey : {"value_template", "json_attributes_template"}) {
      auto tpl = cmps[key][tkey].get<std::string>();
      EXPECT_NE(tpl.find(std::string("'") + (key + 4) + "'"), std::string::npos) << tpl;
      for (auto& path : template_paths(tpl))
        EXPECT_TRUE(path_exists(snapshot, path)) << key << ": value_json" << path << " missing";
    }

  // card1 (an eGPU) unplugged: its sensor is removed, card0's stays; a later
  // snapshot still removes it (Home Assistant may have missed the first).
  host_features after;
  after.gpus = {"card0"};
  after.carry_gone(features);
  EXPECT_EQ(after.gpus_gone, (std::vector<std::string>{"card1"}));
  cmps = build_discovery("laptop", {"/"}, topics, {}, {}, after).payload["cmps"];
  EXPECT_EQ(cmps["gpu_card1"], (nlohmann::json{{"p", "sensor"}}));
  EXPECT_EQ(cmps["gpu_card0"]["p"], "sensor");
  EXPECT_TRUE(cmps["gpu_card0"].contains("value_template"));
  host_features later;
  later.gpus = {"card0"};
  later.carry_gone(after);
  EXPECT_EQ(later.gpus_gone, (std::vector<std::string>{"card1"}));
  // Plugged in again: announced, no longer removed.
  host_features back;
  back.gpus = {"card0", "card1"};
  back.carry_gone(later);
  EXPECT_TRUE(back.gpus_gone.empty());
  // An id from the bus that could break out of its template gets no sensor.
  EXPECT_FALSE(discoverable_gpu("card0' }}{{ 7*7"));
  EXPECT_FALSE(discoverable_gpu(""));
  EXPECT_TRUE(discoverable_gpu("card12"));
  host_features odd;
  odd.gpus = {"x' or 1"};
  cmps = build_discovery("laptop", {"/"}, topics, {}, {}, odd).payload["cmps"];
  for (auto& key : announced(cmps))
    EXPECT_EQ(key.rfind("gpu", 0), std::string::npos) << key;
}

TEST(discovery, mounts_are_checked_about_every_tenth_snapshot_between_5s_and_a_minute) {
  EXPECT_DOUBLE_EQ(mounts_check_sec(2), 20);
  EXPECT_DOUBLE_EQ(mounts_check_sec(0.1), 5);
  EXPECT_DOUBLE_EQ(mounts_check_sec(30), 60);
}
