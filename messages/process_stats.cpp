#include "messages/process_stats.hpp"

#include "messages/codec.hpp"

namespace lull {

namespace {

template <class T>
nlohmann::json opt(const std::optional<T>& x) {
  return x ? nlohmann::json(*x) : nlohmann::json(nullptr);
}

} // namespace

nlohmann::json to_json(const process_stats& p) {
  return {{"v", schema_version},
          {"host_id", p.host_id},
          {"name", p.name},
          {"watch", p.watch},
          {"collected_at", utc_timestamp(p.collected_at)},
          {"running", p.running},
          {"pid", opt(p.pid)},
          {"rss_bytes", opt(p.rss_bytes)},
          {"cpu_pct", opt(p.cpu_pct)},
          {"threads", opt(p.threads)},
          {"open_fds", opt(p.open_fds)},
          {"uptime_sec", opt(p.uptime_sec)},
          {"restarts", p.restarts},
          {"errors", p.errors}};
}

} // namespace lull
