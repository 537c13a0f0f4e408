#include "src/lease/lease_table.hpp"

#include "messages/topics.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <utility>
#include <set>
#include <sstream>

namespace lull {

namespace {

std::string fmt_sec(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", s);
  return buf;
}

} // namespace

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

// -- token bucket --------------------------------------------------------------

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

// -- events --------------------------------------------------------------------

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

const char* to_string(pause_level l) {
  switch (l) {
    case pause_level::schedule: return "schedule";
    case pause_level::home_assistant: return "home_assistant";
    case pause_level::admin: return "admin";
  }
  return "admin";
}

std::optional<pause_level> parse_pause_level(std::string_view s) {
  auto l = lower(std::string(s));
  if (l == "schedule")
    return pause_level::schedule;
  if (l == "home_assistant" || l == "ha")
    return pause_level::home_assistant;
  if (l == "admin")
    return pause_level::admin;
  return std::nullopt;
}

nlohmann::json to_json(const std::string& host_id, const std::optional<host_pause>& p) {
  nlohmann::json j = {{"v", schema_version}, {"host_id", host_id}, {"paused", p.has_value()}};
  if (p) {
    j["by"] = p->by;
    j["level"] = to_string(p->level);
    j["reason"] = p->reason;
    j["since"] = utc_timestamp(p->since);
    j["until"] = p->until ? nlohmann::json(utc_timestamp(*p->until)) : nlohmann::json(nullptr);
  }
  return j;
}

std::variant<host_control, std::string> parse_host_control(const nlohmann::json& j) {
  if (!j.is_object())
    return std::string("expected an object such as {\"paused\":true,\"by\":\"alice\",\"reason\":..}");
  auto paused = j.find("paused");
  if (paused == j.end() || !paused->is_boolean())
    return std::string("field 'paused' must be true or false");
  host_control c;
  if (auto it = j.find("level"); it != j.end() && !it->is_null()) {
    auto l = it->is_string() ? parse_pause_level(it->get<std::string>()) : std::nullopt;
    if (!l)
      return std::string("field 'level' must be schedule, home_assistant or admin");
    c.level = *l;
  }
  if (!paused->get<bool>())
    return c;
  host_pause p;
  p.level = c.level;
  auto text = [&](const char* key, std::string& out, std::size_t max) -> std::optional<std::string> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
      return std::nullopt;
    if (!it->is_string() || it->get_ref<const std::string&>().size() > max)
      return "field '" + std::string(key) + "' must be a string of at most "
             + std::to_string(max) + " characters";
    out = it->get<std::string>();
    return std::nullopt;
  };
  if (auto e = text("by", p.by, 128))
    return *e;
  if (auto e = text("reason", p.reason, 512))
    return *e;
  auto when = [&](const char* key) -> std::variant<std::optional<std::int64_t>, std::string> {
    auto it = j.find(key);
    if (it == j.end() || it->is_null())
      return std::optional<std::int64_t>{};
    std::optional<std::int64_t> t;
    if (it->is_string())
      t = parse_utc_timestamp(it->get<std::string>());
    if (!t)
      return "field '" + std::string(key) + "' must be an RFC 3339 UTC time such as "
             "2026-12-01T22:00:00Z, or null";
    return t;
  };
  auto since = when("since");
  if (auto* e = std::get_if<std::string>(&since))
    return *e;
  p.since = std::get<0>(since).value_or(0);
  auto until = when("until");
  if (auto* e = std::get_if<std::string>(&until))
    return *e;
  p.until = std::get<0>(until);
  if (p.by.empty())
    p.by = "someone";
  c.pause = std::move(p);
  return c;
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

void lease_table::on_quiet(const quiet_assessment& q) {
  auto hit = hosts_.find(q.host_id);
  if (hit == hosts_.end()) {
    if (auto* p = pending(q.host_id))
      p->quiet = q;
    return;
  }
  auto& h = hit->second;
  double now = env_.mono_sec();
  auto wall = env_.wall_sec();
  // Its age counts from when it was assessed (a retained one may be old);
  // a time in the future counts as now.
  std::int64_t at = q.assessed_at > 0 ? std::min(q.assessed_at, wall) : wall;
  if (h.quiet && at < h.quiet->assessed_at)
    return; // older than the one held: a late retained copy
  h.quiet_fresh_mono = now - static_cast<double>(wall - at);
  if (q.state == quiet_state::panic)
    h.panic_until_mono = std::max(h.panic_until_mono, now + cfg_.panic_cooldown_sec);
  // The cool-down it asks for replaces the last one's, and counts at most
  // max_cooldown_sec from now whatever time it names.
  h.cooldown_until_mono = 0;
  if (q.cooldown_until) {
    double left = static_cast<double>(*q.cooldown_until - wall);
    if (left > 0)
      h.cooldown_until_mono = now + std::min(left, cfg_.max_cooldown_sec);
  }
  bool busy = q.state == quiet_state::busy || q.state == quiet_state::panic;
  if (!busy)
    h.busy_since_mono.reset();
  else if (!h.busy_since_mono)
    h.busy_since_mono = now;
  if (q.state != quiet_state::quiet)
    h.quiet_since_mono.reset();
  else if (!h.quiet_since_mono)
    h.quiet_since_mono = now;
  h.quiet = q;
  h.quiet->assessed_at = at;
  apply_yield(&q.host_id);
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

std::optional<std::string> lease_table::on_pause(const std::string& host_id,
                                                 std::optional<host_pause> pause,
                                                 pause_level level) {
  if (pause)
    pause->level = level;
  auto it = hosts_.find(host_id);
  if (it == hosts_.end()) {
    if (auto* p = pending(host_id)) {
      auto held = p->control && p->control->pause ? &*p->control->pause : nullptr;
      if (held && held->level > level)
        return "paused by " + held->by + " (" + to_string(held->level) + ")";
      p->control = host_control{std::move(pause), level};
    }
    return std::nullopt;
  }
  auto why = set_pause(it->second, host_id, std::move(pause), level);
  if (!why)
    apply_yield(&host_id);
  return why;
}

std::optional<std::string> lease_table::set_pause(host_info& h, const std::string& host_id,
                                                  std::optional<host_pause> pause,
                                                  pause_level level) {
  (void)host_id;
  if (h.pause && h.pause->level > level)
    return "paused by " + h.pause->by + " (" + to_string(h.pause->level) + ")";
  h.pause = std::move(pause);
  return std::nullopt;
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

std::vector<std::string> lease_table::take_pauses_ended() {
  return std::exchange(pauses_ended_, {});
}

std::string lease_table::hold_reason(const std::string& host_id, const host_info& h,
                                     lease_priority priority) const {
  if (h.pause)
    return "Paused by " + h.pause->by + (h.pause->reason.empty() ? "" : ": " + h.pause->reason);
  if (priority == lease_priority::high)
    return {};
  if (auto* w = cfg_.windows.for_host(host_id); w && !w->open_at(env_.wall_sec()))
    return "Outside the lease windows of host " + host_id + " (" + w->text() + ")";
  if (h.load_hold)
    return h.load_reason;
  return {};
}

void lease_table::apply_yield(const std::string* only_host) {
  if (expiry_paused_)
    return; // cut off from the broker: no notice could reach a holder
  double now = env_.mono_sec();
  auto wall = env_.wall_sec();
  for (auto& [id, h] : hosts_) {
    if (only_host && id != *only_host)
      continue;
    if (h.pause && h.pause->until && *h.pause->until <= wall) {
      h.pause.reset();
      pauses_ended_.push_back(id);
    }
    if (!h.load_hold && h.busy_since_mono && now - *h.busy_since_mono >= cfg_.suspend_after_sec
        && h.quiet) {
      h.load_hold = true;
      h.load_hold_since = wall;
      h.load_reason = std::string("System is ") + to_string(h.quiet->state) + " for "
                      + fmt_sec(now - *h.busy_since_mono) + "s"
                      + (h.quiet->reasons.empty() ? "" : " (" + h.quiet->reasons.front() + ")");
    } else if (h.load_hold && h.quiet_since_mono
               && now - *h.quiet_since_mono >= cfg_.resume_after_sec) {
      h.load_hold = false;
      h.load_reason.clear();
    }
  }
  for (auto it = active_.begin(); it != active_.end();) {
    auto next = std::next(it);
    auto& r = it->second;
    if (only_host && r.host_id != *only_host) {
      it = next;
      continue;
    }
    auto hit = hosts_.find(r.host_id);
    if (hit == hosts_.end()) {
      it = next;
      continue;
    }
    auto& h = hit->second;
    bool below_high = r.priority != lease_priority::high;
    // A stopped process keeps its memory: PANIC through memory or swap
    // revokes leases below HIGH at once.
    if (below_high && h.quiet && h.quiet->state == quiet_state::panic) {
      auto& by = h.quiet->panic_by;
      bool mem = std::find(by.begin(), by.end(), "memory") != by.end()
                 || std::find(by.begin(), by.end(), "swap") != by.end();
      if (mem) {
        preempt(it, "preempted: host " + r.host_id + " is PANIC through memory"
                      + (h.quiet->reasons.empty() ? "" : " (" + h.quiet->reasons.front() + ")"));
        it = next;
        continue;
      }
    }
    auto why = hold_reason(r.host_id, h, r.priority);
    if (!why.empty() && !r.suspended) {
      r.suspended = true;
      r.suspended_mono = now;
      r.suspended_at = wall;
      r.suspend_reason = why;
      dirty_.push_back(r.lease_id);
      emit("suspended", r, why, lease_state::active, true);
    } else if (why.empty() && r.suspended) {
      r.suspended = false;
      r.suspended_at = 0;
      r.suspend_reason.clear();
      dirty_.push_back(r.lease_id);
      emit("resumed", r,
           "host " + r.host_id + " may run it again (not paused, inside its windows, QUIET for "
             + fmt_sec(cfg_.resume_after_sec) + "s)",
           lease_state::active, false);
    } else if (r.suspended && now - r.suspended_mono >= cfg_.preempt_after_sec) {
      preempt(it, "preempted: suspended for " + fmt_sec(now - r.suspended_mono) + "s ("
                    + r.suspend_reason + ")");
    }
    it = next;
  }
}

void lease_table::preempt(std::map<std::string, lease_record>::iterator it, std::string reason) {
  preempting_ = true;
  end_lease(it, lease_state::revoked, std::move(reason), true);
  preempting_ = false;
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
  switch (req.cost_class_.value_or(cost_class::normal)) {
    case cost_class::low: return cfg_.cost_low;
    case cost_class::normal: return cfg_.cost_normal;
    case cost_class::high: return cfg_.cost_high;
  }
  return cfg_.cost_normal;
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

  // An agent that said it is gone: nothing can be placed there, at any
  // priority, until it reports again.
  if (h.offline_since)
    return deny(req, worker, host,
                "Host " + host + " is offline (its agent left at "
                  + utc_timestamp(*h.offline_since) + "); waiting for it to report again",
                cfg_.busy_retry_sec);

  // Hard deny: PANIC, then its cool-down. Priority does not matter here.
  if (h.quiet && h.quiet->state == quiet_state::panic)
    return deny(req, worker, host, "System is PANIC; heavy work denied",
                cfg_.panic_cooldown_sec,
                env_.wall_sec() + static_cast<std::int64_t>(cfg_.panic_cooldown_sec));
  if (double until = std::max(h.panic_until_mono, h.cooldown_until_mono); until > now) {
    double left = until - now;
    // The end as a time, not a countdown: the reply's retry_after_sec is the
    // one wait a client shows.
    auto end = env_.wall_sec() + static_cast<std::int64_t>(std::ceil(left));
    return deny(req, worker, host, "Recent PANIC detected; cooling down until " + utc_timestamp(end),
                left, end);
  }
  // The yield policy: a pause stops everything; windows and a host whose
  // leases are suspended for its load stop work below HIGH.
  if (h.pause) {
    double left = h.pause->until ? static_cast<double>(*h.pause->until - env_.wall_sec())
                                 : cfg_.busy_retry_sec;
    return deny(req, worker, host,
                "Paused by " + h.pause->by + (h.pause->reason.empty() ? "" : ": " + h.pause->reason)
                  + (h.pause->until ? " (until " + utc_timestamp(*h.pause->until) + ")" : ""),
                left);
  }
  if (req.priority != lease_priority::high) {
    if (auto* w = cfg_.windows.for_host(host); w && !w->open_at(env_.wall_sec())) {
      auto wall = env_.wall_sec();
      auto at = w->next_open(wall);
      return deny(req, worker, host,
                  "Outside the lease windows of host " + host + " (" + w->text() + ")"
                    + (at ? "; the next opens at " + utc_timestamp(*at) : ""),
                  at ? static_cast<double>(*at - wall) : cfg_.busy_retry_sec);
    }
    if (h.load_hold) {
      double left = cfg_.resume_after_sec
                    - (h.quiet_since_mono ? now - *h.quiet_since_mono : 0.0);
      return deny(req, worker, host,
                  "Leases on host " + host + " are suspended until it has been QUIET for "
                    + fmt_sec(cfg_.resume_after_sec) + "s (" + h.load_reason + ")",
                  std::max(left, 1.0));
    }
  }
  // Soft deny: not QUIET unless HIGH.
  if (req.priority != lease_priority::high) {
    if (!h.quiet)
      return deny(req, worker, host,
                  "No quiet assessment for host " + host + " yet; waiting for QUIET",
                  cfg_.busy_retry_sec);
    if (now - h.quiet_fresh_mono > cfg_.stale_after_sec)
      return deny(req, worker, host,
                  "No fresh quiet assessment for host " + host + " (last one "
                    + fmt_sec(now - h.quiet_fresh_mono) + "s old; stale after "
                    + fmt_sec(cfg_.stale_after_sec) + "s); waiting for QUIET",
                  cfg_.busy_retry_sec);
    if (h.quiet->state != quiet_state::quiet) {
      // Learned quiet windows: retry when the host is usually QUIET.
      double retry = cfg_.busy_retry_sec;
      std::optional<std::int64_t> next;
      if (h.quiet_hours && h.quiet_hours->days_observed >= cfg_.learned_min_days && zone_) {
        auto wall = env_.wall_sec();
        next = next_quiet_hour(*h.quiet_hours, wall, zone_, cfg_.learned_share);
        if (next && static_cast<double>(*next - wall) > cfg_.learned_horizon_sec)
          next.reset(); // the map came from the bus: nothing past the horizon
        if (next && static_cast<double>(*next - wall) > retry)
          retry = static_cast<double>(*next - wall);
      }
      // The assessment's first reason says whose load it is ("Other
      // processes ... use 48% CPU"), so a denial never blames the owner for
      // lull's own work or the other way round.
      auto out = deny(req, worker, host,
                      std::string("System is ") + to_string(h.quiet->state)
                        + "; waiting for QUIET"
                        + (h.quiet->reasons.empty() ? std::string()
                                                    : " (" + h.quiet->reasons.front() + ")"),
                      retry);
      out.next_window = next;
      return out;
    }
  }
  // Backstops.
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
    return deny(req, worker, host,
                "Too many active leases: global=" + std::to_string(active_.size())
                  + ", max=" + std::to_string(cfg_.max_leases_global),
                earliest_expiry([](auto&) { return true; }));
  int mine = 0;
  for (auto& [id, r] : active_)
    if (r.worker_id == worker)
      ++mine;
  if (mine >= cfg_.max_leases_per_worker)
    return deny(req, worker, host,
                "Too many active leases for worker " + worker + ": "
                  + std::to_string(mine) + ", max=" + std::to_string(cfg_.max_leases_per_worker),
                earliest_expiry([&](auto& r) { return r.worker_id == worker; }));
  // Capacity.
  int used = used_units(host);
  int cap = capacity_units(host);
  if (used + units > cap) {
    std::string reason = "Capacity exceeded: used=" + std::to_string(used)
                         + ", requested=" + std::to_string(units)
                         + ", capacity=" + std::to_string(cap);
    if (units > cap)
      reason += " (the request alone exceeds the host's capacity)";
    return deny(req, worker, host, reason,
                units > cap ? cfg_.busy_retry_sec : earliest_free(host, units));
  }
  // Token bucket last: only grants consume tokens.
  if (!bucket_.take(now))
    return deny(req, worker, host,
                "Grant rate limit reached: " + fmt_sec(cfg_.grant_rate_per_sec)
                  + " grants/s, burst " + fmt_sec(cfg_.grant_burst),
                bucket_.wait_sec(now));

  lease_record r;
  r.lease_id = env_.new_id();
  r.worker_id = worker;
  r.host_id = host;
  r.job_type = req.job_type;
  r.cost_units = units;
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
    held_[r.lease_id] = reservation{r.host_id, r.hold_until_mono, r.cost_units};
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
    if (!h.load_hold && r.suspend_reason.rfind("Paused", 0) != 0
        && r.suspend_reason.rfind("Outside", 0) != 0) {
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

nlohmann::json to_json(const lease_record& r) {
  return {{"lease_id", r.lease_id},
          {"worker_id", r.worker_id},
          {"host_id", r.host_id},
          {"job_type", r.job_type},
          {"cost_units", r.cost_units},
          {"priority", to_string(r.priority)},
          {"fencing_token", r.fencing_token},
          {"ttl_sec", r.ttl_sec},
          {"state", to_string(r.state)},
          {"granted_at", r.granted_at},
          {"process", r.process ? to_json(*r.process) : nlohmann::json(nullptr)},
          {"suspended_at", r.suspended_at},
          {"suspend_reason", r.suspend_reason}};
}

lease_record lease_record_from_json(const nlohmann::json& j) {
  lease_record r;
  r.lease_id = j.at("lease_id").get<std::string>();
  r.worker_id = j.at("worker_id").get<std::string>();
  r.host_id = j.at("host_id").get<std::string>();
  r.job_type = j.value("job_type", std::string());
  r.cost_units = j.at("cost_units").get<int>();
  r.priority = parse_priority(j.value("priority", std::string("NORMAL")))
                 .value_or(lease_priority::normal);
  r.fencing_token = j.at("fencing_token").get<std::uint64_t>();
  r.ttl_sec = j.at("ttl_sec").get<double>();
  r.granted_at = j.value("granted_at", std::int64_t{0});
  if (auto it = j.find("suspended_at"); it != j.end() && it->is_number_integer())
    r.suspended_at = it->get<std::int64_t>();
  if (auto it = j.find("suspend_reason"); it != j.end() && it->is_string())
    r.suspend_reason = it->get<std::string>();
  if (auto it = j.find("process"); it != j.end() && it->is_object())
    if (read_lease_process(*it, r.process))
      r.process.reset(); // an unreadable one is not measured; the lease stands
  return r;
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

nlohmann::json lease_table::host_leases_json(const std::string& host_id) const {
  auto arr = nlohmann::json::array();
  for (auto& [id, r] : active_) {
    if (r.host_id != host_id)
      continue;
    nlohmann::json j = {{"lease_id", r.lease_id},
                        {"worker_id", r.worker_id},
                        {"priority", to_string(r.priority)},
                        {"cost_units", r.cost_units},
                        {"suspended", r.suspended},
                        {"granted_at", r.granted_at}};
    if (r.process)
      j.update(to_json(*r.process));
    arr.push_back(std::move(j));
  }
  return {{"v", schema_version}, {"host_id", host_id}, {"leases", std::move(arr)}};
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

nlohmann::json lease_table::status_json() const {
  using json = nlohmann::json;
  double now = env_.mono_sec();
  auto wall = env_.wall_sec();
  auto lease_json = [&](const lease_record& r) {
    json j = {{"lease_id", r.lease_id},
              {"worker_id", r.worker_id},
              {"host_id", r.host_id},
              {"job_type", r.job_type},
              {"cost_units", r.cost_units},
              {"priority", to_string(r.priority)},
              {"fencing_token", r.fencing_token},
              {"state", to_string(r.state)},
              {"granted_at", utc_timestamp(r.granted_at)}};
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
