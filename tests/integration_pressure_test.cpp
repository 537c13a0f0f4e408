// Pressure stall, end to end on this machine's own /proc/pressure: lulld, a
// real Mosquitto, and a LOW lease whose command `lull run` runs in a cgroup
// of its own and which burns CPU. The lease's burner leaves the host QUIET
// (its CPU and its group's own CPU stall are lull's, not the owner's). Then
// a memory hog outside any lease, squeezed into a small memory cgroup so it
// reclaims all the time, raises the host's memory stall: the host turns
// BUSY through memory pressure and the lease is suspended.
//
// The hog needs a memory cgroup the test may create (root, and the memory
// controller on cgroup v1 or v2) and a kernel with PSI; without them the test
// says so and is skipped.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <cstdlib>
#include <fstream>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;
namespace fs = std::filesystem;

namespace {

json parse(const mqtt_message& m) { return json::parse(m.payload, nullptr, false); }

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

bool write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  out.flush();
  return static_cast<bool>(out);
}

/// A memory cgroup limited to `limit_bytes`, made by the test and removed
/// with it: the v2 hierarchy's when its memory controller is enabled for
/// children, else the v1 memory hierarchy's.
struct memory_group {
  std::string dir, procs;
  bool ok = false;
  std::string why;

  explicit memory_group(std::size_t limit_bytes) {
    auto name = "lull-test-hog-" + std::to_string(::getpid());
    std::string v2;
    std::ifstream mounts("/proc/mounts");
    std::string dev, at, type, rest;
    while (mounts >> dev >> at >> type && std::getline(mounts, rest))
      if (type == "cgroup2" && v2.empty())
        v2 = at;
    if (!v2.empty() && slurp(v2 + "/cgroup.subtree_control").find("memory") != std::string::npos
        && try_make(v2 + "/" + name, "memory.max", limit_bytes))
      return;
    if (fs::exists("/sys/fs/cgroup/memory/memory.limit_in_bytes")
        && try_make("/sys/fs/cgroup/memory/" + name, "memory.limit_in_bytes", limit_bytes))
      return;
    if (why.empty())
      why = "no memory cgroup controller on cgroup v1 or v2";
  }

  bool try_make(const std::string& d, const char* limit_file, std::size_t limit) {
    std::error_code ec;
    if (!fs::create_directory(d, ec)) {
      why = "cannot create " + d + ": " + ec.message();
      return false;
    }
    dir = d;
    if (!write_file(d + "/" + limit_file, std::to_string(limit))) {
      why = "cannot set " + d + "/" + limit_file;
      return false;
    }
    procs = d + "/cgroup.procs";
    ok = true;
    return true;
  }

  ~memory_group() {
    if (!dir.empty())
      ::rmdir(dir.c_str());
  }
};

struct proc_guard {
  pid_t pid = -1, group = -1;
  ~proc_guard() {
    if (group > 0) {
      ::kill(-group, SIGCONT);
      ::kill(-group, SIGKILL);
    }
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

} // namespace

TEST(pressure, a_memory_hog_suspends_a_low_lease_whose_own_burner_does_not) {
  if (!fs::exists("/proc/pressure/memory"))
    GTEST_SKIP() << "this kernel has no pressure stall information (/proc/pressure)";
  memory_group hog_group(32u << 20);
  if (!hog_group.ok)
    GTEST_SKIP() << "the memory hog needs a memory cgroup: " << hog_group.why;

  // Memory stall BUSY at 1 % of the last minute above what the machine
  // shows now (the hog adds that within seconds; a minute's average of an
  // earlier stall may linger); CPU and the other stalls at thresholds no
  // reading reaches, so a busy test machine stays QUIET and only memory
  // pressure counts. (The burner's CPU being lull's, not the owner's, is
  // integration_whose_load's; here it must not count as memory stall.)
  double base = 0;
  {
    auto line = slurp("/proc/pressure/memory");
    auto at = line.find("avg60=");
    if (at != std::string::npos)
      base = std::atof(line.c_str() + at + 6);
  }
  char mem_thresholds[96];
  std::snprintf(mem_thresholds, sizeof mem_thresholds, "0,%.2f,%.2f,95", base + 0.5, base + 1.0);
  broker b;
  lulld d(lulld_args(b.uri(), "psi",
                     {"--interval", "500ms", "--quiet-cpu", "0,400,500,600", "--quiet-cpu-window",
                      "5s", "--quiet-psi-cpu", "0,400,500,600", "--quiet-psi-io", "0,400,500,600",
                      "--quiet-psi-memory", mem_thresholds, "--quiet-hysteresis", "1",
                      "--lease-suspend-after", "1s", "--lease-capacity-units", "100"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("stats/host/psi/quiet");
  c.subscribe("scheduler/host/psi/leases");
  c.subscribe("scheduler/events");
  auto quiet = [](const mqtt_message& m) {
    return m.topic == "stats/host/psi/quiet" && parse(m).value("state", "") == "QUIET";
  };
  ASSERT_TRUE(c.wait_for(quiet, 30s)) << "the host never became QUIET: " << d.log();

  // The lease's burner, in the cgroup `lull run` makes for it.
  spawn_options o;
  o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "pw", "run",
            "--priority", "LOW", "--host", "psi", "--", "sh", "-c", "while :; do :; done"};
  o.stdout_path = "/dev/null";
  o.stderr_path = "/dev/null";
  proc_guard run;
  auto pid = spawn(o);
  ASSERT_TRUE(pid);
  run.pid = *pid;
  auto leases = c.wait_for(
    [&](const mqtt_message& m) {
      if (m.topic != "scheduler/host/psi/leases")
        return false;
      auto j = parse(m);
      return j.is_object() && j["leases"].size() == 1 && j["leases"][0].contains("pid");
    },
    30s);
  ASSERT_TRUE(leases) << "lull run never reported its command: " << d.log();
  auto lease_id = parse(*leases)["leases"][0]["lease_id"].get<std::string>();
  pid_t burner = parse(*leases)["leases"][0]["pid"].get<pid_t>();
  bool own_group = !parse(*leases)["leases"][0].value("cgroup", "").empty();
  run.group = burner;

  // Once the lease's processes are measured and the 5 s CPU window holds
  // only such samples (before, the burner is anyone's), burning for 8 s:
  // every assessment stays QUIET, and no suspension.
  auto measured = c.wait_for(
    [](const mqtt_message& m) {
      return m.topic == "stats/host/psi/quiet"
             && parse(m)["inputs"].value("leases_measured", 0) >= 1;
    },
    15s);
  ASSERT_TRUE(measured) << "lulld never measured the lease's processes: " << d.log();
  // Wait out the window on the assessments themselves, each read once.
  std::set<std::string> seen;
  auto next_assessment = [&](clk::time_point not_before) {
    return c.wait_for(
      [&](const mqtt_message& m) {
        return m.topic == "stats/host/psi/quiet" && seen.insert(m.payload).second
               && clk::now() >= not_before;
      },
      10s);
  };
  ASSERT_TRUE(next_assessment(clk::now() + 5500ms)) << d.log();
  auto burn_until = clk::now() + 8s;
  int assessed = 0, group_stall_seen = 0;
  while (clk::now() < burn_until) {
    auto m = next_assessment(clk::now());
    ASSERT_TRUE(m) << d.log();
    auto a = parse(*m);
    ++assessed;
    EXPECT_EQ(a.value("state", ""), "QUIET") << "the lease's own burner made the host "
                                             << a.dump();
    group_stall_seen += a["inputs"]["psi_cpu_leased_pct"].is_number();
  }
  // In a group of its own, the lease's own CPU stall is read apart from the
  // owner's.
  if (own_group) {
    EXPECT_GT(group_stall_seen, 0) << "no assessment carried the lease group's CPU stall";
  }
  EXPECT_GE(assessed, 8);
  EXPECT_NE(proc_state(burner), 'T');
  for (auto& m : c.received()) {
    if (m.topic == "scheduler/events") {
      EXPECT_NE(parse(m).value("type", ""), "suspended") << "the burner's lease was suspended";
    }
  }

  // The hog: writes a 256 MB file and reads it again and again inside its
  // 32 MB group, so it reclaims (and stalls on memory) all the time.
  char tmpl[] = "/tmp/lull-hog-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ASSERT_GE(fd, 0);
  ::close(fd);
  std::string file = tmpl;
  spawn_options h;
  h.argv = {"sh", "-c",
            "echo $$ > " + hog_group.procs + " && dd if=/dev/zero of=" + file
              + " bs=1M count=256 status=none && while :; do cat " + file
              + " > /dev/null; done"};
  h.new_process_group = true;
  proc_guard hog;
  auto hog_pid = spawn(h);
  ASSERT_TRUE(hog_pid);
  hog.pid = *hog_pid;
  hog.group = *hog_pid;

  auto suspended = c.wait_for(
    [&](const mqtt_message& m) {
      auto j = parse(m);
      return m.topic == "scheduler/events" && j.value("type", "") == "suspended"
             && j.value("lease_id", "") == lease_id;
    },
    90s);
  auto memory_line = slurp("/proc/pressure/memory");
  ::kill(-*hog_pid, SIGKILL);
  ::waitpid(*hog_pid, nullptr, 0);
  hog.pid = hog.group = -1;
  fs::remove(file);
  ASSERT_TRUE(suspended) << "the hog never suspended the lease; /proc/pressure/memory: "
                         << memory_line << d.log();
  auto reason = parse(*suspended).value("reason", "");
  EXPECT_NE(reason.find("Memory pressure"), std::string::npos) << reason;
  std::printf("suspended: %s\n", reason.c_str());
}
