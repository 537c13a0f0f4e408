// Owner presence, end to end: lulld reads login sessions from a written
// fixture (a utmp file naming pts/0, and /dev/pts/0 whose access time is the
// last input, as the kernel keeps it for a real terminal), a real Mosquitto,
// and a LOW lease held by `lull run`. A key press suspends the lease within
// 2 s and `lull run` stops its command; once the owner has been idle past
// quiet.owner_idle the lease resumes and the command runs again.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "src/process.hpp"
#include "tests/presence_fixture.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

json parse(const mqtt_message& m) { return json::parse(m.payload, nullptr, false); }

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
    .count();
}

bool wait_state(pid_t pid, bool stopped, std::chrono::seconds limit) {
  auto end = clk::now() + limit;
  while (clk::now() < end) {
    if ((proc_state(pid) == 'T') == stopped)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

struct scratch_root {
  std::string root;
  scratch_root() {
    char tmpl[] = "/tmp/lull-presence-XXXXXX";
    root = ::mkdtemp(tmpl);
  }
  ~scratch_root() {
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
};

struct run_guard {
  pid_t pid = -1, child = -1;
  ~run_guard() {
    if (child > 0) {
      ::kill(child, SIGCONT);
      ::kill(child, SIGKILL);
    }
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
};

} // namespace

TEST(presence, a_key_press_suspends_a_low_lease_within_2s_and_idle_resumes_it) {
  scratch_root fx;
  write_utmp(fx.root, {{"pts/0"}});
  set_last_input(fx.root, "pts/0", wall_now() - 3600); // away for an hour

  broker b;
  // Snapshots every 2 s (the default): the 2 s bound must hold between them.
  // CPU and pressure thresholds no reading reaches (a saturated test machine
  // stays QUIET), so only presence holds the lease.
  lulld d(lulld_args(b.uri(), "desk",
                     {"--quiet-owner-idle", "4s", "--collectors-presence-root", fx.root,
                      "--collectors-logind", "false", "--quiet-cpu", "0,400,500,600",
                      "--quiet-psi-cpu", "0,400,500,600", "--quiet-psi-io", "0,400,500,600",
                      "--quiet-psi-memory", "0,400,500,600", "--lease-capacity-units", "100"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("stats/host/desk");
  c.subscribe("stats/host/desk/quiet");
  c.subscribe("scheduler/host/desk/leases");
  c.subscribe("scheduler/events");
  auto snap = c.wait_for(
    [](const mqtt_message& m) {
      return m.topic == "stats/host/desk" && parse(m)["owner"].is_object();
    },
    30s);
  ASSERT_TRUE(snap) << "no snapshot with the owner: " << d.log();
  EXPECT_EQ(parse(*snap)["owner"]["source"], "tty");
  EXPECT_GE(parse(*snap)["owner"]["idle_sec"].get<double>(), 3000);
  ASSERT_TRUE(c.wait_for(
    [](const mqtt_message& m) {
      return m.topic == "stats/host/desk/quiet" && parse(m).value("state", "") == "QUIET";
    },
    30s))
    << "the host never became QUIET: " << d.log();

  spawn_options o;
  o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "pw", "run",
            "--priority", "LOW", "--host", "desk", "--no-cgroup", "--", "sleep", "120"};
  o.stdout_path = fx.root + "/run.out";
  o.stderr_path = fx.root + "/run.err";
  run_guard run;
  auto pid = spawn(o);
  ASSERT_TRUE(pid);
  run.pid = *pid;
  auto leases = c.wait_for(
    [&](const mqtt_message& m) {
      if (m.topic != "scheduler/host/desk/leases")
        return false;
      auto j = parse(m);
      return j.is_object() && j["leases"].size() == 1 && j["leases"][0].contains("pid");
    },
    30s);
  ASSERT_TRUE(leases) << "lull run never reported its command: " << d.log();
  auto l = parse(*leases)["leases"][0];
  auto lease_id = l["lease_id"].get<std::string>();
  run.child = l["pid"].get<pid_t>();
  ASSERT_NE(proc_state(run.child), 'T');

  // A key press.
  auto pressed = clk::now();
  set_last_input(fx.root, "pts/0", wall_now());
  auto suspended = c.wait_for(
    [&](const mqtt_message& m) {
      auto j = parse(m);
      return m.topic == "scheduler/events" && j.value("type", "") == "suspended"
             && j.value("lease_id", "") == lease_id;
    },
    10s);
  ASSERT_TRUE(suspended) << "never suspended: " << d.log();
  double took = std::chrono::duration<double>(clk::now() - pressed).count();
  EXPECT_LE(took, 2.0) << "suspended " << took << " s after the key press";
  std::printf("suspended %.3f s after the key press\n", took);
  EXPECT_NE(parse(*suspended).value("reason", "").find("is in use"), std::string::npos)
    << parse(*suspended).dump();
  EXPECT_TRUE(wait_state(run.child, true, 5s)) << "lull run did not stop its command";

  // No more input: idle past quiet.owner_idle (4 s), the lease resumes.
  auto resumed = c.wait_for(
    [&](const mqtt_message& m) {
      auto j = parse(m);
      return m.topic == "scheduler/events" && j.value("type", "") == "resumed"
             && j.value("lease_id", "") == lease_id;
    },
    20s);
  ASSERT_TRUE(resumed) << "never resumed: " << d.log();
  double idle_then = std::chrono::duration<double>(clk::now() - pressed).count();
  EXPECT_GE(idle_then, 4.0) << "resumed before the owner had been idle quiet.owner_idle";
  EXPECT_TRUE(wait_state(run.child, false, 5s)) << "lull run did not continue its command";
}
