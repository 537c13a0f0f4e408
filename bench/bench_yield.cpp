// bench_yield: how fast lull gives the host back. Starts its own Mosquitto
// and lulld (all roles, this machine's /proc) with interval = 1s and
// lease.suspend_after = 2s, and `lull run --class LOW` whose child burns a
// core. Each trial starts a process outside any lease that burns a core (the
// owner's load) and times:
//
//   ramp   foreign load starts -> first BUSY assessment (the CPU window's
//          average has to cross the busy threshold: quiet.cpu_window = 5s)
//   yield  first BUSY assessment -> child stopped (suspend_after + notice +
//          SIGSTOP)
//   total  foreign load starts -> child stopped
//
// then stops the burner and waits for the child to run again. Prints p50 and
// max over the trials; never fails for being slow.
//
//   bench_yield [--trials 10]

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>
#include <vector>

#include "src/client/lease_client.hpp"
#include "src/local_broker.hpp"
#include "src/process.hpp"

using namespace lull;
using namespace std::chrono;
using clk = steady_clock;

namespace {

int arg_int(int argc, char** argv, const char* name, int def) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0)
      return std::atoi(argv[i + 1]);
  return def;
}

char proc_state(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto close = text.rfind(')');
  return close == std::string::npos || close + 2 >= text.size() ? 0 : text[close + 2];
}

bool wait_until(const std::function<bool()>& pred, duration<double> timeout) {
  auto end = clk::now() + duration_cast<clk::duration>(timeout);
  while (clk::now() < end) {
    if (pred())
      return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

double pct(std::vector<double> v, double p) {
  if (v.empty())
    return 0;
  std::sort(v.begin(), v.end());
  auto i = static_cast<std::size_t>(p / 100.0 * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

double secs(clk::time_point a, clk::time_point b) { return duration<double>(b - a).count(); }

} // namespace

int main(int argc, char** argv) {
  int trials = std::max(1, arg_int(argc, argv, "--trials", 10));
  const int cores = static_cast<int>(std::max(1L, ::sysconf(_SC_NPROCESSORS_ONLN)));
  const double core = 100.0 / cores;

  std::string err;
  auto broker = local_broker::start(broker_config_dir("") + "/local.conf", 0, &err);
  if (!broker) {
    std::fprintf(stderr, "bench_yield: cannot start mosquitto: %s\n", err.c_str());
    return 0;
  }
  auto uri = broker->uri();
  auto data = "/tmp/lull-bench-yield-" + std::to_string(::getpid());
  char q[64];
  std::snprintf(q, sizeof q, "0,%.2f,%.2f,99.9", 0.35 * core, 0.8 * core);
  spawn_options lo;
  lo.argv = {LULL_BINARY_DIR "/src/lulld", "--broker", uri, "--host-id", "by", "--data-dir", data,
             "--log-level", "warn", "--interval", "1s", "--quiet-cpu-window", "5s",
             "--quiet-cpu", q, "--quiet-hysteresis", "2", "--lease-suspend-after", "2s",
             "--lease-resume-after", "2s", "--lease-preempt-after", "1h"};
  lo.stderr_path = data + ".log";
  auto lulld_pid = spawn(lo, &err);
  if (!lulld_pid) {
    std::fprintf(stderr, "bench_yield: cannot start lulld: %s\n", err.c_str());
    return 0;
  }

  lease_client_options co;
  co.uri = uri;
  co.worker_id = "bench-yield-watch";
  auto connected = lease_client::connect(co);
  if (auto* e = std::get_if<std::string>(&connected)) {
    std::fprintf(stderr, "bench_yield: %s\n", e->c_str());
    return 0;
  }
  auto& watch = *std::get<std::unique_ptr<lease_client>>(connected);
  std::mutex mtx;
  std::string state;
  std::optional<clk::time_point> busy_at;
  pid_t child = -1;
  watch.follow({"stats/host/by/quiet", "scheduler/host/by/leases"},
               [&](const std::string& topic, const nlohmann::json& doc) {
                 std::lock_guard<std::mutex> g(mtx);
                 if (topic == "stats/host/by/quiet" && doc.is_object()) {
                   state = doc.value("state", "");
                   if (state == "BUSY" && !busy_at)
                     busy_at = clk::now();
                 } else if (doc.is_object() && doc["leases"].is_array()
                            && !doc["leases"].empty() && doc["leases"][0].contains("pid")) {
                   child = doc["leases"][0]["pid"].get<pid_t>();
                 }
               });
  auto host_state = [&] {
    std::lock_guard<std::mutex> g(mtx);
    return state;
  };
  if (!wait_until([&] { return host_state() == "QUIET"; }, 60s)) {
    std::fprintf(stderr, "bench_yield: the host never became QUIET (is the machine busy?)\n");
    ::kill(*lulld_pid, SIGTERM);
    return 0;
  }

  spawn_options ro;
  ro.argv = {LULL_BINARY_DIR "/src/lull", "--broker", uri, "--worker", "bench-yield", "run",
             "--class", "LOW", "--host", "by", "--no-cgroup", "--ttl", "60s", "--", "sh", "-c",
             "while :; do :; done"};
  ro.stderr_path = "/dev/null";
  auto run = spawn(ro, &err);
  if (!run || !wait_until([&] {
        std::lock_guard<std::mutex> g(mtx);
        return child > 0;
      }, 30s)) {
    std::fprintf(stderr, "bench_yield: lull run never started its child\n");
    ::kill(*lulld_pid, SIGTERM);
    return 0;
  }
  pid_t kid;
  {
    std::lock_guard<std::mutex> g(mtx);
    kid = child;
  }

  std::printf("bench_yield: %d trials, interval 1s, suspend_after 2s, quiet.cpu_window 5s, "
              "%d cores\n",
              trials, cores);
  std::vector<double> ramp, yield, total;
  for (int t = 0; t < trials; ++t) {
    if (!wait_until([&] { return host_state() == "QUIET" && proc_state(kid) != 'T'; }, 60s)) {
      std::fprintf(stderr, "  trial %d: the host did not settle QUIET with the child running\n", t);
      break;
    }
    {
      std::lock_guard<std::mutex> g(mtx);
      busy_at.reset();
    }
    spawn_options bo;
    bo.argv = {"sh", "-c", "while :; do :; done"};
    auto t0 = clk::now();
    auto burner = spawn(bo);
    bool stopped = wait_until([&] { return proc_state(kid) == 'T'; }, 60s);
    auto t1 = clk::now();
    ::kill(*burner, SIGKILL);
    ::waitpid(*burner, nullptr, 0);
    if (!stopped) {
      std::fprintf(stderr, "  trial %d: the child was not stopped within 60 s\n", t);
      break;
    }
    std::optional<clk::time_point> b;
    {
      std::lock_guard<std::mutex> g(mtx);
      b = busy_at;
    }
    total.push_back(secs(t0, t1));
    if (b) {
      ramp.push_back(secs(t0, *b));
      yield.push_back(secs(*b, t1));
    }
    std::printf("  trial %2d: total %.2fs (ramp %.2fs, yield %.2fs)\n", t, total.back(),
                b ? secs(t0, *b) : 0.0, b ? secs(*b, t1) : 0.0);
    std::fflush(stdout);
  }
  std::printf("  foreign load -> child stopped   p50 %.2fs  max %.2fs\n", pct(total, 50),
              pct(total, 100));
  std::printf("    of which the CPU window      p50 %.2fs  max %.2fs\n", pct(ramp, 50),
              pct(ramp, 100));
  std::printf("    first BUSY -> stopped         p50 %.2fs  max %.2fs  (suspend_after 2s + "
              "2 intervals = 4s)\n",
              pct(yield, 50), pct(yield, 100));

  ::kill(*run, SIGTERM);
  wait_for_exit(*run, 15s);
  ::kill(*lulld_pid, SIGTERM);
  wait_for_exit(*lulld_pid, 5s);
  std::error_code ec;
  std::filesystem::remove_all(data, ec);
  std::filesystem::remove(data + ".log", ec);
  return 0;
}
