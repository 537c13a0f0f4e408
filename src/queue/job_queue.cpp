#include "src/queue/job_queue.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "messages/codec.hpp"
#include "messages/enum_names.hpp"
#include "messages/lease.hpp"

namespace lull {

const char* to_string(job_state s) { return enum_name<job_state, 7>(s); }


std::optional<job_state> parse_job_state(std::string_view text) {
  if (upper(text) == "FAILED")
    return job_state::dead;
  return parse_enum<job_state, 7>(text);
}

bool is_final(job_state s) {
  return s == job_state::succeeded || s == job_state::cancelled || s == job_state::expired
         || s == job_state::dead;
}

job_payload::job_payload(const nlohmann::json& doc)
  : text_(std::make_shared<const std::string>(
      doc.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))) {}

nlohmann::json job_payload::json() const {
  return text_ ? nlohmann::json::parse(*text_) : nlohmann::json();
}

nlohmann::json to_json(const job& j) {
  return {{"job_id", j.job_id},
          {"job_type", j.spec.job_type},
          {"payload", j.spec.payload.json()},
          {"cost_units", j.spec.cost_units},
          {"gpu", j.spec.gpu},
          {"priority", to_string(j.spec.priority)},
          {"host_id", j.spec.host_id.empty() ? nlohmann::json(nullptr)
                                             : nlohmann::json(j.spec.host_id)},
          {"idempotency_key", j.spec.idempotency_key.empty()
                                ? nlohmann::json(nullptr)
                                : nlohmann::json(j.spec.idempotency_key)},
          {"max_attempts", j.spec.max_attempts},
          {"deadline", j.spec.deadline ? nlohmann::json(utc_timestamp(*j.spec.deadline))
                                       : nlohmann::json(nullptr)},
          {"producer", j.spec.producer},
          {"state", to_string(j.state)},
          {"attempts", j.attempts},
          {"lease_id", j.lease_id.empty() ? nlohmann::json(nullptr) : nlohmann::json(j.lease_id)},
          {"worker_id", j.worker_id.empty() ? nlohmann::json(nullptr)
                                            : nlohmann::json(j.worker_id)},
          {"leased_host_id", j.host_id.empty() ? nlohmann::json(nullptr)
                                               : nlohmann::json(j.host_id)},
          {"submitted_at", utc_timestamp(j.submitted_at)},
          {"updated_at", utc_timestamp(j.updated_at)},
          {"seq", j.seq},
          {"retry_at", j.retry_at > 0 ? nlohmann::json(utc_timestamp(j.retry_at))
                                      : nlohmann::json(nullptr)},
          {"result", j.result},
          {"error", j.error.empty() ? nlohmann::json(nullptr) : nlohmann::json(j.error)}};
}

job job_from_json(const nlohmann::json& d) {
  job j;
  auto str_or_empty = [&](const char* k) {
    auto it = d.find(k);
    return it == d.end() || it->is_null() ? std::string() : it->get<std::string>();
  };
  j.job_id = d.at("job_id").get<std::string>();
  j.spec.job_type = d.at("job_type").get<std::string>();
  j.spec.payload = job_payload(d.value("payload", nlohmann::json()));
  j.spec.cost_units = d.at("cost_units").get<int>();
  if (auto g = d.find("gpu"); g != d.end() && g->is_number_integer())
    j.spec.gpu = std::clamp(g->get<int>(), 0, max_lease_gpus);
  j.spec.priority = parse_priority(d.at("priority").get<std::string>()).value_or(
    work_priority::normal);
  j.spec.host_id = str_or_empty("host_id");
  j.spec.idempotency_key = str_or_empty("idempotency_key");
  j.spec.max_attempts = d.at("max_attempts").get<int>();
  if (auto dl = str_or_empty("deadline"); !dl.empty())
    j.spec.deadline = parse_utc_timestamp(dl);
  j.spec.producer = str_or_empty("producer");
  j.state = parse_job_state(d.at("state").get<std::string>()).value_or(job_state::queued);
  j.attempts = d.at("attempts").get<int>();
  j.lease_id = str_or_empty("lease_id");
  j.worker_id = str_or_empty("worker_id");
  j.host_id = str_or_empty("leased_host_id");
  j.submitted_at = parse_utc_timestamp(d.at("submitted_at").get<std::string>()).value_or(0);
  j.updated_at = parse_utc_timestamp(d.at("updated_at").get<std::string>()).value_or(0);
  j.seq = d.at("seq").get<std::uint64_t>();
  if (auto ra = str_or_empty("retry_at"); !ra.empty())
    j.retry_at = parse_utc_timestamp(ra).value_or(0);
  j.result = d.value("result", nlohmann::json());
  j.error = str_or_empty("error");
  return j;
}

nlohmann::json to_json(const job_event& e) {
  return {{"v", schema_version},
          {"type", "job"},
          {"event", e.from ? std::string(to_string(e.to)) : std::string("submitted")},
          {"job_id", e.job_id},
          {"from", e.from ? nlohmann::json(to_string(*e.from)) : nlohmann::json(nullptr)},
          {"to", to_string(e.to)},
          {"reason", e.reason},
          {"ts", utc_timestamp(e.at)}};
}

job_queue::job_queue(queue_config cfg, queue_clock clock)
  : cfg_(cfg), clock_(std::move(clock)) {}

std::variant<std::pair<const job*, bool>, std::string> job_queue::submit(job_spec spec) {
  if (!spec.idempotency_key.empty()) {
    if (auto it = by_key_.find(spec.idempotency_key); it != by_key_.end())
      if (auto j = jobs_.find(it->second); j != jobs_.end())
        return std::pair<const job*, bool>{&j->second, false};
  }
  // The producer's own quota first: a producer that floods hears of its
  // own limit, and leaves room for everyone else.
  auto bytes = spec.payload.bytes();
  auto mine = usage(spec.producer);
  auto refuse = [this](std::string why) {
    ++refused_;
    return why;
  };
  if (mine.jobs >= cfg_.max_jobs_per_producer)
    return refuse("producer '" + spec.producer + "' has " + std::to_string(mine.jobs)
                  + " jobs waiting or running, the most queue.max_jobs_per_producer allows ("
                  + std::to_string(cfg_.max_jobs_per_producer)
                  + "); submit again when some have finished");
  if (mine.bytes + bytes > cfg_.max_bytes_per_producer)
    return refuse("producer '" + spec.producer + "' has " + std::to_string(mine.bytes)
                  + " payload bytes in jobs waiting or running; this job's "
                  + std::to_string(bytes) + " would pass queue.max_bytes_per_producer ("
                  + std::to_string(cfg_.max_bytes_per_producer) + ")");
  if (live_ >= cfg_.max_jobs)
    return refuse("queue is full: " + std::to_string(live_) + " jobs waiting or running (max "
                  + std::to_string(cfg_.max_jobs) + ")");
  if (live_bytes_ + bytes > cfg_.max_bytes)
    return refuse("queue is full: " + std::to_string(live_bytes_)
                  + " payload bytes in jobs waiting or running; this job's "
                  + std::to_string(bytes) + " would pass queue.max_bytes ("
                  + std::to_string(cfg_.max_bytes) + ")");
  job j;
  j.job_id = clock_.new_id();
  j.spec = std::move(spec);
  j.submitted_at = j.updated_at = clock_.wall_sec();
  j.queued_mono = clock_.mono_sec();
  j.seq = ++seq_;
  auto id = j.job_id;
  if (!j.spec.idempotency_key.empty())
    by_key_[j.spec.idempotency_key] = id;
  touch(id);
  auto& stored = jobs_[id] = std::move(j);
  count(stored, +1);
  events_.push_back({id, std::nullopt, job_state::queued, "submitted", stored.submitted_at});
  dirty_.push_back(id);
  return std::pair<const job*, bool>{&stored, true};
}

double job_queue::effective_level(const job& j, double now) const {
  double waited = std::max(0.0, now - j.queued_mono);
  double lift = cfg_.aging_sec > 0 ? std::floor(waited / cfg_.aging_sec) : 0;
  return std::max(0.0, static_cast<double>(urgency(j.spec.priority)) - lift);
}

std::vector<const job*> job_queue::candidates(const std::vector<std::string>& types,
                                              const std::string& host, std::size_t limit) const {
  auto now = clock_.mono_sec();
  auto wall = clock_.wall_sec();
  struct entry {
    double level;
    std::uint64_t producer_served;
    std::uint64_t seq;
    double waited;
    const job* j;
  };
  std::vector<entry> pool;
  for (auto& [id, j] : jobs_) {
    if (j.state != job_state::queued || j.retry_at > wall)
      continue;
    if (!types.empty() && std::find(types.begin(), types.end(), j.spec.job_type) == types.end())
      continue;
    if (!j.spec.host_id.empty() && !host.empty() && j.spec.host_id != host)
      continue;
    auto served = producer_served_.find(j.spec.producer);
    pool.push_back({effective_level(j, now),
                    served == producer_served_.end() ? 0 : served->second, j.seq,
                    now - j.queued_mono, &j});
  }
  std::sort(pool.begin(), pool.end(), [](const entry& a, const entry& b) {
    if (a.level != b.level)
      return a.level < b.level;
    if (a.producer_served != b.producer_served)
      return a.producer_served < b.producer_served;
    return a.seq < b.seq;
  });
  std::vector<const job*> out;
  for (auto& e : pool) {
    if (out.size() >= limit)
      break;
    out.push_back(e.j);
  }
  return out;
}

void job_queue::touch(const std::string& id) {
  if (before_.count(id))
    return;
  auto it = jobs_.find(id);
  before_.emplace(id, it == jobs_.end() ? std::nullopt : std::optional<job>(it->second));
}

void job_queue::transition(job& j, job_state to, std::string reason) {
  touch(j.job_id); // a no-op when the caller touched it before changing fields
  auto from = j.state;
  count(j, -1);
  j.state = to;
  count(j, +1);
  j.updated_at = clock_.wall_sec();
  events_.push_back({j.job_id, from, to, std::move(reason), j.updated_at});
  dirty_.push_back(j.job_id);
  if (is_final(to)) {
    finished_order_.push_back(j.job_id);
    forget_finished();
  }
}

void job_queue::requeue(job& j, std::string why) {
  int n = std::max(1, j.attempts);
  double wait = std::min(cfg_.retry_backoff_max_sec,
                         cfg_.retry_backoff_sec * std::pow(2.0, std::min(n - 1, 30)));
  j.lease_id.clear();
  j.queued_mono = clock_.mono_sec();
  auto secs = static_cast<std::int64_t>(std::ceil(std::max(0.0, wait)));
  j.retry_at = secs > 0 ? clock_.wall_sec() + secs : 0;
  transition(j, job_state::queued,
             std::move(why) + (secs > 0 ? "; retried after " + std::to_string(secs) + "s" : ""));
}

bool job_queue::mark_leased(const std::string& job_id, const std::string& lease_id,
                            const std::string& worker_id, const std::string& host_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || it->second.state != job_state::queued)
    return false;
  auto& j = it->second;
  touch(job_id);
  j.lease_id = lease_id;
  j.worker_id = worker_id;
  j.host_id = host_id;
  ++j.attempts;
  by_lease_[lease_id] = job_id;
  producer_served_[j.spec.producer] = ++served_;
  transition(j, job_state::leased, "leased to " + worker_id + " on " + host_id);
  return true;
}

bool job_queue::mark_running(const std::string& job_id) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end() || it->second.state != job_state::leased)
    return false;
  transition(it->second, job_state::running, "worker started");
  return true;
}

std::optional<std::string> job_queue::complete(const std::string& job_id,
                                               const std::string& lease_id, bool ok,
                                               nlohmann::json result, std::string error) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end())
    return "unknown job " + job_id;
  auto& j = it->second;
  if (j.state != job_state::leased && j.state != job_state::running)
    return "job " + job_id + " is " + to_string(j.state) + ", not leased or running";
  if (j.lease_id != lease_id)
    return "lease " + lease_id + " does not hold job " + job_id;
  touch(job_id);
  by_lease_.erase(j.lease_id);
  j.result = std::move(result);
  j.error = std::move(error);
  if (ok) {
    transition(j, job_state::succeeded, "completed");
  } else if (j.attempts < j.spec.max_attempts) {
    requeue(j, "failed (attempt " + std::to_string(j.attempts) + " of "
                 + std::to_string(j.spec.max_attempts) + "): " + j.error);
  } else {
    transition(j, job_state::dead, "dead after " + std::to_string(j.attempts)
                                     + " failed attempts: " + j.error);
  }
  return std::nullopt;
}

std::variant<std::optional<std::string>, std::string>
job_queue::cancel(const std::string& job_id, const std::string& reason) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end())
    return "unknown job " + job_id;
  auto& j = it->second;
  if (is_final(j.state))
    return "job " + job_id + " is already " + to_string(j.state);
  std::optional<std::string> lease;
  touch(job_id);
  if (!j.lease_id.empty()) {
    lease = j.lease_id;
    by_lease_.erase(j.lease_id);
  }
  transition(j, job_state::cancelled, reason.empty() ? "cancelled" : reason);
  return lease;
}

void job_queue::lease_ended(const std::string& lease_id, const std::string& why,
                            bool preempted) {
  auto it = by_lease_.find(lease_id);
  if (it == by_lease_.end())
    return;
  auto jit = jobs_.find(it->second);
  by_lease_.erase(it);
  if (jit == jobs_.end())
    return;
  auto& j = jit->second;
  if (j.state != job_state::leased && j.state != job_state::running)
    return;
  touch(j.job_id);
  j.lease_id.clear();
  if (preempted) {
    // The host was given back to its owner: not the job's fault.
    j.attempts = std::max(0, j.attempts - 1);
    requeue(j, "lease preempted (" + why + "); requeued, the attempt not counted");
  } else if (j.attempts < j.spec.max_attempts) {
    requeue(j, "lease ended (" + why + "); requeued");
  } else {
    j.error = "lease ended (" + why + ")";
    transition(j, job_state::dead,
               "dead: lease ended (" + why + ") after " + std::to_string(j.attempts)
                 + " attempts");
  }
}

std::optional<std::string> job_queue::retry(const std::string& job_id, const std::string& reason) {
  auto it = jobs_.find(job_id);
  if (it == jobs_.end())
    return "unknown job " + job_id;
  auto& j = it->second;
  if (j.state != job_state::dead)
    return "job " + job_id + " is " + to_string(j.state) + "; only a dead job can be retried";
  if (live_ >= cfg_.max_jobs)
    return "queue is full: " + std::to_string(live_) + " jobs waiting or running (max "
           + std::to_string(cfg_.max_jobs) + ")";
  touch(job_id);
  finished_order_.erase(std::remove(finished_order_.begin(), finished_order_.end(), job_id),
                        finished_order_.end());
  j.attempts = 0;
  j.retry_at = 0;
  j.lease_id.clear();
  j.worker_id.clear();
  j.host_id.clear();
  j.queued_mono = clock_.mono_sec();
  transition(j, job_state::queued,
             (reason.empty() ? std::string("retried") : reason) + " (last error: "
               + (j.error.empty() ? std::string("none") : j.error) + ")");
  return std::nullopt;
}

void job_queue::tick() {
  auto now = clock_.wall_sec();
  for (auto& [id, j] : jobs_)
    if (j.state == job_state::queued && j.spec.deadline && *j.spec.deadline <= now)
      transition(j, job_state::expired, "deadline passed before a lease was granted");
}

void job_queue::restore(job j) {
  seq_ = std::max(seq_, j.seq);
  if (!j.spec.idempotency_key.empty())
    by_key_[j.spec.idempotency_key] = j.job_id;
  if (!j.lease_id.empty() && (j.state == job_state::leased || j.state == job_state::running))
    by_lease_[j.lease_id] = j.job_id;
  // Waiting time before the restart is not known on the monotonic clock:
  // aging starts again, but submission order (seq) still holds.
  j.queued_mono = clock_.mono_sec();
  if (is_final(j.state))
    finished_order_.push_back(j.job_id);
  auto id = j.job_id;
  if (auto old = jobs_.find(id); old != jobs_.end())
    count(old->second, -1);
  count(j, +1);
  jobs_[id] = std::move(j);
}

void job_queue::count(const job& j, int sign) {
  auto add = [sign](std::size_t& n, std::size_t by = 1) {
    n = sign > 0 ? n + by : (n > by ? n - by : 0);
  };
  if (!is_final(j.state)) {
    add(live_);
    auto bytes = j.spec.payload.bytes();
    add(live_bytes_, bytes);
    auto& mine = producers_[j.spec.producer];
    add(mine.jobs);
    add(mine.bytes, bytes);
    if (mine.jobs == 0)
      producers_.erase(j.spec.producer); // only producers with live jobs are kept
  }
  if (j.state == job_state::queued)
    add(queued_[std::min<std::size_t>(3, urgency(j.spec.priority))]);
  if (j.state == job_state::dead)
    add(dead_);
}

job_queue::producer_usage job_queue::usage(const std::string& producer) const {
  auto it = producers_.find(producer);
  return it == producers_.end() ? producer_usage{} : it->second;
}

void job_queue::forget_finished() {
  while (finished_order_.size() > cfg_.finished_kept) {
    auto id = finished_order_.front();
    finished_order_.erase(finished_order_.begin());
    auto it = jobs_.find(id);
    if (it == jobs_.end() || !is_final(it->second.state)) // not final: a rolled back end
      continue;
    if (!it->second.spec.idempotency_key.empty())
      by_key_.erase(it->second.spec.idempotency_key);
    count(it->second, -1);
    jobs_.erase(it);
    forgotten_.push_back(id);
  }
}

std::vector<job_event> job_queue::take_events() { return std::exchange(events_, {}); }

std::vector<std::string> job_queue::take_forgotten() { return std::exchange(forgotten_, {}); }

const job* job_queue::get(const std::string& job_id) const {
  auto it = jobs_.find(job_id);
  return it == jobs_.end() ? nullptr : &it->second;
}

const job* job_queue::by_lease(const std::string& lease_id) const {
  auto it = by_lease_.find(lease_id);
  return it == by_lease_.end() ? nullptr : get(it->second);
}

std::vector<const job*> job_queue::list(std::optional<job_state> state, const std::string& type,
                                        const std::string& worker, std::size_t limit,
                                        const std::string& party,
                                        std::uint64_t after_seq) const {
  std::vector<const job*> out;
  for (auto& [id, j] : jobs_) {
    if (j.seq <= after_seq)
      continue;
    if (!party.empty() && j.spec.producer != party && j.worker_id != party)
      continue;
    if (state && j.state != *state)
      continue;
    if (!type.empty() && j.spec.job_type != type)
      continue;
    if (!worker.empty() && j.worker_id != worker)
      continue;
    out.push_back(&j);
  }
  auto by_seq = [](auto* a, auto* b) { return a->seq < b->seq; };
  // The first `limit` in order, without sorting a long queue whole.
  if (out.size() > limit) {
    std::nth_element(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(limit), out.end(),
                     by_seq);
    out.resize(limit);
  }
  std::sort(out.begin(), out.end(), by_seq);
  return out;
}

std::map<std::string, std::size_t> job_queue::depths() const {
  // Kept as jobs change state: a queue of 30,000 jobs is not walked per message.
  return {{"high", queued_[0]}, {"normal", queued_[1]}, {"low", queued_[2]},
          {"background", queued_[3]}};
}

std::vector<const job*> job_queue::take_dirty() {
  std::vector<const job*> out;
  std::sort(dirty_.begin(), dirty_.end());
  dirty_.erase(std::unique(dirty_.begin(), dirty_.end()), dirty_.end());
  for (auto& id : dirty_)
    if (auto* j = get(id))
      out.push_back(j);
  dirty_.clear();
  // Changes not yet confirmed from an earlier call stay undoable with these.
  for (auto& [id, pre] : before_)
    writing_.emplace(id, std::move(pre));
  before_.clear();
  return out;
}

void job_queue::committed() { writing_.clear(); }

std::vector<std::string> job_queue::roll_back() {
  std::vector<std::string> stray;
  auto unindex = [this](const std::string& id, const job& j) {
    if (!j.spec.idempotency_key.empty())
      if (auto k = by_key_.find(j.spec.idempotency_key); k != by_key_.end() && k->second == id)
        by_key_.erase(k);
    if (!j.lease_id.empty())
      if (auto l = by_lease_.find(j.lease_id); l != by_lease_.end() && l->second == id)
        by_lease_.erase(l);
  };
  for (auto& [id, pre] : writing_) {
    if (auto it = jobs_.find(id); it != jobs_.end()) {
      auto& cur = it->second;
      if (!cur.lease_id.empty() && (!pre || pre->lease_id != cur.lease_id))
        stray.push_back(cur.lease_id);
      unindex(id, cur);
      count(cur, -1);
      jobs_.erase(it);
    }
    if (!pre)
      continue;
    auto& j = jobs_[id] = std::move(*pre);
    count(j, +1);
    if (!j.spec.idempotency_key.empty())
      by_key_[j.spec.idempotency_key] = id;
    if (!j.lease_id.empty() && (j.state == job_state::leased || j.state == job_state::running))
      by_lease_[j.lease_id] = id;
    if (is_final(j.state)
        && std::find(finished_order_.begin(), finished_order_.end(), id) == finished_order_.end())
      finished_order_.push_back(id);
  }
  writing_.clear();
  events_.clear();
  return stray;
}

} // namespace lull
