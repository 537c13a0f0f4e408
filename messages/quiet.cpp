#include "messages/quiet.hpp"

#include "messages/codec.hpp"
#include "messages/enum_names.hpp"

namespace lull {

const char* to_string(quiet_state s) { return enum_name<quiet_state, 4>(s); }

std::optional<quiet_state> parse_quiet_state(std::string_view text) {
  return parse_enum<quiet_state, 4>(text);
}

nlohmann::json to_json(const quiet_assessment& q) {
  return {{"v", schema_version},
          {"host_id", q.host_id},
          {"assessed_at", utc_timestamp(q.assessed_at)},
          {"quiet_score", q.quiet_score},
          {"state", to_string(q.state)},
          {"quiet", q.state == quiet_state::quiet},
          {"reasons", q.reasons},
          {"inputs", q.inputs},
          {"cooldown_until", q.cooldown_until ? nlohmann::json(utc_timestamp(*q.cooldown_until))
                                              : nlohmann::json(nullptr)},
          {"streak", q.streak},
          {"panic_by", q.panic_by},
          {"power", q.power ? to_json(*q.power) : nlohmann::json(nullptr)},
          {"owner", q.owner ? to_json(*q.owner) : nlohmann::json(nullptr)},
          {"gpus", gpus_json(q.gpus)}};
}

quiet_assessment quiet_assessment_from_json(const nlohmann::json& j) {
  quiet_assessment q;
  q.host_id = j.at("host_id").get<std::string>();
  auto at = parse_utc_timestamp(j.at("assessed_at").get<std::string>());
  if (!at)
    throw nlohmann::json::other_error::create(502, "assessed_at is not RFC 3339 UTC", &j);
  q.assessed_at = *at;
  q.quiet_score = j.at("quiet_score").get<double>();
  auto st = parse_quiet_state(j.at("state").get<std::string>());
  if (!st)
    throw nlohmann::json::other_error::create(503, "state is not QUIET/NORMAL/BUSY/PANIC", &j);
  q.state = *st;
  q.reasons = j.at("reasons").get<std::vector<std::string>>();
  q.inputs = j.value("inputs", nlohmann::json::object());
  if (auto it = j.find("cooldown_until"); it != j.end() && !it->is_null())
    q.cooldown_until = parse_utc_timestamp(it->get<std::string>());
  q.streak = j.value("streak", nlohmann::json(nullptr));
  if (auto it = j.find("panic_by"); it != j.end() && it->is_array())
    for (auto& x : *it)
      if (x.is_string())
        q.panic_by.push_back(x.get<std::string>());
  if (auto it = j.find("power"); it != j.end())
    q.power = host_power_from_json(*it);
  if (auto it = j.find("owner"); it != j.end())
    q.owner = owner_presence_from_json(*it);
  if (auto it = j.find("gpus"); it != j.end())
    q.gpus = gpus_from_json(*it);
  return q;
}

} // namespace lull
