// Leases end to end: lulld's lease manager against a real Mosquitto on a
// free loopback port, driven by mosquitto_rr and test clients.

#include <gtest/gtest.h>

#include <signal.h>

#include <fstream>
#include <sstream>

#include "messages/codec.hpp"
#include "messages/quiet.hpp"
#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

/// lulld runs without its quiet assessor here (--roles collectors,scheduler),
/// so the test decides the host's state.
/// Publishes a retained QUIET assessment for `host` (the quiet assessor's job
/// in a full lulld) and waits until lulld's status shows it.
void make_quiet(client& c, const std::string& host, lulld& d) {
  quiet_assessment q;
  q.host_id = host;
  q.state = quiet_state::quiet;
  q.quiet_score = 95;
  q.assessed_at = std::time(nullptr);
  c.publish("stats/host/" + host + "/quiet", to_json(q).dump(), 1, true);
  c.subscribe("scheduler/status");
  auto st = c.wait_for(
    [&](const mqtt_message& m) {
      if (m.topic != "scheduler/status")
        return false;
      auto j = json::parse(m.payload, nullptr, false);
      return j.is_object() && j["hosts"].contains(host) && j["hosts"][host]["state"] == "QUIET";
    },
    10s);
  ASSERT_TRUE(st) << d.log();
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

} // namespace

TEST(lease_integration, mosquitto_rr_obtains_a_lease) {
  broker b;
  lulld d(lulld_args(b.uri(), "ihost", {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  make_quiet(c, "ihost", d);

  auto rr = find_executable("mosquitto_rr");
  ASSERT_TRUE(rr);
  std::string out_path = "/tmp/lull-rr-" + std::to_string(::getpid());
  spawn_options o;
  o.argv = {*rr, "-p", std::to_string(b.port()), "-V", "5", "-t", "scheduler/lease/request",
            "-e", "workers/rr/reply", "-W", "10", "-m",
            R"({"v":1,"worker_id":"rr","job_type":"thumbnails","cost_class":"LOW"})"};
  o.stdout_path = out_path;
  auto pid = spawn(o);
  ASSERT_TRUE(pid);
  auto st = wait_for_exit(*pid, 15s);
  ASSERT_TRUE(st);
  EXPECT_EQ(exit_code_of(*st), 0);
  auto reply = json::parse(read_file(out_path), nullptr, false);
  ::unlink(out_path.c_str());
  ASSERT_TRUE(reply.is_object()) << d.log();
  EXPECT_EQ(reply["approved"], true) << reply.dump();
  EXPECT_EQ(reply["host_id"], "ihost");
  EXPECT_EQ(reply["lease_id"].get<std::string>().size(), 32u);
  EXPECT_EQ(reply["fencing_token"], 1);
  EXPECT_EQ(reply["limits"]["heartbeat_ttl_sec"], 30.0);
}

TEST(lease_integration, v311_request_with_reply_to_and_msgpack) {
  broker b;
  lulld d(lulld_args(b.uri(), "ihost", {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  make_quiet(c, "ihost", d);
  client_options o;
  o.mqtt_version = 4;
  client w(b.uri(), o);
  ASSERT_TRUE(w.connected()) << w.error();
  w.subscribe("workers/w3/#");
  json req = {{"v", 1},          {"addon_id", "w3"},          {"cost_units", 10},
              {"priority", "high"}, {"request_id", "r-1"}, {"reply_to", "workers/w3/inbox"}};
  w.publish("scheduler/lease/request", encode(req, wire_format::msgpack));
  auto r = w.wait_for_topic("workers/w3/inbox", 10s);
  ASSERT_TRUE(r) << d.log();
  auto j = decode(r->payload, wire_format::msgpack);
  ASSERT_TRUE(j) << "the reply to a msgpack request is msgpack";
  EXPECT_EQ((*j)["request_id"], "r-1");
  EXPECT_EQ((*j)["approved"], true);

  // A malformed request gets a precise error reply.
  w.publish("scheduler/lease/request",
            R"({"worker_id":"w3","cost_units":"lots","request_id":"r-2","reply_to":"workers/w3/inbox"})");
  auto e = w.wait_for(
    [](auto& m) { return m.payload.find("r-2") != std::string::npos; }, 10s);
  ASSERT_TRUE(e);
  auto ej = json::parse(e->payload);
  EXPECT_EQ(ej["ok"], false);
  EXPECT_EQ(ej["error"]["code"], "InvalidRequest");
  EXPECT_EQ(ej["error"]["message"],
            "field 'cost_units': expected an integer from 1 to 100, got string");
}

TEST(lease_integration, a_workers_will_expires_its_lease) {
  broker b;
  lulld d(lulld_args(b.uri(), "ihost", {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  make_quiet(c, "ihost", d);
  c.subscribe("scheduler/lease/+/state");

  client_options o;
  o.will = {"stats/worker/w9", R"({"v":1,"worker_id":"w9","status":"offline"})", 1, true, {}, {},
            {}};
  client w(b.uri(), o);
  ASSERT_TRUE(w.connected());
  w.publish("stats/worker/w9", R"({"v":1,"worker_id":"w9","status":"online"})", 1, true);
  w.subscribe("workers/w9/#");
  mqtt_message req{"scheduler/lease/request", R"({"worker_id":"w9","cost_units":5})", 1, false,
                   json_content_type, "workers/w9/reply", "corr-1"};
  w.publish(req);
  auto r = w.wait_for_topic("workers/w9/reply", 10s);
  ASSERT_TRUE(r) << d.log();
  EXPECT_EQ(r->correlation_data, "corr-1");
  auto lease_id = json::parse(r->payload)["lease_id"].get<std::string>();

  w.abort_connection(); // the broker fires the will
  auto st = c.wait_for(
    [&](const mqtt_message& m) {
      return m.topic == "scheduler/lease/" + lease_id + "/state"
             && m.payload.find("EXPIRED") != std::string::npos;
    },
    10s);
  ASSERT_TRUE(st) << d.log();
  EXPECT_EQ(json::parse(st->payload)["reason"], "worker went offline (last will)");
}

namespace {

std::optional<pid_t> start_lull(const std::vector<std::string>& args) {
  spawn_options o;
  o.argv = {binary_path("src/lull")};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  return spawn(o);
}

bool status_shows(client& c, const std::function<bool(const json&)>& pred) {
  return c
    .wait_for(
      [&](const mqtt_message& m) {
        if (m.topic != "scheduler/status")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        return j.is_object() && pred(j);
      },
      10s)
    .has_value();
}

} // namespace

TEST(lease_integration, lull_run_exits_with_the_commands_status_and_releases) {
  broker b;
  lulld d(lulld_args(b.uri(), "ihost", {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  make_quiet(c, "ihost", d);
  auto pid = start_lull({"--broker", b.uri(), "--worker", "runner", "run", "--", "sh", "-c",
                         "exit 3"});
  ASSERT_TRUE(pid);
  auto st = wait_for_exit(*pid, 20s);
  ASSERT_TRUE(st) << d.log();
  EXPECT_EQ(exit_code_of(*st), 3);
  // lulld granted it once and nothing is left active.
  EXPECT_TRUE(status_shows(c, [](const json& j) {
    return j["workers"].contains("runner") && j["workers"]["runner"]["grants"] == 1
           && j["active"].empty() && !j["recent"].empty()
           && j["recent"][0]["state"] == "RELEASED";
  })) << d.log();
}

TEST(lease_integration, a_revoked_lull_run_stops_its_command) {
  broker b;
  lulld d(lulld_args(b.uri(), "ihost", {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  make_quiet(c, "ihost", d);
  c.subscribe("scheduler/lease/+/state");
  std::string pidfile = "/tmp/lull-run-child-" + std::to_string(::getpid());
  auto pid = start_lull({"--broker", b.uri(), "--worker", "victim", "run", "--grace", "2s", "--",
                         "sh", "-c", "echo $$ > " + pidfile + "; exec sleep 60"});
  ASSERT_TRUE(pid);
  auto granted = c.wait_for(
    [](auto& m) { return m.payload.find("\"ACTIVE\"") != std::string::npos; }, 10s);
  ASSERT_TRUE(granted) << d.log();
  auto lease_id = json::parse(granted->payload)["lease_id"].get<std::string>();
  ASSERT_TRUE(wait_until([&] { return !read_file(pidfile).empty(); }, 5s));
  pid_t child = std::stoi(read_file(pidfile));
  ::unlink(pidfile.c_str());

  c.publish("scheduler/lease/" + lease_id + "/revoke", R"({"reason":"maintenance"})");
  auto st = wait_for_exit(*pid, 10s);
  ASSERT_TRUE(st) << "lull run kept running after the revoke\n" << d.log();
  EXPECT_EQ(exit_code_of(*st), 128 + SIGTERM); // the command's own status
  EXPECT_TRUE(wait_until([&] { return ::kill(child, 0) != 0; }, 2s)) << "the command survived";
}

TEST(lease_integration, a_command_ignoring_sigterm_is_killed_after_the_grace) {
  broker b;
  lulld d(lulld_args(b.uri(), "ihost", {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  make_quiet(c, "ihost", d);
  c.subscribe("scheduler/lease/+/state");
  std::string pidfile = "/tmp/lull-stubborn-" + std::to_string(::getpid());
  auto pid = start_lull({"--broker", b.uri(), "--worker", "stubborn", "run", "--grace", "1s",
                         "--", "sh", "-c",
                         "trap '' TERM; echo $$ > " + pidfile + "; while :; do sleep 0.1; done"});
  ASSERT_TRUE(pid);
  auto granted = c.wait_for(
    [](auto& m) { return m.payload.find("\"ACTIVE\"") != std::string::npos; }, 10s);
  ASSERT_TRUE(granted) << d.log();
  auto lease_id = json::parse(granted->payload)["lease_id"].get<std::string>();
  ASSERT_TRUE(wait_until([&] { return !read_file(pidfile).empty(); }, 5s)); // CMD is running
  ::unlink(pidfile.c_str());
  c.publish("scheduler/lease/" + lease_id + "/revoke", "");
  auto st = wait_for_exit(*pid, 10s);
  ASSERT_TRUE(st) << "lull run kept running after the revoke";
  EXPECT_EQ(exit_code_of(*st), 128 + SIGKILL);
}

TEST(lease_integration, ctrl_c_stops_the_command_and_releases) {
  broker b;
  lulld d(lulld_args(b.uri(), "ihost", {"--roles", "collectors,scheduler", "--quiet-stale-after", "1h"}));
  client c(b.uri());
  make_quiet(c, "ihost", d);
  c.subscribe("scheduler/lease/+/state");
  auto pid = start_lull({"--broker", b.uri(), "--worker", "impatient", "run", "--", "sleep",
                         "60"});
  ASSERT_TRUE(pid);
  auto granted = c.wait_for(
    [](auto& m) { return m.payload.find("\"ACTIVE\"") != std::string::npos; }, 10s);
  ASSERT_TRUE(granted) << d.log();
  auto lease_id = json::parse(granted->payload)["lease_id"].get<std::string>();
  ::kill(*pid, SIGINT);
  auto st = wait_for_exit(*pid, 10s);
  ASSERT_TRUE(st);
  EXPECT_EQ(exit_code_of(*st), 128 + SIGTERM); // sleep's status after lull's SIGTERM
  auto released = c.wait_for(
    [&](auto& m) {
      return m.topic == "scheduler/lease/" + lease_id + "/state"
             && m.payload.find("\"RELEASED\"") != std::string::npos;
    },
    5s);
  ASSERT_TRUE(released) << d.log();
  EXPECT_EQ(json::parse(released->payload)["reason"], "interrupted");
}
