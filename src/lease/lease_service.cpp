#include "src/lease/lease_service.hpp"


#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <utility>

#include "messages/util.hpp"
#include "src/log.hpp"

namespace lull {

namespace {

bool is_action(std::string_view a) {
  return a == "heartbeat" || a == "release" || a == "report" || a == "revoke";
}

} // namespace

lease_service::lease_service(lease_service_options opts, lease_env env,
                             std::uint64_t first_fencing)
  : opts_(std::move(opts)), table_(opts_.policy, std::move(env), first_fencing) {}

std::vector<std::string> lease_service::filters() const {
  auto& t = opts_.topics;
  std::vector<std::string> out;
  if (opts_.security.secure) {
    out.push_back(t.full("scheduler/+/lease/request"));
    for (auto* a : {"heartbeat", "release", "report", "revoke"})
      out.push_back(t.full(std::string("scheduler/+/lease/+/") + a));
    out.push_back(t.lease_action_filter("revoke"));
  } else {
    out.push_back(t.lease_request());
    for (auto* a : {"heartbeat", "release", "report", "revoke"})
      out.push_back(t.lease_action_filter(a));
  }
  out.push_back(t.full("scheduler/control/+"));
  out.push_back(t.full("scheduler/control/+/set"));
  out.push_back(t.availability("+"));
  out.push_back(t.full("stats/host/+/quiet"));
  out.push_back(t.full("stats/host/+/quiet_hours"));
  out.push_back(t.host_stats_filter());
  out.push_back(t.worker_status_filter());
  return out;
}

std::vector<mqtt_message> lease_service::handle(const mqtt_message& in) {
  std::vector<mqtt_message> out;
  auto rel = opts_.topics.strip(in.topic);
  if (rel.empty())
    return out;
  auto lv = split_levels(rel);
  if (lv.size() >= 3 && lv[0] == "stats" && lv[1] == "host") {
    if (lv.size() == 4 && lv[3] == "quiet")
      on_quiet(in);
    else if (lv.size() == 4 && lv[3] == "quiet_hours")
      on_quiet_hours(std::string(lv[2]), in);
    else if (lv.size() == 3)
      on_host(std::string(lv[2]), in);
    publish_evicted(out);
    for (auto& m : pending_host_leases_)
      out.push_back(std::move(m));
    pending_host_leases_.clear();
    return out;
  }
  if (lv.size() == 3 && lv[0] == "stats" && lv[1] == "worker") {
    on_worker(std::string(lv[2]), in);
    drain_events(out);
    return out;
  }
  if (lv.size() == 3 && lv[0] == "lull" && lv[2] == "availability") {
    on_availability(std::string(lv[1]), in);
    return out;
  }
  if (lv.empty() || lv[0] != "scheduler")
    return out;
  if (lv.size() >= 3 && lv[1] == "control" && (lv.size() == 3 || (lv.size() == 4 && lv[3] == "set"))) {
    if (lv.size() == 3)
      on_control(std::string(lv[2]), in);
    else
      on_switch(std::string(lv[2]), in, out);
    drain_events(out);
    return out;
  }
  ++counters_.received;
  if (!opts_.security.secure) {
    if (lv.size() == 3 && lv[1] == "lease" && lv[2] == "request")
      on_request(in, {}, out);
    else if (lv.size() == 4 && lv[1] == "lease" && is_action(lv[3]))
      on_action(in, std::string(lv[2]), std::string(lv[3]), {}, out);
  } else {
    if (lv.size() == 4 && lv[2] == "lease" && lv[3] == "request")
      on_request(in, std::string(lv[1]), out);
    else if (lv.size() == 5 && lv[2] == "lease" && is_action(lv[4]))
      on_action(in, std::string(lv[3]), std::string(lv[4]), std::string(lv[1]), out);
    else if (lv.size() == 4 && lv[1] == "lease" && lv[3] == "revoke")
      // The admin's topic: the broker's ACL lets only the admin publish here.
      on_action(in, std::string(lv[2]), "revoke", {}, out);
  }
  drain_events(out);
  return out;
}

void lease_service::reply(const reply_route& route, const std::optional<std::string>& sender,
                          nlohmann::json body, std::vector<mqtt_message>& out, bool ack) {
  if (route.topic.empty()) {
    ++counters_.unanswerable;
    return;
  }
  if (!reply_allowed(route.topic, opts_.topics, opts_.security.secure, sender)) {
    ++counters_.unanswerable;
    log::warn("lease manager: not replying to '{}': replies for worker '{}' go under {}",
              route.topic, sender.value_or(""),
              opts_.topics.full("workers/" + sender.value_or("") + "/"));
    return;
  }
  ++counters_.replies;
  // One rule for every request topic: request_id echoed as sent (a string or
  // a number), null when absent; the route holds it, whatever the body says.
  body["request_id"] = route.request_id;
  if (ack && opts_.hold_acks) {
    acks_.push_back({route, std::move(body)});
    return;
  }
  if (auto m = make_reply(route, std::move(body)))
    out.push_back(std::move(*m));
}

std::vector<mqtt_message> lease_service::committed(const std::vector<std::string>& ids) {
  table_.committed(ids);
  std::vector<mqtt_message> out;
  out.reserve(acks_.size());
  for (auto& a : acks_)
    if (auto m = make_reply(a.route, std::move(a.body)))
      out.push_back(std::move(*m));
  acks_.clear();
  return out;
}

std::vector<mqtt_message> lease_service::roll_back(const std::vector<std::string>& ids,
                                                   const std::string& cause) {
  table_.roll_back(ids);
  // Outcomes of changes that did not happen: a "running" one goes out again
  // with the next heartbeat.
  for (auto& o : outcomes_)
    if (o.type == "running")
      started_.erase(o.lease_id);
  outcomes_.clear();
  release_details_.clear();
  dirty_ = true;
  std::vector<mqtt_message> out;
  for (auto& a : acks_) {
    counters_.replies -= counters_.replies > 0 ? 1 : 0;
    if (a.body.value("approved", false) && counters_.grants > 0)
      --counters_.grants;
    ++counters_.rejected;
    if (auto m = make_error_reply(
          a.route, {lease_error_code::internal_error,
                    "lulld could not store the lease change (" + cause
                      + "); nothing was changed, retry later"}))
      out.push_back(std::move(*m));
  }
  acks_.clear();
  return out;
}

void lease_service::set_store_status(nlohmann::json store) {
  store_status_ = std::move(store);
  dirty_ = true;
}

void lease_service::reject(const reply_route& route, const std::optional<std::string>& sender,
                           const lease_error& e, const std::string& topic,
                           std::vector<mqtt_message>& out) {
  ++counters_.rejected;
  log::warn("lease manager: rejected message on {}: {}: {}", topic, to_string(e.code),
            e.message);
  reply(route, sender, error_body(e), out);
}

bool lease_service::throttled(const reply_route& route, const std::optional<std::string>& sender,
                              const std::string& worker, const std::string& topic,
                              std::vector<mqtt_message>& out) {
  auto wait = table_.throttle(worker);
  if (!wait)
    return false;
  ++counters_.rejected;
  ++counters_.throttled;
  auto& pol = opts_.policy;
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "worker %s sends more than %g lease messages/s (burst %g); retry in %.1fs",
                worker.c_str(), pol.worker_rate_per_sec, pol.worker_burst, *wait);
  // Logged once a second at most: a flood must not flood the log too.
  if (counters_.throttled == 1 || counters_.throttled % 1000 == 0)
    log::warn("lease manager: throttled {} on {} ({} throttled so far)", worker, topic,
              counters_.throttled);
  auto body = error_body({lease_error_code::request_throttled, buf});
  body["retry_after_sec"] = *wait;
  reply(route, sender, std::move(body), out);
  return true;
}

void lease_service::on_request(const mqtt_message& in, const std::string& topic_worker,
                               std::vector<mqtt_message>& out) {
  auto req = decode_request(in, lease_limits);
  // Secure mode: the topic names the sender. Open mode: only the payload
  // does, and any topic may be answered.
  std::optional<std::string> sender;
  if (opts_.security.secure)
    sender = topic_worker;
  if (req.error)
    return reject(req.route, sender, *req.error, in.topic, out);
  if (request_expired(req, static_cast<double>(table_.now_wall()))) {
    // Its client gave up long ago (it was published while lulld was down):
    // a grant now would hold capacity for nobody.
    if (++counters_.expired == 1 || counters_.expired % 1000 == 0)
      log::info("lease manager: dropped an expired lease request on {} ({} so far)", in.topic,
                counters_.expired);
    return;
  }
  auto parsed = parse_lease_request(req.doc, !opts_.security.secure);
  if (auto* e = std::get_if<lease_error>(&parsed))
    return reject(req.route, sender, *e, in.topic, out);
  auto& r = std::get<lease_request>(parsed);
  const std::string& worker = opts_.security.secure ? topic_worker : r.worker_id;
  if (throttled(req.route, sender, worker, in.topic, out))
    return;
  // Who may ask for HIGH is a list: the topic's user, which the broker's ACL
  // vouches for. (Leases the queue asks for carry the job's priority, which
  // its producer was allowed to give.)
  if (r.priority == work_priority::high && !opts_.security.may_ask_high(worker)) {
    ++counters_.permission_denied;
    return reject(req.route, sender,
                  {lease_error_code::permission_denied,
                   opts_.security.high_denied(worker, "ask for a HIGH lease")},
                  in.topic, out);
  }
  auto decision = table_.request(r, worker);
  ++(decision.approved ? counters_.grants : counters_.denies);
  dirty_ = true;
  reply(req.route, sender, to_json(decision), out, decision.approved);
}

void lease_service::on_action(const mqtt_message& in, const std::string& lease_id,
                              const std::string& action, const std::string& topic_worker,
                              std::vector<mqtt_message>& out) {
  // An empty payload (mosquitto_pub -n) is a valid action: a null document.
  auto req = decode_request(in, lease_limits, true);
  bool admin_revoke = action == "revoke" && topic_worker.empty();
  std::optional<std::string> sender;
  if (opts_.security.secure)
    sender = topic_worker; // empty on the admin's revoke topic: not answered
  if (req.error)
    return reject(req.route, sender, *req.error, in.topic, out);
  auto parsed = parse_lease_action(req.doc, action);
  if (auto* e = std::get_if<lease_error>(&parsed))
    return reject(req.route, sender, *e, in.topic, out);
  auto& act = std::get<lease_action_request>(parsed);
  std::string worker = opts_.security.secure ? topic_worker : act.worker_id;
  if (!admin_revoke && worker.empty())
    return reject(req.route, sender,
                  {lease_error_code::invalid_request,
                   "missing field 'worker_id': expected the holder's id (a string) to " + action
                     + " a lease"},
                  in.topic, out);
  if (!admin_revoke && throttled(req.route, sender, worker, in.topic, out))
    return;
  if (!valid_id(lease_id))
    return reject(req.route, sender,
                  {lease_error_code::resource_not_found, "lease " + lease_id + " is not known"},
                  in.topic, out);
  std::variant<lease_ack, lease_error> result;
  if (action == "heartbeat")
    result = table_.heartbeat(lease_id, worker, act.process);
  else if (action == "release")
    result = table_.release(lease_id, worker, act.reason);
  else if (action == "report")
    result = table_.report(lease_id, worker, act);
  else
    result = table_.revoke(lease_id, admin_revoke ? std::string{} : worker,
                           act.reason.empty() ? (admin_revoke ? "revoked by admin"
                                                              : "revoked by holder")
                                              : act.reason);
  if (auto* e = std::get_if<lease_error>(&result))
    return reject(req.route, sender, *e, in.topic, out);
  if (action != "heartbeat")
    dirty_ = true;
  auto& ack = std::get<lease_ack>(result);
  if (action == "release")
    release_details_[lease_id] = {act.outcome,
                                  act.result.is_null() ? std::string() : act.result.dump(),
                                  act.error};
  else if ((action == "heartbeat" || action == "report") && ack.state == lease_state::active
           && started_.insert(lease_id).second)
    outcomes_.push_back({"running", lease_id, worker, {}, {}, {}, {}});
  nlohmann::json body = {{"ok", true},
                         {"action", action},
                         {"lease_id", ack.lease_id},
                         {"state", to_string(ack.state)},
                         {"fencing_token", ack.fencing_token}};
  if (ack.state == lease_state::active) {
    body["ttl_remaining_sec"] = ack.ttl_remaining_sec;
    body["expires_at"] = utc_timestamp(ack.expires_at);
    // A holder that missed a notice learns here whether to keep its work
    // stopped.
    body["suspended"] = ack.suspended;
    if (!ack.process_refused.empty())
      body["process"] = {{"counted", false}, {"reason", ack.process_refused}};
  }
  reply(req.route, sender, std::move(body), out, true);
}

void lease_service::on_quiet(const mqtt_message& in) {
  if (in.payload.empty())
    return; // a cleared retained message
  auto decoded = decode_payload(in.payload, in.content_type, lease_limits);
  if (auto* e = std::get_if<request_error>(&decoded)) {
    ++counters_.rejected;
    log::warn("lease manager: ignoring quiet assessment on {}: {}", in.topic, e->message);
    return;
  }
  try {
    table_.on_quiet(quiet_assessment_from_json(std::get<nlohmann::json>(decoded)));
    dirty_ = true;
  } catch (const std::exception& e) {
    ++counters_.rejected;
    log::warn("lease manager: ignoring quiet assessment on {}: {}", in.topic, e.what());
  }
}

void lease_service::on_availability(const std::string& host_id, const mqtt_message& in) {
  // "online" / "offline" (lulld's bridge and its last will); a cleared
  // retained message says nothing.
  std::string_view p = in.payload;
  while (!p.empty() && std::isspace(static_cast<unsigned char>(p.back())))
    p.remove_suffix(1);
  if (p != "online" && p != "offline")
    return;
  bool online = p == "online";
  auto it = table_.hosts().find(host_id);
  if (it == table_.hosts().end() || it->second.offline_since.has_value() == !online)
    return;
  table_.on_host_availability(host_id, online);
  dirty_ = true;
  if (online)
    log::info("lease manager: host {} is online again", host_id);
  else
    log::warn("lease manager: host {} is offline; requests for it are denied until it reports "
              "again (its leases keep their TTL)",
              host_id);
}

void lease_service::on_refused_claims(const std::string& host_id, const mqtt_message& in) {
  auto doc = decode_payload(in.payload, in.content_type, lease_limits);
  auto* j = std::get_if<nlohmann::json>(&doc);
  if (!j || !j->is_object())
    return;
  auto leased = j->find("leased");
  if (leased == j->end() || !leased->is_object())
    return;
  auto per = leased->find("per_lease");
  if (per == leased->end() || !per->is_array())
    return;
  for (auto& u : *per) {
    if (!u.is_object())
      continue;
    auto id = u.find("lease_id");
    auto why = u.find("refused");
    if (id != u.end() && id->is_string() && why != u.end() && why->is_string())
      table_.on_claim_refused(host_id, id->get<std::string>(), why->get<std::string>());
  }
}

void lease_service::on_host(const std::string& host_id, const mqtt_message& in) {
  if (in.payload.empty())
    return;
  // Only cpu.count matters here, read without building the snapshot's tree:
  // a fleet's snapshots arrive together, and the requests behind them wait.
  static const std::vector<std::string> cpu_count_path{"cpu", "count"};
  auto probe = probe_integer(in.payload, detect_format(in.payload, in.content_type),
                             cpu_count_path, {lease_limits.max_bytes,
                                              static_cast<int>(lease_limits.max_depth), true});
  if (!probe || !probe->parent_object)
    return;
  // The agent refused a lease's claim of processes (leased.per_lease[].
  // refused): rare, so only then is the snapshot decoded whole.
  if (in.payload.find("\"refused\":\"") != std::string::npos)
    on_refused_claims(host_id, in);
  auto& count = probe->integer;
  std::optional<int> cpus;
  if (count && *count >= 1 && *count <= 4096)
    cpus = static_cast<int>(*count);
  auto it = table_.hosts().find(host_id);
  bool changed = it == table_.hosts().end() || (cpus && it->second.cpu_count != cpus)
                 || it->second.offline_since;
  // The agent's snapshot is what makes a host known (and keeps it so).
  if (!table_.on_snapshot(host_id, cpus)) {
    if (table_.hosts_refused() == 1 || table_.hosts_refused() % 1000 == 0)
      log::warn("lease manager: not tracking host {}: {} hosts hold leases (limits.max_hosts); "
                "{} refused so far",
                host_id, table_.hosts().size(), table_.hosts_refused());
    return;
  }
  if (changed)
    dirty_ = true;
  if (!host_leases_sent_.count(host_id)) {
    // The first word from a host: tell its agent which leases it runs (none,
    // after a restart that restored none), replacing a stale retained list.
    auto body = encode(table_.host_leases_json(host_id), wire_format::json);
    host_leases_sent_[host_id] = body;
    pending_host_leases_.push_back(retained_json(opts_.topics.host_leases(host_id), std::move(body)));
  }
}

void lease_service::publish_evicted(std::vector<mqtt_message>& out) {
  for (auto& host : table_.take_hosts_evicted()) {
    log::info("lease manager: forgot host {} (its agent is silent; {} hosts forgotten so far)",
              host, table_.hosts_evicted());
    host_leases_sent_.erase(host);
    out.push_back(cleared(opts_.topics.host_leases(host)));
    dirty_ = true;
  }
}

void lease_service::on_worker(const std::string& worker_id, const mqtt_message& in) {
  if (in.payload.empty() || !valid_id(worker_id))
    return;
  std::string status;
  auto decoded = decode_payload(in.payload, in.content_type, lease_limits);
  if (auto* d = std::get_if<nlohmann::json>(&decoded)) {
    if (d->is_string())
      status = d->get<std::string>();
    else if (d->is_object())
      for (auto* key : {"status", "state", "availability"})
        if (auto it = d->find(key); it != d->end() && it->is_string()) {
          status = it->get<std::string>();
          break;
        }
  } else {
    status = in.payload; // a bare "offline" will
  }
  status = lower(status);
  if (status == "offline" || status == "dead" || status == "lost" || status == "stopped") {
    table_.on_worker_status(worker_id, false);
    dirty_ = true;
  } else if (!status.empty()) {
    table_.on_worker_status(worker_id, true);
  }
}

void lease_service::on_quiet_hours(const std::string& host_id, const mqtt_message& in) {
  if (in.payload.empty())
    return;
  auto decoded = decode_payload(in.payload, in.content_type, lease_limits);
  auto* doc = std::get_if<nlohmann::json>(&decoded);
  // {"hours": 7 rows (Sunday first) of 24 shares or null, "days_observed": n}
  if (!doc || !doc->is_object() || !(*doc)["hours"].is_array() || (*doc)["hours"].size() != 7
      || !(*doc)["days_observed"].is_number()) {
    ++counters_.rejected;
    log::warn("lease manager: ignoring {}: expected hours (7 x 24 shares) and days_observed",
              in.topic);
    return;
  }
  quiet_hour_map m;
  // A count from the bus: bounded (ten years), never NaN.
  double days = (*doc)["days_observed"].get<double>();
  m.days_observed = std::isfinite(days) ? std::clamp(days, 0.0, 3650.0) : 0.0;
  for (int d = 0; d < 7; ++d) {
    auto& row = (*doc)["hours"][d];
    for (int h = 0; h < 24 && row.is_array() && h < static_cast<int>(row.size()); ++h)
      if (row[h].is_number()) {
        double s = row[h].get<double>();
        if (!(s >= 0 && s <= 1))
          continue; // NaN or out of range: unobserved
        m.observed_sec[d][h] = 1;
        m.quiet_sec[d][h] = s;
      }
  }
  table_.on_quiet_hours(host_id, std::move(m));
}

void lease_service::on_control(const std::string& host_id, const mqtt_message& in) {
  // The control topic is the admin's (secure mode's ACL lets only the admin
  // and lulld publish there): a message speaks at its "level", admin unless
  // it says less.
  if (!valid_id(host_id))
    return;
  if (in.payload.empty()) {
    table_.on_pause(host_id, std::nullopt); // a cleared retained pause
    dirty_ = true;
    return;
  }
  auto decoded = decode_payload(in.payload, in.content_type, lease_limits);
  std::string why;
  if (auto* e = std::get_if<request_error>(&decoded)) {
    why = e->message;
  } else {
    auto parsed = parse_host_control(std::get<nlohmann::json>(decoded));
    if (auto* c = std::get_if<host_control>(&parsed)) {
      auto& p = c->pause;
      if (p && p->since == 0)
        p->since = table_.now_wall();
      bool was = table_.hosts().count(host_id) && table_.hosts().at(host_id).pause;
      auto text = p ? "paused by " + p->by + " (" + to_string(c->level) + "): " + p->reason
                    : std::string("resumed (") + to_string(c->level) + ")";
      if (auto refused = table_.on_pause(host_id, p, c->level)) {
        ++counters_.pause_refused;
        dirty_ = true;
        log::warn("lease manager: host {} not {}: it is {}, a higher level", host_id, text,
                  *refused);
        return;
      }
      if (p || was)
        log::info("lease manager: host {} {}", host_id, text);
      dirty_ = true;
      return;
    }
    why = std::get<std::string>(parsed);
  }
  ++counters_.rejected;
  log::warn("lease manager: ignoring control message on {}: {}", in.topic, why);
}

mqtt_message lease_service::control_message(const std::string& host) const {
  std::optional<host_pause> p;
  if (auto it = table_.hosts().find(host); it != table_.hosts().end())
    p = it->second.pause;
  return retained_json(opts_.topics.host_control(host), to_json(host, p));
}

void lease_service::on_switch(const std::string& host_id, const mqtt_message& in,
                              std::vector<mqtt_message>& out) {
  // Home Assistant's "Allow heavy work" switch: ON lifts a pause, OFF pauses
  // the host until switched back, both at the home_assistant level: an
  // admin's pause stays. The retained control message is the state.
  if (!valid_id(host_id))
    return;
  auto cmd = lower(in.payload);
  std::optional<host_pause> pause;
  if (cmd == "off") {
    pause = host_pause{"Home Assistant", "heavy work switched off", table_.now_wall(), {},
                       pause_level::home_assistant};
  } else if (cmd != "on") {
    ++counters_.rejected;
    log::warn("lease manager: ignoring {}: expected ON or OFF", in.topic);
    return;
  }
  if (auto refused = table_.on_pause(host_id, pause, pause_level::home_assistant)) {
    ++counters_.pause_refused;
    dirty_ = true;
    log::warn("lease manager: Home Assistant's {} for host {} refused: {}, which only that "
              "level or higher lifts",
              cmd == "on" ? "ON" : "OFF", host_id, *refused);
    // The switch shows the pause that holds (and who holds it) again.
    out.push_back(control_message(host_id));
    return;
  }
  dirty_ = true;
  auto j = to_json(host_id, pause);
  j["level"] = to_string(pause_level::home_assistant);
  out.push_back(retained_json(opts_.topics.host_control(host_id), j));
}

void lease_service::publish_pauses_ended(std::vector<mqtt_message>& out) {
  for (auto& host : table_.take_pauses_ended()) {
    log::info("lease manager: the pause of host {} ran out", host);
    out.push_back(retained_json(opts_.topics.host_control(host),
                   encode(to_json(host, std::nullopt), wire_format::json)));
    dirty_ = true;
  }
}

void lease_service::publish_host_leases(std::vector<mqtt_message>& out) {
  for (auto& host : table_.take_hosts_changed()) {
    if (!valid_id(host))
      continue;
    auto body = encode(table_.host_leases_json(host), wire_format::json);
    auto& last = host_leases_sent_[host];
    if (last == body)
      continue;
    last = body;
    out.push_back(retained_json(opts_.topics.host_leases(host), std::move(body)));
  }
}

std::vector<mqtt_message> lease_service::take_host_leases() {
  std::vector<mqtt_message> out;
  publish_host_leases(out);
  return out;
}

void lease_service::drain_events(std::vector<mqtt_message>& out) {
  publish_pauses_ended(out);
  publish_evicted(out);
  auto events = table_.take_events();
  for (auto& e : events) {
    auto body = encode(to_json(e), wire_format::json);
    if (e.state && *e.state != lease_state::active && !e.lease_id.empty()) {
      lease_outcome o{e.type, e.lease_id, e.worker_id, e.reason, {}, {}, {}, e.preempted};
      if (e.preempted)
        ++counters_.preempted;
      if (auto d = release_details_.find(e.lease_id); d != release_details_.end()) {
        o.outcome = std::move(d->second.outcome);
        o.result = std::move(d->second.result);
        o.error = std::move(d->second.error);
        release_details_.erase(d);
      }
      started_.erase(e.lease_id);
      outcomes_.push_back(std::move(o));
    }
    if (e.suspended) {
      ++(*e.suspended ? counters_.suspended : counters_.resumed);
      log::info("lease manager: lease {} of {} on {} {}: {}", e.lease_id, e.worker_id,
                e.host_id, e.type, e.reason);
    }
    if ((e.state || e.suspended) && !e.lease_id.empty()) {
      // The holder must hear of a revoke, an expiry, a suspension or a
      // resumption (QoS 1); grants and releases it already has from its own
      // reply, so those go at QoS 0.
      int qos = e.suspended || *e.state == lease_state::revoked
                    || *e.state == lease_state::expired
                  ? 1
                  : 0;
      out.push_back(event_json(opts_.topics.lease_action(e.lease_id, "state"), body, qos));
      if (opts_.security.secure)
        out.push_back(event_json(opts_.topics.full("workers/" + e.worker_id + "/lease/" + e.lease_id
                                         + "/state"), body, qos));
    }
    out.push_back(event_json(opts_.topics.scheduler_events(), std::move(body)));
  }
  if (!events.empty())
    dirty_ = true;
}

std::vector<lease_outcome> lease_service::take_outcomes() {
  return std::exchange(outcomes_, {});
}

std::vector<mqtt_message> lease_service::tick() {
  std::vector<mqtt_message> out;
  table_.tick();
  drain_events(out);
  return out;
}

mqtt_message lease_service::status_message() const {
  auto j = table_.status_json();
  j["counters"] = {{"received", counters_.received}, {"rejected", counters_.rejected},
                   {"throttled", counters_.throttled}, {"expired", counters_.expired},
                   {"suspended", counters_.suspended}, {"resumed", counters_.resumed},
                   {"preempted", counters_.preempted},
                   {"hosts_evicted", table_.hosts_evicted()},
                   {"hosts_refused", table_.hosts_refused()},
                   {"permission_denied", counters_.permission_denied},
                   {"pause_refused", counters_.pause_refused},
                   {"replies", counters_.replies},   {"unanswerable", counters_.unanswerable},
                   {"grants", counters_.grants},     {"denies", counters_.denies}};
  j["queue"] = queue_status_;
  j["store"] = store_status_;
  j["counters"]["inbound_shed"] = inbound_shed_;
  return retained_json(opts_.topics.scheduler_status(), j);
}

void lease_service::set_inbound_shed(std::uint64_t n) { inbound_shed_ = n; }

void lease_service::set_queue_status(nlohmann::json queue) {
  queue_status_ = std::move(queue);
  dirty_ = true;
}

bool lease_service::take_status_dirty() {
  bool d = dirty_;
  dirty_ = false;
  return d;
}

} // namespace lull
