#pragma once
/// Home Assistant MQTT discovery for lull's hosts: one device per host
/// (`<prefix>/device/lull_<host>/config`, retained) whose components read the
/// one JSON snapshot per host (`stats/host/<host>`) and the retained quiet
/// assessment (`stats/host/<host>/quiet`) through `value_template`s.
///
/// What Home Assistant's users learned (docs/collectors.md): discovery needs `dev`
/// and the origin `o`; ids use [a-zA-Z0-9_-]; a sensor with a unit or
/// state_class carries a number, so the quiet state (text) has neither; the
/// device's main entity has `name: null` and other names do not repeat the
/// device name; `expire_after` only on state that is not retained.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/topics.hpp"

namespace lull {

struct discovery_options {
  std::string prefix = "homeassistant";
  std::string lull_version = "0.1.0";
  std::string own_instance;       ///< this lulld's availability instance
  double snapshot_interval_sec = 2;
  /// This lulld runs the scheduler: its own device gets a queue-depth sensor
  /// from scheduler/status.
  bool with_queue = false;
};

struct discovery_message {
  std::string topic;
  nlohmann::json payload;
};

/// Which topic (relative to the host) a component's template reads.
enum class discovery_source { snapshot, quiet };

/// The device config for `host_id`. The host's own agent publishes its
/// snapshot with availability `lull/<host_id>/availability`; when another
/// lulld assesses it, both must be online (availability_mode all).
discovery_message build_discovery(const std::string& host_id, const topic_names& topics,
                                  const discovery_options& opts);

/// The empty retained payload that removes a host's device.
discovery_message discovery_removal(const std::string& host_id, const discovery_options& opts);

/// `<prefix>/status`, where Home Assistant says `online` after it starts.
std::string ha_status_topic(const discovery_options& opts);

/// "value_json.cpu.total_pct" paths inside a template, for tests and checks.
std::vector<std::string> template_paths(const std::string& value_template);

} // namespace lull
