#include "src/queue/queue_service.hpp"

#include <algorithm>

#include "messages/host_snapshot.hpp"
#include "messages/page.hpp"
#include "messages/util.hpp"

namespace lull {

namespace {

constexpr request_limits limits{64 * 1024, 32}; // a job payload may be sizeable

/// A list's cursor: "j" and the sequence number of the page's last job.
std::string job_cursor(const job& j) { return "j" + std::to_string(j.seq); }

std::optional<std::uint64_t> parse_job_cursor(const std::string& c) {
  if (c.size() < 2 || c.size() > 21 || c[0] != 'j')
    return std::nullopt;
  std::uint64_t v = 0;
  for (std::size_t i = 1; i < c.size(); ++i) {
    if (c[i] < '0' || c[i] > '9' || v > (UINT64_MAX - 9) / 10)
      return std::nullopt;
    v = v * 10 + static_cast<std::uint64_t>(c[i] - '0');
  }
  return v;
}

/// JSON text bytes of `v` (what a reader of the list would fetch with get).
std::size_t json_bytes(const nlohmann::json& v) {
  return v.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace).size();
}

} // namespace

nlohmann::json list_item(const job& j, std::size_t inline_bytes) {
  auto item = to_json(j);
  for (auto [field, size_field] : {std::pair{"payload", "payload_bytes"},
                                   std::pair{"result", "result_bytes"}}) {
    auto n = json_bytes(item[field]);
    item[size_field] = n;
    if (n > inline_bytes)
      item.erase(field);
  }
  if (item["error"].is_string())
    item["error"] = clip_text(item["error"].get<std::string>());
  return item;
}

lease_request to_lease_request(const lease_ask& ask) {
  lease_request r;
  r.worker_id = ask.worker_id;
  r.job_type = ask.job_type;
  r.host_id = ask.host_id;
  r.cost_units = ask.cost_units;
  r.gpu = ask.gpu;
  r.priority = ask.priority;
  r.request_id = "job:" + ask.job_id;
  return r;
}

queue_service::queue_service(queue_service_options opts, queue_config cfg, queue_clock clock)
  : opts_(std::move(opts)), queue_(cfg, clock), clock_(std::move(clock)) {}

std::vector<std::string> queue_service::filters() const {
  auto& t = opts_.topics;
  if (opts_.security.secure)
    return {t.full("scheduler/+/job/submit"), t.full("scheduler/+/job/next"),
            t.full("scheduler/+/job/get"), t.full("scheduler/+/job/list"),
            t.full("scheduler/+/job/+/cancel"), t.full("scheduler/+/job/+/retry")};
  return {t.full("scheduler/job/submit"), t.full("scheduler/job/next"),
          t.full("scheduler/job/get"), t.full("scheduler/job/list"),
          t.full("scheduler/job/+/cancel"), t.full("scheduler/job/+/retry")};
}

inbound_request queue_service::decode(const mqtt_message& in, bool empty_ok,
                                      queue_output& out) {
  auto req = decode_request(in, limits, empty_ok);
  if (sender_ && !reply_allowed(req.route.topic, opts_.topics, true, sender_)) {
    ++unanswerable_;
    if (!req.route.topic.empty())
      out.warnings.push_back("not replying to '" + req.route.topic + "': replies for '"
                             + *sender_ + "' go under "
                             + opts_.topics.full("workers/" + *sender_ + "/"));
    req.route.topic.clear();
  }
  if (!req.error && request_expired(req, static_cast<double>(clock_.wall_sec()))) {
    // Published while lulld was away and delivered now: its client gave up,
    // so nothing is created or handed out for it, and nobody is answered.
    if (++expired_ == 1 || expired_ % 1000 == 0)
      out.warnings.push_back("dropped an expired request on " + in.topic + " ("
                             + std::to_string(expired_) + " so far)");
    req.route.topic.clear();
    req.error = request_error{error_code::invalid_request, "field 'deadline': passed"};
    expired_now_ = true; // counted and logged above, not as a malformed request
  }
  return req;
}

bool queue_service::may_touch(const job& j, bool cancel) const {
  if (!sender_ || *sender_ == opts_.security.admin_user)
    return true;
  // Its producer may read and cancel a job; the worker holding it may read it
  // (and ends it by releasing its lease).
  return j.spec.producer == *sender_ || (!cancel && j.worker_id == *sender_);
}

std::optional<mqtt_message> queue_service::fitted_reply(const reply_route& r,
                                                        nlohmann::json body) const {
  auto m = make_reply(r, std::move(body));
  if (m && m->payload.size() > opts_.limits.max_reply_bytes)
    return make_error_reply(r, reply_too_large("the reply", m->payload.size(),
                                               opts_.limits.max_reply_bytes));
  return m;
}

bool queue_service::fits_reply(const job& j) const {
  // A job is made of a submit (64 KiB at most) and a release's result and
  // error (16 KiB each): under this budget any job fits, unmeasured.
  if (opts_.limits.max_reply_bytes >= 128 * 1024)
    return true;
  return json_bytes(to_json(j)) + job_reply_reserve / 2 <= opts_.limits.max_reply_bytes;
}

void queue_service::reply(const reply_route& r, nlohmann::json body, queue_output& out) {
  if (auto m = fitted_reply(r, std::move(body)))
    out.publish.push_back(std::move(*m));
}

void queue_service::ack(const reply_route& r, nlohmann::json body, queue_output& out) {
  if (!opts_.hold_acks)
    return reply(r, std::move(body), out);
  if (!r.topic.empty())
    out.acks.emplace_back(r, std::move(body));
}

void queue_service::committed(queue_output& out) {
  queue_.committed();
  std::vector<mqtt_message> replies;
  for (auto& [r, body] : out.acks)
    if (auto m = fitted_reply(r, std::move(body)))
      replies.push_back(std::move(*m));
  out.acks.clear();
  out.publish.insert(out.publish.begin(), std::make_move_iterator(replies.begin()),
                     std::make_move_iterator(replies.end()));
}

queue_output queue_service::roll_back(queue_output failed, const std::string& cause) {
  queue_output out;
  for (auto& lease : queue_.roll_back())
    out.revoke.emplace_back(lease, "its job could not be stored (" + cause + ")");
  for (auto& [lease, reason] : failed.revoke)
    if (queue_.by_lease(lease) == nullptr)
      out.revoke.emplace_back(lease, reason);
  for (auto& ask : failed.asks) {
    if (auto a = asks_.find(ask.ask_id); a != asks_.end()) {
      if (auto w = waiting_.find(a->second); w != waiting_.end())
        w->second.asking = false;
      asks_.erase(a);
    }
    ask_job_.erase(ask.ask_id);
  }
  for (auto& [r, body] : failed.acks)
    if (auto m = make_error_reply(
          r, {error_code::internal_error,
              "lulld could not store the change (" + cause
                + "); nothing was changed, retry (a submit with the same idempotency_key "
                  "is safe to repeat)"}))
      out.publish.push_back(std::move(*m));
  auto events = opts_.topics.scheduler_events();
  auto job_topics = opts_.topics.full("scheduler/job/");
  for (auto& m : failed.publish) {
    bool notice = m.topic == events
                  || (m.retain && m.topic.compare(0, job_topics.size(), job_topics) == 0);
    if (!notice)
      out.publish.push_back(std::move(m));
  }
  out.warnings = std::move(failed.warnings);
  return out;
}

void queue_service::error(const reply_route& r, error_code c, const std::string& msg,
                          queue_output& out) {
  // A malformed request is logged as well as answered: its sender may not
  // read replies (a fire-and-forget submit), and the admin should see it.
  // Refusals of state (a job not found, a full quota) are the reply's alone.
  if (!expired_now_
      && (c == error_code::invalid_json || c == error_code::invalid_request
          || c == error_code::version_mismatch || c == error_code::payload_too_large))
    out.warnings.push_back("rejected message on " + topic_ + ": " + to_string(c) + ": " + msg);
  if (auto m = make_error_reply(r, {c, msg}))
    out.publish.push_back(std::move(*m));
}

queue_output queue_service::handle(const mqtt_message& in) {
  queue_output out;
  auto lv = split_levels(opts_.topics.strip(in.topic));
  sender_.reset();
  topic_ = in.topic;
  expired_now_ = false;
  if (opts_.security.secure) {
    // scheduler/<user>/job/...: the broker's ACL lets only <user> publish
    // there. Drop the user level and go on as in open mode.
    if (lv.size() < 4 || lv[0] != "scheduler" || lv[2] != "job" || !valid_id(lv[1]))
      return out;
    sender_ = std::string(lv[1]);
    lv.erase(lv.begin() + 1);
  }
  if (lv.size() >= 3 && lv[0] == "scheduler" && lv[1] == "job") {
    if (lv.size() == 3 && lv[2] == "submit")
      on_submit(in, out);
    else if (lv.size() == 3 && lv[2] == "next")
      on_next(in, out);
    else if (lv.size() == 3 && lv[2] == "get")
      on_get(in, out);
    else if (lv.size() == 3 && lv[2] == "list")
      on_list(in, out);
    else if (lv.size() == 4 && lv[3] == "cancel")
      on_cancel(in, std::string(lv[2]), out);
    else if (lv.size() == 4 && lv[3] == "retry")
      on_retry(in, std::string(lv[2]), out);
  }
  drain(out);
  return out;
}

void queue_service::on_submit(const mqtt_message& in, queue_output& out) {
  auto req = decode(in, false, out);
  if (req.error)
    return error(req.route, req.error->code, req.error->message, out);
  auto& d = req.doc;
  job_spec s;
  auto bad = [&](const std::string& msg) { error(req.route, error_code::invalid_request, msg, out); };
  auto jt = d.find("job_type");
  if (jt == d.end() || !jt->is_string() || !valid_id(jt->get<std::string>()))
    return bad("field 'job_type' must be a string of 1-64 characters from [a-zA-Z0-9_-]");
  s.job_type = jt->get<std::string>();
  s.payload = job_payload(d.value("payload", nlohmann::json()));
  // A job goes out whole to its worker (job/next): one that no reply could
  // carry would wait for nobody. Any submit fits a budget this large.
  if (opts_.limits.max_reply_bytes < limits.max_bytes + job_reply_reserve) {
    auto n = s.payload.bytes();
    if (n + job_reply_reserve > opts_.limits.max_reply_bytes)
      return error(req.route, error_code::payload_too_large,
                   "field 'payload': " + std::to_string(n)
                     + " bytes; this lulld hands jobs out in replies of at most "
                     + std::to_string(opts_.limits.max_reply_bytes)
                     + " bytes (limits.max_reply_bytes), so a payload may take at most "
                     + std::to_string(opts_.limits.max_reply_bytes - job_reply_reserve) + " bytes",
                   out);
  }
  if (auto it = d.find("cost_units"); it != d.end() && !it->is_null()) {
    if (!it->is_number_integer() || *it < 1 || *it > 100)
      return bad("field 'cost_units' must be an integer from 1 to 100");
    s.cost_units = it->get<int>();
  } else if (auto c = d.find("cost_class"); c != d.end() && !c->is_null()) {
    auto cls = c->is_string() ? parse_cost_class(c->get<std::string>()) : std::nullopt;
    if (!cls)
      return bad("field 'cost_class' must be LOW, NORMAL or HIGH");
    s.cost_units = opts_.costs.units(*cls);
  } else {
    s.cost_units = opts_.costs.normal;
  }
  if (auto it = d.find("gpu"); it != d.end() && !it->is_null()) {
    if (!it->is_number_integer() || *it < 0 || *it > max_lease_gpus)
      return bad("field 'gpu' must be an integer from 0 to " + std::to_string(max_lease_gpus)
                 + " (GPUs the job's lease asks for)");
    s.gpu = it->get<int>();
  }
  if (auto it = d.find("priority"); it != d.end() && !it->is_null()) {
    auto p = it->is_string() ? parse_priority(it->get<std::string>()) : std::nullopt;
    if (!p)
      return bad("field 'priority' must be one of HIGH, NORMAL, LOW, BACKGROUND (any case)");
    s.priority = *p;
    // Who may ask for HIGH is a list (the lease manager's rule for leases).
    if (sender_ && s.priority == work_priority::high && !opts_.security.may_ask_high(*sender_))
      return error(req.route, error_code::permission_denied,
                   opts_.security.high_denied(*sender_, "submit a HIGH job"),
                   out);
  }
  if (auto it = d.find("host_id"); it != d.end() && !it->is_null()) {
    if (!it->is_string() || !valid_id(it->get<std::string>()))
      return bad("field 'host_id' must be a host id or null for any host");
    s.host_id = it->get<std::string>();
  }
  if (auto it = d.find("idempotency_key"); it != d.end() && !it->is_null()) {
    if (!it->is_string() || it->get<std::string>().empty() || it->get<std::string>().size() > 200)
      return bad("field 'idempotency_key' must be a non-empty string of at most 200 bytes");
    s.idempotency_key = it->get<std::string>();
  }
  if (auto it = d.find("max_attempts"); it != d.end() && !it->is_null()) {
    if (!it->is_number_integer() || *it < 1 || *it > 100)
      return bad("field 'max_attempts' must be an integer from 1 to 100");
    s.max_attempts = it->get<int>();
  }
  // A number is the request's own deadline (the envelope's: when its client
  // stops waiting for the answer), not the job's.
  if (auto it = d.find("deadline"); it != d.end() && !it->is_null() && !it->is_number()) {
    auto t = it->is_string() ? parse_utc_timestamp(it->get<std::string>()) : std::nullopt;
    if (!t)
      return bad("field 'deadline' must be a UTC time like 2026-11-23T10:00:30Z");
    s.deadline = t;
  } else if (auto r = d.find("deadline_sec"); r != d.end() && !r->is_null()) {
    // Bounded: 1e300 seconds would overflow the deadline's int64.
    if (!r->is_number() || !(r->get<double>() > 0 && r->get<double>() <= 10.0 * 366 * 86400))
      return bad("field 'deadline_sec' must be a number of seconds from 0 to 316224000 (10 years)");
    s.deadline = clock_.wall_sec() + static_cast<std::int64_t>(r->get<double>());
  }
  if (sender_) {
    s.producer = *sender_; // the topic's user, whatever the payload says
  } else if (auto it = d.find("producer"); it != d.end() && !it->is_null()) {
    if (!it->is_string() || !valid_id(it->get<std::string>()))
      return bad("field 'producer' must be an id of 1-64 characters from [a-zA-Z0-9_-]");
    s.producer = it->get<std::string>();
  } else {
    s.producer = "anonymous";
  }
  auto r = queue_.submit(std::move(s));
  if (auto* full = std::get_if<std::string>(&r))
    return error(req.route, error_code::request_throttled, *full, out);
  auto [j, created] = std::get<0>(r);
  ack(req.route, {{"ok", true}, {"created", created}, {"job_id", j->job_id},
                    {"state", to_string(j->state)}, {"job", to_json(*j)}},
        out);
  // A new job may be what a waiting worker wants.
  for (auto& [wid, w] : waiting_)
    if (!w.asking) {
      try_dispatch(wid, out, false);
      break;
    }
}

void queue_service::on_next(const mqtt_message& in, queue_output& out) {
  auto req = decode(in, false, out);
  if (req.error)
    return error(req.route, req.error->code, req.error->message, out);
  auto& d = req.doc;
  waiting_worker w;
  w.route = req.route;
  if (sender_) {
    w.worker_id = *sender_; // the topic's user, whatever the payload says
  } else {
    auto wid = d.find("worker_id");
    if (wid == d.end())
      wid = d.find("addon_id");
    if (wid == d.end() || !wid->is_string() || !valid_id(wid->get<std::string>()))
      return error(req.route, error_code::invalid_request,
                   "field 'worker_id' must be an id of 1-64 characters from [a-zA-Z0-9_-]", out);
    w.worker_id = wid->get<std::string>();
  }
  if (auto it = d.find("types"); it != d.end() && !it->is_null()) {
    if (!it->is_array())
      return error(req.route, error_code::invalid_request,
                   "field 'types' must be an array of job types", out);
    for (auto& t : *it) {
      if (!t.is_string())
        return error(req.route, error_code::invalid_request,
                     "field 'types' must be an array of job types", out);
      w.types.push_back(t.get<std::string>());
    }
  }
  if (auto it = d.find("host_id"); it != d.end() && !it->is_null()) {
    if (!it->is_string() || !valid_id(it->get<std::string>()))
      return error(req.route, error_code::invalid_request,
                   "field 'host_id' must be a host id", out);
    w.host_id = it->get<std::string>();
  }
  double wait = 0;
  if (auto it = d.find("wait_sec"); it != d.end() && !it->is_null()) {
    if (!it->is_number() || !(it->get<double>() >= 0)) // NaN fails too
      return error(req.route, error_code::invalid_request,
                   "field 'wait_sec' must be a number of seconds >= 0", out);
    wait = std::min(it->get<double>(), opts_.max_wait_sec);
  }
  if (w.route.topic.empty())
    return; // nobody to answer
  if (wait > 0 && waiting_.size() >= opts_.limits.max_parked) {
    ++refused_parked_;
    return error(req.route, error_code::request_throttled,
                 "too many parked requests (" + std::to_string(waiting_.size())
                   + "); ask again without wait_sec or later",
                 out);
  }
  w.until_mono = clock_.mono_sec() + wait;
  auto id = ++next_id_;
  waiting_[id] = std::move(w);
  try_dispatch(id, out, wait <= 0);
}

void queue_service::try_dispatch(std::uint64_t wid, queue_output& out, bool final_answer) {
  auto it = waiting_.find(wid);
  if (it == waiting_.end() || it->second.asking)
    return;
  auto& w = it->second;
  const job* pick = nullptr;
  std::size_t too_large = 0;
  for (auto* j : queue_.candidates(w.types, w.host_id, 64)) {
    bool in_flight = std::any_of(ask_job_.begin(), ask_job_.end(),
                                 [&](auto& a) { return a.second == j->job_id; });
    if (in_flight)
      continue;
    // Stored before limits.max_reply_bytes was lowered: it cannot be
    // handed out, so it waits (listed, cancellable) rather than take a
    // lease its worker would never hear of.
    if (!fits_reply(*j)) {
      ++too_large;
      continue;
    }
    pick = j;
    break;
  }
  if (pick == nullptr) {
    if (final_answer) {
      std::string types;
      for (auto& t : w.types)
        types += (types.empty() ? "" : ", ") + t;
      auto reason = "No queued job" + (types.empty() ? "" : " of type " + types)
                    + (w.host_id.empty() ? "" : " for host " + w.host_id);
      if (too_large > 0)
        reason += " that fits a reply: " + std::to_string(too_large)
                  + " queued jobs are larger than limits.max_reply_bytes ("
                  + std::to_string(opts_.limits.max_reply_bytes)
                  + " bytes); cancel them or raise the limit";
      reply(w.route, {{"ok", true}, {"job", nullptr}, {"approved", false},
                      {"retry_after_sec", opts_.idle_retry_sec}, {"reason", reason}},
            out);
      waiting_.erase(it);
    }
    return;
  }
  // Cut off from the broker: a job handed out now would reach the worker
  // only after its request timed out, and the lease would expire unused.
  // The worker stays parked; the first tick back on the bus proposes it.
  if (!bus_up_)
    return;
  lease_ask ask;
  ask.ask_id = ++next_id_;
  ask.job_id = pick->job_id;
  ask.worker_id = w.worker_id;
  ask.job_type = pick->spec.job_type;
  ask.cost_units = pick->spec.cost_units;
  ask.gpu = pick->spec.gpu;
  ask.priority = lease_priority_of(pick->spec.priority);
  ask.host_id = !pick->spec.host_id.empty() ? pick->spec.host_id : w.host_id;
  w.asking = true;
  asks_[ask.ask_id] = wid;
  ask_job_[ask.ask_id] = pick->job_id;
  out.asks.push_back(std::move(ask));
}

queue_output queue_service::on_lease_reply(std::uint64_t ask_id, const lease_grant_reply& grant) {
  queue_output out;
  auto a = asks_.find(ask_id);
  auto job_id = ask_job_[ask_id];
  ask_job_.erase(ask_id);
  if (a == asks_.end())
    return out;
  auto wid = a->second;
  asks_.erase(a);
  auto w = waiting_.find(wid);
  if (w == waiting_.end()) {
    if (grant.approved)
      out.revoke.emplace_back(grant.lease_id, "the worker's request is gone");
    return out;
  }
  w->second.asking = false;
  if (grant.approved) {
    if (!queue_.mark_leased(job_id, grant.lease_id, w->second.worker_id, grant.host_id)) {
      // Cancelled or taken while the lease was being decided.
      out.revoke.emplace_back(grant.lease_id, "job " + job_id + " is no longer queued");
      try_dispatch(wid, out, clock_.mono_sec() >= w->second.until_mono);
      drain(out);
      return out;
    }
    auto* j = queue_.get(job_id);
    ack(w->second.route,
        {{"ok", true}, {"approved", true}, {"job", to_json(*j)}, {"lease", to_json(grant)}}, out);
    waiting_.erase(w);
    drain(out);
    return out;
  }
  w->second.next_try_mono = clock_.mono_sec() + std::min(grant.retry_after_sec, opts_.idle_retry_sec);
  if (clock_.mono_sec() >= w->second.until_mono) {
    nlohmann::json body = {{"ok", true},
                           {"job", nullptr},
                           {"approved", false},
                           {"reason", grant.reason.empty() ? "lease denied" : grant.reason},
                           {"retry_after_sec", grant.retry_after_sec},
                           {"job_id", job_id}};
    reply(w->second.route, std::move(body), out);
    waiting_.erase(w);
  }
  return out;
}

queue_output queue_service::on_lease_unanswered(std::uint64_t ask_id, const std::string& reason) {
  lease_grant_reply none;
  none.reason = reason;
  none.retry_after_sec = opts_.idle_retry_sec;
  return on_lease_reply(ask_id, none);
}

void queue_service::on_get(const mqtt_message& in, queue_output& out) {
  auto req = decode(in, false, out);
  if (req.error)
    return error(req.route, req.error->code, req.error->message, out);
  auto it = req.doc.find("job_id");
  if (it == req.doc.end() || !it->is_string())
    return error(req.route, error_code::invalid_request, "field 'job_id' must be a string", out);
  auto* j = queue_.get(it->get<std::string>());
  if (j == nullptr)
    return error(req.route, error_code::resource_not_found,
                 "no job " + it->get<std::string>(), out);
  if (!may_touch(*j, false))
    return error(req.route, error_code::not_holder,
                 "job " + j->job_id + " is not yours: only its producer, its worker and "
                   + opts_.security.admin_user + " may read it",
                 out);
  nlohmann::json body = {{"ok", true}, {"job", to_json(*j)}};
  if (auto e = check_reply_size(req.route, body, opts_.limits.max_reply_bytes, "job " + j->job_id))
    return error(req.route, e->code, e->message, out);
  reply(req.route, std::move(body), out);
}

void queue_service::on_list(const mqtt_message& in, queue_output& out) {
  auto req = decode(in, false, out);
  if (req.error)
    return error(req.route, req.error->code, req.error->message, out);
  auto& d = req.doc;
  std::optional<job_state> st;
  if (auto it = d.find("state"); it != d.end() && !it->is_null()) {
    st = it->is_string() ? parse_job_state(it->get<std::string>()) : std::nullopt;
    if (!st)
      return error(req.route, error_code::invalid_request,
                   "field 'state' must be one of queued, leased, running, succeeded, failed, "
                   "cancelled, expired",
                   out);
  }
  auto str = [&](const char* k) {
    auto it = d.find(k);
    return it != d.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  std::size_t limit = 100;
  if (auto it = d.find("limit"); it != d.end() && it->is_number_integer() && *it > 0)
    limit = std::min<std::size_t>(it->get<std::size_t>(), 1000);
  // Key-set paging: the cursor names the last job sent (its seq), so jobs
  // submitted meanwhile come later and none is skipped or sent twice.
  std::uint64_t after = 0;
  if (auto it = d.find("cursor"); it != d.end() && !it->is_null()) {
    auto c = it->is_string() ? parse_job_cursor(it->get<std::string>()) : std::nullopt;
    if (!c) {
      auto e = bad_cursor(it->is_string() ? it->get<std::string>() : it->dump());
      return error(req.route, e.code, e.message, out);
    }
    after = *c;
  }
  // "worker" (not worker_id, which identifies the asking client)
  // Secure mode: a user lists the jobs it submitted or holds; the admin all.
  auto party = sender_ && *sender_ != opts_.security.admin_user ? *sender_ : std::string();
  // One more than the limit tells whether a next page exists.
  auto jobs = queue_.list(st, str("job_type"), str("worker"), limit + 1, party, after);
  auto inline_bytes = std::min(list_inline_bytes, opts_.limits.max_reply_bytes / 8);
  page_spec spec;
  spec.field = "jobs";
  spec.limit = limit;
  spec.max_bytes = opts_.limits.max_reply_bytes;
  auto page = build_page(req.route, {{"ok", true}, {"depths", queue_.depths()}}, jobs.size(),
                         [&](std::size_t i) {
                           return page_item{list_item(*jobs[i], inline_bytes),
                                            job_cursor(*jobs[i]), {},
                                            "job " + jobs[i]->job_id};
                         },
                         spec);
  if (auto* e = std::get_if<request_error>(&page))
    return error(req.route, e->code, e->message, out);
  reply(req.route, std::move(std::get<nlohmann::json>(page)), out);
}

void queue_service::on_cancel(const mqtt_message& in, const std::string& job_id,
                              queue_output& out) {
  auto req = decode(in, true, out); // mosquitto_pub -n cancels
  if (req.error)
    return error(req.route, req.error->code, req.error->message, out);
  std::string reason = "cancelled";
  if (auto it = req.doc.find("reason"); it != req.doc.end() && it->is_string())
    reason = it->get<std::string>();
  auto* existing = queue_.get(job_id);
  if (existing == nullptr)
    return error(req.route, error_code::resource_not_found, "no job " + job_id, out);
  if (!may_touch(*existing, true))
    return error(req.route, error_code::not_holder,
                 "job " + job_id + " was submitted by " + existing->spec.producer
                   + ": only it and " + opts_.security.admin_user + " may cancel it",
                 out);
  auto r = queue_.cancel(job_id, reason);
  if (auto* msg = std::get_if<std::string>(&r))
    return error(req.route, error_code::invalid_state_transition, *msg, out);
  if (auto& lease = std::get<0>(r))
    out.revoke.emplace_back(*lease, "job " + job_id + " cancelled: " + reason);
  ack(req.route, {{"ok", true}, {"job", to_json(*queue_.get(job_id))}}, out);
}

void queue_service::on_retry(const mqtt_message& in, const std::string& job_id,
                             queue_output& out) {
  auto req = decode(in, true, out);
  if (req.error)
    return error(req.route, req.error->code, req.error->message, out);
  std::string reason = "retried";
  if (auto it = req.doc.find("reason"); it != req.doc.end() && it->is_string())
    reason = bounded_text(it->get<std::string>(), 256); // kept in the job's events
  auto* existing = queue_.get(job_id);
  if (existing == nullptr)
    return error(req.route, error_code::resource_not_found, "no job " + job_id, out);
  if (!may_touch(*existing, true))
    return error(req.route, error_code::not_holder,
                 "job " + job_id + " was submitted by " + existing->spec.producer
                   + ": only it and " + opts_.security.admin_user + " may retry it",
                 out);
  if (auto msg = queue_.retry(job_id, reason))
    return error(req.route, error_code::invalid_state_transition, *msg, out);
  ack(req.route, {{"ok", true}, {"job", to_json(*queue_.get(job_id))}}, out);
  // A worker may be waiting for just this job.
  for (auto& [wid, w] : waiting_)
    if (!w.asking)
      try_dispatch(wid, out, false);
}

queue_output queue_service::on_lease_outcome(const lease_outcome& o) {
  queue_output out;
  auto* j = queue_.by_lease(o.lease_id);
  if (j == nullptr)
    return out;
  auto job_id = j->job_id;
  if (o.type == "running") {
    if (j->state == job_state::leased)
      queue_.mark_running(job_id);
    drain(out);
    return out;
  }
  if (o.type == "released") {
    auto outcome = lower(o.outcome);
    auto result = o.result.empty() ? nlohmann::json()
                                   : nlohmann::json::parse(o.result, nullptr, false);
    if (result.is_discarded())
      result = nullptr;
    if (outcome == "succeeded" || outcome == "success" || outcome == "ok")
      queue_.complete(job_id, o.lease_id, true, std::move(result), "");
    else
      queue_.complete(job_id, o.lease_id, false, std::move(result),
                      outcome == "failed" ? (o.error.empty() ? "failed" : o.error)
                                          : std::string("released without an outcome"));
  } else if (o.type == "expired" || o.type == "revoked") {
    queue_.lease_ended(o.lease_id, o.preempted ? o.reason : o.type, o.preempted);
  } else {
    return out;
  }
  // Capacity came back: re-evaluate waiting workers.
  for (auto& [wid, w] : waiting_)
    if (!w.asking)
      try_dispatch(wid, out, false);
  drain(out);
  return out;
}

queue_output queue_service::tick() {
  queue_output out;
  queue_.tick();
  auto now = clock_.mono_sec();
  std::vector<std::uint64_t> ids;
  for (auto& [wid, w] : waiting_)
    if (!w.asking)
      ids.push_back(wid);
  for (auto wid : ids) {
    auto it = waiting_.find(wid);
    if (it == waiting_.end())
      continue;
    bool last = now >= it->second.until_mono;
    if (last || now >= it->second.next_try_mono)
      try_dispatch(wid, out, last);
  }
  drain(out);
  return out;
}

std::set<std::string> queue_service::held_leases() const {
  std::set<std::string> out;
  for (auto st : {job_state::leased, job_state::running})
    for (auto* j : queue_.list(st, "", "", 100000))
      if (!j->lease_id.empty())
        out.insert(j->lease_id);
  return out;
}

queue_output queue_service::on_leases_gone(const std::set<std::string>& gone) {
  queue_output out;
  for (auto& id : gone)
    queue_.lease_ended(id, "lease no longer held by the lease manager");
  for (auto& [wid, w] : waiting_)
    if (!w.asking)
      try_dispatch(wid, out, false);
  drain(out);
  return out;
}

void queue_service::drain(queue_output& out) {
  for (auto& e : queue_.take_events()) {
    out.publish.push_back(event_json(opts_.topics.scheduler_events(), to_json(e)));
    if (auto* j = queue_.get(e.job_id)) {
      auto state = to_json(*j);
      state["v"] = schema_version;
      out.publish.push_back(retained_json(opts_.topics.full("scheduler/job/" + j->job_id + "/state"), state));
    }
  }
  // A purged job's retained state goes too, or the broker keeps one per job forever.
  for (auto& id : queue_.take_forgotten())
    out.publish.push_back(cleared(opts_.topics.full("scheduler/job/" + id + "/state")));
}

} // namespace lull
