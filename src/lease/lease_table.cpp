// The lease mechanism: grant bookkeeping, heartbeats, release, expiry and
// revocation, the outboxes the lease manager drains, and restore after a
// restart. Admission (admission.cpp), yield (yield.cpp), pauses
// (host_control.cpp) and the JSON renderings (lease_json.cpp) are the
// table's other files.

#include "src/lease/lease_table.hpp"

#include "messages/topics.hpp"
#include "src/lease/fmt.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <utility>
#include <set>
#include <sstream>

namespace lull {

lease_env lease_env::system() {
  lease_env e;
  e.mono_sec = steady_seconds;
  e.wall_sec = unix_seconds_now;
  auto eng = std::make_shared<std::mt19937_64>([] {
    std::uint64_t seed = 0;
    fill_random(reinterpret_cast<unsigned char*>(&seed), sizeof seed);
    return seed;
  }());
  e.uniform = [eng] { return std::uniform_real_distribution<double>(0, 1)(*eng); };
  e.new_id = random_lease_id;
  return e;
}

// -- lease table ---------------------------------------------------------------

lease_table::lease_table(lease_policy_config cfg, lease_env env,
                         std::uint64_t first_fencing_token)
  : cfg_(cfg),
    env_(std::move(env)),
    fencing_(first_fencing_token),
    bucket_(cfg.grant_rate_per_sec, cfg.grant_burst, env_.mono_sec()) {
  zone_ = find_time_zone(cfg_.timezone, nullptr);
}

worker_summary& lease_table::track_worker(const std::string& worker_id) {
  if (auto it = workers_.find(worker_id); it != workers_.end())
    return it->second;
  if (workers_.size() >= cfg_.max_tracked_workers) {
    // Forget the longest-idle tenth of the workers that hold no lease, so a
    // flood of made-up worker ids costs a bounded table, amortised O(log n).
    std::set<std::string> holding;
    for (auto& [id, r] : active_)
      holding.insert(r.worker_id);
    std::vector<std::pair<std::int64_t, std::string>> idle;
    for (auto& [id, w] : workers_)
      if (!holding.count(id))
        idle.emplace_back(w.last_decision_at, id);
    auto n = std::min(idle.size(), std::max<std::size_t>(1, cfg_.max_tracked_workers / 10));
    std::nth_element(idle.begin(), idle.begin() + static_cast<std::ptrdiff_t>(n), idle.end());
    for (std::size_t i = 0; i < n; ++i)
      workers_.erase(idle[i].second);
    workers_evicted_ += n;
  }
  return workers_[worker_id];
}

lease_table::pending_host* lease_table::pending(const std::string& host_id) {
  if (!valid_id(host_id))
    return nullptr;
  auto it = pending_.find(host_id);
  if (it == pending_.end()) {
    // Bounded: ids no agent ever backs cannot grow it past max_hosts.
    if (pending_.size() >= std::max<std::size_t>(1, cfg_.max_hosts))
      pending_.erase(pending_.begin());
    it = pending_.emplace(host_id, pending_host{}).first;
  }
  return &it->second;
}

void lease_table::on_quiet_hours(const std::string& host_id, quiet_hour_map m) {
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    if (auto* p = pending(host_id))
      p->quiet_hours = std::move(m);
    return;
  }
  it->second.quiet_hours = std::move(m);
}

std::vector<std::string> lease_table::take_hosts_evicted() {
  return std::exchange(evicted_, {});
}

void lease_table::evict_host(std::map<std::string, host_info>::iterator it, const char* why) {
  (void)why;
  evicted_.push_back(it->first);
  hosts_.erase(it);
  ++hosts_evicted_;
}

void lease_table::forget_silent() {
  if (expiry_paused_)
    return; // cut off from the broker: no agent could be heard
  double now = env_.mono_sec();
  // Silent since lulld came back to the broker at the earliest.
  auto silent = [&](const host_info& h) {
    return now - std::max(h.last_snapshot_mono, bus_back_mono_) > cfg_.host_forget_after_sec;
  };
  std::set<std::string> leased;
  bool any = false;
  for (auto& [id, h] : hosts_)
    any = any || silent(h);
  if (!any)
    return;
  for (auto& [id, r] : active_)
    leased.insert(r.host_id);
  for (auto it = hosts_.begin(); it != hosts_.end();) {
    auto next = std::next(it);
    if (silent(it->second) && !leased.count(it->first))
      evict_host(it, "silent");
    it = next;
  }
}

bool lease_table::on_snapshot(const std::string& host_id, std::optional<int> cpus) {
  if (!valid_id(host_id))
    return false;
  double now = env_.mono_sec();
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    if (hosts_.size() >= cfg_.max_hosts) {
      // Full: the host whose agent has been silent longest gives way, so a
      // flood of made-up hosts cannot lock a real agent out. A host with
      // leases stays (its holders still count on it).
      std::set<std::string> leased;
      for (auto& [id, r] : active_)
        leased.insert(r.host_id);
      auto oldest = hosts_.end();
      for (auto h = hosts_.begin(); h != hosts_.end(); ++h)
        if (!leased.count(h->first)
            && (oldest == hosts_.end()
                || h->second.last_snapshot_mono < oldest->second.last_snapshot_mono))
          oldest = h;
      if (oldest == hosts_.end()) {
        ++hosts_refused_;
        return false;
      }
      evict_host(oldest, "full");
    }
    it = hosts_.emplace(host_id, host_info{}).first;
    it->second.last_snapshot_mono = now;
    // What came for it before its agent did (retained messages at start).
    if (auto p = pending_.find(host_id); p != pending_.end()) {
      auto held = std::move(p->second);
      pending_.erase(p);
      if (held.control)
        set_pause(it->second, host_id, std::move(held.control->pause), held.control->level);
      if (held.quiet_hours)
        it->second.quiet_hours = std::move(held.quiet_hours);
      if (held.quiet)
        on_quiet(*held.quiet);
    }
  }
  auto& h = it->second;
  h.last_snapshot_mono = now;
  // No real host has more; a larger count would overflow capacity_units.
  if (cpus && *cpus > 0 && *cpus <= 4096)
    h.cpu_count = *cpus;
  h.offline_since.reset(); // a fresh snapshot: its agent is back
  return true;
}

void lease_table::on_host_availability(const std::string& host_id, bool online) {
  auto it = hosts_.find(host_id);
  if (it == hosts_.end())
    return; // a host lull never heard of stays unknown
  if (online) {
    it->second.offline_since.reset();
  } else if (!it->second.offline_since) {
    it->second.offline_since = env_.wall_sec();
    it->second.offline_mono = env_.mono_sec();
  }
}

void lease_table::on_worker_status(const std::string& worker_id, bool online) {
  if (!online && !workers_.count(worker_id)) {
    // Nothing to forget for a worker we never saw; still end its leases.
  } else {
    track_worker(worker_id).online = online;
  }
  if (online) {
    wills_.erase(worker_id);
    return;
  }
  if (cfg_.will_grace_sec > 0) {
    wills_.emplace(worker_id, env_.mono_sec() + cfg_.will_grace_sec);
    return;
  }
  end_leases_of(worker_id);
}

void lease_table::end_leases_of(const std::string& worker_id) {
  for (auto it = active_.begin(); it != active_.end();) {
    auto next = std::next(it);
    if (it->second.worker_id == worker_id)
      end_lease(it, lease_state::expired, "worker went offline (last will)", true);
    it = next;
  }
}

const lease_record* lease_table::find(const std::string& lease_id) const {
  if (auto it = active_.find(lease_id); it != active_.end())
    return &it->second;
  for (auto& r : recent_)
    if (r.lease_id == lease_id)
      return &r;
  return nullptr;
}

std::variant<std::map<std::string, lease_record>::iterator, lease_error>
lease_table::holder_lookup(const std::string& lease_id, const std::string& worker_id) {
  auto it = active_.find(lease_id);
  if (it != active_.end()) {
    if (!worker_id.empty() && it->second.worker_id != worker_id)
      return lease_error{lease_error_code::not_holder,
                         "lease " + lease_id + " is not held by worker " + worker_id};
    return it;
  }
  if (auto* r = find(lease_id)) {
    if (!worker_id.empty() && r->worker_id != worker_id)
      return lease_error{lease_error_code::not_holder,
                         "lease " + lease_id + " is not held by worker " + worker_id};
    return lease_error{lease_error_code::invalid_state_transition,
                       "lease " + lease_id + " is " + to_string(r->state)
                         + (r->end_reason.empty() ? "" : " (" + r->end_reason + ")")};
  }
  return lease_error{lease_error_code::resource_not_found,
                     "lease " + lease_id + " is not known (never granted, or long ended)"};
}

bool lease_table::set_claim(lease_record& r, const std::optional<lease_process>& process) {
  if (!process)
    return false;
  if (auto why = claim_refusal(*process, r.lease_id)) {
    // Not measured as the lease's: the host stays judged on its full load.
    r.process_refused = *why;
    return false;
  }
  r.process = process;
  r.process_refused.clear();
  return true;
}

void lease_table::on_claim_refused(const std::string& host_id, const std::string& lease_id,
                                   const std::string& reason) {
  auto it = active_.find(lease_id);
  if (it == active_.end() || it->second.host_id != host_id || !it->second.process)
    return;
  it->second.process_refused = reason.substr(0, 300);
}

lease_ack lease_table::ack_of(const lease_record& r) const {
  lease_ack a;
  a.process_refused = r.process_refused;
  a.lease_id = r.lease_id;
  a.state = r.state;
  a.fencing_token = r.fencing_token;
  a.suspended = r.suspended;
  if (r.state == lease_state::active) {
    double now = env_.mono_sec();
    a.ttl_remaining_sec = std::max(0.0, r.expires_mono - now);
    a.expires_at = env_.wall_sec() + static_cast<std::int64_t>(std::ceil(a.ttl_remaining_sec));
  }
  return a;
}

std::variant<lease_ack, lease_error>
lease_table::heartbeat(const std::string& lease_id, const std::string& worker_id,
                       const std::optional<lease_process>& process) {
  // A heartbeat proves its worker alive, whatever will came before it.
  if (auto w = wills_.find(worker_id); w != wills_.end()) {
    wills_.erase(w);
    if (auto s = workers_.find(worker_id); s != workers_.end())
      s->second.online = true;
  }
  tick(); // a lease past its TTL is expired even if the tick has not run yet
  auto found = holder_lookup(lease_id, worker_id);
  if (auto* e = std::get_if<lease_error>(&found))
    return *e;
  auto& r = std::get<0>(found)->second;
  double now = env_.mono_sec();
  if (process && process != r.process && set_claim(r, process))
    hosts_changed_.push_back(r.host_id);
  r.last_heartbeat_mono = now;
  r.expires_mono = now + r.ttl_sec;
  r.heartbeat_warned = false;
  dirty_.push_back(r.lease_id);
  return ack_of(r);
}

std::variant<lease_ack, lease_error> lease_table::release(const std::string& lease_id,
                                                          const std::string& worker_id,
                                                          const std::string& reason) {
  tick();
  auto found = holder_lookup(lease_id, worker_id);
  if (auto* e = std::get_if<lease_error>(&found)) {
    // Releasing an ended lease is fine for its holder: it confirms the work
    // stopped, so an expired or revoked lease's held units free at once.
    if (e->code == lease_error_code::invalid_state_transition) {
      held_.erase(lease_id);
      return ack_of(*find(lease_id));
    }
    return *e;
  }
  auto it = std::get<0>(found);
  end_lease(it, lease_state::released, reason.empty() ? "released by holder" : reason, false);
  return ack_of(recent_.front());
}

std::variant<lease_ack, lease_error> lease_table::report(const std::string& lease_id,
                                                         const std::string& worker_id,
                                                         const lease_action_request& rep) {
  tick();
  auto found = holder_lookup(lease_id, worker_id);
  if (auto* e = std::get_if<lease_error>(&found))
    return *e;
  auto& r = std::get<0>(found)->second;
  if (rep.progress)
    r.progress = rep.progress;
  if (!rep.message.empty())
    r.last_report = rep.message;
  if (rep.accounting.is_object())
    r.accounting = rep.accounting;
  emit("reported", r, rep.message);
  return ack_of(r);
}

std::variant<lease_ack, lease_error> lease_table::revoke(const std::string& lease_id,
                                                         const std::string& holder,
                                                         const std::string& reason) {
  tick();
  auto found = holder_lookup(lease_id, holder);
  if (auto* e = std::get_if<lease_error>(&found))
    return *e;
  auto it = std::get<0>(found);
  // The holder may still be running until it sees the notice: hold its units.
  end_lease(it, lease_state::revoked, reason.empty() ? "revoked" : reason, true);
  return ack_of(recent_.front());
}

void lease_table::end_lease(std::map<std::string, lease_record>::iterator it, lease_state st,
                            std::string reason, bool hold_units) {
  auto r = std::move(it->second);
  active_.erase(it);
  r.state = st;
  r.end_reason = std::move(reason);
  r.ended_at = env_.wall_sec();
  r.suspended = false;
  if (hold_units && cfg_.lock_delay_sec > 0) {
    r.hold_until_mono = env_.mono_sec() + cfg_.lock_delay_sec;
    held_[r.lease_id] = reservation{r.host_id, r.hold_until_mono, r.cost_units, r.gpu};
  }
  emit(st == lease_state::released ? "released"
       : st == lease_state::expired ? "expired"
                                    : "revoked",
       r, r.end_reason, st);
  recent_.push_front(std::move(r));
  while (recent_.size() > cfg_.recent_kept)
    recent_.pop_back();
}

void lease_table::prune_held() {
  double now = env_.mono_sec();
  for (auto it = held_.begin(); it != held_.end();)
    it = it->second.free_at <= now ? held_.erase(it) : std::next(it);
}

void lease_table::bus_disconnected() {
  expiry_paused_ = true;
  // Wills that came just before lulld lost the broker say nothing about the
  // workers: a broker shutting down publishes them all, agents' "offline"
  // availability (lulld's own too) among them.
  wills_.clear();
  double now = env_.mono_sec();
  for (auto& [id, h] : hosts_)
    if (h.offline_since && now - h.offline_mono <= cfg_.will_grace_sec)
      h.offline_since.reset();
}

void lease_table::bus_reconnected() {
  expiry_paused_ = false;
  double now = env_.mono_sec();
  bus_back_mono_ = now;
  for (auto& [id, r] : active_) {
    if (r.expires_mono < now + r.ttl_sec) {
      r.expires_mono = now + r.ttl_sec;
      r.heartbeat_warned = false;
      dirty_.push_back(id);
    }
  }
}

void lease_table::tick() {
  apply_yield();
  forget_silent();
  double now = env_.mono_sec();
  for (auto it = wills_.begin(); !expiry_paused_ && it != wills_.end();) {
    if (it->second > now) {
      ++it;
      continue;
    }
    auto worker = it->first;
    it = wills_.erase(it);
    end_leases_of(worker);
  }
  for (auto it = active_.begin(); !expiry_paused_ && it != active_.end();) {
    auto next = std::next(it);
    auto& r = it->second;
    if (now >= r.expires_mono) {
      end_lease(it, lease_state::expired,
                "missed heartbeats (TTL " + fmt_sec(r.ttl_sec) + "s)", true);
    } else if (!r.heartbeat_warned
               // Holders cannot heartbeat while lulld is away: the count
               // starts again when it is back.
               && now - std::max(r.last_heartbeat_mono, bus_back_mono_)
                    > 2 * heartbeat_interval_sec(r.ttl_sec)) {
      r.heartbeat_warned = true;
      emit("heartbeat_missed", r,
           "no heartbeat for " + fmt_sec(now - r.last_heartbeat_mono) + "s; expires in "
             + fmt_sec(r.expires_mono - now) + "s");
    }
    it = next;
  }
  prune_held();
}

void lease_table::emit(std::string type, const lease_record& r, std::string reason,
                       std::optional<lease_state> st, std::optional<bool> suspended) {
  lease_event e;
  e.type = std::move(type);
  e.lease_id = r.lease_id;
  e.worker_id = r.worker_id;
  e.host_id = r.host_id;
  e.reason = std::move(reason);
  e.fencing_token = r.fencing_token;
  e.at = env_.wall_sec();
  e.state = st;
  e.suspended = suspended;
  e.preempted = preempting_;
  if (st) {
    dirty_.push_back(e.lease_id);
    hosts_changed_.push_back(r.host_id);
  }
  events_.push_back(std::move(e));
}

void lease_table::restore(lease_record r, double remaining_sec) {
  fencing_ = std::max(fencing_, r.fencing_token);
  double now = env_.mono_sec();
  r.state = lease_state::active;
  r.granted_mono = r.last_heartbeat_mono = now;
  r.expires_mono = now + std::max(remaining_sec, r.ttl_sec);
  r.heartbeat_warned = false;
  if (r.suspended_at > 0) {
    // Suspended before the restart: it stays so until its host may run it
    // again, and preempt_after counts from the original suspension.
    r.suspended = true;
    r.suspended_mono = now - static_cast<double>(std::max<std::int64_t>(0, env_.wall_sec() - r.suspended_at));
    auto [hit, added] = hosts_.try_emplace(r.host_id);
    auto& h = hit->second;
    if (added)
      h.last_snapshot_mono = now; // forgotten only after a silence from now
    // A record from before suspend_cause was kept says it in its reason.
    if (r.suspend_cause == hold_cause::none)
      r.suspend_cause = r.suspend_reason.rfind("Paused", 0) == 0    ? hold_cause::pause
                        : r.suspend_reason.rfind("Outside", 0) == 0 ? hold_cause::window
                                                                    : hold_cause::load;
    if (!h.load_hold && r.suspend_cause == hold_cause::load) {
      h.load_hold = true;
      h.load_hold_since = r.suspended_at;
      h.load_reason = r.suspend_reason;
    }
  }
  hosts_changed_.push_back(r.host_id);
  auto id = r.lease_id;
  active_.insert_or_assign(id, std::move(r));
  dirty_.push_back(id);
}

std::vector<std::string> lease_table::take_dirty() {
  std::vector<std::string> out;
  out.swap(dirty_);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

void lease_table::committed(const std::vector<std::string>& ids) {
  for (auto& id : ids) {
    if (auto it = active_.find(id); it != active_.end())
      durable_.insert_or_assign(id, it->second);
    else
      durable_.erase(id);
  }
}

void lease_table::all_committed() {
  durable_ = active_;
}

void lease_table::roll_back(const std::vector<std::string>& ids) {
  auto drop_recent = [this](const std::string& id) {
    recent_.erase(std::remove_if(recent_.begin(), recent_.end(),
                                 [&](const lease_record& r) { return r.lease_id == id; }),
                  recent_.end());
  };
  for (auto& id : ids) {
    auto cur = active_.find(id);
    auto was = durable_.find(id);
    if (was != durable_.end()) {
      if (cur != active_.end()) {
        // A renewal that was not written: the stored expiry holds.
        cur->second.expires_mono = was->second.expires_mono;
        cur->second.last_heartbeat_mono = was->second.last_heartbeat_mono;
      } else {
        // Ended but not written as ended: active again, its units with it.
        active_.insert_or_assign(id, was->second);
        held_.erase(id);
        drop_recent(id);
      }
      hosts_changed_.push_back(was->second.host_id);
    } else {
      // Granted but never written: it never was.
      if (cur != active_.end()) {
        hosts_changed_.push_back(cur->second.host_id);
        active_.erase(cur);
      }
      held_.erase(id);
      drop_recent(id);
    }
  }
  events_.clear();
}

std::vector<std::string> lease_table::take_hosts_changed() {
  std::vector<std::string> out;
  out.swap(hosts_changed_);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::vector<lease_event> lease_table::take_events() {
  std::vector<lease_event> out;
  out.swap(events_);
  return out;
}

} // namespace lull
