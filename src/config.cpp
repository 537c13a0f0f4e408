#include "src/config.hpp"

#include "messages/page.hpp"
#include "messages/topics.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>

#include "src/lease/windows.hpp"
#include <toml.hpp>

extern char** environ;

namespace lull {

namespace {

using setter = std::function<std::optional<std::string>(config&, const std::string&)>;
using getter = std::function<std::string(const config&)>;

/// How a key reads and writes its member of `config`: `set` returns what was
/// expected when a value is bad, `get` renders the member as a TOML value
/// that `set` takes back (--print-config, the man pages' defaults).
struct field {
  field(std::string type_, std::string expects_, setter set_, getter get_)
    : type(std::move(type_)), expects(std::move(expects_)), set(std::move(set_)),
      get(std::move(get_)) {}

  std::string type;    ///< the kind of value, for the man pages
  std::string expects; ///< what a good value looks like
  setter set;
  getter get;
  std::string derived; ///< how the default is worked out, when it is not a fixed value
  bool secret = false; ///< --print-config does not show it

  field by_default(std::string how) && {
    derived = std::move(how);
    return std::move(*this);
  }
  field hidden() && {
    secret = true;
    return std::move(*this);
  }
};

struct key_text {
  std::string name, env, flag, help;
};

struct key_def {
  key_text key;
  field f;
};

/// A TOML basic string: quotes, backslashes and control characters escaped.
std::string toml_quote(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s) {
    switch (ch) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\b': out += "\\b"; break;
    case '\t': out += "\\t"; break;
    case '\n': out += "\\n"; break;
    case '\f': out += "\\f"; break;
    case '\r': out += "\\r"; break;
    default:
      if (ch < 0x20 || ch == 0x7f) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\u%04X", ch);
        out += buf;
      } else {
        out += static_cast<char>(ch);
      }
    }
  }
  return out + "\"";
}

/// The shortest text that reads back as the same double.
std::string number_text(double x) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, x);
  return ec == std::errc{} ? std::string(buf, end) : std::to_string(x);
}

/// A duration in the largest unit that holds it whole: 7d, 1h, 10m, 30s, 0.5s.
std::string duration_text(double sec) {
  for (auto [unit, scale] : {std::pair{"d", 86400.0}, {"h", 3600.0}, {"m", 60.0}})
    if (sec >= scale && std::fmod(sec, scale) == 0)
      return number_text(sec / scale) + unit;
  return number_text(sec) + "s";
}

/// A size in bytes: 64MiB, 1GiB, 65536.
std::string bytes_text(std::int64_t bytes) {
  for (auto [unit, shift] : {std::pair{"GiB", 30}, {"MiB", 20}, {"KiB", 10}})
    if (bytes > 0 && bytes % (std::int64_t{1} << shift) == 0)
      return toml_quote(std::to_string(bytes >> shift) + unit);
  return std::to_string(bytes);
}

field string_field(std::string config::*member) {
  return {"string", "any text",
          [member](config& c, const std::string& v) -> std::optional<std::string> {
            c.*member = v;
            return std::nullopt;
          },
          [member](const config& c) { return toml_quote(c.*member); }};
}

/// A file or directory, read as given (relative to lulld's working directory).
field path_field(std::string config::*member) {
  auto f = string_field(member);
  f.type = "path";
  f.expects = "a file or directory path";
  return f;
}

/// `f`, refusing values `check` finds fault with (it returns what was
/// expected, or nothing). `expects` describes good values.
field validated(field f, std::string expects,
                std::function<std::optional<std::string>(const std::string&)> check) {
  auto set = f.set;
  f.expects = std::move(expects);
  f.set = [set, check](config& c, const std::string& v) -> std::optional<std::string> {
    if (auto bad = check(v))
      return bad;
    return set(c, v);
  };
  return f;
}

/// `f`, refusing values for which `ok` is false with `expects`.
field checked(field f, const std::string& expects, std::function<bool(const std::string&)> ok) {
  return validated(std::move(f), expects,
                   [expects, ok](const std::string& v) -> std::optional<std::string> {
                     if (ok(v))
                       return std::nullopt;
                     return expects;
                   });
}

/// `f` with `note` added to what it expects (and says when a value is bad).
field explained(field f, const std::string& note) {
  auto set = f.set;
  f.expects += note;
  f.set = [set, note](config& c, const std::string& v) -> std::optional<std::string> {
    if (auto bad = set(c, v))
      return *bad + note;
    return std::nullopt;
  };
  return f;
}

field id_field(std::string config::*member) {
  return checked(string_field(member), "1-64 characters from [a-zA-Z0-9_-]",
                 [](const std::string& v) {
                   if (v.empty() || v.size() > 64)
                     return false;
                   for (char ch : v)
                     if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-'))
                       return false;
                   return true;
                 });
}

field duration_field(double config::*member, double min_sec, double max_sec) {
  auto expected = "a duration between " + number_text(min_sec) + "s and " + number_text(max_sec)
                  + "s such as 2s, 500ms or 1m";
  return {"duration", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            auto d = parse_duration_sec(v);
            if (!d || !(*d >= min_sec && *d <= max_sec)) // NaN fails both comparisons
              return expected;
            c.*member = *d;
            return std::nullopt;
          },
          [member](const config& c) { return toml_quote(duration_text(c.*member)); }};
}

field int_field(int config::*member, int lo, int hi) {
  auto expected = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  return {"integer", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            char* end = nullptr;
            errno = 0;
            long x = std::strtol(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > hi)
              return expected;
            c.*member = static_cast<int>(x);
            return std::nullopt;
          },
          [member](const config& c) { return std::to_string(c.*member); }};
}

/// A size in bytes: 65536, or with a binary suffix (64KiB, 64MiB, 1GiB; K,
/// M and G are read the same).
field bytes_field(std::int64_t config::*member, std::int64_t lo, std::int64_t hi) {
  auto expected = "a size in bytes from " + std::to_string(lo) + " to " + std::to_string(hi)
                  + " such as 65536, 64MiB or 1GiB";
  return {"size", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
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
            c.*member = x * scale;
            return std::nullopt;
          },
          [member](const config& c) { return bytes_text(c.*member); }};
}

field number_field(double config::*member, double lo, double hi) {
  auto expected = "a number from " + number_text(lo) + " to " + number_text(hi);
  return {"number", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            char* end = nullptr;
            double x = std::strtod(v.c_str(), &end);
            if (v.empty() || *end != '\0' || !(x >= lo && x <= hi))
              return expected;
            c.*member = x;
            return std::nullopt;
          },
          [member](const config& c) { return number_text(c.*member); }};
}

field bool_field(bool config::*member) {
  return {"boolean", "true or false",
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            if (v == "true" || v == "1" || v == "yes" || v == "on")
              c.*member = true;
            else if (v == "false" || v == "0" || v == "no" || v == "off")
              c.*member = false;
            else
              return "true or false";
            return std::nullopt;
          },
          [member](const config& c) { return std::string(c.*member ? "true" : "false"); }};
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

field list_field(std::vector<std::string> config::*member) {
  return {"list", "a TOML array of strings, or one string of comma-separated items",
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            c.*member = split_list(v);
            return std::nullopt;
          },
          [member](const config& c) {
            std::string out = "[";
            for (auto& item : c.*member)
              out += (out.size() > 1 ? ", " : "") + toml_quote(item);
            return out + "]";
          }};
}

/// "floor,quiet,busy,panic": four numbers that rise (or, when `falling`, fall).
field thresholds_field(std::array<double, 4> config::*member, bool falling) {
  std::string expected = falling ? "four falling numbers floor,quiet,busy,panic such as 50,20,10,3"
                                 : "four rising numbers floor,quiet,busy,panic such as 0,30,75,95";
  return {"thresholds", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            auto parts = split_list(v);
            if (parts.size() != 4)
              return expected;
            std::array<double, 4> t{};
            for (size_t i = 0; i < 4; ++i) {
              char* end = nullptr;
              t[i] = std::strtod(parts[i].c_str(), &end);
              if (parts[i].empty() || *end != '\0' || !std::isfinite(t[i]))
                return expected;
            }
            for (size_t i = 1; i < 4; ++i)
              if (falling ? !(t[i] < t[i - 1]) : !(t[i] > t[i - 1]))
                return expected;
            c.*member = t;
            return std::nullopt;
          },
          [member](const config& c) {
            std::string out;
            for (double x : c.*member)
              out += (out.empty() ? "" : ",") + number_text(x);
            return toml_quote(out);
          }};
}

const std::vector<key_def>& key_defs() {
  static const std::vector<key_def> defs = {
    {{"broker", "LULL_BROKER", "--broker",
      "MQTT broker URI (tcp://host:1883, ssl://host:8883); empty starts a local Mosquitto"},
     checked(string_field(&config::broker),
             "a URI starting with tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://",
             [](const std::string& v) {
               return v.empty() || v.rfind("tcp://", 0) == 0 || v.rfind("mqtt://", 0) == 0
                      || v.rfind("ssl://", 0) == 0 || v.rfind("mqtts://", 0) == 0
                      || v.rfind("ws://", 0) == 0 || v.rfind("wss://", 0) == 0;
             })},
    {{"host_id", "LULL_HOST_ID", "--host-id", "this host's id in topics (default: hostname)"},
     id_field(&config::host_id).by_default("the host name, up to its first dot")},
    {{"db", "LULL_DB", "--db", "SQLite database file (default: <data_dir>/lull.db)"},
     path_field(&config::db).by_default("<data_dir>/lull.db")},
    {{"data_dir", "LULL_DATA_DIR", "--data-dir", "directory for lull's state"},
     path_field(&config::data_dir)
       .by_default("$STATE_DIRECTORY (lulld.service: /var/lib/lull), else /var/lib/lull as root, "
                   "else $XDG_STATE_HOME/lull or ~/.local/state/lull")},
    {{"topic_prefix", "LULL_TOPIC_PREFIX", "--topic-prefix", "prefix prepended to every topic"},
     checked(string_field(&config::topic_prefix),
             "a topic prefix without '+', '#' or a leading '/'",
             [](const std::string& v) {
               return v.find_first_of("+#") == std::string::npos
                      && (v.empty() || v.front() != '/');
             })},
    {{"client_id", "LULL_CLIENT_ID", "--client-id", "MQTT client id (default: lulld-<host_id>; with broker.secure an unguessable "
      "lulld-<host_id>-<random> kept in data_dir)"},
     string_field(&config::client_id)
       .by_default("lulld-<host_id>; with broker.secure, lulld-<host_id>-<random> kept in data_dir")},
    {{"username", "LULL_USERNAME", "--username", "MQTT user name"},
     string_field(&config::username)},
    {{"password", "LULL_PASSWORD", "--password", "MQTT password (prefer the env or file)"},
     string_field(&config::password).hidden()},
    {{"interval", "LULL_INTERVAL", "--interval", "host sampling interval (default 2s)"},
     duration_field(&config::interval_sec, 0.1, 3600)},
    {{"proc_root", "LULL_PROC_ROOT", "--proc-root", "root of /proc and /sys (default /)"},
     path_field(&config::proc_root)},
    {{"broker_config_dir", "LULL_BROKER_CONFIG_DIR", "--broker-config-dir",
      "directory holding local.conf for the broker lulld starts itself"},
     path_field(&config::broker_config_dir)
       .by_default("the broker configs installed with lulld (/usr/share/lull/broker-config)")},
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
     path_field(&config::broker_ca_file)},
    {{"broker.cert_file", "LULL_BROKER_CERT_FILE", "--broker-cert-file",
      "TLS: lulld's client certificate, for brokers that take the user from it"},
     path_field(&config::broker_cert_file)},
    {{"broker.key_file", "LULL_BROKER_KEY_FILE", "--broker-key-file",
      "TLS: the private key of broker.cert_file"},
     path_field(&config::broker_key_file)},
    {{"mqtt_version", "LULL_MQTT_VERSION", "--mqtt-version",
      "MQTT protocol version: auto (v5, falling back to v3.1.1 when the broker refuses "
      "or drops v5, as RabbitMQ does), 5, or 3.1.1"},
     checked(string_field(&config::mqtt_version), "auto, 5 or 3.1.1",
             [](const std::string& v) { return v == "auto" || v == "5" || v == "3.1.1"; })},
    {{"broker.admin_user", "LULL_BROKER_ADMIN_USER", "--broker-admin-user",
      "secure mode: the broker user who may read and cancel every job (default lull-admin)"},
     checked(string_field(&config::broker_admin_user),
             "a user name of 1-64 characters from [a-zA-Z0-9_-]",
             [](const std::string& v) { return valid_id(v); })},
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
     validated(string_field(&config::lease_windows),
               "empty (always), or days and hours such as 'Mon-Fri 22:00-07:00, Sat-Sun', "
               "optionally per host ('pi-a: 22:00-07:00; laptop: 00:00-08:00')",
               [](const std::string& v) -> std::optional<std::string> {
                 auto parsed = parse_lease_windows(v, "UTC");
                 if (auto* e = std::get_if<std::string>(&parsed))
                   return *e;
                 return std::nullopt;
               })},
    {{"lease.timezone", "LULL_LEASE_TIMEZONE", "--lease-timezone",
      "time zone of lease.windows: an IANA name such as Europe/Berlin, or local (default)"},
     validated(string_field(&config::lease_timezone),
               "an IANA time zone name such as Europe/Berlin, or local",
               [](const std::string& v) -> std::optional<std::string> {
                 std::string why;
                 if (!find_time_zone(v, &why))
                   return why;
                 return std::nullopt;
               })},
    {{"lease.max_retry_hint", "LULL_LEASE_MAX_RETRY_HINT", "--lease-max-retry-hint",
      "the longest retry_after_sec a denial gives, whatever a pause, window or learned map "
      "from the bus names (default 1h)"},
     duration_field(&config::lease_max_retry_hint_sec, 1, 7 * 86400)},
    {{"lease.high_users", "LULL_LEASE_HIGH_USERS", "--lease-high-users",
      "secure mode: the users who may ask for HIGH leases and submit HIGH jobs, "
      "comma-separated (default lull-admin; others get PermissionDenied)"},
     checked(list_field(&config::lease_high_users),
             "user names of 1-64 characters from [a-zA-Z0-9_-], comma-separated",
             [](const std::string& v) {
               for (auto& u : split_list(v))
                 if (!valid_id(u))
                   return false;
               return true;
             })},
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
     explained(int_field(&config::limits_max_reply_bytes, static_cast<int>(min_max_reply_bytes),
                         static_cast<int>(max_max_reply_bytes)),
               " (bytes; at most 900000 leaves room for a reply's topic and properties "
               "under the broker's message_size_limit 1000000, and below 4096 a page "
               "holds too little)")},
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
     checked(string_field(&config::log_level), "one of trace, debug, info, warn, error, off",
             [](const std::string& v) {
               return v == "trace" || v == "debug" || v == "info" || v == "warn" || v == "error"
                      || v == "off";
             })},
    {{"shutdown_timeout", "LULL_SHUTDOWN_TIMEOUT", "--shutdown-timeout",
      "SIGTERM to exit at most: lulld then exits anyway, having written every acknowledged "
      "job and lease (default 2s)"},
     duration_field(&config::shutdown_timeout_sec, 0.5, 300)},
    // -- roles, collectors, quiet assessor, Home Assistant ---------------------
    {{"roles", "LULL_ROLES", "--roles",
      "which actors run: all, or a comma list of collectors (host, process, workers, bus), "
      "assessor (quiet assessor, Home Assistant discovery), scheduler (leases, queue, "
      "persister)"},
     [] {
       auto f = string_field(&config::roles);
       f.expects = "all, or a comma list of collectors, assessor, scheduler";
       f.set = [expects = f.expects](config& c, const std::string& v)
         -> std::optional<std::string> {
         auto items = split_list(v);
         std::string norm;
         for (auto& r : items) {
           if (r != "all" && r != "collectors" && r != "assessor" && r != "scheduler")
             return expects;
           norm += (norm.empty() ? "" : ",") + r;
         }
         if (items.empty())
           return expects;
         bool all = std::find(items.begin(), items.end(), "all") != items.end();
         c.roles = all ? "all" : norm;
         return std::nullopt;
       };
       return f;
     }()},
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
     list_field(&config::dirs).by_default("data_dir")},
    {{"collectors.mounts", "LULL_COLLECTORS_MOUNTS", "--collectors-mounts",
      "mounts whose usage is reported, comma-separated (default: / and the data dir)"},
     list_field(&config::mounts).by_default("/ and the mount of data_dir")},
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
     checked(string_field(&config::ha_prefix),
             "a topic without '+', '#' or a leading or trailing '/'",
             [](const std::string& v) {
               return !v.empty() && v.find_first_of("+#") == std::string::npos
                      && v.front() != '/' && v.back() != '/';
             })},
  };
  return defs;
}

std::string toml_to_string(const toml::value& v) {
  if (v.is_string())
    return v.as_string().str;
  if (v.is_integer())
    return std::to_string(v.as_integer());
  if (v.is_floating())
    return number_text(v.as_floating());
  if (v.is_boolean())
    return v.as_boolean() ? "true" : "false";
  return toml::format(v);
}

/// A key of the file, flattened, with its value and line.
struct file_entry {
  std::string name;
  toml::value value;
};

/// Flattens a TOML table to dotted keys: [lease] ttl = 30 -> "lease.ttl".
void flatten(const toml::value& table, const std::string& prefix, std::vector<file_entry>& out) {
  for (auto& [k, v] : table.as_table()) {
    auto name = prefix.empty() ? k : prefix + "." + k;
    if (v.is_table())
      flatten(v, name, out);
    else
      out.push_back({name, v});
  }
}

/// "PATH:LINE" of a value read from the file, or PATH when toml11 has no line.
std::string where(const std::string& path, const toml::value& v) {
  auto line = v.location().line();
  return line > 0 ? path + ":" + std::to_string(line) : path;
}

/// The edit distance of two short strings (an unknown key's likely meaning).
std::size_t distance(const std::string& a, const std::string& b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j)
    row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diag = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

/// "; did you mean 'interval'?" when a known key is close to `name`.
std::string suggestion(const std::string& name) {
  const key_def* best = nullptr;
  std::size_t best_d = 3; // at most two edits away
  for (auto& d : key_defs())
    if (auto dist = distance(name, d.key.name); dist < best_d) {
      best = &d;
      best_d = dist;
    }
  return best != nullptr ? "; did you mean '" + best->key.name + "'?" : std::string{};
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
    const config defaults;
    for (auto& d : key_defs())
      out.push_back({d.key.name, d.key.env, d.key.flag, d.key.help, d.f.type, d.f.expects,
                     d.f.get(defaults), d.f.derived, d.f.secret});
    return out;
  }();
  return keys;
}

const std::vector<action_flag>& lulld_action_flags() {
  static const std::vector<action_flag> flags = {
    {"--config", "file", "the TOML configuration file (env LULL_CONFIG)"},
    {"--check-config", "",
     "read the file, the environment and the flags as a start would, check every value, "
     "print 'lulld: configuration OK (FILE)' and exit 0, or name the bad key and exit 2; "
     "opens no database and connects nowhere"},
    {"--print-config", "",
     "print every key's effective value and where it came from (default, file and line, env, "
     "flag) as TOML that lulld reads back (secrets as \"<set>\"), and exit; exit 2 on a bad "
     "value as --check-config does"},
  };
  return flags;
}

std::string print_config(const config& c) {
  std::set<std::string> names;
  for (auto& d : key_defs())
    names.insert(d.key.name);
  std::ostringstream out;
  out << "# lulld's effective configuration (lulld --print-config), each key with where its\n"
      << "# value came from. Read back as a file, it gives the same configuration.\n"
      << "# config file: " << (c.config_file.empty() ? "none" : c.config_file) << "\n";
  for (auto& d : key_defs()) {
    auto& name = d.key.name;
    // A dotted name whose first part is itself a key (broker.secure beside
    // broker) is quoted: TOML cannot make `broker` a string and a table.
    auto dot = name.find('.');
    bool quote = dot != std::string::npos && names.count(name.substr(0, dot)) != 0;
    auto source = c.sources.find(name);
    std::string value = d.f.get(c);
    if (d.f.secret && value != "\"\"")
      value = "\"<set>\"";
    out << (quote ? "\"" + name + "\"" : name) << " = " << value << "  # "
        << (source != c.sources.end() ? source->second : "default") << "\n";
  }
  return out.str();
}

const std::vector<std::string>& client_config_keys() {
  static const std::vector<std::string> keys = {
    "broker",         "username",        "password",         "topic_prefix",
    "mqtt_version",   "broker.secure",   "broker.ca_file",   "broker.cert_file",
    "broker.key_file", "data_dir"};
  return keys;
}

std::variant<client_config, std::string>
load_client_config(const std::string& file, const std::map<std::string, std::string>& env,
                   const std::map<std::string, std::pair<std::string, std::string>>& flags) {
  client_config out;
  auto shared = [](const std::string& name) {
    auto& keys = client_config_keys();
    return std::find(keys.begin(), keys.end(), name) != keys.end();
  };
  auto def_of = [](const std::string& name) -> const key_def* {
    for (auto& d : key_defs())
      if (d.key.name == name)
        return &d;
    return nullptr;
  };
  auto apply = [&](const key_def& d, const std::string& value,
                   const std::string& source) -> std::optional<std::string> {
    if (auto expected = d.f.set(out.values, value))
      return "bad value for " + d.key.name + " (from " + source + "): got '" + value
             + "', expected " + *expected;
    out.sources[d.key.name] = source;
    return std::nullopt;
  };
  // The file: lulld's own parser and keys. A key only lulld uses is not
  // checked here (lulld does that); a key neither knows is an error, as in lulld.
  if (!file.empty()) {
    toml::value root;
    try {
      root = toml::parse(file);
    } catch (const std::exception& e) {
      return "cannot read config file " + file + ": " + e.what();
    }
    std::vector<file_entry> entries;
    flatten(root, "", entries);
    for (auto& entry : entries) {
      const auto* d = def_of(entry.name);
      auto at = where(file, entry.value);
      if (d == nullptr)
        return "unknown key '" + entry.name + "' in " + at + suggestion(entry.name)
               + " (lull.toml(5) lists every key)";
      if (!shared(entry.name))
        continue;
      if (entry.value.is_array())
        return "bad value for " + entry.name + " (from file " + at + "): got an array, expected "
               + d->f.expects;
      if (auto err = apply(*d, toml_to_string(entry.value), "file " + at))
        return *err;
    }
  }
  for (auto& name : client_config_keys())
    if (const auto* d = def_of(name))
      if (auto it = env.find(d->key.env); it != env.end())
        if (auto err = apply(*d, it->second, "env " + d->key.env))
          return *err;
  for (auto& [name, value] : flags)
    if (const auto* d = def_of(name); d != nullptr && shared(name))
      if (auto err = apply(*d, value.first, value.second))
        return *err;
  return out;
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
  bool check_flag = false, print_flag = false;
  auto& actions = lulld_action_flags();
  app.add_option(actions[0].flag, config_flag, actions[0].help)->type_name("FILE");
  auto* check = app.add_flag(actions[1].flag, check_flag, actions[1].help);
  app.add_flag(actions[2].flag, print_flag, actions[2].help)->excludes(check);
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
  c.action = check_flag   ? config::action_kind::check
             : print_flag ? config::action_kind::print
                          : config::action_kind::run;
  auto apply = [&](const key_def& d, const std::string& value,
                   const std::string& source) -> std::optional<config_error> {
    if (auto expected = d.f.set(c, value))
      return config_error{2, "lulld: bad value for " + d.key.name + " (from " + source
                               + "): got '" + value + "', expected " + *expected};
    c.sources[d.key.name] = source;
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
    std::vector<file_entry> entries;
    flatten(root, "", entries);
    for (auto& entry : entries) {
      auto it = std::find_if(key_defs().begin(), key_defs().end(),
                             [&](auto& d) { return d.key.name == entry.name; });
      auto at = where(c.config_file, entry.value);
      if (it == key_defs().end())
        return config_error{2, "lulld: unknown key '" + entry.name + "' in " + at
                                 + suggestion(entry.name)
                                 + " (lulld --help and lull.toml(5) list every key)"};
      if (entry.value.is_array() && it->f.type != "list" && it->f.type != "thresholds")
        return config_error{2, "lulld: bad value for " + entry.name + " (from file " + at
                                 + "): got an array, expected " + it->f.expects};
      if (auto err = apply(*it, toml_to_string(entry.value), "file " + at))
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
