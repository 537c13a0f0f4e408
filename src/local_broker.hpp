#pragma once
/// A Mosquitto that lull starts itself: lulld when no broker is configured,
/// and every integration test (each on its own free loopback port, with a
/// config from broker-config/).

#include <sys/types.h>

#include <map>
#include <memory>
#include <optional>
#include <string>

namespace lull {

class local_broker {
public:
  /// Starts `mosquitto -c` on a copy of `conf_path` whose first `listener`
  /// line is rewritten to `port` on 127.0.0.1 (0: a free port), and whose
  /// `@CONFIG_DIR@` placeholders become the template's directory. Waits up to
  /// 5 s for the port to accept connections.
  static std::unique_ptr<local_broker> start(const std::string& conf_path, int port,
                                             std::string* err);

  ~local_broker();
  local_broker(const local_broker&) = delete;
  local_broker& operator=(const local_broker&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  std::string uri() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
  const std::string& log_path() const { return log_path_; }

  /// Stops the broker (SIGTERM, then SIGKILL after 2 s).
  void stop();

  /// Starts it again on the same port with the same config.
  bool restart(std::string* err);

  /// Writes uri() to `path` (mode 0644), so `lull` on this host finds a
  /// broker started on a port other than 1883; removed with this object.
  bool write_uri_file(const std::string& path, std::string* err);

private:
  local_broker() = default;
  bool launch(std::string* err);

  pid_t pid_ = -1;
  int port_ = 0;
  std::string dir_;
  std::string conf_;
  std::string log_path_;
  std::string uri_file_;
};

/// The file in lulld's data directory that names the broker it started
/// itself (written only then; `lull` reads it when no broker is configured).
constexpr const char* broker_uri_file = "broker.uri";

/// The broker-config directory: `configured` when set, else the source tree's
/// (compiled in), else /usr/share/lull/broker-config.
std::string broker_config_dir(const std::string& configured);

} // namespace lull
