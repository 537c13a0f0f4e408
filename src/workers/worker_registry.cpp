#include "src/workers/worker_registry.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include "messages/codec.hpp"
#include "messages/util.hpp"

namespace lull {

namespace {

constexpr std::array<const char*, 7> states = {"online", "starting", "idle", "busy",
                                               "stopping", "offline", "error"};
constexpr std::array<const char*, 3> healths = {"ok", "degraded", "failing"};

std::string trim(const std::string& s) {
  auto b = s.find_first_not_of(" \t\r\n");
  auto e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? std::string{} : s.substr(b, e - b + 1);
}

template <size_t N>
bool one_of(const std::string& v, const std::array<const char*, N>& set) {
  return std::any_of(set.begin(), set.end(), [&](const char* x) { return v == x; });
}

std::optional<std::string> opt_string(const nlohmann::json& j, const char* key,
                                      std::string& err) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null())
    return std::nullopt;
  if (!it->is_string()) {
    err = std::string(key) + ": expected a string";
    return std::nullopt;
  }
  return it->get<std::string>();
}

} // namespace

bool is_online_state(const std::string& state) {
  return state != "offline" && state != "error";
}

nlohmann::json to_json(const worker_record& w) {
  auto opt = [](const auto& x) { return x ? nlohmann::json(*x) : nlohmann::json(nullptr); };
  auto ts = [](const std::optional<std::int64_t>& x) {
    return x ? nlohmann::json(utc_timestamp(*x)) : nlohmann::json(nullptr);
  };
  return {{"worker_id", w.worker_id},
          {"state", w.state},
          {"online", w.online},
          {"health", w.stale ? std::string("stale") : w.health},
          {"health_detail", opt(w.health_detail)},
          {"version", opt(w.version)},
          {"host_id", opt(w.host_id)},
          {"job_types", w.job_types},
          {"runtime_dir", opt(w.runtime_dir)},
          {"custom", w.custom},
          {"first_seen", utc_timestamp(w.first_seen)},
          {"last_seen", utc_timestamp(w.last_seen)},
          {"online_since", ts(w.online_since)},
          {"offline_since", ts(w.offline_since)},
          {"updates", w.updates},
          {"went_offline", w.went_offline}};
}

const worker_record* worker_registry::find(const std::string& id) const {
  auto it = workers_.find(id);
  return it == workers_.end() ? nullptr : &it->second;
}

worker_update worker_registry::on_status(const std::string& worker_id,
                                         const std::string& payload, double now_mono,
                                         std::int64_t now_unix) {
  worker_update up;
  auto fail = [&](std::string why) {
    up.ok = false;
    up.error = "stats/worker/" + worker_id + ": " + std::move(why);
    return up;
  };
  auto text = trim(payload);
  if (text.empty()) {
    up.removed = workers_.erase(worker_id) > 0;
    return up;
  }
  worker_record next;
  if (auto it = workers_.find(worker_id); it != workers_.end())
    next = it->second;
  else {
    next.worker_id = worker_id;
    next.first_seen = now_unix;
  }
  auto plain = lower(text);
  if (plain == "online" || plain == "offline") {
    next.state = plain;
  } else {
    auto doc = decode(payload, detect_format(payload, {}));
    if (!doc || !doc->is_object())
      return fail("expected a JSON object or the text online/offline");
    auto& j = *doc;
    if (auto v = j.find("v"); v != j.end() && !(v->is_number_integer() && v->get<int>() == 1))
      return fail("v: expected 1");
    std::string err;
    if (auto id = opt_string(j, "worker_id", err); id && *id != worker_id)
      return fail("worker_id '" + *id + "' does not match the topic");
    auto state = opt_string(j, "state", err);
    // lull's client library says "status" (online, offline, stopped): one
    // schema, two spellings accepted.
    if (!state && err.empty())
      if (auto status = opt_string(j, "status", err))
        state = lower(*status) == "stopped" ? std::string("offline") : *status;
    if (!err.empty())
      return fail(err);
    if (!state)
      return fail("state: required (online, starting, idle, busy, stopping, offline, error)");
    next.state = lower(*state);
    if (!one_of(next.state, states))
      return fail("state: expected online, starting, idle, busy, stopping, offline or error, got '"
                  + *state + "'");
    if (next.state == "offline" && j.size() <= 2) {
      // A will such as {"state":"offline"} says nothing else: keep what we knew.
    } else {
      auto health = opt_string(j, "health", err);
      next.health = health ? lower(*health) : "ok";
      if (!one_of(next.health, healths))
        return fail("health: expected ok, degraded or failing");
      next.health_detail = opt_string(j, "health_detail", err);
      next.version = opt_string(j, "version", err);
      next.host_id = opt_string(j, "host_id", err);
      next.runtime_dir = opt_string(j, "runtime_dir", err);
      if (!err.empty())
        return fail(err);
      next.job_types.clear();
      if (auto jt = j.find("job_types"); jt != j.end() && !jt->is_null()) {
        if (!jt->is_array())
          return fail("job_types: expected an array of strings");
        for (auto& t : *jt) {
          if (!t.is_string())
            return fail("job_types: expected an array of strings");
          next.job_types.push_back(t.get<std::string>());
        }
      }
      next.custom = j.value("custom", nlohmann::json(nullptr));
    }
  }
  bool was_online = next.online;
  next.online = is_online_state(next.state);
  next.stale = false;
  next.last_seen = now_unix;
  next.last_seen_mono = now_mono;
  ++next.updates;
  if (next.online != was_online || next.updates == 1) {
    up.online_changed = next.online != was_online;
    if (next.online) {
      next.online_since = now_unix;
    } else {
      next.offline_since = now_unix;
      if (was_online)
        ++next.went_offline;
    }
  }
  up.now_online = next.online;
  workers_[worker_id] = std::move(next);
  return up;
}

std::vector<std::string> worker_registry::check_stale(double now_mono) {
  std::vector<std::string> out;
  for (auto& [id, w] : workers_) {
    if (w.online && !w.stale && now_mono - w.last_seen_mono > stale_after_) {
      w.stale = true;
      out.push_back(id);
    }
  }
  return out;
}

nlohmann::json worker_registry::summary(const std::string& host_id, std::int64_t now_unix) const {
  auto ws = nlohmann::json::object();
  int online = 0, offline = 0, stale = 0;
  for (auto& [id, w] : workers_) {
    ws[id] = to_json(w);
    if (w.stale)
      ++stale;
    else if (w.online)
      ++online;
    else
      ++offline;
  }
  return {{"v", schema_version},
          {"host_id", host_id},
          {"collected_at", utc_timestamp(now_unix)},
          {"counts", {{"online", online}, {"offline", offline}, {"stale", stale}}},
          {"workers", ws}};
}

} // namespace lull
