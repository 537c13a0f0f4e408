// Host control: pauses and their authority levels, as lease_table keeps
// them and as they travel on lull/<host>/control (parse_host_control).

#include "src/lease/lease_table.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace lull {

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

std::vector<std::string> lease_table::take_pauses_ended() {
  return std::exchange(pauses_ended_, {});
}

} // namespace lull
