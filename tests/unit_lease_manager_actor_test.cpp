// The lease_manager actor under CAF's test_coordinator: it subscribes
// through the bridge, answers through the bridge, and expires leases on its
// tick as the test advances time. A recording actor stands in for the bridge.

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/lease_manager.hpp"
#include "tests/lease_test_env.hpp"

using namespace lull;
using json = nlohmann::json;

namespace {

struct recorded {
  std::vector<std::string> filters;
  std::vector<mqtt_message> published;
  int online_watchers = 0;
  int offline_watchers = 0;
};

caf::behavior fake_bridge(caf::event_based_actor*, std::shared_ptr<recorded> rec) {
  return {
    [=](subscribe_atom, const std::string& f, caf::actor) { rec->filters.push_back(f); },
    [=](online_atom, caf::actor) { ++rec->online_watchers; },
    [=](offline_atom, caf::actor) { ++rec->offline_watchers; },
    [=](publish_atom, const mqtt_message& m) { rec->published.push_back(m); },
  };
}

struct actor_fixture : ::testing::Test {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<recorded> rec = std::make_shared<recorded>();
  caf::actor lm;

  void SetUp() override {
    add_lull_types(cfg);
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    auto bridge = sys->spawn(fake_bridge, rec);
    lease_manager_options o;
    o.service.policy.capacity_units = 60;
    lm = spawn_lease_manager(*sys, bridge, o);
    sched->run();
  }
  void TearDown() override {
    caf::anon_send_exit(lm, caf::exit_reason::user_shutdown);
    sched->run();
  }
  void inbound(mqtt_message m) {
    caf::anon_send(lm, inbound_atom::value, std::move(m));
    sched->run();
  }
  const mqtt_message* last_on(const std::string& topic) {
    for (auto it = rec->published.rbegin(); it != rec->published.rend(); ++it)
      if (it->topic == topic)
        return &*it;
    return nullptr;
  }
};

} // namespace

TEST_F(actor_fixture, subscribes_answers_and_expires_on_its_tick) {
  EXPECT_EQ(rec->online_watchers, 1);
  for (auto* f : {"scheduler/lease/request", "scheduler/lease/+/heartbeat",
                  "scheduler/lease/+/release", "scheduler/lease/+/report",
                  "scheduler/lease/+/revoke", "stats/host/+/quiet", "stats/host/+",
                  "stats/worker/+"})
    EXPECT_NE(std::find(rec->filters.begin(), rec->filters.end(), f), rec->filters.end()) << f;

  inbound({"stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})", 0, false, {}, {}, {}});
  inbound({"stats/host/pi/quiet", to_json(test::quiet_of("pi", quiet_state::quiet)).dump(), 1,
           true, {}, {}, {}});
  inbound({"scheduler/lease/request", R"({"worker_id":"w1","cost_units":10})", 1, false,
           json_content_type, "workers/w1/reply", "c-1"});
  auto* reply = last_on("workers/w1/reply");
  ASSERT_NE(reply, nullptr);
  EXPECT_EQ(reply->qos, 1);
  EXPECT_EQ(reply->correlation_data, "c-1");
  auto g = json::parse(reply->payload);
  ASSERT_EQ(g["approved"], true) << g.dump();
  auto id = g["lease_id"].get<std::string>();

  // Time passes on the test clock: the tick expires the lease after 30 s.
  sched->advance_time(std::chrono::seconds(29));
  sched->run();
  auto* st = last_on("scheduler/lease/" + id + "/state");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(json::parse(st->payload)["state"], "ACTIVE");
  for (int i = 0; i < 8; ++i) {
    sched->advance_time(std::chrono::milliseconds(250));
    sched->run();
  }
  st = last_on("scheduler/lease/" + id + "/state");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(json::parse(st->payload)["state"], "EXPIRED");
  EXPECT_EQ(st->qos, 1);

  // The retained status follows (at most once a second).
  for (int i = 0; i < 8; ++i) {
    sched->advance_time(std::chrono::milliseconds(250));
    sched->run();
  }
  auto* status = last_on("scheduler/status");
  ASSERT_NE(status, nullptr);
  EXPECT_TRUE(status->retain);
  auto s = json::parse(status->payload);
  EXPECT_TRUE(s["active"].empty());
  EXPECT_EQ(s["recent"][0]["state"], "EXPIRED");
}

// lulld's own broker outage: no lease expires while lulld cannot hear its
// heartbeats, and on reconnect every lease has a full TTL again.
TEST_F(actor_fixture, a_broker_outage_of_lulld_costs_no_lease) {
  EXPECT_EQ(rec->offline_watchers, 1);
  inbound({"stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})", 0, false, {}, {}, {}});
  inbound({"stats/host/pi/quiet", to_json(test::quiet_of("pi", quiet_state::quiet)).dump(), 1,
           true, {}, {}, {}});
  inbound({"scheduler/lease/request", R"({"worker_id":"w1","cost_units":10})", 1, false,
           json_content_type, "workers/w1/reply", "c-1"});
  auto g = json::parse(last_on("workers/w1/reply")->payload);
  ASSERT_EQ(g["approved"], true) << g.dump();
  auto id = g["lease_id"].get<std::string>();
  auto state_topic = "scheduler/lease/" + id + "/state";

  sched->advance_time(std::chrono::seconds(20));
  sched->run();
  caf::anon_send(lm, offline_atom::value);
  sched->run();
  // 40 s without a heartbeat, well past the 30 s TTL, while lulld is cut off.
  for (int i = 0; i < 160; ++i) {
    sched->advance_time(std::chrono::milliseconds(250));
    sched->run();
  }
  EXPECT_EQ(json::parse(last_on(state_topic)->payload)["state"], "ACTIVE");

  caf::anon_send(lm, online_atom::value);
  sched->run();
  // A full TTL from the reconnect: still active 29 s later, expired after 30.
  sched->advance_time(std::chrono::seconds(29));
  sched->run();
  EXPECT_EQ(json::parse(last_on(state_topic)->payload)["state"], "ACTIVE");
  inbound({"scheduler/lease/" + id + "/heartbeat", R"({"worker_id":"w1"})", 1, false,
           json_content_type, "workers/w1/reply", "c-2"});
  auto hb = json::parse(last_on("workers/w1/reply")->payload);
  EXPECT_EQ(hb["ok"], true) << hb.dump();
  for (int i = 0; i < 128; ++i) {
    sched->advance_time(std::chrono::milliseconds(250));
    sched->run();
  }
  EXPECT_EQ(json::parse(last_on(state_topic)->payload)["state"], "EXPIRED");
}
