// The work of one learned-windows query (history/request {"kind":"windows"})
// in the persister, without the MQTT round trip: the host's hourly quiet
// rollups for when it was first observed, its quiet streaks, the hour-of-week
// map and the next quiet hour -- the steps the persister takes, on a real
// SQLite file. Prints figures; never fails.
//
// The database: hourly quiet rollups for one host and <streaks> closed quiet
// streaks for it, in three shapes:
//   overlapping  four weeks; each streak starts a minute after the one
//                before and lasts until a minute ago (a flood of made-up
//                streaks), asked for 4 weeks
//   short        four weeks of 2-minute streaks spread evenly, asked for 4 weeks
//   year         52 weeks; each streak starts 40 minutes after the one before
//                and lasts until a minute ago, asked for 52 weeks
//
// Usage: bench_windows [streaks] [dir]   (default: 10800, a new directory under /tmp)

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "src/lease/windows.hpp"
#include "src/store/store.hpp"

using namespace lull;
using clk = std::chrono::steady_clock;

namespace {

double ms_since(clk::time_point t0) {
  return std::chrono::duration<double, std::milli>(clk::now() - t0).count();
}

/// What the persister's windows answer does, up to the reply's JSON.
std::optional<std::int64_t> windows_query(store& db, const std::string& host, std::int64_t now,
                                          int weeks) {
  auto* zone = find_time_zone("UTC", nullptr);
  std::int64_t since = now - static_cast<std::int64_t>(weeks) * 7 * 86400;
  std::optional<std::int64_t> first;
  for (auto& r : db.query_rollups(rollup_resolution::hour, host, "quiet", since, now))
    first = std::min(first.value_or(r.bucket), r.bucket);
  std::vector<std::pair<std::int64_t, std::int64_t>> spans;
  for (auto& s : db.quiet_streaks(host, since))
    spans.emplace_back(s.start, s.end);
  auto map = learn_quiet_hours(spans, first.value_or(now), now, zone);
  return next_quiet_hour(map, now, zone);
}

} // namespace

int main(int argc, char** argv) {
  int streaks = argc > 1 ? std::atoi(argv[1]) : 10800;
  std::string dir;
  if (argc > 2) {
    dir = argv[2];
  } else {
    char tmpl[] = "/tmp/lull-bench-windows-XXXXXX";
    dir = ::mkdtemp(tmpl);
  }
  const std::int64_t now = 1800000000;
  std::printf("lull bench_windows: %d streaks (files in %s)\n", streaks, dir.c_str());
  for (const char* shape : {"overlapping", "short", "year"}) {
    auto path = dir + "/" + shape + ".db";
    auto opened = store::open(path);
    if (auto* err = std::get_if<std::string>(&opened)) {
      std::printf("cannot open %s: %s\n", path.c_str(), err->c_str());
      return 0;
    }
    auto& db = *std::get<std::unique_ptr<store>>(opened);
    db.begin();
    std::vector<rollup_row> rows;
    std::string name = shape;
    int weeks = name == "year" ? 52 : 4;
    std::int64_t span = std::int64_t{weeks} * 7 * 86400;
    for (std::int64_t t = (now - span) / 3600 * 3600; t < now - 7200; t += 3600)
      rows.push_back(
          {rollup_resolution::hour, "pi", "quiet", "quiet_score", t, 1800, 50, 10, 95, 90});
    db.insert_rollups(rows);
    bool until_now = name != "short";
    std::int64_t step = name == "overlapping" ? 60
                        : name == "year"      ? 2400
                                              : span / std::max(1, streaks);
    for (int i = 0; i < streaks; ++i) {
      auto start = now - span + i * step;
      db.insert_quiet_streak({"pi", start, until_now ? now - 60 : start + 120, 90, 80});
    }
    db.commit();
    windows_query(db, "pi", now, weeks); // warm the page cache
    std::vector<double> ms;
    for (int i = 0; i < 10; ++i) {
      auto t0 = clk::now();
      windows_query(db, "pi", now, weeks);
      ms.push_back(ms_since(t0));
    }
    std::sort(ms.begin(), ms.end());
    std::printf("windows (%s, %d weeks): one query p50 %.1f ms, max %.1f ms (10 queries)\n", shape,
                weeks, ms[ms.size() / 2], ms.back());
  }
  std::filesystem::remove_all(dir);
  return 0;
}
