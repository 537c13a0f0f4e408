#include "src/store/health.hpp"

#include <cstdio>

#include "messages/page.hpp"

namespace lull {

health_report assess_health_report(const std::map<std::string, host_health_input>& hosts,
                                   const persister_health_input& p, std::int64_t now,
                                   const health_thresholds& t) {
  int level = 0; // 0 ok, 1 warn, 2 error
  health_report report;
  int section = 0;
  std::string current;
  std::size_t index = 0;
  // A host's errors come from its agent: each is cut to about 1 KiB.
  auto raise = [&](int l, std::string why) {
    level = std::max(level, l);
    report.reasons.push_back({section, current, index++, clip_text(std::move(why))});
  };
  char buf[256];
  for (auto& [host, h] : hosts) {
    current = host;
    index = 0;
    if (now - h.last_seen > t.stale_after_sec) {
      std::snprintf(buf, sizeof buf, "host %s: no snapshot for %llds", host.c_str(),
                    static_cast<long long>(now - h.last_seen));
      raise(1, buf);
    }
    for (auto& e : h.errors)
      raise(1, "host " + host + ": " + e);
    for (auto& [mount, free] : h.disk_free_pct) {
      if (free < t.disk_error_pct) {
        std::snprintf(buf, sizeof buf, "host %s: disk %s only %.1f%% free", host.c_str(),
                      mount.c_str(), free);
        raise(2, buf);
      } else if (free < t.disk_warn_pct) {
        std::snprintf(buf, sizeof buf, "host %s: disk %s %.1f%% free", host.c_str(),
                      mount.c_str(), free);
        raise(1, buf);
      }
    }
  }
  section = 1;
  current.clear();
  index = 0;
  if (p.queue_bound > 0 && p.queued * 2 > p.queue_bound) {
    std::snprintf(buf, sizeof buf, "persister lagging: %zu of %zu samples queued", p.queued,
                  p.queue_bound);
    raise(1, buf);
  }
  if (p.dropped > 0) {
    std::snprintf(buf, sizeof buf, "persister dropped %llu samples (queue full)",
                  static_cast<unsigned long long>(p.dropped));
    raise(1, buf);
  }
  if (p.last_flush_ok > 0 && now - p.last_flush_ok > 6 * p.flush_interval_sec) {
    std::snprintf(buf, sizeof buf, "persister: no successful write for %llds (%s)",
                  static_cast<long long>(now - p.last_flush_ok), p.last_error.c_str());
    raise(2, buf);
  } else if (p.write_errors > 0 && !p.last_error.empty()) {
    raise(1, "persister: " + std::to_string(p.write_errors) + " write errors, last: "
               + p.last_error);
  }
  if (p.state_writes_failing)
    raise(2, "lease and job writes failing: " + p.state_error
               + " (requests that change them are answered InternalError)");
  static const char* names[] = {"ok", "warn", "error"};
  report.status = names[level];
  return report;
}

nlohmann::json assess_health(const std::map<std::string, host_health_input>& hosts,
                             const persister_health_input& p, std::int64_t now,
                             const health_thresholds& t) {
  auto r = assess_health_report(hosts, p, now, t);
  nlohmann::json reasons = nlohmann::json::array();
  for (auto& x : r.reasons)
    reasons.push_back(x.text);
  return {{"status", r.status}, {"reasons", reasons}};
}

} // namespace lull
