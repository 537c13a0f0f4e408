// Admission: whether a lease request is granted now, and if not, why and
// when to ask again (lease_table::request), with the request budgets
// (token_bucket, throttle) and the capacity it counts.

#include "src/lease/lease_table.hpp"
#include "src/lease/fmt.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>
#include <utility>

namespace lull {

token_bucket::token_bucket(double rate, double burst, double now)
  : rate_(rate), burst_(std::max(1.0, burst)), tokens_(std::max(1.0, burst)), last_(now) {}

double token_bucket::tokens(double now) const {
  return std::min(burst_, tokens_ + std::max(0.0, now - last_) * rate_);
}

bool token_bucket::take(double now) {
  tokens_ = tokens(now);
  last_ = std::max(last_, now);
  if (tokens_ < 1.0)
    return false;
  tokens_ -= 1.0;
  return true;
}

double token_bucket::wait_sec(double now) const {
  double t = tokens(now);
  if (t >= 1.0)
    return 0;
  return rate_ > 0 ? (1.0 - t) / rate_ : 3600;
}

const char* to_string(hold_cause c) {
  switch (c) {
    case hold_cause::none: return "none";
    case hold_cause::pause: return "pause";
    case hold_cause::window: return "window";
    case hold_cause::load: return "load";
    case hold_cause::power: return "power";
    case hold_cause::owner: return "owner";
    case hold_cause::gpu: return "gpu";
  }
  return "none";
}

std::optional<hold_cause> parse_hold_cause(std::string_view s) {
  for (auto c : {hold_cause::none, hold_cause::pause, hold_cause::window, hold_cause::load,
                 hold_cause::power, hold_cause::owner, hold_cause::gpu})
    if (s == to_string(c))
      return c;
  return std::nullopt;
}

std::optional<lease_table::hold> lease_table::hold_of(const std::string& host_id,
                                                      const host_info& h,
                                                      work_priority priority, int gpus,
                                                      bool gpu_held) const {
  if (h.pause)
    return hold{hold_cause::pause,
                "Paused by " + h.pause->by + (h.pause->reason.empty() ? "" : ": " + h.pause->reason)};
  if (skips_load_rules(priority))
    return std::nullopt;
  if (auto* w = cfg_.windows.for_host(host_id); w && !w->open_at(env_.wall_sec()))
    return hold{hold_cause::window,
                "Outside the lease windows of host " + host_id + " (" + w->text() + ")"};
  if (h.load_hold)
    return hold{hold_cause::load, h.load_reason};
  if (h.quiet && h.quiet->power && h.quiet->power->on_battery()) {
    auto pct = *h.quiet->power->battery_pct;
    if (!cfg_.run_on_battery)
      return hold{hold_cause::power, "Host " + host_id + " runs on its battery (" + fmt_pct(pct)
                                       + " %); work below HIGH waits for AC power "
                                         "(lease.on_battery is deny)"};
    if (pct < cfg_.min_battery_pct)
      return hold{hold_cause::power, "Host " + host_id + " runs on its battery at "
                                       + fmt_pct(pct) + " %, below lease.min_battery "
                                       + fmt_pct(cfg_.min_battery_pct) + " %"};
  }
  if (h.quiet && h.quiet->owner && h.quiet->owner->in_use(cfg_.owner_idle_sec))
    return hold{hold_cause::owner,
                "Host " + host_id + " is in use (last input " + fmt_whole(h.quiet->owner->idle_sec)
                  + "s ago); work below HIGH waits until its owner has been idle "
                  + fmt_whole(cfg_.owner_idle_sec) + "s (quiet.owner_idle)"};
  // The owner's GPU use holds work that needs a GPU; a held lease waits
  // until that use is the hysteresis below the threshold, so a video
  // hovering around it does not stop and start the work every sample.
  if (gpus > 0 && h.quiet) {
    double limit =
      std::max(0.0, cfg_.gpu_owner_busy_pct - (gpu_held ? cfg_.gpu_hysteresis_pct : 0.0));
    for (auto& g : h.quiet->gpus) {
      auto owner = g.owner_pct;
      if (owner && *owner > limit)
        return hold{hold_cause::gpu,
                    "The owner of host " + host_id + " uses GPU " + g.id + " (" + fmt_pct(*owner)
                      + " % busy, above lease.gpu_owner_busy " + fmt_pct(cfg_.gpu_owner_busy_pct)
                      + " %); work that needs a GPU waits"};
    }
  }
  return std::nullopt;
}

int lease_table::capacity_units(const std::string& host_id) const {
  if (cfg_.capacity_units > 0)
    return cfg_.capacity_units;
  int cpus = 1;
  if (auto it = hosts_.find(host_id); it != hosts_.end() && it->second.cpu_count)
    cpus = *it->second.cpu_count;
  double cap = cpus * cfg_.units_per_cpu * (1.0 - cfg_.headroom);
  return std::max(1, static_cast<int>(std::floor(cap + 1e-9)));
}

int lease_table::used_units(const std::string& host_id) const {
  int used = 0;
  for (auto& [id, r] : active_)
    if (r.host_id == host_id)
      used += r.cost_units;
  double now = env_.mono_sec();
  for (auto& [id, h] : held_)
    if (h.host_id == host_id && h.free_at > now)
      used += h.units;
  return used;
}

int lease_table::units_for(const lease_request& req) const {
  if (req.cost_units)
    return *req.cost_units;
  return cfg_.costs.units(req.cost_class_.value_or(cost_class::normal));
}

double lease_table::earliest_free(const std::string& host_id, int need_units) const {
  // When would `need_units` more fit? Assume nobody releases early: active
  // leases free at expiry + lock_delay, held ones at the end of their hold.
  double now = env_.mono_sec();
  std::vector<std::pair<double, int>> frees;
  for (auto& [id, r] : active_)
    if (r.host_id == host_id)
      frees.emplace_back(r.expires_mono + cfg_.lock_delay_sec, r.cost_units);
  for (auto& [id, h] : held_)
    if (h.host_id == host_id && h.free_at > now)
      frees.emplace_back(h.free_at, h.units);
  std::sort(frees.begin(), frees.end());
  int used = used_units(host_id);
  int cap = capacity_units(host_id);
  for (auto& [at, units] : frees) {
    used -= units;
    if (used + need_units <= cap)
      return std::max(0.0, at - now);
  }
  return cfg_.busy_retry_sec;
}

std::optional<std::string> lease_table::resolve_host(const lease_request& req,
                                                     const std::string& worker,
                                                     std::string& why) const {
  auto list = [this] {
    std::string s;
    for (auto& [id, h] : hosts_)
      s += (s.empty() ? "" : ", ") + id;
    return s;
  };
  if (!req.host_id.empty()) {
    if (hosts_.count(req.host_id))
      return req.host_id;
    why = "Unknown host '" + req.host_id + "'"
          + (hosts_.empty() ? "; no host has reported yet" : "; known hosts: " + list());
    return std::nullopt;
  }
  if (hosts_.count(worker))
    return worker;
  if (hosts_.size() == 1)
    return hosts_.begin()->first;
  if (hosts_.empty())
    why = "No host has reported yet; cannot place the work";
  else
    why = "host_id required: " + std::to_string(hosts_.size()) + " hosts known (" + list()
          + ")";
  return std::nullopt;
}

lease_grant_reply lease_table::deny(const lease_request& req, const std::string& worker,
                                    const std::string& host, std::string reason,
                                    double retry_sec,
                                    std::optional<std::int64_t> cooldown_until) {
  lease_grant_reply out;
  out.request_id = req.request_id;
  out.approved = false;
  out.host_id = host;
  out.reason = std::move(reason);
  // Whatever time a pause, a window or a learned map names, a hint is at
  // most max_retry_hint_sec: a client asks again within it.
  double cap = std::max(1.0, cfg_.max_retry_hint_sec);
  double base = std::isfinite(retry_sec) ? std::clamp(retry_sec, 1.0, cap) : cap;
  double j = base * (1.0 + cfg_.jitter * env_.uniform());
  out.retry_after_sec = std::min(cap, std::ceil(j * 10.0) / 10.0);
  auto& w = track_worker(worker);
  ++w.denies;
  w.last_decision = "denied";
  w.last_reason = out.reason;
  w.last_decision_at = env_.wall_sec();
  w.cooldown_until = cooldown_until;
  lease_event e;
  e.type = "denied";
  e.worker_id = worker;
  e.host_id = host;
  e.reason = out.reason;
  e.at = w.last_decision_at;
  events_.push_back(std::move(e));
  return out;
}

std::optional<lease_table::refusal> lease_table::refuse_offline(const std::string& host,
                                                               const host_info& h) const {
  // An agent that said it is gone: nothing can be placed there, at any
  // priority, until it reports again.
  if (!h.offline_since)
    return std::nullopt;
  return refusal{"Host " + host + " is offline (its agent left at "
                   + utc_timestamp(*h.offline_since) + "); waiting for it to report again",
                 cfg_.busy_retry_sec};
}

std::optional<lease_table::refusal> lease_table::refuse_panic(const std::string& host,
                                                             const host_info& h,
                                                             double now) const {
  // PANIC, then its cool-down: priority does not matter here.
  if (h.quiet && h.quiet->state == quiet_state::panic)
    return refusal{"System is PANIC; heavy work denied", cfg_.panic_cooldown_sec,
                   env_.wall_sec() + static_cast<std::int64_t>(cfg_.panic_cooldown_sec)};
  double until = std::max(h.panic_until_mono, h.cooldown_until_mono);
  if (until <= now)
    return std::nullopt;
  double left = until - now;
  // The end as a time, not a countdown: the reply's retry_after_sec is the
  // one wait a client shows.
  auto end = env_.wall_sec() + static_cast<std::int64_t>(std::ceil(left));
  return refusal{"Recent PANIC detected; cooling down until " + utc_timestamp(end), left, end};
}

std::optional<lease_table::refusal> lease_table::refuse_held(const std::string& host,
                                                            const host_info& h,
                                                            work_priority priority, int gpus,
                                                            double now) const {
  // The yield policy (hold_of): what suspends a running lease denies a new
  // one, with when to ask again.
  auto held = hold_of(host, h, priority, gpus);
  if (!held)
    return std::nullopt;
  auto wall = env_.wall_sec();
  switch (held->cause) {
    case hold_cause::pause: {
      auto& p = *h.pause;
      return refusal{held->text + (p.until ? " (until " + utc_timestamp(*p.until) + ")" : ""),
                     p.until ? static_cast<double>(*p.until - wall) : cfg_.busy_retry_sec};
    }
    case hold_cause::window: {
      auto at = cfg_.windows.for_host(host)->next_open(wall);
      return refusal{held->text + (at ? "; the next opens at " + utc_timestamp(*at) : ""),
                     at ? static_cast<double>(*at - wall) : cfg_.busy_retry_sec};
    }
    case hold_cause::load: {
      double left = cfg_.resume_after_sec - (h.quiet_since_mono ? now - *h.quiet_since_mono : 0.0);
      return refusal{"Leases on host " + host + " are suspended until it has been QUIET for "
                       + fmt_sec(cfg_.resume_after_sec) + "s (" + held->text + ")",
                     std::max(left, 1.0)};
    }
    case hold_cause::power:
    case hold_cause::gpu:
      return refusal{held->text, cfg_.busy_retry_sec};
    case hold_cause::owner:
      return refusal{held->text,
                     std::max(cfg_.owner_idle_sec - h.quiet->owner->idle_sec, 1.0)};
    case hold_cause::none: break;
  }
  return std::nullopt;
}

std::optional<lease_table::refusal> lease_table::refuse_unquiet(const std::string& host,
                                                               const host_info& h,
                                                               double now) const {
  if (!h.quiet)
    return refusal{"No quiet assessment for host " + host + " yet; waiting for QUIET",
                   cfg_.busy_retry_sec};
  if (now - h.quiet_fresh_mono > cfg_.stale_after_sec)
    return refusal{"No fresh quiet assessment for host " + host + " (last one "
                     + fmt_sec(now - h.quiet_fresh_mono) + "s old; stale after "
                     + fmt_sec(cfg_.stale_after_sec) + "s); waiting for QUIET",
                   cfg_.busy_retry_sec};
  if (h.quiet->state == quiet_state::quiet)
    return std::nullopt;
  // Learned quiet windows: retry when the host is usually QUIET.
  refusal out;
  out.retry_sec = cfg_.busy_retry_sec;
  if (h.quiet_hours && h.quiet_hours->days_observed >= cfg_.learned_min_days && zone_) {
    auto wall = env_.wall_sec();
    out.next_window = next_quiet_hour(*h.quiet_hours, wall, zone_, cfg_.learned_share);
    if (out.next_window && static_cast<double>(*out.next_window - wall) > cfg_.learned_horizon_sec)
      out.next_window.reset(); // the map came from the bus: nothing past the horizon
    if (out.next_window && static_cast<double>(*out.next_window - wall) > out.retry_sec)
      out.retry_sec = static_cast<double>(*out.next_window - wall);
  }
  // The assessment's first reason says whose load it is ("Other processes
  // ... use 48% CPU"), so a denial never blames the owner for lull's own
  // work or the other way round.
  out.reason = std::string("System is ") + to_string(h.quiet->state) + "; waiting for QUIET"
               + (h.quiet->reasons.empty() ? std::string() : " (" + h.quiet->reasons.front() + ")");
  return out;
}

std::optional<lease_table::refusal> lease_table::refuse_lease_count(const std::string& worker,
                                                                   double now) const {
  auto earliest_expiry = [&](auto pred) {
    double best = cfg_.busy_retry_sec;
    bool any = false;
    for (auto& [id, r] : active_)
      if (pred(r)) {
        double left = std::max(0.0, r.expires_mono - now);
        best = any ? std::min(best, left) : left;
        any = true;
      }
    return best;
  };
  if (static_cast<int>(active_.size()) >= cfg_.max_leases_global)
    return refusal{"Too many active leases: global=" + std::to_string(active_.size())
                     + ", max=" + std::to_string(cfg_.max_leases_global),
                   earliest_expiry([](auto&) { return true; })};
  int mine = 0;
  for (auto& [id, r] : active_)
    if (r.worker_id == worker)
      ++mine;
  if (mine < cfg_.max_leases_per_worker)
    return std::nullopt;
  return refusal{"Too many active leases for worker " + worker + ": " + std::to_string(mine)
                   + ", max=" + std::to_string(cfg_.max_leases_per_worker),
                 earliest_expiry([&](auto& r) { return r.worker_id == worker; })};
}

std::optional<lease_table::refusal> lease_table::refuse_capacity(const std::string& host,
                                                                int units) const {
  int used = used_units(host);
  int cap = capacity_units(host);
  if (used + units <= cap)
    return std::nullopt;
  std::string reason = "Capacity exceeded: used=" + std::to_string(used)
                       + ", requested=" + std::to_string(units) + ", capacity=" + std::to_string(cap);
  if (units > cap)
    reason += " (the request alone exceeds the host's capacity)";
  return refusal{reason, units > cap ? cfg_.busy_retry_sec : earliest_free(host, units)};
}

std::optional<lease_table::refusal> lease_table::refuse_gpus(const std::string& host,
                                                           const host_info& h, int gpus) const {
  if (gpus <= 0)
    return std::nullopt;
  // The host's GPUs are those its last assessment carried from its
  // snapshot; an agent that reports none has none to lease.
  if (!h.quiet)
    return refusal{"No quiet assessment for host " + host + " yet; its GPUs are not known",
                   cfg_.busy_retry_sec};
  int have = static_cast<int>(h.quiet->gpus.size());
  if (have == 0)
    return refusal{"Host " + host + " reports no GPU; the work asks for " + std::to_string(gpus),
                   cfg_.max_retry_hint_sec};
  int used = 0;
  for (auto& [id, r] : active_)
    if (r.host_id == host)
      used += r.gpu;
  double now = env_.mono_sec();
  for (auto& [id, held] : held_)
    if (held.host_id == host && held.free_at > now)
      used += held.gpus;
  if (used + gpus <= have)
    return std::nullopt;
  auto reason = "Not enough free GPUs on host " + host + ": " + std::to_string(have)
                + " GPUs, " + std::to_string(used) + " leased, requested="
                + std::to_string(gpus);
  if (gpus > have)
    return refusal{reason + " (the request alone exceeds the host's GPUs)",
                   cfg_.max_retry_hint_sec};
  return refusal{reason, cfg_.busy_retry_sec};
}

lease_grant_reply lease_table::request(const lease_request& req, const std::string& worker) {
  double now = env_.mono_sec();
  prune_held();
  std::string why;
  auto host_opt = resolve_host(req, worker, why);
  if (!host_opt)
    return deny(req, worker, req.host_id, why, cfg_.busy_retry_sec);
  const auto& host = *host_opt;
  const auto& h = hosts_.at(host);
  int units = units_for(req);

  // The gates, in order: the host is there; no PANIC or cool-down; no hold
  // (a pause; windows, load, power and the owner's GPU use below HIGH);
  // QUIET (below HIGH); the lease counts; capacity; GPUs. The first that
  // says no answers.
  std::optional<refusal> no = refuse_offline(host, h);
  if (!no)
    no = refuse_panic(host, h, now);
  if (!no)
    no = refuse_held(host, h, req.priority, req.gpu, now);
  if (!no && !skips_load_rules(req.priority))
    no = refuse_unquiet(host, h, now);
  if (!no)
    no = refuse_lease_count(worker, now);
  if (!no)
    no = refuse_capacity(host, units);
  if (!no)
    no = refuse_gpus(host, h, req.gpu);
  // The grant rate last: only grants consume tokens.
  if (!no && !bucket_.take(now))
    no = refusal{"Grant rate limit reached: " + fmt_sec(cfg_.grant_rate_per_sec)
                   + " grants/s, burst " + fmt_sec(cfg_.grant_burst),
                 bucket_.wait_sec(now)};
  if (no) {
    auto out = deny(req, worker, host, std::move(no->reason), no->retry_sec, no->cooldown_until);
    out.next_window = no->next_window;
    return out;
  }
  int used = used_units(host);
  int cap = capacity_units(host);

  lease_record r;
  r.lease_id = env_.new_id();
  r.worker_id = worker;
  r.host_id = host;
  r.job_type = req.job_type;
  r.cost_units = units;
  r.gpu = req.gpu;
  r.priority = req.priority;
  r.fencing_token = ++fencing_;
  double ttl = req.ttl_sec.value_or(cfg_.ttl_sec);
  bool clamped = false;
  if (ttl < cfg_.min_ttl_sec || ttl > cfg_.max_ttl_sec) {
    ttl = std::clamp(ttl, cfg_.min_ttl_sec, cfg_.max_ttl_sec);
    clamped = true;
  }
  r.ttl_sec = ttl;
  r.granted_mono = r.last_heartbeat_mono = now;
  r.expires_mono = now + ttl;
  r.granted_at = env_.wall_sec();
  set_claim(r, req.process);

  lease_grant_reply out;
  out.request_id = req.request_id;
  out.approved = true;
  out.lease_id = r.lease_id;
  out.host_id = host;
  out.fencing_token = r.fencing_token;
  out.ttl_sec = ttl;
  out.heartbeat_interval_sec = heartbeat_interval_sec(ttl);
  out.lock_delay_sec = cfg_.lock_delay_sec;
  out.ttl_clamped = clamped;
  out.expires_at = r.granted_at + static_cast<std::int64_t>(std::ceil(ttl));
  out.cost_units = units;
  out.gpu = req.gpu;
  out.reason = "Granted: used=" + std::to_string(used + units) + "/" + std::to_string(cap)
               + " units";
  if (clamped)
    out.reason += "; TTL clamped to " + fmt_sec(ttl) + "s (allowed "
                  + fmt_sec(cfg_.min_ttl_sec) + "-" + fmt_sec(cfg_.max_ttl_sec) + "s)";
  auto& w = track_worker(worker);
  ++w.grants;
  w.last_decision = "granted";
  w.last_reason = out.reason;
  w.last_decision_at = r.granted_at;
  w.cooldown_until.reset();
  emit("granted", r, out.reason, lease_state::active);
  active_.emplace(r.lease_id, std::move(r));
  return out;
}

std::optional<double> lease_table::throttle(const std::string& worker_id) {
  double now = env_.mono_sec();
  auto it = worker_buckets_.find(worker_id);
  if (it == worker_buckets_.end()) {
    if (worker_buckets_.size() >= cfg_.worker_buckets_kept) {
      // Drop the buckets that refilled (idle workers); a full one is what a
      // new bucket would be anyway. If every worker is busy, drop half.
      for (auto b = worker_buckets_.begin(); b != worker_buckets_.end();)
        b = b->second.tokens(now) >= cfg_.worker_burst ? worker_buckets_.erase(b) : std::next(b);
      while (worker_buckets_.size() >= cfg_.worker_buckets_kept / 2 + 1)
        worker_buckets_.erase(worker_buckets_.begin());
    }
    it = worker_buckets_
           .emplace(worker_id, token_bucket(cfg_.worker_rate_per_sec, cfg_.worker_burst, now))
           .first;
  }
  if (it->second.take(now))
    return std::nullopt;
  ++throttled_;
  return std::max(0.1, std::ceil(it->second.wait_sec(now) * 10.0) / 10.0);
}

} // namespace lull
