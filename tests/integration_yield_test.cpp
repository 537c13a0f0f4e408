// Giving the host back, end to end with real processes: lulld with every
// role on this machine's /proc, a real Mosquitto, a job run by `lull work`
// whose child burns CPU. When a process outside any lease starts burning,
// lulld suspends the lease and `lull work` stops its child (state T); when it
// ends, the child runs again under the same lease and the job completes. Kept
// suspended past lease.preempt_after, the lease is revoked and the job goes
// back to the queue without using up an attempt.
//
// These tests measure the machine's CPU, so ctest runs them alone
// (RUN_SERIAL); thresholds are set in cores of this machine.

#include <gtest/gtest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "src/process.hpp"
#include "tests/support/support.hpp"

using namespace lull;
using namespace lull::test;
using json = nlohmann::json;
using clk = std::chrono::steady_clock;

namespace {

constexpr double interval_sec = 0.5;
constexpr double suspend_after_sec = 2;
constexpr double resume_after_sec = 3;

struct child_guard {
  pid_t pid = -1;
  ~child_guard() { stop(); }
  void stop() {
    if (pid > 0) {
      ::kill(-pid, SIGCONT);
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      pid = -1;
    }
  }
};

pid_t start(std::vector<std::string> argv, bool own_group = false) {
  spawn_options o;
  o.argv = std::move(argv);
  o.new_process_group = own_group;
  auto pid = spawn(o);
  return pid ? *pid : -1;
}

std::vector<std::string> lull_cmd(const std::string& uri, std::vector<std::string> args) {
  std::vector<std::string> out = {binary_path("src/lull"), "--broker", uri};
  out.insert(out.end(), args.begin(), args.end());
  return out;
}

/// Machine CPU over `sec`, % of all cores.
double machine_cpu_pct(double sec) {
  auto read = [] {
    std::ifstream in("/proc/stat");
    std::string cpu;
    std::uint64_t v, total = 0, idle = 0;
    in >> cpu;
    for (int i = 0; i < 8 && in >> v; ++i) {
      total += v;
      if (i == 3 || i == 4)
        idle += v;
    }
    return std::pair{total, idle};
  };
  auto a = read();
  std::this_thread::sleep_for(std::chrono::duration<double>(sec));
  auto b = read();
  double dt = static_cast<double>(b.first - a.first);
  return dt <= 0 ? 0 : 100.0 * (dt - static_cast<double>(b.second - a.second)) / dt;
}

/// Where the cgroup2 hierarchy is mounted (/sys/fs/cgroup, or .../unified).
std::string cgroup2_mount() {
  std::ifstream in("/proc/mounts");
  std::string dev, dir, type, rest;
  while (in >> dev >> dir >> type && std::getline(in, rest))
    if (type == "cgroup2")
      return dir;
  return "/sys/fs/cgroup";
}

json parse(const mqtt_message& m) { return json::parse(m.payload, nullptr, false); }

double since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

/// lulld, a client watching it, a job taken by `lull work` whose child burns
/// until `done_file` exists.
struct yield_fixture {
  broker b;
  std::optional<lulld> d;
  std::optional<client> c;
  child_guard work, burner;
  std::string done_file;
  std::string job_id, lease_id;
  std::uint64_t fencing = 0;
  pid_t child = -1;
  std::string cgroup; ///< the child's cgroup v2 group, when lull work made one

  ~yield_fixture() {
    // The job's child leads its own process group: end it even when lull
    // work could not (a failed assertion kills lull work first).
    work.stop();
    if (child > 0) {
      ::kill(-child, SIGCONT);
      ::kill(-child, SIGKILL);
    }
    std::filesystem::remove(done_file);
  }

  /// `no_cgroup`: lull work stops the child with SIGSTOP instead of a
  /// cgroup freeze.
  bool setup(double preempt_after_sec, std::string& why, bool no_cgroup = false) {
    const int cores = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
    const double core = 100.0 / cores;
    char q[64];
    std::snprintf(q, sizeof q, "0,%.2f,%.2f,99.9", 0.35 * core, 0.8 * core);
    char pre[32];
    std::snprintf(pre, sizeof pre, "%gs", preempt_after_sec);
    d.emplace(lulld_args(b.uri(), "yl",
                         {"--interval", "500ms", "--quiet-cpu-window", "5s", "--quiet-cpu", q,
                          "--quiet-hysteresis", "2", "--lease-suspend-after", "2s",
                          "--lease-resume-after", "3s", "--lease-preempt-after", pre,
                          "--lease-capacity-units", "100"}));
    c.emplace(b.uri());
    if (!c->connected()) {
      why = c->error();
      return false;
    }
    c->subscribe("stats/host/yl/quiet");
    c->subscribe("scheduler/host/yl/leases");
    c->subscribe("scheduler/job/+/state");
    c->subscribe("scheduler/events");
    if (!c->wait_for(
          [](const mqtt_message& m) {
            return m.topic == "stats/host/yl/quiet" && parse(m).value("state", "") == "QUIET";
          },
          30s)) {
      why = "the host never became QUIET: " + d->log();
      return false;
    }
    char tmpl[] = "/tmp/lull-yield-done-XXXXXX";
    int fd = ::mkstemp(tmpl);
    ::close(fd);
    done_file = tmpl;
    std::filesystem::remove(done_file);

    auto submit = start(lull_cmd(b.uri(), {"submit", "--type", "burn", "--host", "yl",
                                           "--class", "LOW", "--max-attempts", "1"}));
    int status = 0;
    ::waitpid(submit, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      why = "lull submit failed";
      return false;
    }
    std::vector<std::string> args = {"--worker", "yw", "work", "--type", "burn", "--host", "yl",
                                     "--max-jobs", "1", "--grace", "2s"};
    if (no_cgroup)
      args.push_back("--no-cgroup");
    for (auto a : {"--", "sh", "-c"})
      args.push_back(a);
    args.push_back("while [ ! -e " + done_file + " ]; do :; done");
    work.pid = start(lull_cmd(b.uri(), args));
    // lulld learns the child's pid from lull work's first heartbeat.
    auto leases = c->wait_for(
      [&](const mqtt_message& m) {
        if (m.topic != "scheduler/host/yl/leases")
          return false;
        auto j = parse(m);
        return j.is_object() && j["leases"].size() == 1 && j["leases"][0].contains("pid");
      },
      30s);
    if (!leases) {
      why = "the job's child never reported its pid: " + d->log();
      return false;
    }
    auto l = parse(*leases)["leases"][0];
    lease_id = l["lease_id"].get<std::string>();
    child = l["pid"].get<pid_t>();
    cgroup = l.value("cgroup", "");
    c->subscribe("scheduler/lease/" + lease_id + "/state");
    auto granted = c->wait_for(
      [&](const mqtt_message& m) {
        auto j = parse(m);
        return m.topic == "scheduler/events" && j.value("type", "") == "granted"
               && j.value("lease_id", "") == lease_id;
      },
      10s);
    if (!granted) {
      why = "no grant event";
      return false;
    }
    fencing = parse(*granted)["fencing_token"].get<std::uint64_t>();
    auto job = c->wait_for(
      [&](const mqtt_message& m) {
        return m.topic.rfind("scheduler/job/", 0) == 0 && parse(m).value("lease_id", json()) == lease_id;
      },
      10s);
    if (!job) {
      why = "the job never showed its lease";
      return false;
    }
    job_id = parse(*job)["job_id"].get<std::string>();
    return true;
  }

  void start_burner() {
    burner.pid = start({"sh", "-c", "while :; do :; done"}, true);
  }

  /// The child's state: 'T' when stopped (SIGSTOP) or its cgroup frozen
  /// (a frozen task shows as sleeping in /proc; cgroup.events says frozen).
  char child_state() {
    char st = proc_state(child);
    if (!cgroup.empty() && st != 0) {
      std::ifstream in(cgroup2_mount() + cgroup + "/cgroup.events");
      std::string key, value;
      while (in >> key >> value)
        if (key == "frozen" && value == "1")
          return 'T';
    }
    return st;
  }

  /// Waits until `pred(child_state())` holds; seconds it took, or -1.
  double wait_child(const std::function<bool(char)>& pred, std::chrono::seconds deadline) {
    auto t0 = clk::now();
    bool ok = wait_until([&] { return pred(child_state()); }, deadline);
    return ok ? since(t0) : -1;
  }
};

bool too_busy(std::string& why) {
  const int cores = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  double background = machine_cpu_pct(2.0);
  if (background > 0.3 * 100.0 / cores) {
    why = "this machine is already " + std::to_string(background)
          + "% busy: too noisy to tell the owner's load from the background";
    return true;
  }
  return false;
}

} // namespace

TEST(yield, owner_load_suspends_the_job_and_its_end_resumes_it_under_the_same_lease) {
  std::string why;
  if (too_busy(why))
    GTEST_SKIP() << why;
  yield_fixture f;
  ASSERT_TRUE(f.setup(600, why)) << why;
  ASSERT_NE(f.child_state(), 'T');

  // The owner starts something heavy.
  f.c->clear();
  f.start_burner();
  ASSERT_TRUE(f.c->wait_for(
    [](const mqtt_message& m) {
      return m.topic == "stats/host/yl/quiet" && parse(m).value("state", "") == "BUSY";
    },
    30s))
    << f.d->log();
  auto busy_at = clk::now();
  ASSERT_GE(f.wait_child([](char s) { return s == 'T'; }, 30s), 0)
    << "the leased child was never stopped\n" << f.d->log();
  double stopped = since(busy_at);
  std::printf("yield: child stopped %.2fs after the first BUSY assessment (bound %.1fs)\n",
              stopped, suspend_after_sec + 2 * interval_sec);
  EXPECT_LE(stopped, suspend_after_sec + 2 * interval_sec);
  auto notice = f.c->wait_for(
    [&](const mqtt_message& m) {
      return m.topic == "scheduler/lease/" + f.lease_id + "/state"
             && parse(m).value("type", "") == "suspended";
    },
    5s);
  ASSERT_TRUE(notice);
  EXPECT_EQ(notice->qos, 1);
  EXPECT_NE(parse(*notice)["reason"].get<std::string>().find("Other processes"), std::string::npos)
    << notice->payload;
  // The child stays stopped while the owner's work runs.
  std::this_thread::sleep_for(std::chrono::duration<double>(2 * interval_sec));
  EXPECT_EQ(f.child_state(), 'T');

  // The owner is done.
  f.c->clear();
  f.burner.stop();
  ASSERT_TRUE(f.c->wait_for(
    [](const mqtt_message& m) {
      return m.topic == "stats/host/yl/quiet" && parse(m).value("state", "") == "QUIET";
    },
    60s))
    << f.d->log();
  auto quiet_at = clk::now();
  ASSERT_GE(f.wait_child([](char s) { return s != 'T'; }, 30s), 0)
    << "the child was never continued\n" << f.d->log();
  double resumed = since(quiet_at);
  std::printf("yield: child continued %.2fs after the first QUIET assessment (bound %.1fs)\n",
              resumed, resume_after_sec + 2 * interval_sec);
  EXPECT_LE(resumed, resume_after_sec + 2 * interval_sec);
  auto resumed_notice = f.c->wait_for(
    [&](const mqtt_message& m) {
      return m.topic == "scheduler/lease/" + f.lease_id + "/state"
             && parse(m).value("type", "") == "resumed";
    },
    5s);
  ASSERT_TRUE(resumed_notice);
  // Same lease, same fencing token.
  EXPECT_EQ(parse(*resumed_notice)["lease_id"], f.lease_id);
  EXPECT_EQ(parse(*resumed_notice)["fencing_token"].get<std::uint64_t>(), f.fencing);

  // The job completes.
  { std::ofstream(f.done_file) << "done\n"; }
  auto done = f.c->wait_for(
    [&](const mqtt_message& m) {
      return m.topic == "scheduler/job/" + f.job_id + "/state"
             && parse(m).value("state", "") == "succeeded";
    },
    30s);
  ASSERT_TRUE(done) << f.d->log();
  EXPECT_EQ(parse(*done)["attempts"], 1);
  int status = 0;
  ASSERT_TRUE(wait_until([&] { return ::waitpid(f.work.pid, &status, WNOHANG) == f.work.pid; },
                         15s));
  f.work.pid = -1;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST(yield, suspended_past_preempt_after_revokes_and_requeues_the_job_without_an_attempt) {
  std::string why;
  if (too_busy(why))
    GTEST_SKIP() << why;
  yield_fixture f;
  ASSERT_TRUE(f.setup(3, why, true)) << why;
  EXPECT_TRUE(f.cgroup.empty());
  f.start_burner();
  ASSERT_GE(f.wait_child([](char s) { return s == 'T'; }, 40s), 0)
    << "the leased child was never stopped (SIGSTOP)\n" << f.d->log();
  auto revoked = f.c->wait_for(
    [&](const mqtt_message& m) {
      auto j = parse(m);
      return m.topic == "scheduler/lease/" + f.lease_id + "/state"
             && j.value("state", "") == "REVOKED";
    },
    20s);
  ASSERT_TRUE(revoked) << f.d->log();
  auto n = parse(*revoked);
  EXPECT_EQ(n["preempted"], true);
  EXPECT_EQ(n["reason"].get<std::string>().rfind("preempted: suspended for", 0), 0u)
    << n["reason"];
  auto requeued = f.c->wait_for(
    [&](const mqtt_message& m) {
      return m.topic == "scheduler/job/" + f.job_id + "/state"
             && parse(m).value("state", "") == "queued" && parse(m)["lease_id"].is_null();
    },
    10s);
  ASSERT_TRUE(requeued) << f.d->log();
  EXPECT_EQ(parse(*requeued)["attempts"], 0) << "max_attempts 1, and the job may run again";
  // lull work continued its stopped child so it could end on SIGTERM.
  EXPECT_TRUE(wait_until([&] { return proc_state(f.child) == 0 || proc_state(f.child) == 'Z'; },
                         15s))
    << "state " << proc_state(f.child);
}
