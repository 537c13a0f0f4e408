// Giving the host back: suspend after lease.suspend_after of BUSY, resume
// after lease.resume_after of QUIET, preempt after lease.preempt_after or on a
// memory PANIC, pauses, lease windows (across DST in a named zone), and what
// the wire and the queue make of them. All on the injected clock.

#include <gtest/gtest.h>

#include "src/lease/lease_service.hpp"
#include "src/lease/windows.hpp"
#include "src/queue/job_queue.hpp"
#include "tests/lease_test_env.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;

namespace {

lease_policy_config yield_policy() {
  lease_policy_config c;
  c.capacity_units = 100;
  c.grant_rate_per_sec = 1000;
  c.grant_burst = 1000;
  c.suspend_after_sec = 10;
  c.resume_after_sec = 60;
  c.preempt_after_sec = 900;
  c.ttl_sec = 600; // the tests heartbeat only where it matters
  return c;
}

quiet_assessment busy_of(const std::string& host, const char* why) {
  auto q = quiet_of(host, quiet_state::busy, 30);
  q.reasons = {why};
  return q;
}

std::vector<lease_event> of_type(std::vector<lease_event> all, const std::string& type) {
  std::vector<lease_event> out;
  for (auto& e : all)
    if (e.type == type)
      out.push_back(std::move(e));
  return out;
}

/// Feeds an assessment every second for `sec` seconds, ticking as lulld does.
void hold_state(lease_table& t, fake_env& fe, const quiet_assessment& q, int sec) {
  for (int i = 0; i < sec; ++i) {
    agent_quiet(t, q);
    fe.advance(1);
    t.tick();
  }
}

std::int64_t utc(int y, int mo, int d, int h, int mi) {
  // Days from civil (Howard Hinnant's algorithm), for fixtures only.
  y -= mo <= 2;
  const int era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  std::int64_t days = era * 146097 + static_cast<std::int64_t>(doe) - 719468;
  return days * 86400 + h * 3600 + mi * 60;
}

} // namespace

// -- the yield policy ----------------------------------------------------------

TEST(yield, busy_for_suspend_after_suspends_below_high_and_quiet_for_resume_after_resumes) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto normal = t.request(request_of("w1", 20), "w1");
  auto high = t.request(request_of("w2", 20, work_priority::high), "w2");
  ASSERT_TRUE(normal.approved && high.approved);
  t.take_events();

  auto busy = busy_of("pi", "Other processes (2 min average) use 80.0% CPU");
  hold_state(t, fe, busy, 9);
  EXPECT_FALSE(t.find(normal.lease_id)->suspended) << "suspended before suspend_after";
  hold_state(t, fe, busy, 2);
  auto* r = t.find(normal.lease_id);
  ASSERT_TRUE(r->suspended);
  EXPECT_NE(r->suspend_reason.find("System is BUSY for 1"), std::string::npos) << r->suspend_reason;
  EXPECT_NE(r->suspend_reason.find("Other processes"), std::string::npos);
  EXPECT_FALSE(t.find(high.lease_id)->suspended) << "HIGH keeps running";
  auto sus = of_type(t.take_events(), "suspended");
  ASSERT_EQ(sus.size(), 1u);
  EXPECT_EQ(sus[0].lease_id, normal.lease_id);
  EXPECT_EQ(sus[0].suspended, std::optional<bool>(true));
  // The lease keeps its units and its id; heartbeats go on and say so.
  EXPECT_EQ(t.used_units("pi"), 40);
  auto hb = t.heartbeat(normal.lease_id, "w1");
  ASSERT_TRUE(std::holds_alternative<lease_ack>(hb));
  EXPECT_TRUE(std::get<lease_ack>(hb).suspended);
  EXPECT_EQ(std::get<lease_ack>(hb).fencing_token, normal.fencing_token);

  // NORMAL between BUSY and QUIET neither suspends more nor resumes (hysteresis).
  hold_state(t, fe, quiet_of("pi", quiet_state::normal, 60), 120);
  EXPECT_TRUE(t.find(normal.lease_id)->suspended);
  // New work below HIGH is turned away while the host's leases are held.
  auto denied = t.request(request_of("w3", 5), "w3");
  EXPECT_FALSE(denied.approved);
  EXPECT_EQ(denied.reason.rfind("Leases on host pi are suspended until it has been QUIET for 60.0s", 0), 0u)
    << denied.reason;

  hold_state(t, fe, quiet_of("pi", quiet_state::quiet), 59);
  EXPECT_TRUE(t.find(normal.lease_id)->suspended) << "resumed before resume_after";
  hold_state(t, fe, quiet_of("pi", quiet_state::quiet), 2);
  EXPECT_FALSE(t.find(normal.lease_id)->suspended);
  auto res = of_type(t.take_events(), "resumed");
  ASSERT_EQ(res.size(), 1u);
  EXPECT_EQ(res[0].suspended, std::optional<bool>(false));
  EXPECT_TRUE(t.request(request_of("w3", 5), "w3").approved);
}

// The hold outlives the PANIC that began it: status says when it began and
// why then, beside the host's state now (lull status prints both).
TEST(yield, status_shows_when_and_why_a_hold_began_beside_the_state_now) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  ASSERT_TRUE(t.request(request_of("w1", 20), "w1").approved);
  hold_state(t, fe, quiet_of("pi", quiet_state::panic, 3), 10);
  auto began = fe.wall;
  hold_state(t, fe, quiet_of("pi", quiet_state::panic, 3), 2);
  hold_state(t, fe, quiet_of("pi", quiet_state::normal, 60), 30);
  auto pi = t.status_json()["hosts"]["pi"];
  EXPECT_EQ(pi["state"], "NORMAL");
  EXPECT_EQ(pi["load_hold"].get<std::string>().rfind("System is PANIC for 10", 0), 0u) << pi;
  EXPECT_EQ(pi["load_hold_since"], utc_timestamp(began)) << pi;
  hold_state(t, fe, quiet_of("pi", quiet_state::quiet), 61);
  pi = t.status_json()["hosts"]["pi"];
  EXPECT_FALSE(pi.contains("load_hold")) << pi;
  EXPECT_FALSE(pi.contains("load_hold_since")) << pi;
}

TEST(yield, a_busy_blip_shorter_than_suspend_after_suspends_nothing) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("w1", 20), "w1");
  for (int i = 0; i < 5; ++i) {
    hold_state(t, fe, busy_of("pi", "x"), 8);
    hold_state(t, fe, quiet_of("pi", quiet_state::normal), 1);
  }
  EXPECT_FALSE(t.find(g.lease_id)->suspended);
  EXPECT_TRUE(of_type(t.take_events(), "suspended").empty());
}

TEST(yield, suspended_past_preempt_after_is_revoked_as_preempted) {
  fake_env fe;
  auto pol = yield_policy();
  pol.preempt_after_sec = 120;
  lease_table t(pol, fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("w1", 20), "w1");
  hold_state(t, fe, busy_of("pi", "x"), 11);
  ASSERT_TRUE(t.find(g.lease_id)->suspended);
  t.take_events();
  // Heartbeats keep it alive while suspended, but not past preempt_after.
  for (int i = 0; i < 118; ++i) {
    hold_state(t, fe, busy_of("pi", "x"), 1);
    t.heartbeat(g.lease_id, "w1");
  }
  EXPECT_EQ(t.find(g.lease_id)->state, lease_state::active);
  hold_state(t, fe, busy_of("pi", "x"), 3);
  auto* r = t.find(g.lease_id);
  EXPECT_EQ(r->state, lease_state::revoked);
  EXPECT_EQ(r->end_reason.rfind("preempted: suspended for 12", 0), 0u) << r->end_reason;
  auto rev = of_type(t.take_events(), "revoked");
  ASSERT_EQ(rev.size(), 1u);
  EXPECT_TRUE(rev[0].preempted);
  // A holder's heartbeat now learns it is gone.
  auto hb = t.heartbeat(g.lease_id, "w1");
  ASSERT_TRUE(std::holds_alternative<lease_error>(hb));
  EXPECT_EQ(std::get<lease_error>(hb).code, lease_error_code::invalid_state_transition);
}

TEST(yield, panic_through_memory_revokes_at_once_and_cpu_panic_suspends) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  agent_quiet(t, quiet_of("nuc", quiet_state::quiet));
  auto a = t.request(request_of("w1", 20, work_priority::normal, "pi"), "w1");
  auto hi = t.request(request_of("w2", 20, work_priority::high, "pi"), "w2");
  auto b = t.request(request_of("w3", 20, work_priority::low, "nuc"), "w3");
  ASSERT_TRUE(a.approved && hi.approved && b.approved);
  t.take_events();

  auto mem = quiet_of("pi", quiet_state::panic, 2);
  mem.reasons = {"Memory used 97.0% is above the panic threshold 95%"};
  mem.panic_by = {"memory"};
  agent_quiet(t, mem);
  EXPECT_EQ(t.find(a.lease_id)->state, lease_state::revoked);
  EXPECT_NE(t.find(a.lease_id)->end_reason.find("PANIC through memory"), std::string::npos);
  EXPECT_EQ(t.find(hi.lease_id)->state, lease_state::active) << "HIGH is the operator's call";

  auto cpu = quiet_of("nuc", quiet_state::panic, 2);
  cpu.panic_by = {"cpu"};
  agent_quiet(t, cpu);
  EXPECT_EQ(t.find(b.lease_id)->state, lease_state::active);
  hold_state(t, fe, cpu, 11);
  EXPECT_TRUE(t.find(b.lease_id)->suspended);
  EXPECT_EQ(t.find(b.lease_id)->state, lease_state::active);
}

TEST(yield, a_pause_denies_every_priority_suspends_every_lease_and_ends_on_its_own) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto hi = t.request(request_of("w1", 20, work_priority::high), "w1");
  t.take_events();
  t.on_pause("pi", host_pause{"alice", "gaming", fe.wall, fe.wall + 3600});
  EXPECT_TRUE(t.find(hi.lease_id)->suspended);
  EXPECT_EQ(t.find(hi.lease_id)->suspend_reason, "Paused by alice: gaming");
  auto d = t.request(request_of("w2", 5, work_priority::high), "w2");
  EXPECT_FALSE(d.approved);
  EXPECT_EQ(d.reason.rfind("Paused by alice: gaming (until ", 0), 0u) << d.reason;
  EXPECT_GE(d.retry_after_sec, 3600);
  EXPECT_LE(d.retry_after_sec, 3600 * 1.0 + 0.1);
  fe.advance(3601);
  t.tick();
  EXPECT_FALSE(t.find(hi.lease_id)->suspended) << "HIGH resumes when the pause ends";
  EXPECT_EQ(t.take_pauses_ended(), std::vector<std::string>{"pi"});
  EXPECT_TRUE(t.request(request_of("w2", 5, work_priority::high), "w2").approved);
}

TEST(yield, restored_suspended_lease_stays_suspended_and_keeps_its_preempt_clock) {
  fake_env fe;
  auto pol = yield_policy();
  pol.preempt_after_sec = 300;
  lease_table t(pol, fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("w1", 20), "w1");
  hold_state(t, fe, busy_of("pi", "x"), 11);
  auto saved = to_json(*t.find(g.lease_id));
  fe.advance(100);

  lease_table again(pol, fe.env());
  again.restore(lease_record_from_json(saved), 30);
  EXPECT_TRUE(again.find(g.lease_id)->suspended);
  hold_state(again, fe, quiet_of("pi", quiet_state::quiet), 30);
  EXPECT_TRUE(again.find(g.lease_id)->suspended) << "resumes only after resume_after of QUIET";
  again.heartbeat(g.lease_id, "w1");
  hold_state(again, fe, busy_of("pi", "x"), 170);
  EXPECT_EQ(again.find(g.lease_id)->state, lease_state::revoked)
    << "suspended 11 s before the restart + 100 s down + 200 s after > 300 s";
}

TEST(yield, a_restored_lease_is_held_by_the_cause_it_was_saved_with_not_by_its_text) {
  fake_env fe;
  auto pol = yield_policy();
  lease_table t(pol, fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto g = t.request(request_of("w1", 20), "w1");
  hold_state(t, fe, busy_of("pi", "x"), 11);
  auto saved = to_json(*t.find(g.lease_id));
  EXPECT_EQ(saved["suspend_cause"], "load") << saved.dump();

  // The cause decides, whatever the reason's words: a load hold comes back
  // and keeps the lease suspended until resume_after of QUIET.
  saved["suspend_reason"] = "Paused by nobody";
  lease_table again(pol, fe.env());
  again.restore(lease_record_from_json(saved), 30);
  hold_state(again, fe, quiet_of("pi", quiet_state::quiet), 5);
  EXPECT_TRUE(again.find(g.lease_id)->suspended);

  // A record saved before the cause was kept: its reason still tells a
  // pause (no load hold; the lease resumes once nothing holds it).
  saved.erase("suspend_cause");
  saved["suspend_reason"] = "Paused by alice: gaming";
  lease_table old(pol, fe.env());
  old.restore(lease_record_from_json(saved), 30);
  hold_state(old, fe, quiet_of("pi", quiet_state::quiet), 2);
  EXPECT_FALSE(old.find(g.lease_id)->suspended);
  EXPECT_EQ(to_json(*old.find(g.lease_id))["suspend_cause"], "none");
}

// -- windows -------------------------------------------------------------------

TEST(windows, parse_errors_name_the_bad_part) {
  auto bad = [](const char* spec) {
    auto r = parse_lease_windows(spec, "UTC");
    return std::holds_alternative<std::string>(r) ? std::get<std::string>(r) : std::string();
  };
  EXPECT_NE(bad("Mon-Fry 22:00-07:00").find("bad days 'Mon-Fry'"), std::string::npos);
  EXPECT_NE(bad("Mon 25:00-07:00").find("bad time range '25:00-07:00'"), std::string::npos);
  EXPECT_NE(bad("Mon 10:00-10:00").find("empty time range"), std::string::npos);
  EXPECT_NE(bad("Mon,, Tue").find("empty window entry"), std::string::npos);
  EXPECT_NE(bad("pi-a: Mon 10-12").find("pi-a: bad time range"), std::string::npos);
  EXPECT_NE(bad("Mon; Tue").find("two schedules without a host"), std::string::npos);
  auto tz = parse_lease_windows("Mon", "Mars/Olympus");
  ASSERT_TRUE(std::holds_alternative<std::string>(tz));
  EXPECT_NE(std::get<std::string>(tz).find("unknown time zone 'Mars/Olympus'"), std::string::npos);
  auto ok = parse_lease_windows("pi-a: mon-fri 22:00-07:00, Sat-Sun; Sun 08:30-09:00", "UTC");
  ASSERT_TRUE(std::holds_alternative<lease_windows>(ok)) << std::get<std::string>(ok);
  auto& w = std::get<lease_windows>(ok);
  EXPECT_EQ(w.for_host("pi-a")->text(), "Mon-Fri 22:00-07:00, Sat-Sun 00:00-24:00");
  EXPECT_EQ(w.for_host("nuc")->text(), "Sun 08:30-09:00");
}

TEST(windows, overnight_window_in_berlin_across_the_autumn_dst_change) {
  auto parsed = parse_lease_windows("22:00-07:00", "Europe/Berlin");
  ASSERT_TRUE(std::holds_alternative<lease_windows>(parsed));
  auto& w = *std::get<lease_windows>(parsed).for_host("any");
  // Sat 2026-10-24 22:00 CEST = 20:00 UTC opens; that night clocks go back
  // (Sun 03:00 CEST -> 02:00 CET), so the window lasts 10 + 1 hours.
  EXPECT_FALSE(w.open_at(utc(2026, 10, 24, 19, 59)));
  EXPECT_TRUE(w.open_at(utc(2026, 10, 24, 20, 0)));
  // Sun 07:00 CET = 06:00 UTC closes (with CEST's offset it would be 05:00).
  EXPECT_TRUE(w.open_at(utc(2026, 10, 25, 5, 30)));
  EXPECT_FALSE(w.open_at(utc(2026, 10, 25, 6, 0)));
  EXPECT_EQ(w.next_close(utc(2026, 10, 24, 21, 0)), utc(2026, 10, 25, 6, 0));
  // Closed on Sunday's day; the next window opens 22:00 CET = 21:00 UTC.
  EXPECT_EQ(w.next_open(utc(2026, 10, 25, 9, 0)), utc(2026, 10, 25, 21, 0));
  EXPECT_EQ(w.next_open(utc(2026, 10, 25, 22, 0)), utc(2026, 10, 25, 22, 0));
  // Days name the night a window starts in: Mon-Fri nights leave Monday
  // morning closed unless Sunday's night is listed too.
  auto weekdays = std::get<lease_windows>(parse_lease_windows("Mon-Fri 22:00-07:00", "UTC"));
  EXPECT_FALSE(weekdays.all->open_at(utc(2026, 11, 30, 5, 0)));  // Mon 05:00
  EXPECT_TRUE(weekdays.all->open_at(utc(2026, 12, 1, 5, 0)));    // Tue 05:00
  EXPECT_FALSE(weekdays.all->next_close(utc(2026, 12, 1, 5, 0)) == std::nullopt);
  auto always = std::get<lease_windows>(parse_lease_windows("00:00-24:00", "UTC"));
  EXPECT_EQ(always.all->next_close(utc(2026, 12, 1, 5, 0)), std::nullopt);
}

TEST(windows, a_start_the_spring_change_skips_opens_at_the_change) {
  auto parsed = parse_lease_windows("Sun 02:30-04:00", "Europe/Berlin");
  ASSERT_TRUE(std::holds_alternative<lease_windows>(parsed));
  auto& w = *std::get<lease_windows>(parsed).for_host("pi");
  // 2026-03-29 02:00 CET -> 03:00 CEST (01:00 UTC): 02:30 never happens.
  EXPECT_EQ(w.next_open(utc(2026, 3, 28, 12, 0)), utc(2026, 3, 29, 1, 0));
  // 04:00 CEST = 02:00 UTC.
  EXPECT_TRUE(w.open_at(utc(2026, 3, 29, 1, 59)));
  EXPECT_FALSE(w.open_at(utc(2026, 3, 29, 2, 0)));
  // A week later the window is 02:30-04:00 CEST = 00:30-02:00 UTC.
  EXPECT_EQ(w.next_open(utc(2026, 3, 29, 3, 0)), utc(2026, 4, 5, 0, 30));
}

TEST(windows, outside_a_window_requests_below_high_wait_for_the_next_and_leases_are_suspended) {
  fake_env fe;
  fe.wall = utc(2026, 12, 1, 12, 0); // Tuesday noon UTC
  auto pol = yield_policy();
  pol.windows = std::get<lease_windows>(parse_lease_windows("Mon-Fri 22:00-07:00", "UTC"));
  lease_table t(pol, fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto d = t.request(request_of("w1", 20), "w1");
  EXPECT_FALSE(d.approved);
  EXPECT_EQ(d.reason,
            "Outside the lease windows of host pi (Mon-Fri 22:00-07:00); the next opens at "
            "2026-12-01T22:00:00Z");
  // Ten hours away; the hint is lease.max_retry_hint at most.
  EXPECT_EQ(d.retry_after_sec, 3600);
  EXPECT_TRUE(t.request(request_of("w2", 20, work_priority::high), "w2").approved);

  fe.wall = utc(2026, 12, 1, 22, 0);
  auto g = t.request(request_of("w1", 20), "w1");
  ASSERT_TRUE(g.approved) << g.reason;
  fe.wall = utc(2026, 12, 2, 7, 0);
  t.tick();
  EXPECT_TRUE(t.find(g.lease_id)->suspended);
  EXPECT_NE(t.find(g.lease_id)->suspend_reason.find("Outside the lease windows"), std::string::npos);
  fe.wall = utc(2026, 12, 2, 22, 0);
  t.heartbeat(g.lease_id, "w1");
  t.tick();
  EXPECT_FALSE(t.find(g.lease_id)->suspended);
}

// -- the wire ------------------------------------------------------------------

TEST(yield_wire, notices_go_out_at_qos1_and_heartbeat_replies_carry_suspended) {
  fake_env fe;
  lease_service_options o;
  o.security.secure = true;
  o.policy = yield_policy();
  lease_service svc(o, fe.env());
  auto quiet = to_json(quiet_of("pi", quiet_state::quiet)).dump();
  svc.handle({"stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})", 0, false, {}, {}, {}});
  svc.handle({"stats/host/pi/quiet", quiet, 1, true, {}, {}, {}});
  auto out = svc.handle({"scheduler/w1/lease/request",
                         R"({"cost_units":10,"reply_to":"workers/w1/r"})", 1, false, {}, {}, {}});
  auto id = json::parse(out.front().payload).at("lease_id").get<std::string>();

  auto busy = to_json(busy_of("pi", "Other processes (2 min average) use 80.0% CPU")).dump();
  std::vector<mqtt_message> notices;
  for (int i = 0; i < 12; ++i) {
    for (auto& m : svc.handle({"stats/host/pi/quiet", busy, 1, true, {}, {}, {}}))
      notices.push_back(m);
    fe.advance(1);
    for (auto& m : svc.tick())
      notices.push_back(m);
  }
  const mqtt_message* state = nullptr;
  const mqtt_message* inbox = nullptr;
  for (auto& m : notices) {
    if (m.topic == "scheduler/lease/" + id + "/state")
      state = &m;
    if (m.topic == "workers/w1/lease/" + id + "/state")
      inbox = &m;
  }
  ASSERT_NE(state, nullptr);
  ASSERT_NE(inbox, nullptr);
  EXPECT_EQ(state->qos, 1);
  auto n = json::parse(state->payload);
  EXPECT_EQ(n["type"], "suspended");
  EXPECT_EQ(n["suspended"], true);
  EXPECT_EQ(n["state"], "ACTIVE");
  EXPECT_NE(n["reason"].get<std::string>().find("Other processes"), std::string::npos);

  auto hb = svc.handle({"scheduler/w1/lease/" + id + "/heartbeat", R"({"reply_to":"workers/w1/r"})",
                        1, false, {}, {}, {}});
  EXPECT_EQ(json::parse(hb.front().payload)["suspended"], true);
  auto status = json::parse(svc.status_message().payload);
  EXPECT_EQ(status["counters"]["suspended"], 1);
  EXPECT_EQ(status["hosts"]["pi"]["suspended_leases"], 1);
}

TEST(yield_wire, control_topic_and_switch_pause_and_resume_a_host) {
  fake_env fe;
  lease_service_options o;
  o.policy = yield_policy();
  lease_service svc(o, fe.env());
  svc.handle({"stats/host/pi", R"({"v":1,"host_id":"pi","cpu":{"count":null}})", 0, false, {}, {}, {}});
  svc.handle({"stats/host/pi/quiet", to_json(quiet_of("pi", quiet_state::quiet)).dump(), 1, true,
              {}, {}, {}});
  // A malformed control message is ignored and counted.
  svc.handle({"scheduler/control/pi", R"({"paused":"yes"})", 1, true, {}, {}, {}});
  EXPECT_EQ(json::parse(svc.status_message().payload)["counters"]["rejected"], 1);
  svc.handle({"scheduler/control/pi",
              R"({"v":1,"paused":true,"by":"alice","level":"schedule","reason":"video call","until":null})", 1, true,
              {}, {}, {}});
  auto out = svc.handle({"scheduler/lease/request",
                         R"({"worker_id":"w1","cost_units":10,"priority":"HIGH","reply_to":"r"})",
                         1, false, {}, {}, {}});
  EXPECT_EQ(json::parse(out.front().payload)["reason"], "Paused by alice: video call");

  // Home Assistant's switch: ON lifts the pause (set at the schedule level,
  // below Home Assistant's) and rewrites the retained state.
  out = svc.handle({"scheduler/control/pi/set", "ON", 1, false, {}, {}, {}});
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].topic, "scheduler/control/pi");
  EXPECT_TRUE(out[0].retain);
  EXPECT_EQ(json::parse(out[0].payload)["paused"], false);
  out = svc.handle({"scheduler/lease/request",
                    R"({"worker_id":"w1","cost_units":10,"reply_to":"r"})", 1, false, {}, {}, {}});
  EXPECT_EQ(json::parse(out.front().payload)["approved"], true);
  out = svc.handle({"scheduler/control/pi/set", "OFF", 1, false, {}, {}, {}});
  json ctl;
  for (auto& m : out)
    if (m.topic == "scheduler/control/pi")
      ctl = json::parse(m.payload);
  EXPECT_EQ(ctl["paused"], true);
  EXPECT_EQ(ctl["by"], "Home Assistant");
  EXPECT_EQ(json::parse(svc.status_message().payload)["hosts"]["pi"]["suspended_leases"], 1);
}

// -- the queue -----------------------------------------------------------------

TEST(yield_queue, a_preempted_job_goes_back_without_using_an_attempt) {
  double mono = 1000;
  std::int64_t wall = 1795428000;
  job_queue q({}, {[&] { return mono; }, [&] { return wall; }, [] { return std::string("job1"); }});
  job_spec s;
  s.job_type = "t";
  s.max_attempts = 1;
  auto id = std::get<0>(q.submit(s)).first->job_id;
  ASSERT_TRUE(q.mark_leased(id, "L1", "w1", "pi"));
  q.lease_ended("L1", "preempted: suspended for 900.0s", true);
  EXPECT_EQ(q.get(id)->state, job_state::queued);
  EXPECT_EQ(q.get(id)->attempts, 0);
  ASSERT_TRUE(q.mark_leased(id, "L2", "w1", "pi"));
  q.lease_ended("L2", "expired");
  EXPECT_EQ(q.get(id)->state, job_state::dead) << "an ordinary loss still counts";
}

// -- learned quiet windows -------------------------------------------------------

TEST(quiet_hours, shares_per_local_hour_follow_the_zone_across_dst) {
  std::string why;
  auto* berlin = find_time_zone("Europe/Berlin", &why);
  ASSERT_NE(berlin, nullptr) << why;
  // QUIET 22:00-02:00 local every night for two weeks around the autumn change.
  std::vector<std::pair<std::int64_t, std::int64_t>> quiet;
  auto from = utc(2026, 10, 18, 0, 0), to = utc(2026, 11, 1, 0, 0);
  for (auto day = from; day < to; day += 86400) {
    // 22:00 local: 20:00 UTC in CEST (until Oct 25), 21:00 UTC in CET.
    auto start = day + (day + 20 * 3600 < utc(2026, 10, 25, 1, 0) ? 20 : 21) * 3600;
    quiet.emplace_back(start, start + 4 * 3600);
  }
  auto m = learn_quiet_hours(quiet, from, to, berlin);
  EXPECT_NEAR(m.days_observed, 14, 1e-9);
  for (int wd = 0; wd < 7; ++wd) {
    for (int h : {22, 23, 0, 1})
      EXPECT_GE(m.share(wd, h).value_or(0), 0.99) << wd << " " << h;
    for (int h : {3, 12, 20})
      EXPECT_LE(m.share(wd, h).value_or(1), 0.01) << wd << " " << h;
  }
  // Next hour QUIET >= 60 %: from Monday noon (CET) it is 22:00 CET = 21:00 UTC.
  EXPECT_EQ(next_quiet_hour(m, utc(2026, 11, 2, 11, 0), berlin), utc(2026, 11, 2, 21, 0));
  // Inside a quiet hour: now.
  EXPECT_EQ(next_quiet_hour(m, utc(2026, 11, 2, 21, 30), berlin), utc(2026, 11, 2, 21, 30));
  quiet_hour_map empty;
  EXPECT_EQ(next_quiet_hour(empty, utc(2026, 11, 2, 11, 0), berlin), std::nullopt);
}

// Streaks that overlap (made up, or repeated) count their union once, and
// cost what the hours they cover cost, not what their number does: 10,000
// copies of a four-week span learn the same map as one.
TEST(quiet_hours, overlapping_streaks_count_once) {
  auto* utc_zone = find_time_zone("UTC", nullptr);
  auto t = utc(2026, 11, 2, 10, 0);
  // [10:00, 10:30) and [10:15, 10:45): QUIET 45 minutes of the hour, not 60.
  auto m = learn_quiet_hours({{t, t + 1800}, {t + 900, t + 2700}}, t, t + 3600, utc_zone);
  EXPECT_NEAR(m.share(1, 10).value_or(-1), 0.75, 1e-9);
  // Unsorted, nested and touching spans.
  m = learn_quiet_hours({{t + 1800, t + 3600}, {t, t + 600}, {t + 100, t + 200}, {t + 600, t + 900}},
                        t, t + 3600, utc_zone);
  EXPECT_NEAR(m.share(1, 10).value_or(-1), 0.75, 1e-9);
  std::vector<std::pair<std::int64_t, std::int64_t>> many(10000, {t - 28 * 86400, t});
  auto a = learn_quiet_hours(many, t - 28 * 86400, t, utc_zone);
  auto b = learn_quiet_hours({{t - 28 * 86400, t}}, t - 28 * 86400, t, utc_zone);
  for (int d = 0; d < 7; ++d)
    for (int h = 0; h < 24; ++h)
      EXPECT_EQ(a.share(d, h), b.share(d, h)) << d << " " << h;
}

TEST(quiet_hours, a_busy_denial_points_to_the_next_usually_quiet_hour_once_a_week_is_learned) {
  fake_env fe;
  fe.wall = utc(2026, 12, 1, 12, 0); // Tuesday noon UTC
  auto pol = yield_policy();
  pol.timezone = "UTC";
  lease_table t(pol, fe.env());
  agent_quiet(t, busy_of("pi", "Other processes (2 min average) use 80.0% CPU"));
  quiet_hour_map m;
  for (int d = 0; d < 7; ++d)
    for (int h = 0; h < 24; ++h) {
      m.observed_sec[d][h] = 3600;
      m.quiet_sec[d][h] = h >= 1 && h < 5 ? 3600 : 0;
    }
  m.days_observed = 6;
  t.on_quiet_hours("pi", m);
  auto early = t.request(request_of("w1", 5), "w1");
  EXPECT_FALSE(early.approved);
  EXPECT_EQ(early.next_window, std::nullopt) << "under 7 days: today's rule";
  EXPECT_LE(early.retry_after_sec, 15 * 1.2 + 0.1);

  m.days_observed = 14;
  t.on_quiet_hours("pi", m);
  auto d = t.request(request_of("w1", 5), "w1");
  EXPECT_FALSE(d.approved);
  ASSERT_TRUE(d.next_window);
  EXPECT_EQ(*d.next_window, utc(2026, 12, 2, 1, 0));
  // 13 hours away: next_window says when, the hint asks again within
  // lease.max_retry_hint.
  EXPECT_EQ(d.retry_after_sec, 3600);
  EXPECT_EQ(to_json(d)["next_window"], "2026-12-02T01:00:00Z");
}

// -- power ----------------------------------------------------------------------

namespace {

quiet_assessment on_power(const std::string& host, std::optional<bool> ac, double battery_pct) {
  auto q = quiet_of(host, quiet_state::quiet);
  host_power pw;
  pw.ac_online = ac;
  pw.battery_pct = battery_pct;
  pw.battery_status = ac == true ? "Charging" : "Discharging";
  q.power = pw;
  return q;
}

} // namespace

TEST(yield, a_laptop_off_its_charger_suspends_work_below_high_until_ac_is_back) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, on_power("laptop", true, 90));
  auto normal = t.request(request_of("w1", 20), "w1");
  auto high = t.request(request_of("w2", 20, work_priority::high), "w2");
  ASSERT_TRUE(normal.approved && high.approved);
  t.take_events();

  // Unplugged: the next assessment suspends, with no suspend_after wait.
  agent_quiet(t, on_power("laptop", false, 88));
  auto* r = t.find(normal.lease_id);
  ASSERT_TRUE(r->suspended);
  EXPECT_EQ(r->suspend_cause, hold_cause::power);
  EXPECT_EQ(r->suspend_reason,
            "Host laptop runs on its battery (88 %); work below HIGH waits for AC power "
            "(lease.on_battery is deny)");
  EXPECT_FALSE(t.find(high.lease_id)->suspended) << "HIGH keeps running";
  ASSERT_EQ(of_type(t.take_events(), "suspended").size(), 1u);
  auto denied = t.request(request_of("w3", 5, work_priority::low), "w3");
  EXPECT_FALSE(denied.approved);
  EXPECT_EQ(denied.reason.rfind("Host laptop runs on its battery (88 %)", 0), 0u) << denied.reason;
  EXPECT_DOUBLE_EQ(denied.retry_after_sec, yield_policy().busy_retry_sec);
  EXPECT_TRUE(t.request(request_of("w4", 5, work_priority::high), "w4").approved);

  // Plugged in again: resumed by the next assessment.
  agent_quiet(t, on_power("laptop", true, 87));
  EXPECT_FALSE(t.find(normal.lease_id)->suspended);
  ASSERT_EQ(of_type(t.take_events(), "resumed").size(), 1u);
  EXPECT_TRUE(t.request(request_of("w3", 5, work_priority::low), "w3").approved);
}

TEST(yield, on_battery_allow_runs_work_down_to_min_battery) {
  fake_env fe;
  auto policy = yield_policy();
  policy.run_on_battery = true;
  policy.min_battery_pct = 40;
  lease_table t(policy, fe.env());
  agent_quiet(t, on_power("laptop", false, 75));
  auto lease = t.request(request_of("w1", 20), "w1");
  ASSERT_TRUE(lease.approved) << lease.reason;
  agent_quiet(t, on_power("laptop", false, 41));
  EXPECT_FALSE(t.find(lease.lease_id)->suspended);
  agent_quiet(t, on_power("laptop", false, 39));
  auto* r = t.find(lease.lease_id);
  ASSERT_TRUE(r->suspended);
  EXPECT_EQ(r->suspend_reason, "Host laptop runs on its battery at 39 %, below lease.min_battery 40 %");
}

TEST(yield, a_host_that_reports_no_battery_is_never_held_for_power) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  auto q = quiet_of("pi", quiet_state::quiet);
  host_power mains_only;
  mains_only.ac_online = false; // a USB supply reading 0, and no battery at all
  q.power = mains_only;
  agent_quiet(t, q);
  EXPECT_TRUE(t.request(request_of("w1", 20), "w1").approved);
}

// -- owner presence ---------------------------------------------------------------

namespace {

quiet_assessment with_owner(const std::string& host, double idle_sec, bool locked = false) {
  auto q = quiet_of(host, quiet_state::quiet);
  owner_presence o;
  o.idle_sec = idle_sec;
  o.locked = locked;
  o.sessions = 1;
  o.source = "tty";
  q.owner = o;
  return q;
}

lease_policy_config owner_policy() {
  auto p = yield_policy();
  p.owner_idle_sec = 300;
  return p;
}

} // namespace

// -- GPU ------------------------------------------------------------------------

namespace {

/// A QUIET assessment of a host with GPUs card0, card1, ... at the owner's
/// use `owner_pct` each (busy the same: no lease's share).
quiet_assessment with_gpus(const std::string& host, std::vector<std::optional<double>> owner_pct) {
  auto q = quiet_of(host, quiet_state::quiet);
  for (std::size_t i = 0; i < owner_pct.size(); ++i) {
    gpu_device g;
    g.id = "card" + std::to_string(i);
    g.driver = "amdgpu";
    g.busy_pct = owner_pct[i];
    g.owner_pct = owner_pct[i];
    g.leased_pct = owner_pct[i] ? std::optional<double>(0.0) : std::nullopt;
    q.gpus.push_back(g);
  }
  return q;
}

lease_request gpu_request(const std::string& worker, int gpus,
                          work_priority p = work_priority::normal) {
  auto r = request_of(worker, 5, p);
  r.gpu = gpus;
  return r;
}

} // namespace

TEST(yield, input_suspends_work_below_high_at_once_and_idle_past_owner_idle_resumes_it) {
  fake_env fe;
  lease_table t(owner_policy(), fe.env());
  agent_quiet(t, with_owner("laptop", 900));
  auto low = t.request(request_of("w1", 5, work_priority::low), "w1");
  auto high = t.request(request_of("w2", 20, work_priority::high), "w2");
  ASSERT_TRUE(low.approved && high.approved) << low.reason;
  t.take_events();

  // A key press: the next assessment suspends, with no suspend_after wait.
  agent_quiet(t, with_owner("laptop", 1));
  auto* r = t.find(low.lease_id);
  ASSERT_TRUE(r->suspended);
  EXPECT_EQ(r->suspend_cause, hold_cause::owner);
  EXPECT_EQ(r->suspend_reason, "Host laptop is in use (last input 1s ago); work below HIGH waits "
                               "until its owner has been idle 300s (quiet.owner_idle)");
  EXPECT_FALSE(t.find(high.lease_id)->suspended) << "HIGH keeps running";
  ASSERT_EQ(of_type(t.take_events(), "suspended").size(), 1u);

  // A new request is told when the owner will have been idle long enough.
  agent_quiet(t, with_owner("laptop", 100));
  auto denied = t.request(request_of("w3", 5, work_priority::normal, "laptop"), "w3");
  EXPECT_FALSE(denied.approved);
  EXPECT_EQ(denied.reason.rfind("Host laptop is in use (last input 100s ago)", 0), 0u)
    << denied.reason;
  // retry_after_sec: the 200 s left, stretched by up to lease's jitter.
  EXPECT_GE(denied.retry_after_sec, 200);
  EXPECT_LE(denied.retry_after_sec, 200 * (1 + yield_policy().jitter) + 0.5);
  EXPECT_TRUE(t.request(request_of("w4", 5, work_priority::high), "w4").approved);

  // Still typing now and then: held. Idle past quiet.owner_idle: resumed.
  agent_quiet(t, with_owner("laptop", 299));
  EXPECT_TRUE(t.find(low.lease_id)->suspended);
  agent_quiet(t, with_owner("laptop", 301));
  EXPECT_FALSE(t.find(low.lease_id)->suspended);
  ASSERT_EQ(of_type(t.take_events(), "resumed").size(), 1u);
}

TEST(yield, a_locked_screen_a_headless_host_and_owner_idle_zero_hold_nothing) {
  fake_env fe;
  lease_table t(owner_policy(), fe.env());
  agent_quiet(t, with_owner("laptop", 2, /*locked=*/true));
  auto on_locked = t.request(request_of("w1", 5, work_priority::normal, "laptop"), "w1");
  EXPECT_TRUE(on_locked.approved) << "a locked screen: nobody there; " << on_locked.reason;
  agent_quiet(t, quiet_of("nuc", quiet_state::quiet)); // owner null: cannot tell
  auto on_headless = t.request(request_of("w2", 5, work_priority::normal, "nuc"), "w2");
  EXPECT_TRUE(on_headless.approved) << on_headless.reason;

  lease_table off(yield_policy(), fe.env()); // owner_idle_sec 0: the rule is off
  agent_quiet(off, with_owner("laptop", 0));
  auto when_off = off.request(request_of("w1", 5, work_priority::normal, "laptop"), "w1");
  EXPECT_TRUE(when_off.approved) << when_off.reason;
}

TEST(yield, gpu_leases_are_counted_against_the_hosts_gpus) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, with_gpus("desk", {0.0, 0.0}));
  auto one = t.request(gpu_request("w1", 1), "w1");
  ASSERT_TRUE(one.approved) << one.reason;
  EXPECT_EQ(to_json(one)["gpu"], 1);
  EXPECT_EQ(t.find(one.lease_id)->gpu, 1);
  auto two = t.request(gpu_request("w2", 2), "w2");
  EXPECT_FALSE(two.approved);
  EXPECT_EQ(two.reason, "Not enough free GPUs on host desk: 2 GPUs, 1 leased, requested=2");
  EXPECT_TRUE(t.request(request_of("w3", 5), "w3").approved) << "work without a GPU is not counted";
  auto too_many = t.request(gpu_request("w4", 3), "w4");
  EXPECT_EQ(too_many.reason, "Not enough free GPUs on host desk: 2 GPUs, 1 leased, requested=3 "
                             "(the request alone exceeds the host's GPUs)");
  // Released: its GPU is free again.
  ASSERT_TRUE(std::holds_alternative<lease_ack>(t.release(one.lease_id, "w1")));
  fe.advance(yield_policy().lock_delay_sec + 1);
  agent_quiet(t, with_gpus("desk", {0.0, 0.0}));
  EXPECT_TRUE(t.request(gpu_request("w2", 2), "w2").approved);
}

TEST(yield, a_host_without_a_gpu_denies_gpu_work_even_high) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env());
  agent_quiet(t, quiet_of("pi", quiet_state::quiet));
  auto d = t.request(gpu_request("w1", 1, work_priority::high), "w1");
  EXPECT_FALSE(d.approved);
  EXPECT_EQ(d.reason, "Host pi reports no GPU; the work asks for 1");
  EXPECT_TRUE(t.request(request_of("w2", 5), "w2").approved);
}

TEST(yield, the_owners_gpu_use_suspends_gpu_leases_below_high_and_resumes_them) {
  fake_env fe;
  lease_table t(yield_policy(), fe.env()); // lease.gpu_owner_busy 20 %
  agent_quiet(t, with_gpus("desk", {3.0, 0.0}));
  auto gpu = t.request(gpu_request("w1", 1), "w1");
  auto cpu = t.request(request_of("w2", 20), "w2");
  auto high = t.request(gpu_request("w3", 0, work_priority::high), "w3");
  ASSERT_TRUE(gpu.approved && cpu.approved && high.approved);
  t.take_events();

  // The owner starts a game: the next assessment suspends the GPU lease,
  // and only it.
  fe.advance(2);
  agent_quiet(t, with_gpus("desk", {85.0, 0.0}));
  auto* r = t.find(gpu.lease_id);
  ASSERT_TRUE(r->suspended);
  EXPECT_EQ(r->suspend_cause, hold_cause::gpu);
  EXPECT_EQ(r->suspend_reason, "The owner of host desk uses GPU card0 (85 % busy, above "
                               "lease.gpu_owner_busy 20 %); work that needs a GPU waits");
  EXPECT_FALSE(t.find(cpu.lease_id)->suspended) << "work without a GPU runs on";
  ASSERT_EQ(of_type(t.take_events(), "suspended").size(), 1u);
  auto denied = t.request(gpu_request("w4", 0, work_priority::low), "w4");
  EXPECT_TRUE(denied.approved) << "a lease without a GPU is not held: " << denied.reason;
  auto gpu_denied = t.request(gpu_request("w5", 1, work_priority::low), "w5");
  EXPECT_FALSE(gpu_denied.approved);
  EXPECT_EQ(gpu_denied.reason.rfind("The owner of host desk uses GPU card0 (85 % busy", 0), 0u)
    << gpu_denied.reason;
  EXPECT_DOUBLE_EQ(gpu_denied.retry_after_sec, yield_policy().busy_retry_sec);
  EXPECT_TRUE(t.request(gpu_request("w6", 1, work_priority::high), "w6").approved)
    << "HIGH is not held for the owner's GPU use";

  // Down to 18 %: below the threshold but within its 5-point hysteresis,
  // so the lease stays stopped; at 14 % it resumes.
  fe.advance(2);
  agent_quiet(t, with_gpus("desk", {18.0, 0.0}));
  EXPECT_TRUE(t.find(gpu.lease_id)->suspended);
  fe.advance(2);
  agent_quiet(t, with_gpus("desk", {14.0, 0.0}));
  EXPECT_FALSE(t.find(gpu.lease_id)->suspended);
  auto resumed = of_type(t.take_events(), "resumed");
  ASSERT_EQ(resumed.size(), 1u);
  EXPECT_NE(resumed[0].reason.find("its GPUs not in use by the owner"), std::string::npos)
    << resumed[0].reason;
}

TEST(yield, gpu_use_that_cannot_be_measured_holds_nothing_and_the_threshold_is_configurable) {
  fake_env fe;
  auto policy = yield_policy();
  policy.gpu_owner_busy_pct = 50;
  lease_table t(policy, fe.env());
  agent_quiet(t, with_gpus("desk", {std::nullopt, 40.0}));
  auto lease = t.request(gpu_request("w1", 2), "w1");
  ASSERT_TRUE(lease.approved) << lease.reason;
  agent_quiet(t, with_gpus("desk", {std::nullopt, 51.0}));
  auto* r = t.find(lease.lease_id);
  ASSERT_TRUE(r->suspended) << "the GPU it can measure counts";
  EXPECT_NE(r->suspend_reason.find("GPU card1 (51 % busy, above lease.gpu_owner_busy 50 %)"),
            std::string::npos)
    << r->suspend_reason;
  // The hold survives a restart of the scheduler: the saved record says why.
  auto back = lease_record_from_json(to_json(*r));
  EXPECT_EQ(back.gpu, 2);
  EXPECT_EQ(back.suspend_cause, hold_cause::gpu);
}

TEST(yield, gpu_owner_busy_0_holds_on_any_owner_use_and_resumes_when_it_stops) {
  fake_env fe;
  auto policy = yield_policy();
  policy.gpu_owner_busy_pct = 0;
  lease_table t(policy, fe.env());
  agent_quiet(t, with_gpus("desk", {0.0}));
  auto lease = t.request(gpu_request("w1", 1), "w1");
  ASSERT_TRUE(lease.approved) << lease.reason;
  agent_quiet(t, with_gpus("desk", {1.0}));
  ASSERT_TRUE(t.find(lease.lease_id)->suspended);
  agent_quiet(t, with_gpus("desk", {0.0}));
  EXPECT_FALSE(t.find(lease.lease_id)->suspended) << "the hysteresis stops at 0 %";
}
