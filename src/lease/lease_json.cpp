// The JSON renderings of leases and of the table: lease records as the
// store keeps them, lease events, a host's lease list and the status view.

#include "src/lease/lease_table.hpp"

#include <algorithm>
#include <string>
#include <utility>

namespace lull {

nlohmann::json to_json(const lease_event& e) {
  nlohmann::json j = {{"v", schema_version},  {"type", e.type},
                      {"at", utc_timestamp(e.at)}, {"worker_id", e.worker_id},
                      {"host_id", e.host_id}, {"reason", e.reason}};
  if (!e.lease_id.empty()) {
    j["lease_id"] = e.lease_id;
    j["fencing_token"] = e.fencing_token;
  }
  if (e.state)
    j["state"] = to_string(*e.state);
  if (e.suspended)
    j["suspended"] = *e.suspended;
  if (e.preempted)
    j["preempted"] = true;
  return j;
}

namespace {

/// What every rendering of a lease starts with: who holds it where, at
/// what cost and priority, and its fencing token and state.
nlohmann::json lease_identity(const lease_record& r) {
  return {{"lease_id", r.lease_id},
          {"worker_id", r.worker_id},
          {"host_id", r.host_id},
          {"job_type", r.job_type},
          {"cost_units", r.cost_units},
          {"gpu", r.gpu},
          {"priority", to_string(r.priority)},
          {"fencing_token", r.fencing_token},
          {"state", to_string(r.state)}};
}

} // namespace

nlohmann::json to_json(const lease_record& r) {
  auto j = lease_identity(r);
  j["ttl_sec"] = r.ttl_sec;
  j["granted_at"] = r.granted_at;
  j["process"] = r.process ? to_json(*r.process) : nlohmann::json(nullptr);
  j["suspended_at"] = r.suspended_at;
  j["suspend_reason"] = r.suspend_reason;
  j["suspend_cause"] = to_string(r.suspend_cause);
  return j;
}

lease_record lease_record_from_json(const nlohmann::json& j) {
  lease_record r;
  r.lease_id = j.at("lease_id").get<std::string>();
  r.worker_id = j.at("worker_id").get<std::string>();
  r.host_id = j.at("host_id").get<std::string>();
  r.job_type = j.value("job_type", std::string());
  r.cost_units = j.at("cost_units").get<int>();
  if (auto it = j.find("gpu"); it != j.end() && it->is_number_integer())
    r.gpu = std::clamp(it->get<int>(), 0, max_lease_gpus);
  r.priority = parse_priority(j.value("priority", std::string("NORMAL")))
                 .value_or(work_priority::normal);
  r.fencing_token = j.at("fencing_token").get<std::uint64_t>();
  r.ttl_sec = j.at("ttl_sec").get<double>();
  r.granted_at = j.value("granted_at", std::int64_t{0});
  if (auto it = j.find("suspended_at"); it != j.end() && it->is_number_integer())
    r.suspended_at = it->get<std::int64_t>();
  if (auto it = j.find("suspend_reason"); it != j.end() && it->is_string())
    r.suspend_reason = it->get<std::string>();
  if (auto it = j.find("suspend_cause"); it != j.end() && it->is_string())
    r.suspend_cause = parse_hold_cause(it->get<std::string>()).value_or(hold_cause::none);
  if (auto it = j.find("process"); it != j.end() && it->is_object())
    if (read_lease_process(*it, r.process))
      r.process.reset(); // an unreadable one is not measured; the lease stands
  return r;
}

nlohmann::json lease_table::host_leases_json(const std::string& host_id) const {
  auto arr = nlohmann::json::array();
  for (auto& [id, r] : active_) {
    if (r.host_id != host_id)
      continue;
    nlohmann::json j = {{"lease_id", r.lease_id},
                        {"worker_id", r.worker_id},
                        {"priority", to_string(r.priority)},
                        {"cost_units", r.cost_units},
                        {"gpu", r.gpu},
                        {"suspended", r.suspended},
                        {"granted_at", r.granted_at}};
    if (r.process)
      j.update(to_json(*r.process));
    arr.push_back(std::move(j));
  }
  return {{"v", schema_version}, {"host_id", host_id}, {"leases", std::move(arr)}};
}

nlohmann::json lease_table::status_json() const {
  using json = nlohmann::json;
  double now = env_.mono_sec();
  auto wall = env_.wall_sec();
  auto lease_json = [&](const lease_record& r) {
    json j = lease_identity(r);
    j["granted_at"] = utc_timestamp(r.granted_at);
    if (r.state == lease_state::active) {
      j["ttl_remaining_sec"] = std::max(0.0, r.expires_mono - now);
      j["expires_at"] = utc_timestamp(
        wall + static_cast<std::int64_t>(std::ceil(std::max(0.0, r.expires_mono - now))));
    } else {
      j["ended_at"] = utc_timestamp(r.ended_at);
      j["end_reason"] = r.end_reason;
    }
    if (r.progress)
      j["progress"] = *r.progress;
    if (r.suspended) {
      j["suspended"] = true;
      j["suspended_at"] = utc_timestamp(r.suspended_at);
      j["suspend_reason"] = r.suspend_reason;
    }
    return j;
  };
  // The newest leases only: a fleet may hold thousands, and this document
  // goes out every second (1,000 leases made it 331 KB).
  std::vector<const lease_record*> newest;
  newest.reserve(active_.size());
  for (auto& [id, r] : active_)
    newest.push_back(&r);
  if (newest.size() > cfg_.status_leases) {
    auto cut = newest.begin() + static_cast<std::ptrdiff_t>(cfg_.status_leases);
    std::nth_element(newest.begin(), cut, newest.end(), [](auto* a, auto* b) {
      return a->fencing_token > b->fencing_token;
    });
    newest.erase(cut, newest.end());
  }
  std::sort(newest.begin(), newest.end(),
            [](auto* a, auto* b) { return a->fencing_token > b->fencing_token; });
  json active = json::array();
  for (auto* r : newest)
    active.push_back(lease_json(*r));
  std::map<std::string, std::pair<int, int>> per_host; // active, suspended
  for (auto& [lid, r] : active_) {
    auto& c = per_host[r.host_id];
    ++c.first;
    c.second += r.suspended ? 1 : 0;
  }
  json recent = json::array();
  for (std::size_t i = 0; i < recent_.size() && i < 20; ++i)
    recent.push_back(lease_json(recent_[i]));
  json hosts = json::object();
  for (auto& [id, h] : hosts_) {
    json j = {{"used_units", used_units(id)}, {"capacity_units", capacity_units(id)}};
    j["cpu_count"] = h.cpu_count ? json(*h.cpu_count) : json(nullptr);
    j["state"] = h.quiet ? json(to_string(h.quiet->state)) : json(nullptr);
    j["quiet_score"] = h.quiet ? json(h.quiet->quiet_score) : json(nullptr);
    if (double until = std::max(h.panic_until_mono, h.cooldown_until_mono); until > now)
      j["cooldown_remaining_sec"] = until - now;
    j["last_snapshot_age_sec"] = std::max(0.0, now - h.last_snapshot_mono);
    auto c = per_host.find(id);
    j["active_leases"] = c == per_host.end() ? 0 : c->second.first;
    j["suspended_leases"] = c == per_host.end() ? 0 : c->second.second;
    j["paused"] = h.pause ? to_json(id, h.pause) : json(nullptr);
    if (h.pause)
      j["paused_by"] = "paused by " + h.pause->by + " (" + to_string(h.pause->level) + ")";
    if (auto* w = cfg_.windows.for_host(id)) {
      j["windows"] = w->text();
      j["window_open"] = w->open_at(wall);
    }
    if (h.load_hold) {
      // The reason is the one of the moment the hold began; `state` is now's.
      j["load_hold"] = h.load_reason;
      j["load_hold_since"] = utc_timestamp(h.load_hold_since);
    }
    j["online"] = !h.offline_since;
    if (h.offline_since)
      j["offline_since"] = utc_timestamp(*h.offline_since);
    hosts[id] = std::move(j);
  }
  // The most recently decided workers only: the table may hold thousands.
  std::vector<const std::pair<const std::string, worker_summary>*> listed;
  for (auto& kv : workers_)
    listed.push_back(&kv);
  if (listed.size() > cfg_.status_workers) {
    auto cut = listed.begin() + static_cast<std::ptrdiff_t>(cfg_.status_workers);
    std::nth_element(listed.begin(), cut, listed.end(), [](auto* a, auto* b) {
      return a->second.last_decision_at > b->second.last_decision_at;
    });
    listed.erase(cut, listed.end());
  }
  json workers = json::object();
  for (auto* kv : listed) {
    auto& [id, w] = *kv;
    json j = {{"grants", w.grants},          {"denies", w.denies},
              {"last_decision", w.last_decision}, {"last_reason", w.last_reason},
              {"online", w.online}};
    if (w.last_decision_at)
      j["last_decision_at"] = utc_timestamp(w.last_decision_at);
    if (w.cooldown_until && *w.cooldown_until > wall)
      j["cooldown_until"] = utc_timestamp(*w.cooldown_until);
    workers[id] = std::move(j);
  }
  return {{"v", schema_version},
          {"updated_at", utc_timestamp(wall)},
          {"fencing_token", fencing_},
          {"active", std::move(active)},
          {"active_total", active_.size()},
          {"recent", std::move(recent)},
          {"hosts", std::move(hosts)},
          {"workers", std::move(workers)},
          {"workers_tracked", workers_.size()},
          {"workers_evicted", workers_evicted_},
          {"hosts_evicted", hosts_evicted_},
          {"hosts_refused", hosts_refused_},
          {"limits",
           {{"max_leases_global", cfg_.max_leases_global},
            {"max_leases_per_worker", cfg_.max_leases_per_worker},
            {"ttl_sec", cfg_.ttl_sec},
            {"lock_delay_sec", cfg_.lock_delay_sec},
            {"grant_rate_per_sec", cfg_.grant_rate_per_sec}}}};
}

} // namespace lull
