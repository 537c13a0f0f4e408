#include "messages/lease.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>

#include "messages/enum_names.hpp"
#include "messages/topics.hpp"
#include "messages/util.hpp"

namespace lull {

namespace {

using json = nlohmann::json;

lease_error invalid(std::string msg) {
  return {lease_error_code::invalid_request, std::move(msg)};
}

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", x);
  return buf;
}

std::string got(const json& v) {
  return std::string(v.type_name());
}

/// Reads an optional string field; an error names the field and the type.
std::optional<lease_error> read_string(const json& doc, const char* field, std::string& out,
                                       bool required, std::size_t max_len = 256) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null()) {
    if (required)
      return invalid(std::string("missing field '") + field + "': expected a string");
    return std::nullopt;
  }
  if (!it->is_string())
    return invalid(std::string("field '") + field + "': expected a string, got " + got(*it));
  auto& s = it->get_ref<const std::string&>();
  if (s.size() > max_len)
    return invalid(std::string("field '") + field + "': expected at most "
                   + std::to_string(max_len) + " characters, got " + std::to_string(s.size()));
  out = s;
  return std::nullopt;
}

std::optional<lease_error> read_number(const json& doc, const char* field,
                                       std::optional<double>& out, double lo, double hi) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null())
    return std::nullopt;
  if (!it->is_number())
    return invalid(std::string("field '") + field + "': expected a number, got " + got(*it));
  double x = it->get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    return invalid(std::string("field '") + field + "': expected a number from "
                   + num(lo) + " to " + num(hi) + ", got " + it->dump());
  out = x;
  return std::nullopt;
}

std::optional<lease_error> read_bool(const json& doc, const char* field, bool& out) {
  auto it = doc.find(field);
  if (it == doc.end() || it->is_null())
    return std::nullopt;
  if (!it->is_boolean())
    return invalid(std::string("field 'constraints.") + field + "': expected a boolean, got "
                   + got(*it));
  out = it->get<bool>();
  return std::nullopt;
}

/// decode_request checked the envelope ("v"); documents from elsewhere (the
/// queue's asks) must still be objects.
std::optional<lease_error> check_object(const json& doc) {
  if (!doc.is_object())
    return invalid("payload: expected an object, got " + got(doc));
  return std::nullopt;
}

std::optional<lease_error> read_worker(const json& doc, std::string& out, bool required) {
  std::string w, a;
  if (auto e = read_string(doc, "worker_id", w, false, 64))
    return e;
  if (auto e = read_string(doc, "addon_id", a, false, 64))
    return e;
  if (!w.empty() && !a.empty() && w != a)
    return invalid("fields 'worker_id' and 'addon_id' (its alias) disagree: '" + w + "' vs '"
                   + a + "'");
  out = !w.empty() ? w : a;
  if (out.empty()) {
    if (required)
      return invalid("missing field 'worker_id' (or its alias 'addon_id'): expected a string "
                     "of 1-64 characters from [a-zA-Z0-9_-]");
    return std::nullopt;
  }
  if (!valid_id(out))
    return invalid("field 'worker_id': expected 1-64 characters from [a-zA-Z0-9_-], got '"
                   + out + "'");
  return std::nullopt;
}

std::optional<lease_error> read_reply_fields(const json& doc, std::string& request_id,
                                             std::string& reply_to) {
  if (auto it = doc.find("request_id"); it != doc.end() && it->is_number_integer())
    request_id = it->dump(); // Node-RED flows often use numeric ids
  else if (auto e = read_string(doc, "request_id", request_id, false, 128))
    return e;
  if (auto e = read_string(doc, "reply_to", reply_to, false, 256))
    return e;
  if (reply_to.find_first_of("+#") != std::string::npos)
    return invalid("field 'reply_to': expected a topic without wildcards, got '" + reply_to
                   + "'");
  return std::nullopt;
}

} // namespace

const char* to_string(cost_class c) { return enum_name<cost_class, 3>(c); }
const char* to_string(lease_state s) { return enum_name<lease_state, 4>(s); }


std::optional<cost_class> parse_cost_class(std::string_view text) {
  return parse_enum<cost_class, 3>(text);
}

std::string peek_string(const json& doc, const char* field) {
  if (!doc.is_object())
    return {};
  auto it = doc.find(field);
  if (it == doc.end())
    return {};
  if (it->is_string() && it->get_ref<const std::string&>().size() <= 256)
    return it->get<std::string>();
  if (it->is_number_integer())
    return it->dump();
  return {};
}

std::string lease_cgroup_name(const std::string& lease_id) {
  return "lull-lease-" + lease_id.substr(0, 16);
}

std::optional<std::string> claim_refusal(const lease_process& p, const std::string& lease_id) {
  if (p.pid <= 1)
    return "pid " + std::to_string(p.pid) + " is init: it is never a lease's";
  if (!p.cgroup.empty()) {
    auto want = lease_cgroup_name(lease_id);
    auto slash = p.cgroup.rfind('/');
    if (p.cgroup.substr(slash == std::string::npos ? 0 : slash + 1) != want)
      return "cgroup " + p.cgroup + " is not this lease's own (.../" + want + ")";
  }
  return std::nullopt;
}

std::optional<lease_error> read_lease_process(const json& doc,
                                              std::optional<lease_process>& out) {
  out.reset();
  if (!doc.is_object())
    return std::nullopt;
  auto pid = doc.find("pid");
  if (pid == doc.end() || pid->is_null()) {
    if (doc.contains("pid_start") || doc.contains("cgroup"))
      return invalid("field 'pid': expected the leader's pid (an integer) with 'pid_start' "
                     "and 'cgroup'");
    return std::nullopt;
  }
  // Linux pids are at most 2^22 (pid_max).
  if (!pid->is_number_integer() || pid->get<std::int64_t>() < 1
      || pid->get<std::int64_t>() > 4194304)
    return invalid("field 'pid': expected an integer from 1 to 4194304, got " + pid->dump());
  lease_process p;
  p.pid = pid->get<int>();
  if (auto it = doc.find("pid_start"); it != doc.end() && !it->is_null()) {
    if (!it->is_number_integer() || it->get<std::int64_t>() < 0)
      return invalid("field 'pid_start': expected the process's start time (field 22 of "
                     "/proc/<pid>/stat, a non-negative integer), got "
                     + it->dump());
    p.pid_start = it->get<std::uint64_t>();
  }
  if (auto e = read_string(doc, "cgroup", p.cgroup, false, 512))
    return e;
  if (!p.cgroup.empty()
      && (p.cgroup.front() != '/' || p.cgroup.find("..") != std::string::npos
          || p.cgroup.find_first_of("\n\r") != std::string::npos))
    return invalid("field 'cgroup': expected an absolute cgroup v2 path without '..', got '"
                   + p.cgroup + "'");
  out = p;
  return std::nullopt;
}

json to_json(const lease_process& p) {
  json j = {{"pid", p.pid}};
  if (p.pid_start)
    j["pid_start"] = *p.pid_start;
  if (!p.cgroup.empty())
    j["cgroup"] = p.cgroup;
  return j;
}

std::variant<lease_request, lease_error> parse_lease_request(const json& doc,
                                                             bool worker_required) {
  lease_request r;
  if (auto e = check_object(doc))
    return *e;
  if (auto e = read_reply_fields(doc, r.request_id, r.reply_to))
    return *e;
  if (auto e = read_worker(doc, r.worker_id, worker_required))
    return *e;
  if (auto e = read_string(doc, "job_type", r.job_type, false, 128))
    return *e;
  if (auto e = read_string(doc, "host_id", r.host_id, false, 64))
    return *e;
  if (!r.host_id.empty() && !valid_id(r.host_id))
    return invalid("field 'host_id': expected 1-64 characters from [a-zA-Z0-9_-], got '"
                   + r.host_id + "'");
  if (auto it = doc.find("cost_units"); it != doc.end() && !it->is_null()) {
    if (!it->is_number())
      return invalid("field 'cost_units': expected an integer from 1 to 100, got " + got(*it));
    double x = it->get<double>();
    if (!std::isfinite(x) || x != std::floor(x) || x < 1 || x > 100)
      return invalid("field 'cost_units': expected an integer from 1 to 100, got "
                     + it->dump());
    r.cost_units = static_cast<int>(x);
  }
  std::string text;
  if (auto e = read_string(doc, "cost_class", text, false, 16))
    return invalid("field 'cost_class': expected one of LOW, NORMAL, HIGH (any case), got "
                   + got(doc.at("cost_class")));
  if (!text.empty()) {
    r.cost_class_ = parse_cost_class(text);
    if (!r.cost_class_)
      return invalid("field 'cost_class': expected one of LOW, NORMAL, HIGH (any case), got '"
                     + text + "'");
  }
  text.clear();
  if (auto e = read_string(doc, "priority", text, false, 16))
    return invalid("field 'priority': expected one of LOW, NORMAL, HIGH (any case), got "
                   + got(doc.at("priority")));
  if (!text.empty()) {
    auto p = parse_lease_priority(text);
    if (!p)
      return invalid("field 'priority': expected one of LOW, NORMAL, HIGH (any case), got '"
                     + text + "'");
    r.priority = *p;
  }
  if (auto e = read_number(doc, "expected_duration_sec", r.expected_duration_sec, 0, 1e9))
    return *e;
  if (auto e = read_number(doc, "ttl_sec", r.ttl_sec, 0, 1e9))
    return *e;
  if (auto it = doc.find("constraints"); it != doc.end() && !it->is_null()) {
    if (!it->is_object())
      return invalid("field 'constraints': expected an object, got " + got(*it));
    if (auto e = read_bool(*it, "cpu_heavy", r.constraints.cpu_heavy))
      return *e;
    if (auto e = read_bool(*it, "disk_write_heavy", r.constraints.disk_write_heavy))
      return *e;
    if (auto e = read_bool(*it, "network_heavy", r.constraints.network_heavy))
      return *e;
  }
  if (auto it = doc.find("gpu"); it != doc.end() && !it->is_null()) {
    auto expected = "field 'gpu': expected the number of GPUs the work needs, an integer from 0 "
                    "to " + std::to_string(max_lease_gpus) + ", got ";
    if (!it->is_number())
      return invalid(expected + got(*it));
    double x = it->get<double>();
    if (!std::isfinite(x) || x != std::floor(x) || x < 0 || x > max_lease_gpus)
      return invalid(expected + it->dump());
    r.gpu = static_cast<int>(x);
  }
  if (auto e = read_lease_process(doc, r.process))
    return *e;
  return r;
}

std::variant<lease_action_request, lease_error> parse_lease_action(const json& doc,
                                                                   std::string_view action) {
  lease_action_request r;
  // An empty payload is a valid heartbeat/release/revoke for the open setup's
  // `mosquitto_pub -n` users; it carries no worker id though.
  if (doc.is_null())
    return r;
  if (auto e = check_object(doc))
    return *e;
  if (auto e = read_reply_fields(doc, r.request_id, r.reply_to))
    return *e;
  if (auto e = read_worker(doc, r.worker_id, false))
    return *e;
  if (auto e = read_string(doc, "reason", r.reason, false, 512))
    return *e;
  if (action == "release") {
    // A job's outcome travels with its lease's release; read leniently, as
    // the queue always has: anything unreadable is "no outcome".
    if (auto it = doc.find("outcome"); it != doc.end() && it->is_string())
      r.outcome = it->get<std::string>();
    if (auto it = doc.find("result"); it != doc.end())
      r.result = *it;
    if (auto it = doc.find("error"); it != doc.end() && !it->is_null())
      r.error = it->is_string() ? it->get<std::string>() : it->dump();
  }
  if (action == "heartbeat")
    if (auto e = read_lease_process(doc, r.process))
      return *e;
  if (action == "report") {
    std::optional<double> p;
    if (auto e = read_number(doc, "progress", p, 0, 1))
      return *e;
    r.progress = p;
    if (auto e = read_string(doc, "message", r.message, false, 1024))
      return *e;
    if (auto it = doc.find("accounting"); it != doc.end() && !it->is_null()) {
      if (!it->is_object())
        return invalid("field 'accounting': expected an object, got " + got(*it));
      r.accounting = *it;
    }
  }
  return r;
}

json to_json(const lease_grant_reply& r) {
  json j = {{"v", schema_version}, {"request_id", r.request_id}, {"approved", r.approved}};
  if (r.approved) {
    j["lease_id"] = r.lease_id;
    j["host_id"] = r.host_id;
    j["fencing_token"] = r.fencing_token;
    j["cost_units"] = r.cost_units;
    if (r.gpu > 0)
      j["gpu"] = r.gpu;
    json limits = {{"heartbeat_ttl_sec", r.ttl_sec},
                   {"heartbeat_interval_sec", r.heartbeat_interval_sec},
                   {"lock_delay_sec", r.lock_delay_sec}};
    if (r.ttl_clamped)
      limits["ttl_clamped"] = true;
    j["limits"] = std::move(limits);
    j["expires_at"] = utc_timestamp(r.expires_at);
  } else {
    if (!r.host_id.empty())
      j["host_id"] = r.host_id;
    j["retry_after_sec"] = r.retry_after_sec;
    if (r.next_window)
      j["next_window"] = utc_timestamp(*r.next_window);
  }
  j["reason"] = r.reason;
  return j;
}

double clamp_retry_hint(double sec, double max_sec) {
  if (!std::isfinite(sec))
    return max_sec;
  return std::clamp(sec, 0.0, max_sec);
}

std::optional<lease_grant_reply> grant_reply_from_json(const json& j) {
  if (!j.is_object() || !j.contains("approved") || !j["approved"].is_boolean())
    return std::nullopt;
  lease_grant_reply r;
  r.request_id = peek_string(j, "request_id");
  r.approved = j["approved"].get<bool>();
  r.reason = peek_string(j, "reason");
  r.lease_id = peek_string(j, "lease_id");
  r.host_id = peek_string(j, "host_id");
  if (auto it = j.find("fencing_token"); it != j.end() && it->is_number_unsigned())
    r.fencing_token = it->get<std::uint64_t>();
  if (auto it = j.find("retry_after_sec"); it != j.end() && it->is_number())
    r.retry_after_sec = clamp_retry_hint(it->get<double>());
  if (auto it = j.find("limits"); it != j.end() && it->is_object()) {
    if (auto t = it->find("heartbeat_ttl_sec"); t != it->end() && t->is_number()
        && std::isfinite(t->get<double>()) && t->get<double>() > 0)
      r.ttl_sec = std::min(t->get<double>(), 7 * 86400.0);
    if (auto t = it->find("heartbeat_interval_sec"); t != it->end() && t->is_number())
      r.heartbeat_interval_sec = t->get<double>();
    // A holder that heartbeats less than three times a TTL loses its lease.
    if (!std::isfinite(r.heartbeat_interval_sec) || r.heartbeat_interval_sec <= 0
        || r.heartbeat_interval_sec > r.ttl_sec / 3)
      r.heartbeat_interval_sec = r.ttl_sec / 3;
    if (auto t = it->find("lock_delay_sec"); t != it->end() && t->is_number())
      r.lock_delay_sec = t->get<double>();
  }
  if (auto it = j.find("cost_units"); it != j.end() && it->is_number_integer())
    r.cost_units = it->get<int>();
  if (auto it = j.find("gpu"); it != j.end() && it->is_number_integer())
    r.gpu = std::clamp(it->get<int>(), 0, max_lease_gpus);
  if (auto it = j.find("expires_at"); it != j.end() && it->is_string())
    r.expires_at = parse_utc_timestamp(it->get<std::string>()).value_or(0);
  return r;
}

} // namespace lull
