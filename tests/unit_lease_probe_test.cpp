// The lease probe on /proc trees written by the test: what a lease's
// processes use, including double forks, a leader that exited while its
// children run, short-lived children, recycled pids, and cgroup v2 groups.

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "src/probe/lease_probe.hpp"

namespace fs = std::filesystem;
using namespace lull;

namespace {

/// A /proc tree with 100 clock ticks per second and 4 KiB pages.
class proc_tree {
public:
  proc_tree() {
    root_ = fs::temp_directory_path()
            / ("lull-lease-probe-" + std::to_string(::getpid()) + "-" + std::to_string(n_++));
    fs::remove_all(root_);
    fs::create_directories(root_ / "proc");
    uptime(1000);
  }
  ~proc_tree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  std::string root() const { return root_.string(); }

  void uptime(double sec) { write("proc/uptime", std::to_string(sec) + " 100.00\n"); }

  /// utime/stime/cutime/cstime in ticks, start in ticks after boot.
  void proc(int pid, int ppid, int pgrp, std::uint64_t start, std::uint64_t utime,
            std::uint64_t stime = 0, std::uint64_t cutime = 0, std::uint64_t cstime = 0,
            std::uint64_t rss_pages = 256, const std::string& comm = "work") {
    fs::create_directories(root_ / "proc" / std::to_string(pid));
    std::string stat = std::to_string(pid) + " (" + comm + ") R " + std::to_string(ppid) + " "
                       + std::to_string(pgrp) + " " + std::to_string(pgrp)
                       + " 0 -1 4194304 0 0 0 0 " + std::to_string(utime) + " "
                       + std::to_string(stime) + " " + std::to_string(cutime) + " "
                       + std::to_string(cstime) + " 20 0 1 0 " + std::to_string(start)
                       + " 100000000 " + std::to_string(rss_pages)
                       + " 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
    write("proc/" + std::to_string(pid) + "/stat", stat);
  }
  void io(int pid, std::uint64_t rd, std::uint64_t wr) {
    write("proc/" + std::to_string(pid) + "/io",
          "rchar: 0\nwchar: 0\nsyscr: 0\nsyscw: 0\nread_bytes: " + std::to_string(rd)
            + "\nwrite_bytes: " + std::to_string(wr) + "\ncancelled_write_bytes: 0\n");
  }
  /// What `lull run` puts in the environment of what it starts.
  void mark(int pid, const std::string& lease_id) {
    write("proc/" + std::to_string(pid) + "/environ",
          std::string("HOME=/home/w\0LULL_LEASE_ID=", 27) + lease_id + std::string("\0PATH=/bin\0", 11));
  }
  void gone(int pid) { fs::remove_all(root_ / "proc" / std::to_string(pid)); }

  void write(const std::string& rel, const std::string& text) {
    fs::create_directories((root_ / rel).parent_path());
    std::ofstream(root_ / rel, std::ios::trunc) << text;
  }

private:
  fs::path root_;
  static inline int n_ = 0;
};

lease_probe make_probe(const proc_tree& t) {
  lease_probe_options o;
  o.root = t.root();
  o.self_pid = -1;
  o.clk_tck = 100;
  o.page_size = 4096;
  return lease_probe(o);
}

const lease_usage& by_id(const leased_load& l, const std::string& id) {
  for (auto& u : l.per_lease)
    if (u.lease_id == id)
      return u;
  ADD_FAILURE() << "no lease " << id;
  static lease_usage none;
  return none;
}

const lease_usage& only(const leased_load& l) {
  EXPECT_EQ(l.per_lease.size(), 1u);
  return l.per_lease.front();
}

} // namespace

TEST(lease_probe, a_tree_of_three_burners_counts_all_of_them) {
  proc_tree t;
  t.proc(1, 0, 1, 1, 0, 0, 0, 0, 100, "init");
  t.proc(500, 1, 500, 90000, 0, 0, 0, 0, 100, "owner"); // not leased
  t.proc(100, 1, 100, 90000, 0);
  t.proc(101, 100, 100, 90010, 0);
  t.proc(102, 101, 100, 90020, 0);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  auto first = p.sample(0, 2);
  EXPECT_FALSE(only(first).cpu_core_pct); // no interval yet
  EXPECT_EQ(only(first).processes, 3);

  // 2 s later each used one full core; the owner's process too.
  t.uptime(1002);
  t.proc(100, 1, 100, 90000, 200);
  t.proc(101, 100, 100, 90010, 150, 50);
  t.proc(102, 101, 100, 90020, 200);
  t.proc(500, 1, 500, 90000, 200, 0, 0, 0, 100, "owner");
  auto l = p.sample(2, 2);
  ASSERT_TRUE(only(l).cpu_core_pct);
  EXPECT_DOUBLE_EQ(*only(l).cpu_core_pct, 300.0);
  EXPECT_EQ(only(l).source, "proc");
  EXPECT_EQ(only(l).rss_bytes, 3u * 256 * 4096);
  ASSERT_TRUE(l.cpu_pct);
  EXPECT_DOUBLE_EQ(*l.cpu_pct, 150.0); // of a 2-core host: the owner's share is not in it
  EXPECT_EQ(l.leases, 1);
  EXPECT_EQ(l.processes, 3);
}

TEST(lease_probe, a_double_fork_still_counts) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 0);
  t.proc(101, 100, 100, 90010, 0);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  // 101 forks 102 and exits; 102 is re-parented to init and starts its own
  // session (so not even the process group holds it).
  t.uptime(1002);
  t.gone(101);
  t.proc(102, 1, 102, 100050, 100);
  t.proc(100, 1, 100, 90000, 0);
  auto l = p.sample(2, 1);
  // 102 was never seen as a child of a counted process: only a cgroup would
  // catch this one. A child re-parented after it was seen keeps counting:
  EXPECT_EQ(only(l).processes, 1);

  proc_tree t2;
  t2.proc(100, 1, 100, 90000, 0);
  t2.proc(101, 100, 100, 90010, 0);
  t2.proc(102, 101, 100, 90020, 0);
  auto p2 = make_probe(t2);
  t2.mark(100, "L1");
  p2.set_leases({{"L1", 100, 90000, ""}});
  p2.sample(0, 1);
  t2.uptime(1002);
  t2.gone(101);
  t2.proc(102, 1, 102, 90020, 200); // setsid + re-parented, seen before
  t2.proc(100, 1, 100, 90000, 0);
  auto l2 = p2.sample(2, 1);
  EXPECT_EQ(only(l2).processes, 2);
  ASSERT_TRUE(only(l2).cpu_core_pct);
  EXPECT_DOUBLE_EQ(*only(l2).cpu_core_pct, 100.0);
}

TEST(lease_probe, the_process_group_catches_children_forked_between_samples) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 0);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  // Between samples: 100 forked 101, which forked 102 and exited; 102 lives
  // on under init but keeps the group. It started after the last sample, so
  // all of its time is this interval's.
  t.uptime(1002);
  t.proc(102, 1, 100, 100050, 100);
  auto l = p.sample(2, 1);
  EXPECT_EQ(only(l).processes, 2);
  ASSERT_TRUE(only(l).cpu_core_pct);
  EXPECT_DOUBLE_EQ(*only(l).cpu_core_pct, 50.0);
}

TEST(lease_probe, children_keep_counting_after_the_leader_exits) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 0);
  t.proc(101, 100, 100, 90010, 0);
  t.proc(102, 100, 100, 90020, 0);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  t.uptime(1002);
  t.gone(100);
  t.proc(101, 1, 100, 90010, 100);
  t.proc(102, 1, 100, 90020, 100);
  auto l = p.sample(2, 1);
  EXPECT_EQ(only(l).processes, 2);
  EXPECT_EQ(only(l).source, "proc");
  ASSERT_TRUE(only(l).cpu_core_pct);
  EXPECT_DOUBLE_EQ(*only(l).cpu_core_pct, 100.0);
  EXPECT_EQ(p.members("L1").size(), 2u);
}

TEST(lease_probe, short_lived_children_reaped_by_the_tree_are_counted_once) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 10);
  t.proc(101, 100, 100, 90010, 40);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  // 101 ran 60 more ticks and was reaped by 100 (its 100 ticks move into
  // 100's cutime); a compiler run that lived entirely between the samples
  // (80 ticks) was reaped too.
  t.uptime(1002);
  t.gone(101);
  t.proc(100, 1, 100, 90000, 10, 0, 100 + 80);
  auto l = p.sample(2, 1);
  ASSERT_TRUE(only(l).cpu_core_pct);
  EXPECT_DOUBLE_EQ(*only(l).cpu_core_pct, (60.0 + 80.0) / 2.0);
}

TEST(lease_probe, a_recycled_pid_is_never_counted) {
  proc_tree t;
  // The worker reported pid 100 started at tick 90000; pid 100 now belongs to
  // a process started later (the leased one is long gone).
  t.proc(100, 1, 100, 95000, 500, 0, 0, 0, 256, "ssh");
  t.proc(101, 100, 100, 95010, 500);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  t.uptime(1002);
  t.proc(100, 1, 100, 95000, 700, 0, 0, 0, 256, "ssh");
  auto l = p.sample(2, 1);
  EXPECT_EQ(only(l).processes, 0);
  // Its start time is not the claimed one: nothing of it counts.
  EXPECT_EQ(only(l).source, "gone");
  EXPECT_EQ(only(l).rss_bytes, 0u);
  EXPECT_DOUBLE_EQ(only(l).cpu_core_pct.value_or(-1), 0.0);

  // A member seen before whose pid is reused by someone else drops out too.
  proc_tree t2;
  t2.proc(100, 1, 100, 90000, 0);
  t2.proc(101, 100, 100, 90010, 0);
  auto p2 = make_probe(t2);
  t2.mark(100, "L1");
  p2.set_leases({{"L1", 100, 90000, ""}});
  p2.sample(0, 1);
  t2.uptime(1002);
  t2.proc(101, 1, 101, 100100, 50, 0, 0, 0, 256, "other");
  auto l2 = p2.sample(2, 1);
  EXPECT_EQ(only(l2).processes, 1);
}

TEST(lease_probe, io_rates_come_from_the_tree) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 0);
  t.io(100, 1000, 2000);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  t.uptime(1002);
  t.io(100, 1000 + 4096, 2000 + 8192);
  auto l = p.sample(2, 1);
  EXPECT_DOUBLE_EQ(only(l).read_bytes_per_sec.value_or(-1), 2048.0);
  EXPECT_DOUBLE_EQ(only(l).write_bytes_per_sec.value_or(-1), 4096.0);
  EXPECT_DOUBLE_EQ(l.write_bytes_per_sec.value_or(-1), 4096.0);
}

TEST(lease_probe, a_cgroup_is_exact_and_preferred) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 0);
  t.proc(300, 1, 300, 95000, 0); // escaped every tree, but in the group
  t.write("sys/fs/cgroup/lull/lull-lease-L1/cgroup.procs", "100\n300\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L1/cpu.stat",
          "usage_usec 1000000\nuser_usec 900000\nsystem_usec 100000\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L1/memory.current", "52428800\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L1/io.stat", "8:0 rbytes=100 wbytes=200 rios=1 wios=2\n");
  auto p = make_probe(t);
  p.set_leases({{"L1", 100, 90000, "/lull/lull-lease-L1"}});
  p.sample(0, 4);
  t.write("sys/fs/cgroup/lull/lull-lease-L1/cpu.stat",
          "usage_usec 4000000\nuser_usec 3600000\nsystem_usec 400000\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L1/io.stat",
          "8:0 rbytes=100 wbytes=2200 rios=1 wios=3\n259:0 rbytes=1000 wbytes=0\n");
  auto l = p.sample(2, 4);
  EXPECT_EQ(only(l).source, "cgroup");
  EXPECT_EQ(only(l).processes, 2);
  EXPECT_DOUBLE_EQ(only(l).cpu_core_pct.value_or(-1), 150.0);
  EXPECT_EQ(only(l).rss_bytes, 52428800u);
  EXPECT_DOUBLE_EQ(only(l).read_bytes_per_sec.value_or(-1), 500.0);
  EXPECT_DOUBLE_EQ(only(l).write_bytes_per_sec.value_or(-1), 1000.0);
  EXPECT_DOUBLE_EQ(l.cpu_pct.value_or(-1), 37.5);
}

// The leases' groups' own pressure stall: the largest of each figure over the
// leases, so the assessor can tell a niced job's CPU waits from the owner's.
TEST(lease_probe, the_leases_groups_report_their_own_pressure_stall) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 0);
  t.proc(200, 1, 200, 90500, 0);
  for (auto* g : {"L1", "L2"}) {
    auto dir = std::string("sys/fs/cgroup/lull/lull-lease-") + g;
    t.write(dir + "/cpu.stat", "usage_usec 1000\n");
  }
  t.write("sys/fs/cgroup/lull/lull-lease-L1/cgroup.procs", "100\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L2/cgroup.procs", "200\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L1/cpu.pressure",
          "some avg10=40.00 avg60=30.50 avg300=5.00 total=1\nfull avg10=0.00 avg60=0.00 "
          "avg300=0.00 total=0\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L2/cpu.pressure",
          "some avg10=10.00 avg60=35.25 avg300=5.00 total=1\n");
  t.write("sys/fs/cgroup/lull/lull-lease-L1/memory.pressure", "garbage\n");
  auto p = make_probe(t);
  auto none = p.sample(0, 4);
  EXPECT_FALSE(none.pressure) << "no lease yet: nothing of lull's stalls";
  p.set_leases({{"L1", 100, 90000, "/lull/lull-lease-L1"}, {"L2", 200, 90500, "/lull/lull-lease-L2"}});
  auto l = p.sample(2, 4);
  ASSERT_TRUE(l.pressure);
  EXPECT_DOUBLE_EQ(l.pressure->cpu.some_avg10.value_or(-1), 40.0);
  EXPECT_DOUBLE_EQ(l.pressure->cpu.some_avg60.value_or(-1), 35.25);
  EXPECT_FALSE(l.pressure->memory.some_avg60) << "a malformed file gives no figure, not 0";
  EXPECT_FALSE(l.pressure->io.some_avg60) << "no io.pressure: none";

  // Leases that are only process trees have no group to read.
  proc_tree bare;
  bare.proc(100, 1, 100, 90000, 0);
  auto q = make_probe(bare);
  q.set_leases({{"L1", 100, 90000, ""}});
  q.sample(0, 4);
  EXPECT_FALSE(q.sample(2, 4).pressure);
}

TEST(lease_probe, a_cgroup_path_that_climbs_out_is_refused) {
  proc_tree t;
  auto p = make_probe(t);
  EXPECT_FALSE(p.cgroup_dir("/../../etc"));
  EXPECT_FALSE(p.cgroup_dir("relative"));
  EXPECT_FALSE(p.cgroup_dir("/nowhere"));
}

TEST(lease_probe, leases_that_end_are_forgotten_and_new_ones_start_fresh) {
  proc_tree t;
  t.proc(100, 1, 100, 90000, 0);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  p.set_leases({});
  t.uptime(1002);
  auto l = p.sample(2, 1);
  EXPECT_EQ(l.leases, 0);
  EXPECT_TRUE(l.per_lease.empty());
  EXPECT_DOUBLE_EQ(l.cpu_pct.value_or(-1), 0.0);
  EXPECT_TRUE(p.members("L1").empty());
}

TEST(lease_probe, a_chain_reaped_in_one_interval_is_counted_once) {
  proc_tree t;
  // sh (100) -> timeout (101) -> burner (102): the burner had 100 ticks.
  t.proc(100, 1, 100, 90000, 0);
  t.proc(101, 100, 100, 90010, 0);
  t.proc(102, 101, 100, 90020, 100);
  auto p = make_probe(t);
  t.mark(100, "L1");
  p.set_leases({{"L1", 100, 90000, ""}});
  p.sample(0, 1);
  // The burner ran 50 more ticks, ended, was reaped by timeout, which ended
  // and was reaped by sh: sh's cutime now holds all 150.
  t.uptime(1002);
  t.gone(101);
  t.gone(102);
  t.proc(100, 1, 100, 90000, 0, 0, 150);
  auto l = p.sample(2, 1);
  EXPECT_DOUBLE_EQ(only(l).cpu_core_pct.value_or(-1), 25.0);
}

// A claim counts only what lull marked for the lease (docs/collectors.md,
// "Whose load"): the owner's processes named by a worker stay the owner's.

TEST(lease_probe, pid_1_and_a_foreign_cgroup_are_refused_and_not_counted) {
  proc_tree t;
  t.proc(1, 0, 1, 1, 0, 0, 0, 0, 100, "init");
  t.proc(500, 1, 500, 90000, 0, 0, 0, 0, 100, "owner");
  t.write("sys/fs/cgroup/cgroup.procs", "1\n500\n");
  t.write("sys/fs/cgroup/user.slice/cgroup.procs", "500\n");
  auto p = make_probe(t);
  p.set_leases({{"A", 1, std::nullopt, ""},
                {"B", 500, 90000, "/"},
                {"C", 500, 90000, "/user.slice"}});
  p.sample(0, 2, 1'000'000);
  t.uptime(1002);
  t.proc(500, 1, 500, 90000, 400, 0, 0, 0, 100, "owner"); // both cores
  auto l = p.sample(2, 2, 1'000'002);
  ASSERT_EQ(l.per_lease.size(), 3u);
  for (auto& u : l.per_lease) {
    EXPECT_EQ(u.source, "refused") << u.lease_id;
    EXPECT_EQ(u.processes, 0) << u.lease_id;
    EXPECT_FALSE(u.refused.empty()) << u.lease_id;
  }
  EXPECT_NE(l.per_lease[0].refused.find("init"), std::string::npos) << l.per_lease[0].refused;
  EXPECT_NE(l.per_lease[1].refused.find("not this lease's own"), std::string::npos);
  EXPECT_EQ(l.processes, 0);
  EXPECT_DOUBLE_EQ(l.cpu_pct.value_or(0), 0.0); // the owner's 100 % is not "leased"
}

TEST(lease_probe, a_pid_without_the_lease_marker_is_refused) {
  proc_tree t;
  t.proc(500, 1, 500, 90000, 0, 0, 0, 0, 100, "owner");
  t.write("proc/500/environ", std::string("HOME=/home/owner\0LULL_LEASE_ID=other\0", 38));
  t.proc(100, 1, 100, 90000, 0);
  t.mark(100, "L1");
  auto p = make_probe(t);
  p.set_leases({{"L1", 100, 90000, "", 999'950}, {"L2", 500, 90000, "", 999'950}});
  p.sample(0, 1, 1'000'000);
  t.uptime(1002);
  t.proc(100, 1, 100, 90000, 100);
  t.proc(500, 1, 500, 90000, 100, 0, 0, 0, 100, "owner");
  auto l = p.sample(2, 1, 1'000'002);
  ASSERT_EQ(l.per_lease.size(), 2u);
  EXPECT_EQ(l.per_lease[0].source, "proc");
  EXPECT_DOUBLE_EQ(l.per_lease[0].cpu_core_pct.value_or(-1), 50.0);
  EXPECT_EQ(l.per_lease[1].source, "refused");
  EXPECT_NE(l.per_lease[1].refused.find("LULL_LEASE_ID=L2"), std::string::npos)
    << l.per_lease[1].refused;
  EXPECT_DOUBLE_EQ(l.cpu_pct.value_or(-1), 50.0); // L1's only
}

TEST(lease_probe, an_unreadable_environment_counts_only_a_process_started_after_the_grant) {
  // lulld under DynamicUser cannot read another user's environ: the claim
  // must name a process younger than the lease that leads no session.
  proc_tree t; // uptime 1000 s; now = 1,000,000 (unix)
  t.proc(300, 1, 300, 99000, 0, 0, 0, 0, 100, "bash");   // 10 s old, a session leader
  t.proc(301, 300, 300, 90000, 0, 0, 0, 0, 100, "make"); // 100 s old
  t.proc(302, 300, 300, 99500, 0, 0, 0, 0, 100, "job");  // 5 s old
  auto p = make_probe(t);
  std::int64_t granted = 1'000'000 - 30;
  p.set_leases({{"S", 300, 99000, "", granted},
                {"O", 301, 90000, "", granted},
                {"Y", 302, 99500, "", granted},
                {"U", 302, 99500, "", 0}});
  auto l = p.sample(0, 1, 1'000'000);
  ASSERT_EQ(l.per_lease.size(), 4u);
  EXPECT_EQ(by_id(l, "S").source, "refused");
  EXPECT_NE(by_id(l, "S").refused.find("leads a session"), std::string::npos);
  EXPECT_EQ(by_id(l, "O").source, "refused");
  EXPECT_NE(by_id(l, "O").refused.find("started before the lease was granted"),
            std::string::npos);
  EXPECT_EQ(by_id(l, "Y").source, "proc");
  EXPECT_EQ(by_id(l, "Y").processes, 1);
  EXPECT_EQ(by_id(l, "U").source, "refused"); // no grant time: cannot tell
}
