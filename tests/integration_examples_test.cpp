// The examples in examples/ against a real lulld and Mosquitto: the Python
// worker (MQTT v5 and v3.1.1), the shell lease (mosquitto_rr/mosquitto_pub)
// and the Home Assistant dashboard and automations. The Node.js and Node-RED
// examples need npm packages: integration_examples_npm_test.cpp.

#include <cstdlib>
#include <map>
#include <regex>
#include <set>

#include "tests/examples_support.hpp"

using namespace lull;
using namespace lull::test;
using namespace std::chrono_literals;

namespace {

std::string python3() {
  // Debian's interpreter: python3-paho-mqtt is installed for it.
  if (::access("/usr/bin/python3", X_OK) == 0)
    return "/usr/bin/python3";
  return find_executable("python3").value_or("python3");
}

/// A command that outlives two heartbeat TTLs (6 s) and leaves its lease id
/// in `file`, then exits 3.
std::vector<std::string> slow_command(const std::string& file) {
  return {"sh", "-c", "sleep 8; echo \"$LULL_LEASE_ID\" > " + file + "; exit 3"};
}

/// A command that runs until it is stopped and writes its pid first.
std::vector<std::string> endless_command(const std::string& pidfile) {
  return {"sh", "-c", "echo $$ > " + pidfile + "; exec sleep 300"};
}

std::vector<std::string> concat(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

bool process_gone(const std::string& pidfile) {
  auto text = slurp(pidfile);
  if (text.empty())
    return false;
  pid_t pid = std::stoi(text);
  return wait_until([&] { return ::kill(pid, 0) != 0; }, 30s);
}

} // namespace

// -- Python ------------------------------------------------------------------

class python_example : public ::testing::TestWithParam<int> {};

TEST_P(python_example, holds_a_lease_through_heartbeats_and_releases_with_the_outcome) {
  example_env env;
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto file = env.dir() + "/lease-id";
  auto worker = "py" + std::to_string(GetParam());
  example_process p(
    concat({python3(), source_path("examples/python/lull_worker.py"), "--broker",
            env.host_port(), "--worker", worker, "--mqtt", std::to_string(GetParam()), "--"},
           slow_command(file)),
    env.dir());
  ASSERT_TRUE(p.started()) << p.err();
  auto code = p.wait(90s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 3) << p.output();
  auto lease_id = slurp(file);
  ASSERT_FALSE(lease_id.empty()) << p.output();
  lease_id.pop_back(); // newline
  EXPECT_NE(p.err().find(GetParam() == 5 ? "MQTT v5" : "MQTT v3.1.1"), std::string::npos)
    << p.output();
  // Released, not expired: 8 s under a 6 s TTL needs the heartbeats.
  auto ended = env.ended_lease(lease_id);
  EXPECT_EQ(ended["state"], "RELEASED") << ended.dump() << "\n" << p.output();
  EXPECT_EQ(ended["worker_id"], worker);
  // Its last status on the way out tells lulld it left.
  EXPECT_TRUE(env.daemon().wait_log("worker registry: " + worker + " is offline", 30s))
    << env.daemon().log();
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(),
    {"stats/worker/" + worker, "scheduler/lease/request", "scheduler/lease/+/heartbeat",
     "scheduler/lease/+/release"}));
}

INSTANTIATE_TEST_SUITE_P(mqtt_versions, python_example, ::testing::Values(5, 3));

TEST(python_example_revoke, a_revoke_stops_the_command_and_the_lease_is_released) {
  example_env env;
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto pidfile = env.dir() + "/child.pid";
  example_process p(concat({python3(), source_path("examples/python/lull_worker.py"),
                            "--broker", env.host_port(), "--worker", "pyrev", "--grace", "2",
                            "--"},
                           endless_command(pidfile)),
                    env.dir());
  auto lease_id = env.active_lease_of("pyrev");
  ASSERT_FALSE(lease_id.empty()) << p.output();
  env.revoke(lease_id);
  auto code = p.wait(60s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 128 + SIGTERM) << p.output();
  EXPECT_TRUE(process_gone(pidfile));
  EXPECT_NE(p.err().find("lease revoked: test revoke"), std::string::npos) << p.output();
  EXPECT_EQ(env.ended_lease(lease_id)["state"], "REVOKED");
  EXPECT_TRUE(env.daemon().wait_log("worker registry: pyrev is offline", 30s))
    << env.daemon().log();
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(),
    {"stats/worker/pyrev", "scheduler/lease/request", "scheduler/lease/+/heartbeat",
     "scheduler/lease/+/release"}));
}

TEST(python_example_errors, no_broker_exits_69) {
  temp_dir dir("lull-examples");
  example_process p({python3(), source_path("examples/python/lull_worker.py"), "--broker",
                     "127.0.0.1:" + std::to_string(free_loopback_port()), "--", "true"},
                    dir);
  auto code = p.wait(60s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 69) << p.output();
  EXPECT_NE(p.err().find("cannot connect"), std::string::npos) << p.output();
}

// -- shell (mosquitto_rr + mosquitto_pub) ------------------------------------

TEST(shell_example, holds_a_lease_through_heartbeats_and_releases) {
  example_env env;
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto file = env.dir() + "/lease-id";
  example_process p(concat({source_path("examples/shell/lull-lease.sh"), "-p",
                            std::to_string(env.mqtt_broker().port()), "-w", "sh1", "-c", "LOW",
                            "--"},
                           slow_command(file)),
                    env.dir());
  auto code = p.wait(90s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 3) << p.output();
  auto lease_id = slurp(file);
  ASSERT_FALSE(lease_id.empty()) << p.output();
  lease_id.pop_back();
  auto ended = env.ended_lease(lease_id);
  EXPECT_EQ(ended["state"], "RELEASED") << ended.dump() << "\n" << p.output();
  EXPECT_EQ(ended["cost_units"], 5) << "cost class LOW";
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(),
    {"scheduler/lease/request", "scheduler/lease/+/heartbeat", "scheduler/lease/+/release"}));
}

TEST(shell_example, waits_while_the_host_is_busy_then_runs) {
  example_env env;
  // lulld answers (its first status is out) but knows no quiet state yet: it
  // denies, waiting for QUIET, until the test says QUIET.
  ASSERT_TRUE(env.status_shows([](const json&) { return true; })) << env.daemon().log();
  auto file = env.dir() + "/ran";
  example_process p({source_path("examples/shell/lull-lease.sh"), "-p",
                     std::to_string(env.mqtt_broker().port()), "-w", "shwait", "--", "sh", "-c",
                     "touch " + file},
                    env.dir());
  ASSERT_TRUE(wait_until([&] { return p.err().find("waiting") != std::string::npos; }, 60s))
    << p.output();
  EXPECT_FALSE(std::filesystem::exists(file));
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto code = p.wait(90s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 0) << p.output();
  EXPECT_TRUE(std::filesystem::exists(file));
  // Its release (fire and forget) ended the lease: lulld read it.
  auto ended = env.ended_leases_of("shwait", 1);
  ASSERT_EQ(ended.size(), 1u) << p.output();
  EXPECT_EQ(ended[0]["state"], "RELEASED") << ended.dump();
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(), {"scheduler/lease/request", "scheduler/lease/+/release"}));
}

TEST(shell_example, a_revoke_stops_the_command) {
  example_env env;
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto pidfile = env.dir() + "/child.pid";
  example_process p(concat({source_path("examples/shell/lull-lease.sh"), "-p",
                            std::to_string(env.mqtt_broker().port()), "-w", "shrev", "--"},
                           endless_command(pidfile)),
                    env.dir());
  auto lease_id = env.active_lease_of("shrev");
  ASSERT_FALSE(lease_id.empty()) << p.output();
  env.revoke(lease_id);
  auto code = p.wait(60s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 128 + SIGTERM) << p.output();
  EXPECT_TRUE(process_gone(pidfile));
  EXPECT_NE(p.err().find("lease lost"), std::string::npos) << p.output();
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(), {"scheduler/lease/request", "scheduler/lease/+/heartbeat"}));
}

// -- Home Assistant ------------------------------------------------------------

namespace {

/// Home Assistant's slugify for entity ids: lower case, runs of anything but
/// [a-z0-9] become one "_", none at either end.
std::string slugify(const std::string& text) {
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c))
      out += static_cast<char>(std::tolower(c));
    else if (!out.empty() && out.back() != '_')
      out += '_';
  }
  while (!out.empty() && out.back() == '_')
    out.pop_back();
  return out;
}

/// YAML to JSON through Debian's python3-yaml (what HA's loader accepts, minus
/// its own tags, which the examples do not use).
std::optional<json> load_yaml(const std::string& path, const std::string& dir) {
  auto out = dir + "/yaml.json";
  example_process p({python3(), "-c",
                     "import json, sys, yaml\n"
                     "json.dump(yaml.safe_load(open(sys.argv[1])), open(sys.argv[2], 'w'))",
                     path, out},
                    dir);
  auto code = p.wait(30s);
  if (!code || *code != 0) {
    ADD_FAILURE() << path << ": " << p.output();
    return std::nullopt;
  }
  return json::parse(slurp(out), nullptr, false);
}

/// Renders Home Assistant templates with Debian's python3-jinja2, the
/// engine HA's templates are written for: each {"template", "value_json"}
/// of `jobs` to its text ("ERROR: ..." when it does not render).
std::optional<std::vector<std::string>> render_templates(const json& jobs,
                                                         const std::string& dir) {
  auto in = dir + "/templates.json", out = dir + "/rendered.json";
  std::ofstream(in) << jobs.dump();
  example_process p({python3(), "-c",
                     "import json, sys, jinja2\n"
                     "env = jinja2.Environment()\n"
                     "out = []\n"
                     "for j in json.load(open(sys.argv[1])):\n"
                     "    try:\n"
                     "        out.append(env.from_string(j['template']).render(value_json=j['value_json']))\n"
                     "    except Exception as e:\n"
                     "        out.append('ERROR: %s: %s' % (type(e).__name__, e))\n"
                     "json.dump(out, open(sys.argv[2], 'w'))",
                     in, out},
                    dir);
  auto code = p.wait(30s);
  if (!code || *code != 0) {
    ADD_FAILURE() << "rendering templates (Debian: python3-jinja2): " << p.output();
    return std::nullopt;
  }
  return json::parse(slurp(out)).get<std::vector<std::string>>();
}

/// A component that only names its platform: discovery removes it.
bool is_removal(const json& c) { return c.size() == 1 && c.contains("p"); }

/// The entity ids HA gives a device's discovered entities:
/// <domain>.<device>_<name> (the device's name alone for a null name).
std::map<std::string, std::string> entity_ids(const json& device) {
  std::map<std::string, std::string> out; // entity id -> component key
  auto name = device["dev"]["name"].get<std::string>();
  for (auto& [key, cmp] : device["cmps"].items())
    if (!is_removal(cmp))
      out[cmp["p"].get<std::string>() + "."
          + slugify(cmp["name"].is_null() ? name : name + " " + cmp["name"].get<std::string>())] =
        key;
  return out;
}

} // namespace

TEST(homeassistant_example, dashboard_and_automations_use_the_entities_discovery_creates) {
  temp_dir dir("lull-examples-ha");
  broker b;
  input_recorder inputs(b.uri());
  lulld d({"--broker", b.uri(), "--host-id", "nuc", "--data-dir", dir, "--interval", "1s"});
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("homeassistant/device/+/config");
  c.subscribe("stats/host/nuc");
  c.subscribe("stats/host/nuc/quiet");
  c.subscribe("scheduler/status");
  auto config_of = [&](const std::string& topic, const std::function<bool(const json&)>& ok) {
    json out;
    c.wait_for(
      [&](const mqtt_message& m) {
        if (m.topic != topic)
          return false;
        out = json::parse(m.payload, nullptr, false);
        return out.is_object() && ok(out);
      },
      60s);
    return out;
  };
  // The host's device, once its snapshot was read: a disk sensor per mount
  // it reports (/ and the data directory).
  auto host = config_of("homeassistant/device/lull_nuc/config", [](const json&) { return true; });
  ASSERT_TRUE(host.is_object()) << d.log();
  // The one scheduler device, with a switch for each host that reported.
  auto sched = config_of("homeassistant/device/lull-scheduler/config", [](const json& j) {
    return j["cmps"].contains("allow_work_nuc");
  });
  ASSERT_TRUE(sched.is_object()) << d.log();
  EXPECT_EQ(sched["availability"][0]["topic"], "lull/nuc/availability")
    << "the scheduler's entities go with the scheduler";
  auto snapshot = c.wait_for_topic("stats/host/nuc", 30s);
  ASSERT_TRUE(snapshot) << d.log();
  auto snap = json::parse(snapshot->payload);

  auto host_entities = entity_ids(host), sched_entities = entity_ids(sched);
  std::map<std::string, std::string> entities = host_entities;
  entities.insert(sched_entities.begin(), sched_entities.end());
  ASSERT_TRUE(entities.count("sensor.nuc")) << "the quiet state is the host device's main entity";
  EXPECT_TRUE(sched_entities.count("sensor.lull_scheduler_queued_jobs"));
  EXPECT_TRUE(sched_entities.count("sensor.lull_scheduler_dead_jobs"));
  EXPECT_TRUE(sched_entities.count("switch.lull_scheduler_allow_heavy_work_on_nuc"));
  EXPECT_EQ(sched_entities.size(), 4u) << "queued and dead jobs, database, one switch per host";
  for (auto& [id, key] : host_entities)
    EXPECT_NE(host["cmps"][key]["state_topic"], "scheduler/status")
      << id << ": the scheduler's, on a host device";
  // "Disk free <mount>" for each mount of the snapshot; "/" is sensor.nuc_disk_free.
  int disks = 0;
  for (auto& disk : snap["disks"]) {
    auto mount = disk["mount"].get<std::string>();
    EXPECT_TRUE(host_entities.count("sensor." + slugify("nuc Disk free " + mount))) << mount;
    ++disks;
  }
  EXPECT_EQ(disks, 2) << snapshot->payload;
  EXPECT_TRUE(host_entities.count("sensor.nuc_disk_free"));

  // Every template renders, on what lulld really publishes, to what its
  // entity takes: a number, ON/OFF, a state of the enum, a JSON object.
  auto has = [](const mqtt_message& m, const char* topic, const std::vector<const char*>& keys) {
    if (m.topic != topic)
      return false;
    auto j = json::parse(m.payload, nullptr, false);
    for (auto* k : keys)
      if (!j.is_object() || !j.contains(k))
        return false;
    return true;
  };
  auto quiet = c.wait_for([&](auto& m) { return has(m, "stats/host/nuc/quiet", {"state"}); }, 30s);
  auto status = c.wait_for(
    [&](auto& m) {
      return has(m, "scheduler/status", {"queue", "hosts"})
             && json::parse(m.payload)["hosts"].contains("nuc");
    },
    30s);
  ASSERT_TRUE(quiet && status) << d.log();
  std::map<std::string, json> docs = {{"stats/host/nuc", snap},
                                      {"stats/host/nuc/quiet", json::parse(quiet->payload)},
                                      {"scheduler/status", json::parse(status->payload)}};
  json jobs = json::array();
  std::vector<std::pair<std::string, json>> rendered_what; // entity, component
  for (auto* device : {&host, &sched})
    for (auto& [id, key] : entity_ids(*device)) {
      auto& cmp = (*device)["cmps"][key];
      for (auto* tkey : {"value_template", "json_attributes_template"}) {
        if (!cmp.contains(tkey))
          continue;
        auto topic = cmp[tkey == std::string("value_template") ? "state_topic"
                                                               : "json_attributes_topic"];
        ASSERT_TRUE(docs.count(topic)) << id << " reads " << topic;
        jobs.push_back({{"template", cmp[tkey]}, {"value_json", docs[topic]}});
        rendered_what.push_back({id + " " + tkey, cmp});
      }
    }
  ASSERT_GE(jobs.size(), 15u);
  auto rendered = render_templates(jobs, dir);
  ASSERT_TRUE(rendered);
  ASSERT_EQ(rendered->size(), jobs.size());
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    auto& [what, cmp] = rendered_what[i];
    auto& text = (*rendered)[i];
    SCOPED_TRACE(what + " rendered '" + text + "' from " + jobs[i]["template"].get<std::string>());
    EXPECT_EQ(text.rfind("ERROR", 0), std::string::npos);
    if (what.find("json_attributes_template") != std::string::npos) {
      EXPECT_TRUE(json::parse(text, nullptr, false).is_object());
    } else if (cmp.contains("state_class")) {
      // A number; only the CPU temperature may be unknown (no thermal zone
      // on the machine that runs the test).
      char* end = nullptr;
      std::strtod(text.c_str(), &end);
      bool number = !text.empty() && end && *end == '\0';
      EXPECT_TRUE(number || (text == "None" && what.find("temperature") != std::string::npos));
    } else if (cmp.contains("options")) {
      EXPECT_NE(std::find(cmp["options"].begin(), cmp["options"].end(), text),
                cmp["options"].end());
    } else {
      EXPECT_TRUE(text == "ON" || text == "OFF");
    }
  }

  // The switch as Home Assistant drives it: OFF pauses nuc, and its state,
  // rendered from the scheduler's status, follows.
  auto& sw = sched["cmps"]["allow_work_nuc"];
  for (auto* payload : {"payload_off", "payload_on"}) {
    bool off = payload == std::string("payload_off");
    c.publish(sw["command_topic"].get<std::string>(), sw[payload].get<std::string>());
    auto st = c.wait_for(
      [&](const mqtt_message& m) {
        if (m.topic != "scheduler/status")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        return j.is_object() && j["hosts"].contains("nuc")
               && j["hosts"]["nuc"]["paused"].is_null() != off;
      },
      30s);
    ASSERT_TRUE(st) << d.log();
    auto state = render_templates(
      json::array({{{"template", sw["value_template"]}, {"value_json", json::parse(st->payload)}},
                   {{"template", sw["json_attributes_template"]},
                    {"value_json", json::parse(st->payload)}}}),
      dir);
    ASSERT_TRUE(state);
    EXPECT_EQ((*state)[0], off ? "OFF" : "ON");
    auto attrs = json::parse((*state)[1], nullptr, false);
    if (off)
      EXPECT_EQ(attrs["paused_by"], "paused by Home Assistant (home_assistant)") << (*state)[1];
    else
      EXPECT_TRUE(attrs["paused_by"].is_null()) << (*state)[1];
  }

  // Every entity the examples name (in any value, templates included; not
  // in comments, nor a service such as switch.turn_off) is one discovery
  // creates.
  static const std::regex entity_re(
    R"(\b(sensor|binary_sensor|switch|number|button|select)\.[a-z0-9_]+)");
  for (auto file : {"dashboard.yaml", "automations.yaml"}) {
    auto doc = load_yaml(source_path(std::string("examples/homeassistant/") + file), dir);
    ASSERT_TRUE(doc) << file << " is not YAML";
    int found = 0;
    std::function<void(const json&)> walk = [&](const json& j) {
      if (j.is_object()) {
        for (auto& [key, v] : j.items())
          if (key != "service")
            walk(v);
      } else if (j.is_array()) {
        for (auto& v : j)
          walk(v);
      } else if (j.is_string()) {
        auto text = j.get<std::string>();
        for (std::sregex_iterator it(text.begin(), text.end(), entity_re), end; it != end; ++it) {
          ++found;
          EXPECT_TRUE(entities.count(it->str()))
            << file << " uses " << it->str() << ", which lull's discovery does not create";
        }
      }
    };
    walk(*doc);
    EXPECT_GT(found, 2) << file;
  }

  // Every job the automations submit is one lulld accepts, and every switch
  // they flip is one discovery creates.
  auto automations = load_yaml(source_path("examples/homeassistant/automations.yaml"), dir);
  ASSERT_TRUE(automations && automations->is_array());
  c.subscribe("ha-test/reply");
  int submits = 0, switches = 0;
  for (auto& a : *automations)
    for (auto& action : a["action"]) {
      auto service = action.value("service", "");
      if (service == "switch.turn_off" || service == "switch.turn_on") {
        auto id = action["target"]["entity_id"].get<std::string>();
        EXPECT_TRUE(sched_entities.count(id)) << a["id"] << " flips " << id;
        ++switches;
        continue;
      }
      if (service != "mqtt.publish" || action["data"]["topic"] != "scheduler/job/submit")
        continue;
      auto payload = std::regex_replace(action["data"]["payload"].get<std::string>(),
                                        std::regex(R"(\{\{[^}]*\}\})"), "2026-11-30");
      auto body = json::parse(payload, nullptr, false);
      ASSERT_TRUE(body.is_object()) << a["id"] << ": " << payload;
      body["reply_to"] = "ha-test/reply";
      body["request_id"] = a["id"];
      c.publish("scheduler/job/submit", body.dump());
      auto reply = c.wait_for(
        [&](const mqtt_message& m) {
          return m.topic == "ha-test/reply" && m.payload.find(a["id"].get<std::string>())
                                                 != std::string::npos;
        },
        30s);
      ASSERT_TRUE(reply) << d.log();
      auto r = json::parse(reply->payload);
      EXPECT_EQ(r["ok"], true) << a["id"] << ": " << reply->payload;
      EXPECT_EQ(r["job"]["host_id"], "nuc");
      ++submits;
    }
  EXPECT_EQ(submits, 2);
  EXPECT_EQ(switches, 2);
  // What Home Assistant sent lulld (the switch, the jobs) passes its decoders.
  EXPECT_TRUE(lulld_accepts_what_it_published(
    inputs, d.log(), {"scheduler/job/submit", "scheduler/control/nuc/set"}));
}
