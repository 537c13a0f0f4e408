// The examples that need npm packages, against a real lulld and Mosquitto:
// the Node.js worker (MQTT.js) and the Node-RED flow run headless in a real
// Node-RED 4. Each installs its packages into its own example folder with
// npm on first use (node_modules/ is ignored by git and kept as a cache).
// lull itself never needs npm: these run in their own CI lane
// (scripts/test-examples-npm), not in scripts/test.

#include <algorithm>
#include <regex>

#include "tests/examples_support.hpp"

using namespace lull;
using namespace lull::test;
using namespace std::chrono_literals;

namespace {

/// `npm install` in examples/<example> unless `module` is there already.
::testing::AssertionResult npm_install(const std::string& example, const std::string& module) {
  auto folder = source_path("examples/" + example);
  if (std::filesystem::exists(folder + "/node_modules/" + module + "/package.json"))
    return ::testing::AssertionSuccess();
  auto npm = find_executable("npm");
  if (!npm)
    return ::testing::AssertionFailure() << "npm is not installed (Debian: nodejs npm)";
  temp_dir logs("lull-npm");
  example_process p({*npm, "install", "--prefix", folder, "--no-audit", "--no-fund",
                     "--no-package-lock", "--omit=dev"},
                    logs);
  auto code = p.wait(900s);
  if (!code || *code != 0)
    return ::testing::AssertionFailure() << "npm install in " << folder << ": " << p.output();
  return ::testing::AssertionSuccess();
}

std::string node() { return find_executable("node").value_or("node"); }

std::vector<std::string> node_worker(example_env& env, const std::string& worker, int mqtt,
                                     std::vector<std::string> cmd) {
  std::vector<std::string> argv = {node(),       source_path("examples/node/lull-worker.js"),
                                   "--broker",   "mqtt://" + env.host_port(),
                                   "--worker",   worker,
                                   "--mqtt",     std::to_string(mqtt),
                                   "--grace",    "2",
                                   "--"};
  argv.insert(argv.end(), cmd.begin(), cmd.end());
  return argv;
}

} // namespace

class node_example : public ::testing::TestWithParam<int> {
protected:
  void SetUp() override { ASSERT_TRUE(npm_install("node", "mqtt")); }
};

TEST_P(node_example, holds_a_lease_through_heartbeats_and_releases_with_the_outcome) {
  example_env env;
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto file = env.dir() + "/lease-id";
  auto worker = "node" + std::to_string(GetParam());
  example_process p(node_worker(env, worker, GetParam(),
                                {"sh", "-c",
                                 "sleep 8; echo \"$LULL_LEASE_ID\" > " + file + "; exit 3"}),
                    env.dir());
  auto code = p.wait(90s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 3) << p.output();
  auto lease_id = slurp(file);
  ASSERT_FALSE(lease_id.empty()) << p.output();
  lease_id.pop_back();
  EXPECT_NE(p.err().find(GetParam() == 5 ? "MQTT v5" : "MQTT v3.1.1"), std::string::npos)
    << p.output();
  // Released, not expired: 8 s under a 6 s TTL needs the heartbeats.
  auto ended = env.ended_lease(lease_id);
  EXPECT_EQ(ended["state"], "RELEASED") << ended.dump() << "\n" << p.output();
  // Its last status on the way out tells lulld it left.
  EXPECT_TRUE(env.daemon().wait_log("worker registry: " + worker + " is offline", 30s))
    << env.daemon().log();
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(),
    {"stats/worker/" + worker, "scheduler/lease/request", "scheduler/lease/+/heartbeat",
     "scheduler/lease/+/release"}));
}

INSTANTIATE_TEST_SUITE_P(mqtt_versions, node_example, ::testing::Values(5, 3));

// A burst, as every fleet restart makes one: 50 MQTT.js workers cycling
// grant+release on 5 connections through a broker with Mosquitto's default
// in-flight window (20, broker-config/local.conf). A reply past the window
// used to wait in Paho's queue until its sender looked again, a second
// later (p99 1.04 s, 141 cycles/s); lulld now hands the next reply over on
// each acknowledgement. The generator is bench/mqttjs/lull-load.js, on the
// MQTT.js package the Node.js example installs.
TEST_F(node_example, fifty_workers_cycling_on_five_connections_mostly_wait_under_200_ms) {
  // Limits out of the way (as bench/bench_lease.cpp sets them): what is
  // timed is the reply path, and every request is granted.
  example_env env({"--lease-grant-rate", "1e9", "--lease-grant-burst", "1e9",
                   "--lease-max-global", "100000", "--lease-max-per-worker", "100000",
                   "--lease-worker-rate", "1e9", "--lease-worker-burst", "1e9",
                   "--lease-capacity-units", "1000000", "--log-level", "warn"});
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  example_process p({node(), source_path("bench/mqttjs/lull-load.js"), "cycles", "--broker",
                     "mqtt://" + env.host_port(), "--seconds", "4", "--workers", "50",
                     "--conns", "5", "--warmup", "1"},
                    env.dir(), {"NODE_PATH=" + source_path("examples/node/node_modules")});
  auto code = p.wait(120s);
  ASSERT_TRUE(code) << p.output();
  ASSERT_EQ(*code, 0) << p.output();
  auto out = nlohmann::json::parse(p.out(), nullptr, false);
  ASSERT_TRUE(out.is_object()) << p.output();
  std::printf("50 workers on 5 connections: %s\n", out.dump().c_str());
  EXPECT_EQ(out["failed"], 0) << out.dump();
  EXPECT_GT(out["cycles"].get<double>(), 100) << out.dump();
  // Nearly every reply within 200 ms. One wait of about a second still
  // happens in about half the runs on a 2-core machine (1.01-1.11 s, the
  // grants and releases in flight then alike, with lulld from before and
  // after the transport changes): replies held somewhere until a one-second
  // timer looks again. Until it is found, one such round is allowed: over
  // 200 ms at most 1 % of the replies or one per worker, whichever is more
  // (on a slow run 50 late releases are 1 % of them, a p99 of a second),
  // and none slower than that wait.
  for (auto* kind : {"grant", "release"}) {
    auto n = out[kind]["n"].get<double>();
    EXPECT_LE(out[kind]["over_200_ms"].get<double>(), std::max(50.0, n / 100)) << out.dump();
  }
  EXPECT_LE(out["grant"]["max_ms"].get<double>(), 1500) << out.dump();
  EXPECT_LE(out["release"]["max_ms"].get<double>(), 1500) << out.dump();
}

TEST_F(node_example, a_revoke_stops_the_command) {
  example_env env;
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto pidfile = env.dir() + "/child.pid";
  example_process p(node_worker(env, "noderev", 5,
                                {"sh", "-c", "echo $$ > " + pidfile + "; exec sleep 300"}),
                    env.dir());
  auto lease_id = env.active_lease_of("noderev");
  ASSERT_FALSE(lease_id.empty()) << p.output();
  env.revoke(lease_id);
  auto code = p.wait(60s);
  ASSERT_TRUE(code) << p.output();
  EXPECT_EQ(*code, 128 + SIGTERM) << p.output();
  pid_t child = std::stoi(slurp(pidfile));
  EXPECT_TRUE(wait_until([&] { return ::kill(child, 0) != 0; }, 30s));
  EXPECT_NE(p.err().find("lease revoked: test revoke"), std::string::npos) << p.output();
  EXPECT_EQ(env.ended_lease(lease_id)["state"], "REVOKED");
  EXPECT_TRUE(env.daemon().wait_log("worker registry: noderev is offline", 30s))
    << env.daemon().log();
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(),
    {"stats/worker/noderev", "scheduler/lease/request", "scheduler/lease/+/heartbeat",
     "scheduler/lease/+/release"}));
}

// -- Node-RED -------------------------------------------------------------------

TEST(nodered_example, the_flow_leases_when_quiet_releases_and_queues_a_job) {
  ASSERT_TRUE(npm_install("nodered", "node-red"));
  example_env env;
  auto& obs = env.observer();
  obs.subscribe("scheduler/lease/request");
  obs.subscribe("scheduler/job/submit");
  obs.subscribe("workers/nodered/#");

  // The flow as a user imports it, pointed at the test's broker.
  auto flow = slurp(source_path("examples/nodered/lull-flow.json"));
  flow = std::regex_replace(flow, std::regex(R"("broker": "localhost")"),
                            R"("broker": "127.0.0.1")");
  flow = std::regex_replace(flow, std::regex(R"("port": "1883")"),
                            "\"port\": \"" + std::to_string(env.mqtt_broker().port()) + "\"");
  auto flow_path = env.dir() + "/lull-flow.json";
  std::ofstream(flow_path) << flow;
  auto user_dir = env.dir() + "/node-red";
  std::filesystem::create_directory(user_dir);
  example_process nr({node(), source_path("examples/nodered/node_modules/node-red/red.js"),
                      "--settings", source_path("examples/nodered/settings.js"), "--userDir",
                      user_dir, "--port", std::to_string(free_loopback_port()), flow_path},
                     env.dir());

  // It queues its daily job at once (whatever the hosts' state) ...
  auto submitted = obs.wait_for(
    [](const mqtt_message& m) {
      return m.topic == "workers/nodered/inbox" && m.payload.find("\"job_id\"") != std::string::npos;
    },
    120s);
  ASSERT_TRUE(submitted) << nr.output();
  auto job = json::parse(submitted->payload);
  EXPECT_EQ(job["ok"], true) << submitted->payload;
  EXPECT_EQ(job["job"]["producer"], "nodered");
  EXPECT_EQ(job["job"]["job_type"], "nodered-report");

  // ... asks for no lease while no host is QUIET ...
  EXPECT_FALSE(obs.wait_for([](const mqtt_message& m) {
    return m.topic == "scheduler/lease/request";
  }, 3s)) << "asked while no host was QUIET";

  // ... and once one is, takes a lease, works, and releases it with an outcome.
  ASSERT_TRUE(env.make_quiet()) << env.daemon().log();
  auto request = obs.wait_for_topic("scheduler/lease/request", 60s);
  ASSERT_TRUE(request) << nr.output();
  auto req = json::parse(request->payload);
  EXPECT_EQ(req["host_id"], "exhost");
  EXPECT_EQ(req["reply_to"], "workers/nodered/inbox");
  auto lease_id = env.active_lease_of("nodered");
  ASSERT_FALSE(lease_id.empty()) << nr.output();
  auto ended = env.ended_lease(lease_id);
  EXPECT_EQ(ended["state"], "RELEASED") << ended.dump() << "\n" << nr.output();
  auto released = obs.wait_for(
    [&](const mqtt_message& m) {
      return m.topic == "workers/nodered/inbox"
             && m.payload.find("\"rel-" + lease_id + "\"") != std::string::npos;
    },
    30s);
  ASSERT_TRUE(released) << nr.output();
  EXPECT_EQ(json::parse(released->payload)["ok"], true) << released->payload;

  // Stopped as a user stops it, it says goodbye on its status topic (the
  // broker node's close message) and lulld takes the worker as gone.
  nr.signal(SIGINT);
  EXPECT_TRUE(nr.wait(60s)) << nr.output();
  EXPECT_TRUE(env.daemon().wait_log("worker registry: nodered is offline", 30s))
    << env.daemon().log();
  EXPECT_TRUE(lulld_accepts_what_it_published(
    env.inputs(), env.daemon().log(),
    {"stats/worker/nodered", "scheduler/job/submit", "scheduler/lease/request",
     "scheduler/lease/+/heartbeat", "scheduler/lease/+/release"}));
}
