#include "src/lease/lease_table.hpp"

#include "messages/topics.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
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
  return j;
}

// -- lease table ---------------------------------------------------------------

lease_table::lease_table(lease_policy_config cfg, lease_env env,
                         std::uint64_t first_fencing_token)
  : cfg_(cfg),
    env_(std::move(env)),
    fencing_(first_fencing_token),
    bucket_(cfg.grant_rate_per_sec, cfg.grant_burst, env_.mono_sec()) {}

void lease_table::on_quiet(const quiet_assessment& q) {
  if (!valid_id(q.host_id))
    return;
  auto& h = hosts_[q.host_id];
  double now = env_.mono_sec();
  if (q.state == quiet_state::panic)
    h.panic_until_mono = std::max(h.panic_until_mono, now + cfg_.panic_cooldown_sec);
  if (q.cooldown_until) {
    double left = static_cast<double>(*q.cooldown_until - env_.wall_sec());
    if (left > 0)
      h.panic_until_mono = std::max(h.panic_until_mono, now + left);
  }
  h.quiet = q;
}

void lease_table::on_cpu_count(const std::string& host_id, int cpus) {
  if (!valid_id(host_id) || cpus <= 0)
    return;
  hosts_[host_id].cpu_count = cpus;
}

void lease_table::on_worker_status(const std::string& worker_id, bool online) {
  auto& w = workers_[worker_id];
  w.online = online;
  if (online)
    return;
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
  double base = std::max(1.0, retry_sec);
  double j = base * (1.0 + cfg_.jitter * env_.uniform());
  out.retry_after_sec = std::ceil(j * 10.0) / 10.0;
  auto& w = workers_[worker];
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

  // Hard deny: PANIC, then its cool-down. Priority does not matter here.
  if (h.quiet && h.quiet->state == quiet_state::panic)
    return deny(req, worker, host, "System is PANIC; heavy work denied",
                cfg_.panic_cooldown_sec,
                env_.wall_sec() + static_cast<std::int64_t>(cfg_.panic_cooldown_sec));
  if (h.panic_until_mono > now) {
    double left = h.panic_until_mono - now;
    return deny(req, worker, host,
                "Recent PANIC detected; cooling down (" + fmt_sec(left) + "s left)", left,
                env_.wall_sec() + static_cast<std::int64_t>(std::ceil(left)));
  }
  // Soft deny: not QUIET unless HIGH.
  if (req.priority != lease_priority::high) {
    if (!h.quiet)
      return deny(req, worker, host,
                  "No quiet assessment for host " + host + " yet; waiting for QUIET",
                  cfg_.busy_retry_sec);
    if (h.quiet->state != quiet_state::quiet)
      return deny(req, worker, host,
                  std::string("System is ") + to_string(h.quiet->state) + "; waiting for QUIET",
                  cfg_.busy_retry_sec);
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

  lease_grant_reply out;
  out.request_id = req.request_id;
  out.approved = true;
  out.lease_id = r.lease_id;
  out.host_id = host;
  out.fencing_token = r.fencing_token;
  out.ttl_sec = ttl;
  out.heartbeat_interval_sec = heartbeat_interval_sec(ttl);
  out.ttl_clamped = clamped;
  out.expires_at = r.granted_at + static_cast<std::int64_t>(std::ceil(ttl));
  out.cost_units = units;
  out.reason = "Granted: used=" + std::to_string(used + units) + "/" + std::to_string(cap)
               + " units";
  if (clamped)
    out.reason += "; TTL clamped to " + fmt_sec(ttl) + "s (allowed "
                  + fmt_sec(cfg_.min_ttl_sec) + "-" + fmt_sec(cfg_.max_ttl_sec) + "s)";
  auto& w = workers_[worker];
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

lease_ack lease_table::ack_of(const lease_record& r) const {
  lease_ack a;
  a.lease_id = r.lease_id;
  a.state = r.state;
  a.fencing_token = r.fencing_token;
  if (r.state == lease_state::active) {
    double now = env_.mono_sec();
    a.ttl_remaining_sec = std::max(0.0, r.expires_mono - now);
    a.expires_at = env_.wall_sec() + static_cast<std::int64_t>(std::ceil(a.ttl_remaining_sec));
  }
  return a;
}

std::variant<lease_ack, lease_error> lease_table::heartbeat(const std::string& lease_id,
                                                            const std::string& worker_id) {
  tick(); // a lease past its TTL is expired even if the tick has not run yet
  auto found = holder_lookup(lease_id, worker_id);
  if (auto* e = std::get_if<lease_error>(&found))
    return *e;
  auto& r = std::get<0>(found)->second;
  double now = env_.mono_sec();
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

void lease_table::tick() {
  double now = env_.mono_sec();
  for (auto it = active_.begin(); it != active_.end();) {
    auto next = std::next(it);
    auto& r = it->second;
    if (now >= r.expires_mono) {
      end_lease(it, lease_state::expired,
                "missed heartbeats (TTL " + fmt_sec(r.ttl_sec) + "s)", true);
    } else if (!r.heartbeat_warned
               && now - r.last_heartbeat_mono > 2 * heartbeat_interval_sec(r.ttl_sec)) {
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
                       std::optional<lease_state> st) {
  lease_event e;
  e.type = std::move(type);
  e.lease_id = r.lease_id;
  e.worker_id = r.worker_id;
  e.host_id = r.host_id;
  e.reason = std::move(reason);
  e.fencing_token = r.fencing_token;
  e.at = env_.wall_sec();
  e.state = st;
  if (st)
    dirty_.push_back(e.lease_id);
  events_.push_back(std::move(e));
}

void lease_table::restore(lease_record r, double remaining_sec) {
  fencing_ = std::max(fencing_, r.fencing_token);
  double now = env_.mono_sec();
  r.state = lease_state::active;
  r.granted_mono = r.last_heartbeat_mono = now;
  r.expires_mono = now + std::max(0.0, remaining_sec);
  r.heartbeat_warned = false;
  auto id = r.lease_id;
  auto [it, fresh] = active_.insert_or_assign(id, std::move(r));
  (void)fresh;
  if (remaining_sec <= 0)
    end_lease(it, lease_state::expired, "TTL ran out while lulld was down", true);
}

std::vector<std::string> lease_table::take_dirty() {
  std::vector<std::string> out;
  out.swap(dirty_);
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
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
          {"granted_at", r.granted_at}};
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
  return r;
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
    return j;
  };
  json active = json::array();
  for (auto& [id, r] : active_)
    active.push_back(lease_json(r));
  json recent = json::array();
  for (std::size_t i = 0; i < recent_.size() && i < 20; ++i)
    recent.push_back(lease_json(recent_[i]));
  json hosts = json::object();
  for (auto& [id, h] : hosts_) {
    json j = {{"used_units", used_units(id)}, {"capacity_units", capacity_units(id)}};
    j["cpu_count"] = h.cpu_count ? json(*h.cpu_count) : json(nullptr);
    j["state"] = h.quiet ? json(to_string(h.quiet->state)) : json(nullptr);
    j["quiet_score"] = h.quiet ? json(h.quiet->quiet_score) : json(nullptr);
    if (h.panic_until_mono > now)
      j["cooldown_remaining_sec"] = h.panic_until_mono - now;
    int n = 0;
    for (auto& [lid, r] : active_)
      if (r.host_id == id)
        ++n;
    j["active_leases"] = n;
    hosts[id] = std::move(j);
  }
  json workers = json::object();
  for (auto& [id, w] : workers_) {
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
          {"recent", std::move(recent)},
          {"hosts", std::move(hosts)},
          {"workers", std::move(workers)},
          {"limits",
           {{"max_leases_global", cfg_.max_leases_global},
            {"max_leases_per_worker", cfg_.max_leases_per_worker},
            {"ttl_sec", cfg_.ttl_sec},
            {"lock_delay_sec", cfg_.lock_delay_sec},
            {"grant_rate_per_sec", cfg_.grant_rate_per_sec}}}};
}

} // namespace lull
