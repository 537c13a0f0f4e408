#pragma once
/// The worker registry (the predecessor's addon collector): what lull knows of
/// every worker from its retained status on `stats/worker/<worker_id>`.
///
/// Worker status schema (v1), published by the worker retained at QoS 1, with
/// a last-will on the same topic (retained, payload `offline` or
/// `{"v":1,"state":"offline"}`):
///
///   {"v": 1,                      schema version (required in JSON)
///    "state": "online",           online | starting | idle | busy | stopping |
///                                 offline | error   (required)
///    "health": "ok",              ok | degraded | failing   (default ok)
///    "health_detail": "...",      free text, e.g. the failing check
///    "version": "1.4.2",          the worker's own version
///    "host_id": "pi-kitchen",     the host whose capacity its work uses
///    "job_types": ["thumbnails"],
///    "runtime_dir": "/var/lib/w", optional, sized by lull (cached, rate-limited)
///    "custom": {...}}             anything else the worker wants shown
///
/// The worker id is the topic's last level (the ACL pins it with %u); a
/// `worker_id` in the payload that disagrees is rejected. A bare `online` /
/// `offline` text payload is accepted (Node-RED, shell scripts, wills). An
/// empty retained payload clears the worker: it is forgotten.
///
/// Lifecycle: unknown -> online states <-> offline; a worker whose last
/// update is older than `stale_after` is reported with `health: "stale"`
/// until it speaks again. All times are injected.

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lull {

struct worker_record {
  std::string worker_id;
  std::string state = "online";
  std::string health = "ok";
  std::optional<std::string> health_detail;
  std::optional<std::string> version;
  std::optional<std::string> host_id;
  std::vector<std::string> job_types;
  std::optional<std::string> runtime_dir;
  nlohmann::json custom = nullptr;
  bool online = false;
  bool stale = false;
  std::int64_t first_seen = 0, last_seen = 0; ///< unix seconds
  double last_seen_mono = 0;
  std::optional<std::int64_t> online_since, offline_since;
  std::uint64_t updates = 0, went_offline = 0;
};

nlohmann::json to_json(const worker_record& w);

struct worker_update {
  bool ok = true;
  std::string error;          ///< why the payload was rejected
  bool removed = false;       ///< an empty payload cleared the worker
  bool online_changed = false;
  bool now_online = false;
};

class worker_registry {
public:
  explicit worker_registry(double stale_after_sec = 90.0) : stale_after_(stale_after_sec) {}

  /// A message on stats/worker/<worker_id>.
  worker_update on_status(const std::string& worker_id, const std::string& payload,
                          double now_mono, std::int64_t now_unix);

  /// Marks online workers silent for longer than stale_after; returns the ids
  /// that just became stale.
  std::vector<std::string> check_stale(double now_mono);

  const std::map<std::string, worker_record>& workers() const { return workers_; }
  const worker_record* find(const std::string& id) const;

  /// {"v":1, "host_id", "collected_at", "counts": {...}, "workers": {id: {...}}}
  nlohmann::json summary(const std::string& host_id, std::int64_t now_unix) const;

private:
  double stale_after_;
  std::map<std::string, worker_record> workers_;
};

/// True for a state that counts as online.
bool is_online_state(const std::string& state);

} // namespace lull
