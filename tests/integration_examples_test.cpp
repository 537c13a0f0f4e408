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

} // namespace

TEST(homeassistant_example, dashboard_and_automations_use_the_entities_discovery_creates) {
  temp_dir dir("lull-examples-ha");
  broker b;
  lulld d({"--broker", b.uri(), "--host-id", "nuc", "--data-dir", dir, "--interval", "1s"});
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("homeassistant/device/lull_nuc/config");
  auto config = c.wait_for_topic("homeassistant/device/lull_nuc/config", 60s);
  ASSERT_TRUE(config) << d.log();
  auto doc = json::parse(config->payload);

  // The entity ids HA gives discovered entities: <domain>.<device>_<name>.
  std::set<std::string> entities;
  auto device = doc["dev"]["name"].get<std::string>();
  for (auto& [key, cmp] : doc["cmps"].items())
    entities.insert(cmp["p"].get<std::string>() + "."
                    + slugify(cmp["name"].is_null() ? device
                                                    : device + " " + cmp["name"].get<std::string>()));
  ASSERT_TRUE(entities.count("sensor.nuc")) << "the quiet state is the device's main entity";

  static const std::regex entity_re(
    R"(\b(sensor|binary_sensor|switch|number|button|select)\.[a-z0-9_]+)");
  for (auto file : {"dashboard.yaml", "automations.yaml"}) {
    auto path = source_path(std::string("examples/homeassistant/") + file);
    auto text = slurp(path);
    int found = 0;
    for (std::sregex_iterator it(text.begin(), text.end(), entity_re), end; it != end; ++it) {
      ++found;
      EXPECT_TRUE(entities.count(it->str())) << file << " uses " << it->str()
                                             << ", which lull's discovery does not create";
    }
    EXPECT_GT(found, 2) << file;
    EXPECT_TRUE(load_yaml(path, dir)) << file << " is not YAML";
  }

  // Every job the automations submit is one lulld accepts.
  auto automations = load_yaml(source_path("examples/homeassistant/automations.yaml"), dir);
  ASSERT_TRUE(automations && automations->is_array());
  c.subscribe("ha-test/reply");
  int submits = 0;
  for (auto& a : *automations)
    for (auto& action : a["action"]) {
      if (action.value("service", "") != "mqtt.publish"
          || action["data"]["topic"] != "scheduler/job/submit")
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
}
