// Whose load, measured: how close the lease probe's CPU figure for a leased
// process tree comes to the tree's own accounting (getrusage of the reaped
// children), and what one sample of a 20-process tree costs.
//
//   bench_attribution [seconds=60] [processes=20]
//
// The tree: a leader shell that starts `processes - 1` children; half of them
// burn CPU, half sleep. Prints figures; never fails for being slow.

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "src/probe/lease_probe.hpp"

using namespace std::chrono;

int main(int argc, char** argv) {
  double seconds = argc > 1 ? std::atof(argv[1]) : 60;
  int procs = argc > 2 ? std::max(2, std::atoi(argv[2])) : 20;
  int burners = std::max(1, (procs - 1) / 2);
  int sleepers = procs - 1 - burners;
  // Every child ends by itself after `seconds`, so the leader reaps the whole
  // tree and the kernel's accounting of the leader holds all of it.
  auto n = std::to_string(static_cast<int>(seconds));
  std::string script;
  for (int i = 0; i < burners; ++i)
    script += "timeout " + n + " sh -c 'while :; do :; done' & ";
  for (int i = 0; i < sleepers; ++i)
    script += "sleep " + n + " & ";
  script += "wait";

  pid_t leader = ::fork();
  if (leader == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sh", "sh", "-c", script.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::setpgid(leader, leader);
  std::this_thread::sleep_for(milliseconds(300)); // let the shell start its children

  lull::lease_probe_options o;
  o.self_pid = -1;
  lull::lease_probe probe(o);
  probe.set_leases({{"bench", leader, lull::process_start_ticks(leader), ""}});
  auto t0 = steady_clock::now();
  auto mono = [&] { return duration<double>(steady_clock::now() - t0).count(); };
  probe.sample(mono(), 1);

  double cpu_core_sec = 0; // integrated from the probe's figures
  double last = mono();
  std::vector<double> costs;
  std::size_t members = 0;
  int status = 0;
  while (::waitpid(leader, &status, WNOHANG) == 0) {
    std::this_thread::sleep_for(milliseconds(500));
    auto a = steady_clock::now();
    auto l = probe.sample(mono(), 1);
    costs.push_back(duration<double, std::micro>(steady_clock::now() - a).count());
    double now = mono();
    if (!l.per_lease.empty() && l.per_lease[0].cpu_core_pct)
      cpu_core_sec += *l.per_lease[0].cpu_core_pct / 100.0 * (now - last);
    members = l.per_lease.empty() ? 0 : static_cast<std::size_t>(l.per_lease[0].processes);
    last = now;
  }
  // The tree's own accounting: the reaped leader's rusage holds every
  // process it (and they) reaped.
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  double own = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec)
               + static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  std::sort(costs.begin(), costs.end());
  auto pct = [&](double q) { return costs.empty() ? 0 : costs[static_cast<size_t>(q * (costs.size() - 1))]; };
  std::printf("tree: leader %d, %zu processes counted at the end (%d burners, %d sleepers)\n",
              leader, members, burners, sleepers);
  std::printf("CPU by lull's probe: %.2f core-s over %.1f s\n", cpu_core_sec, last);
  std::printf("CPU by the tree's own accounting (getrusage): %.2f core-s\n", own);
  std::printf("probe / own accounting: %.3f (the probe misses at most the last %.1f s before "
              "the tree exits)\n",
              own > 0 ? cpu_core_sec / own : 0.0, 0.5);
  std::printf("sampling cost per sample (one lease, %s processes on this host scanned): "
              "p50 %.0f us, p95 %.0f us, max %.0f us\n",
              std::to_string(probe.processes_scanned()).c_str(), pct(0.5), pct(0.95),
              costs.empty() ? 0 : costs.back());
  return 0;
}
