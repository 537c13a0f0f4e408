// The /proc parsers and host_probe on recorded fixture trees: an x86 laptop
// (this build machine's /proc), a Raspberry Pi 4 that is throttling, and a host
// without thermal zones or cpufreq.

#include <gtest/gtest.h>

#include "messages/host_snapshot.hpp"
#include "messages/util.hpp"
#include "src/probe/gpu_probe.hpp"
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

// -- GPUs ------------------------------------------------------------------------
// x86-laptop has an Intel iGPU (card0, i915: busy from its clients' DRM
// fdinfo) and an AMD dGPU (card1, amdgpu: gpu_busy_percent and VRAM). The
// owner's browser (pid 1201) holds one i915 client on two fds; a lease's
// encoder (pid 1305) uses the i915 video engines and the amdgpu; pid 1400's
// fdinfo is malformed.

TEST(proc_parse, drm_fdinfo_present_absent_and_malformed) {
  auto dir = test::fixture_dir("x86-laptop") + "/proc/";
  auto c = proc::parse_drm_fdinfo(slurp(dir + "1305/fdinfo/5.1"));
  ASSERT_TRUE(c);
  EXPECT_EQ(c->driver, "i915");
  EXPECT_EQ(c->pdev, "0000:00:02.0");
  EXPECT_EQ(c->client_id, 14u);
  ASSERT_EQ(c->engine_ns.size(), 4u);
  EXPECT_EQ(c->engine_ns[2], (std::pair<std::string, std::uint64_t>{"video", 22400000000u}));
  ASSERT_EQ(c->engine_capacity.size(), 1u);
  EXPECT_EQ(c->engine_capacity[0], (std::pair<std::string, int>{"video", 2}));
  // /dev/null's fdinfo is no DRM client; a client id that is no number is
  // not trusted, whatever engine time the file claims.
  EXPECT_FALSE(proc::parse_drm_fdinfo(slurp(dir + "1305/fdinfo/0")));
  EXPECT_FALSE(proc::parse_drm_fdinfo(slurp(dir + "1400/fdinfo/4")));
  EXPECT_FALSE(proc::parse_drm_fdinfo(""));
  // An engine line without "ns" is left out, the rest stays.
  auto odd = proc::parse_drm_fdinfo("drm-driver:\tv3d\ndrm-client-id:\t3\n"
                                    "drm-engine-bin:\t12 ns\ndrm-engine-render:\t77\n");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->pdev.empty()) << "a platform device has no drm-pdev";
  ASSERT_EQ(odd->engine_ns.size(), 1u);
  EXPECT_EQ(odd->engine_ns[0].first, "bin");
  EXPECT_EQ(proc::uevent_value("DRIVER=amdgpu\nPCI_ID=1002:73FF\n", "PCI_ID"), "1002:73FF");
  EXPECT_FALSE(proc::uevent_value("DRIVER=amdgpu\n", "PCI"));
}

TEST(gpu_probe, busy_vram_and_the_leases_share_per_gpu) {
  fixture_tree tree("x86-laptop");
  gpu_probe probe({tree.root()});
  std::set<int> leased{1305};
  auto first = probe.sample(100.0, leased);
  ASSERT_EQ(first.gpus.size(), 2u) << "card0-eDP-1 is a connector, renderD128 a node";
  EXPECT_TRUE(first.unavailable.empty());
  auto& intel = first.gpus[0];
  EXPECT_EQ(intel.id, "card0");
  EXPECT_EQ(intel.driver, "i915");
  EXPECT_EQ(intel.vendor, "8086");
  EXPECT_FALSE(intel.busy_pct) << "engine time needs two samples";
  EXPECT_EQ(intel.unavailable, "busy time from DRM fdinfo needs two samples");
  EXPECT_FALSE(intel.vram_total_mb) << "an iGPU has no VRAM of its own";
  auto& amd = first.gpus[1];
  EXPECT_EQ(amd.id, "card1");
  EXPECT_EQ(amd.vendor, "1002");
  EXPECT_EQ(amd.busy_pct, 37.0);
  EXPECT_EQ(amd.source, "gpu_busy_percent");
  EXPECT_EQ(amd.vram_used_mb, 1024.0);
  EXPECT_EQ(amd.vram_total_mb, 8176.0);
  EXPECT_FALSE(amd.owner_pct) << "not the lease's own work taken for the owner's";

  tree.advance();
  auto s = probe.sample(102.0, leased);
  ASSERT_EQ(s.gpus.size(), 2u);
  // i915 over 2 s: render 0.8 s of the owner's client (on two fds, counted
  // once) + 0.1 s leased = 45 %; video 2.4 s leased over 2 engines = 60 %,
  // the busiest engine. The owner keeps the render engine 40 % busy.
  auto& i2 = s.gpus[0];
  EXPECT_EQ(i2.source, "fdinfo");
  EXPECT_EQ(i2.busy_pct, 60.0);
  EXPECT_EQ(i2.leased_pct, 60.0);
  EXPECT_EQ(i2.owner_pct, 40.0);
  EXPECT_TRUE(i2.unavailable.empty()) << i2.unavailable;
  // amdgpu: 64 % busy, of which the lease's gfx time 0.9 s / 2 s = 45 %.
  auto& a2 = s.gpus[1];
  EXPECT_EQ(a2.busy_pct, 64.0);
  EXPECT_EQ(a2.leased_pct, 45.0);
  EXPECT_EQ(a2.owner_pct, 19.0);
  EXPECT_LE(probe.fdinfo_read(), 5u);
}

TEST(gpu_probe, without_leases_all_use_is_the_owners) {
  fixture_tree tree("x86-laptop");
  gpu_probe probe({tree.root()});
  probe.sample(100.0, {});
  tree.advance();
  auto s = probe.sample(102.0, {});
  ASSERT_EQ(s.gpus.size(), 2u);
  EXPECT_EQ(s.gpus[0].busy_pct, 60.0);
  EXPECT_EQ(s.gpus[0].leased_pct, 0.0);
  EXPECT_EQ(s.gpus[0].owner_pct, 60.0);
  EXPECT_EQ(s.gpus[1].owner_pct, 64.0);
}

TEST(gpu_probe, a_lease_that_just_opened_the_gpu_is_not_taken_for_the_owner) {
  fixture_tree tree("x86-laptop");
  gpu_probe probe({tree.root()});
  probe.sample(100.0, {}); // the encoder is not a lease's yet
  tree.advance();
  auto s = probe.sample(102.0, {1305});
  // Its client was seen before as someone else's: from now on it is the
  // lease's, and the owner's share is what the others do.
  EXPECT_EQ(s.gpus[1].leased_pct, 45.0);
  EXPECT_EQ(s.gpus[1].owner_pct, 19.0);
}

TEST(gpu_probe, no_gpu_only_a_framebuffer_or_a_malformed_busy_file_is_null_with_a_reason) {
  fixture_tree pi("pi4-throttled");
  auto none = gpu_probe({pi.root()}).sample(100.0, {});
  EXPECT_TRUE(none.gpus.empty());
  EXPECT_EQ(none.unavailable, "no GPU: /sys/class/drm has no card");
  fixture_tree vm("no-thermal");
  auto fb = gpu_probe({vm.root()}).sample(100.0, {});
  EXPECT_TRUE(fb.gpus.empty());
  EXPECT_EQ(fb.unavailable,
            "no GPU: /sys/class/drm has only display devices (card0 (simple-framebuffer))");

  fixture_tree tree("x86-laptop");
  gpu_probe probe({tree.root()});
  test::overwrite(tree.path("sys/class/drm/card1/device/gpu_busy_percent"), "busy\n");
  test::overwrite(tree.path("sys/class/drm/card1/device/mem_info_vram_used"), "9999999999999\n");
  auto s = probe.sample(100.0, {});
  auto& amd = s.gpus[1];
  EXPECT_FALSE(amd.busy_pct);
  EXPECT_FALSE(amd.owner_pct) << "no figure, no guess";
  EXPECT_NE(amd.unavailable.find("no busy % (0-100) in "), std::string::npos) << amd.unavailable;
  EXPECT_EQ(amd.vram_total_mb, 8176.0);
  EXPECT_FALSE(amd.vram_used_mb) << "more used than there is";
}

TEST(gpu_probe, past_its_fdinfo_budget_busy_is_null_not_a_part) {
  fixture_tree tree("x86-laptop");
  gpu_probe_options opts;
  opts.root = tree.root();
  opts.max_fdinfo = 2;
  gpu_probe probe(opts);
  probe.sample(100.0, {});
  tree.advance();
  auto s = probe.sample(102.0, {});
  EXPECT_EQ(probe.fdinfo_read(), 2u);
  EXPECT_FALSE(s.gpus[0].busy_pct);
  EXPECT_EQ(s.gpus[0].unavailable.rfind("more DRM clients than lull reads per sample", 0), 0u)
    << s.gpus[0].unavailable;
  EXPECT_EQ(s.gpus[1].busy_pct, 64.0) << "the amdgpu's own figure needs no fdinfo";
}

TEST(host_snapshot, gpus_round_trip_and_are_bounded) {
  fixture_tree tree("x86-laptop");
  gpu_probe probe({tree.root()});
  probe.sample(100.0, {1305});
  tree.advance();
  host_snapshot s;
  s.host_id = "laptop";
  s.collected_at = 1763900002;
  s.gpus = probe.sample(102.0, {1305}).gpus;
  auto j = to_json(s);
  EXPECT_EQ(j["gpus"][1]["owner_pct"], 19.0);
  EXPECT_TRUE(j["gpu_unavailable"].is_null());
  auto back = host_snapshot_from_json(j);
  ASSERT_EQ(back.gpus.size(), 2u);
  EXPECT_EQ(back.gpus[0].id, "card0");
  EXPECT_EQ(back.gpus[0].source, "fdinfo");
  EXPECT_EQ(back.gpus[0].owner_pct, 40.0);
  EXPECT_EQ(back.gpus[1].vram_total_mb, 8176.0);
  EXPECT_EQ(back.gpus[1].leased_pct, 45.0);

  // From the bus: out-of-range figures dropped, shares at most the whole,
  // texts cut, entries without an id skipped, at most 16 GPUs.
  j["gpus"][0]["busy_pct"] = 250;
  j["gpus"][1]["leased_pct"] = 90;
  j["gpus"][1]["driver"] = std::string(500, 'x');
  j["gpus"][1]["vram_used_mb"] = -1;
  j["gpus"].push_back({{"driver", "ghost"}});
  for (int i = 0; i < 40; ++i)
    j["gpus"].push_back({{"id", "card" + std::to_string(i + 2)}, {"busy_pct", 1}});
  back = host_snapshot_from_json(j);
  ASSERT_EQ(back.gpus.size(), host_snapshot_limits::max_gpus);
  EXPECT_FALSE(back.gpus[0].busy_pct);
  EXPECT_FALSE(back.gpus[0].owner_pct) << "no busy figure, no owner's share of it";
  EXPECT_EQ(back.gpus[1].leased_pct, 64.0);
  EXPECT_LE(back.gpus[1].driver.size(), host_snapshot_limits::max_gpu_text_bytes);
  EXPECT_FALSE(back.gpus[1].vram_used_mb);
  EXPECT_EQ(back.gpus[2].id, "card2");

  // A host without a GPU says why; an old agent sends neither.
  host_snapshot pi;
  pi.host_id = "pi";
  pi.collected_at = 1763900002;
  pi.gpu_unavailable = "no GPU: /sys/class/drm has no card";
  auto pj = to_json(pi);
  EXPECT_TRUE(pj["gpus"].is_null());
  EXPECT_EQ(host_snapshot_from_json(pj).gpu_unavailable, pi.gpu_unavailable);
  pj.erase("gpus");
  pj.erase("gpu_unavailable");
  auto old = host_snapshot_from_json(pj);
  EXPECT_TRUE(old.gpus.empty());
  EXPECT_TRUE(old.gpu_unavailable.empty());
}

TEST(gpu_probe, engine_time_between_samples_new_and_reset_clients) {
  drm_clients before, now;
  auto client = [](bool leased, std::uint64_t render_ns) {
    drm_client_sample c;
    c.leased = leased;
    c.has_engines = true;
    c.engine_ns["render"] = render_ns;
    return c;
  };
  before[{0, 1}] = client(false, 1000000000);
  now[{0, 1}] = client(false, 1500000000);   // the owner: +0.5 s
  now[{0, 2}] = client(false, 90000000000);  // the owner's, new: its past is not this interval's
  now[{0, 3}] = client(true, 400000000);     // a lease's, new: all of it is its work just begun
  before[{0, 4}] = client(false, 7000000000);
  now[{0, 4}] = client(false, 10);           // counter went back (reopened): nothing
  auto use = drm_card_busy(before, now, 2.0, 1);
  ASSERT_EQ(use.size(), 1u);
  EXPECT_DOUBLE_EQ(use[0].busy_pct, 45.0);
  EXPECT_DOUBLE_EQ(use[0].leased_pct, 20.0);
  EXPECT_DOUBLE_EQ(use[0].owner_pct, 25.0);
  EXPECT_TRUE(use[0].engines);
  now[{0, 5}] = drm_client_sample{}; // a client without engine lines (nvidia-drm)
  EXPECT_FALSE(drm_card_busy(before, now, 2.0, 1)[0].engines);
}
