// A worker built against lull::client alone (tests/client_only/worker.cpp)
// gets, heartbeats and releases a lease from a real lulld through a real
// Mosquitto.

#include <gtest/gtest.h>

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "messages/codec.hpp"
#include "messages/quiet.hpp"
#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

TEST(client_only, a_worker_linked_against_the_client_alone_gets_a_lease) {
  broker b;
  lulld d(lulld_args(b.uri(), "chost", {"--roles", "collectors,scheduler"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  // The test decides the host's state (no quiet assessor in this lulld).
  quiet_assessment q;
  q.host_id = "chost";
  q.state = quiet_state::quiet;
  q.quiet_score = 95;
  q.assessed_at = std::time(nullptr);
  c.subscribe("scheduler/status");
  c.publish("stats/host/chost/quiet", to_json(q).dump(), 1, true);
  ASSERT_TRUE(c.wait_for(
    [](const mqtt_message& m) {
      auto j = json::parse(m.payload, nullptr, false);
      return m.topic == "scheduler/status" && j.is_object() && j["hosts"].contains("chost")
             && j["hosts"]["chost"]["state"] == "QUIET";
    },
    30s))
    << d.log();

  std::string out = "/tmp/lull-client-only-" + std::to_string(::getpid());
  spawn_options o;
  o.argv = {binary_path("tests/lull_client_worker"), b.uri(), "embedded-1"};
  o.stdout_path = out;
  auto pid = spawn(o);
  ASSERT_TRUE(pid);
  auto st = wait_for_exit(*pid, 60s);
  ASSERT_TRUE(st);
  std::ifstream in(out);
  std::stringstream ss;
  ss << in.rdbuf();
  ::unlink(out.c_str());
  EXPECT_EQ(exit_code_of(*st), 0) << ss.str() << d.log();
  auto j = json::parse(ss.str(), nullptr, false);
  ASSERT_TRUE(j.is_object()) << ss.str();
  EXPECT_EQ(j["approved"], true);
  EXPECT_EQ(j["lease_id"].get<std::string>().size(), 32u);
  EXPECT_EQ(j["heartbeat"], true);
  EXPECT_EQ(j["released"], true);
}
