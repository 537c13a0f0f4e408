// The lease policy and table: every rule and every denial reason, expiry on
// the injected clock, lock_delay, fencing, the token bucket.

#include <functional>
#include <limits>

#include <gtest/gtest.h>

#include "tests/lease_test_env.hpp"

using namespace lull;
using namespace lull::test;

namespace {

lease_policy_config small_policy() {
  lease_policy_config c;
  c.capacity_units = 60;
  c.max_leases_global = 5;
  c.max_leases_per_worker = 3;
  c.grant_rate_per_sec = 1000;
  c.grant_burst = 1000;
  // These tests run minutes of fake time on one assessment; staleness has
  // its own tests (unit_hostile_state_test.cpp).
  c.stale_after_sec = 1e9;
  return c;
}

struct policy_case {
  const char* name;
  std::function<void(lease_table&, fake_env&)> setup;
  lease_request req;
  bool approved;
  const char* reason; // exact prefix of the reason
  double min_retry = 0;
  double max_retry = 0;
};

} // namespace

TEST(lease_policy, table_of_rules_and_reasons) {
  auto quiet_pi = [](lease_table& t, fake_env&) {
    t.on_snapshot("pi", 4);
    agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  };
  std::vector<policy_case> cases = {
    {"grant on a quiet host", quiet_pi, request_of("w1", 20), true,
     "Granted: used=20/60 units"},
    {"no host known", [](lease_table&, fake_env&) {}, request_of("w1", 20), false,
     "No host has reported yet", 15, 15},
    {"unknown named host", quiet_pi, request_of("w1", 20, work_priority::normal, "nuc"), false,
     "Unknown host 'nuc'; known hosts: pi"},
    {"several hosts, none named",
     [&](lease_table& t, fake_env& e) {
       quiet_pi(t, e);
       agent_quiet(t, quiet_of("nuc", quiet_state::quiet));
     },
     request_of("w1", 20), false, "host_id required: 2 hosts known (nuc, pi)"},
    {"several hosts, the worker's own",
     [&](lease_table& t, fake_env& e) {
       quiet_pi(t, e);
       agent_quiet(t, quiet_of("nuc", quiet_state::quiet));
     },
     request_of("nuc", 20), true, "Granted"},
    {"PANIC is a hard deny even for HIGH",
     [](lease_table& t, fake_env&) { agent_quiet(t, quiet_of("pi", quiet_state::panic, 3)); },
     request_of("w1", 5, work_priority::high), false, "System is PANIC; heavy work denied",
     120, 120},
    {"cool-down after PANIC, even for HIGH and QUIET",
     [](lease_table& t, fake_env& e) {
       agent_quiet(t, quiet_of("pi", quiet_state::panic, 3));
       e.advance(20);
       agent_quiet(t, quiet_of("pi", quiet_state::quiet));
     },
     request_of("w1", 5, work_priority::high), false,
     "Recent PANIC detected; cooling down until 2026-11-18T11:08:40Z", 100, 100},
    {"cool-down announced by the assessor",
     [](lease_table& t, fake_env& e) {
       auto q = quiet_of("pi", quiet_state::normal);
       q.cooldown_until = e.wall + 40;
       agent_quiet(t, q);
     },
     request_of("w1", 5, work_priority::high), false, "Recent PANIC detected; cooling down",
     40, 40},
    {"cool-down ends",
     [](lease_table& t, fake_env& e) {
       agent_quiet(t, quiet_of("pi", quiet_state::panic, 3));
       e.advance(121);
       agent_quiet(t, quiet_of("pi", quiet_state::quiet));
     },
     request_of("w1", 5), true, "Granted"},
    {"BUSY soft deny for NORMAL",
     [](lease_table& t, fake_env&) { agent_quiet(t, quiet_of("pi", quiet_state::busy, 30)); },
     request_of("w1", 5), false, "System is BUSY; waiting for QUIET", 15, 15},
    {"NORMAL soft deny for LOW",
     [](lease_table& t, fake_env&) { agent_quiet(t, quiet_of("pi", quiet_state::normal, 60)); },
     request_of("w1", 5, work_priority::low), false, "System is NORMAL; waiting for QUIET"},
    {"BUSY admits HIGH",
     [](lease_table& t, fake_env&) { agent_quiet(t, quiet_of("pi", quiet_state::busy, 30)); },
     request_of("w1", 5, work_priority::high), true, "Granted"},
    {"no assessment yet", [](lease_table& t, fake_env&) { t.on_snapshot("pi", 4); },
     request_of("w1", 5), false, "No quiet assessment for host pi yet; waiting for QUIET"},
    {"capacity exceeded, retry when the earliest lease would free",
     [&](lease_table& t, fake_env& e) {
       quiet_pi(t, e);
       t.request(request_of("w2", 50), "w2");
       e.advance(10);
     },
     request_of("w1", 20), false, "Capacity exceeded: used=50, requested=20, capacity=60",
     // w2's lease expires in 20 s, then lock_delay 15 s.
     35, 35},
    {"a request larger than the host",
     quiet_pi, request_of("w1", 61), false,
     "Capacity exceeded: used=0, requested=61, capacity=60 (the request alone exceeds"},
    {"per-worker backstop",
     [&](lease_table& t, fake_env& e) {
       quiet_pi(t, e);
       for (int i = 0; i < 3; ++i)
         t.request(request_of("w1", 1), "w1");
     },
     request_of("w1", 1), false, "Too many active leases for worker w1: 3, max=3", 30, 30},
    {"global backstop",
     [&](lease_table& t, fake_env& e) {
       quiet_pi(t, e);
       for (int i = 0; i < 5; ++i)
         t.request(request_of("w" + std::to_string(10 + i), 1), "w" + std::to_string(10 + i));
     },
     request_of("w1", 1), false, "Too many active leases: global=5, max=5"},
  };
  for (auto& c : cases) {
    SCOPED_TRACE(c.name);
    fake_env fe;
    lease_table t{small_policy(), fe.env()};
    c.setup(t, fe);
    auto r = t.request(c.req, c.req.worker_id);
    EXPECT_EQ(r.approved, c.approved);
    EXPECT_EQ(r.reason.rfind(c.reason, 0), 0u) << r.reason;
    if (!c.approved) {
      EXPECT_TRUE(r.lease_id.empty());
      EXPECT_GE(r.retry_after_sec, 1.0);
      if (c.max_retry > 0) {
        EXPECT_GE(r.retry_after_sec, c.min_retry);
        EXPECT_LE(r.retry_after_sec, c.max_retry);
      }
    } else {
      EXPECT_FALSE(r.lease_id.empty());
      EXPECT_GT(r.fencing_token, 0u);
    }
  }
}

TEST(lease_policy, cost_class_maps_to_units) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  lease_request r;
  EXPECT_EQ(t.units_for(r), 20);
  r.cost_class_ = cost_class::low;
  EXPECT_EQ(t.units_for(r), 5);
  r.cost_class_ = cost_class::high;
  EXPECT_EQ(t.units_for(r), 50);
  r.cost_units = 7; // canonical wins
  EXPECT_EQ(t.units_for(r), 7);
}

TEST(lease_policy, capacity_from_cpu_count_keeps_headroom) {
  fake_env fe;
  lease_policy_config c;
  lease_table t{c, fe.env()};
  t.on_snapshot("pi", 4);
  t.on_snapshot("nuc", 8);
  EXPECT_EQ(t.capacity_units("pi"), 80);   // 4 * 25 * 0.8
  EXPECT_EQ(t.capacity_units("nuc"), 160); // 8 * 25 * 0.8
  EXPECT_EQ(t.capacity_units("unknown"), 20);
}

TEST(lease_policy, jitter_spreads_retries) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::busy));
  fe.uniform = 0;
  auto a = t.request(request_of("w1", 5), "w1");
  fe.uniform = 0.99;
  auto b = t.request(request_of("w1", 5), "w1");
  EXPECT_DOUBLE_EQ(a.retry_after_sec, 15);
  EXPECT_GT(b.retry_after_sec, 17.9);
  EXPECT_LE(b.retry_after_sec, 18.0);
}

TEST(lease_policy, token_bucket_limits_grants) {
  fake_env fe;
  auto c = small_policy();
  c.grant_rate_per_sec = 2;
  c.grant_burst = 2;
  c.max_leases_global = 100;
  c.max_leases_per_worker = 100;
  lease_table t{c, fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  EXPECT_TRUE(t.request(request_of("w1", 1), "w1").approved);
  EXPECT_TRUE(t.request(request_of("w1", 1), "w1").approved);
  auto d = t.request(request_of("w1", 1), "w1");
  EXPECT_FALSE(d.approved);
  EXPECT_EQ(d.reason, "Grant rate limit reached: 2.0 grants/s, burst 2.0");
  fe.advance(0.5);
  EXPECT_TRUE(t.request(request_of("w1", 1), "w1").approved);
  EXPECT_FALSE(t.request(request_of("w1", 1), "w1").approved);
}

TEST(token_bucket, refills_at_its_rate_up_to_its_burst) {
  token_bucket b{10, 3, 0};
  EXPECT_TRUE(b.take(0));
  EXPECT_TRUE(b.take(0));
  EXPECT_TRUE(b.take(0));
  EXPECT_FALSE(b.take(0));
  EXPECT_NEAR(b.wait_sec(0), 0.1, 1e-9);
  EXPECT_TRUE(b.take(0.1));
  EXPECT_NEAR(b.tokens(100), 3, 1e-9);
}

TEST(lease_table, expires_without_heartbeat_and_holds_units_for_lock_delay) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("w1", 50), "w1");
  ASSERT_TRUE(g.approved);
  EXPECT_DOUBLE_EQ(g.ttl_sec, 30);
  EXPECT_DOUBLE_EQ(g.heartbeat_interval_sec, 10);
  EXPECT_EQ(g.expires_at, fe.wall + 30);
  t.take_events();

  fe.advance(29);
  t.tick();
  EXPECT_EQ(t.active().size(), 1u);
  fe.advance(1);
  t.tick();
  EXPECT_TRUE(t.active().empty());
  EXPECT_EQ(t.find(g.lease_id)->state, lease_state::expired);
  auto ev = t.take_events();
  ASSERT_FALSE(ev.empty());
  EXPECT_EQ(ev.front().type, "heartbeat_missed");
  EXPECT_EQ(ev.back().type, "expired");
  EXPECT_EQ(ev.back().reason, "missed heartbeats (TTL 30.0s)");

  // lock_delay: the expired lease's 50 units stay reserved 15 s.
  EXPECT_EQ(t.used_units("pi"), 50);
  auto d = t.request(request_of("w2", 20), "w2");
  EXPECT_FALSE(d.approved);
  EXPECT_EQ(d.reason, "Capacity exceeded: used=50, requested=20, capacity=60");
  EXPECT_DOUBLE_EQ(d.retry_after_sec, 15);
  fe.advance(15);
  EXPECT_EQ(t.used_units("pi"), 0);
  EXPECT_TRUE(t.request(request_of("w2", 20), "w2").approved);
}

TEST(lease_table, heartbeat_extends_and_reports_remaining_ttl) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("w1", 10), "w1");
  for (int i = 0; i < 10; ++i) {
    fe.advance(10);
    auto hb = t.heartbeat(g.lease_id, "w1");
    ASSERT_TRUE(std::holds_alternative<lease_ack>(hb));
    EXPECT_DOUBLE_EQ(std::get<lease_ack>(hb).ttl_remaining_sec, 30);
  }
  fe.advance(31);
  auto late = t.heartbeat(g.lease_id, "w1");
  ASSERT_TRUE(std::holds_alternative<lease_error>(late));
  EXPECT_EQ(std::get<lease_error>(late).code, lease_error_code::invalid_state_transition);
  EXPECT_EQ(std::get<lease_error>(late).message,
            "lease " + g.lease_id + " is EXPIRED (missed heartbeats (TTL 30.0s))");
}

TEST(lease_table, only_the_holder_acts) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("a", 10), "a");
  auto code = [](const std::variant<lease_ack, lease_error>& r) {
    return std::holds_alternative<lease_error>(r) ? std::get<lease_error>(r).code
                                                  : lease_error_code::internal_error;
  };
  EXPECT_EQ(code(t.heartbeat(g.lease_id, "b")), lease_error_code::not_holder);
  EXPECT_EQ(code(t.release(g.lease_id, "b")), lease_error_code::not_holder);
  EXPECT_EQ(code(t.report(g.lease_id, "b", {})), lease_error_code::not_holder);
  EXPECT_EQ(code(t.revoke(g.lease_id, "b", "x")), lease_error_code::not_holder);
  EXPECT_EQ(std::get<lease_error>(t.heartbeat(g.lease_id, "b")).message,
            "lease lease1 is not held by worker b");
  EXPECT_EQ(code(t.heartbeat("nope", "a")), lease_error_code::resource_not_found);
  EXPECT_EQ(t.active().size(), 1u);
  // The holder releases; the units free at once (no lock_delay).
  auto rel = t.release(g.lease_id, "a");
  ASSERT_TRUE(std::holds_alternative<lease_ack>(rel));
  EXPECT_EQ(std::get<lease_ack>(rel).state, lease_state::released);
  EXPECT_EQ(t.used_units("pi"), 0);
  // Released twice: still fine for the holder, still refused to others.
  EXPECT_TRUE(std::holds_alternative<lease_ack>(t.release(g.lease_id, "a")));
  EXPECT_EQ(code(t.release(g.lease_id, "b")), lease_error_code::not_holder);
  EXPECT_EQ(code(t.heartbeat(g.lease_id, "a")), lease_error_code::invalid_state_transition);
}

TEST(lease_table, admin_revoke_holds_units_until_holder_confirms) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("a", 40), "a");
  t.take_events();
  auto r = t.revoke(g.lease_id, "", "maintenance");
  ASSERT_TRUE(std::holds_alternative<lease_ack>(r));
  EXPECT_EQ(std::get<lease_ack>(r).state, lease_state::revoked);
  auto ev = t.take_events();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].type, "revoked");
  EXPECT_EQ(ev[0].reason, "maintenance");
  EXPECT_EQ(t.used_units("pi"), 40);
  t.release(g.lease_id, "a"); // the holder stopped
  EXPECT_EQ(t.used_units("pi"), 0);
}

TEST(lease_table, worker_last_will_expires_its_leases_after_the_grace) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto a1 = t.request(request_of("a", 5), "a");
  auto a2 = t.request(request_of("a", 5), "a");
  auto b1 = t.request(request_of("b", 5), "b");
  t.on_worker_status("a", false);
  t.tick();
  EXPECT_EQ(t.active().size(), 3u) << "within the will's grace (2 s)";
  fe.advance(2.1);
  t.tick();
  EXPECT_EQ(t.active().size(), 1u);
  EXPECT_EQ(t.active().count(b1.lease_id), 1u);
  EXPECT_EQ(t.find(a1.lease_id)->state, lease_state::expired);
  EXPECT_EQ(t.find(a2.lease_id)->end_reason, "worker went offline (last will)");
  EXPECT_FALSE(t.workers().at("a").online);
}

TEST(lease_table, wills_published_by_a_broker_going_down_end_no_lease) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto a = t.request(request_of("a", 5), "a");
  auto b = t.request(request_of("b", 5), "b");
  // A broker stopping publishes every client's will, then drops lulld.
  t.on_worker_status("a", false);
  t.on_worker_status("b", false);
  t.on_host_availability("pi", false); // the agent's will, lulld's own
  t.bus_disconnected();
  EXPECT_FALSE(t.hosts().at("pi").offline_since) << "its host is not taken for gone";
  fe.advance(5);
  t.tick();
  t.bus_reconnected();
  fe.advance(5);
  t.tick();
  EXPECT_EQ(t.active().size(), 2u) << "the outage's wills were dropped with it";
  // A will whose worker heartbeats within the grace ends nothing either.
  t.on_worker_status("a", false);
  fe.advance(1);
  ASSERT_TRUE(std::holds_alternative<lease_ack>(t.heartbeat(a.lease_id, "a")));
  fe.advance(5);
  t.tick();
  EXPECT_EQ(t.active().count(a.lease_id), 1u);
  EXPECT_TRUE(t.workers().at("a").online);
  // With no grace, a will ends the leases at once.
  auto cfg = small_policy();
  cfg.will_grace_sec = 0;
  lease_table now{cfg, fe.env()};
  agent_quiet(now, quiet_of("pi", quiet_state::quiet));
  now.request(request_of("c", 5), "c");
  now.on_worker_status("c", false);
  EXPECT_TRUE(now.active().empty());
  (void)b;
}

TEST(lease_table, fencing_tokens_never_decrease_and_start_after_restored_value) {
  fake_env fe;
  auto c = small_policy();
  c.max_leases_global = 1000;
  c.max_leases_per_worker = 1000;
  c.capacity_units = 100000;
  lease_table t{c, fe.env(), 41};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  std::uint64_t last = 41;
  for (int i = 0; i < 200; ++i) {
    auto g = t.request(request_of("w" + std::to_string(i % 7), 1), "w" + std::to_string(i % 7));
    ASSERT_TRUE(g.approved) << g.reason;
    EXPECT_GT(g.fencing_token, last);
    last = g.fencing_token;
    if (i % 3 == 0)
      t.release(g.lease_id, "w" + std::to_string(i % 7));
    if (i % 5 == 0)
      fe.advance(40), t.tick();
  }
  EXPECT_EQ(t.fencing_token(), 241u);
}

TEST(lease_table, ttl_is_clamped_and_said_so) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto req = request_of("w1", 5);
  req.ttl_sec = 1;
  auto g = t.request(req, "w1");
  ASSERT_TRUE(g.approved);
  EXPECT_TRUE(g.ttl_clamped);
  EXPECT_DOUBLE_EQ(g.ttl_sec, 5);
  EXPECT_NE(g.reason.find("TTL clamped to 5.0s (allowed 5.0-600.0s)"), std::string::npos);
}

TEST(lease_table, decision_summary_per_worker) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::panic));
  t.request(request_of("w1", 5), "w1");
  auto& w = t.workers().at("w1");
  EXPECT_EQ(w.denies, 1u);
  EXPECT_EQ(w.last_decision, "denied");
  EXPECT_EQ(w.last_reason, "System is PANIC; heavy work denied");
  ASSERT_TRUE(w.cooldown_until);
  auto s = t.status_json();
  EXPECT_EQ(s["workers"]["w1"]["denies"], 1);
  EXPECT_EQ(s["hosts"]["pi"]["state"], "PANIC");
  EXPECT_TRUE(s["workers"]["w1"].contains("cooldown_until"));
}

TEST(lease_ids, are_128_bit_random_hex) {
  auto a = random_lease_id();
  auto b = random_lease_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
}

TEST(lease_policy, an_offline_host_is_denied_at_once_and_back_with_its_next_snapshot) {
  fake_env fe;
  lease_policy_config c;
  c.grant_rate_per_sec = 1000;
  c.grant_burst = 1000;
  lease_table t{c, fe.env()};
  t.on_snapshot("pi", 4);
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto held = t.request(request_of("w1", 10, work_priority::normal, "pi"), "w1");
  ASSERT_TRUE(held.approved);
  // An availability for a host lull never heard of does not make it known.
  t.on_host_availability("ghost", false);
  EXPECT_EQ(t.hosts().count("ghost"), 0u);

  t.on_host_availability("pi", false);
  // Its last assessment still says QUIET; the offline notice wins, at every priority.
  for (auto p : {work_priority::low, work_priority::normal, work_priority::high}) {
    auto d = t.request(request_of("w2", 5, p, "pi"), "w2");
    EXPECT_FALSE(d.approved);
    EXPECT_EQ(d.reason.rfind("Host pi is offline (its agent left at ", 0), 0u) << d.reason;
    EXPECT_GT(d.retry_after_sec, 0);
  }
  // Its lease keeps its TTL: its worker may still be running.
  EXPECT_TRUE(t.find(held.lease_id) != nullptr);
  auto status = t.status_json();
  EXPECT_EQ(status["hosts"]["pi"]["online"], false);
  EXPECT_TRUE(status["hosts"]["pi"]["offline_since"].is_string());

  // Its next snapshot brings it back.
  t.on_snapshot("pi", 4);
  EXPECT_TRUE(t.request(request_of("w2", 5, work_priority::normal, "pi"), "w2").approved);
  EXPECT_EQ(t.status_json()["hosts"]["pi"]["online"], true);
  // So does its "online".
  t.on_host_availability("pi", false);
  t.on_host_availability("pi", true);
  EXPECT_TRUE(t.request(request_of("w3", 5, work_priority::normal, "pi"), "w3").approved);
}

// -- times from the bus are clamped ------------------------------------------

TEST(lease_clamps, a_cooldown_until_in_2100_cools_down_no_longer_than_configured) {
  fake_env fe;
  auto c = small_policy();
  c.max_cooldown_sec = 120;
  lease_table t{c, fe.env()};
  auto q = quiet_of("pi", quiet_state::quiet);
  q.cooldown_until = 4102444800; // 2100-01-01
  agent_quiet(t, q);
  auto d = t.request(request_of("w1", 5, work_priority::high), "w1");
  EXPECT_FALSE(d.approved);
  EXPECT_EQ(d.reason, "Recent PANIC detected; cooling down until 2026-11-18T11:08:40Z");
  EXPECT_LE(d.retry_after_sec, 120);
  fe.advance(121);
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  EXPECT_TRUE(t.request(request_of("w1", 5), "w1").approved);
}

TEST(lease_clamps, a_fresh_assessment_replaces_the_cooldown_an_earlier_one_asked_for) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  auto q = quiet_of("pi", quiet_state::quiet);
  q.cooldown_until = fe.wall + 100;
  agent_quiet(t, q);
  EXPECT_FALSE(t.request(request_of("w1", 5), "w1").approved);
  fe.advance(1);
  agent_quiet(t, quiet_of("pi", quiet_state::quiet)); // no cool-down any more
  EXPECT_TRUE(t.request(request_of("w1", 5), "w1").approved);
  // An older one (a late retained copy) changes nothing.
  auto old = quiet_of("pi", quiet_state::busy);
  old.assessed_at = fe.wall - 10;
  old.cooldown_until = fe.wall + 100;
  t.on_quiet(old);
  EXPECT_EQ(t.hosts().at("pi").quiet->state, quiet_state::quiet);
  EXPECT_TRUE(t.request(request_of("w2", 5), "w2").approved);
}

TEST(lease_clamps, retry_hints_are_at_most_max_retry_hint) {
  fake_env fe;
  fe.uniform = 0.99; // the most jitter
  auto c = small_policy();
  c.max_retry_hint_sec = 3600;
  lease_table t{c, fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  host_pause p{"alice", "away", fe.wall, 4102444800}; // until 2100
  t.on_pause("pi", p);
  auto d = t.request(request_of("w1", 5), "w1");
  EXPECT_FALSE(d.approved);
  EXPECT_LE(d.retry_after_sec, 3600);
  EXPECT_GE(d.retry_after_sec, 3000);
}

TEST(lease_clamps, a_learned_window_is_never_further_than_the_horizon) {
  fake_env fe;
  auto c = small_policy();
  c.learned_min_days = 0;
  c.timezone = "UTC";
  c.learned_horizon_sec = 3 * 3600.0; // shorter than the next QUIET hour below
  lease_table t{c, fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::busy));
  quiet_hour_map m;
  m.days_observed = 30;
  for (int d = 0; d < 7; ++d)
    for (int h = 0; h < 24; ++h)
      m.observed_sec[d][h] = 3600;
  // QUIET only 5 hours from now (UTC).
  auto t5 = fe.wall + 5 * 3600;
  auto hour = (t5 % 86400) / 3600;
  auto day = (t5 / 86400 + 4) % 7; // 1970-01-01 was a Thursday; 0 is Sunday
  m.quiet_sec[day][hour] = 3600;
  t.on_quiet_hours("pi", m);
  auto d = t.request(request_of("w1", 5), "w1");
  EXPECT_FALSE(d.approved);
  EXPECT_FALSE(d.next_window.has_value());
  c.learned_horizon_sec = 7 * 86400;
  lease_table t2{c, fe.env()};
  agent_quiet(t2, quiet_of("pi", quiet_state::busy));
  t2.on_quiet_hours("pi", m);
  auto d2 = t2.request(request_of("w1", 5), "w1");
  ASSERT_TRUE(d2.next_window.has_value());
  EXPECT_GT(*d2.next_window - fe.wall, 4 * 3600);
}

TEST(lease_clamps, clients_wait_at_most_the_default_retry_hint) {
  EXPECT_EQ(clamp_retry_hint(1e12), default_max_retry_hint_sec);
  EXPECT_EQ(clamp_retry_hint(std::numeric_limits<double>::quiet_NaN()), default_max_retry_hint_sec);
  EXPECT_EQ(clamp_retry_hint(-5), 0);
  EXPECT_EQ(clamp_retry_hint(12.5), 12.5);
  auto r = grant_reply_from_json({{"approved", false}, {"retry_after_sec", 2e9},
                                  {"limits", {{"heartbeat_ttl_sec", 30},
                                              {"heartbeat_interval_sec", 1e9}}}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->retry_after_sec, default_max_retry_hint_sec);
  EXPECT_EQ(r->heartbeat_interval_sec, 10);
}

// -- authority ------------------------------------------------------------------

TEST(lease_authority, a_lower_level_cannot_lift_or_replace_a_higher_ones_pause) {
  fake_env fe;
  lease_table t{small_policy(), fe.env()};
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  EXPECT_FALSE(t.on_pause("pi", host_pause{"alice", "backup", fe.wall, {}}, pause_level::admin));
  auto refused = t.on_pause("pi", std::nullopt, pause_level::home_assistant);
  ASSERT_TRUE(refused);
  EXPECT_EQ(*refused, "paused by alice (admin)");
  refused = t.on_pause("pi", host_pause{"Home Assistant", "off", fe.wall, {}},
                       pause_level::home_assistant);
  ASSERT_TRUE(refused);
  EXPECT_EQ(t.hosts().at("pi").pause->by, "alice");
  EXPECT_EQ(t.status_json()["hosts"]["pi"]["paused_by"], "paused by alice (admin)");
  EXPECT_FALSE(t.request(request_of("w1", 5, work_priority::high), "w1").approved);
  // The admin lifts it; then Home Assistant's own pause is Home Assistant's.
  EXPECT_FALSE(t.on_pause("pi", std::nullopt, pause_level::admin));
  EXPECT_FALSE(t.on_pause("pi", host_pause{"Home Assistant", "off", fe.wall, {}},
                          pause_level::home_assistant));
  EXPECT_TRUE(t.on_pause("pi", std::nullopt, pause_level::schedule));
  EXPECT_FALSE(t.on_pause("pi", std::nullopt, pause_level::home_assistant));
  EXPECT_TRUE(t.request(request_of("w1", 5), "w1").approved);
}

TEST(lease_authority, control_messages_carry_their_level) {
  auto c = parse_host_control(nlohmann::json{{"paused", true}, {"by", "cron"}, {"level", "schedule"}});
  ASSERT_TRUE(std::holds_alternative<host_control>(c));
  EXPECT_EQ(std::get<host_control>(c).level, pause_level::schedule);
  EXPECT_EQ(std::get<host_control>(c).pause->level, pause_level::schedule);
  auto d = parse_host_control(nlohmann::json{{"paused", false}});
  EXPECT_EQ(std::get<host_control>(d).level, pause_level::admin);
  auto bad = parse_host_control(nlohmann::json{{"paused", false}, {"level", "root"}});
  EXPECT_TRUE(std::holds_alternative<std::string>(bad));
  host_pause p{"alice", "", 0, {}, pause_level::home_assistant};
  EXPECT_EQ(to_json("pi", p)["level"], "home_assistant");
}
