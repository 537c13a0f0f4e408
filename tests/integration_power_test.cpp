// Power, end to end: lulld samples a recorded laptop (/proc and /sys from
// tests/fixtures/proc/x86-laptop, its CPU counters ticking as a quiet
// machine's would) with a real Mosquitto, and a LOW lease is held by `lull
// run`. Unplugging the charger (AC online 0 in /sys/class/power_supply)
// suspends the lease with the next snapshot and `lull run` stops its
// command; plugging it in again resumes both.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "src/process.hpp"
#include "tests/fixture_tree.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

json parse(const mqtt_message& m) { return json::parse(m.payload, nullptr, false); }

/// Rewrites the tree's /proc/stat every 200 ms with 10 % of each core's new
/// time busy, so the recorded laptop reads as a quiet machine.
class ticking_stat {
public:
  explicit ticking_stat(fixture_tree& tree) : tree_(tree), thread_([this] { run(); }) {}
  ~ticking_stat() {
    stop_ = true;
    thread_.join();
  }

private:
  void run() {
    auto base = slurp(tree_.path("proc/stat"));
    for (long tick = 1; !stop_; ++tick) {
      std::istringstream in(base);
      std::ostringstream out;
      std::string line;
      while (std::getline(in, line)) {
        if (line.rfind("cpu", 0) == 0) {
          std::istringstream f(line);
          std::string name;
          std::vector<long> v;
          f >> name;
          for (long x; f >> x;)
            v.push_back(x);
          if (v.size() >= 4) {
            v[0] += tick;     // user
            v[3] += 9 * tick; // idle
          }
          out << name;
          for (auto x : v)
            out << ' ' << x;
          out << '\n';
        } else {
          out << line << '\n';
        }
      }
      overwrite(tree_.path("proc/stat"), out.str());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  fixture_tree& tree_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
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

bool wait_state(pid_t pid, bool stopped, std::chrono::seconds limit) {
  auto end = clk::now() + limit;
  while (clk::now() < end) {
    if ((proc_state(pid) == 'T') == stopped)
      return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

} // namespace

TEST(power, unplugging_the_charger_suspends_a_low_lease_and_plugging_it_in_resumes_it) {
  fixture_tree tree("x86-laptop");
  overwrite(tree.path("sys/class/power_supply/AC/online"), "1\n");
  ticking_stat ticking(tree);

  broker b;
  // The recorded laptop's load, memory and stall stay below these, so only
  // its power holds the lease.
  lulld d(lulld_args(b.uri(), "laptop",
                     {"--proc-root", tree.root(), "--interval", "500ms", "--quiet-cpu-window",
                      "5s", "--quiet-psi-cpu", "0,400,500,600", "--quiet-psi-io", "0,400,500,600",
                      "--quiet-psi-memory", "0,400,500,600", "--lease-capacity-units", "100"}));
  client c(b.uri());
  ASSERT_TRUE(c.connected()) << c.error();
  c.subscribe("stats/host/laptop/quiet");
  c.subscribe("scheduler/host/laptop/leases");
  c.subscribe("scheduler/events");
  auto quiet = c.wait_for(
    [](const mqtt_message& m) {
      auto j = parse(m);
      return m.topic == "stats/host/laptop/quiet" && j.value("state", "") == "QUIET"
             && j["power"].is_object();
    },
    30s);
  ASSERT_TRUE(quiet) << "the laptop never became QUIET on AC: " << d.log();
  EXPECT_EQ(parse(*quiet)["power"]["ac_online"], true);

  spawn_options o;
  o.argv = {binary_path("src/lull"), "--broker", b.uri(), "--worker", "pw", "run",
            "--priority", "LOW", "--host", "laptop", "--no-cgroup", "--", "sleep", "120"};
  o.stdout_path = "/dev/null";
  o.stderr_path = "/dev/null";
  run_guard run;
  auto pid = spawn(o);
  ASSERT_TRUE(pid);
  run.pid = *pid;
  auto leases = c.wait_for(
    [&](const mqtt_message& m) {
      if (m.topic != "scheduler/host/laptop/leases")
        return false;
      auto j = parse(m);
      return j.is_object() && j["leases"].size() == 1 && j["leases"][0].contains("pid");
    },
    30s);
  ASSERT_TRUE(leases) << "lull run never reported its command: " << d.log();
  auto lease_id = parse(*leases)["leases"][0]["lease_id"].get<std::string>();
  run.child = parse(*leases)["leases"][0]["pid"].get<pid_t>();

  // Unplugged.
  auto unplugged = clk::now();
  overwrite(tree.path("sys/class/power_supply/AC/online"), "0\n");
  auto suspended = c.wait_for(
    [&](const mqtt_message& m) {
      auto j = parse(m);
      return m.topic == "scheduler/events" && j.value("type", "") == "suspended"
             && j.value("lease_id", "") == lease_id;
    },
    10s);
  ASSERT_TRUE(suspended) << "never suspended: " << d.log();
  double took = std::chrono::duration<double>(clk::now() - unplugged).count();
  EXPECT_LE(took, 2.0) << "suspended " << took << " s after the charger went";
  EXPECT_NE(parse(*suspended).value("reason", "").find("runs on its battery (71 %)"),
            std::string::npos)
    << parse(*suspended).dump();
  EXPECT_TRUE(wait_state(run.child, true, 5s)) << "lull run did not stop its command";

  // Plugged in again.
  overwrite(tree.path("sys/class/power_supply/AC/online"), "1\n");
  auto resumed = c.wait_for(
    [&](const mqtt_message& m) {
      auto j = parse(m);
      return m.topic == "scheduler/events" && j.value("type", "") == "resumed"
             && j.value("lease_id", "") == lease_id;
    },
    10s);
  ASSERT_TRUE(resumed) << "never resumed: " << d.log();
  EXPECT_TRUE(wait_state(run.child, false, 5s)) << "lull run did not continue its command";
}
