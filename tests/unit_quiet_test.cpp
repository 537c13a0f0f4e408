// The quiet assessor's scoring tables: each state, the 2-minute CPU average,
// hysteresis, the PANIC cool-down, throttling, bus inputs and quiet streaks.
// Time is a fake clock the tests advance.

#include <gtest/gtest.h>

#include <algorithm>

#include "src/quiet/quiet_assessor.hpp"

using namespace lull;

namespace {

struct fake_clock {
  double mono = 1000;
  std::int64_t unix_now = 1763900000;
  void advance(double sec) {
    mono += sec;
    unix_now += static_cast<std::int64_t>(sec);
  }
};

struct host_values {
  std::optional<double> cpu = 0, mem = 30, disk_free = 60, swap = 0, temp = 40;
};

host_snapshot snap(const host_values& v, const std::string& host = "nuc") {
  host_snapshot s;
  s.host_id = host;
  s.cpu_pct = v.cpu;
  s.mem_used_pct = v.mem;
  s.disks.push_back({"/", 100, 0, v.disk_free});
  s.swap_used_pct = v.swap;
  s.cpu_temp_c = v.temp;
  return s;
}

/// The memory use that yields `score` with every other input idle.
double mem_for_score(double score) {
  double p = (100.0 - score) / 100.0;
  if (p <= 0.25)
    return 40 + p / 0.25 * 30;
  if (p <= 0.5)
    return 70 + (p - 0.25) / 0.25 * 15;
  return 85 + (p - 0.5) / 0.5 * 10;
}

class quiet_test : public ::testing::Test {
protected:
  quiet_test()
    : assessor(quiet_thresholds{}, [this] { return clock.mono; },
               [this] { return clock.unix_now; }) {}

  quiet_assessment step(const host_values& v, double after_sec = 2) {
    clock.advance(after_sec);
    return assessor.assess(snap(v));
  }

  bool has_reason(const quiet_assessment& a, const std::string& part) {
    for (auto& r : a.reasons)
      if (r.find(part) != std::string::npos)
        return true;
    return false;
  }

  fake_clock clock;
  quiet_assessor assessor;
};

} // namespace

TEST(quiet_pressure, thresholds_map_to_fixed_points) {
  input_thresholds t{0, 30, 75, 95};
  EXPECT_DOUBLE_EQ(pressure(0, t), 0);
  EXPECT_DOUBLE_EQ(pressure(30, t), 0.25);
  EXPECT_DOUBLE_EQ(pressure(75, t), 0.5);
  EXPECT_DOUBLE_EQ(pressure(95, t), 1);
  EXPECT_DOUBLE_EQ(pressure(150, t), 1);
  input_thresholds disk{50, 20, 10, 3};
  EXPECT_DOUBLE_EQ(pressure(80, disk, true), 0);
  EXPECT_DOUBLE_EQ(pressure(20, disk, true), 0.25);
  EXPECT_DOUBLE_EQ(pressure(10, disk, true), 0.5);
  EXPECT_DOUBLE_EQ(pressure(2, disk, true), 1);
}

struct state_row {
  const char* what;
  host_values v;
  quiet_state expected;
  const char* reason_part;
};

class quiet_states : public ::testing::TestWithParam<state_row> {};

TEST_P(quiet_states, each_state_from_a_fresh_host) {
  auto& row = GetParam();
  fake_clock clock;
  quiet_assessor a(quiet_thresholds{}, [&] { return clock.mono; },
                   [&] { return clock.unix_now; });
  auto q = a.assess(snap(row.v));
  EXPECT_EQ(q.state, row.expected) << row.what << " score " << q.quiet_score;
  bool found = false;
  for (auto& r : q.reasons)
    found = found || r.find(row.reason_part) != std::string::npos;
  EXPECT_TRUE(found) << row.what << ": no reason containing '" << row.reason_part << "' in "
                     << nlohmann::json(q.reasons).dump();
  EXPECT_GE(q.quiet_score, 0);
  EXPECT_LE(q.quiet_score, 100);
}

INSTANTIATE_TEST_SUITE_P(
  table, quiet_states,
  ::testing::Values(
    state_row{"idle", {5, 30, 60, 0, 40}, quiet_state::quiet, "All inputs below"},
    state_row{"half busy CPU", {50, 30, 60, 0, 40}, quiet_state::normal,
              "Other processes (2 min average) use 50.0% CPU, above the quiet threshold 30%"},
    state_row{"compiling", {85, 30, 60, 0, 40}, quiet_state::busy, "above the busy threshold"},
    state_row{"memory full", {5, 96, 60, 0, 40}, quiet_state::panic,
              "Memory used 96.0% is above the panic threshold 95%"},
    state_row{"disk full", {5, 30, 2, 0, 40}, quiet_state::panic,
              "Disk / free 2.0% is below the panic threshold 3%"},
    state_row{"hot Pi", {5, 30, 60, 0, 86}, quiet_state::panic, "CPU temperature 86.0 C"},
    state_row{"swapping", {5, 30, 60, 60, 40}, quiet_state::busy, "Swap used 60.0%"},
    state_row{"no readings", {std::nullopt, std::nullopt, std::nullopt, std::nullopt,
                              std::nullopt},
              quiet_state::normal, "No CPU reading yet"}));

TEST_F(quiet_test, inputs_are_reported) {
  auto q = step({12, 55, 40, 3, 51});
  EXPECT_EQ(q.inputs["cpu_foreign_avg"], 12.0);
  EXPECT_EQ(q.inputs["cpu_avg"], 12.0);
  EXPECT_EQ(q.inputs["cpu_window_sec"], 120.0);
  EXPECT_EQ(q.inputs["mem_pct"], 55.0);
  EXPECT_EQ(q.inputs["disk_free_pct"], 40.0);
  EXPECT_EQ(q.inputs["disk_mount"], "/");
  EXPECT_EQ(q.inputs["swap_pct"], 3.0);
  EXPECT_EQ(q.inputs["temp_c"], 51.0);
  EXPECT_TRUE(q.inputs["bus_rps"].is_null());
  EXPECT_TRUE(q.inputs["throttled"].is_null());
  auto back = quiet_assessment_from_json(to_json(q));
  EXPECT_EQ(back.state, q.state);
  EXPECT_EQ(back.quiet_score, q.quiet_score);
}

TEST_F(quiet_test, cpu_is_averaged_over_two_minutes) {
  // A short spike in a quiet minute does not make the host busy...
  for (int i = 0; i < 30; ++i)
    step({5});
  auto spike = step({100});
  EXPECT_EQ(spike.state, quiet_state::quiet) << spike.quiet_score;
  // ...two minutes of a compile do, and one idle sample does not undo it.
  for (int i = 0; i < 60; ++i)
    step({90});
  EXPECT_EQ(step({90}).state, quiet_state::busy);
  auto after = step({0});
  EXPECT_EQ(after.state, quiet_state::busy);
  EXPECT_GT(after.inputs["cpu_foreign_avg"].get<double>(), 85);
}

TEST_F(quiet_test, a_hot_start_is_busy_not_panic_until_the_average_spans_30s) {
  // lulld started on a machine still hot from a build: the first samples are
  // not two minutes of load, so they make the host BUSY with no cool-down.
  auto first = step({100});
  EXPECT_EQ(first.state, quiet_state::busy) << first.quiet_score;
  EXPECT_FALSE(first.cooldown_until);
  EXPECT_TRUE(has_reason(first, "above the panic threshold 95%, over only 0s of samples "
                                "(PANIC needs 30s)"))
    << nlohmann::json(first.reasons).dump();
  // The build ends: the host is quiet again at once, with no cool-down.
  auto calm = step({0});
  for (int i = 0; i < 60; ++i)
    calm = step({0});
  EXPECT_EQ(calm.state, quiet_state::quiet) << nlohmann::json(calm.reasons).dump();
  EXPECT_FALSE(calm.cooldown_until);
}

TEST_F(quiet_test, load_that_lasts_past_the_warm_up_is_panic) {
  quiet_assessment q;
  for (int i = 0; i <= 14; ++i) // 28 s of samples
    q = step({100});
  EXPECT_EQ(q.state, quiet_state::busy);
  q = step({100}); // 30 s
  EXPECT_EQ(q.state, quiet_state::panic);
  ASSERT_TRUE(q.cooldown_until);
  EXPECT_EQ(q.panic_by, std::vector<std::string>{"cpu"});
}

TEST_F(quiet_test, hysteresis_keeps_a_host_near_the_edge_from_flapping) {
  EXPECT_EQ(step({0, mem_for_score(90)}).state, quiet_state::quiet);
  // Wobbling around the QUIET edge (75) within 5 points: stays QUIET.
  for (double s : {73.0, 77.0, 71.0, 76.0, 72.0})
    EXPECT_EQ(step({0, mem_for_score(s)}).state, quiet_state::quiet) << s;
  // Clearly below: NORMAL; and back just above the edge is not enough.
  EXPECT_EQ(step({0, mem_for_score(68)}).state, quiet_state::normal);
  for (double s : {76.0, 79.0, 74.0})
    EXPECT_EQ(step({0, mem_for_score(s)}).state, quiet_state::normal) << s;
  EXPECT_EQ(step({0, mem_for_score(81)}).state, quiet_state::quiet);
  // The NORMAL/BUSY edge (50) behaves the same way.
  EXPECT_EQ(step({0, mem_for_score(47)}).state, quiet_state::normal);
  EXPECT_EQ(step({0, mem_for_score(44)}).state, quiet_state::busy);
  EXPECT_EQ(step({0, mem_for_score(53)}).state, quiet_state::busy);
  EXPECT_EQ(step({0, mem_for_score(56)}).state, quiet_state::normal);
}

TEST_F(quiet_test, panic_starts_a_cooldown_during_which_the_host_cannot_be_quiet) {
  EXPECT_EQ(step({0, 30}).state, quiet_state::quiet);
  auto panic = step({0, 97});
  EXPECT_EQ(panic.state, quiet_state::panic);
  ASSERT_TRUE(panic.cooldown_until);
  EXPECT_EQ(*panic.cooldown_until, clock.unix_now + 120);
  // Leaving PANIC needs memory clearly (5 %) below the panic threshold.
  EXPECT_EQ(step({0, 92}).state, quiet_state::panic);
  auto calm = step({0, 30});
  EXPECT_EQ(calm.state, quiet_state::normal) << "idle, but cooling down";
  EXPECT_TRUE(has_reason(calm, "Recent PANIC detected; cooling down until"));
  EXPECT_TRUE(calm.cooldown_until);
  step({0, 30}, 100);
  EXPECT_EQ(step({0, 30}, 10).state, quiet_state::normal); // 112 s after the last PANIC
  auto after = step({0, 30}, 10);
  EXPECT_EQ(after.state, quiet_state::quiet);
  EXPECT_FALSE(after.cooldown_until);
  EXPECT_FALSE(has_reason(after, "cooling down"));
}

TEST_F(quiet_test, pi_throttling_keeps_a_host_from_quiet) {
  auto s = snap({5, 30, 60, 0, 60}, "pi");
  throttle_flags f;
  f.raw = 0x50005;
  f.under_voltage = f.throttled = true;
  s.throttling = f;
  clock.advance(2);
  auto q = assessor.assess(s);
  EXPECT_EQ(q.state, quiet_state::busy);
  EXPECT_EQ(q.inputs["throttled"], true);
  EXPECT_TRUE(has_reason(q, "Pi firmware reports under-voltage, throttled"));
}

TEST_F(quiet_test, lulls_own_bus_traffic_is_not_host_load_by_default) {
  step({5});
  assessor.on_bus("nuc", 5000.0, 3000.0);
  auto q = step({5});
  EXPECT_EQ(q.state, quiet_state::quiet);
  EXPECT_EQ(q.inputs["bus_rps"], 5000.0); // shown, not scored
  EXPECT_FALSE(has_reason(q, "Bus"));
}

TEST_F(quiet_test, bus_load_counts_until_it_goes_stale) {
  quiet_thresholds th;
  th.bus_inputs = true;
  assessor = quiet_assessor(th, [this] { return clock.mono; }, [this] { return clock.unix_now; });
  step({5});
  assessor.on_bus("nuc", 600.0, 30.0);
  auto busy = step({5});
  EXPECT_EQ(busy.state, quiet_state::busy);
  EXPECT_EQ(busy.inputs["bus_rps"], 600.0);
  EXPECT_TRUE(has_reason(busy, "Bus traffic 600.0 msg/s is above the busy threshold"));
  auto later = step({5}, 61);
  EXPECT_TRUE(later.inputs["bus_rps"].is_null());
}

TEST_F(quiet_test, quiet_streaks_record_start_end_avg_and_min) {
  EXPECT_EQ(step({0, mem_for_score(95)}).state, quiet_state::quiet);
  auto start = clock.unix_now;
  step({0, mem_for_score(90)});
  auto q = step({0, mem_for_score(85)});
  ASSERT_TRUE(assessor.open_streak("nuc"));
  EXPECT_EQ(q.streak["samples"], 3);
  EXPECT_EQ(step({0, 97}).state, quiet_state::panic);
  EXPECT_FALSE(assessor.open_streak("nuc"));
  auto& closed = assessor.streaks("nuc");
  ASSERT_EQ(closed.size(), 1u);
  EXPECT_EQ(closed[0].start, start);
  EXPECT_EQ(closed[0].end, clock.unix_now);
  EXPECT_NEAR(closed[0].avg_score, 90, 0.2);
  EXPECT_NEAR(closed[0].min_score, 85, 0.2);
  EXPECT_EQ(closed[0].samples, 3u);
  EXPECT_EQ(to_json(closed[0])["duration_sec"], 6);
}

TEST_F(quiet_test, hosts_are_assessed_independently) {
  clock.advance(2);
  auto pi = assessor.assess(snap({90, 30}, "pi"));
  auto nuc = assessor.assess(snap({5, 30}, "nuc"));
  EXPECT_EQ(pi.state, quiet_state::busy);
  EXPECT_EQ(nuc.state, quiet_state::quiet);
  EXPECT_EQ(pi.host_id, "pi");
}

TEST_F(quiet_test, a_silent_host_is_busy_until_it_speaks_again) {
  EXPECT_EQ(step({5}).state, quiet_state::quiet);
  clock.advance(29);
  EXPECT_TRUE(assessor.check_stale().empty());
  clock.advance(2);
  auto stale = assessor.check_stale();
  ASSERT_EQ(stale.size(), 1u);
  EXPECT_EQ(stale[0].state, quiet_state::busy);
  EXPECT_EQ(stale[0].host_id, "nuc");
  EXPECT_NE(stale[0].reasons[0].find("No snapshot from nuc for 31 s"), std::string::npos);
  EXPECT_TRUE(assessor.check_stale().empty()) << "reported once";
  EXPECT_EQ(assessor.streaks("nuc").size(), 1u) << "the quiet streak ended";
  // Back: entering QUIET from BUSY needs the hysteresis margin, which idle has.
  EXPECT_EQ(step({5}).state, quiet_state::quiet);
}

// -- whose load ---------------------------------------------------------------

namespace {

host_snapshot leased_snap(double cpu, double leased_cpu, double mem = 30,
                          std::uint64_t leased_rss = 0) {
  host_values v;
  v.cpu = cpu;
  v.mem = mem;
  auto s = snap(v);
  s.mem_total_bytes = 8ull << 30;
  leased_load l;
  l.leases = 1;
  l.cpu_pct = leased_cpu;
  l.agent_cpu_pct = 0.5;
  l.rss_bytes = leased_rss;
  s.leased = l;
  return s;
}

} // namespace

TEST_F(quiet_test, leased_work_does_not_make_the_host_busy) {
  // A leased job burns one of two cores for the whole window: the host is at
  // 52% CPU, the owner's processes at 1.5%.
  quiet_assessment q;
  for (int i = 0; i < 70; ++i) {
    clock.advance(2);
    q = assessor.assess(leased_snap(52, 50));
  }
  EXPECT_EQ(q.state, quiet_state::quiet) << nlohmann::json(q.reasons).dump();
  EXPECT_NEAR(q.inputs["cpu_avg"].get<double>(), 52, 0.01);
  EXPECT_NEAR(q.inputs["cpu_foreign_avg"].get<double>(), 1.5, 0.01);
  EXPECT_NEAR(q.inputs["cpu_leased_avg"].get<double>(), 50.5, 0.01);
  EXPECT_TRUE(has_reason(q, "Leased work uses 50.5% CPU (2 min average); not counted"));
}

TEST_F(quiet_test, the_owners_load_beside_leased_work_is_named) {
  quiet_assessment q;
  for (int i = 0; i < 70; ++i) {
    clock.advance(2);
    q = assessor.assess(leased_snap(95, 50));
  }
  EXPECT_EQ(q.state, quiet_state::normal);
  EXPECT_TRUE(has_reason(q, "Other processes (2 min average) use 44.5% CPU, above the quiet "
                            "threshold 30%"))
    << nlohmann::json(q.reasons).dump();
  EXPECT_TRUE(has_reason(q, "Leased work uses 50.5% CPU"));
}

TEST_F(quiet_test, leased_memory_is_left_out_until_the_total_is_at_panic) {
  // 80% used, of which 4 GiB of 8 (50 points) is leased: the owner's 30% is quiet.
  auto q = step({5});
  for (int i = 0; i < 3; ++i) {
    clock.advance(2);
    q = assessor.assess(leased_snap(5, 0, 80, 4ull << 30));
  }
  EXPECT_EQ(q.state, quiet_state::quiet) << nlohmann::json(q.reasons).dump();
  EXPECT_NEAR(q.inputs["mem_foreign_pct"].get<double>(), 30, 0.01);
  EXPECT_EQ(q.inputs["mem_pct"], 80.0);
  // A full machine is PANIC whoever fills it.
  clock.advance(2);
  q = assessor.assess(leased_snap(5, 0, 97, 6ull << 30));
  EXPECT_EQ(q.state, quiet_state::panic);
  EXPECT_TRUE(has_reason(q, "Memory used 97.0% is above the panic threshold 95%"));
}

TEST_F(quiet_test, the_cpu_window_is_configurable) {
  quiet_thresholds th;
  th.cpu_window_sec = 10;
  assessor = quiet_assessor(th, [this] { return clock.mono; }, [this] { return clock.unix_now; });
  for (int i = 0; i < 10; ++i)
    step({90});
  // Ten quiet seconds later the 10 s window has forgotten the compile.
  quiet_assessment q;
  for (int i = 0; i < 7; ++i)
    q = step({2});
  EXPECT_EQ(q.inputs["cpu_window_sec"], 10.0);
  EXPECT_LT(q.inputs["cpu_foreign_avg"].get<double>(), 5);
  EXPECT_NE(q.state, quiet_state::busy);
}

// -- pressure stall and power ----------------------------------------------------

namespace {

host_snapshot with_pressure(host_snapshot s, double cpu_some, double mem_some, double io_some) {
  host_pressure p;
  p.cpu.some_avg60 = cpu_some;
  p.memory.some_avg60 = mem_some;
  p.io.some_avg60 = io_some;
  s.pressure = p;
  return s;
}

} // namespace

TEST_F(quiet_test, memory_stall_makes_a_host_busy_at_low_cpu_and_panic_revokes_through_memory) {
  // 5 % CPU, 30 % memory used, yet tasks wait for memory reclaim 45 % of the minute.
  quiet_assessment q;
  for (int i = 0; i < 20; ++i) {
    clock.advance(2);
    q = assessor.assess(with_pressure(snap({5}), 0, 45, 0));
  }
  EXPECT_EQ(q.state, quiet_state::busy) << nlohmann::json(q.reasons).dump();
  EXPECT_TRUE(has_reason(q, "Memory pressure (1 min) 45.0% is above the busy threshold 40%"));
  EXPECT_EQ(q.inputs["psi_memory_pct"], 45.0);
  clock.advance(2);
  q = assessor.assess(with_pressure(snap({5}), 0, 85, 0));
  EXPECT_EQ(q.state, quiet_state::panic);
  EXPECT_EQ(q.panic_by, std::vector<std::string>{"memory"});
}

TEST_F(quiet_test, cpu_stall_counts_only_while_no_leased_work_runs) {
  quiet_assessment owner, leased;
  for (int i = 0; i < 70; ++i) {
    clock.advance(2);
    owner = assessor.assess(with_pressure(snap({5}, "owner"), 85, 0, 0));
    auto s = leased_snap(52, 50);
    s.host_id = "leased";
    leased = assessor.assess(with_pressure(s, 85, 0, 0));
  }
  EXPECT_EQ(owner.state, quiet_state::busy) << nlohmann::json(owner.reasons).dump();
  EXPECT_TRUE(has_reason(owner, "CPU pressure (1 min) 85.0% is above the busy threshold 80%"));
  EXPECT_EQ(owner.inputs["psi_cpu_scored"], true);
  // A niced leased job waits for the CPU itself: its stall is not the owner's.
  EXPECT_EQ(leased.state, quiet_state::quiet) << nlohmann::json(leased.reasons).dump();
  EXPECT_EQ(leased.inputs["psi_cpu_scored"], false);
  EXPECT_EQ(leased.inputs["psi_cpu_pct"], 85.0) << "still reported";
}

TEST_F(quiet_test, a_host_without_psi_is_assessed_as_before_and_says_why) {
  auto s = snap({5});
  s.pressure_unavailable = "no /proc/pressure";
  clock.advance(2);
  auto q = assessor.assess(s);
  EXPECT_TRUE(q.inputs["psi_memory_pct"].is_null());
  EXPECT_EQ(q.inputs["psi_unavailable"], "no /proc/pressure");
  EXPECT_FALSE(q.inputs["pressures"].contains("psi_memory_pct"));
}

TEST_F(quiet_test, the_assessment_carries_the_hosts_power) {
  auto s = snap({5});
  host_power pw;
  pw.ac_online = false;
  pw.battery_pct = 64;
  pw.battery_status = "Discharging";
  s.power = pw;
  clock.advance(2);
  auto q = assessor.assess(s);
  ASSERT_TRUE(q.power);
  EXPECT_TRUE(q.power->on_battery());
  EXPECT_NE(std::find(q.reasons.begin(), q.reasons.end(),
                      "On battery (64 %, Discharging); lease.on_battery decides whether work "
                      "below HIGH runs"),
            q.reasons.end());
  auto back = quiet_assessment_from_json(to_json(q));
  ASSERT_TRUE(back.power);
  EXPECT_EQ(back.power->battery_pct, 64.0);
  EXPECT_EQ(back.power->ac_online, false);
}

// A niced leased job waiting for the CPU stalls the host's CPU too: with its
// group's own figure, the owner's CPU stall is the host's minus the leases'.
TEST_F(quiet_test, cpu_stall_of_the_leases_own_groups_is_not_the_owners) {
  auto s = snap({5});
  host_pressure host;
  host.cpu.some_avg60 = 60;
  host.memory.some_avg60 = 2;
  host.io.some_avg60 = 1;
  s.pressure = host;
  leased_load l;
  l.leases = 1;
  l.cpu_pct = 45;
  host_pressure mine;
  mine.cpu.some_avg60 = 55;
  mine.memory.some_avg60 = 1.5;
  l.pressure = mine;
  s.leased = l;
  clock.advance(2);
  auto q = assessor.assess(s);
  EXPECT_DOUBLE_EQ(q.inputs["psi_cpu_pct"].get<double>(), 5);
  EXPECT_TRUE(q.inputs["psi_cpu_scored"].get<bool>());
  EXPECT_DOUBLE_EQ(q.inputs["psi_cpu_leased_pct"].get<double>(), 55);
  EXPECT_DOUBLE_EQ(q.inputs["psi_memory_leased_pct"].get<double>(), 1.5);
  EXPECT_DOUBLE_EQ(q.inputs["psi_memory_pct"].get<double>(), 2) << "memory stall counts whoever";
  EXPECT_TRUE(q.inputs["psi_io_leased_pct"].is_null());

  // The owner's own CPU stall, beside the lease's, is scored.
  s.pressure->cpu.some_avg60 = 99;
  s.leased->pressure->cpu.some_avg60 = 10;
  clock.advance(2);
  auto busy = assessor.assess(s);
  EXPECT_DOUBLE_EQ(busy.inputs["psi_cpu_pct"].get<double>(), 89);
  EXPECT_NE(busy.state, quiet_state::quiet);
  bool named = false;
  for (auto& r : busy.reasons)
    named |= r.find("CPU pressure outside lull's leases") != std::string::npos;
  EXPECT_TRUE(named);
}

TEST_F(quiet_test, the_owners_gpu_use_is_named_and_carried_not_scored) {
  auto s = snap({5});
  gpu_device g;
  g.id = "card1";
  g.driver = "amdgpu";
  g.busy_pct = 85;
  g.owner_pct = 85;
  g.leased_pct = 0;
  s.gpus = {g};
  clock.advance(2);
  auto q = assessor.assess(s);
  EXPECT_EQ(q.state, quiet_state::quiet) << "a busy GPU holds GPU work only";
  EXPECT_DOUBLE_EQ(q.inputs["gpu_owner_pct"].get<double>(), 85);
  EXPECT_NE(std::find(q.reasons.begin(), q.reasons.end(),
                      "The owner uses GPU card1 (85 % busy); lease.gpu_owner_busy decides "
                      "whether GPU work runs"),
            q.reasons.end());
  ASSERT_EQ(q.gpus.size(), 1u);
}

TEST_F(quiet_test, the_assessment_carries_the_owner_and_names_a_host_in_use) {
  auto s = snap({5});
  owner_presence o;
  o.idle_sec = 12;
  o.sessions = 1;
  o.source = "logind";
  s.owner = o;
  clock.advance(2);
  auto q = assessor.assess(s);
  ASSERT_TRUE(q.owner);
  EXPECT_DOUBLE_EQ(q.owner->idle_sec, 12);
  EXPECT_EQ(q.state, quiet_state::quiet) << "somebody typing is not load: the lease table holds";
  bool named = false;
  for (auto& r : q.reasons)
    named |= r.rfind("Host in use: last input 12s ago (logind)", 0) == 0;
  EXPECT_TRUE(named) << q.reasons.size();
  auto back = quiet_assessment_from_json(to_json(q));
  ASSERT_TRUE(back.owner);
  EXPECT_EQ(back.owner->source, "logind");

  // Idle past quiet.owner_idle (300 s by default): not in use, no such line.
  s.owner->idle_sec = 301;
  clock.advance(2);
  for (auto& r : assessor.assess(s).reasons)
    EXPECT_EQ(r.find("Host in use"), std::string::npos) << r;
}
