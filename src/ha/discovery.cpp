#include "src/ha/discovery.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace lull {

namespace {

using nlohmann::json;

std::string object_id(const std::string& host_id) {
  std::string out = "lull_";
  for (char c : host_id)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return out;
}

json device_origin(const discovery_options& opts) {
  return {{"name", "lull"}, {"sw", opts.lull_version}};
}

/// A component that only names its platform: Home Assistant removes it.
json removed(const char* platform) { return {{"p", platform}}; }

} // namespace

double mounts_check_sec(double snapshot_interval_sec) {
  return std::clamp(snapshot_interval_sec * 10, 5.0, 60.0);
}

std::string ha_status_topic(const discovery_options& opts) { return opts.ha.prefix + "/status"; }

discovery_message discovery_removal(const std::string& host_id, const discovery_options& opts) {
  return {opts.ha.prefix + "/device/" + object_id(host_id) + "/config", nullptr};
}

bool discoverable_mount(const std::string& mount) {
  if (mount.empty() || mount.size() > max_discovery_mount_bytes)
    return false;
  for (unsigned char c : mount)
    if (c < 0x20 || c == 0x7f || c == '\'' || c == '"' || c == '\\' || c == '{' || c == '}')
      return false;
  return true;
}

bool discoverable_gpu(const std::string& id) {
  if (id.empty() || id.size() > 32)
    return false;
  return std::all_of(id.begin(), id.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-';
  });
}

void host_features::carry_gone(const host_features& before) {
  pressure_gone = !pressure && (before.pressure || before.pressure_gone);
  power_gone = !power && (before.power || before.power_gone);
  gpus_gone.clear();
  auto now_has = [&](const std::string& id) {
    return std::find(gpus.begin(), gpus.end(), id) != gpus.end();
  };
  for (auto* list : {&before.gpus_gone, &before.gpus})
    for (auto& id : *list)
      if (!now_has(id) && std::find(gpus_gone.begin(), gpus_gone.end(), id) == gpus_gone.end())
        gpus_gone.push_back(id);
  constexpr std::size_t max_gone = 16;
  if (gpus_gone.size() > max_gone) // the ones gone longest first: they go first
    gpus_gone.erase(gpus_gone.begin(), gpus_gone.end() - max_gone);
}

std::string disk_component_id(const std::string& mount) {
  if (mount == "/")
    return "disk";
  static const char hex[] = "0123456789abcdef";
  // Each byte is one of three kinds of token (a letter or digit, "_", "-"
  // and two hex digits), so distinct mounts never share an id.
  std::string out = "disk";
  for (unsigned char c : mount) {
    if (std::isalnum(c)) {
      out += static_cast<char>(c);
    } else if (c == '/') {
      out += '_';
    } else {
      out += '-';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

discovery_message build_discovery(const std::string& host_id,
                                  const std::vector<std::string>& mounts,
                                  const topic_names& topics, const discovery_options& opts,
                                  const std::vector<std::string>& gone_mounts,
                                  host_features features) {
  auto oid = object_id(host_id);
  auto snap = topics.host_stats(host_id);
  auto quiet = topics.host_quiet(host_id);
  // The snapshot is not retained: expire it when the agent goes silent for
  // three intervals (at least 30 s). The quiet assessment is retained, so no
  // expire_after there (HA would mark it unavailable after a restart).
  int expire = std::max(30, static_cast<int>(opts.snapshot_interval_sec * 3 + 0.5));

  auto measurement = [&](const std::string& key, const std::string& name, const std::string& tpl,
                         const char* unit, const char* device_class, const char* icon,
                         int precision) {
    json c = {{"p", "sensor"},
              {"name", name},
              {"unique_id", oid + "_" + key},
              {"state_topic", snap},
              {"value_template", tpl},
              {"state_class", "measurement"},
              {"expire_after", expire},
              {"suggested_display_precision", precision}};
    if (unit)
      c["unit_of_measurement"] = unit;
    if (device_class)
      c["device_class"] = device_class;
    if (icon)
      c["icon"] = icon;
    return c;
  };

  json cmps = json::object();
  cmps["cpu"] = measurement("cpu", "CPU", "{{ value_json.cpu.total_pct }}", "%", nullptr,
                            "mdi:cpu-64-bit", 1);
  cmps["mem"] = measurement("mem", "Memory used", "{{ value_json.mem.used_pct }}", "%", nullptr,
                            "mdi:memory", 1);
  // One sensor per mount, found by its name (a snapshot's order may change):
  // "None" (unknown) when the mount is missing from a snapshot.
  bool has_root = false;
  for (auto& m : mounts) {
    if (!discoverable_mount(m))
      continue;
    has_root = has_root || m == "/";
    auto key = disk_component_id(m);
    cmps[key] = measurement(key, "Disk free " + m,
                            "{{ value_json.disks | selectattr('mount', 'eq', '" + m
                              + "') | map(attribute='free_pct') | first | default(none) }}",
                            "%", nullptr, "mdi:harddisk", 1);
  }
  for (auto& m : gone_mounts)
    if (std::find(mounts.begin(), mounts.end(), m) == mounts.end())
      cmps[disk_component_id(m)] = removed("sensor");
  // lull's single "Disk free" sensor (the first disk) had the root's id.
  if (!has_root)
    cmps["disk"] = removed("sensor");
  cmps["temp"] = measurement("temp", "CPU temperature", "{{ value_json.cpu.temp_c }}", "°C",
                             "temperature", nullptr, 1);
  cmps["load"] = measurement("load", "Load (1 min)", "{{ value_json.load['1m'] }}", nullptr,
                             nullptr, "mdi:gauge", 2);
  // lull's own load on the host (docs/collectors.md, "Whose load"): from the
  // snapshot's `leased` object; 0 on agents that measure no leases.
  cmps["leased_cpu"] = measurement("leased_cpu", "Leased CPU",
                                   "{{ (value_json.leased.cpu_pct if value_json.leased and "
                                   "value_json.leased.cpu_pct is not none else 0) }}",
                                   "%", nullptr, "mdi:cpu-64-bit", 1);
  cmps["active_leases"] = measurement("active_leases", "Active leases",
                                      "{{ (value_json.leased.leases if value_json.leased "
                                      "else 0) }}",
                                      "leases", nullptr, "mdi:briefcase-clock", 0);

  // Pressure stall: the worst of CPU, memory and IO over the last minute.
  if (features.pressure)
    cmps["pressure"] = measurement(
      "pressure", "Pressure stall",
      "{{ [value_json.pressure.cpu.some_avg60 or 0, value_json.pressure.memory.some_avg60 or 0, "
      "value_json.pressure.io.some_avg60 or 0] | max if value_json.pressure else none }}",
      "%", nullptr, "mdi:timer-sand", 1);
  else if (features.pressure_gone)
    cmps["pressure"] = removed("sensor");
  // A laptop's power: what lease.on_battery holds work for.
  if (features.power) {
    cmps["battery"] = measurement(
      "battery", "Battery",
      "{{ value_json.power.battery_pct if value_json.power and value_json.power.battery_pct "
      "is not none else none }}",
      "%", "battery", nullptr, 0);
    cmps["on_ac"] = {{"p", "binary_sensor"},
                     {"name", "On AC power"},
                     {"unique_id", oid + "_on_ac"},
                     {"state_topic", snap},
                     {"value_template",
                      "{{ 'ON' if value_json.power and value_json.power.ac_online else 'OFF' }}"},
                     {"payload_on", "ON"},
                     {"payload_off", "OFF"},
                     {"device_class", "plug"},
                     {"expire_after", expire}};
  } else if (features.power_gone) {
    cmps["battery"] = removed("sensor");
    cmps["on_ac"] = removed("binary_sensor");
  }
  // Somebody at the host: what quiet.owner_idle holds work for.
  if (features.owner) {
    char idle[32];
    std::snprintf(idle, sizeof idle, "%.0f",
                  opts.owner_idle_sec > 0 ? opts.owner_idle_sec : 300.0);
    cmps["in_use"] = {{"p", "binary_sensor"},
                      {"name", "Host in use"},
                      {"unique_id", oid + "_in_use"},
                      {"state_topic", snap},
                      {"value_template",
                       std::string("{{ 'ON' if value_json.owner and not value_json.owner.locked "
                                   "and value_json.owner.idle_sec < ")
                         + idle + " else 'OFF' }}"},
                      {"payload_on", "ON"},
                      {"payload_off", "OFF"},
                      {"device_class", "occupancy"},
                      {"expire_after", expire}};
  }
  // One sensor per GPU, found by its id: its busy %, with what the snapshot
  // says of it (driver, VRAM, the leases' and the owner's share) as
  // attributes. What lease.gpu_owner_busy holds GPU work for.
  for (auto& id : features.gpus) {
    if (!discoverable_gpu(id))
      continue;
    auto of_gpu = "(value_json.gpus | selectattr('id', 'eq', '" + id + "') | first";
    auto c = measurement("gpu_" + id, "GPU " + id,
                         "{{ " + of_gpu + " | default({})).busy_pct | default(none) "
                         "if value_json.gpus else none }}",
                         "%", nullptr, "mdi:expansion-card", 0);
    c["json_attributes_topic"] = snap;
    c["json_attributes_template"] = "{{ " + of_gpu + " | default({})) | tojson "
                                    "if value_json.gpus else '{}' }}";
    cmps["gpu_" + id] = std::move(c);
  }
  for (auto& id : features.gpus_gone)
    if (discoverable_gpu(id)
        && std::find(features.gpus.begin(), features.gpus.end(), id) == features.gpus.end())
      cmps["gpu_" + id] = removed("sensor");

  // The quiet entities come from the assessor: when that is another lulld,
  // they need it online too, while the snapshot's need only the host.
  json quiet_availability;
  if (!opts.own_instance.empty() && opts.own_instance != host_id)
    quiet_availability = json::array({{{"topic", topics.availability(host_id)}},
                                      {{"topic", topics.availability(opts.own_instance)}}});
  auto from_assessor = [&](json c) {
    if (!quiet_availability.is_null()) {
      c["availability"] = quiet_availability;
      c["availability_mode"] = "all";
    }
    return c;
  };
  cmps["quiet_score"] = from_assessor({{"p", "sensor"},
                                       {"name", "Quiet score"},
                                       {"unique_id", oid + "_quiet_score"},
                                       {"state_topic", quiet},
                                       {"value_template", "{{ value_json.quiet_score }}"},
                                       {"state_class", "measurement"},
                                       {"icon", "mdi:sleep"},
                                       {"suggested_display_precision", 0}});
  // The device's main entity: name null, so HA shows the device's name.
  // A text sensor: an enum without unit or state_class.
  cmps["quiet_state"] = from_assessor({{"p", "sensor"},
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
                                        "value_json.cooldown_until} | tojson }}"}});
  cmps["quiet"] = from_assessor({{"p", "binary_sensor"},
                                 {"name", "Quiet"},
                                 {"unique_id", oid + "_quiet"},
                                 {"state_topic", quiet},
                                 {"value_template", "{{ 'ON' if value_json.quiet else 'OFF' }}"},
                                 {"payload_on", "ON"},
                                 {"payload_off", "OFF"},
                                 {"icon", "mdi:sleep"}});

  // What read scheduler/status sat here once, on every host; it is the
  // scheduler device's now (build_scheduler_discovery).
  cmps["queue_depth"] = removed("sensor");
  cmps["store_failing"] = removed("binary_sensor");
  cmps["allow_work"] = removed("switch");

  json payload = {
    {"dev",
     {{"ids", {oid}},
      {"name", host_id},
      {"mf", "lull"},
      {"mdl", "lull host agent"},
      {"sw", opts.lull_version}}},
    {"o", device_origin(opts)},
    {"availability", json::array({{{"topic", topics.availability(host_id)}}})},
    {"payload_available", "online"},
    {"payload_not_available", "offline"},
    {"qos", 0},
    {"cmps", cmps},
  };
  return {opts.ha.prefix + "/device/" + oid + "/config", payload};
}

std::string scheduler_device_id(const topic_names& topics) {
  std::string id = "lull-scheduler";
  auto prefix = topics.prefix();
  while (!prefix.empty() && prefix.back() == '/')
    prefix.pop_back();
  if (prefix.empty())
    return id;
  id += '-';
  for (char c : prefix)
    id += (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-') ? c : '_';
  return id;
}

discovery_message build_scheduler_discovery(const std::vector<std::string>& hosts,
                                            const topic_names& topics,
                                            const discovery_options& opts,
                                            const std::vector<std::string>& gone_hosts) {
  auto sid = scheduler_device_id(topics);
  auto status = topics.scheduler_status();
  json cmps = json::object();
  cmps["queue_depth"] = {{"p", "sensor"},
                         {"name", "Queued jobs"},
                         {"unique_id", sid + "_queue_depth"},
                         {"state_topic", status},
                         {"value_template", "{{ value_json.queue.queued }}"},
                         {"unit_of_measurement", "jobs"},
                         {"state_class", "measurement"},
                         {"icon", "mdi:tray-full"},
                         {"json_attributes_topic", status},
                         {"json_attributes_template", "{{ value_json.queue.depths | tojson }}"}};
  // The dead letters: jobs that failed every attempt (lull jobs --dead).
  cmps["dead_jobs"] = {{"p", "sensor"},
                       {"name", "Dead jobs"},
                       {"unique_id", sid + "_dead_jobs"},
                       {"state_topic", status},
                       {"value_template", "{{ value_json.queue.dead | default(0) }}"},
                       {"unit_of_measurement", "jobs"},
                       {"state_class", "measurement"},
                       {"icon", "mdi:email-alert"}};

  // The scheduler's database: ON (a problem) while lease or job writes fail;
  // its attributes carry the counts, the last cause and the persister's
  // backlog (scheduler/status "store").
  cmps["store_failing"] = {{"p", "binary_sensor"},
                           {"name", "Database writes failing"},
                           {"unique_id", sid + "_store_failing"},
                           {"device_class", "problem"},
                           {"entity_category", "diagnostic"},
                           {"state_topic", status},
                           {"value_template",
                            "{{ 'ON' if value_json.store is defined and (value_json.store.failing "
                            "or (value_json.store.persister and "
                            "value_json.store.persister.last_error)) else 'OFF' }}"},
                           {"payload_on", "ON"},
                           {"payload_off", "OFF"},
                           {"json_attributes_topic", status},
                           {"json_attributes_template", "{{ value_json.store | tojson }}"}};

  // "Allow heavy work on <host>": OFF pauses the host (its leases are
  // suspended, new ones denied), ON lifts the pause. The command goes to the
  // scheduler (scheduler/control/<host>/set); the state is what the
  // scheduler applied, from its retained status, so the switch never shows a
  // wish as a fact, and goes unavailable with the scheduler.
  for (auto& host : hosts) {
    if (!valid_id(host))
      continue;
    cmps["allow_work_" + host] = {
      {"p", "switch"},
      {"name", "Allow heavy work on " + host},
      {"unique_id", sid + "_allow_work_" + host},
      {"command_topic", topics.host_control(host) + "/set"},
      {"payload_on", "ON"},
      {"payload_off", "OFF"},
      {"state_topic", status},
      {"value_template", "{{ 'OFF' if value_json.hosts['" + host + "'] is defined and "
                         "value_json.hosts['" + host + "'].paused else 'ON' }}"},
      {"state_on", "ON"},
      {"state_off", "OFF"},
      // Who holds the pause, at which level: the switch cannot lift an
      // admin's ("paused by alice (admin)").
      {"json_attributes_topic", status},
      {"json_attributes_template",
       "{{ {'paused_by': value_json.hosts.get('" + host + "', {}).get('paused_by')} | tojson }}"},
      {"icon", "mdi:briefcase-check"}};
  }
  for (auto& host : gone_hosts)
    if (valid_id(host) && std::find(hosts.begin(), hosts.end(), host) == hosts.end())
      cmps["allow_work_" + host] = removed("switch");

  std::string name = "lull scheduler";
  if (sid.size() > std::string("lull-scheduler").size())
    name += " " + sid.substr(std::string("lull-scheduler-").size());
  json payload = {
    {"dev",
     {{"ids", {sid}},
      {"name", name},
      {"mf", "lull"},
      {"mdl", "lull scheduler"},
      {"sw", opts.lull_version}}},
    {"o", device_origin(opts)},
    {"availability", json::array({{{"topic", topics.availability(opts.own_instance)}}})},
    {"payload_available", "online"},
    {"payload_not_available", "offline"},
    {"qos", 0},
    {"cmps", cmps},
  };
  return {opts.ha.prefix + "/device/" + sid + "/config", payload};
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
