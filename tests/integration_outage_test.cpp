// Broker outages: a Mosquitto restart must not cost a leased job anything.
// lulld pauses expiry while it is cut off and renews every lease for a full
// TTL when it is back; lull run keeps its child while it cannot know the
// lease's fate (TTL + lock_delay) and heartbeats as soon as it reconnects.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include "messages/quiet.hpp"
#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

void publish_quiet(client& c, const std::string& host) {
  quiet_assessment q;
  q.host_id = host;
  q.state = quiet_state::quiet;
  q.quiet_score = 95;
  q.assessed_at = std::time(nullptr);
  c.publish("stats/host/" + host + "/quiet", to_json(q).dump(), 1, true);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool alive(pid_t pid) { return ::kill(pid, 0) == 0; }

} // namespace

TEST(outage_integration, a_10s_broker_outage_under_a_12s_lease_changes_nothing) {
  broker b;
  lulld d(lulld_args(b.uri(), "ohost", {"--roles", "collectors,scheduler"}));
  std::string child_file = "/tmp/lull-outage-child-" + std::to_string(::getpid());
  std::optional<pid_t> run;
  {
    client c(b.uri());
    ASSERT_TRUE(c.connected()) << c.error();
    c.subscribe("scheduler/lease/+/state");
    c.subscribe("scheduler/status");
    publish_quiet(c, "ohost");
    // lulld is subscribed once its status shows the host QUIET.
    ASSERT_TRUE(c.wait_for(
      [](const mqtt_message& m) {
        if (m.topic != "scheduler/status")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        return j.is_object() && j["hosts"].contains("ohost")
               && j["hosts"]["ohost"]["state"] == "QUIET";
      },
      20s))
      << d.log();
    spawn_options o;
    o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "steady", "run",
              "--ttl", "12s", "--grace", "2s", "--", "sh", "-c",
              "echo $$ > " + child_file + "; exec sleep 300"};
    run = spawn(o);
    ASSERT_TRUE(run);
  }
  // The grant may come before the test client's subscription: read it from
  // the retained status instead.
  std::string lease_id;
  std::uint64_t token = 0;
  {
    client c(b.uri());
    c.subscribe("scheduler/status");
    auto granted = c.wait_for(
      [&](const mqtt_message& m) {
        if (m.topic != "scheduler/status")
          return false;
        auto j = json::parse(m.payload, nullptr, false);
        if (!j.is_object() || !j["active"].is_array() || j["active"].empty())
          return false;
        lease_id = j["active"][0].value("lease_id", std::string());
        token = j["active"][0].value("fencing_token", std::uint64_t{0});
        return !lease_id.empty();
      },
      20s);
    ASSERT_TRUE(granted) << d.log();
  }
  ASSERT_TRUE(wait_until([&] { return !slurp(child_file).empty(); }, 10s));
  pid_t child = std::stoi(slurp(child_file));
  ::unlink(child_file.c_str());

  // The fault: the broker is away for 10 s (the fault's length, not a wait
  // for a condition), then back on the same port.
  b.process().stop();
  auto stopped_at = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(10s);
  std::string err;
  ASSERT_TRUE(b.process().restart(&err)) << err;
  auto back_at = std::chrono::steady_clock::now();

  // lulld is back (its retained availability) and says so about the leases.
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("lull/+/availability");
  ASSERT_TRUE(c.wait_for([](auto& m) { return m.payload == "online"; }, 30s)) << d.log();
  auto online_at = std::chrono::steady_clock::now();
  std::cout << "broker away " << std::chrono::duration<double>(back_at - stopped_at).count()
            << " s; lulld back online "
            << std::chrono::duration<double>(online_at - back_at).count()
            << " s after the broker (an upper bound: includes this client's connect)\n";
  ASSERT_TRUE(d.wait_log("renewed for a full TTL", 10s)) << d.log();

  // More than a whole TTL after the broker came back, the lease is still
  // the same active lease: a heartbeat in the holder's name (open mode takes
  // the payload's worker_id) is answered ACTIVE with the same fencing token.
  c.subscribe("scheduler/events");
  c.subscribe("test/probe");
  ASSERT_TRUE(wait_until(
    [&] { return std::chrono::steady_clock::now() - back_at > 14s; }, 30s));
  c.publish("scheduler/lease/" + lease_id + "/heartbeat",
            R"({"v":1,"worker_id":"steady","request_id":"probe-1","reply_to":"test/probe"})");
  auto probe = c.wait_for_topic("test/probe", 20s);
  ASSERT_TRUE(probe) << d.log();
  auto pj = json::parse(probe->payload);
  EXPECT_EQ(pj["ok"], true) << pj.dump() << "\n" << d.log();
  EXPECT_EQ(pj["state"], "ACTIVE") << pj.dump();
  EXPECT_EQ(pj["fencing_token"], token);
  EXPECT_TRUE(alive(*run)) << "lull run stopped";
  EXPECT_TRUE(alive(child)) << "the leased command was stopped";
  EXPECT_EQ(d.log().find("missed heartbeats"), std::string::npos) << d.log();

  // Ctrl-C ends it as usual: the lease is released, not expired.
  ::kill(*run, SIGINT);
  auto st = wait_for_exit(*run, 15s);
  ASSERT_TRUE(st);
  EXPECT_TRUE(wait_until([&] { return !alive(child); }, 5s));
  auto released = c.wait_for(
    [&](auto& m) {
      return m.topic == "scheduler/events" && m.payload.find(lease_id) != std::string::npos
             && m.payload.find("\"released\"") != std::string::npos;
    },
    10s);
  EXPECT_TRUE(released) << d.log();
}
