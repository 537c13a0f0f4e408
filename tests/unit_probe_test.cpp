// The /proc parsers and host_probe on recorded fixture trees: an x86 laptop
// (this build machine's /proc), a Raspberry Pi 4 that is throttling, and a host
// without thermal zones or cpufreq.

#include <gtest/gtest.h>

#include "messages/host_snapshot.hpp"
#include "messages/util.hpp"
#include "src/probe/host_probe.hpp"
#include "src/probe/proc_parse.hpp"
#include "tests/fixture_tree.hpp"

using namespace lull;
using lull::test::fixture_tree;
using lull::test::slurp;

namespace {

host_snapshot two_readings(fixture_tree& tree, host_probe_options opts = {}) {
  opts.root = tree.root();
  if (opts.host_id.empty())
    opts.host_id = "h";
  host_probe probe(opts);
  auto first = probe.sample(1763900000, 100.0);
  EXPECT_FALSE(first.cpu_pct) << "CPU % needs two readings";
  EXPECT_FALSE(first.net_rx_bytes_per_sec) << "rates need two readings";
  tree.advance();
  return probe.sample(1763900002, 102.0);
}

const net_interface* iface(const host_snapshot& s, const std::string& name) {
  for (auto& i : s.interfaces)
    if (i.name == name)
      return &i;
  return nullptr;
}

} // namespace

// -- pure parsers ------------------------------------------------------------

TEST(proc_parse, stat_reads_total_cores_and_btime) {
  auto st = proc::parse_stat(slurp(test::fixture_dir("pi4-throttled") + "/proc/stat"));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->cores.size(), 4u);
  EXPECT_EQ(st->total.user, 1083562u);
  EXPECT_EQ(st->total.idle, 38254193u);
  EXPECT_EQ(st->boot_time, 1763805600);
}

TEST(proc_parse, stat_without_cpu_line_is_nullopt) {
  EXPECT_FALSE(proc::parse_stat("intr 1 2 3\nctxt 5\n"));
  EXPECT_FALSE(proc::parse_stat(""));
}

TEST(proc_parse, stat_skips_malformed_core_lines) {
  auto st = proc::parse_stat("cpu 1 2 3 4\ncpu0 1 2 x 4\ncpu1 1 2 3 4\n");
  ASSERT_TRUE(st);
  ASSERT_EQ(st->cores.size(), 2u); // cpu1 present; cpu0's slot default
  EXPECT_EQ(st->cores[1].idle, 4u);
}

TEST(proc_parse, cpu_percent_needs_time_to_pass_and_rejects_backwards_counters) {
  proc::cpu_times a{100, 0, 100, 800, 0, 0, 0, 0};
  proc::cpu_times b{150, 0, 150, 900, 0, 0, 0, 0};
  ASSERT_TRUE(proc::cpu_percent(a, b));
  EXPECT_DOUBLE_EQ(*proc::cpu_percent(a, b), 50.0);
  EXPECT_FALSE(proc::cpu_percent(a, a));
  EXPECT_FALSE(proc::cpu_percent(b, a));
}

TEST(proc_parse, meminfo_in_bytes_and_old_kernel_fallback) {
  auto m = proc::parse_meminfo(slurp(test::fixture_dir("pi4-throttled") + "/proc/meminfo"));
  EXPECT_EQ(m.total, 3884136ull * 1024);
  EXPECT_EQ(m.available, 971034ull * 1024);
  EXPECT_EQ(m.swap_free, 25600ull * 1024);
  auto old = proc::parse_meminfo("MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\n"
                                 "Cached: 200 kB\n");
  EXPECT_EQ(old.available, 310ull * 1024);
  auto none = proc::parse_meminfo("garbage\n");
  EXPECT_FALSE(none.total);
}

TEST(proc_parse, loadavg) {
  auto l = proc::parse_loadavg("3.41 2.87 1.95 5/312 28841\n");
  ASSERT_TRUE(l);
  EXPECT_DOUBLE_EQ(l->load1, 3.41);
  EXPECT_DOUBLE_EQ(l->load15, 1.95);
  EXPECT_FALSE(proc::parse_loadavg("3.41 x"));
}

TEST(proc_parse, net_dev_interfaces_and_byte_columns) {
  auto n = proc::parse_net_dev(slurp(test::fixture_dir("pi4-throttled") + "/proc/net/dev"));
  ASSERT_EQ(n.size(), 3u);
  EXPECT_EQ(n[1].name, "eth0");
  EXPECT_EQ(n[1].rx_bytes, 1234567890u);
  EXPECT_EQ(n[1].tx_bytes, 987654321u);
  auto x86 = proc::parse_net_dev(slurp(test::fixture_dir("x86-laptop") + "/proc/net/dev"));
  EXPECT_FALSE(x86.empty());
  EXPECT_TRUE(proc::parse_net_dev("").empty());
}

TEST(util, counter_delta_is_wrap_safe) {
  EXPECT_EQ(counter_delta(10, 25), 15u);
  EXPECT_EQ(counter_delta(4294967000ull, 704), 1000u); // 32-bit wrap
  EXPECT_FALSE(counter_delta(1ull << 40, 5));          // 64-bit reset
}

TEST(proc_parse, uptime_and_sysfs_integers) {
  EXPECT_DOUBLE_EQ(*proc::parse_uptime("96732.45 362811.20\n"), 96732.45);
  EXPECT_FALSE(proc::parse_uptime("abc"));
  EXPECT_EQ(proc::parse_int("81252\n"), 81252);
  EXPECT_EQ(proc::parse_int("0x10"), 16);
  EXPECT_FALSE(proc::parse_int("\n"));
  EXPECT_FALSE(proc::parse_int("12ab"));
}

TEST(proc_parse, get_throttled_is_hex_with_or_without_prefix) {
  EXPECT_EQ(proc::parse_hex("50005\n"), 0x50005);          // sysfs
  EXPECT_EQ(proc::parse_hex("throttled=0x50005\n"), 0x50005); // vcgencmd
  EXPECT_EQ(proc::parse_hex("0\n"), 0);
  EXPECT_FALSE(proc::parse_hex("zz"));
}

// -- host_probe on fixture trees ----------------------------------------------

TEST(host_probe, pi4_throttled) {
  fixture_tree tree("pi4-throttled");
  auto s = two_readings(tree, {"", "pi-kitchen", {"/"}});
  EXPECT_EQ(s.host_id, "pi-kitchen");
  EXPECT_EQ(s.cpu_count, 4);
  ASSERT_TRUE(s.cpu_pct);
  EXPECT_DOUBLE_EQ(*s.cpu_pct, 81.25);
  ASSERT_EQ(s.cpu_per_core_pct.size(), 4u);
  EXPECT_DOUBLE_EQ(*s.cpu_per_core_pct[0], 100.0);
  EXPECT_DOUBLE_EQ(*s.cpu_per_core_pct[3], 25.0);
  EXPECT_EQ(s.load1, 3.41);
  EXPECT_EQ(s.mem_used_pct, 75.0);
  EXPECT_EQ(s.mem_available_pct, 25.0);
  EXPECT_EQ(s.swap_used_pct, 75.0);
  EXPECT_EQ(s.swap_used_bytes, (102396ull - 25600ull) * 1024);
  EXPECT_EQ(s.cpu_temp_c, 81.25);
  EXPECT_EQ(s.cpu_freq_mhz, 1500.0);
  EXPECT_EQ(s.boot_time, 1763805600);
  EXPECT_DOUBLE_EQ(*s.uptime_sec, 96732.45);
  ASSERT_TRUE(s.throttling);
  EXPECT_EQ(s.throttling->raw, 0x50005u);
  EXPECT_TRUE(s.throttling->under_voltage);
  EXPECT_TRUE(s.throttling->throttled);
  EXPECT_FALSE(s.throttling->freq_capped);
  EXPECT_FALSE(s.throttling->soft_temp_limit);
  EXPECT_TRUE(s.throttling->under_voltage_occurred);
  EXPECT_TRUE(s.throttling->throttled_occurred);
  EXPECT_FALSE(s.throttling->freq_capped_occurred);
  // Rates over 2 s; wlan0's 32-bit rx counter wrapped between the readings.
  auto* eth = iface(s, "eth0");
  ASSERT_TRUE(eth);
  EXPECT_EQ(eth->rx_bytes_per_sec, 100000.0);
  EXPECT_EQ(eth->tx_bytes_per_sec, 50000.0);
  auto* wlan = iface(s, "wlan0");
  ASSERT_TRUE(wlan);
  EXPECT_EQ(wlan->rx_bytes_per_sec, 500.0);
  EXPECT_EQ(s.net_rx_bytes_per_sec, 100500.0); // lo excluded
  EXPECT_EQ(s.net_tx_bytes_per_sec, 55000.0);
  EXPECT_TRUE(s.errors.empty()) << s.errors.front();
  // The JSON decodes back to the same values.
  auto back = host_snapshot_from_json(to_json(s));
  EXPECT_EQ(back.throttling->raw, 0x50005u);
  EXPECT_EQ(back.cpu_pct, s.cpu_pct);
  EXPECT_EQ(to_json(s)["cpu"]["throttling"]["raw"], "0x50005");
}

TEST(host_probe, x86_laptop_recorded) {
  fixture_tree tree("x86-laptop");
  auto s = two_readings(tree);
  EXPECT_EQ(s.cpu_count, 2);
  ASSERT_TRUE(s.cpu_pct);
  EXPECT_DOUBLE_EQ(*s.cpu_pct, 100.0); // recorded during a compile
  EXPECT_EQ(s.mem_total_bytes, 24684096ull * 1024);
  EXPECT_EQ(s.swap_total_bytes, 0u);
  EXPECT_EQ(s.swap_used_pct, 0.0); // no swap is 0 %, not a division by zero
  // The package sensor is preferred over ACPI's zone.
  EXPECT_EQ(s.cpu_temp_c, 52.0);
  EXPECT_EQ(s.cpu_freq_mhz, 2100.0); // mean of 2.4 and 1.8 GHz
  EXPECT_FALSE(s.throttling);        // not a Pi
  ASSERT_TRUE(iface(s, "eth0"));
  EXPECT_EQ(iface(s, "eth0")->rx_bytes_per_sec, 0.0);
  ASSERT_EQ(s.disks.size(), 1u);
  EXPECT_TRUE(s.disks[0].free_pct);
  EXPECT_TRUE(s.errors.empty());
}

TEST(host_probe, no_thermal_zone_is_null_not_a_crash) {
  fixture_tree tree("no-thermal");
  auto s = two_readings(tree);
  EXPECT_TRUE(s.cpu_pct);
  EXPECT_FALSE(s.cpu_temp_c);
  EXPECT_FALSE(s.cpu_freq_mhz);
  EXPECT_FALSE(s.throttling);
  EXPECT_TRUE(s.errors.empty());
  auto j = to_json(s);
  EXPECT_TRUE(j["cpu"]["temp_c"].is_null());
  EXPECT_TRUE(j["cpu"]["throttling"].is_null());
}

TEST(host_probe, temperature_outside_range_becomes_null_with_an_error) {
  fixture_tree tree("pi4-throttled");
  test::overwrite(tree.path("sys/class/thermal/thermal_zone0/temp"), "130500\n");
  auto s = two_readings(tree);
  EXPECT_FALSE(s.cpu_temp_c);
  ASSERT_EQ(s.errors.size(), 1u);
  EXPECT_NE(s.errors[0].find("cpu.temp_c"), std::string::npos);
  EXPECT_NE(s.errors[0].find("130.5"), std::string::npos);
}

TEST(host_probe, missing_root_reports_errors_and_nulls) {
  host_probe probe({"/nonexistent/lull-root", "h", {"/"}});
  auto s = probe.sample(1763900000, 1.0);
  EXPECT_FALSE(s.cpu_count);
  EXPECT_FALSE(s.mem_total_bytes);
  EXPECT_FALSE(s.load1);
  EXPECT_FALSE(s.uptime_sec);
  EXPECT_GE(s.errors.size(), 3u);
  EXPECT_FALSE(s.disks.at(0).free_pct);
  EXPECT_NO_THROW(to_json(s));
}

TEST(host_probe, a_vanished_file_mid_run_is_reported_not_fatal) {
  fixture_tree tree("pi4-throttled");
  host_probe probe({tree.root(), "h", {"/"}});
  probe.sample(1, 1.0);
  test::overwrite(tree.path("proc/stat"), "garbage\n");
  auto s = probe.sample(3, 3.0);
  EXPECT_FALSE(s.cpu_pct);
  EXPECT_FALSE(s.errors.empty());
}

// -- pressure stall and power --------------------------------------------------

TEST(proc_parse, pressure_lines_some_and_full) {
  auto p = proc::parse_pressure("some avg10=15.52 avg60=11.30 avg300=19.95 total=442206295\n"
                                "full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
  EXPECT_EQ(p.some.avg10, 15.52);
  EXPECT_EQ(p.some.avg60, 11.30);
  EXPECT_EQ(p.full.avg60, 0.0);
  // Before Linux 5.13 the cpu file has no full line; garbage is not a figure.
  auto old = proc::parse_pressure("some avg10=1.00 avg60=nope avg300=0.00 total=1\n");
  EXPECT_EQ(old.some.avg10, 1.0);
  EXPECT_FALSE(old.some.avg60);
  EXPECT_FALSE(old.full.avg10);
  EXPECT_FALSE(proc::parse_pressure("some avg10=250.0\n").some.avg10) << "a share is 0-100";
}

TEST(host_probe, laptop_on_battery_with_pressure_stall) {
  fixture_tree tree("x86-laptop");
  auto s = two_readings(tree);
  ASSERT_TRUE(s.pressure) << s.pressure_unavailable;
  EXPECT_EQ(s.pressure->cpu.some_avg60, 11.30);
  EXPECT_EQ(s.pressure->memory.some_avg60, 12.50);
  EXPECT_EQ(s.pressure->memory.full_avg10, 1.00);
  EXPECT_EQ(s.pressure->io.some_avg60, 0.40);
  ASSERT_TRUE(s.power);
  EXPECT_EQ(s.power->ac_online, false);
  EXPECT_EQ(s.power->battery_pct, 71.0) << "the mouse's 5 % battery does not count";
  EXPECT_EQ(s.power->battery_status, "Discharging");
  EXPECT_TRUE(s.power->on_battery());
  // Back on the charger: the next reading says so.
  test::overwrite(tree.path("sys/class/power_supply/AC/online"), "1\n");
  host_probe probe({tree.root(), "h", {"/"}});
  auto again = probe.sample(1763900004, 104.0);
  ASSERT_TRUE(again.power);
  EXPECT_EQ(again.power->ac_online, true);
  EXPECT_FALSE(again.power->on_battery());
  // Both travel on the wire and come back the same.
  auto back = host_snapshot_from_json(to_json(s));
  ASSERT_TRUE(back.pressure);
  EXPECT_EQ(back.pressure->memory.some_avg60, 12.50);
  ASSERT_TRUE(back.power);
  EXPECT_EQ(back.power->battery_pct, 71.0);
  EXPECT_EQ(to_json(s)["power"]["on_battery"], true);
}

TEST(host_probe, a_host_without_psi_or_power_supplies_says_so) {
  fixture_tree tree("pi4-throttled");
  auto s = two_readings(tree);
  EXPECT_FALSE(s.pressure);
  EXPECT_NE(s.pressure_unavailable.find("no /proc/pressure"), std::string::npos)
    << s.pressure_unavailable;
  EXPECT_FALSE(s.power) << "a Pi on mains reports no supplies: never held for power";
  auto j = to_json(s);
  EXPECT_TRUE(j["pressure"].is_null());
  EXPECT_EQ(j["pressure_unavailable"], s.pressure_unavailable);
}

TEST(host_snapshot, pressure_and_power_out_of_range_are_dropped_not_trusted) {
  fixture_tree tree("x86-laptop");
  auto j = to_json(two_readings(tree));
  j["pressure"]["memory"]["some_avg60"] = 400;
  j["power"]["battery_pct"] = -3;
  j["power"]["ac_online"] = "yes";
  auto s = host_snapshot_from_json(j);
  ASSERT_TRUE(s.pressure);
  EXPECT_FALSE(s.pressure->memory.some_avg60);
  ASSERT_TRUE(s.power);
  EXPECT_FALSE(s.power->battery_pct);
  EXPECT_FALSE(s.power->ac_online);
  EXPECT_FALSE(s.power->on_battery()) << "no trusted battery figure: not held";
}
