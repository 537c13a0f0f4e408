#include "src/ha/discovery.hpp"

#include <cctype>

namespace lull {

namespace {

std::string object_id(const std::string& host_id) {
  std::string out = "lull_";
  for (char c : host_id)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return out;
}

} // namespace

std::string ha_status_topic(const discovery_options& opts) { return opts.prefix + "/status"; }

discovery_message discovery_removal(const std::string& host_id, const discovery_options& opts) {
  return {opts.prefix + "/device/" + object_id(host_id) + "/config", nullptr};
}

discovery_message build_discovery(const std::string& host_id, const topic_names& topics,
                                  const discovery_options& opts) {
  using nlohmann::json;
  auto oid = object_id(host_id);
  auto snap = topics.host_stats(host_id);
  auto quiet = topics.host_quiet(host_id);
  // The snapshot is not retained: expire it when the agent goes silent for
  // three intervals (at least 30 s). The quiet assessment is retained, so no
  // expire_after there (HA would mark it unavailable after a restart).
  int expire = std::max(30, static_cast<int>(opts.snapshot_interval_sec * 3 + 0.5));

  auto measurement = [&](const char* key, const char* name, const char* tpl, const char* unit,
                         const char* device_class, const char* icon, const char* precision) {
    json c = {{"p", "sensor"},
              {"name", name},
              {"unique_id", oid + "_" + key},
                            {"state_topic", snap},
              {"value_template", tpl},
              {"state_class", "measurement"},
              {"expire_after", expire}};
    if (unit)
      c["unit_of_measurement"] = unit;
    if (device_class)
      c["device_class"] = device_class;
    if (icon)
      c["icon"] = icon;
    if (precision)
      c["suggested_display_precision"] = std::stoi(precision);
    return c;
  };

  json cmps = json::object();
  cmps["cpu"] = measurement("cpu", "CPU", "{{ value_json.cpu.total_pct }}", "%", nullptr,
                            "mdi:cpu-64-bit", "1");
  cmps["mem"] = measurement("mem", "Memory used", "{{ value_json.mem.used_pct }}", "%", nullptr,
                            "mdi:memory", "1");
  cmps["disk"] = measurement("disk", "Disk free", "{{ value_json.disks[0].free_pct }}", "%",
                             nullptr, "mdi:harddisk", "1");
  cmps["temp"] = measurement("temp", "CPU temperature", "{{ value_json.cpu.temp_c }}", "°C",
                             "temperature", nullptr, "1");
  cmps["load"] = measurement("load", "Load (1 min)", "{{ value_json.load['1m'] }}", nullptr,
                             nullptr, "mdi:gauge", "2");
  // lull's own load on the host (docs/collectors.md, "Whose load"): from the
  // snapshot's `leased` object; 0 on agents that measure no leases.
  cmps["leased_cpu"] = measurement("leased_cpu", "Leased CPU",
                                   "{{ (value_json.leased.cpu_pct if value_json.leased and "
                                   "value_json.leased.cpu_pct is not none else 0) }}",
                                   "%", nullptr, "mdi:cpu-64-bit", "1");
  cmps["active_leases"] = measurement("active_leases", "Active leases",
                                      "{{ (value_json.leased.leases if value_json.leased "
                                      "else 0) }}",
                                      "leases", nullptr, "mdi:briefcase-clock", "0");
  cmps["quiet_score"] = {{"p", "sensor"},
                         {"name", "Quiet score"},
                         {"unique_id", oid + "_quiet_score"},
                         {"state_topic", quiet},
                         {"value_template", "{{ value_json.quiet_score }}"},
                         {"state_class", "measurement"},
                         {"icon", "mdi:sleep"},
                         {"suggested_display_precision", 0}};
  // The device's main entity: name null, so HA shows the device's name.
  // A text sensor: an enum without unit or state_class.
  cmps["quiet_state"] = {{"p", "sensor"},
                         {"name", nullptr},
                         {"unique_id", oid + "_quiet_state"},
                         {"state_topic", quiet},
                         {"value_template", "{{ value_json.state }}"},
                         {"device_class", "enum"},
                         {"options", {"QUIET", "NORMAL", "BUSY", "PANIC"}},
                         {"icon", "mdi:weather-night"},
                         {"json_attributes_topic", quiet},
                         {"json_attributes_template",
                          "{{ {'reasons': value_json.reasons, 'cooldown_until': "
                          "value_json.cooldown_until} | tojson }}"}};
  cmps["quiet"] = {{"p", "binary_sensor"},
                   {"name", "Quiet"},
                   {"unique_id", oid + "_quiet"},
                   {"state_topic", quiet},
                   {"value_template", "{{ 'ON' if value_json.quiet else 'OFF' }}"},
                   {"payload_on", "ON"},
                   {"payload_off", "OFF"},
                   {"icon", "mdi:sleep"}};

  // "Allow heavy work": OFF pauses the host (its leases are suspended, new
  // ones denied), ON lifts the pause. The command goes to the scheduler
  // (scheduler/control/<host>/set); the state is what the scheduler applied,
  // from its retained status, so the switch never shows a wish as a fact.
  cmps["allow_work"] = {{"p", "switch"},
                        {"name", "Allow heavy work"},
                        {"unique_id", oid + "_allow_work"},
                        {"command_topic", topics.host_control(host_id) + "/set"},
                        {"payload_on", "ON"},
                        {"payload_off", "OFF"},
                        {"state_topic", topics.scheduler_status()},
                        {"value_template",
                         "{{ 'OFF' if value_json.hosts['" + host_id + "'] is defined and "
                         "value_json.hosts['" + host_id + "'].paused else 'ON' }}"},
                        {"state_on", "ON"},
                        {"state_off", "OFF"},
                        // Who holds the pause, at which level: the switch
                        // cannot lift an admin's ("paused by alice (admin)").
                        {"json_attributes_topic", topics.scheduler_status()},
                        {"json_attributes_template",
                         "{{ {'paused_by': value_json.hosts.get('" + host_id
                           + "', {}).get('paused_by')} | tojson }}"},
                        {"icon", "mdi:briefcase-check"}};

  if (opts.with_queue && host_id == opts.own_instance)
    cmps["queue_depth"] = {{"p", "sensor"},
                           {"name", "Queued jobs"},
                           {"unique_id", oid + "_queue_depth"},
                           {"state_topic", topics.scheduler_status()},
                           {"value_template", "{{ value_json.queue.queued }}"},
                           {"unit_of_measurement", "jobs"},
                           {"state_class", "measurement"},
                           {"icon", "mdi:tray-full"},
                           {"json_attributes_topic", topics.scheduler_status()},
                           {"json_attributes_template", "{{ value_json.queue.depths | tojson }}"}};

  // The scheduler's database: ON (a problem) while lease or job writes fail;
  // its attributes carry the counts, the last cause and the persister's
  // backlog (scheduler/status "store").
  if (opts.with_queue && host_id == opts.own_instance)
    cmps["store_failing"] = {{"p", "binary_sensor"},
                             {"name", "Database writes failing"},
                             {"unique_id", oid + "_store_failing"},
                             {"device_class", "problem"},
                             {"entity_category", "diagnostic"},
                             {"state_topic", topics.scheduler_status()},
                             {"value_template",
                              "{{ 'ON' if value_json.store is defined and (value_json.store.failing "
                              "or (value_json.store.persister and "
                              "value_json.store.persister.last_error)) else 'OFF' }}"},
                             {"payload_on", "ON"},
                             {"payload_off", "OFF"},
                             {"json_attributes_topic", topics.scheduler_status()},
                             {"json_attributes_template", "{{ value_json.store | tojson }}"}};

  json availability = json::array({{{"topic", topics.availability(host_id)}}});
  if (!opts.own_instance.empty() && opts.own_instance != host_id)
    availability.push_back({{"topic", topics.availability(opts.own_instance)}});

  json payload = {
    {"dev",
     {{"ids", {oid}},
      {"name", host_id},
      {"mf", "lull"},
      {"mdl", "lull host agent"},
      {"sw", opts.lull_version}}},
    {"o", {{"name", "lull"}, {"sw", opts.lull_version}}},
    {"availability", availability},
    {"availability_mode", "all"},
    {"payload_available", "online"},
    {"payload_not_available", "offline"},
    {"qos", 0},
    {"cmps", cmps},
  };
  return {opts.prefix + "/device/" + oid + "/config", payload};
}

namespace {

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

/// Length of one path step at `s[i]` (`.name`, `[0]`, `['key']`), or 0.
std::size_t path_step(const std::string& s, std::size_t i) {
  if (i >= s.size())
    return 0;
  if (s[i] == '.') {
    std::size_t j = i + 1;
    if (j >= s.size() || !ident_start(s[j]))
      return 0;
    while (j < s.size() && ident_char(s[j]))
      ++j;
    return j - i;
  }
  if (s[i] != '[' || i + 1 >= s.size())
    return 0;
  std::size_t j = i + 1;
  if (std::isdigit(static_cast<unsigned char>(s[j]))) {
    while (j < s.size() && std::isdigit(static_cast<unsigned char>(s[j])))
      ++j;
    return j < s.size() && s[j] == ']' ? j + 1 - i : 0;
  }
  if (s[j] != '\'')
    return 0;
  auto close = s.find('\'', j + 1);
  if (close == std::string::npos || close == j + 1 || close + 1 >= s.size() || s[close + 1] != ']')
    return 0;
  return close + 2 - i;
}

} // namespace

// A hand scanner rather than <regex>: GCC 12 warns inside libstdc++'s regex
// (maybe-uninitialized) when built with the sanitizers.
std::vector<std::string> template_paths(const std::string& value_template) {
  static const std::string marker = "value_json";
  std::vector<std::string> out;
  std::size_t pos = 0;
  while ((pos = value_template.find(marker, pos)) != std::string::npos) {
    std::size_t start = pos + marker.size();
    std::size_t end = start;
    while (std::size_t n = path_step(value_template, end))
      end += n;
    if (end > start)
      out.push_back(value_template.substr(start, end - start));
    pos = end > start ? end : start;
  }
  return out;
}

} // namespace lull
