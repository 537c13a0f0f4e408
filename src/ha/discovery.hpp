#pragma once
/// Home Assistant MQTT discovery for a lull fleet: two kinds of device.
///
/// - One device per host (`<prefix>/device/lull_<host>/config`, retained),
///   published by each lulld that assesses hosts. Its components read the
///   host's JSON snapshot (`stats/host/<host>`) and its retained quiet
///   assessment (`stats/host/<host>/quiet`) through `value_template`s: what
///   the host is, available while the host's agent is (its
///   `lull/<host>/availability`); the quiet entities also need the lulld
///   that assesses it. One "Disk free <mount>" sensor per mount its snapshot
///   lists.
/// - One scheduler device for the fleet (`<prefix>/device/<scheduler
///   device id>/config`, retained), published by the lulld that runs the
///   scheduler, with that lulld's availability: everything read from the
///   scheduler's `scheduler/status` (queued jobs, database health, and an
///   "Allow heavy work on <host>" switch per host), so a dead scheduler
///   makes exactly these unavailable, once.
///
/// What Home Assistant's users learned (docs/collectors.md): discovery needs `dev`
/// and the origin `o`; ids use [a-zA-Z0-9_-]; a sensor with a unit or
/// state_class carries a number, so the quiet state (text) has neither; the
/// device's main entity has `name: null` and other names do not repeat the
/// device name; `expire_after` only on state that is not retained. A
/// component whose config is only its platform (`{"p": "sensor"}`) is
/// removed: host devices carry such a config for the fleet entities older
/// lulls put there, and for a mount that went away.

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "messages/topics.hpp"

namespace lull {

/// Home Assistant discovery as configured (ha.*).
struct ha_settings {
  bool enabled = true;                  ///< publish discovery at all
  std::string prefix = "homeassistant"; ///< the discovery topics' first level
};

struct discovery_options {
  ha_settings ha;
  std::string lull_version = "0.1.0";
  std::string own_instance;       ///< this lulld's availability instance
  double snapshot_interval_sec = 2;
  /// This lulld assesses hosts: it announces a device per host.
  bool hosts = true;
  /// This lulld runs the scheduler: it announces the scheduler device.
  bool scheduler = false;
  /// quiet.owner_idle: "Host in use" is ON while the owner's last input is
  /// more recent than this (0, the rule off: 5 minutes).
  double owner_idle_sec = 300;
};

/// How often a known host's snapshot is read again for its mounts: about
/// every tenth snapshot, between 5 s and a minute.
double mounts_check_sec(double snapshot_interval_sec);

struct discovery_message {
  std::string topic;
  nlohmann::json payload;
};

/// The longest mount name that gets a disk sensor (longer ones get none: a
/// device config stays small whatever an agent reports).
inline constexpr std::size_t max_discovery_mount_bytes = 128;

/// Whether `mount` gets a "Disk free" sensor: 1-128 bytes without control
/// characters, quotes, backslashes or braces (it is quoted inside a
/// template).
bool discoverable_mount(const std::string& mount);

/// The component id (and unique_id suffix) of `mount`'s disk sensor,
/// stable for a mount and distinct for distinct mounts: "disk" for "/"
/// (the id of lull's single disk sensor before, so that entity and its
/// history stay), "disk_home" for "/home"; a byte other than [a-zA-Z0-9/]
/// becomes "-" and two hex digits ("/mnt/usb-1" -> "disk_mnt_usb-2d1").
std::string disk_component_id(const std::string& mount);

/// The device config for `host_id`, with a disk sensor for each
/// discoverable mount in `mounts` (the disks of its latest snapshot, at
/// most 32), and removals for `gone_mounts` (mounts announced before and no
/// longer in its snapshot). Its availability is the host agent's
/// (`lull/<host>/availability`); its quiet entities, which the assessor
/// publishes, also need this lulld's when it assesses another host
/// (availability_mode all).
/// What a host's snapshot shows it can report beyond the usual: each gets
/// its entities (and loses them, removed, when it no longer does).
struct host_features {
  bool pressure = false; ///< pressure stall information: a "Pressure stall" sensor
  bool power = false;    ///< power supplies: "Battery" and "On AC power"
  /// login sessions seen (once seen, kept: a server's ssh sessions come and
  /// go): "Host in use"
  bool owner = false;
  /// GPUs by id (discoverable_gpu ones, at most 16): a "GPU <id>" sensor each.
  std::vector<std::string> gpus;
  /// Announced before and no longer reported: their entities are removed.
  bool pressure_gone = false, power_gone = false;
  std::vector<std::string> gpus_gone; ///< at most 16, the latest gone kept
  bool operator==(const host_features& o) const {
    return pressure == o.pressure && power == o.power && owner == o.owner && gpus == o.gpus;
  }
  bool operator!=(const host_features& o) const { return !(*this == o); }
  /// What this snapshot's features make of those announced `before`: the
  /// entities it no longer reports (or that were already being removed)
  /// are marked gone.
  void carry_gone(const host_features& before);
};

/// Whether a GPU id from a snapshot gets a sensor: 1-32 characters from
/// [a-zA-Z0-9_-] ("card0"); it is quoted inside a template.
bool discoverable_gpu(const std::string& id);

discovery_message build_discovery(const std::string& host_id,
                                  const std::vector<std::string>& mounts,
                                  const topic_names& topics, const discovery_options& opts,
                                  const std::vector<std::string>& gone_mounts = {},
                                  host_features features = {});

/// The empty retained payload that removes a host's device.
discovery_message discovery_removal(const std::string& host_id, const discovery_options& opts);

/// The scheduler device's object id: "lull-scheduler", with the topic prefix
/// when there is one ("lull-scheduler-home" for "home/"), so fleets sharing
/// a broker keep theirs apart. The hyphen keeps it apart from every host
/// device (`lull_<host>`).
std::string scheduler_device_id(const topic_names& topics);

/// The scheduler's device: "Queued jobs", "Database writes failing" and an
/// "Allow heavy work on <host>" switch per host in `hosts`, all read from
/// scheduler/status; removals for the switches of `gone_hosts`. Its
/// availability is this lulld's (opts.own_instance), the scheduler's.
discovery_message build_scheduler_discovery(const std::vector<std::string>& hosts,
                                            const topic_names& topics,
                                            const discovery_options& opts,
                                            const std::vector<std::string>& gone_hosts = {});

/// `<prefix>/status`, where Home Assistant says `online` after it starts.
std::string ha_status_topic(const discovery_options& opts);

/// "value_json.cpu.total_pct" paths inside a template, for tests and checks.
std::vector<std::string> template_paths(const std::string& value_template);

} // namespace lull
