#include "src/config.hpp"

#include "messages/page.hpp"
#include "messages/topics.hpp"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <sstream>

#include <CLI/CLI.hpp>

#include "src/lease/windows.hpp"
#include <toml.hpp>

extern char** environ;

namespace lull {

namespace {

using setter = std::function<std::optional<std::string>(config&, const std::string&)>;

struct key_def {
  config_key key;
  setter set; ///< returns what was expected when the value is bad
};

setter string_field(std::string config::*field) {
  return [field](config& c, const std::string& v) -> std::optional<std::string> {
    c.*field = v;
    return std::nullopt;
  };
}

setter id_field(std::string config::*field) {
  return [field](config& c, const std::string& v) -> std::optional<std::string> {
    for (char ch : v)
      if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-'))
        return "1-64 characters from [a-zA-Z0-9_-]";
    if (v.empty() || v.size() > 64)
      return "1-64 characters from [a-zA-Z0-9_-]";
    c.*field = v;
    return std::nullopt;
  };
}

setter duration_field(double config::*field, double min_sec, double max_sec) {
  return [=](config& c, const std::string& v) -> std::optional<std::string> {
    auto d = parse_duration_sec(v);
    std::ostringstream expected;
    expected << "a duration between " << min_sec << "s and " << max_sec
             << "s such as 2s, 500ms or 1m";
    if (!d || !(*d >= min_sec && *d <= max_sec)) // NaN fails both comparisons
      return expected.str();
    c.*field = *d;
    return std::nullopt;
  };
}

setter int_field(int config::*field, int lo, int hi) {
  return [=](config& c, const std::string& v) -> std::optional<std::string> {
    char* end = nullptr;
    long x = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || x < lo || x > hi)
      return "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
    c.*field = static_cast<int>(x);
    return std::nullopt;
  };
}

/// A size in bytes: 65536, or with a binary suffix (64KiB, 64MiB, 1GiB; K,
/// M and G are read the same).
setter bytes_field(std::int64_t config::*field, std::int64_t lo, std::int64_t hi) {
  return [=](config& c, const std::string& v) -> std::optional<std::string> {
    auto expected = "a size in bytes from " + std::to_string(lo) + " to " + std::to_string(hi)
                    + " such as 65536, 64MiB or 1GiB";
    char* end = nullptr;
    errno = 0;
    long long x = std::strtoll(v.c_str(), &end, 10);
    if (v.empty() || end == v.c_str() || errno != 0 || x < 0)
      return expected;
    std::string unit = end;
    for (auto& ch : unit)
      ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    long long scale = 1;
    if (unit == "k" || unit == "kib")
      scale = 1LL << 10;
    else if (unit == "m" || unit == "mib")
      scale = 1LL << 20;
    else if (unit == "g" || unit == "gib")
      scale = 1LL << 30;
    else if (!unit.empty() && unit != "b")
      return expected;
    if (x > hi / scale || x * scale < lo)
      return expected;
    c.*field = x * scale;
    return std::nullopt;
  };
}

setter number_field(double config::*field, double lo, double hi) {
  return [=](config& c, const std::string& v) -> std::optional<std::string> {
    char* end = nullptr;
    double x = std::strtod(v.c_str(), &end);
    if (v.empty() || *end != '\0' || !(x >= lo && x <= hi)) {
      std::ostringstream expected;
      expected << "a number from " << lo << " to " << hi;
      return expected.str();
    }
    c.*field = x;
    return std::nullopt;
  };
}

setter bool_field(bool config::*field) {
  return [=](config& c, const std::string& v) -> std::optional<std::string> {
    if (v == "true" || v == "1" || v == "yes" || v == "on")
      c.*field = true;
    else if (v == "false" || v == "0" || v == "no" || v == "off")
      c.*field = false;
    else
      return "true or false";
    return std::nullopt;
  };
}

/// "a, b" or a TOML array ["a", "b"] -> {"a", "b"}.
std::vector<std::string> split_list(std::string v) {
  std::vector<std::string> out;
  for (auto& ch : v)
    if (ch == '[' || ch == ']' || ch == '"' || ch == '\'')
      ch = ' ';
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ',')) {
    auto b = item.find_first_not_of(" \t\n");
    auto e = item.find_last_not_of(" \t\n");
    if (b != std::string::npos)
      out.push_back(item.substr(b, e - b + 1));
  }
  return out;
}

setter list_field(std::vector<std::string> config::*field) {
  return [=](config& c, const std::string& v) -> std::optional<std::string> {
    c.*field = split_list(v);
    return std::nullopt;
  };
}

/// "floor,quiet,busy,panic": four numbers that rise (or, when `falling`, fall).
setter thresholds_field(std::array<double, 4> config::*field, bool falling) {
  return [=](config& c, const std::string& v) -> std::optional<std::string> {
    auto parts = split_list(v);
    const char* expected = falling ? "four falling numbers floor,quiet,busy,panic such as 50,20,10,3"
                                   : "four rising numbers floor,quiet,busy,panic such as 0,30,75,95";
    if (parts.size() != 4)
      return std::string(expected);
    std::array<double, 4> t{};
    for (size_t i = 0; i < 4; ++i) {
      char* end = nullptr;
      t[i] = std::strtod(parts[i].c_str(), &end);
      if (parts[i].empty() || *end != '\0' || !std::isfinite(t[i]))
        return std::string(expected);
    }
    for (size_t i = 1; i < 4; ++i)
      if (falling ? !(t[i] < t[i - 1]) : !(t[i] > t[i - 1]))
        return std::string(expected);
    c.*field = t;
    return std::nullopt;
  };
}

const std::vector<key_def>& key_defs() {
  static const std::vector<key_def> defs = {
    {{"broker", "LULL_BROKER", "--broker",
      "MQTT broker URI (tcp://host:1883, ssl://host:8883); empty starts a local Mosquitto"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       if (!v.empty() && v.rfind("tcp://", 0) != 0 && v.rfind("mqtt://", 0) != 0
           && v.rfind("ssl://", 0) != 0 && v.rfind("mqtts://", 0) != 0
           && v.rfind("ws://", 0) != 0 && v.rfind("wss://", 0) != 0)
         return "a URI starting with tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://";
       c.broker = v;
       return std::nullopt;
     }},
    {{"host_id", "LULL_HOST_ID", "--host-id", "this host's id in topics (default: hostname)"},
     id_field(&config::host_id)},
    {{"db", "LULL_DB", "--db", "SQLite database file (default: <data_dir>/lull.db)"},
     string_field(&config::db)},
    {{"data_dir", "LULL_DATA_DIR", "--data-dir", "directory for lull's state"},
     string_field(&config::data_dir)},
    {{"topic_prefix", "LULL_TOPIC_PREFIX", "--topic-prefix", "prefix prepended to every topic"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       if (v.find_first_of("+#") != std::string::npos || (!v.empty() && v.front() == '/'))
         return "a topic prefix without '+', '#' or a leading '/'";
       c.topic_prefix = v;
       return std::nullopt;
     }},
    {{"client_id", "LULL_CLIENT_ID", "--client-id", "MQTT client id (default: lulld-<host_id>; with broker.secure an unguessable "
      "lulld-<host_id>-<random> kept in data_dir)"},
     string_field(&config::client_id)},
    {{"username", "LULL_USERNAME", "--username", "MQTT user name"},
     string_field(&config::username)},
    {{"password", "LULL_PASSWORD", "--password", "MQTT password (prefer the env or file)"},
     string_field(&config::password)},
    {{"interval", "LULL_INTERVAL", "--interval", "host sampling interval (default 2s)"},
     duration_field(&config::interval_sec, 0.1, 3600)},
    {{"proc_root", "LULL_PROC_ROOT", "--proc-root", "root of /proc and /sys (default /)"},
     string_field(&config::proc_root)},
    {{"broker_config_dir", "LULL_BROKER_CONFIG_DIR", "--broker-config-dir",
      "directory holding local.conf for the broker lulld starts itself"},
     string_field(&config::broker_config_dir)},
    {{"local_broker_port", "LULL_LOCAL_BROKER_PORT", "--local-broker-port",
      "port for the local broker (default 1883; 0 picks a free one)"},
     int_field(&config::local_broker_port, 0, 65535)},
    {{"broker.secure", "LULL_BROKER_SECURE", "--broker-secure",
      "the broker pins identities with an ACL (broker-config/secure.conf): take a worker's "
      "id from its topic scheduler/<worker>/lease/..., reply only under workers/<worker>/"},
     bool_field(&config::broker_secure)},
    {{"broker.ca_file", "LULL_BROKER_CA_FILE", "--broker-ca-file",
      "TLS (ssl:// brokers): the CA certificate that signed the broker's (default: the "
      "system's trust store)"},
     string_field(&config::broker_ca_file)},
    {{"broker.cert_file", "LULL_BROKER_CERT_FILE", "--broker-cert-file",
      "TLS: lulld's client certificate, for brokers that take the user from it"},
     string_field(&config::broker_cert_file)},
    {{"broker.key_file", "LULL_BROKER_KEY_FILE", "--broker-key-file",
      "TLS: the private key of broker.cert_file"},
     string_field(&config::broker_key_file)},
    {{"mqtt_version", "LULL_MQTT_VERSION", "--mqtt-version",
      "MQTT protocol version: auto (v5, falling back to v3.1.1 when the broker refuses "
      "or drops v5, as RabbitMQ does), 5, or 3.1.1"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       if (v != "auto" && v != "5" && v != "3.1.1")
         return "auto, 5 or 3.1.1";
       c.mqtt_version = v;
       return std::nullopt;
     }},
    {{"broker.admin_user", "LULL_BROKER_ADMIN_USER", "--broker-admin-user",
      "secure mode: the broker user who may read and cancel every job (default lull-admin)"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       if (!valid_id(v))
         return "a user name of 1-64 characters from [a-zA-Z0-9_-]";
       c.broker_admin_user = v;
       return std::nullopt;
     }},
    {{"broker.max_packet_size", "LULL_BROKER_MAX_PACKET_SIZE", "--broker-max-packet-size",
      "largest MQTT packet lulld accepts, announced in its MQTT v5 CONNECT so the broker "
      "drops bigger ones instead of sending them (bytes, default 262144)"},
     int_field(&config::broker_max_packet_size, 1024, 268435455)},
    {{"lease.ttl", "LULL_LEASE_TTL", "--lease-ttl", "default lease heartbeat TTL (30s)"},
     duration_field(&config::lease_ttl_sec, 1, 86400)},
    {{"lease.min_ttl", "LULL_LEASE_MIN_TTL", "--lease-min-ttl",
      "smallest TTL a worker may ask for (5s)"},
     duration_field(&config::lease_min_ttl_sec, 0.1, 86400)},
    {{"lease.max_ttl", "LULL_LEASE_MAX_TTL", "--lease-max-ttl",
      "largest TTL a worker may ask for (10m)"},
     duration_field(&config::lease_max_ttl_sec, 1, 7 * 86400)},
    {{"lease.lock_delay", "LULL_LEASE_LOCK_DELAY", "--lease-lock-delay",
      "how long an expired or revoked lease's units stay reserved (15s)"},
     duration_field(&config::lease_lock_delay_sec, 0, 3600)},
    {{"lease.will_grace", "LULL_LEASE_WILL_GRACE", "--lease-will-grace",
      "a worker's last will ends its leases this long after it arrives, unless the worker is "
      "heard from or lulld loses the broker first (2s; 0: at once)"},
     duration_field(&config::lease_will_grace_sec, 0, 600)},
    {{"lease.panic_cooldown", "LULL_LEASE_PANIC_COOLDOWN", "--lease-panic-cooldown",
      "hard deny this long after a PANIC (2m)"},
     duration_field(&config::lease_panic_cooldown_sec, 0, 86400)},
    {{"lease.busy_retry", "LULL_LEASE_BUSY_RETRY", "--lease-busy-retry",
      "retry hint while a host is not QUIET (15s)"},
     duration_field(&config::lease_busy_retry_sec, 1, 3600)},
    {{"lease.capacity_units", "LULL_LEASE_CAPACITY_UNITS", "--lease-capacity-units",
      "units each host can lease (0: CPU count x units_per_cpu x (1 - headroom))"},
     int_field(&config::lease_capacity_units, 0, 1000000)},
    {{"lease.units_per_cpu", "LULL_LEASE_UNITS_PER_CPU", "--lease-units-per-cpu",
      "capacity units per CPU (25)"},
     int_field(&config::lease_units_per_cpu, 1, 10000)},
    {{"lease.headroom", "LULL_LEASE_HEADROOM", "--lease-headroom",
      "share of each host kept for the rest of the system (0.2)"},
     number_field(&config::lease_headroom, 0, 0.95)},
    {{"lease.max_global", "LULL_LEASE_MAX_GLOBAL", "--lease-max-global",
      "most active leases in total (32)"},
     int_field(&config::lease_max_global, 1, 1000000)},
    {{"lease.max_per_worker", "LULL_LEASE_MAX_PER_WORKER", "--lease-max-per-worker",
      "most active leases per worker (4)"},
     int_field(&config::lease_max_per_worker, 1, 1000000)},
    {{"lease.grant_rate", "LULL_LEASE_GRANT_RATE", "--lease-grant-rate",
      "grants per second the token bucket refills (20)"},
     number_field(&config::lease_grant_rate, 0.001, 1e9)},
    {{"lease.grant_burst", "LULL_LEASE_GRANT_BURST", "--lease-grant-burst",
      "grants the token bucket holds (40)"},
     number_field(&config::lease_grant_burst, 1, 1e9)},
    {{"lease.worker_rate", "LULL_LEASE_WORKER_RATE", "--lease-worker-rate",
      "lease messages per second one worker may send before RequestThrottled (50)"},
     number_field(&config::lease_worker_rate, 0.01, 1e9)},
    {{"lease.worker_burst", "LULL_LEASE_WORKER_BURST", "--lease-worker-burst",
      "lease messages one worker may send at once (100)"},
     number_field(&config::lease_worker_burst, 1, 1e9)},
    {{"lease.suspend_after", "LULL_LEASE_SUSPEND_AFTER", "--lease-suspend-after",
      "a host BUSY (or PANIC) this long has its leases below HIGH suspended (10s)"},
     duration_field(&config::lease_suspend_after_sec, 0, 86400)},
    {{"lease.resume_after", "LULL_LEASE_RESUME_AFTER", "--lease-resume-after",
      "a host QUIET again this long has its suspended leases resumed (1m)"},
     duration_field(&config::lease_resume_after_sec, 0, 86400)},
    {{"lease.preempt_after", "LULL_LEASE_PREEMPT_AFTER", "--lease-preempt-after",
      "a lease suspended this long is revoked; a queued job goes back to the queue (15m)"},
     duration_field(&config::lease_preempt_after_sec, 1, 7 * 86400)},
    {{"lease.windows", "LULL_LEASE_WINDOWS", "--lease-windows",
      "when hosts take work below HIGH, in lease.timezone: 'Mon-Fri 22:00-07:00, Sat-Sun' "
      "for every host, or 'pi-a: Mon-Fri 22:00-07:00; laptop: 00:00-08:00' (default: always)"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       auto parsed = parse_lease_windows(v, "UTC");
       if (auto* e = std::get_if<std::string>(&parsed))
         return *e;
       c.lease_windows = v;
       return std::nullopt;
     }},
    {{"lease.timezone", "LULL_LEASE_TIMEZONE", "--lease-timezone",
      "time zone of lease.windows: an IANA name such as Europe/Berlin, or local (default)"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       std::string why;
       if (!find_time_zone(v, &why))
         return why;
       c.lease_timezone = v;
       return std::nullopt;
     }},
    {{"lease.max_retry_hint", "LULL_LEASE_MAX_RETRY_HINT", "--lease-max-retry-hint",
      "the longest retry_after_sec a denial gives, whatever a pause, window or learned map "
      "from the bus names (default 1h)"},
     duration_field(&config::lease_max_retry_hint_sec, 1, 7 * 86400)},
    {{"lease.high_users", "LULL_LEASE_HIGH_USERS", "--lease-high-users",
      "secure mode: the users who may ask for HIGH leases and submit HIGH jobs, "
      "comma-separated (default lull-admin; others get PermissionDenied)"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       auto users = split_list(v);
       for (auto& u : users)
         if (!valid_id(u))
           return "user names of 1-64 characters from [a-zA-Z0-9_-], comma-separated";
       c.lease_high_users = users;
       return std::nullopt;
     }},
    {{"persist.flush_interval", "LULL_PERSIST_FLUSH_INTERVAL", "--persist-flush-interval",
      "how often samples are written, in one transaction (default 5s)"},
     duration_field(&config::flush_interval_sec, 0.1, 600)},
    {{"persist.queue_bound", "LULL_PERSIST_QUEUE_BOUND", "--persist-queue-bound",
      "samples held in memory while the disk fails; the oldest go first (default 200000)"},
     int_field(&config::persist_queue_bound, 1000, 10000000)},
    {{"limits.max_workers", "LULL_LIMITS_MAX_WORKERS", "--limits-max-workers",
      "workers the lease table tracks; the longest-idle are forgotten (default 10000)"},
     int_field(&config::limits_max_workers, 10, 10000000)},
    {{"limits.max_hosts", "LULL_LIMITS_MAX_HOSTS", "--limits-max-hosts",
      "hosts assessed, leased on and announced to Home Assistant (default 256)"},
     int_field(&config::limits_max_hosts, 1, 100000)},
    {{"limits.max_parked", "LULL_LIMITS_MAX_PARKED", "--limits-max-parked",
      "scheduler/job/next requests waiting at once (default 1000)"},
     int_field(&config::limits_max_parked, 1, 1000000)},
    {{"limits.max_payload", "LULL_LIMITS_MAX_PAYLOAD", "--limits-max-payload",
      "largest inbound payload in bytes, dropped before decoding (default 1048576)"},
     int_field(&config::limits_max_payload, 1024, 268435456)},
    {{"limits.max_reply_bytes", "LULL_LIMITS_MAX_REPLY_BYTES", "--limits-max-reply-bytes",
      "largest reply in bytes: job lists and history queries are paged to fit it (default "
      "262144)"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       auto bad = int_field(&config::limits_max_reply_bytes, static_cast<int>(min_max_reply_bytes),
                            static_cast<int>(max_max_reply_bytes))(c, v);
       if (bad)
         return *bad + " (bytes; at most 900000 leaves room for a reply's topic and properties "
                       "under the broker's message_size_limit 1000000, and below 4096 a page "
                       "holds too little)";
       return std::nullopt;
     }},
    {{"limits.host_forget_after", "LULL_LIMITS_HOST_FORGET_AFTER", "--limits-host-forget-after",
      "a host whose agent is silent this long is forgotten, its retained assessment and Home "
      "Assistant device cleared (default 1d)"},
     duration_field(&config::limits_host_forget_after_sec, 10, 400 * 86400.0)},
    {{"limits.max_series_per_worker", "LULL_LIMITS_MAX_SERIES_PER_WORKER",
      "--limits-max-series-per-worker",
      "distinct series one source (a worker's status, a host's snapshot, a process) may have "
      "stored; a new name past it is refused and counted (default 256)"},
     int_field(&config::limits_max_series_per_worker, 1, 100000)},
    {{"limits.max_series", "LULL_LIMITS_MAX_SERIES", "--limits-max-series",
      "distinct series of all sources together; a new name past it is refused and counted "
      "(default 20000)"},
     int_field(&config::limits_max_series, 100, 10000000)},
    {{"queue.max_jobs_per_producer", "LULL_QUEUE_MAX_JOBS_PER_PRODUCER",
      "--queue-max-jobs-per-producer",
      "jobs one producer may have waiting or running; more get RequestThrottled (default "
      "10000)"},
     int_field(&config::queue_max_jobs_per_producer, 1, 1000000)},
    {{"queue.max_bytes_per_producer", "LULL_QUEUE_MAX_BYTES_PER_PRODUCER",
      "--queue-max-bytes-per-producer",
      "payload bytes one producer's jobs waiting or running may hold; more get "
      "RequestThrottled (default 64MiB)"},
     bytes_field(&config::queue_max_bytes_per_producer, 65536, 64LL << 30)},
    {{"queue.max_bytes", "LULL_QUEUE_MAX_BYTES", "--queue-max-bytes",
      "payload bytes all jobs waiting or running may hold (default 256MiB; at most 100000 "
      "jobs in all)"},
     bytes_field(&config::queue_max_bytes, 65536, 64LL << 30)},
    {{"retention.raw", "LULL_RETENTION_RAW", "--retention-raw",
      "how long raw samples are kept (default 7d)"},
     duration_field(&config::raw_retention_sec, 3600, 400 * 86400.0)},
    {{"retention.rollup_5m", "LULL_RETENTION_ROLLUP_5M", "--retention-rollup-5m",
      "how long 5-minute rollups are kept (default 30d; hourly ones are kept for good)"},
     duration_field(&config::rollup_retention_sec, 86400, 4000 * 86400.0)},
    {{"retention.quiet_streaks", "LULL_RETENTION_QUIET_STREAKS", "--retention-quiet-streaks",
      "how long closed quiet streaks are kept (default 364d: the 52 weeks a windows query may "
      "ask for)"},
     duration_field(&config::quiet_streaks_retention_sec, 7 * 86400, 4000 * 86400.0)},
    {{"retention.interval", "LULL_RETENTION_INTERVAL", "--retention-interval",
      "how often what retention lets go is purged, in steps (default 1h; the first a "
      "minute after start, or sooner if this is shorter)"},
     duration_field(&config::retention_interval_sec, 1, 86400)},
    {{"log_level", "LULL_LOG_LEVEL", "--log-level", "trace, debug, info, warn, error"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       if (v != "trace" && v != "debug" && v != "info" && v != "warn" && v != "error"
           && v != "off")
         return "one of trace, debug, info, warn, error, off";
       c.log_level = v;
       return std::nullopt;
     }},
    {{"shutdown_timeout", "LULL_SHUTDOWN_TIMEOUT", "--shutdown-timeout",
      "SIGTERM to exit at most: lulld then exits anyway, having written every acknowledged "
      "job and lease (default 2s)"},
     duration_field(&config::shutdown_timeout_sec, 0.5, 300)},
    // -- roles, collectors, quiet assessor, Home Assistant ---------------------
    {{"roles", "LULL_ROLES", "--roles",
      "which actors run: all, or a comma list of collectors (host, process, workers, bus), "
      "assessor (quiet assessor, Home Assistant discovery), scheduler (leases, queue, "
      "persister)"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       auto items = split_list(v);
       std::string norm;
       for (auto& r : items) {
         if (r != "all" && r != "collectors" && r != "assessor" && r != "scheduler")
           return "all, or a comma list of collectors, assessor, scheduler";
         norm += (norm.empty() ? "" : ",") + r;
       }
       if (items.empty())
         return "all, or a comma list of collectors, assessor, scheduler";
       bool all = std::find(items.begin(), items.end(), "all") != items.end();
       c.roles = all ? "all" : norm;
       return std::nullopt;
     }},
    {{"collectors.process_interval", "LULL_COLLECTORS_PROCESS_INTERVAL",
      "--collectors-process-interval", "process sampling interval (default 2s)"},
     duration_field(&config::process_interval_sec, 0.1, 3600)},
    {{"collectors.processes", "LULL_COLLECTORS_PROCESSES", "--collectors-processes",
      "processes to watch besides lulld: names or pid files, comma-separated"},
     list_field(&config::processes)},
    {{"collectors.worker_interval", "LULL_COLLECTORS_WORKER_INTERVAL",
      "--collectors-worker-interval", "worker health sweep and registry summary (default 30s)"},
     duration_field(&config::worker_interval_sec, 1, 3600)},
    {{"collectors.worker_stale_after", "LULL_COLLECTORS_WORKER_STALE_AFTER",
      "--collectors-worker-stale-after", "a worker silent this long is stale (default 90s)"},
     duration_field(&config::worker_stale_after_sec, 1, 86400)},
    {{"collectors.bus_interval", "LULL_COLLECTORS_BUS_INTERVAL", "--collectors-bus-interval",
      "bus stats interval (default 5s)"},
     duration_field(&config::bus_interval_sec, 0.5, 3600)},
    {{"collectors.dir_interval", "LULL_COLLECTORS_DIR_INTERVAL", "--collectors-dir-interval",
      "directory size walks at most this often (default 120s)"},
     duration_field(&config::dir_interval_sec, 1, 86400)},
    {{"collectors.dirs", "LULL_COLLECTORS_DIRS", "--collectors-dirs",
      "directories to size, comma-separated (default: the data dir)"},
     list_field(&config::dirs)},
    {{"collectors.mounts", "LULL_COLLECTORS_MOUNTS", "--collectors-mounts",
      "mounts whose usage is reported, comma-separated (default: / and the data dir)"},
     list_field(&config::mounts)},
    {{"collectors.jitter", "LULL_COLLECTORS_JITTER", "--collectors-jitter",
      "random +/- fraction of every collector interval (default 0.1)"},
     number_field(&config::collector_jitter, 0, 0.5)},
    {{"collectors.timeout", "LULL_COLLECTORS_TIMEOUT", "--collectors-timeout",
      "a collector run longer than this is reported as an overrun (default 1s)"},
     duration_field(&config::collector_timeout_sec, 0.01, 600)},
    {{"collectors.window", "LULL_COLLECTORS_WINDOW", "--collectors-window",
      "rolling in-memory window per series (default 1h)"},
     duration_field(&config::window_sec, 60, 86400)},
    {{"quiet.cpu", "LULL_QUIET_CPU", "--quiet-cpu",
      "other processes' CPU (average over quiet.cpu_window), % of all cores: "
      "floor,quiet,busy,panic (default 0,30,75,95)"},
     thresholds_field(&config::quiet_cpu, false)},
    {{"quiet.mem", "LULL_QUIET_MEM", "--quiet-mem",
      "memory used, %: floor,quiet,busy,panic (default 40,70,85,95)"},
     thresholds_field(&config::quiet_mem, false)},
    {{"quiet.disk_free", "LULL_QUIET_DISK_FREE", "--quiet-disk-free",
      "disk free, % (falling): floor,quiet,busy,panic (default 50,20,10,3)"},
     thresholds_field(&config::quiet_disk_free, true)},
    {{"quiet.swap", "LULL_QUIET_SWAP", "--quiet-swap",
      "swap used, %: floor,quiet,busy,panic (default 5,25,50,90)"},
     thresholds_field(&config::quiet_swap, false)},
    {{"quiet.temp", "LULL_QUIET_TEMP", "--quiet-temp",
      "CPU temperature, C: floor,quiet,busy,panic (default 45,65,75,85; a Pi 4 soft-limits at "
      "80)"},
     thresholds_field(&config::quiet_temp, false)},
    {{"quiet.bus_rps", "LULL_QUIET_BUS_RPS", "--quiet-bus-rps",
      "bus messages/s: floor,quiet,busy,panic (default 0,50,300,2000)"},
     thresholds_field(&config::quiet_bus_rps, false)},
    {{"quiet.bus_p95_ms", "LULL_QUIET_BUS_P95_MS", "--quiet-bus-p95-ms",
      "bus p95 latency, ms: floor,quiet,busy,panic (default 0,50,250,2000)"},
     thresholds_field(&config::quiet_bus_p95_ms, false)},
    {{"quiet.cooldown", "LULL_QUIET_COOLDOWN", "--quiet-cooldown",
      "after a PANIC the host cannot be QUIET for this long (default 2m)"},
     duration_field(&config::quiet_cooldown_sec, 0, 86400)},
    {{"quiet.hysteresis", "LULL_QUIET_HYSTERESIS", "--quiet-hysteresis",
      "score points past a state's edge needed to enter or leave it (default 5)"},
     number_field(&config::quiet_hysteresis, 0, 25)},
    {{"quiet.stale_after", "LULL_QUIET_STALE_AFTER", "--quiet-stale-after",
      "a host without a snapshot this long is assessed BUSY (default 30s)"},
     duration_field(&config::quiet_stale_after_sec, 1, 86400)},
    {{"quiet.cpu_window", "LULL_QUIET_CPU_WINDOW", "--quiet-cpu-window",
      "CPU is averaged over this window (default 2m; 5s - 1h)"},
     duration_field(&config::quiet_cpu_window_sec, 5, 3600)},
    {{"quiet.bus_inputs", "LULL_QUIET_BUS_INPUTS", "--quiet-bus-inputs",
      "score lull's own bus traffic (stats/bus) as host load (default false)"},
     bool_field(&config::quiet_bus_inputs)},
    {{"ha.enabled", "LULL_HA_ENABLED", "--ha-enabled",
      "publish Home Assistant MQTT discovery (default true)"},
     bool_field(&config::ha_enabled)},
    {{"ha.prefix", "LULL_HA_PREFIX", "--ha-prefix",
      "Home Assistant discovery prefix (default homeassistant)"},
     [](config& c, const std::string& v) -> std::optional<std::string> {
       if (v.empty() || v.find_first_of("+#") != std::string::npos || v.front() == '/'
           || v.back() == '/')
         return "a topic without '+', '#' or a leading or trailing '/'";
       c.ha_prefix = v;
       return std::nullopt;
     }},
  };
  return defs;
}

std::string toml_to_string(const toml::value& v) {
  if (v.is_string())
    return v.as_string().str;
  if (v.is_integer())
    return std::to_string(v.as_integer());
  if (v.is_floating()) {
    std::ostringstream os;
    os << v.as_floating();
    return os.str();
  }
  if (v.is_boolean())
    return v.as_boolean() ? "true" : "false";
  return toml::format(v);
}

/// Flattens a TOML table to dotted keys: [lease] ttl = 30 -> "lease.ttl".
void flatten(const toml::value& table, const std::string& prefix,
             std::vector<std::pair<std::string, toml::value>>& out) {
  for (auto& [k, v] : table.as_table()) {
    auto name = prefix.empty() ? k : prefix + "." + k;
    if (v.is_table())
      flatten(v, name, out);
    else
      out.emplace_back(name, v);
  }
}

std::string default_host_id() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0')
    return "localhost";
  std::string out;
  for (char* p = buf; *p != '\0' && out.size() < 64; ++p) {
    if (*p == '.')
      break;
    out += (std::isalnum(static_cast<unsigned char>(*p)) || *p == '_' || *p == '-') ? *p : '_';
  }
  return out.empty() ? "localhost" : out;
}

std::string default_data_dir(const std::map<std::string, std::string>& env) {
  // systemd's StateDirectory= (lulld.service) names it, with or without root.
  if (auto* state = std::getenv("STATE_DIRECTORY"); state != nullptr && *state != '\0') {
    std::string first(state);
    return first.substr(0, first.find(':'));
  }
  if (::geteuid() == 0)
    return "/var/lib/lull";
  if (auto* xdg = std::getenv("XDG_STATE_HOME"); xdg != nullptr && *xdg != '\0')
    return std::string(xdg) + "/lull";
  if (auto* home = std::getenv("HOME"); home != nullptr && *home != '\0')
    return std::string(home) + "/.local/state/lull";
  return ".lull";
}

} // namespace

const std::vector<config_key>& config_keys() {
  static const std::vector<config_key> keys = [] {
    std::vector<config_key> out;
    for (auto& d : key_defs())
      out.push_back(d.key);
    return out;
  }();
  return keys;
}

std::map<std::string, std::string> lull_environment() {
  std::map<std::string, std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv(*e);
    if (kv.rfind("LULL_", 0) != 0)
      continue;
    auto eq = kv.find('=');
    if (eq != std::string::npos)
      out.emplace(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return out;
}

std::variant<config, config_error> load_config(int argc, const char* const* argv,
                                               const std::map<std::string, std::string>& env) {
  // 1. Flags, parsed first but applied last.
  CLI::App app{"lulld: watches this host, scores how quiet it is, and leases heavy work "
               "over MQTT"};
  app.set_version_flag("--version", "lulld 0.1.0");
  std::map<std::string, std::string> flag_values;
  std::string config_flag;
  app.add_option("--config", config_flag, "TOML config file (env LULL_CONFIG)");
  for (auto& d : key_defs()) {
    auto* opt = app.add_option_function<std::string>(
      d.key.flag, [&flag_values, name = d.key.name](const std::string& v) {
        flag_values[name] = v;
      },
      d.key.help + " (env " + d.key.env + ", file key " + d.key.name + ")");
    opt->type_name("VALUE");
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return config_error{0, app.help()};
  } catch (const CLI::CallForVersion&) {
    return config_error{0, "lulld 0.1.0"};
  } catch (const CLI::ParseError& e) {
    return config_error{2, std::string("lulld: ") + e.what() + "\nRun with --help for usage."};
  }

  config c;
  auto apply = [&](const key_def& d, const std::string& value,
                   const std::string& source) -> std::optional<config_error> {
    if (auto expected = d.set(c, value))
      return config_error{2, "lulld: bad value for " + d.key.name + " (from " + source
                               + "): got '" + value + "', expected " + *expected};
    return std::nullopt;
  };

  // 2. The file.
  c.config_file = !config_flag.empty() ? config_flag
                  : env.count("LULL_CONFIG") ? env.at("LULL_CONFIG")
                                             : std::string{};
  if (!c.config_file.empty()) {
    toml::value root;
    try {
      root = toml::parse(c.config_file);
    } catch (const std::exception& e) {
      return config_error{2, "lulld: cannot read config file " + c.config_file + ": "
                               + e.what()};
    }
    std::vector<std::pair<std::string, toml::value>> entries;
    flatten(root, "", entries);
    for (auto& entry : entries) {
      const auto& name = entry.first; // a plain reference: lambdas cannot capture bindings
      const auto& value = entry.second;
      auto it = std::find_if(key_defs().begin(), key_defs().end(),
                             [&](auto& d) { return d.key.name == name; });
      if (it == key_defs().end())
        return config_error{2, "lulld: unknown key '" + name + "' in " + c.config_file};
      if (auto err = apply(*it, toml_to_string(value), "file " + c.config_file))
        return *err;
    }
  }
  // 3. The environment.
  for (auto& d : key_defs())
    if (auto it = env.find(d.key.env); it != env.end())
      if (auto err = apply(d, it->second, "env " + d.key.env))
        return *err;
  // 4. Flags.
  for (auto& d : key_defs())
    if (auto it = flag_values.find(d.key.name); it != flag_values.end())
      if (auto err = apply(d, it->second, "flag " + d.key.flag))
        return *err;

  // Derived defaults.
  if (c.host_id.empty())
    c.host_id = default_host_id();
  if (c.data_dir.empty())
    c.data_dir = default_data_dir(env);
  if (c.db.empty())
    c.db = c.data_dir + "/lull.db";
  // Secure mode leaves it empty: lulld then uses an unguessable id kept in
  // its data directory (lulld_main.cpp), so no user can take its session.
  if (c.client_id.empty() && !c.broker_secure)
    c.client_id = "lulld-" + c.host_id;
  if (c.mounts.empty()) {
    c.mounts = {"/"};
    if (c.data_dir != "/")
      c.mounts.push_back(c.data_dir);
  }
  if (c.dirs.empty())
    c.dirs = {c.data_dir};
  return c;
}

} // namespace lull
