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
#include "src/stats/host_roster.hpp"
#include "src/stats/inbound_budget.hpp"
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
  agent_quiet(t, quiet_of("h", quiet_state::quiet));
  EXPECT_TRUE(t.request(request_of("w", 5, work_priority::normal, "h"), "w").approved);
  e.advance(31);
  auto r = t.request(request_of("w", 5, work_priority::normal, "h"), "w");
  EXPECT_FALSE(r.approved);
  EXPECT_NE(r.reason.find("No fresh quiet assessment for host h"), std::string::npos) << r.reason;
  EXPECT_GT(r.retry_after_sec, 0);
  // HIGH may still run on a host lull cannot see, as on a busy one.
  EXPECT_TRUE(t.request(request_of("w", 5, work_priority::high, "h"), "w").approved);
  // A fresh assessment opens it again.
  agent_quiet(t, quiet_of("h", quiet_state::quiet));
  EXPECT_TRUE(t.request(request_of("w", 5, work_priority::normal, "h"), "w").approved);
}

TEST(stale, a_retained_assessment_counts_its_age_from_when_it_was_made) {
  fake_env e;
  lease_table t(policy(), e.env());
  auto q = quiet_of("h", quiet_state::quiet);
  q.assessed_at = e.wall - 120; // lulld restarted; the broker kept this one
  agent_quiet(t, q);
  auto r = t.request(request_of("w", 5, work_priority::normal, "h"), "w");
  EXPECT_FALSE(r.approved);
  EXPECT_NE(r.reason.find("No fresh quiet assessment"), std::string::npos) << r.reason;
}

TEST(bounded, made_up_worker_ids_are_forgotten_past_the_cap) {
  fake_env e;
  auto cfg = policy();
  cfg.max_tracked_workers = 100;
  cfg.status_workers = 10;
  lease_table t(cfg, e.env());
  agent_quiet(t, quiet_of("h", quiet_state::busy));
  // One real worker holds a lease (HIGH runs on a busy host).
  ASSERT_TRUE(t.request(request_of("holder", 5, work_priority::high, "h"), "holder").approved);
  for (int i = 0; i < 5000; ++i) {
    e.wall += 1; // a newer decision each time; the holder's lease stays live
    t.request(request_of("w" + std::to_string(i), 5, work_priority::normal, "h"),
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
  agent_quiet(t, quiet_of("h", quiet_state::quiet));
  std::string newest;
  for (int i = 0; i < 600; ++i) {
    auto r = t.request(request_of("w", 5, work_priority::normal, "h"), "w");
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

TEST(bounded, absurd_cpu_counts_are_ignored) {
  fake_env e;
  auto cfg = policy();
  cfg.capacity_units = 0;
  lease_table t(cfg, e.env());
  t.on_snapshot("h", 4);
  t.on_snapshot("h", 2000000000); // would overflow capacity to 1
  EXPECT_EQ(t.capacity_units("h"), 4 * cfg.units_per_cpu * 8 / 10);
}

TEST(hosts, a_host_enters_only_on_its_agents_snapshot) {
  fake_env e;
  lease_table t(policy(), e.env());
  // An assessment, learned windows or a pause alone add no host (lulld's own
  // retained assessments of made-up hosts refilled the table at each start).
  t.on_quiet(quiet_of("ghost", quiet_state::quiet));
  t.on_quiet_hours("ghost", quiet_hour_map{});
  t.on_pause("ghost", host_pause{"alice", "", e.wall, {}});
  EXPECT_TRUE(t.hosts().empty());
  auto r = t.request(request_of("w", 5, work_priority::normal, "ghost"), "w");
  EXPECT_EQ(r.reason.rfind("Unknown host 'ghost'", 0), 0u) << r.reason;
  // Its agent reports: what came before (retained, at lulld's start) applies.
  t.on_snapshot("ghost");
  ASSERT_TRUE(t.hosts().count("ghost"));
  EXPECT_EQ(t.hosts().at("ghost").quiet->state, quiet_state::quiet);
  ASSERT_TRUE(t.hosts().at("ghost").pause);
  EXPECT_EQ(t.hosts().at("ghost").pause->by, "alice");
}

TEST(hosts, when_full_the_host_silent_longest_gives_way_to_a_new_agent) {
  fake_env e;
  auto cfg = policy();
  cfg.max_hosts = 256;
  lease_table t(cfg, e.env());
  for (int i = 0; i < 300; ++i) {
    t.on_snapshot("fake" + std::to_string(i));
    e.advance(0.01);
  }
  EXPECT_EQ(t.hosts().size(), 256u);
  EXPECT_EQ(t.hosts_evicted(), 44u);
  EXPECT_FALSE(t.hosts().count("fake0")); // the oldest went first
  EXPECT_TRUE(t.hosts().count("fake299"));
  t.take_hosts_evicted();
  // A real agent still gets in, and is leased on.
  e.advance(1);
  EXPECT_TRUE(t.on_snapshot("pi", 4));
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  EXPECT_TRUE(t.request(request_of("w", 5, work_priority::normal, "pi"), "w").approved);
  EXPECT_EQ(t.take_hosts_evicted(), std::vector<std::string>{"fake44"});
  EXPECT_EQ(t.status_json()["hosts_evicted"], 45);
}

TEST(hosts, a_host_with_leases_does_not_give_way) {
  fake_env e;
  auto cfg = policy();
  cfg.max_hosts = 2;
  lease_table t(cfg, e.env());
  agent_quiet(t, quiet_of("a", quiet_state::quiet));
  ASSERT_TRUE(t.request(request_of("w", 5, work_priority::normal, "a"), "w").approved);
  e.advance(1);
  agent_quiet(t, quiet_of("b", quiet_state::quiet));
  ASSERT_TRUE(t.request(request_of("w", 5, work_priority::normal, "b"), "w").approved);
  EXPECT_FALSE(t.on_snapshot("c"));
  EXPECT_EQ(t.hosts_refused(), 1u);
  EXPECT_EQ(t.hosts().size(), 2u);
}

TEST(hosts, a_host_silent_past_forget_after_is_forgotten) {
  fake_env e;
  auto cfg = policy();
  cfg.host_forget_after_sec = 86400;
  lease_table t(cfg, e.env());
  agent_quiet(t, quiet_of("gone", quiet_state::quiet));
  agent_quiet(t, quiet_of("here", quiet_state::quiet));
  for (int h = 0; h < 24; ++h) {
    e.advance(3600);
    t.on_snapshot("here");
    t.tick();
  }
  EXPECT_TRUE(t.hosts().count("gone")); // a day, not more
  e.advance(2);
  t.tick();
  EXPECT_FALSE(t.hosts().count("gone"));
  EXPECT_TRUE(t.hosts().count("here"));
  EXPECT_EQ(t.take_hosts_evicted(), std::vector<std::string>{"gone"});
}

TEST(roster, keeps_at_most_max_hosts_and_forgets_the_silent) {
  host_roster r(3, 100);
  r.pin("own");
  EXPECT_TRUE(r.seen("a", 1).added);
  EXPECT_TRUE(r.seen("b", 2).added);
  EXPECT_FALSE(r.seen("a", 3).added); // known: refreshed
  auto c = r.seen("c", 4);
  EXPECT_TRUE(c.added);
  EXPECT_EQ(c.evicted, std::optional<std::string>("b")); // silent longest; "own" is pinned
  EXPECT_EQ(r.size(), 3u);
  EXPECT_TRUE(r.expire(103).empty());
  EXPECT_EQ(r.expire(103.5), std::vector<std::string>{"a"});
  EXPECT_TRUE(r.contains("own"));
  EXPECT_EQ(r.evicted(), 2u);
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

// -- inbound budget: what lulld takes in is bounded before any decoding -----

TEST(inbound, topics_fall_into_lanes_with_the_identity_they_carry) {
  auto c = classify_inbound("scheduler/alice/lease/request");
  EXPECT_EQ(c.lane, inbound_lane::lease);
  EXPECT_EQ(c.source, "alice");
  EXPECT_FALSE(c.keep);
  c = classify_inbound("scheduler/alice/lease/0123abcd/heartbeat");
  EXPECT_TRUE(c.keep);
  EXPECT_EQ(c.source, "alice");
  c = classify_inbound("scheduler/lease/0123abcd/release"); // open mode: no identity
  EXPECT_EQ(c.lane, inbound_lane::lease);
  EXPECT_TRUE(c.keep);
  EXPECT_EQ(c.source, "");
  EXPECT_EQ(classify_inbound("scheduler/bob/job/submit").lane, inbound_lane::job);
  EXPECT_EQ(classify_inbound("scheduler/job/submit").source, "");
  c = classify_inbound("scheduler/control/pi/set");
  EXPECT_EQ(c.lane, inbound_lane::control);
  EXPECT_EQ(c.source, "pi");
  c = classify_inbound("history/carol/request");
  EXPECT_EQ(c.lane, inbound_lane::history);
  EXPECT_EQ(c.source, "carol");
  c = classify_inbound("stats/worker/w1");
  EXPECT_EQ(c.lane, inbound_lane::stats);
  EXPECT_EQ(c.source, "w1");
  EXPECT_FALSE(c.exempt);
  EXPECT_TRUE(classify_inbound("stats/host/pi/quiet").exempt);
  EXPECT_TRUE(classify_inbound("scheduler/host/pi/leases").exempt);
  EXPECT_EQ(classify_inbound("anything/else").lane, inbound_lane::other);
}

TEST(inbound, one_sources_flood_is_shed_by_rate_while_another_passes) {
  inbound_budget b;
  auto flood = classify_inbound("history/mallory/request");
  auto other = classify_inbound("history/alice/request");
  double t = 100;
  std::vector<std::shared_ptr<void>> held; // handled at once: holds let go
  int admitted = 0;
  for (int i = 0; i < 10000; ++i)
    admitted += b.admit(flood, 15000, t + i * 1e-5).v == inbound_budget::verdict::accept;
  // 0.1 s at 5/s with a burst of 20: the burst, and no more than one more.
  EXPECT_LE(admitted, 21);
  EXPECT_GE(admitted, 20);
  EXPECT_EQ(b.admit(other, 200, t + 0.1).v, inbound_budget::verdict::accept);
  auto lines = b.report(t + 10);
  ASSERT_FALSE(lines.empty());
  EXPECT_NE(lines[0].find("from 'mallory' on the history lane (over its rate)"), std::string::npos)
    << lines[0];
  EXPECT_EQ(b.counts(inbound_lane::history).rate_limited, 10000u - admitted);
  EXPECT_TRUE(b.report(t + 20).empty()); // nothing shed since
}

TEST(inbound, a_lane_holds_at_most_its_room_and_frees_it_as_messages_are_handled) {
  auto opts = budget_options::defaults();
  auto& lease = opts.lanes[static_cast<std::size_t>(inbound_lane::lease)];
  lease.max_msgs = 100;
  inbound_budget b(opts);
  auto req = classify_inbound("scheduler/lease/request");
  auto hb = classify_inbound("scheduler/lease/0123abcd/heartbeat");
  std::vector<std::shared_ptr<void>> queued;
  double t = 5;
  for (int i = 0; i < 200; ++i)
    if (auto d = b.admit(req, 300, t); d.v == inbound_budget::verdict::accept)
      queued.push_back(d.hold);
  // Requests stop at three quarters: the rest is kept for heartbeats.
  EXPECT_EQ(queued.size(), 75u);
  EXPECT_EQ(b.counts(inbound_lane::lease).queued_msgs, 75u);
  EXPECT_EQ(b.counts(inbound_lane::lease).queued_bytes, 75u * 300);
  int beats = 0;
  for (int i = 0; i < 50; ++i)
    if (auto d = b.admit(hb, 300, t); d.v == inbound_budget::verdict::accept) {
      queued.push_back(d.hold);
      ++beats;
    }
  EXPECT_EQ(beats, 25);
  EXPECT_EQ(b.admit(hb, 300, t).v, inbound_budget::verdict::lane_full);
  // Every copy of the handled messages let go: the lane has room again.
  queued.clear();
  EXPECT_EQ(b.counts(inbound_lane::lease).queued_msgs, 0u);
  EXPECT_EQ(b.counts(inbound_lane::lease).queued_bytes, 0u);
  EXPECT_EQ(b.admit(req, 300, t + 1).v, inbound_budget::verdict::accept);
  EXPECT_GT(b.counts(inbound_lane::lease).lane_full, 0u);
}

TEST(inbound, a_lane_bounds_bytes_too) {
  inbound_budget b;
  auto snap = classify_inbound("stats/worker/w");
  std::vector<std::shared_ptr<void>> queued;
  std::size_t bytes = 0;
  // A new source each time (as made-up ids in open mode), large payloads.
  for (int i = 0; i < 2000; ++i) {
    auto c = snap;
    c.source = "w" + std::to_string(i);
    if (auto d = b.admit(c, 200000, 1); d.v == inbound_budget::verdict::accept) {
      queued.push_back(d.hold);
      bytes += 200000;
    }
  }
  EXPECT_LE(bytes, budget_options::defaults().lanes[static_cast<std::size_t>(inbound_lane::stats)].max_bytes);
  EXPECT_GT(queued.size(), 0u);
}

TEST(inbound, made_up_sources_past_the_bound_share_one_bucket) {
  auto opts = budget_options::defaults();
  opts.max_sources = 10;
  inbound_budget b(opts);
  int admitted = 0;
  for (int i = 0; i < 1000; ++i) {
    inbound_class c = classify_inbound("history/x/request");
    c.source = "u" + std::to_string(i);
    admitted += b.admit(c, 100, 1).v == inbound_budget::verdict::accept;
  }
  // The first ten sources get a bucket each (one message each here); the
  // other 990 share one bucket, a burst of 20.
  EXPECT_EQ(admitted, 10 + 20);
}
