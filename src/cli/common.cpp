#include "src/cli/cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>

#include "messages/topics.hpp"

namespace lull::cli {

std::string default_worker_id() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0')
    return "worker";
  std::string out;
  for (char* p = buf; *p != '\0' && *p != '.' && out.size() < 64; ++p)
    out += (std::isalnum(static_cast<unsigned char>(*p)) || *p == '-' || *p == '_') ? *p : '_';
  return out.empty() ? "worker" : out;
}

namespace {

const CLI::Validator broker_uri_check(
  [](std::string& uri) -> std::string {
    for (const char* scheme : {"tcp://", "mqtt://", "ssl://", "mqtts://", "ws://", "wss://"})
      if (uri.rfind(scheme, 0) == 0 && uri.size() > std::strlen(scheme))
        return "";
    return "'" + uri + "' is not a broker URI (tcp://, mqtt://, ssl://, mqtts://, ws:// or wss://)";
  },
  "URI");

const CLI::Validator worker_id_check(
  [](std::string& id) -> std::string {
    return valid_id(id) ? "" : "'" + id + "' is not a worker id (1-64 of [A-Za-z0-9_-])";
  },
  "ID");

} // namespace

void add_global_options(CLI::App& app, global_opts& g) {
  if (g.worker.empty())
    g.worker = default_worker_id();
  // Inherited by subcommands created after this: an option a subcommand does
  // not know is tried on the app, so global flags work after the command too.
  app.fallthrough();
  // The connection options are lulld's keys: their environment and file
  // values are read with lulld's definitions by resolve_settings(). What can
  // be told wrong before connecting is a usage error (exit 64, which
  // lull-worker@.service does not restart on), not an unreachable broker
  // (69, retried).
  app.add_option("--config", g.config_file,
                 "lulld's config file to take the broker and login from (env LULL_CONFIG; "
                 "default ~/.config/lull/lull.toml, else /etc/lull/lull.toml)");
  app.add_option("--broker,--broker-uri", g.broker,
                 "MQTT broker URI (env LULL_BROKER, file key broker.uri; default: the broker a "
                 "running lulld started, else tcp://127.0.0.1:1883)")
    ->check(broker_uri_check);
  app.add_option("--worker", g.worker, "this worker's id (default: the hostname)")
    ->envname("LULL_WORKER_ID")
    ->check(worker_id_check);
  app.add_option("--user,--username", g.user,
                 "MQTT user name (secure broker: the worker id; env LULL_USERNAME, file key "
                 "username)");
  app.add_option("--password", g.password,
                 "MQTT password (prefer the env LULL_PASSWORD; file key password)");
  app.add_flag("--secure,--broker-secure", g.secure,
               "the broker runs broker-config/secure.conf (env LULL_BROKER_SECURE, file key "
               "broker.secure)");
  app.add_option("--ca-file,--broker-ca-file", g.ca_file,
                 "TLS: CA certificate of the broker (ssl://; env LULL_BROKER_CA_FILE, file key "
                 "broker.ca_file)")
    ->check(CLI::ExistingFile);
  app.add_option("--cert,--broker-cert-file", g.cert_file,
                 "TLS: this client's certificate, its CN the user (env LULL_BROKER_CERT_FILE, "
                 "file key broker.cert_file)")
    ->check(CLI::ExistingFile);
  app.add_option("--key,--broker-key-file", g.key_file,
                 "TLS: the key of --cert (env LULL_BROKER_KEY_FILE, file key broker.key_file)")
    ->check(CLI::ExistingFile);
  app.add_option("--mqtt-version", g.mqtt_version,
                 "auto (v5, else v3.1.1), 5 or 3.1.1 (env LULL_MQTT_VERSION, file key "
                 "mqtt_version)")
    ->check(CLI::IsMember({"auto", "5", "3.1.1"}))
    ->capture_default_str();
  app.add_option("--topic-prefix", g.prefix,
                 "lulld's topic prefix (env LULL_TOPIC_PREFIX, file key topic_prefix)");
  app.add_option("--timeout", g.timeout_sec, "seconds to wait for the broker and each reply")
    ->capture_default_str();
}

std::chrono::milliseconds call_timeout_of(const global_opts& g) {
  return std::chrono::milliseconds(static_cast<long>(g.timeout_sec * 1000));
}

std::unique_ptr<lease_client> connect_or_say(const global_opts& g, bool announce) {
  lease_client_options o;
  o.uri = g.broker.empty() ? std::string(default_broker) : g.broker;
  o.worker_id = g.secure && !g.user.empty() ? g.user : g.worker;
  o.username = g.user;
  o.password = g.password;
  o.secure = g.secure;
  o.ca_file = g.ca_file;
  o.mqtt_version = g.mqtt_version;
  o.cert_file = g.cert_file;
  o.key_file = g.key_file;
  o.topic_prefix = g.prefix;
  o.announce = announce;
  o.connect_timeout = call_timeout_of(g);
  auto connected = lease_client::connect(o);
  if (auto* err = std::get_if<std::string>(&connected)) {
    // Name the broker with where it came from: the usual fix is another one.
    auto tried = "cannot connect to " + o.uri;
    if (err->rfind(tried, 0) == 0)
      std::cerr << "lull: cannot connect to " << broker_named(g) << err->substr(tried.size())
                << "\n";
    else
      std::cerr << "lull: " << *err << "\n";
    return nullptr;
  }
  return std::move(std::get<std::unique_ptr<lease_client>>(connected));
}

bool service_failure(const call_error& e) {
  return e.timed_out || e.error.code == error_code::internal_error
         || e.error.code == error_code::request_throttled;
}

std::string describe(const global_opts& g, const call_error& e) {
  if (e.timed_out)
    return "Timeout: no answer from lulld within " + human_duration(g.timeout_sec) + " on "
           + broker_named(g)
           + "; is lulld running and connected to that broker? (see `systemctl status "
             "lulld`; --timeout waits longer)";
  return std::string(to_string(e.error.code)) + ": " + e.error.message;
}

int error_exit_code(const call_error& e) {
  if (e.timed_out)
    return ex_timeout;
  return service_failure(e) ? ex_unavailable : ex_failed;
}

int report_error(const global_opts& g, const std::string& what, const call_error& e) {
  std::cerr << "lull: " << what << " failed: " << describe(g, e) << "\n";
  return error_exit_code(e);
}

std::string human_duration(double sec) {
  char buf[48];
  if (!(sec >= 0))
    sec = 0;
  if (sec < 10 && sec != static_cast<long>(sec))
    std::snprintf(buf, sizeof buf, "%.1fs", sec);
  else if (sec < 60)
    std::snprintf(buf, sizeof buf, "%lds", std::lround(sec));
  else if (auto s = std::lround(sec); s < 3600)
    std::snprintf(buf, sizeof buf, s % 60 ? "%ldm%02lds" : "%ldm", s / 60, s % 60);
  else
    std::snprintf(buf, sizeof buf, (s % 3600) / 60 ? "%ldh%02ldm" : "%ldh", s / 3600,
                  (s % 3600) / 60);
  return buf;
}

namespace {

/// Characters of UTF-8 text (its code points).
std::size_t width_of(const std::string& s) {
  std::size_t n = 0;
  for (unsigned char c : s)
    n += (c & 0xC0) != 0x80;
  return n;
}

/// `s` cut to `w` characters, the last one "…" when cut.
std::string cut(const std::string& s, std::size_t w) {
  if (w == 0 || width_of(s) <= w)
    return s;
  std::size_t chars = 0, i = 0;
  for (; i < s.size(); ++i)
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80 && chars++ == w - 1)
      break;
  return s.substr(0, i) + "\u2026";
}

} // namespace

std::string format_table(const std::vector<std::string>& header,
                         const std::vector<std::vector<std::string>>& rows,
                         const std::vector<std::size_t>& max_width) {
  auto limit = [&](std::size_t col) { return col < max_width.size() ? max_width[col] : 0; };
  std::vector<std::vector<std::string>> cells;
  cells.push_back(header);
  for (auto& r : rows)
    cells.push_back(r);
  std::vector<std::size_t> width(header.size(), 0);
  for (auto& r : cells)
    for (std::size_t c = 0; c < r.size() && c < width.size(); ++c) {
      r[c] = cut(r[c], limit(c));
      width[c] = std::max(width[c], width_of(r[c]));
    }
  std::string out;
  for (auto& r : cells) {
    std::string line;
    for (std::size_t c = 0; c < width.size(); ++c) {
      const std::string& cell = c < r.size() ? r[c] : std::string();
      line += cell;
      if (c + 1 < width.size())
        line.append(width[c] - width_of(cell) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ')
      line.pop_back();
    out += line + "\n";
  }
  return out;
}

double retry_pause(int attempt, double left) {
  double pause = std::min(5.0, static_cast<double>(1 << std::min(attempt, 3)) / 2.0);
  return left < 0 ? pause : std::max(0.0, std::min(pause, left));
}

std::string fmt(double sec) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", sec);
  return buf;
}

std::string pad(std::string s, std::size_t w) {
  if (s.size() < w)
    s.append(w - s.size(), ' ');
  return s;
}

std::string num(const nlohmann::json& j, int decimals) {
  if (!j.is_number())
    return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, j.get<double>());
  return buf;
}

std::string str(const nlohmann::json& j) { return j.is_string() ? j.get<std::string>() : "-"; }

std::string sparkline(const nlohmann::json& values, double lo, double hi) {
  static const char* bars[] = {"\u2581", "\u2582", "\u2583", "\u2584",
                               "\u2585", "\u2586", "\u2587", "\u2588"};
  std::string out;
  for (auto& v : values) {
    if (!v.is_number()) {
      out += " ";
      continue;
    }
    int i = hi > lo ? static_cast<int>((v.get<double>() - lo) / (hi - lo) * 7.0 + 0.5) : 0;
    out += bars[std::clamp(i, 0, 7)];
  }
  return out;
}

std::string sparkline(const nlohmann::json& values) {
  double lo = 1e300, hi = -1e300;
  for (auto& v : values)
    if (v.is_number()) {
      lo = std::min(lo, v.get<double>());
      hi = std::max(hi, v.get<double>());
    }
  return sparkline(values, lo, hi);
}

} // namespace lull::cli
