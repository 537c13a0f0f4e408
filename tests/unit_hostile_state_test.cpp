// State that hostile or silent peers could grow or freeze: stale assessments
// fail closed, made-up worker ids and CPU counts stay bounded, and a dead
// actor is noticed.

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include <caf/all.hpp>

#include "actors/supervisor.hpp"
#include "src/lease/lease_table.hpp"
#include "tests/lease_test_env.hpp"

using namespace lull;
using namespace lull::test;

namespace {

lease_policy_config policy() {
  lease_policy_config cfg;
  cfg.capacity_units = 100;
  cfg.stale_after_sec = 30;
  cfg.max_leases_per_worker = 100;
  return cfg;
}

} // namespace

TEST(stale, an_assessment_older_than_stale_after_denies_below_high) {
  fake_env e;
  lease_table t(policy(), e.env());
  t.on_quiet(quiet_of("h", quiet_state::quiet));
  EXPECT_TRUE(t.request(request_of("w", 5, lease_priority::normal, "h"), "w").approved);
  e.advance(31);
  auto r = t.request(request_of("w", 5, lease_priority::normal, "h"), "w");
  EXPECT_FALSE(r.approved);
  EXPECT_NE(r.reason.find("No fresh quiet assessment for host h"), std::string::npos) << r.reason;
  EXPECT_GT(r.retry_after_sec, 0);
  // HIGH may still run on a host lull cannot see, as on a busy one.
  EXPECT_TRUE(t.request(request_of("w", 5, lease_priority::high, "h"), "w").approved);
  // A fresh assessment opens it again.
  t.on_quiet(quiet_of("h", quiet_state::quiet));
  EXPECT_TRUE(t.request(request_of("w", 5, lease_priority::normal, "h"), "w").approved);
}

TEST(stale, a_retained_assessment_counts_its_age_from_when_it_was_made) {
  fake_env e;
  lease_table t(policy(), e.env());
  auto q = quiet_of("h", quiet_state::quiet);
  q.assessed_at = e.wall - 120; // lulld restarted; the broker kept this one
  t.on_quiet(q);
  auto r = t.request(request_of("w", 5, lease_priority::normal, "h"), "w");
  EXPECT_FALSE(r.approved);
  EXPECT_NE(r.reason.find("No fresh quiet assessment"), std::string::npos) << r.reason;
}

TEST(bounded, made_up_worker_ids_are_forgotten_past_the_cap) {
  fake_env e;
  auto cfg = policy();
  cfg.max_tracked_workers = 100;
  cfg.status_workers = 10;
  lease_table t(cfg, e.env());
  t.on_quiet(quiet_of("h", quiet_state::busy));
  // One real worker holds a lease (HIGH runs on a busy host).
  ASSERT_TRUE(t.request(request_of("holder", 5, lease_priority::high, "h"), "holder").approved);
  for (int i = 0; i < 5000; ++i) {
    e.wall += 1; // a newer decision each time; the holder's lease stays live
    t.request(request_of("w" + std::to_string(i), 5, lease_priority::normal, "h"),
              "w" + std::to_string(i));
  }
  EXPECT_LE(t.workers().size(), 100u);
  EXPECT_GE(t.workers_evicted(), 4900u);
  EXPECT_TRUE(t.workers().count("holder")) << "a worker holding a lease is never forgotten";
  EXPECT_TRUE(t.workers().count("w4999")) << "the newest are kept";
  auto st = t.status_json();
  EXPECT_EQ(st["workers"].size(), 10u);
  EXPECT_EQ(st["workers_tracked"], t.workers().size());
  EXPECT_EQ(st["workers_evicted"], t.workers_evicted());
}

TEST(bounded, scheduler_status_lists_the_newest_leases_and_counts_them_all) {
  fake_env e;
  auto cfg = policy();
  cfg.capacity_units = 100000;
  cfg.max_leases_global = 1000;
  cfg.max_leases_per_worker = 1000;
  cfg.grant_rate_per_sec = 1e9;
  cfg.grant_burst = 1e9;
  cfg.status_leases = 25;
  lease_table t(cfg, e.env());
  t.on_quiet(quiet_of("h", quiet_state::quiet));
  std::string newest;
  for (int i = 0; i < 600; ++i) {
    auto r = t.request(request_of("w", 5, lease_priority::normal, "h"), "w");
    ASSERT_TRUE(r.approved) << i << ": " << r.reason;
    newest = r.lease_id;
  }
  auto st = t.status_json();
  EXPECT_EQ(st["active"].size(), 25u);
  EXPECT_EQ(st["active_total"], 600);
  EXPECT_EQ(st["active"][0]["lease_id"], newest) << "newest first";
  EXPECT_EQ(st["hosts"]["h"]["active_leases"], 600) << "per-host counts are complete";
  EXPECT_EQ(st["hosts"]["h"]["used_units"], 3000);
  // 600 leases listed in full would be ~200 KB every second.
  EXPECT_LT(st.dump().size(), 20000u);
}

TEST(bounded, absurd_cpu_counts_and_too_many_hosts_are_ignored) {
  fake_env e;
  auto cfg = policy();
  cfg.capacity_units = 0;
  cfg.max_hosts = 3;
  lease_table t(cfg, e.env());
  t.on_cpu_count("h", 4);
  t.on_cpu_count("h", 2000000000); // would overflow capacity to 1
  EXPECT_EQ(t.capacity_units("h"), 4 * cfg.units_per_cpu * 8 / 10);
  t.on_cpu_count("a", 1);
  t.on_cpu_count("b", 1);
  t.on_cpu_count("c", 1);
  t.on_quiet(quiet_of("d", quiet_state::quiet));
  EXPECT_EQ(t.hosts().size(), 3u);
  EXPECT_FALSE(t.hosts().count("c"));
}

TEST(supervisor, an_actor_that_dies_is_reported_and_a_shutdown_is_not) {
  caf::actor_system_config cfg;
  cfg.set("logger.verbosity", caf::atom("quiet"));
  caf::actor_system sys{cfg};
  // An argument, however unused: CAF 0.17 spawns an actor without one by
  // binding a reference through a null pointer (UBSan reports it).
  auto idle = [](caf::event_based_actor*, int) -> caf::behavior {
    return {[](const std::string&) {}};
  };
  auto a = sys.spawn(idle, 0);
  auto b = sys.spawn(idle, 0);
  std::atomic<int> deaths{0};
  std::string who;
  std::mutex mtx;
  supervisor_options opts;
  opts.on_death = [&](const std::string& what) {
    std::lock_guard<std::mutex> g(mtx);
    who = what;
    ++deaths;
  };
  auto sup = spawn_supervisor(sys, {{"queue dispatcher", a}, {"persister", b}}, opts);
  caf::anon_send_exit(a, caf::exit_reason::unhandled_exception);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (deaths == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(deaths, 1);
  {
    std::lock_guard<std::mutex> g(mtx);
    EXPECT_EQ(who.rfind("queue dispatcher: ", 0), 0u) << who;
  }
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
}
