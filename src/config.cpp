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
#include <regex>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>

#include "src/lease/windows.hpp"
#include <toml.hpp>

extern char** environ;

namespace lull {

namespace {

/// Where a key's value lives in `config`: a member, or a member of one of
/// its members (`in(&config::lease, &lease_policy_config::ttl_sec)`), so a
/// component's own options struct holds the value with no copy between.
template <class T>
class slot {
public:
  slot(T config::*member) : at_([member](config& c) -> T& { return c.*member; }) {}
  explicit slot(std::function<T&(config&)> at) : at_(std::move(at)) {}
  T& operator()(config& c) const { return at_(c); }
  const T& operator()(const config& c) const { return at_(const_cast<config&>(c)); }

private:
  std::function<T&(config&)> at_;
};

template <class S, class T>
slot<T> in(S config::*part, T S::*member) {
  return slot<T>([part, member](config& c) -> T& { return (c.*part).*member; });
}

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
  bool tuning = false; ///< an internal seam: lulld --help-all and lull.toml(5) show it, --help not

  field by_default(std::string how) && {
    derived = std::move(how);
    return std::move(*this);
  }
  field hidden() && {
    secret = true;
    return std::move(*this);
  }
  field internal() && {
    tuning = true;
    return std::move(*this);
  }
};

/// A key's name and what it is for. Its variable and flag are derived from
/// the name (config_env_name, config_flag_name); its default is the member's
/// initial value (in `config`, or in the settings struct of its section that
/// `config` holds), never repeated in the help.
struct key_text {
  std::string name, help;
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

field string_field(slot<std::string> member) {
  return {"string", "any text",
          [member](config& c, const std::string& v) -> std::optional<std::string> {
            member(c) = v;
            return std::nullopt;
          },
          [member](const config& c) { return toml_quote(member(c)); }};
}

/// A file or directory, read as given (relative to lulld's working directory).
field path_field(slot<std::string> member) {
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

field id_field(slot<std::string> member) {
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

field duration_field(slot<double> member, double min_sec, double max_sec) {
  auto expected = "a duration between " + number_text(min_sec) + "s and " + number_text(max_sec)
                  + "s such as 2s, 500ms or 1m";
  return {"duration", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            auto d = parse_duration_sec(v);
            if (!d || !(*d >= min_sec && *d <= max_sec)) // NaN fails both comparisons
              return expected;
            member(c) = *d;
            return std::nullopt;
          },
          [member](const config& c) { return toml_quote(duration_text(member(c))); }};
}

template <class I>
field integer_field(slot<I> member, long long lo, long long hi) {
  auto expected = "an integer from " + std::to_string(lo) + " to " + std::to_string(hi);
  return {"integer", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            char* end = nullptr;
            errno = 0;
            long long x = std::strtoll(v.c_str(), &end, 10);
            if (v.empty() || *end != '\0' || errno != 0 || x < lo || x > hi)
              return expected;
            member(c) = static_cast<I>(x);
            return std::nullopt;
          },
          [member](const config& c) { return std::to_string(member(c)); }};
}

field int_field(slot<int> member, int lo, int hi) { return integer_field(member, lo, hi); }

/// A count held as std::size_t (limits on what lulld keeps).
field count_field(slot<std::size_t> member, long long lo, long long hi) {
  return integer_field(member, lo, hi);
}

/// A size in bytes: 65536, or with a binary suffix (64KiB, 64MiB, 1GiB; K,
/// M and G are read the same).
field bytes_field(slot<std::size_t> member, std::int64_t lo, std::int64_t hi) {
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
            member(c) = static_cast<std::size_t>(x * scale);
            return std::nullopt;
          },
          [member](const config& c) { return bytes_text(static_cast<std::int64_t>(member(c))); }};
}

field number_field(slot<double> member, double lo, double hi) {
  auto expected = "a number from " + number_text(lo) + " to " + number_text(hi);
  return {"number", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            char* end = nullptr;
            double x = std::strtod(v.c_str(), &end);
            if (v.empty() || *end != '\0' || !(x >= lo && x <= hi))
              return expected;
            member(c) = x;
            return std::nullopt;
          },
          [member](const config& c) { return number_text(member(c)); }};
}

field bool_field(slot<bool> member) {
  return {"boolean", "true or false",
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            if (v == "true" || v == "1" || v == "yes" || v == "on")
              member(c) = true;
            else if (v == "false" || v == "0" || v == "no" || v == "off")
              member(c) = false;
            else
              return "true or false";
            return std::nullopt;
          },
          [member](const config& c) { return std::string(member(c) ? "true" : "false"); }};
}

/// A key with two words for a boolean member: `yes` sets it, `no` clears it.
field choice_field(slot<bool> member, std::string yes, std::string no) {
  auto expected = yes + " or " + no;
  return {"choice", expected,
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            if (v == yes)
              member(c) = true;
            else if (v == no)
              member(c) = false;
            else
              return expected;
            return std::nullopt;
          },
          [=](const config& c) { return toml_quote(member(c) ? yes : no); }};
}

/// mqtt_version: one key for the transport's prefer_v5 and fallback, read
/// and rendered by the names set_mqtt_version() and mqtt_version_name() know.
field mqtt_version_field(slot<transport_options> member) {
  field f{"string", "auto, 5 or 3.1.1",
          [member](config& c, const std::string& v) -> std::optional<std::string> {
            if (!set_mqtt_version(member(c), v))
              return std::string("auto, 5 or 3.1.1");
            return std::nullopt;
          },
          [member](const config& c) { return toml_quote(mqtt_version_name(member(c))); }};
  return f;
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

field list_field(slot<std::vector<std::string>> member) {
  return {"list", "a TOML array of strings, or one string of comma-separated items",
          [=](config& c, const std::string& v) -> std::optional<std::string> {
            member(c) = split_list(v);
            return std::nullopt;
          },
          [member](const config& c) {
            std::string out = "[";
            for (auto& item : member(c))
              out += (out.size() > 1 ? ", " : "") + toml_quote(item);
            return out + "]";
          }};
}

/// "floor,quiet,busy,panic": four numbers that rise (or, when `falling`, fall).
field thresholds_field(slot<input_thresholds> member, bool falling) {
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
            member(c) = {t[0], t[1], t[2], t[3]};
            return std::nullopt;
          },
          [member](const config& c) {
            std::string out;
            auto& t = member(c);
            for (double x : {t.floor, t.quiet, t.busy, t.panic})
              out += (out.empty() ? "" : ",") + number_text(x);
            return toml_quote(out);
          }};
}

const std::vector<key_def>& key_defs() {
  static const std::vector<key_def> defs = {
    {{"broker.uri",
      "MQTT broker URI (tcp://host:1883, ssl://host:8883); empty: use the local broker, or start "
      "one (local_broker_port); LULL_BROKER also sets it"},
     checked(string_field(in(&config::transport, &transport_options::uri)),
             "a URI starting with tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://",
             [](const std::string& v) {
               return v.empty() || v.rfind("tcp://", 0) == 0 || v.rfind("mqtt://", 0) == 0
                      || v.rfind("ssl://", 0) == 0 || v.rfind("mqtts://", 0) == 0
                      || v.rfind("ws://", 0) == 0 || v.rfind("wss://", 0) == 0;
             })
       .by_default("none: the broker on 127.0.0.1:local_broker_port, else one lulld starts")},
    {{"host_id", "this host's id in topics"},
     id_field(&config::host_id).by_default("the host name, up to its first dot")},
    {{"db", "SQLite database file"},
     path_field(&config::db).by_default("<data_dir>/lull.db")},
    {{"data_dir", "directory for lull's state"},
     path_field(&config::data_dir)
       .by_default("$STATE_DIRECTORY (lulld.service: /var/lib/lull), else /var/lib/lull as root, "
         "else $XDG_STATE_HOME/lull or ~/.local/state/lull")},
    {{"topic_prefix", "prefix prepended to every topic"},
     checked(string_field(&config::topic_prefix),
             "a topic prefix without '+', '#' or a leading '/'",
             [](const std::string& v) {
               return v.find_first_of("+#") == std::string::npos
                      && (v.empty() || v.front() != '/');
             })},
    {{"client_id",
      "MQTT client id; in secure mode unguessable, so no user can take lulld's session"},
     string_field(in(&config::transport, &transport_options::client_id))
       .by_default("lulld-<host_id>; with broker.secure, lulld-<host_id>-<random> kept in "
         "data_dir")},
    {{"username", "MQTT user name"},
     string_field(in(&config::transport, &transport_options::username))},
    {{"password", "MQTT password (prefer the env or file)"},
     string_field(in(&config::transport, &transport_options::password)).hidden()},
    {{"interval", "host sampling interval"},
     duration_field(in(&config::collect, &collector_settings::interval_sec), 0.1, 3600)},
    {{"proc_root", "root of /proc and /sys"},
     path_field(in(&config::collect, &collector_settings::proc_root)).internal()},
    {{"broker_config_dir", "directory holding local.conf for the broker lulld starts itself"},
     path_field(&config::broker_config_dir)
       .by_default("the broker configs installed with lulld (/usr/share/lull/broker-config)")
       .internal()},
    {{"local_broker_port", "port for the local broker (0 picks a free one)"},
     int_field(&config::local_broker_port, 0, 65535)},
    {{"broker.secure",
      "the broker pins identities with an ACL (broker-config/secure.conf): take a worker's id "
      "from its topic scheduler/<worker>/lease/..., reply only under workers/<worker>/"},
     bool_field(in(&config::security, &security_settings::secure))},
    {{"broker.ca_file", "TLS (ssl:// brokers): the CA certificate that signed the broker's"},
     path_field(in(&config::transport, &transport_options::ca_file))
       .by_default("the system's trust store")},
    {{"broker.cert_file",
      "TLS: lulld's client certificate, for brokers that take the user from it"},
     path_field(in(&config::transport, &transport_options::cert_file))},
    {{"broker.key_file", "TLS: the private key of broker.cert_file"},
     path_field(in(&config::transport, &transport_options::key_file))},
    {{"mqtt_version",
      "MQTT protocol version: auto (v5, falling back to v3.1.1 when the broker refuses or drops "
      "v5, as RabbitMQ does), 5, or 3.1.1"},
     mqtt_version_field(&config::transport)},
    {{"broker.admin_user", "secure mode: the broker user who may read and cancel every job"},
     checked(string_field(in(&config::security, &security_settings::admin_user)),
             "a user name of 1-64 characters from [a-zA-Z0-9_-]",
             [](const std::string& v) { return valid_id(v); })},
    {{"broker.max_packet_size",
      "largest MQTT packet lulld accepts, announced in its MQTT v5 CONNECT so the broker drops "
      "bigger ones instead of sending them (bytes)"},
     int_field(in(&config::transport, &transport_options::max_packet_size), 1024, 268435455)},
    {{"lease.ttl", "the lease heartbeat TTL when a request names none"},
     duration_field(in(&config::lease, &lease_policy_config::ttl_sec), 1, 86400)},
    {{"lease.min_ttl", "smallest TTL a worker may ask for"},
     duration_field(in(&config::lease, &lease_policy_config::min_ttl_sec), 0.1, 86400)},
    {{"lease.max_ttl", "largest TTL a worker may ask for"},
     duration_field(in(&config::lease, &lease_policy_config::max_ttl_sec), 1, 7 * 86400)},
    {{"lease.lock_delay", "how long an expired or revoked lease's units stay reserved"},
     duration_field(in(&config::lease, &lease_policy_config::lock_delay_sec), 0, 3600)},
    {{"lease.will_grace",
      "a worker's last will ends its leases this long after it arrives, unless the worker is "
      "heard from or lulld loses the broker first (0: at once)"},
     duration_field(in(&config::lease, &lease_policy_config::will_grace_sec), 0, 600)},
    {{"lease.panic_cooldown", "hard deny this long after a PANIC"},
     duration_field(in(&config::lease, &lease_policy_config::panic_cooldown_sec), 0, 86400)},
    {{"lease.busy_retry", "retry hint while a host is not QUIET"},
     duration_field(in(&config::lease, &lease_policy_config::busy_retry_sec), 1, 3600)},
    {{"lease.capacity_units",
      "units each host can lease (0: CPU count x units_per_cpu x (1 - headroom))"},
     int_field(in(&config::lease, &lease_policy_config::capacity_units), 0, 1000000)},
    {{"lease.units_per_cpu", "capacity units per CPU"},
     int_field(in(&config::lease, &lease_policy_config::units_per_cpu), 1, 10000)},
    {{"lease.headroom", "share of each host kept for the rest of the system"},
     number_field(in(&config::lease, &lease_policy_config::headroom), 0, 0.95)},
    {{"lease.max_global", "most active leases in total"},
     int_field(in(&config::lease, &lease_policy_config::max_leases_global), 1, 1000000)},
    {{"lease.max_per_worker", "most active leases per worker"},
     int_field(in(&config::lease, &lease_policy_config::max_leases_per_worker), 1, 1000000)},
    {{"lease.grant_rate", "grants per second the token bucket refills"},
     number_field(in(&config::lease, &lease_policy_config::grant_rate_per_sec), 0.001, 1e9)
       .internal()},
    {{"lease.grant_burst", "grants the token bucket holds"},
     number_field(in(&config::lease, &lease_policy_config::grant_burst), 1, 1e9).internal()},
    {{"lease.worker_rate", "lease messages per second one worker may send before RequestThrottled"},
     number_field(in(&config::lease, &lease_policy_config::worker_rate_per_sec), 0.01, 1e9)
       .internal()},
    {{"lease.worker_burst", "lease messages one worker may send at once"},
     number_field(in(&config::lease, &lease_policy_config::worker_burst), 1, 1e9).internal()},
    {{"lease.suspend_after",
      "a host BUSY (or PANIC) this long has its leases below HIGH suspended"},
     duration_field(in(&config::lease, &lease_policy_config::suspend_after_sec), 0, 86400)},
    {{"lease.resume_after", "a host QUIET again this long has its suspended leases resumed"},
     duration_field(in(&config::lease, &lease_policy_config::resume_after_sec), 0, 86400)},
    {{"lease.preempt_after",
      "a lease suspended this long is revoked; a queued job goes back to the queue"},
     duration_field(in(&config::lease, &lease_policy_config::preempt_after_sec), 1, 7 * 86400)},
    {{"lease.on_battery",
      "while a host runs on its battery: deny holds its work below HIGH (suspends it, "
      "denies more) until AC is back; allow runs it down to lease.min_battery"},
     choice_field(in(&config::lease, &lease_policy_config::run_on_battery), "allow", "deny")},
    {{"lease.min_battery",
      "with lease.on_battery allow: work below HIGH is held once the battery is below this, %"},
     number_field(in(&config::lease, &lease_policy_config::min_battery_pct), 0, 100)},
    {{"lease.gpu_owner_busy",
      "while the owner's use of one of a host's GPUs is above this, %, its leases below HIGH "
      "that asked for a GPU are held (suspended, new ones denied); resumed 5 points below it"},
     number_field(in(&config::lease, &lease_policy_config::gpu_owner_busy_pct), 0, 100)},
    {{"lease.windows",
      "when hosts take work below HIGH, in lease.timezone: 'Mon-Fri 22:00-07:00, Sat-Sun' for "
      "every host, or 'pi-a: Mon-Fri 22:00-07:00; laptop: 00:00-08:00'"},
     validated(string_field(&config::lease_windows),
               "empty (always), or days and hours such as 'Mon-Fri 22:00-07:00, Sat-Sun', "
               "optionally per host ('pi-a: 22:00-07:00; laptop: 00:00-08:00')",
               [](const std::string& v) -> std::optional<std::string> {
                 auto parsed = parse_lease_windows(v, "UTC");
                 if (auto* e = std::get_if<std::string>(&parsed))
                   return *e;
                 return std::nullopt;
               })},
    {{"lease.timezone",
      "time zone of lease.windows: an IANA name such as Europe/Berlin, or local (the default)"},
     validated(string_field(in(&config::lease, &lease_policy_config::timezone)),
               "an IANA time zone name such as Europe/Berlin, or local",
               [](const std::string& v) -> std::optional<std::string> {
                 std::string why;
                 if (!find_time_zone(v, &why))
                   return why;
                 return std::nullopt;
               })},
    {{"lease.max_retry_hint",
      "the longest retry_after_sec a denial gives, whatever a pause, window or learned map from "
      "the bus names"},
     duration_field(in(&config::lease, &lease_policy_config::max_retry_hint_sec), 1, 7 * 86400)},
    {{"lease.high_users",
      "secure mode: the users who may ask for HIGH leases and submit HIGH jobs, comma-separated "
      "(others get PermissionDenied)"},
     checked(list_field(in(&config::security, &security_settings::high_users)),
             "user names of 1-64 characters from [a-zA-Z0-9_-], comma-separated",
             [](const std::string& v) {
               for (auto& u : split_list(v))
                 if (!valid_id(u))
                   return false;
               return true;
             })},
    {{"persist.flush_interval", "how often samples are written, in one transaction"},
     duration_field(in(&config::persist, &persist_settings::flush_interval_sec), 0.1, 600)},
    {{"persist.queue_bound", "samples held in memory while the disk fails; the oldest go first"},
     count_field(in(&config::persist, &persist_settings::queue_bound), 1000, 10000000).internal()},
    {{"limits.max_workers", "workers the lease table tracks; the longest-idle are forgotten"},
     count_field(in(&config::lease, &lease_policy_config::max_tracked_workers), 10, 10000000)},
    {{"limits.max_hosts", "hosts assessed, leased on and announced to Home Assistant"},
     count_field(in(&config::limits, &limits_settings::max_hosts), 1, 100000)},
    {{"limits.max_parked", "scheduler/job/next requests waiting at once"},
     count_field(in(&config::limits, &limits_settings::max_parked), 1, 1000000)},
    {{"limits.max_payload", "largest inbound payload in bytes, dropped before decoding"},
     count_field(in(&config::limits, &limits_settings::max_payload), 1024, 268435456)},
    {{"limits.max_reply_bytes",
      "largest reply in bytes: job lists and history queries are paged to fit it"},
     explained(count_field(in(&config::limits, &limits_settings::max_reply_bytes),
                           static_cast<long long>(min_max_reply_bytes),
                           static_cast<long long>(max_max_reply_bytes)),
               "(bytes; at most 900000 leaves room for a reply's topic and properties under the "
               "broker's message_size_limit 1000000, and below 4096 a page holds too little)")},
    {{"limits.host_forget_after",
      "a host whose agent is silent this long is forgotten, its retained assessment and Home "
      "Assistant device cleared"},
     duration_field(in(&config::limits, &limits_settings::host_forget_after_sec), 10,
                    400 * 86400.0)},
    {{"limits.max_series_per_worker",
      "distinct series one source (a worker's status, a host's snapshot, a process) may have "
      "stored; a new name past it is refused and counted"},
     count_field(in(&config::limits, &limits_settings::max_series_per_worker), 1, 100000)},
    {{"limits.max_series",
      "distinct series of all sources together; a new name past it is refused and counted"},
     count_field(in(&config::limits, &limits_settings::max_series), 100, 10000000)},
    {{"queue.max_jobs_per_producer",
      "jobs one producer may have waiting or running; more get RequestThrottled"},
     count_field(in(&config::queue, &queue_config::max_jobs_per_producer), 1, 1000000)},
    {{"queue.max_bytes_per_producer",
      "payload bytes one producer's jobs waiting or running may hold; more get RequestThrottled"},
     bytes_field(in(&config::queue, &queue_config::max_bytes_per_producer), 65536, 64LL << 30)},
    {{"queue.max_bytes",
      "payload bytes all jobs waiting or running may hold (at most 100000 jobs in all)"},
     bytes_field(in(&config::queue, &queue_config::max_bytes), 65536, 64LL << 30)},
    {{"queue.retry_backoff",
      "a job back in the queue after a failed, lost or preempted attempt waits this long, "
      "doubled for each attempt it has used"},
     duration_field(in(&config::queue, &queue_config::retry_backoff_sec), 0, 86400)},
    {{"queue.retry_backoff_max", "the longest such wait"},
     duration_field(in(&config::queue, &queue_config::retry_backoff_max_sec), 0, 7 * 86400)},
    {{"retention.raw", "how long raw samples are kept"},
     duration_field(in(&config::persist, &persist_settings::raw_retention_sec), 3600,
                    400 * 86400.0)},
    {{"retention.rollup_5m", "how long 5-minute rollups are kept (hourly ones are kept for good)"},
     duration_field(in(&config::persist, &persist_settings::rollup_retention_sec), 86400,
                    4000 * 86400.0)},
    {{"retention.quiet_streaks", "how long closed quiet streaks are kept"},
     duration_field(in(&config::persist, &persist_settings::quiet_streaks_retention_sec),
                    7 * 86400, 4000 * 86400.0)},
    {{"retention.interval",
      "how often what retention lets go is purged, in steps (the first a minute after start, or "
      "sooner if this is shorter)"},
     duration_field(in(&config::persist, &persist_settings::retention_interval_sec), 1, 86400)
       .internal()},
    {{"log_level", "trace, debug, info, warn, error"},
     checked(string_field(&config::log_level), "one of trace, debug, info, warn, error, off",
             [](const std::string& v) {
               return v == "trace" || v == "debug" || v == "info" || v == "warn" || v == "error"
                      || v == "off";
             })},
    {{"shutdown_timeout",
      "SIGTERM to exit at most: lulld then exits anyway, having written every acknowledged job "
      "and lease"},
     duration_field(&config::shutdown_timeout_sec, 0.5, 300)},
    // -- roles, collectors, quiet assessor, Home Assistant ---------------------
    {{"roles",
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
    {{"collectors.process_interval", "process sampling interval"},
     duration_field(in(&config::collect, &collector_settings::process_interval_sec), 0.1, 3600)},
    {{"collectors.processes",
      "processes to watch besides lulld: names or pid files, comma-separated"},
     list_field(in(&config::collect, &collector_settings::processes))},
    {{"collectors.worker_interval", "worker health sweep and registry summary"},
     duration_field(in(&config::collect, &collector_settings::worker_interval_sec), 1, 3600)},
    {{"collectors.worker_stale_after", "a worker silent this long is stale"},
     duration_field(in(&config::collect, &collector_settings::worker_stale_after_sec), 1, 86400)},
    {{"collectors.bus_interval", "bus stats interval"},
     duration_field(in(&config::collect, &collector_settings::bus_interval_sec), 0.5, 3600)},
    {{"collectors.dir_interval", "directory size walks at most this often"},
     duration_field(in(&config::collect, &collector_settings::dir_interval_sec), 1, 86400)},
    {{"collectors.dirs", "directories to size, comma-separated"},
     list_field(in(&config::collect, &collector_settings::dirs)).by_default("data_dir")},
    {{"collectors.mounts", "mounts whose usage is reported, comma-separated"},
     list_field(in(&config::collect, &collector_settings::mounts))
       .by_default("/ and the mount of data_dir")},
    {{"collectors.presence_root", "root of /run/utmp and /dev for the owner-presence probe"},
     path_field(in(&config::collect, &collector_settings::presence_root)).internal()},
    {{"collectors.logind", "ask systemd-logind for the local seat sessions (owner presence)"},
     bool_field(in(&config::collect, &collector_settings::logind)).internal()},
    {{"collectors.jitter", "random +/- fraction of every collector interval"},
     number_field(in(&config::collect, &collector_settings::jitter), 0, 0.5).internal()},
    {{"collectors.timeout", "a collector run longer than this is reported as an overrun"},
     duration_field(in(&config::collect, &collector_settings::timeout_sec), 0.01, 600).internal()},
    {{"collectors.window", "rolling in-memory window per series"},
     duration_field(in(&config::collect, &collector_settings::window_sec), 60, 86400).internal()},
    {{"quiet.cpu",
      "other processes' CPU (average over quiet.cpu_window), % of all cores: "
      "floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::cpu), false)},
    {{"quiet.mem", "memory used, %: floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::mem), false)},
    {{"quiet.disk_free", "disk free, % (falling): floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::disk_free), true)},
    {{"quiet.swap", "swap used, %: floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::swap), false)},
    {{"quiet.temp", "CPU temperature, C: floor,quiet,busy,panic (a Pi 4 soft-limits at 80)"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::temp), false)},
    {{"quiet.bus_rps", "bus messages/s: floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::bus_rps), false)},
    {{"quiet.bus_p95_ms", "bus p95 latency, ms: floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::bus_p95), false)},
    {{"quiet.psi_cpu",
      "CPU pressure stall (PSI some, 1 min average), % of the time: floor,quiet,busy,panic; "
      "not scored while leased work runs"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::psi_cpu), false)},
    {{"quiet.psi_memory",
      "memory pressure stall (PSI some, 1 min average), %: floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::psi_memory), false)},
    {{"quiet.psi_io", "IO pressure stall (PSI some, 1 min average), %: floor,quiet,busy,panic"},
     thresholds_field(in(&config::quiet, &quiet_thresholds::psi_io), false)},
    {{"quiet.owner_idle",
      "somebody used the host (input in a login session) less than this ago: work below HIGH "
      "waits, and running leases below HIGH are suspended within 2 s of input; 0 turns it off"},
     duration_field(in(&config::quiet, &quiet_thresholds::owner_idle_sec), 0, 86400)},
    {{"quiet.cooldown", "after a PANIC the host cannot be QUIET for this long"},
     duration_field(in(&config::quiet, &quiet_thresholds::cooldown_sec), 0, 86400)},
    {{"quiet.hysteresis", "score points past a state's edge needed to enter or leave it"},
     number_field(in(&config::quiet, &quiet_thresholds::hysteresis), 0, 25).internal()},
    {{"quiet.stale_after", "a host without a snapshot this long is assessed BUSY"},
     duration_field(in(&config::quiet, &quiet_thresholds::stale_after_sec), 1, 86400)},
    {{"quiet.cpu_window", "other processes' CPU is averaged over this window"},
     duration_field(in(&config::quiet, &quiet_thresholds::cpu_window_sec), 5, 3600)},
    {{"quiet.bus_inputs", "score lull's own bus traffic (stats/bus) as host load"},
     bool_field(in(&config::quiet, &quiet_thresholds::bus_inputs))},
    {{"ha.enabled", "publish Home Assistant MQTT discovery"},
     bool_field(in(&config::ha, &ha_settings::enabled))},
    {{"ha.prefix", "Home Assistant discovery prefix"},
     checked(string_field(in(&config::ha, &ha_settings::prefix)),
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

/// An older spelling lulld and lull still read. The file key `broker` (a
/// string) cannot sit beside a [broker] table in TOML, so it is read with a
/// warning; the short forms --broker and LULL_BROKER are read quietly.
struct old_spelling {
  const char* file_key;
  const char* env;
  const char* flag;
  const char* key;
};
constexpr old_spelling old_spellings[] = {{"broker", "LULL_BROKER", "--broker", "broker.uri"}};

const old_spelling* old_spelling_of_key(const std::string& key) {
  for (auto& o : old_spellings)
    if (key == o.key)
      return &o;
  return nullptr;
}

/// The file's keys, flattened, with an old spelling renamed and a warning
/// for it.
std::vector<file_entry> file_entries(const toml::value& root, const std::string& path,
                                     std::vector<std::string>& warnings) {
  std::vector<file_entry> entries;
  flatten(root, "", entries);
  for (auto& e : entries)
    for (auto& o : old_spellings)
      if (e.name == o.file_key) {
        std::string key = o.key;
        auto table = key.substr(0, key.find('.'));
        warnings.push_back("the key '" + std::string(o.file_key) + "' in " + where(path, e.value)
                           + " is the old spelling of " + key + ": write it as " + key
                           + " (or under [" + table + "]), which TOML can hold beside the other "
                           + table + ".* keys");
        e.name = o.key;
      }
  return entries;
}

/// The value of a key in `env`, under its own name or its old one; the
/// variable's name in `*name`.
const std::string* env_value(const std::map<std::string, std::string>& env,
                             const std::string& key, std::string* name) {
  *name = config_env_name(key);
  if (auto it = env.find(*name); it != env.end())
    return &it->second;
  if (const auto* o = old_spelling_of_key(key))
    if (auto it = env.find(o->env); it != env.end()) {
      *name = o->env;
      return &it->second;
    }
  return nullptr;
}

const key_def* def_of(const std::string& name) {
  for (auto& d : key_defs())
    if (d.key.name == name)
      return &d;
  return nullptr;
}

/// A placeholder for a key's value in --help: DURATION, INT, PATH...
std::string placeholder(const std::string& type) {
  static const std::map<std::string, std::string> names = {
    {"string", "TEXT"},   {"path", "PATH"},       {"duration", "DURATION"}, {"integer", "INT"},
    {"number", "NUMBER"}, {"size", "SIZE"},       {"list", "LIST"},
    {"thresholds", "F,Q,B,P"}, {"boolean", "[true|false]"}};
  auto it = names.find(type);
  return it != names.end() ? it->second : "VALUE";
}

/// `text` wrapped to `width` columns, each line after the first indented by
/// `indent` spaces.
std::string wrap(const std::string& text, std::size_t indent, std::size_t width) {
  std::istringstream words(text);
  std::string word, out, line;
  while (words >> word) {
    if (!line.empty() && indent + line.size() + 1 + word.size() > width) {
      out += line + "\n" + std::string(indent, ' ');
      line.clear();
    }
    line += (line.empty() ? "" : " ") + word;
  }
  return out + line;
}

/// One option of --help: the flag and its placeholder in a column, then the
/// help wrapped beside it.
void help_row(std::ostringstream& out, const std::string& left, const std::string& text) {
  constexpr std::size_t column = 34, width = 100;
  out << "  " << left;
  if (left.size() + 2 >= column)
    out << "\n" << std::string(column, ' ');
  else
    out << std::string(column - 2 - left.size(), ' ');
  out << wrap(text, column, width) << "\n";
}

} // namespace

std::string config_env_name(const std::string& key) {
  std::string out = "LULL_";
  for (char ch : key)
    out += ch == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  return out;
}

std::string config_flag_name(const std::string& key) {
  std::string out = "--";
  for (char ch : key)
    out += (ch == '.' || ch == '_') ? '-' : ch;
  return out;
}

std::string config_section_title(const std::string& section) {
  static const std::map<std::string, std::string> titles = {
    {"", "General"},
    {"broker", "Broker, its security and TLS (broker.*)"},
    {"lease", "Lease policy (lease.*)"},
    {"persist", "Writing samples (persist.*)"},
    {"limits", "Bounds on what clients can make lulld hold (limits.*)"},
    {"queue", "Job queue quotas (queue.*)"},
    {"retention", "Retention (retention.*)"},
    {"collectors", "Collectors (collectors.*)"},
    {"quiet", "Quiet assessment (quiet.*)"},
    {"ha", "Home Assistant (ha.*)"},
  };
  auto it = titles.find(section);
  return it != titles.end() ? it->second : section + ".*";
}

const std::vector<config_key>& config_keys() {
  static const std::vector<config_key> keys = [] {
    std::vector<config_key> out;
    const config defaults;
    for (auto& d : key_defs()) {
      auto dot = d.key.name.find('.');
      const auto* old = old_spelling_of_key(d.key.name);
      out.push_back({d.key.name, config_env_name(d.key.name), config_flag_name(d.key.name),
                     d.key.help, d.f.type, d.f.expects, d.f.get(defaults), d.f.derived,
                     d.f.secret, d.f.tuning,
                     dot == std::string::npos ? std::string{} : d.key.name.substr(0, dot),
                     old != nullptr ? old->flag : "", old != nullptr ? old->env : ""});
    }
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

std::string lulld_help(bool all) {
  std::ostringstream out;
  out << "lulld: watches this host, scores how quiet it is, and leases heavy work over MQTT\n\n"
      << "Usage: lulld [--config FILE] [--check-config | --print-config] [OPTION ...]\n\n"
      << "Actions:\n";
  for (auto& f : lulld_action_flags())
    help_row(out, f.flag + (f.value.empty() ? "" : " FILE"), f.help);
  help_row(out, "--help", all ? "these options, the tuning keys included"
                              : "these options (--help-all adds the tuning keys)");
  help_row(out, "--version", "lulld's version");
  std::vector<std::string> order{""}; // the general keys first
  for (auto& k : config_keys())
    if (std::find(order.begin(), order.end(), k.section) == order.end())
      order.push_back(k.section);
  for (auto& section : order) {
    out << "\n" << config_section_title(section) << ":\n";
    for (auto& k : config_keys()) {
      if (k.section != section || (k.internal && !all))
        continue;
      auto left = k.flag;
      if (k.type == "choice") // "allow or deny" -> allow|deny
        left += " " + std::regex_replace(k.expects, std::regex(" or "), "|");
      else if (auto p = placeholder(k.type); !p.empty())
        left += " " + p;
      if (!k.old_flag.empty())
        left += ", " + k.old_flag;
      auto text = k.help;
      if (k.type == "boolean")
        text += "; alone it means true";
      auto none = k.default_value == "\"\"" || k.default_value == "[]";
      text += !k.default_derived.empty() ? " [default: " + k.default_derived + "]"
              : none                     ? " [default: none]"
                                         : " [default: " + k.default_value + "]";
      if (k.internal)
        text += " (tuning)";
      help_row(out, left, text);
    }
  }
  out << "\nEvery option is also a key of the TOML file (--lease-ttl is lease.ttl, or ttl under\n"
      << "[lease]) and an environment variable (LULL_LEASE_TTL). A flag beats the environment,\n"
      << "which beats the file, which beats the default. lulld(8) and lull.toml(5) describe\n"
      << "every key.\n";
  return out.str();
}

std::string print_config(const config& c) {
  std::ostringstream out;
  out << "# lulld's effective configuration (lulld --print-config), each key with where its\n"
      << "# value came from. Read back as a file, it gives the same configuration.\n"
      << "# config file: " << (c.config_file.empty() ? "none" : c.config_file) << "\n";
  for (auto& d : key_defs()) {
    auto source = c.sources.find(d.key.name);
    std::string value = d.f.get(c);
    if (d.f.secret && value != "\"\"")
      value = "\"<set>\"";
    out << d.key.name << " = " << value << "  # "
        << (source != c.sources.end() ? source->second : "default") << "\n";
  }
  return out.str();
}

const std::vector<std::string>& client_config_keys() {
  static const std::vector<std::string> keys = {
    "broker.uri",     "username",        "password",         "topic_prefix",
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
    for (auto& entry : file_entries(root, file, out.warnings)) {
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
    if (const auto* d = def_of(name)) {
      std::string var;
      if (const auto* v = env_value(env, name, &var))
        if (auto err = apply(*d, *v, "env " + var))
          return *err;
    }
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
  // 1. Flags, parsed first but applied last. --help is lulld_help(): the
  // options grouped by section, with placeholders and defaults.
  CLI::App app{"lulld"};
  app.set_help_flag();
  bool help_flag = false, help_all_flag = false;
  app.add_flag("--help,-h", help_flag);
  app.add_flag("--help-all", help_all_flag);
  app.set_version_flag("--version", "lulld 0.1.0");
  std::map<std::string, std::pair<std::string, std::string>> flag_values; // key -> value, flag
  std::string config_flag;
  bool check_flag = false, print_flag = false;
  auto& actions = lulld_action_flags();
  app.add_option(actions[0].flag, config_flag, actions[0].help)->type_name("FILE");
  auto* check = app.add_flag(actions[1].flag, check_flag, actions[1].help);
  app.add_flag(actions[2].flag, print_flag, actions[2].help)->excludes(check);
  for (auto& k : config_keys()) {
    auto names = k.flag + (k.old_flag.empty() ? "" : "," + k.old_flag);
    // An old spelling is named beside the flag in an error: CLI11 does not
    // say which of an option's names was given.
    auto given = k.flag + (k.old_flag.empty() ? "" : " (or " + k.old_flag + ")");
    auto record = [&flag_values, name = k.name, given](const std::string& v) {
      flag_values[name] = {v, given};
    };
    auto* opt = app.add_option_function<std::string>(
      names, [record, boolean = k.type == "boolean"](const std::string& v) {
        // A boolean is a switch: alone it is true; it also takes a value
        // (--ha-enabled=false, --broker-secure true).
        record(boolean && v.empty() ? "true" : v);
      },
      k.help);
    if (k.type == "boolean")
      opt->expected(0, 1);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForVersion&) {
    return config_error{0, "lulld 0.1.0"};
  } catch (const CLI::ParseError& e) {
    return config_error{2, std::string("lulld: ") + e.what() + "\nRun with --help for usage."};
  }
  if (help_flag || help_all_flag)
    return config_error{0, lulld_help(help_all_flag)};

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
    for (auto& entry : file_entries(root, c.config_file, c.warnings)) {
      const auto* d = def_of(entry.name);
      auto at = where(c.config_file, entry.value);
      if (d == nullptr)
        return config_error{2, "lulld: unknown key '" + entry.name + "' in " + at
                                 + suggestion(entry.name)
                                 + " (lulld --help and lull.toml(5) list every key)"};
      if (entry.value.is_array() && d->f.type != "list" && d->f.type != "thresholds")
        return config_error{2, "lulld: bad value for " + entry.name + " (from file " + at
                                 + "): got an array, expected " + d->f.expects};
      if (auto err = apply(*d, toml_to_string(entry.value), "file " + at))
        return *err;
    }
  }
  // 3. The environment.
  for (auto& d : key_defs()) {
    std::string var;
    if (const auto* v = env_value(env, d.key.name, &var))
      if (auto err = apply(d, *v, "env " + var))
        return *err;
  }
  // 4. Flags.
  for (auto& d : key_defs())
    if (auto it = flag_values.find(d.key.name); it != flag_values.end())
      if (auto err = apply(d, it->second.first, "flag " + it->second.second))
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
  if (c.transport.client_id.empty() && !c.security.secure)
    c.transport.client_id = "lulld-" + c.host_id;
  if (c.collect.mounts.empty()) {
    c.collect.mounts = {"/"};
    if (c.data_dir != "/")
      c.collect.mounts.push_back(c.data_dir);
  }
  if (c.collect.dirs.empty())
    c.collect.dirs = {c.data_dir};
  // The windows in their time zone, parsed once here for the lease table.
  auto windows = parse_lease_windows(c.lease_windows, c.lease.timezone);
  if (auto* e = std::get_if<std::string>(&windows)) {
    auto src = c.sources.count("lease.windows") ? c.sources.at("lease.windows") : "default";
    return config_error{2, "lulld: bad value for lease.windows (from " + src + "): " + *e};
  }
  c.lease.windows = std::get<lease_windows>(std::move(windows));
  return c;
}

} // namespace lull
