// What lulld tells systemd: the Status: line (src/service/status.hpp), and
// the service notifier actor under CAF's test_coordinator: READY=1 after the
// first round trip through the bridge and the lease manager, WATCHDOG=1
// after each later one, and none while an actor does not answer.

#include <gtest/gtest.h>

#include <caf/all.hpp>

#include "actors/atoms.hpp"
#include "actors/service_notifier.hpp"
#include "src/service/status.hpp"

using namespace lull;
using namespace std::chrono_literals;

namespace {

// 2025-03-01 10:04:05 UTC
constexpr std::int64_t t0 = 1740823445;

} // namespace

TEST(service_status, says_where_the_broker_stands_and_what_the_scheduler_holds) {
  service_status s("tcp://nuc:1883", true, t0);
  EXPECT_EQ(s.line(t0), "connecting to tcp://nuc:1883");
  s.counts(3, 2, 5);
  EXPECT_EQ(s.line(t0), "connecting to tcp://nuc:1883; 3 hosts, 2 active leases, 5 jobs queued");
  s.connection(true, t0 + 1);
  s.counts(1, 1, 1);
  EXPECT_EQ(s.line(t0 + 1), "connected to tcp://nuc:1883; 1 host, 1 active lease, 1 job queued");
  s.connection(false, t0 + 60);
  s.connection(false, t0 + 61); // a retry that failed again: still down since the first
  EXPECT_EQ(s.line(t0 + 90), "broker tcp://nuc:1883 unreachable since 2025-03-01 10:05:05 UTC; "
                             "1 host, 1 active lease, 1 job queued");
  s.connection(true, t0 + 120);
  EXPECT_EQ(s.line(t0 + 120).rfind("connected to tcp://nuc:1883; ", 0), 0u);
}

TEST(service_status, a_broker_never_reached_is_unreachable_since_the_start_after_the_grace) {
  service_status s("tcp://nuc:1883", false, t0);
  s.connection(false, t0); // the bridge's answer to a watcher before its first connect
  EXPECT_EQ(s.line(t0 + service_status::connect_grace_sec - 1), "connecting to tcp://nuc:1883");
  EXPECT_EQ(s.line(t0 + service_status::connect_grace_sec),
            "broker tcp://nuc:1883 unreachable since 2025-03-01 10:04:05 UTC");
  // Without the scheduler role there are no counts to show.
  s.counts(3, 2, 5);
  s.connection(true, t0 + 30);
  EXPECT_EQ(s.line(t0 + 30), "connected to tcp://nuc:1883");
}

TEST(service_status, keeps_to_one_line) {
  service_status s("tcp://a\nb:1883", false, t0);
  EXPECT_EQ(s.line(t0).find('\n'), std::string::npos);
}

namespace {

struct world {
  bool connected = true;
  bool leases_stuck = false; ///< the lease manager takes the request and never answers
  std::vector<caf::response_promise> held;
  std::vector<std::string> told;
  int watchdogs() const {
    int n = 0;
    for (auto& t : told)
      n += t.rfind("WATCHDOG=1\n", 0) == 0;
    return n;
  }
};

caf::behavior fake_bridge(caf::event_based_actor*, std::shared_ptr<world> w) {
  return {
    [=](online_atom, caf::actor) {},
    [=](offline_atom, caf::actor) {},
    [=](stats_atom) {
      return caf::make_message(std::uint64_t{0}, std::uint64_t{0}, std::uint64_t{0}, w->connected);
    },
  };
}

caf::behavior fake_leases(caf::event_based_actor* self, std::shared_ptr<world> w) {
  return {
    [=](alive_atom) -> caf::result<std::uint64_t, std::uint64_t, std::uint64_t> {
      if (w->leases_stuck) {
        w->held.push_back(self->make_response_promise());
        return caf::delegated<std::uint64_t, std::uint64_t, std::uint64_t>();
      }
      return {std::uint64_t{3}, std::uint64_t{2}, std::uint64_t{5}};
    },
  };
}

struct notifier_fixture : ::testing::Test {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::scheduler::test_coordinator* sched = nullptr;
  std::shared_ptr<world> w = std::make_shared<world>();
  caf::actor bridge, leases, notifier;

  void SetUp() override {
    add_lull_types(cfg);
    cfg.set("scheduler.policy", caf::atom("testing"));
    cfg.set("logger.verbosity", caf::atom("quiet"));
    sys = std::make_unique<caf::actor_system>(cfg);
    sched = &dynamic_cast<caf::scheduler::test_coordinator&>(sys->scheduler());
    bridge = sys->spawn(fake_bridge, w);
    leases = sys->spawn(fake_leases, w);
  }
  void start(bool watchdog) {
    service_notifier_options o;
    o.broker = "tcp://nuc:1883";
    o.interval = 1s;
    o.watchdog = watchdog;
    auto rec = w;
    o.notify = [rec](const std::string& s) { rec->told.push_back(s); };
    o.wall_clock = [] { return t0; };
    notifier = spawn_service_notifier(*sys, bridge, leases, o);
    sched->run();
  }
  void advance(std::chrono::milliseconds d) {
    sched->advance_time(d);
    sched->run();
  }
  void TearDown() override {
    w->held.clear();
    for (auto& a : {notifier, leases, bridge})
      if (a)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
    sched->run();
  }
};

} // namespace

TEST_F(notifier_fixture, ready_after_the_first_round_trip_then_a_watchdog_ping_per_interval) {
  start(true);
  ASSERT_EQ(w->told.size(), 1u);
  EXPECT_EQ(w->told[0],
            "READY=1\nSTATUS=connected to tcp://nuc:1883; 3 hosts, 2 active leases, 5 jobs queued");
  for (int i = 0; i < 3; ++i)
    advance(1s);
  EXPECT_EQ(w->watchdogs(), 3);
  EXPECT_EQ(
    w->told.back(),
    "WATCHDOG=1\nSTATUS=connected to tcp://nuc:1883; 3 hosts, 2 active leases, 5 jobs queued");
}

TEST_F(notifier_fixture, no_ping_while_the_lease_manager_does_not_answer) {
  start(true);
  advance(1s);
  ASSERT_EQ(w->watchdogs(), 1);
  w->leases_stuck = true;
  for (int i = 0; i < 5; ++i)
    advance(1s);
  EXPECT_EQ(w->watchdogs(), 1) << "pinged for an actor that never answered";
  EXPECT_GE(w->held.size(), 4u); // asked again every interval
  // Answering again: the pings resume with the next round trip.
  w->leases_stuck = false;
  advance(1s);
  EXPECT_EQ(w->watchdogs(), 2);
}

TEST_F(notifier_fixture, without_a_watchdog_only_status_and_connection_changes) {
  start(false);
  ASSERT_EQ(w->told.size(), 1u);
  EXPECT_EQ(w->told[0].rfind("READY=1\n", 0), 0u);
  caf::anon_send(notifier, offline_atom::value);
  sched->run();
  ASSERT_EQ(w->told.size(), 2u);
  EXPECT_EQ(w->told[1], "STATUS=broker tcp://nuc:1883 unreachable since 2025-03-01 10:04:05 UTC; "
                        "3 hosts, 2 active leases, 5 jobs queued");
  w->connected = false;
  advance(1s);
  EXPECT_EQ(w->watchdogs(), 0);
  EXPECT_EQ(w->told.back().rfind("STATUS=broker tcp://nuc:1883 unreachable", 0), 0u);
}

TEST_F(notifier_fixture, no_ready_before_the_actors_answer) {
  w->leases_stuck = true;
  start(true);
  advance(1s);
  advance(1s);
  EXPECT_TRUE(w->told.empty()) << w->told.front();
  w->leases_stuck = false;
  advance(1s);
  ASSERT_EQ(w->told.size(), 1u);
  EXPECT_EQ(w->told[0].rfind("READY=1\n", 0), 0u);
}
