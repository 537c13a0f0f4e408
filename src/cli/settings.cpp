// Where `lull` finds its lulld: the connection keys it shares with lulld
// (broker, credentials, TLS, topic prefix, MQTT version) from the same
// lull.toml and LULL_* variables, and, when nothing names a broker, the
// broker.uri a running lulld wrote when it started its own Mosquitto.

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <sys/stat.h>

#include "src/cli/cli.hpp"
#include "src/config.hpp"
#include "src/local_broker.hpp"

namespace lull::cli {

namespace {

bool regular_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string env_of(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

/// $XDG_CONFIG_HOME/lull/lull.toml, else ~/.config/lull/lull.toml ("" without a home).
std::string user_config_path(const std::map<std::string, std::string>& env) {
  auto xdg = env_of(env, "XDG_CONFIG_HOME");
  if (!xdg.empty() && xdg.front() == '/')
    return xdg + "/lull/lull.toml";
  auto home = env_of(env, "HOME");
  return home.empty() ? std::string() : home + "/.config/lull/lull.toml";
}

/// `path` with the home directory written as ~.
std::string tilde(const std::string& path, const std::map<std::string, std::string>& env) {
  auto home = env_of(env, "HOME");
  if (!home.empty() && path.rfind(home + "/", 0) == 0)
    return "~" + path.substr(home.size());
  return path;
}

/// False when the lulld that holds `dir` is known to be gone: its
/// lulld.lock names a pid that no longer runs lulld. A broker.uri left by a
/// lulld that was killed names a broker that went with it.
bool lulld_alive(const std::string& dir) {
  std::ifstream lock(dir + "/lulld.lock");
  long pid = 0;
  if (!lock || !(lock >> pid) || pid <= 0)
    return true; // cannot tell: trust the file
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM)
    return false;
  std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
  std::string name;
  if (comm && std::getline(comm, name))
    return name == "lulld";
  return true;
}

/// The URI in `dir`/broker.uri when a lulld there is running; "" otherwise.
std::string broker_uri_in(const std::string& dir) {
  auto path = dir + "/" + broker_uri_file;
  std::ifstream in(path);
  std::string uri;
  if (!in || !std::getline(in, uri))
    return {};
  while (!uri.empty() && (uri.back() == '\r' || uri.back() == ' '))
    uri.pop_back();
  if (uri.rfind("tcp://", 0) != 0 && uri.rfind("mqtt://", 0) != 0 && uri.rfind("ssl://", 0) != 0
      && uri.rfind("mqtts://", 0) != 0 && uri.rfind("ws://", 0) != 0
      && uri.rfind("wss://", 0) != 0)
    return {};
  return lulld_alive(dir) ? uri : std::string();
}

} // namespace

std::map<std::string, std::string> settings_environment() {
  auto env = lull_environment();
  for (const char* name : {"HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME"})
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0')
      env[name] = v;
  return env;
}

std::optional<std::string> resolve_settings(const CLI::App& app, global_opts& g,
                                            const std::map<std::string, std::string>& env_in,
                                            const settings_paths& paths) {
  auto given = [&app](const char* flag) {
    const auto* opt = app.get_option_no_throw(flag);
    return opt != nullptr && opt->count() > 0;
  };
  // 1. The file: named, else the user's, else the system's.
  auto user_config = user_config_path(env_in);
  if (!given("--config"))
    g.config_file = env_of(env_in, "LULL_CONFIG");
  if (g.config_file.empty()) {
    if (!user_config.empty() && regular_file(user_config))
      g.config_file = user_config;
    else if (regular_file(paths.system_config) && ::access(paths.system_config.c_str(), R_OK) == 0)
      g.config_file = paths.system_config;
  }
  // 2. The environment: lulld's names, and lull's older TLS names as aliases.
  auto env = env_in;
  std::map<std::string, std::string> alias_of;
  for (auto [old_name, name] : {std::pair<const char*, const char*>{"LULL_CA_FILE",
                                                                    "LULL_BROKER_CA_FILE"},
                                {"LULL_CERT_FILE", "LULL_BROKER_CERT_FILE"},
                                {"LULL_KEY_FILE", "LULL_BROKER_KEY_FILE"}})
    if (env.count(old_name) && !env.count(name)) {
      env[name] = env[old_name];
      alias_of[std::string("env ") + name] = std::string("env ") + old_name;
    }
  // 3. Flags given on the command line.
  std::map<std::string, std::pair<std::string, std::string>> flags;
  auto flag = [&](const char* name, const char* key, const std::string& value) {
    if (given(name))
      flags[key] = {value, name};
  };
  flag("--broker", "broker.uri", g.broker);
  flag("--user", "username", g.user);
  flag("--password", "password", g.password);
  flag("--topic-prefix", "topic_prefix", g.prefix);
  flag("--mqtt-version", "mqtt_version", g.mqtt_version);
  flag("--secure", "broker.secure", g.secure ? "true" : "false");
  flag("--ca-file", "broker.ca_file", g.ca_file);
  flag("--cert", "broker.cert_file", g.cert_file);
  flag("--key", "broker.key_file", g.key_file);

  auto loaded = load_client_config(g.config_file, env, flags);
  if (auto* err = std::get_if<std::string>(&loaded))
    return *err;
  auto& cc = std::get<client_config>(loaded);
  auto& v = cc.values;
  auto set = [&](const char* key, auto& field, const auto& value) {
    if (cc.sources.count(key))
      field = value;
  };
  set("username", g.user, v.transport.username);
  set("password", g.password, v.transport.password);
  set("topic_prefix", g.prefix, v.topic_prefix);
  set("mqtt_version", g.mqtt_version, mqtt_version_name(v.transport));
  set("broker.secure", g.secure, v.security.secure);
  set("broker.ca_file", g.ca_file, v.transport.ca_file);
  set("broker.cert_file", g.cert_file, v.transport.cert_file);
  set("broker.key_file", g.key_file, v.transport.key_file);

  // What can be told wrong before connecting is a usage error, wherever it
  // was set (a flag's value CLI11 has checked already).
  for (auto [key, path] : {std::pair<const char*, const std::string*>{"broker.ca_file", &g.ca_file},
                           {"broker.cert_file", &g.cert_file},
                           {"broker.key_file", &g.key_file}})
    if (!path->empty() && !regular_file(*path)) {
      auto src = cc.sources.count(key) ? cc.sources[key] : std::string("a flag");
      if (auto a = alias_of.find(src); a != alias_of.end())
        src = a->second;
      return "bad value for " + std::string(key) + " (from " + src + "): '" + *path
             + "' is not a file";
    }
  const auto& uri = v.transport.uri;
  if (auto scheme = uri.find("://");
      cc.sources.count("broker.uri") && !uri.empty() && scheme + 3 == uri.size())
    return "bad value for broker.uri (from " + cc.sources["broker.uri"] + "): '" + uri
           + "' names no host";

  // 4. The broker: named, else the one a running lulld started, else 1883.
  if (cc.sources.count("broker.uri") && !uri.empty()) {
    g.broker = uri;
    auto src = cc.sources["broker.uri"];
    if (auto a = alias_of.find(src); a != alias_of.end())
      src = a->second;
    if (src.rfind("file ", 0) == 0)
      src = src.substr(5);
    else if (src.rfind("env ", 0) == 0)
      src = src.substr(4);
    g.broker_source = "from " + src;
    return std::nullopt;
  }
  std::vector<std::string> dirs;
  if (cc.sources.count("data_dir") && !v.data_dir.empty())
    dirs.push_back(v.data_dir);
  dirs.insert(dirs.end(), paths.system_data_dirs.begin(), paths.system_data_dirs.end());
  if (auto xdg = env_of(env_in, "XDG_STATE_HOME"); !xdg.empty() && xdg.front() == '/')
    dirs.push_back(xdg + "/lull");
  else if (auto home = env_of(env_in, "HOME"); !home.empty())
    dirs.push_back(home + "/.local/state/lull");
  for (auto& dir : dirs)
    if (auto uri = broker_uri_in(dir); !uri.empty()) {
      g.broker = uri;
      g.broker_source = "from " + dir + "/" + broker_uri_file
                        + ", the broker a running lulld started";
      return std::nullopt;
    }
  g.broker = default_broker;
  g.broker_source = "default; set broker in "
                    + (user_config.empty() ? std::string("~/.config/lull/lull.toml")
                                           : tilde(user_config, env_in))
                    + " or --broker";
  return std::nullopt;
}

std::string broker_named(const global_opts& g) {
  auto uri = g.broker.empty() ? std::string(default_broker) : g.broker;
  return g.broker_source.empty() ? uri : uri + " (" + g.broker_source + ")";
}

} // namespace lull::cli
