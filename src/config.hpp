#pragma once
/// lulld's configuration: every key can come from a TOML file, a LULL_*
/// environment variable or a command-line flag (flag > env > file > default).
/// A bad value is reported with the key, its source and what was expected.

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "messages/lease.hpp"
#include "messages/util.hpp"
#include "src/ha/discovery.hpp"
#include "src/lease/lease_table.hpp"
#include "src/limits.hpp"
#include "src/mqtt/transport.hpp"
#include "src/queue/job_queue.hpp"
#include "src/quiet/quiet_assessor.hpp"
#include "src/security.hpp"
#include "src/stats/collector_settings.hpp"
#include "src/store/persist_settings.hpp"

namespace lull {

/// The broker connection as lulld makes it (broker.uri, client_id, username,
/// password, mqtt_version, broker.ca_file, broker.cert_file, broker.key_file,
/// broker.max_packet_size): transport_options' own defaults, but lulld
/// announces a Maximum Packet Size of 256 KiB.
inline transport_options lulld_transport_defaults() {
  transport_options t;
  t.max_packet_size = 256 * 1024;
  return t;
}

/// Every key binds to a member here (config.cpp, key_defs); a section a
/// component owns is that component's own settings struct, handed to it
/// whole, so each default is written once, as that struct's initializer.
struct config {
  /// The MQTT connection: uri (empty: lulld starts a local Mosquitto),
  /// client_id (defaults to lulld-<host_id>), user, TLS files, version.
  transport_options transport = lulld_transport_defaults();
  std::string host_id;           ///< defaults to the sanitized hostname
  std::string config_file;
  std::string data_dir;          ///< defaults to $LULL_DATA_DIR-less XDG state dir
  std::string db;                ///< defaults to <data_dir>/lull.db
  std::string topic_prefix;
  std::string broker_config_dir; ///< where local.conf lives
  int local_broker_port = 1883;  ///< port of the broker lulld starts itself; 0 = any free
  std::string log_level = "info";
  double shutdown_timeout_sec = 2; ///< SIGTERM to exit at most; lulld then exits anyway
  /// broker.secure, broker.admin_user, lease.high_users: identities from
  /// topics, replies only to workers' inboxes, who may do what.
  security_settings security;
  /// The lease policy (lease.* and limits.max_workers), as the lease table
  /// takes it; lease.windows is parsed into it with lease.timezone.
  lease_policy_config lease;
  std::string lease_windows;            ///< when hosts take work below HIGH ("": always)
  /// Writing samples and retention (persist.*, retention.*): the persister's.
  persist_settings persist;
  /// Bounds on what clients can make lulld hold (limits.*, docs/security.md).
  limits_settings limits;
  // the job queue's quotas (docs/queue.md, "Quotas")
  queue_config queue;

  // Roles: which actors this lulld runs. "all", or a comma list of
  // collectors (host, process, workers, bus), assessor (quiet assessor, Home
  // Assistant discovery) and scheduler (leases, queue, persister).
  std::string roles = "all";
  bool runs(const std::string& role) const {
    if (roles == "all")
      return true;
    auto at = roles.find(role);
    return at != std::string::npos && (at == 0 || roles[at - 1] == ',')
           && (at + role.size() == roles.size() || roles[at + role.size()] == ',');
  }
  bool runs_collectors() const { return runs("collectors"); }
  bool runs_assessor() const { return runs("assessor"); }
  bool runs_scheduler() const { return runs("scheduler"); }

  /// The collectors (interval, proc_root, collectors.*).
  collector_settings collect;

  // Quiet assessor thresholds: floor, quiet, busy, panic for each input.
  quiet_thresholds quiet;

  /// Home Assistant discovery (ha.*).
  ha_settings ha;

  /// Where each key's value came from, by key name: "file PATH:LINE",
  /// "env LULL_X" or "flag --x"; a key not here has its default.
  std::map<std::string, std::string> sources;
  std::vector<std::string> warnings; ///< old spellings read, for lulld to log once it starts
  /// --check-config / --print-config: lulld reports on its configuration and
  /// exits instead of running.
  enum class action_kind { run, check, print };
  action_kind action = action_kind::run;
};

/// What a config key is: its name in the file (dotted for TOML tables), the
/// environment variable, the flag, a short description for --help, and what
/// the man pages say of its values.
struct config_key {
  std::string name;
  std::string env;
  std::string flag;
  std::string help;
  std::string type;          ///< string, integer, number, boolean, duration, size, list, thresholds
  std::string expects;       ///< what a good value looks like
  std::string default_value;   ///< the default as TOML
  std::string default_derived; ///< how the default is worked out, when it is not fixed
  bool secret = false;         ///< --print-config shows "<set>", never the value
  bool internal = false;       ///< a tuning seam: in --help-all and the man pages, not --help
  std::string section;         ///< the part of the name before its dot; "" for general keys
  std::string old_flag;        ///< a short or older flag still read (--broker), or ""
  std::string old_env;         ///< likewise for the variable (LULL_BROKER), or ""
};

/// LULL_ and the key in upper case, dots as underscores: LULL_LEASE_TTL.
std::string config_env_name(const std::string& key);
/// -- and the key with dots and underscores as dashes: --lease-ttl.
std::string config_flag_name(const std::string& key);
/// The heading of a section of keys ("lease" -> "Lease policy (lease.*)").
std::string config_section_title(const std::string& section);
/// lulld --help: the options grouped by section, each with a placeholder for
/// its value and its default; `all` adds the internal tuning keys.
std::string lulld_help(bool all);

/// lulld's flags that are not keys (--config, --check-config, --print-config),
/// for --help and the man page.
struct action_flag {
  std::string flag;
  std::string value; ///< what the flag takes; empty for a switch
  std::string help;
};
const std::vector<action_flag>& lulld_action_flags();

/// Every key lulld knows, in the order of --help and lull.toml.
const std::vector<config_key>& config_keys();

/// What `lull` reads of lulld's configuration: the values of the keys both
/// use, and where each set one came from.
struct client_config {
  config values;                              ///< lulld's defaults where nothing was set
  std::map<std::string, std::string> sources; ///< key -> "file F", "env E" or a flag's name
  std::vector<std::string> warnings;          ///< old spellings read from the file
};

/// The keys `lull` shares with lulld: broker, username, password,
/// topic_prefix, mqtt_version, broker.secure, broker.ca_file,
/// broker.cert_file, broker.key_file, and data_dir (where a lulld that
/// started its own broker writes its URI).
const std::vector<std::string>& client_config_keys();

/// Those keys from `file` (none when empty), then `env` (LULL_* names as
/// lulld's), then `flags` (key -> value and the flag's name), each checked
/// as lulld checks it. The file's other keys are lulld's alone and are
/// skipped; a key neither knows is an error. An error names the file,
/// variable or flag, the key and what was expected.
std::variant<client_config, std::string>
load_client_config(const std::string& file, const std::map<std::string, std::string>& env,
                   const std::map<std::string, std::pair<std::string, std::string>>& flags);

struct config_error {
  int exit_code;       ///< 2 for a bad value or flag, 0 for --help/--version
  std::string message; ///< printed as is
};

/// The effective configuration as TOML that lulld reads back: every key
/// with its value and, in a comment, where the value came from (`default`,
/// `file PATH:LINE`, `env LULL_X`, `flag --x`). Secrets read "<set>".
std::string print_config(const config& c);

/// Builds the configuration from argv, an environment and the file named by
/// --config or LULL_CONFIG. Never throws.
std::variant<config, config_error> load_config(int argc, const char* const* argv,
                                               const std::map<std::string, std::string>& env);

/// The process environment as a map (LULL_* variables only).
std::map<std::string, std::string> lull_environment();

// parse_duration_sec(): messages/util.hpp.

} // namespace lull
