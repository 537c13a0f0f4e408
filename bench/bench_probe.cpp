// What the owner's signals cost a snapshot: pressure stall (three
// /proc/pressure files), power (/sys/class/power_supply) and owner presence
// (utmp and the terminals' input times; logind when a system bus exists).
//
//   bench_probe [samples=2000]
//
// PSI and power: the same recorded laptop tree (tests/fixtures/proc/x86-laptop)
// sampled with and without /proc/pressure and /sys/class/power_supply; the
// difference is what they add. Presence: a written utmp with four sessions.
// Also this machine's own snapshot, for scale. Prints figures; never fails.

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "src/probe/host_probe.hpp"
#include "src/probe/presence.hpp"
#include "src/service/logind.hpp"
#include "tests/fixture_tree.hpp"
#include "tests/presence_fixture.hpp"

using namespace std::chrono;
using namespace lull;

namespace {

double wall_now() {
  return duration<double>(system_clock::now().time_since_epoch()).count();
}

/// Median µs of `n` calls of f.
template <class F>
double median_us(int n, F&& f) {
  std::vector<double> t;
  t.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto a = steady_clock::now();
    f(i);
    t.push_back(duration<double, std::micro>(steady_clock::now() - a).count());
  }
  std::nth_element(t.begin(), t.begin() + n / 2, t.end());
  return t[static_cast<std::size_t>(n / 2)];
}

double host_probe_us(const std::string& root, int n) {
  host_probe_options o;
  o.root = root;
  o.host_id = "bench";
  host_probe p(o);
  p.sample(1'800'000'000, 0);
  return median_us(n, [&](int i) { p.sample(1'800'000'000 + i, 1.0 + i); });
}

} // namespace

int main(int argc, char** argv) {
  int n = argc > 1 ? std::max(10, std::atoi(argv[1])) : 2000;
  namespace fs = std::filesystem;

  test::fixture_tree with("x86-laptop");
  test::fixture_tree without("x86-laptop");
  fs::remove_all(without.path("proc/pressure"));
  fs::remove_all(without.path("sys/class/power_supply"));
  // Interleaved rounds, so drift on a noisy machine hits both alike.
  double full = 0, base = 0;
  for (int round = 0; round < 5; ++round) {
    full += host_probe_us(with.root(), n / 5);
    base += host_probe_us(without.root(), n / 5);
  }
  full /= 5;
  base /= 5;

  std::string root = "/tmp/lull-bench-probe-" + std::to_string(::getpid());
  test::write_utmp(root, {{"pts/0"}, {"pts/1"}, {"tty1"}, {"pts/2"}});
  for (auto* line : {"pts/0", "pts/1", "tty1", "pts/2"})
    test::set_last_input(root, line, wall_now() - 30);
  presence_probe tty({root, nullptr});
  std::string why;
  double presence = median_us(n, [&](int) { tty.sample(wall_now(), why); });
  auto logind = service::logind_over_dbus();
  std::string logind_why;
  auto answered = logind(logind_why); // opens the bus (or learns there is none)
  if (answered)
    logind_why = "logind answered: " + std::to_string(answered->size()) + " sessions";
  presence_probe with_logind({root, logind});
  double presence_logind = median_us(n, [&](int) { with_logind.sample(wall_now(), why); });
  fs::remove_all(root);

  double own = host_probe_us("/", n);

  std::printf("bench_probe: %d samples each, median per sample\n", n);
  std::printf("  laptop snapshot without PSI and power  %8.1f us\n", base);
  std::printf("  laptop snapshot with PSI and power     %8.1f us  (+%.1f us, %.2fx)\n", full,
              full - base, full / base);
  std::printf("  owner presence, 4 terminal sessions    %8.1f us  (%.2fx the snapshot)\n",
              presence, presence / full);
  std::printf("  owner presence with logind             %8.1f us  (%s)\n", presence_logind,
              logind_why.c_str());
  std::printf("  this machine's own snapshot            %8.1f us\n", own);
  double added = (full - base) + presence_logind;
  std::printf("  new inputs per snapshot: %.1f us = %.3f of the 1 ms budget %s\n", added,
              added / 1000.0, added < 1000 ? "(met)" : "(NOT met)");
  return 0;
}
